"""Flows for people: per bidirectional flow per capture, with its overlay, NAT flow and MTU.

``flows`` — one row per bidirectional flow per capture; flows exceeding the MTU first, then
the heaviest

================  ========  ==========================================================
column            dtype     meaning
================  ========  ==========================================================
capture           string    capture file
flow_id           Int64     the table's flow_id
encap, vni        string,   the flow's own tunnel (``none`` / NA outside a tunnel)
                  UInt32
proto             UInt8     innermost protocol
a_addr, a_port    string,   the side that sent the flow's first frame in this capture
                  UInt16
b_addr, b_port    string,   the other side (ports NA for ICMP and non-first fragments)
                  UInt16
overlay_encap     string    the overlay the flow rides: its own tunnel, or for a flow seen
overlay_vni       UInt32    outside the tunnel (pod veth, bridge), the tunnel that carries
                            the same packets (``packet_id``) or the same 5-tuple (when
                            exactly one overlay carries it)
nat_flow_id       Int64     the NAT flow (``nat_flow_id`` column, else matched on the
                            original or translated tuple of ``nat_flows``)
exceeds_mtu       boolean   max_ip_len > path_mtu
max_ip_len        Int64     largest IP datagram (fragments reassembled; GSO frames left out)
path_mtu          Int64     the MTU the flow's datagrams must fit: the inner MTU of its
                            overlay, else underlay_mtu
fragments         Int64     frames that are IP fragments
packets_ab/ba     Int64     frames a → b and b → a
bytes_ab/ba       Int64     their wire bytes
packets, bytes    Int64     both ways
duration_ns       Int64     last − first
throughput_bps    Float64   bytes × 8 / duration (NA for a single instant)
first_ts_ns       Int64     capture time of the first and last frame
last_ts_ns        Int64
================  ========  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    tunnel_rows,
)
from pktkit.capture.frame import typed_frame
from pktkit.capture.headers import IPPROTO_ICMP, IPPROTO_ICMPV6
from pktkit.report.labels import (
    key_text,
    text_column,
)
from pktkit.report.partials import Agg, aggregate, merge
from pktkit.report.sizes import DEFAULT_UNDERLAY_MTU, size_arrays

FLOWS_SCHEMA: dict[str, str] = {
    "capture": "string", "flow_id": "Int64", "encap": "string", "vni": "UInt32",
    "proto": "UInt8", "a_addr": "string", "a_port": "UInt16", "b_addr": "string",
    "b_port": "UInt16", "overlay_encap": "string", "overlay_vni": "UInt32",
    "nat_flow_id": "Int64", "exceeds_mtu": "boolean", "max_ip_len": "Int64",
    "path_mtu": "Int64", "fragments": "Int64", "packets_ab": "Int64", "bytes_ab": "Int64",
    "packets_ba": "Int64", "bytes_ba": "Int64", "packets": "Int64", "bytes": "Int64",
    "duration_ns": "Int64", "throughput_bps": "Float64", "first_ts_ns": "Int64",
    "last_ts_ns": "Int64",
}


def _endpoint(addr: pd.Series, port: pd.Series) -> pd.Series:
    return text_column(addr).fillna("") + "|" + port.astype("Int64").astype("string").fillna("")


def _conversation_key(proto: pd.Series, a: pd.Series, b: pd.Series) -> pd.Series:
    """A direction-free key: protocol and both endpoints, sorted."""
    low, high = a.where(a <= b, b), b.where(a <= b, a)
    return proto.astype("Int64").astype("string").fillna("") + "/" + low + "/" + high


def _unique_match(keys: pd.Series, table: pd.DataFrame, key: str, value: str) -> pd.Series:
    """For each key, ``table[value]`` of the rows with that key when they agree on one value."""
    candidates = table[[key, value]].dropna().drop_duplicates()
    unique = candidates[~candidates[key].duplicated(keep=False)].set_index(key)[value]
    return keys.map(unique)


def _nat_keys(nat_flows: pd.DataFrame) -> pd.DataFrame:
    """Conversation keys of every NAT flow's original and translated tuples.

    ICMP tuples carry echo identifiers where the packet table has no ports, so their keys
    drop the ports (and match only where the addresses alone are unambiguous)."""
    icmp = nat_flows["proto"].astype("Int64").isin([IPPROTO_ICMP, IPPROTO_ICMPV6]).fillna(False)
    keys = []
    for side in ("orig", "xlat"):
        def port(name: str, side: str = side) -> pd.Series:
            return nat_flows[f"{side}_{name}"].astype("Int64").mask(icmp)

        keys.append(pd.DataFrame({
            "key": _conversation_key(nat_flows["proto"],
                                     _endpoint(nat_flows[f"{side}_src"], port("sport")),
                                     _endpoint(nat_flows[f"{side}_dst"], port("dport"))),
            "nat_flow_id": nat_flows["nat_flow_id"].astype("Int64"),
        }))
    return pd.concat(keys, ignore_index=True)


FLOW_KEYS = ["capture", "flow_id"]  # the groups of the partial's three tables
DIRECTION_KEYS = [*FLOW_KEYS, "src", "sport"]
TUNNEL_KEYS = ["overlay_encap", "overlay_vni"]
FLOW_KINDS = {"first": "first", "packets": "sum", "bytes": "sum", "first_ts_ns": "min",
              "last_ts_ns": "max", "max_ip_len": "max", "fragments": "sum",
              "carried_encap": "first", "carried_vni": "first", "nat_flow_id": "first"}
DIRECTION_KINDS = {"packets": "sum", "bytes": "sum"}
OVERHEAD_KINDS = {"overhead": "max"}
_FIRST = ["encap", "vni", "proto", "src", "sport", "dst", "dport"]


@dataclass
class FlowsPartial:
    """One partition's part of the flows table: per (capture, flow_id) ``flows`` (its first
    row's columns, counts, time span, largest datagram, first carrier and NAT flow), per
    (capture, flow_id, src, sport) ``directions`` (packets and bytes each way), per tunnel
    (overlay_encap, overlay_vni) ``overheads`` (the largest); ``correlated``: the rows carry
    packet_id (carriers by packet) and nat_flow_id."""

    flows: pd.DataFrame
    directions: pd.DataFrame
    overheads: pd.DataFrame
    by_packet: bool
    by_nat_flow: bool


def flows(
    packets: pd.DataFrame,
    nat_flows: pd.DataFrame | None = None,
    *,
    underlay_mtu: int | None = None,
) -> pd.DataFrame:
    """Per bidirectional flow per capture: volume each way, timing, overlay, NAT, MTU (the
    partial of the whole table, merged)."""
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    partial = flows_partial(packets, underlay_mtu=mtu, order=np.arange(len(packets)))
    return flows_table([partial], nat_flows, underlay_mtu=mtu)


def flows_partial(packets: pd.DataFrame, *, underlay_mtu: int = DEFAULT_UNDERLAY_MTU,
                  order: np.ndarray | None = None) -> FlowsPartial:
    """The flows table's partial of one partition of whole packets (:class:`FlowsPartial`)."""
    order = packets.index.to_numpy(np.int64) if order is None else order
    has_flow = packets["flow_id"].notna().to_numpy() if len(packets) else np.zeros(0, bool)
    positions = None if has_flow.all() else np.flatnonzero(has_flow)
    del has_flow
    rows = Rows(packets, positions)
    order = order if positions is None else order[positions]
    n = len(order)
    at = np.arange(n)
    encap, names = rows.encap_codes()
    keys = {"capture": text_column(rows.take("capture", at)),
            "flow_id": rows.take("flow_id", at).astype("Int64")}
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    datagram_len, gso = _datagram_sizes(packets, positions, underlay_mtu)
    first = pd.DataFrame({"encap": pd.Categorical.from_codes(encap, names),
                          **{name: rows.take(name, at) for name in _FIRST[1:]}})
    aggs = {"first": Agg("first", first), "packets": Agg("sum"),
            "bytes": Agg("sum", rows.values("wire_len", "int64", 0)),
            "first_ts_ns": Agg("min", ts, has_ts), "last_ts_ns": Agg("max", ts, has_ts),
            "max_ip_len": Agg("max", datagram_len, ~np.isnan(datagram_len) & ~gso),
            "fragments": Agg("sum", valid=rows.values("fragment", "bool", False))}
    del ts, has_ts, datagram_len, gso
    by_packet = "packet_id" in rows
    if by_packet:  # the correlation links sightings of one packet exactly
        carrier, carried = _carrier_of_rows(rows, encap, names)
        has_vni = carried & ~rows.isna("vni")[carrier]
        aggs["carried_encap"] = Agg("first", pd.Categorical.from_codes(encap[carrier], names),
                                    carried)
        aggs["carried_vni"] = Agg("first", rows.values("vni", "int64", 0)[carrier], has_vni)
    else:
        aggs["carried_encap"] = aggs["carried_vni"] = Agg("first", np.zeros(n), np.zeros(n, bool))
    by_nat_flow = "nat_flow_id" in rows
    aggs["nat_flow_id"] = Agg("first", rows.values("nat_flow_id", "int64", 0) if by_nat_flow
                              else np.zeros(n), ~rows.isna("nat_flow_id") if by_nat_flow
                              else np.zeros(n, bool))
    flow_rows = aggregate(keys, order, aggs)
    directions = aggregate({**keys, "src": text_column(rows.take("src", at)),
                            "sport": pd.Series(rows.values("sport", "int64", -1))}, order,
                           {"packets": Agg("sum"),
                            "bytes": Agg("sum", rows.values("wire_len", "int64", 0))})
    return FlowsPartial(flow_rows, directions, _tunnel_overhead(rows, encap, names, order),
                        by_packet, by_nat_flow)


