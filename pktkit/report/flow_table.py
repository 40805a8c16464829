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

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    group_extreme,
    group_first,
    group_rows,
    group_sum,
    tunnel_rows,
)
from pktkit.capture.frame import typed_frame
from pktkit.capture.headers import IPPROTO_ICMP, IPPROTO_ICMPV6
from pktkit.report.labels import (
    key_text,
    text_column,
)
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


def flows(
    packets: pd.DataFrame,
    nat_flows: pd.DataFrame | None = None,
    *,
    underlay_mtu: int | None = None,
) -> pd.DataFrame:
    """Per bidirectional flow per capture: volume each way, timing, overlay, NAT, MTU."""
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    has_flow = packets["flow_id"].notna().to_numpy() if len(packets) else np.zeros(0, bool)
    if not has_flow.any():
        return typed_frame(pd.DataFrame(), FLOWS_SCHEMA)
    positions = None if has_flow.all() else np.flatnonzero(has_flow)
    del has_flow
    rows = Rows(packets, positions)
    # one integer per (capture, flow_id), numbered in order of appearance: everything below
    # is numpy takes and integer reductions on these numbers
    flow, first = group_rows(rows.codes("capture"), rows.codes("flow_id"))
    count = len(first)
    max_ip_len = _max_ip_len(packets, positions, flow, count, mtu)
    # side a: the sender of the flow's first frame in this capture
    src, sport = rows.codes("src"), rows.values("sport", "int64", -1)
    from_a = (src == src[first][flow]) & (sport == sport[first][flow])
    del src, sport
    wire = rows.values("wire_len", "int64", 0)
    packets_ab = np.bincount(flow[from_a], minlength=count)
    bytes_ab = group_sum(flow[from_a], count, wire[from_a])
    all_packets, all_bytes = np.bincount(flow, minlength=count), group_sum(flow, count, wire)
    del from_a, wire
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    first_ts = group_extreme(flow, count, ts, has_ts, largest=False)
    last_ts = group_extreme(flow, count, ts, has_ts, largest=True)
    del ts, has_ts
    encap, names = rows.encap_codes()
    table = pd.DataFrame({
        "capture": text_column(rows.take("capture", first)),
        "flow_id": rows.take("flow_id", first).astype("Int64"),
        "encap": key_text(encap[first], names), "vni": rows.take("vni", first),
        "proto": rows.take("proto", first),
        "a_addr": text_column(rows.take("src", first)), "a_port": rows.take("sport", first),
        "b_addr": text_column(rows.take("dst", first)), "b_port": rows.take("dport", first),
        "packets_ab": packets_ab, "bytes_ab": bytes_ab,
        "packets_ba": all_packets - packets_ab, "bytes_ba": all_bytes - bytes_ab,
        "packets": all_packets, "bytes": pd.array(all_bytes, dtype="Int64"),
        "first_ts_ns": first_ts, "last_ts_ns": last_ts,
        "max_ip_len": max_ip_len,
        "fragments": np.bincount(flow[rows.values("fragment", "bool", False)],
                                 minlength=count),
    })
    table["duration_ns"] = table["last_ts_ns"] - table["first_ts_ns"]
    seconds = table["duration_ns"].astype("Float64") / 1e9
    table["throughput_bps"] = (table["bytes"].astype("Float64") * 8 / seconds).where(seconds > 0)

    conversation = _conversation_key(table["proto"], _endpoint(table["a_addr"], table["a_port"]),
                                     _endpoint(table["b_addr"], table["b_port"]))
    _attach_overlay(table, rows, encap, names, flow, conversation)
    # the inner MTU of the flow's overlay: underlay MTU minus that overlay's largest overhead
    overlay_overhead = table[["overlay_encap", "overlay_vni"]].merge(
        _tunnel_overhead(rows, encap, names), on=["overlay_encap", "overlay_vni"],
        how="left")["overhead"]
    table["path_mtu"] = (mtu - overlay_overhead.fillna(0).to_numpy("int64"))
    table["exceeds_mtu"] = (table["max_ip_len"] > table["path_mtu"]).fillna(False)
    table["nat_flow_id"] = _nat_flow_ids(table, rows, flow, conversation, nat_flows)
    # the flows in trouble first, then the heaviest
    table = table.sort_values(["exceeds_mtu", "bytes", "capture", "flow_id"],
                              ascending=[False, False, True, True], kind="stable")
    return typed_frame(table, FLOWS_SCHEMA)


