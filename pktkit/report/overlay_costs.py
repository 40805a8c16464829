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
    group_extreme,
    group_nunique,
    group_rows,
    group_sum,
    tunnel_rows,
)
from pktkit.capture.frame import typed_frame
from pktkit.report.labels import (
    distinct_text,
    joined,
    key_text,
    text_column,
)
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


def overlays(packets: pd.DataFrame) -> pd.DataFrame:
    """Per (encap, vni) of tunnelled packets: traffic, flows and VTEPs (schema above)."""
    encap, names = Rows(packets).encap_codes()
    tunnelled = np.flatnonzero(tunnel_rows(encap, names))
    if not len(tunnelled):
        return typed_frame(pd.DataFrame(), OVERLAYS_SCHEMA)
    rows = Rows(packets, tunnelled)
    encap = encap[tunnelled]
    group, first = group_rows(encap, rows.codes("vni"))
    count = len(first)
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    table = pd.DataFrame({
        "encap": key_text(encap[first], names), "vni": rows.take("vni", first),
        "packets": np.bincount(group, minlength=count),
        "bytes": group_sum(group, count, rows.values("wire_len", "int64", 0)),
        "flows": group_nunique(group, count, rows.codes("flow_id")),
        "captures": group_nunique(group, count, rows.codes("capture")),
        "first_ts_ns": group_extreme(group, count, ts, has_ts, largest=False),
        "last_ts_ns": group_extreme(group, count, ts, has_ts, largest=True),
    })
    del ts, has_ts
    pairs = _vtep_pairs(rows, group, count)
    table["vtep_pairs"] = [len(found) for found in pairs]
    table["vteps"] = [joined(found, "; ") for found in pairs]
    table["outer_dports"] = [joined(found)
                             for found in distinct_text(rows, "outer_dport", group, count)]
    return typed_frame(in_key_order(table), OVERLAYS_SCHEMA)


def _vtep_pairs(rows: Rows, groups: np.ndarray, count: int) -> list[set[str]]:
    """Per group, its unordered VTEP pairs ``a ↔ b`` (a ≤ b; both directions between two
    VTEPs are one pair), from the distinct (outer_src, outer_dst) of its rows."""
    src, dst = rows.codes("outer_src"), rows.codes("outer_dst")
    both = np.flatnonzero((src >= 0) & (dst >= 0))  # a pair with an NA side is no pair
    at = both[group_rows(groups[both], src[both], dst[both])[1]]
    del src, dst, both
    found: list[set[str]] = [set() for _ in range(count)]
    for group, a, b in zip(groups[at].tolist(), text_column(rows.take("outer_src", at)).tolist(),
                           text_column(rows.take("outer_dst", at)).tolist(), strict=True):
        low, high = (a, b) if a <= b else (b, a)
        found[group].add(f"{low} ↔ {high}")
    return found


def overhead(
    packets: pd.DataFrame,
    *,
    underlay_mtu: int | None = None,
    by_vni: bool = True,
) -> pd.DataFrame:
    """Encapsulation cost and MTU headroom per (encap, vni), or per encap (schema above).

    ``underlay_mtu`` None means :data:`DEFAULT_UNDERLAY_MTU` (1500).
    """
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    if packets.empty:
        return typed_frame(pd.DataFrame(), OVERHEAD_SCHEMA)
    sizes = size_arrays(packets, underlay_mtu=mtu)
    rows = Rows(packets)
    encap, names = rows.encap_codes()
    group, first = group_rows(encap, rows.codes("vni")) if by_vni else group_rows(encap)
    count = len(first)
    cost, has_cost = rows.values("overhead_bytes", "int64", 0), ~rows.isna("overhead_bytes")
    cost_bytes = group_sum(group, count, cost)
    costed = np.bincount(group[has_cost], minlength=count)  # packets with an overhead
    has_l4 = ~np.isnan(sizes.l4_payload_len)
    inner = ~np.isnan(sizes.ip_len) & ~sizes.gso  # offload super-frames are no wire packets
    oversized = np.flatnonzero(sizes.oversized)
    table = pd.DataFrame({
        "encap": key_text(encap[first], names),
        "vni": (rows.take("vni", first) if by_vni
                else pd.array([pd.NA] * count, dtype="UInt32")),
        "packets": np.bincount(group, minlength=count),
        "wire_bytes": pd.array(group_sum(group, count, rows.values("wire_len", "int64", 0)),
                               dtype="Int64"),
        "overhead_mean": pd.arrays.FloatingArray(cost_bytes / np.maximum(costed, 1),
                                                 costed == 0),
        "overhead_min": group_extreme(group, count, cost, has_cost, largest=False),
        "overhead_max": group_extreme(group, count, cost, has_cost, largest=True),
        "overhead_bytes": pd.array(cost_bytes, dtype="Int64"),
        "l4_payload_bytes": pd.array(group_sum(group[has_l4], count,
                                                sizes.l4_payload_len[has_l4].astype(np.int64)),
                                     dtype="Int64"),
        "max_inner_len": group_extreme(group, count, sizes.ip_len, inner, largest=True),
        # one datagram number per oversized datagram, so its fragments count once
        "oversized": group_nunique(group[oversized], count, sizes.datagram()[oversized]),
        "fragments": np.bincount(group[rows.values("fragment", "bool", False)],
                                 minlength=count),
        "frag_needed": np.bincount(group[sizes.frag_needed], minlength=count),
        "gso_frames": np.bincount(group[sizes.gso], minlength=count),
    })
    del sizes, group, cost, has_cost, has_l4, inner
    table = in_key_order(table)
    wire = table["wire_bytes"].astype("Float64")
    table["overhead_share"] = table["overhead_bytes"] / wire
    table["payload_efficiency"] = table["l4_payload_bytes"] / wire
    table["underlay_mtu"] = mtu
    table["inner_mtu"] = mtu - table["overhead_max"]
    table["headroom"] = table["inner_mtu"] - table["max_inner_len"]
    # overlays first (the point of the table), the untunnelled baseline last
    table = table.sort_values("encap", key=lambda s: s.eq(NO_TUNNEL), kind="stable")
    typed = typed_frame(table, OVERHEAD_SCHEMA)
    typed.attrs["payload_estimated"] = "l4_payload_len" not in packets
    return typed