def merged_flows_partial(partials: Sequence[FlowsPartial]) -> FlowsPartial:
    """Several partitions' partials as one partial: :func:`flows_table` of it is
    :func:`flows_table` of them."""
    return FlowsPartial(merge([p.flows for p in partials], FLOW_KEYS, FLOW_KINDS,
                              as_partial=True),
                        merge([p.directions for p in partials], DIRECTION_KEYS, DIRECTION_KINDS,
                              as_partial=True),
                        merge([p.overheads for p in partials], TUNNEL_KEYS, OVERHEAD_KINDS,
                              as_partial=True),
                        partials[0].by_packet, partials[0].by_nat_flow)


def split_flows_partial(partial: FlowsPartial, buckets: int) -> list[FlowsPartial]:
    """The partial's flows (and their directions) in ``buckets`` by their (capture,
    flow_id): a flow's rows of every partition's partial fall in the bucket of one number,
    so the buckets merge apart; the tunnels' overheads (a row per overlay) in the first."""
    def bucket(table: pd.DataFrame) -> np.ndarray:
        capture = pd.util.hash_array(table["capture"].astype("string").to_numpy(
            object, na_value=""))
        flow = table["flow_id"].astype("Int64").to_numpy(np.int64, na_value=-1).view(np.uint64)
        return ((capture ^ (flow * np.uint64(0x9E3779B97F4A7C15))) % np.uint64(buckets)
                ).astype(np.int64)

    of_flow, of_direction = bucket(partial.flows), bucket(partial.directions)
    return [FlowsPartial(partial.flows[of_flow == b].reset_index(drop=True),
                         partial.directions[of_direction == b].reset_index(drop=True),
                         partial.overheads if b == 0 else partial.overheads.iloc[:0],
                         partial.by_packet, partial.by_nat_flow)
            for b in range(buckets)]


