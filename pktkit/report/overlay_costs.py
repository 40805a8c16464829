"""Overlay networks and what their headers cost: traffic per (encap, VNI), overhead and MTU.

``overlays`` — one row per (encap, vni) of tunnelled packets

=============  ========  =============================================================
column         dtype     meaning
=============  ========  =============================================================
encap          string    tunnel chain, outermost first (``vxlan``, ``geneve/vxlan``...)
vni            UInt32    VNI / VSID / GRE key of the innermost tunnel that has one
packets        Int64     frames (every capture point counts)
bytes          Int64     their wire bytes
flows          Int64     distinct inner flows (``flow_id``)
vtep_pairs     Int64     distinct unordered (outer_src, outer_dst) pairs
vteps          string    those pairs, ``a ↔ b`` joined by ``; ``
outer_dports   string    outer UDP destination ports seen (VXLAN 8472/4789, Geneve 6081)
captures       Int64     capture files the overlay was seen in
first_ts_ns    Int64     first and last capture time (each capture's own clock)
last_ts_ns     Int64
=============  ========  =============================================================

``overhead`` — one row per (encap, vni) (per encap with ``by_vni=False``), ``none`` last

==================  ========  ========================================================
column              dtype     meaning
==================  ========  ========================================================
encap, vni          string,   as in ``overlays``; ``none`` / NA for untunnelled frames
                    UInt32
packets             Int64     frames
wire_bytes          Int64     their wire bytes
overhead_mean       Float64   encapsulation bytes per frame (``overhead_bytes``)
overhead_min/max    Int64
overhead_bytes      Int64     sum of ``overhead_bytes``
overhead_share      Float64   overhead_bytes / wire_bytes
l4_payload_bytes    Int64     innermost TCP/UDP/ICMP payload bytes (see below)
payload_efficiency  Float64   l4_payload_bytes / wire_bytes
underlay_mtu        Int64     the parameter
inner_mtu           Int64     underlay_mtu − overhead_max: the largest inner IP packet
                              that fits without fragmentation
max_inner_len       Int64     largest innermost IP packet seen (each fragment on its own)
headroom            Int64     inner_mtu − max_inner_len (negative: too big for the path)
oversized           Int64     datagrams (counted once per capture point, however many
                              fragments) bigger than inner_mtu
fragments           Int64     frames that are IP fragments
frag_needed         Int64     ICMP type 3 code 4 and ICMPv6 type 2 (packet too big)
                              frames, counted where they are seen
gso_frames          Int64     TCP frames larger than underlay_mtu (offload super-frames)
==================  ========  ========================================================

Without an ``l4_payload_len`` column the payload is estimated with option-less headers
(IPv4 20, IPv6 40 + 8 for a fragment header, TCP 20, UDP 8, ICMP 8; 0 for a non-first
fragment), an upper bound: Linux TCP segments carry 12 bytes of timestamps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    distinct_rows,
    group_rows,
    tunnel_rows,
)
from pktkit.capture.frame import typed_frame
from pktkit.report.labels import (
    joined,
    key_text,
    text_column,
)
from pktkit.report.partials import Agg, aggregate, merge
from pktkit.report.sizes import DEFAULT_UNDERLAY_MTU, size_arrays

OVERLAYS_SCHEMA: dict[str, str] = {
    "encap": "string", "vni": "UInt32", "packets": "Int64", "bytes": "Int64", "flows": "Int64",
    "vtep_pairs": "Int64", "vteps": "string", "outer_dports": "string", "captures": "Int64",
    "first_ts_ns": "Int64", "last_ts_ns": "Int64",
}


OVERHEAD_SCHEMA: dict[str, str] = {
    "encap": "string", "vni": "UInt32", "packets": "Int64", "wire_bytes": "Int64",
    "overhead_mean": "Float64", "overhead_min": "Int64", "overhead_max": "Int64",
    "overhead_bytes": "Int64", "overhead_share": "Float64", "l4_payload_bytes": "Int64",
    "payload_efficiency": "Float64", "underlay_mtu": "Int64", "inner_mtu": "Int64",
    "max_inner_len": "Int64", "headroom": "Int64", "oversized": "Int64", "fragments": "Int64",
    "frag_needed": "Int64", "gso_frames": "Int64",
}


def in_key_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (encap, vni), NA last, as ``groupby(["encap", "vni"], sort=True,
    dropna=False)`` orders its groups."""
    return table.sort_values(["encap", "vni"], na_position="last", kind="stable",
                             ignore_index=True)