def _max_ip_len(packets: pd.DataFrame, positions: np.ndarray | None, flow: np.ndarray,
                count: int, mtu: int) -> pd.arrays.IntegerArray:
    """Per flow, its largest datagram (fragments reassembled), GSO frames left out. Sized on
    the whole table: a datagram's fragments all have the flow's src and dst, so the rows
    without a flow (no src or dst) never share a datagram with those that have one."""
    sizes = size_arrays(packets, mtu)
    datagram_len, gso = sizes.datagram_len, sizes.gso
    del sizes
    if positions is not None:
        datagram_len, gso = datagram_len[positions], gso[positions]
    return group_extreme(flow, count, datagram_len, ~np.isnan(datagram_len) & ~gso,
                          largest=True)


def _tunnel_overhead(rows: Rows, encap: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The largest overhead_bytes per (encap, vni) of the tunnelled rows, keyed as the
    overlay columns (overlay_encap, overlay_vni)."""
    tunnelled = np.flatnonzero(tunnel_rows(encap, names))
    group, first = group_rows(encap[tunnelled], rows.codes("vni")[tunnelled])
    cost = rows.values("overhead_bytes", "int64", 0)[tunnelled]
    has_cost = ~rows.isna("overhead_bytes")[tunnelled]
    return pd.DataFrame({
        "overlay_encap": key_text(encap[tunnelled[first]], names),
        "overlay_vni": rows.take("vni", tunnelled[first]),
        "overhead": group_extreme(group, len(first), cost, has_cost, largest=True),
    })


def _attach_overlay(table: pd.DataFrame, rows: Rows, encap: np.ndarray, names: list[str],
                    flow: np.ndarray, conversation: pd.Series) -> None:
    """Set overlay_encap/overlay_vni: the flow's own tunnel, else the one carrying its packets."""
    own = table["encap"].ne(NO_TUNNEL)
    overlay_encap = table["encap"].where(own).astype("string")
    overlay_vni = table["vni"].astype("UInt32").where(own)
    if "packet_id" in rows:  # the correlation links sightings of one packet exactly
        carried_encap, carried_vni = _carriers(rows, encap, names, flow, len(table))
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


def _carriers(rows: Rows, encap: np.ndarray, names: list[str], flow: np.ndarray,
              count: int) -> tuple[pd.Series, pd.Series]:
    """Per flow, the tunnel carrying its packets. A packet's carrier is its first tunnelled
    sighting (same packet_id); a flow's encap is that of the first of its rows that has a
    carrier, its VNI the first carrier VNI that is not NA (one row may give both)."""
    packet = rows.codes("packet_id")  # −1: NA
    n = len(packet)
    carriers = np.flatnonzero(tunnel_rows(encap, names) & (packet >= 0))
    # per packet its first carrier row (n: none); the extra last slot is NA's, never set
    first_carrier = np.full(packet.max(initial=-1) + 2, n, dtype=np.int64)
    np.minimum.at(first_carrier, packet[carriers], carriers)
    carrier = first_carrier[packet]
    del packet, carriers, first_carrier
    carried = carrier < n
    carrier[~carried] = 0  # any row: only read where carried
    row = group_first(flow, count, carried)
    found = row >= 0
    carried_encap = np.full(count, None, dtype=object)
    carried_encap[found] = [names[code] for code in encap[carrier[row[found]]].tolist()]
    has_vni = carried & ~rows.isna("vni")[carrier]
    row = group_first(flow, count, has_vni)
    found = row >= 0
    vni = np.zeros(count, dtype=np.int64)
    vni[found] = rows.values("vni", "int64", 0)[carrier[row[found]]]
    return (pd.Series(pd.array(carried_encap, dtype="string")),
            pd.Series(pd.arrays.IntegerArray(vni, ~found)).astype("UInt32"))


def _nat_flow_ids(table: pd.DataFrame, rows: Rows, flow: np.ndarray,
                  conversation: pd.Series, nat_flows: pd.DataFrame | None) -> pd.Series:
    if "nat_flow_id" in rows:  # labelled by the correlation, on every sighting
        row = group_first(flow, len(table), ~rows.isna("nat_flow_id"))
        found = row >= 0
        ids = np.zeros(len(table), dtype=np.int64)
        ids[found] = rows.values("nat_flow_id", "int64", 0)[row[found]]
        return pd.Series(pd.arrays.IntegerArray(ids, ~found))
    if nat_flows is None or nat_flows.empty:
        return pd.Series(pd.NA, index=table.index, dtype="Int64")
    icmp = table["proto"].astype("Int64").isin([IPPROTO_ICMP, IPPROTO_ICMPV6]).fillna(False)
    portless = _conversation_key(table["proto"], _endpoint(table["a_addr"], table["a_port"]
                                                           .astype("Int64").mask(icmp)),
                                 _endpoint(table["b_addr"], table["b_port"].astype("Int64")
                                           .mask(icmp)))
    key = conversation.where(~icmp, portless)
    return _unique_match(key, _nat_keys(nat_flows), "key", "nat_flow_id").astype("Int64")