def flows_table(partials: list[FlowsPartial], nat_flows: pd.DataFrame | None = None, *,
                underlay_mtu: int = DEFAULT_UNDERLAY_MTU) -> pd.DataFrame:
    """The flows table from every partition's partial (and the nat_flows table, for rows
    without ``nat_flow_id``)."""
    merged = merge([p.flows for p in partials], FLOW_KEYS, FLOW_KINDS)
    if not len(merged):
        return typed_frame(pd.DataFrame(), FLOWS_SCHEMA)
    mtu = underlay_mtu
    first = pd.DataFrame({name: merged[f"first.{name}"] for name in _FIRST})
    directions = merge([p.directions for p in partials], DIRECTION_KEYS, DIRECTION_KINDS)
    # side a: the sender of the flow's first frame in this capture
    side_a = pd.DataFrame({"capture": merged["capture"], "flow_id": merged["flow_id"],
                           "src": first["src"].astype("string"),
                           "sport": first["sport"].astype("Int64").fillna(-1).astype("int64")})
    from_a = side_a.merge(directions, on=["capture", "flow_id", "src", "sport"], how="left")
    packets_ab = from_a["packets"].fillna(0).to_numpy(np.int64)
    bytes_ab = from_a["bytes"].fillna(0).to_numpy(np.int64)
    all_packets = merged["packets"].to_numpy(np.int64)
    all_bytes = merged["bytes"].to_numpy(np.int64)
    table = pd.DataFrame({
        "capture": merged["capture"].astype("string"),
        "flow_id": merged["flow_id"].astype("Int64"),
        "encap": first["encap"].astype("string"), "vni": first["vni"].astype("UInt32"),
        "proto": first["proto"].astype("UInt8"),
        "a_addr": first["src"].astype("string"), "a_port": first["sport"].astype("UInt16"),
        "b_addr": first["dst"].astype("string"), "b_port": first["dport"].astype("UInt16"),
        "packets_ab": packets_ab, "bytes_ab": bytes_ab,
        "packets_ba": all_packets - packets_ab, "bytes_ba": all_bytes - bytes_ab,
        "packets": all_packets, "bytes": pd.array(all_bytes, dtype="Int64"),
        "first_ts_ns": merged["first_ts_ns"], "last_ts_ns": merged["last_ts_ns"],
        "max_ip_len": merged["max_ip_len"],
        "fragments": merged["fragments"].to_numpy(np.int64),
    })
    table["duration_ns"] = table["last_ts_ns"] - table["first_ts_ns"]
    seconds = table["duration_ns"].astype("Float64") / 1e9
    table["throughput_bps"] = (table["bytes"].astype("Float64") * 8 / seconds).where(seconds > 0)

    conversation = _conversation_key(table["proto"], _endpoint(table["a_addr"], table["a_port"]),
                                     _endpoint(table["b_addr"], table["b_port"]))
    carried = (pd.Series(pd.array(merged["carried_encap"].tolist(), dtype="string")),
               pd.Series(pd.array(merged["carried_vni"].tolist(), dtype="Int64"))
               .astype("UInt32"))
    _attach_overlay(table, conversation, carried if partials[0].by_packet else None)
    # the inner MTU of the flow's overlay: underlay MTU minus that overlay's largest overhead
    overheads = merge([p.overheads for p in partials], TUNNEL_KEYS,
                      OVERHEAD_KINDS)[[*TUNNEL_KEYS, "overhead"]]
    overlay_overhead = table[TUNNEL_KEYS].merge(overheads, on=TUNNEL_KEYS,
                                                how="left")["overhead"]
    table["path_mtu"] = (mtu - overlay_overhead.fillna(0).to_numpy("int64"))
    table["exceeds_mtu"] = (table["max_ip_len"] > table["path_mtu"]).fillna(False)
    table["nat_flow_id"] = (
        pd.Series(pd.array(merged["nat_flow_id"].tolist(), dtype="Int64"))
        if partials[0].by_nat_flow else _nat_flow_ids(table, conversation, nat_flows))
    # the flows in trouble first, then the heaviest
    table = table.sort_values(["exceeds_mtu", "bytes", "capture", "flow_id"],
                              ascending=[False, False, True, True], kind="stable")
    return typed_frame(table, FLOWS_SCHEMA)