OVERLAY_KEYS = ["encap", "vni"]  # the groups of the overlays partial
OVERLAY_KINDS = {"packets": "sum", "bytes": "sum", "flows": "distinct",
                 "captures": "distinct", "first_ts_ns": "min", "last_ts_ns": "max",
                 "vteps": "distinct", "outer_dports": "distinct"}


def overlays(packets: pd.DataFrame) -> pd.DataFrame:
    """Per (encap, vni) of tunnelled packets: traffic, flows and VTEPs (schema above): the
    partial of the whole table, merged."""
    return overlays_table([overlays_partial(packets, order=np.arange(len(packets)))])


def overlays_partial(packets: pd.DataFrame, *, order: np.ndarray | None = None
                     ) -> pd.DataFrame:
    """Per (encap, vni) of one partition's tunnelled rows: counts, time span, and its
    distinct flows, captures, VTEP pairs and outer ports (sets: their size is the overlay's
    flows, not its rows)."""
    order = packets.index.to_numpy(np.int64) if order is None else order
    encap, names = Rows(packets).encap_codes()
    tunnelled = np.flatnonzero(tunnel_rows(encap, names))
    rows = Rows(packets, tunnelled)
    encap = encap[tunnelled]
    at = np.arange(len(tunnelled))
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    src, dst = rows.codes("outer_src"), rows.codes("outer_dst")
    both = np.flatnonzero((src >= 0) & (dst >= 0))  # a pair with an NA side is no pair
    pair = np.full(len(tunnelled), -1, np.int64)
    pair[both] = group_rows(src[both], dst[both])[0]
    del src, dst, both

    def vtep_pairs(where: np.ndarray) -> list[str]:
        """``a ↔ b`` (a ≤ b: both directions between two VTEPs are one pair)."""
        found = []
        for a, b in zip(text_column(rows.take("outer_src", where)).tolist(),
                        text_column(rows.take("outer_dst", where)).tolist(), strict=True):
            low, high = (a, b) if a <= b else (b, a)
            found.append(f"{low} ↔ {high}")
        return found

    return aggregate(
        {"encap": pd.Series(key_text(encap, names)), "vni": rows.take("vni", at)},
        order[tunnelled], {
            "packets": Agg("sum"), "bytes": Agg("sum", rows.values("wire_len", "int64", 0)),
            "flows": Agg("distinct", rows.codes("flow_id"),
                         text=lambda where: rows.take("flow_id", where).tolist()),
            "captures": Agg("distinct", rows.codes("capture"),
                            text=lambda where: [str(c) for c in rows.take("capture", where)]),
            "first_ts_ns": Agg("min", ts, has_ts), "last_ts_ns": Agg("max", ts, has_ts),
            "vteps": Agg("distinct", pair, text=vtep_pairs),
            "outer_dports": Agg("distinct", rows.codes("outer_dport"),
                                text=lambda where: [str(v) for v in
                                                    rows.take("outer_dport", where)]),
        })


def overlays_table(partials: list[pd.DataFrame]) -> pd.DataFrame:
    """The overlays table from every partition's partial."""
    table = merge(partials, OVERLAY_KEYS, OVERLAY_KINDS)
    if not len(table):
        return typed_frame(pd.DataFrame(), OVERLAYS_SCHEMA)
    for name in ("flows", "captures"):
        table[name] = [len(found) for found in table[name]]
    table["vtep_pairs"] = [len(found) for found in table["vteps"]]
    table["vteps"] = [joined(found, "; ") for found in table["vteps"]]
    table["outer_dports"] = [joined(found) for found in table["outer_dports"]]
    return typed_frame(in_key_order(table), OVERLAYS_SCHEMA)


OVERHEAD_KINDS = {"packets": "sum", "wire_bytes": "sum", "overhead_bytes": "sum",
                  "costed": "sum", "overhead_min": "min", "overhead_max": "max",
                  "l4_payload_bytes": "sum", "max_inner_len": "max", "oversized": "sum",
                  "fragments": "sum", "frag_needed": "sum", "gso_frames": "sum"}


def overhead(
    packets: pd.DataFrame,
    *,
    underlay_mtu: int | None = None,
    by_vni: bool = True,
) -> pd.DataFrame:
    """Encapsulation cost and MTU headroom per (encap, vni), or per encap (schema above):
    the partial of the whole table, merged.

    ``underlay_mtu`` None means :data:`DEFAULT_UNDERLAY_MTU` (1500).
    """
    if packets.empty:
        return typed_frame(pd.DataFrame(), OVERHEAD_SCHEMA)
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    partial = overhead_partial(packets, underlay_mtu=mtu, by_vni=by_vni,
                               order=np.arange(len(packets)))
    return overhead_table([partial], underlay_mtu=mtu,
                          payload_estimated="l4_payload_len" not in packets)


