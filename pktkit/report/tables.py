"""Report tables computed from the packet table (:func:`pktkit.capture.table.read_packets`).

Every function takes the packet table and returns a DataFrame with the nullable dtypes listed
below (``<NA>`` means "not applicable"); :func:`build_tables` makes all of them at once and
:func:`summary` turns them into a JSON-ready dict. Empty input gives empty, typed tables.

Sizes. The table has no IP length column yet, so the innermost IP packet's size is derived
from the frame: ``ip_len = wire_len − link header − overhead_bytes``, with the capture's link
header by linktype (Ethernet 14, SLL 16, SLL2 20, BSD/OpenBSD loopback 4, raw IP 0). This is
exact for every tunnel the decoder knows: an L2 tunnel's ``overhead_bytes`` already counts the
outer link header (14), which equals the inner Ethernet header the inner packet brings; an IP
tunnel's overhead has no link bytes and its payload none either. It is 4 bytes off per 802.1Q
tag (the table does not say which frames are tagged). Columns ``ip_len``, ``l4_payload_len``
and ``frag_offset``, when the table has them, are used instead of the derivations.

Path MTU. ``underlay_mtu`` (default 1500) is the MTU of the node network, the one the outer
IP packet has to fit. It is a parameter, not inferred: the largest packet seen says nothing
about jumbo-frame underlays that carried only small packets, and host captures hold TCP
offload super-frames (GSO/TSO/GRO) far above the MTU. A tunnelled packet's *inner MTU* is
``underlay_mtu − overhead_bytes`` (1450 for VXLAN/IPv4, 1430 VXLAN/IPv6, 1442 Geneve with an
8-byte option, 1458 NVGRE, 1480 IP-in-IP); an untunnelled packet's is ``underlay_mtu``. A
datagram is *oversized* when its size before fragmentation exceeds that MTU: for fragments the
size is reassembled from the fragments of the same (capture, interface, direction, encap, vni,
src, dst, proto, ip_id), a first fragment starting a new datagram (the id wraps), so a
1500-byte pod datagram that the VTEP split into 1444 + 76 bytes still counts as 1500 > 1450.
TCP frames whose outer IP packet exceeds ``underlay_mtu`` are offload super-frames captured
on a host, not wire packets: they are counted as ``gso_frames`` and left out of
``oversized`` and ``max_inner_len``.

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

``errors`` — one row per (capture, reason)

==========  ======  ================================================================
capture     string  capture file
reason      string  a decode error (``decode.ERROR_REASONS``), ``snaplen-cut`` (frame
                    captured shorter than it was, decoded without error) or
                    ``capture-cut`` (the file ends inside a record)
packets     Int64   frames with that reason (NA for capture-cut)
first_frame Int64   first such frame (for capture-cut: the last whole frame)
frames      string  up to 5 frame numbers, ``…`` when there are more; for capture-cut
                    what the reader said
==========  ======  ================================================================

``captures`` — one row per capture file: capture, packets, bytes, first_ts_ns,
last_ts_ns, linktype, interfaces (names seen, ``, ``-joined), tunnelled, fragments, errors
(frames with a decode error), complete (boolean: the file did not end mid-record).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
from pktkit.analysis.pipeline import Analysis
from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    distinct_rows,
    group_extreme,
    group_first,
    group_nunique,
    group_rows,
    group_sum,
    tunnel_rows,
)
from pktkit.capture.frame import typed_frame

DEFAULT_UNDERLAY_MTU = 1500

# Bytes of the capture's own link header, by LINKTYPE_*. Ethernet without 802.1Q tags.
LINK_HEADER_BYTES: dict[int, int] = {
    1: 14,  # Ethernet
    113: 16,  # Linux cooked (SLL)
    276: 20,  # Linux cooked v2 (SLL2)
    0: 4, 108: 4,  # BSD / OpenBSD loopback
    101: 0, 12: 0, 14: 0, 228: 0, 229: 0,  # raw IP
}

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
# Linux's default ipfrag_time: fragments further apart are never reassembled into one.
REASSEMBLY_TIMEOUT_NS = 30 * 10**9
# Columns that identify one IP datagram's fragments within one capture point.
_DATAGRAM_KEY = ["capture", "interface", "direction", "encap", "vni", "src", "dst", "proto",
                 "ip_id"]

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
ERRORS_SCHEMA: dict[str, str] = {
    "capture": "string", "reason": "string", "packets": "Int64", "first_frame": "Int64",
    "frames": "string",
}
CAPTURES_SCHEMA: dict[str, str] = {
    "capture": "string", "packets": "Int64", "bytes": "Int64", "first_ts_ns": "Int64",
    "last_ts_ns": "Int64", "linktype": "UInt16", "interfaces": "string", "tunnelled": "Int64",
    "fragments": "Int64", "errors": "Int64", "complete": "boolean",
}
SIZES_SCHEMA: dict[str, str] = {
    "ip_len": "Int64", "l4_payload_len": "Int64", "datagram": "Int64", "datagram_len": "Int64",
    "inner_mtu": "Int64", "gso": "boolean", "oversized": "boolean", "frag_needed": "boolean",
}


def _text(series: pd.Series) -> pd.Series:
    """A category/string column as the nullable string dtype (NA stays NA)."""
    return series.astype("string")


# -- per-packet sizes ----------------------------------------------------------------------


def _datagram_groups(packets: pd.DataFrame, rows: np.ndarray,
                     starts: np.ndarray) -> np.ndarray:
    """A datagram number for each fragment (``rows``: their positions, in table order).

    Fragments share a datagram when they share :data:`_DATAGRAM_KEY`, but an IP id repeats
    (IPv4's wraps after 65536 datagrams of one src/dst/proto), so within a key, in capture
    order, a first fragment (``starts``) or a gap longer than the kernel's reassembly
    timeout begins a new datagram. (A sender that emits the first fragment last would be
    split wrongly; Linux sends them in order.)"""
    key = packets[_DATAGRAM_KEY].iloc[rows].groupby(
        _DATAGRAM_KEY, dropna=False, observed=True, sort=False).ngroup().to_numpy()
    ts = packets["ts_ns"].array[rows].to_numpy("float64", na_value=np.nan)
    order = np.lexsort((np.arange(len(rows)), key))  # by key, then capture order
    key, ts, first = key[order], ts[order], starts[order]
    new = np.ones(len(rows), bool)
    gap = np.nan_to_num(np.diff(ts), nan=0.0)
    new[1:] = (key[1:] != key[:-1]) | first[1:] | (gap > REASSEMBLY_TIMEOUT_NS)
    groups = np.empty(len(rows), np.int64)
    groups[order] = np.cumsum(new) - 1
    return groups


def _link_header_bytes(linktype: pd.Series) -> np.ndarray:
    """Each row's link header bytes by its linktype (NaN: unknown linktype or NA)."""
    codes, linktypes = pd.factorize(linktype.array, use_na_sentinel=True)
    known = [LINK_HEADER_BYTES.get(int(value), np.nan) for value in linktypes]
    return np.array([*known, np.nan], dtype=np.float64)[codes]  # code −1 (NA): the last


@dataclass
class _Sizes:
    """:func:`packet_sizes` as numpy arrays, one element per row (float64 NaN: NA)."""

    ip_len: np.ndarray
    l4_payload_len: np.ndarray
    datagram_len: np.ndarray
    fragment_rows: np.ndarray  # positions of the fragments
    fragment_datagram: np.ndarray  # their datagram numbers (≥ the row count)
    gso: np.ndarray
    oversized: np.ndarray
    frag_needed: np.ndarray

    def datagram(self) -> np.ndarray:
        """Each row's datagram number: its position, or for a fragment its datagram's."""
        numbers = np.arange(len(self.ip_len), dtype=np.int64)
        numbers[self.fragment_rows] = self.fragment_datagram
        return numbers


def _size_arrays(packets: pd.DataFrame, underlay_mtu: int) -> _Sizes:
    """The work of :func:`packet_sizes` (non-empty table), column by column in numpy."""
    n = len(packets)
    rows = Rows(packets)
    is_ip = ~rows.isna("ip_version")
    version = rows.values("ip_version", "int16", 0)
    v4, v6 = version == 4, version == 6
    del version
    fragment = rows.values("fragment", "bool", False)
    proto = rows.values("proto", "int32", -1)
    # the outermost IP packet: what the underlay MTU applies to
    outer_len = rows.values("wire_len", "float64", np.nan, copy=True)  # changed in place
    outer_len -= _link_header_bytes(packets["linktype"])
    if "ip_len" in packets:
        ip_len = rows.values("ip_len", "float64", np.nan)
    else:
        ip_len = outer_len - rows.values("overhead_bytes", "int64", 0)
        ip_len[~is_ip] = np.nan
    gso = (proto == IPPROTO_TCP) & ~fragment & (np.nan_to_num(outer_len) > underlay_mtu)
    del outer_len
    # IP header bytes in front of the fragmentable part (IPv6: plus the fragment header)
    ip_payload = ip_len - np.where(v6, 40.0, 20.0)
    ip_payload[v6 & fragment] -= 8

    has_l4_header = np.isin(proto, (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6))
    # a fragment without ports or ICMP type is a non-first one: no L4 header in it
    non_first = fragment & has_l4_header & rows.isna("sport") & rows.isna("icmp_type")
    if "l4_payload_len" in packets:
        l4_payload = rows.values("l4_payload_len", "float64", np.nan, copy=True)
    else:
        l4_header = np.select([non_first, proto == IPPROTO_TCP, has_l4_header], [0, 20, 8], 0)
        l4_payload = np.maximum(ip_payload - l4_header, 0)
        del l4_header
    l4_payload[~is_ip] = np.nan
    del proto, is_ip

    # datagrams: each unfragmented packet is its own; fragments are grouped by _DATAGRAM_KEY
    datagram_len = ip_len.copy()
    fragment_rows = np.flatnonzero(fragment)
    fragment_datagram = np.empty(0, dtype=np.int64)
    if len(fragment_rows):
        offset = (packets["frag_offset"].array[fragment_rows].to_numpy("float64",
                                                                       na_value=np.nan)
                  if "frag_offset" in packets else None)
        # a first fragment: offset 0, else one that carries its L4 header (ports, ICMP type)
        starts = (offset == 0 if offset is not None
                  else (has_l4_header & ~non_first)[fragment_rows])
        # numbered apart from the unfragmented packets' (their positions)
        fragment_datagram = _datagram_groups(packets, fragment_rows, starts) + n
        payload = pd.Series(ip_payload[fragment_rows])
        if offset is not None:  # exact, and immune to duplicated fragments
            data_bytes = (payload + offset).groupby(fragment_datagram).transform("max")
        else:
            data_bytes = payload.groupby(fragment_datagram).transform("sum")
        datagram_len[fragment_rows] = (np.where(v6[fragment_rows], 40, 20)
                                       + data_bytes.to_numpy())
    del ip_payload, has_l4_header, non_first, fragment

    inner_mtu = underlay_mtu - rows.values("overhead_bytes", "int64", 0)
    oversized = ~gso & (np.nan_to_num(datagram_len) > inner_mtu)
    del inner_mtu
    icmp_type = rows.values("icmp_type", "int32", -1)
    frag_needed = ((v4 & (icmp_type == 3) & (rows.values("icmp_code", "int32", -1) == 4))
                   | (v6 & (icmp_type == 2)))
    return _Sizes(ip_len=ip_len, l4_payload_len=l4_payload, datagram_len=datagram_len,
                  fragment_rows=fragment_rows, fragment_datagram=fragment_datagram, gso=gso,
                  oversized=oversized, frag_needed=frag_needed)


def packet_sizes(
    packets: pd.DataFrame, *, underlay_mtu: int = DEFAULT_UNDERLAY_MTU
) -> pd.DataFrame:
    """Derived sizes, one row per packet (same index; see the module docstring).

    ``ip_len``: innermost IP packet bytes; ``l4_payload_len``: its L4 payload (estimated
    without ``l4_payload_len`` column); ``datagram``: an id shared by the fragments of one
    datagram at one capture point (unique for an unfragmented packet); ``datagram_len``: that
    datagram's size before fragmentation; ``inner_mtu``: underlay_mtu − overhead_bytes;
    ``gso``: a TCP frame above the underlay MTU; ``oversized``: datagram_len > inner_mtu and
    not gso; ``frag_needed``: ICMP fragmentation needed / ICMPv6 packet too big.
    """
    if len(packets) == 0:
        return typed_frame(pd.DataFrame(), SIZES_SCHEMA).set_axis(packets.index)
    sizes = _size_arrays(packets, underlay_mtu)
    inner_mtu = underlay_mtu - packets["overhead_bytes"].to_numpy("int64", na_value=0)
    return pd.DataFrame(
        {
            "ip_len": pd.array(sizes.ip_len, dtype="Int64"),  # NaN → NA
            "l4_payload_len": pd.array(sizes.l4_payload_len, dtype="Int64"),
            "datagram": pd.array(sizes.datagram(), dtype="Int64"),
            "datagram_len": pd.array(sizes.datagram_len, dtype="Int64"),
            "inner_mtu": pd.array(inner_mtu, dtype="Int64"),
            "gso": pd.array(sizes.gso, dtype="boolean"),
            "oversized": pd.array(sizes.oversized, dtype="boolean"),
            "frag_needed": pd.array(sizes.frag_needed, dtype="boolean"),
        },
        index=packets.index,
    )


# -- overlays and overhead -----------------------------------------------------------------


def _joined(texts: set[str], separator: str = ", ") -> str | None:
    """Distinct texts, sorted, joined (None when there are none)."""
    return separator.join(sorted(texts)) or None


def _distinct_text(rows: Rows, name: str, groups: np.ndarray, count: int) -> list[set[str]]:
    """Per group, the distinct non-NA values of column ``name`` as text (``str`` of each)."""
    at = distinct_rows(groups, rows.codes(name))
    found: list[set[str]] = [set() for _ in range(count)]
    for group, value in zip(groups[at].tolist(), rows.take(name, at).tolist(), strict=True):
        found[group].add(str(value))
    return found


def _key_text(codes: np.ndarray, names: list[str]) -> pd.arrays.StringArray:
    return pd.array([names[code] for code in codes.tolist()], dtype="string")


def _in_key_order(table: pd.DataFrame) -> pd.DataFrame:
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
        "encap": _key_text(encap[first], names), "vni": rows.take("vni", first),
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
    table["vteps"] = [_joined(found, "; ") for found in pairs]
    table["outer_dports"] = [_joined(found)
                             for found in _distinct_text(rows, "outer_dport", group, count)]
    return typed_frame(_in_key_order(table), OVERLAYS_SCHEMA)


def _vtep_pairs(rows: Rows, groups: np.ndarray, count: int) -> list[set[str]]:
    """Per group, its unordered VTEP pairs ``a ↔ b`` (a ≤ b; both directions between two
    VTEPs are one pair), from the distinct (outer_src, outer_dst) of its rows."""
    src, dst = rows.codes("outer_src"), rows.codes("outer_dst")
    both = np.flatnonzero((src >= 0) & (dst >= 0))  # a pair with an NA side is no pair
    at = both[group_rows(groups[both], src[both], dst[both])[1]]
    del src, dst, both
    found: list[set[str]] = [set() for _ in range(count)]
    for group, a, b in zip(groups[at].tolist(), _text(rows.take("outer_src", at)).tolist(),
                           _text(rows.take("outer_dst", at)).tolist(), strict=True):
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
    sizes = _size_arrays(packets, underlay_mtu=mtu)
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
        "encap": _key_text(encap[first], names),
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
    table = _in_key_order(table)
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


# -- flows ---------------------------------------------------------------------------------


def _endpoint(addr: pd.Series, port: pd.Series) -> pd.Series:
    return _text(addr).fillna("") + "|" + port.astype("Int64").astype("string").fillna("")


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
        "capture": _text(rows.take("capture", first)),
        "flow_id": rows.take("flow_id", first).astype("Int64"),
        "encap": _key_text(encap[first], names), "vni": rows.take("vni", first),
        "proto": rows.take("proto", first),
        "a_addr": _text(rows.take("src", first)), "a_port": rows.take("sport", first),
        "b_addr": _text(rows.take("dst", first)), "b_port": rows.take("dport", first),
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
    sizes = _size_arrays(packets, mtu)
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
        "overlay_encap": _key_text(encap[tunnelled[first]], names),
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


# -- errors and captures -------------------------------------------------------------------


def _frame_list(frames: pd.Series, limit: int = 5) -> str:
    shown = ", ".join(str(int(f)) for f in frames.iloc[:limit])
    return shown + (", …" if len(frames) > limit else "")


def errors(packets: pd.DataFrame) -> pd.DataFrame:
    """Decode problems per (capture, reason), plus snaplen-cut frames and cut files."""
    records: list[dict[str, Any]] = []
    if len(packets):
        rows = Rows(packets)
        has_error = ~rows.isna("error")
        cap_len = rows.values("cap_len", "int64", 0)
        wire_len = rows.values("wire_len", "int64", 0)
        snaplen_cut = (~has_error & ~rows.isna("cap_len") & ~rows.isna("wire_len")
                       & (cap_len < wire_len))
        del cap_len, wire_len
        flagged_rows = np.flatnonzero(has_error | snaplen_cut)
        del has_error
        # only the flagged rows, usually few, become a frame
        flagged = pd.DataFrame({"capture": packets["capture"].array[flagged_rows],
                                "frame": packets["frame"].array[flagged_rows],
                                "reason": _text(pd.Series(packets["error"].array[flagged_rows]))
                                .mask(snaplen_cut[flagged_rows], "snaplen-cut")})
        for (capture, why), group in flagged.groupby([_text(flagged["capture"]), "reason"],
                                                     sort=False):
            records.append({"capture": capture, "reason": why, "packets": len(group),
                            "first_frame": int(group["frame"].iloc[0]),
                            "frames": _frame_list(group["frame"])})
    for stats in packets.attrs.get("read_stats", []):
        if stats.get("stopped_at") is not None:
            records.append({"capture": stats["capture"], "reason": "capture-cut",
                            "packets": pd.NA, "first_frame": stats.get("frames") or pd.NA,
                            "frames": f"{stats.get('reason')} at byte {stats['stopped_at']}"})
    table = pd.DataFrame.from_records(records, columns=list(ERRORS_SCHEMA))
    return typed_frame(table.sort_values(["capture", "reason"], kind="stable"), ERRORS_SCHEMA)


def captures(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per capture file: volume, time span, link type, interfaces, problems."""
    if packets.empty:
        return typed_frame(pd.DataFrame(), CAPTURES_SCHEMA)
    has_capture = packets["capture"].notna().to_numpy()
    rows = Rows(packets, None if has_capture.all() else np.flatnonzero(has_capture))
    del has_capture
    group, first = group_rows(rows.codes("capture"))
    count = len(first)
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    first_ts = group_extreme(group, count, ts, has_ts, largest=False)
    last_ts = group_extreme(group, count, ts, has_ts, largest=True)
    del ts, has_ts
    linktype_row = group_first(group, count, ~rows.isna("linktype"))
    linktype = rows.take("linktype", np.maximum(linktype_row, 0)).mask(linktype_row < 0)
    encap, names = rows.encap_codes()
    table = pd.DataFrame({
        "capture": _text(rows.take("capture", first)),
        "packets": np.bincount(group, minlength=count),
        "bytes": group_sum(group, count, rows.values("wire_len", "int64", 0)),
        "first_ts_ns": first_ts, "last_ts_ns": last_ts, "linktype": linktype,
        "tunnelled": np.bincount(group[tunnel_rows(encap, names)], minlength=count),
        "fragments": np.bincount(group[rows.values("fragment", "bool", False)],
                                 minlength=count),
        "errors": np.bincount(group[~rows.isna("error")], minlength=count),
        "interfaces": [_joined(found)
                       for found in _distinct_text(rows, "interface", group, count)],
    })
    cut = {s["capture"] for s in packets.attrs.get("read_stats", [])
           if s.get("stopped_at") is not None}
    table["complete"] = ~table["capture"].isin(list(cut))
    return typed_frame(table, CAPTURES_SCHEMA)


# -- everything at once, and the summary ---------------------------------------------------

def build_tables(
    packets: pd.DataFrame,
    *,
    underlay_mtu: int | None = None,
    nat_flows: pd.DataFrame | None = None,
    hops: pd.DataFrame | None = None,
    latency: pd.DataFrame | None = None,
    clock_offsets: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every report table, in page order: captures, overlays, overhead, flows, then the
    correlation's tables passed through when given (nat_flows, latency, clock_offsets, hops),
    errors last."""
    tables: dict[str, pd.DataFrame] = {
        "captures": captures(packets),
        "overlays": overlays(packets),
        "overhead": overhead(packets, underlay_mtu=underlay_mtu),
        "flows": flows(packets, nat_flows, underlay_mtu=underlay_mtu),
    }
    given = {"nat_flows": nat_flows, "latency": latency, "clock_offsets": clock_offsets,
             "hops": hops}
    tables.update({name: table for name, table in given.items() if table is not None})
    tables["errors"] = errors(packets)
    return tables


def analysis_tables(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """Every table of an analysis's report, in page order (:func:`build_tables`, nat_flows
    with the columns of ``nat_flows.csv``, plus handshakes and, given a conntrack dump,
    nat_disagreements)."""
    tables = build_tables(analysis.packets, underlay_mtu=analysis.underlay_mtu,
                          nat_flows=analysis.nat_flows[NAT_FLOWS_COLUMNS], hops=analysis.hops,
                          latency=analysis.latency, clock_offsets=analysis.clock_offsets)
    errors = tables.pop("errors")
    tables["handshakes"] = analysis.handshakes
    if analysis.conntrack_given:
        tables["nat_disagreements"] = analysis.nat_disagreements
    tables["errors"] = errors
    return tables


def _plain(value: Any) -> Any:
    """A pandas/numpy scalar as a JSON-ready Python value (NA → None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _records(df: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return [{c: _plain(v) for c, v in zip(columns, row, strict=True)}
            for row in df[columns].itertuples(index=False, name=None)]


def overlay_label(encap: Any, vni: Any) -> str:
    """"vxlan vni 1", "ipip", "untunnelled": an encapsulation and its VNI for labels."""
    if str(encap) == NO_TUNNEL:
        return "untunnelled"
    return str(encap) + ("" if _plain(vni) is None else f" vni {int(vni)}")


def tuple_text(proto: Any, a: Any, a_port: Any, b: Any, b_port: Any) -> str:
    """"tcp 10.0.0.2:80 → 10.0.0.3:5000" (IPv6 addresses with a port in brackets)."""
    names = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp",
             IPPROTO_ICMPV6: "icmpv6"}
    proto = _plain(proto)

    def end(addr: Any, port: Any) -> str:
        port = _plain(port)
        addr = str(addr)
        if port is None:
            return addr
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    return f"{names.get(proto, f'proto {proto}')} {end(a, a_port)} → {end(b, b_port)}"


def nat_tuple(row: Mapping[str, Any], side: str) -> str:
    """A NAT flow's ``orig`` or ``xlat`` tuple as text; for ICMP the "ports" are the echo
    identifier, so they are written as such."""
    if _plain(row["proto"]) in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        text = tuple_text(row["proto"], row[f"{side}_src"], None, row[f"{side}_dst"], None)
        return f"{text} id {_plain(row[f'{side}_sport'])}"
    return tuple_text(row["proto"], row[f"{side}_src"], row[f"{side}_sport"],
                      row[f"{side}_dst"], row[f"{side}_dport"])


# Most serious first: unreadable data, then MTU trouble, then its symptoms. Decode error
# reasons (not listed) rank first.
PROBLEM_RANK = {"capture-cut": 0, "flow-exceeds-mtu": 1, "oversized": 2, "frag-needed": 3,
                "fragments": 4, "snaplen-cut": 5, "gso-frames": 6}


def _problems(tables: Mapping[str, pd.DataFrame], limit: int) -> list[dict[str, Any]]:
    """What went wrong, most frequent first: one dict per problem with a one-line detail."""
    found: list[dict[str, Any]] = []
    cost = tables.get("overhead")
    if cost is not None:
        for row in cost.itertuples(index=False):
            where = overlay_label(row.encap, row.vni)
            if row.oversized:
                found.append({"problem": "oversized", "where": where, "count": int(row.oversized),
                              "detail": f"{row.oversized} datagrams larger than the inner MTU "
                                        f"{row.inner_mtu} (underlay {row.underlay_mtu})"})
            if row.fragments:
                found.append({"problem": "fragments", "where": where,
                              "count": int(row.fragments),
                              "detail": f"{row.fragments} IP fragments"})
            if row.frag_needed:
                found.append({"problem": "frag-needed", "where": where,
                              "count": int(row.frag_needed),
                              "detail": f"{row.frag_needed} ICMP fragmentation needed / "
                                        "packet too big"})
            if row.gso_frames:
                found.append({"problem": "gso-frames", "where": where,
                              "count": int(row.gso_frames),
                              "detail": f"{row.gso_frames} TCP frames above the underlay MTU "
                                        f"{row.underlay_mtu}: offload super-frames captured "
                                        "on a host, or a larger MTU than assumed"})
    flow_table = tables.get("flows")
    if flow_table is not None and len(flow_table):
        too_big = flow_table[flow_table["exceeds_mtu"].fillna(False)]
        # a flow of non-first fragments only is the tail of datagrams its ported flow reports
        tail = (too_big["a_port"].isna() & too_big["fragments"].eq(too_big["packets"])
                & too_big["proto"].isin([IPPROTO_TCP, IPPROTO_UDP]))
        conversation = ["proto", "a_addr", "a_port", "b_addr", "b_port", "overlay_encap",
                        "overlay_vni"]
        for key, group in too_big[~tail].groupby(conversation, dropna=False, sort=False):
            overlay = "" if _plain(key[5]) is None else f" ({overlay_label(key[5], key[6])})"
            found.append({
                "problem": "flow-exceeds-mtu",
                "where": tuple_text(*key[:5]) + overlay,
                "count": len(group),
                "detail": f"datagrams of {int(group['max_ip_len'].max())} bytes > path MTU "
                          f"{int(group['path_mtu'].min())}, seen in "
                          f"{group['capture'].nunique()} captures",
            })
    error_table = tables.get("errors")
    if error_table is not None:
        for reason, group in error_table.groupby("reason", sort=False):
            count = int(group["packets"].fillna(0).sum()) or len(group)
            found.append({"problem": str(reason), "where": ", ".join(group["capture"]),
                          "count": count, "detail": f"{count} × {reason}"})
    found.sort(key=lambda p: (PROBLEM_RANK.get(p["problem"], 0), -p["count"]))
    return found[:limit]


def summary(
    tables: Mapping[str, pd.DataFrame], *, problems: int = 10, nat_flows: int = 10
) -> dict[str, Any]:
    """A JSON-ready dict of the tables: counts, overlays with their overhead, NAT (the
    ``nat_flows`` busiest translations), latency, clock offsets, and the top ``problems``
    (most serious first)."""
    out: dict[str, Any] = {}
    capture_table = tables.get("captures", pd.DataFrame(columns=list(CAPTURES_SCHEMA)))
    flow_table = tables.get("flows")
    nat_table = tables.get("nat_flows")
    error_table = tables.get("errors")
    cost = tables.get("overhead", pd.DataFrame(columns=list(OVERHEAD_SCHEMA)))
    first_ts = _plain(capture_table["first_ts_ns"].min()) if len(capture_table) else None
    last_ts = _plain(capture_table["last_ts_ns"].max()) if len(capture_table) else None
    out["counts"] = {
        "captures": len(capture_table),
        "packets": int(capture_table["packets"].sum()),
        "bytes": int(capture_table["bytes"].sum()),
        "flows": 0 if flow_table is None else len(flow_table),
        "overlays": int(cost["encap"].ne(NO_TUNNEL).sum()),
        "nat_flows": None if nat_table is None else len(nat_table),
        "errors": 0 if error_table is None else int(error_table["packets"].fillna(1).sum()),
    }
    out["time"] = {"first_ts_ns": first_ts, "last_ts_ns": last_ts,
                   "duration_s": None if first_ts is None else (last_ts - first_ts) / 1e9}
    out["underlay_mtu"] = _plain(cost["underlay_mtu"].iloc[0]) if len(cost) else None
    overlay_table = tables.get("overlays", pd.DataFrame(columns=list(OVERLAYS_SCHEMA)))
    cost_columns = ["overhead_mean", "overhead_min", "overhead_max", "overhead_share",
                    "payload_efficiency", "inner_mtu", "max_inner_len", "headroom",
                    "oversized", "fragments", "frag_needed"]
    merged = overlay_table.merge(cost[["encap", "vni", *cost_columns]], on=["encap", "vni"],
                                 how="left")
    out["overlays"] = _records(merged, ["encap", "vni", "packets", "bytes", "flows",
                                        "vtep_pairs", "vteps", "outer_dports", *cost_columns])
    if nat_table is not None:
        kinds = nat_table["kind"].value_counts() if "kind" in nat_table else pd.Series()
        busiest = (nat_table.sort_values("packets", ascending=False, kind="stable")
                   if "packets" in nat_table else nat_table).head(nat_flows)
        out["nat"] = {
            "flows": len(nat_table), "by_kind": {str(k): int(v) for k, v in kinds.items()},
            "translations": [
                {"nat_flow_id": _plain(row["nat_flow_id"]), "kind": _plain(row.get("kind")),
                 "original": nat_tuple(row, "orig"), "translated": nat_tuple(row, "xlat"),
                 "packets": _plain(row.get("packets"))}
                for _, row in busiest.iterrows()],
        }
    latency = tables.get("latency")
    if latency is not None and len(latency):
        slowest = latency.sort_values("p50_ns", ascending=False, na_position="last")
        out["latency"] = {
            str(metric): _records(group.head(5), ["scope", "count", "p50_ns", "p99_ns",
                                                  "max_ns"])
            for metric, group in slowest.groupby("metric", sort=False)
        }
    offsets = tables.get("clock_offsets")
    if offsets is not None and len(offsets):
        out["clock_offsets"] = _records(offsets, [c for c in ("node", "reference_node",
                                                              "offset_ns", "bound_ns",
                                                              "samples") if c in offsets])
    out["problems"] = _problems(tables, problems)
    if cost.attrs.get("payload_estimated"):
        out["notes"] = ["payload_efficiency is an upper bound: the packet table has no "
                        "l4_payload_len, so TCP options are not subtracted"]
    return out