def _datagram_sizes(packets: pd.DataFrame, positions: np.ndarray | None,
                    mtu: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's datagram length (fragments reassembled) and whether it is a GSO frame.
    Sized on the whole table: a datagram's fragments all have the flow's src and dst, so the
    rows without a flow (no src or dst) never share a datagram with those that have one."""
    sizes = size_arrays(packets, mtu)
    datagram_len, gso = sizes.datagram_len, sizes.gso
    del sizes
    if positions is not None:
        datagram_len, gso = datagram_len[positions], gso[positions]
    return datagram_len, gso


def _tunnel_overhead(rows: Rows, encap: np.ndarray, names: list[str],
                     order: np.ndarray) -> pd.DataFrame:
    """The largest overhead_bytes per (encap, vni) of the tunnelled rows, keyed as the
    overlay columns (overlay_encap, overlay_vni)."""
    tunnelled = np.flatnonzero(tunnel_rows(encap, names))
    cost = rows.values("overhead_bytes", "int64", 0)[tunnelled]
    has_cost = ~rows.isna("overhead_bytes")[tunnelled]
    return aggregate({"overlay_encap": pd.Series(key_text(encap[tunnelled], names)),
                      "overlay_vni": rows.take("vni", tunnelled)}, order[tunnelled],
                     {"overhead": Agg("max", cost, has_cost)})


def _attach_overlay(table: pd.DataFrame, conversation: pd.Series,
                    carried: tuple[pd.Series, pd.Series] | None) -> None:
    """Set overlay_encap/overlay_vni: the flow's own tunnel, else the one carrying its
    packets (``carried``: per flow, from the correlation), else (no correlation) the one
    overlay its 5-tuple rides."""
    own = table["encap"].ne(NO_TUNNEL)
    overlay_encap = table["encap"].where(own).astype("string")
    overlay_vni = table["vni"].astype("UInt32").where(own)
    if carried is not None:  # the correlation links sightings of one packet exactly
        carried_encap, carried_vni = carried
        overlay_encap = overlay_encap.fillna(carried_encap)
        overlay_vni = overlay_vni.fillna(carried_vni)
    else:  # the same 5-tuple inside exactly one overlay
        carriers = pd.DataFrame({"key": conversation[own], "encap": overlay_encap[own],
                                 "vni": overlay_vni[own]}).drop_duplicates()
        carriers = carriers[~carriers["key"].duplicated(keep=False)]
        found = pd.DataFrame({"key": conversation.where(~own)}).merge(carriers, on="key",
                                                                      how="left")
        overlay_encap = overlay_encap.fillna(found["encap"].astype("string"))
        overlay_vni = overlay_vni.fillna(found["vni"].astype("UInt32"))
    table["overlay_encap"] = overlay_encap
    table["overlay_vni"] = overlay_vni


def _carrier_of_rows(rows: Rows, encap: np.ndarray, names: list[str]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its packet's first tunnelled sighting (any row where there is none) and
    whether there is one. A flow's carried encap is that of the first of its rows that has a
    carrier, its VNI the first carrier VNI that is not NA (one row may give both)."""
    packet = rows.codes("packet_id")  # −1: NA
    n = len(packet)
    carriers = np.flatnonzero(tunnel_rows(encap, names) & (packet >= 0))
    # per packet its first carrier row (n: none); the extra last slot is NA's, never set
    first_carrier = np.full(packet.max(initial=-1) + 2, n, dtype=np.int64)
    np.minimum.at(first_carrier, packet[carriers], carriers)
    carrier = first_carrier[packet]
    carried = carrier < n
    carrier[~carried] = 0  # any row: only read where carried
    return carrier, carried


def _nat_flow_ids(table: pd.DataFrame, conversation: pd.Series,
                  nat_flows: pd.DataFrame | None) -> pd.Series:
    """Without a ``nat_flow_id`` column: the NAT flow whose original or translated tuple is
    the flow's (when exactly one is)."""
    if nat_flows is None or nat_flows.empty:
        return pd.Series(pd.NA, index=table.index, dtype="Int64")
    icmp = table["proto"].astype("Int64").isin([IPPROTO_ICMP, IPPROTO_ICMPV6]).fillna(False)
    portless = _conversation_key(table["proto"], _endpoint(table["a_addr"], table["a_port"]
                                                           .astype("Int64").mask(icmp)),
                                 _endpoint(table["b_addr"], table["b_port"].astype("Int64")
                                           .mask(icmp)))
    key = conversation.where(~icmp, portless)
    return _unique_match(key, _nat_keys(nat_flows), "key", "nat_flow_id").astype("Int64")