def overhead_partial(packets: pd.DataFrame, *, underlay_mtu: int, by_vni: bool = True,
                     order: np.ndarray | None = None) -> pd.DataFrame:
    """Per (encap, vni) (or encap) of one partition of whole packets: sums, extremes and its
    oversized datagrams (a datagram's fragments at one point are in one packet, so in one
    partition: their counts add up)."""
    order = packets.index.to_numpy(np.int64) if order is None else order
    sizes = size_arrays(packets, underlay_mtu=underlay_mtu)
    rows = Rows(packets)
    encap, names = rows.encap_codes()
    vni = rows.codes("vni")
    group = group_rows(encap, vni)[0] if by_vni else group_rows(encap)[0]
    cost, has_cost = rows.values("overhead_bytes", "int64", 0), ~rows.isna("overhead_bytes")
    has_l4 = ~np.isnan(sizes.l4_payload_len)
    oversized = np.flatnonzero(sizes.oversized)
    # one row per oversized datagram (per group), so its fragments count once
    first_of_datagram = np.zeros(len(packets), bool)
    first_of_datagram[oversized[distinct_rows(group[oversized],
                                              sizes.datagram()[oversized])]] = True
    keys = {"encap": pd.Series(key_text(encap, names))}
    if by_vni:
        keys["vni"] = rows.take("vni", np.arange(len(packets)))
    return aggregate(keys, order, {
        "packets": Agg("sum"),
        "wire_bytes": Agg("sum", rows.values("wire_len", "int64", 0)),
        "overhead_bytes": Agg("sum", cost), "costed": Agg("sum", valid=has_cost),
        "overhead_min": Agg("min", cost, has_cost), "overhead_max": Agg("max", cost, has_cost),
        "l4_payload_bytes": Agg("sum", np.where(has_l4, sizes.l4_payload_len, 0)
                                .astype(np.int64), has_l4),
        # offload super-frames are no wire packets
        "max_inner_len": Agg("max", sizes.ip_len, ~np.isnan(sizes.ip_len) & ~sizes.gso),
        "oversized": Agg("sum", valid=first_of_datagram),
        "fragments": Agg("sum", valid=rows.values("fragment", "bool", False)),
        "frag_needed": Agg("sum", valid=sizes.frag_needed),
        "gso_frames": Agg("sum", valid=sizes.gso),
    })


def overhead_keys(partials: list[pd.DataFrame]) -> list[str]:
    """The groups of the overhead partials: per overlay (encap, VNI) where every partial has
    the VNI, else per encapsulation."""
    return OVERLAY_KEYS if all("vni" in p for p in partials) else ["encap"]


def overhead_table(partials: list[pd.DataFrame], *, underlay_mtu: int,
                   payload_estimated: bool) -> pd.DataFrame:
    """The overhead table from every partition's partial."""
    keys = overhead_keys(partials)
    by_vni = "vni" in keys
    table = merge(partials, keys, OVERHEAD_KINDS)
    if not len(table):
        return typed_frame(pd.DataFrame(), OVERHEAD_SCHEMA)
    if not by_vni:
        table["vni"] = pd.array([pd.NA] * len(table), dtype="UInt32")
    costed, cost_bytes = table["costed"].to_numpy(), table["overhead_bytes"].to_numpy()
    table["overhead_mean"] = pd.arrays.FloatingArray(cost_bytes / np.maximum(costed, 1),
                                                     costed == 0)
    for name in ("wire_bytes", "overhead_bytes", "l4_payload_bytes"):
        table[name] = pd.array(table[name], dtype="Int64")
    table = in_key_order(table)
    wire = table["wire_bytes"].astype("Float64")
    table["overhead_share"] = table["overhead_bytes"] / wire
    table["payload_efficiency"] = table["l4_payload_bytes"] / wire
    table["underlay_mtu"] = underlay_mtu
    table["inner_mtu"] = underlay_mtu - table["overhead_max"]
    table["headroom"] = table["inner_mtu"] - table["max_inner_len"]
    # overlays first (the point of the table), the untunnelled baseline last
    table = table.sort_values("encap", key=lambda s: s.eq(NO_TUNNEL), kind="stable")
    typed = typed_frame(table, OVERHEAD_SCHEMA)
    typed.attrs["payload_estimated"] = payload_estimated
    return typed
