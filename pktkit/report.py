"""Report tables computed from the packet table (:func:`pktkit.table.read_packets`).

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
from typing import Any

import numpy as np
import pandas as pd

from pktkit.table import empty_frame

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
NO_TUNNEL = "none"
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


def _typed(df: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with exactly the schema's columns, in order and with its dtypes."""
    if df.empty:
        return empty_frame(schema)
    return df.reset_index(drop=True)[list(schema)].astype(dict(schema))


def _text(series: pd.Series) -> pd.Series:
    """A category/string column as the nullable string dtype (NA stays NA)."""
    return series.astype("string")


def _tunnelled(packets: pd.DataFrame) -> pd.Series:
    return _text(packets["encap"]).fillna(NO_TUNNEL).ne(NO_TUNNEL)


# -- per-packet sizes ----------------------------------------------------------------------


def _datagram_groups(packets: pd.DataFrame, fragment: np.ndarray,
                     starts: np.ndarray) -> np.ndarray:
    """A datagram number for each fragment row (in ``fragment``'s order).

    Fragments share a datagram when they share :data:`_DATAGRAM_KEY`, but an IP id repeats
    (IPv4's wraps after 65536 datagrams of one src/dst/proto), so within a key, in capture
    order, a first fragment (``starts``) or a gap longer than the kernel's reassembly
    timeout begins a new datagram. (A sender that emits the first fragment last would be
    split wrongly; Linux sends them in order.)"""
    rows = np.flatnonzero(fragment)
    key = packets.iloc[rows][_DATAGRAM_KEY].groupby(
        _DATAGRAM_KEY, dropna=False, observed=True, sort=False).ngroup().to_numpy()
    ts = packets["ts_ns"].to_numpy("float64", na_value=np.nan)[rows]
    order = np.lexsort((np.arange(len(rows)), key))  # by key, then capture order
    key, ts, first = key[order], ts[order], starts[rows][order]
    new = np.ones(len(rows), bool)
    gap = np.nan_to_num(np.diff(ts), nan=0.0)
    new[1:] = (key[1:] != key[:-1]) | first[1:] | (gap > REASSEMBLY_TIMEOUT_NS)
    groups = np.empty(len(rows), np.int64)
    groups[order] = np.cumsum(new) - 1
    return groups


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
    n = len(packets)
    if n == 0:
        return _typed(pd.DataFrame(), SIZES_SCHEMA).set_axis(packets.index)
    version = packets["ip_version"].astype("Int64")
    is_ip = version.notna().to_numpy()
    v6 = version.eq(6).fillna(False).to_numpy(bool)
    fragment = packets["fragment"].fillna(False).to_numpy(bool)
    proto = packets["proto"].astype("Int64").fillna(-1).to_numpy()
    overhead = packets["overhead_bytes"].astype("Int64").fillna(0).to_numpy()
    link = packets["linktype"].astype("Int64").map(LINK_HEADER_BYTES).astype("Int64")
    # the outermost IP packet: what the underlay MTU applies to
    outer_len = (packets["wire_len"].astype("Int64") - link).to_numpy("float64", na_value=np.nan)

    if "ip_len" in packets:
        ip_len = packets["ip_len"].astype("Int64").to_numpy("float64", na_value=np.nan)
    else:
        ip_len = np.where(is_ip, outer_len - overhead, np.nan)
    # IP header bytes in front of the fragmentable part (IPv6: plus the fragment header)
    ip_header = np.where(v6, 40, 20) + np.where(v6 & fragment, 8, 0)
    datagram_header = np.where(v6, 40, 20)
    ip_payload = ip_len - ip_header

    has_l4_header = np.isin(proto, (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6))
    # a fragment without ports or ICMP type is a non-first one: no L4 header in it
    non_first = (fragment & has_l4_header & packets["sport"].isna().to_numpy()
                 & packets["icmp_type"].isna().to_numpy())
    if "l4_payload_len" in packets:
        l4_payload = packets["l4_payload_len"].astype("Int64").to_numpy("float64",
                                                                        na_value=np.nan)
    else:
        l4_header = np.select([non_first, proto == IPPROTO_TCP, has_l4_header], [0, 20, 8], 0)
        l4_payload = np.maximum(ip_payload - l4_header, 0)

    # datagrams: each unfragmented packet is its own; fragments are grouped by _DATAGRAM_KEY
    datagram = np.arange(n, dtype="int64")
    datagram_len = ip_len.copy()
    if fragment.any():
        offset = (packets["frag_offset"].astype("Int64").to_numpy("float64", na_value=np.nan)
                  if "frag_offset" in packets else None)
        # a first fragment: offset 0, else one that carries its L4 header (ports, ICMP type)
        starts = offset == 0 if offset is not None else fragment & has_l4_header & ~non_first
        group_ids = _datagram_groups(packets, fragment, starts) + n  # apart from unfragmented
        datagram[fragment] = group_ids
        if offset is not None:  # exact, and immune to duplicated fragments
            end = pd.Series(offset[fragment] + ip_payload[fragment])
            data_bytes = end.groupby(group_ids).transform("max").to_numpy()
        else:
            data_bytes = pd.Series(ip_payload[fragment]).groupby(group_ids).transform(
                "sum").to_numpy()
        datagram_len[fragment] = datagram_header[fragment] + data_bytes

    inner_mtu = underlay_mtu - overhead
    gso = (proto == IPPROTO_TCP) & ~fragment & (np.nan_to_num(outer_len) > underlay_mtu)
    oversized = ~gso & (np.nan_to_num(datagram_len) > inner_mtu)
    icmp_type = packets["icmp_type"].astype("Int64")
    frag_needed = (
        (version.eq(4) & icmp_type.eq(3) & packets["icmp_code"].astype("Int64").eq(4))
        | (version.eq(6) & icmp_type.eq(2))
    ).fillna(False).to_numpy(bool)

    return pd.DataFrame(
        {
            "ip_len": pd.array(ip_len, dtype="Int64"),  # NaN → NA
            "l4_payload_len": pd.array(np.where(is_ip, l4_payload, np.nan), dtype="Int64"),
            "datagram": pd.array(datagram, dtype="Int64"),
            "datagram_len": pd.array(datagram_len, dtype="Int64"),
            "inner_mtu": pd.array(inner_mtu, dtype="Int64"),
            "gso": pd.array(gso, dtype="boolean"),
            "oversized": pd.array(oversized, dtype="boolean"),
            "frag_needed": pd.array(frag_needed, dtype="boolean"),
        },
        index=packets.index,
    )


# -- overlays and overhead -----------------------------------------------------------------


def _joined(values: pd.Series) -> str | None:
    """Distinct non-NA values, sorted, joined by ", " (None when there are none)."""
    items = sorted({str(v) for v in values.dropna()})
    return ", ".join(items) if items else None


def overlays(packets: pd.DataFrame) -> pd.DataFrame:
    """Per (encap, vni) of tunnelled packets: traffic, flows and VTEPs (schema above)."""
    tunnelled = packets[_tunnelled(packets)]
    if tunnelled.empty:
        return _typed(pd.DataFrame(), OVERLAYS_SCHEMA)
    outer_src, outer_dst = _text(tunnelled["outer_src"]), _text(tunnelled["outer_dst"])
    # unordered pair: both directions between two VTEPs are one pair
    low = outer_src.where(outer_src <= outer_dst, outer_dst)
    high = outer_dst.where(outer_src <= outer_dst, outer_src)
    frame = pd.DataFrame({
        "encap": _text(tunnelled["encap"]), "vni": tunnelled["vni"],
        "wire_len": tunnelled["wire_len"].astype("Int64"), "flow_id": tunnelled["flow_id"],
        "pair": (low + " ↔ " + high), "outer_dport": tunnelled["outer_dport"],
        "capture": tunnelled["capture"], "ts_ns": tunnelled["ts_ns"],
    })
    grouped = frame.groupby(["encap", "vni"], dropna=False, sort=True)
    table = grouped.agg(
        packets=("wire_len", "size"), bytes=("wire_len", "sum"), flows=("flow_id", "nunique"),
        vtep_pairs=("pair", "nunique"), captures=("capture", "nunique"),
        first_ts_ns=("ts_ns", "min"), last_ts_ns=("ts_ns", "max"),
    )
    table["vteps"] = grouped["pair"].agg(lambda s: "; ".join(sorted(set(s.dropna()))) or None)
    table["outer_dports"] = grouped["outer_dport"].agg(_joined)
    return _typed(table.reset_index(), OVERLAYS_SCHEMA)


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
        return _typed(pd.DataFrame(), OVERHEAD_SCHEMA)
    sizes = packet_sizes(packets, underlay_mtu=mtu)
    wire_ok = ~sizes["gso"]
    frame = pd.DataFrame({
        "encap": _text(packets["encap"]).fillna(NO_TUNNEL),
        "vni": packets["vni"] if by_vni else pd.Series(pd.NA, index=packets.index,
                                                        dtype="UInt32"),
        "wire_len": packets["wire_len"].astype("Int64"),
        "overhead": packets["overhead_bytes"].astype("Int64"),
        "l4_payload": sizes["l4_payload_len"],
        "inner_len": sizes["ip_len"].where(wire_ok),
        # one id per oversized datagram, so its fragments count once
        "oversized_datagram": sizes["datagram"].where(sizes["oversized"]),
        "fragment": packets["fragment"].fillna(False).astype("int64"),
        "frag_needed": sizes["frag_needed"].astype("int64"),
        "gso": sizes["gso"].astype("int64"),
    })
    table = frame.groupby(["encap", "vni"], dropna=False, sort=True).agg(
        packets=("wire_len", "size"), wire_bytes=("wire_len", "sum"),
        overhead_mean=("overhead", "mean"), overhead_min=("overhead", "min"),
        overhead_max=("overhead", "max"), overhead_bytes=("overhead", "sum"),
        l4_payload_bytes=("l4_payload", "sum"), max_inner_len=("inner_len", "max"),
        oversized=("oversized_datagram", "nunique"), fragments=("fragment", "sum"),
        frag_needed=("frag_needed", "sum"), gso_frames=("gso", "sum"),
    ).reset_index()
    wire = table["wire_bytes"].astype("Float64")
    table["overhead_share"] = table["overhead_bytes"] / wire
    table["payload_efficiency"] = table["l4_payload_bytes"] / wire
    table["underlay_mtu"] = mtu
    table["inner_mtu"] = mtu - table["overhead_max"]
    table["headroom"] = table["inner_mtu"] - table["max_inner_len"]
    # overlays first (the point of the table), the untunnelled baseline last
    table = table.sort_values("encap", key=lambda s: s.eq(NO_TUNNEL), kind="stable")
    typed = _typed(table, OVERHEAD_SCHEMA)
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
    has_flow = packets["flow_id"].notna() if len(packets) else pd.Series([], dtype=bool)
    rows = packets[has_flow]
    if rows.empty:
        return _typed(pd.DataFrame(), FLOWS_SCHEMA)
    sizes = packet_sizes(rows, underlay_mtu=mtu)
    frame = pd.DataFrame({
        "capture": _text(rows["capture"]), "flow_id": rows["flow_id"].astype("Int64"),
        "encap": _text(rows["encap"]).fillna(NO_TUNNEL), "vni": rows["vni"],
        "proto": rows["proto"], "src": _text(rows["src"]), "sport": rows["sport"],
        "dst": _text(rows["dst"]), "dport": rows["dport"], "ts_ns": rows["ts_ns"],
        "wire_len": rows["wire_len"].astype("Int64"),
        "fragment": rows["fragment"].fillna(False).astype("int64"),
        "datagram_len": sizes["datagram_len"].where(~sizes["gso"]),
        "overhead": rows["overhead_bytes"].astype("Int64"),
    }).reset_index(drop=True)
    # one integer per (capture, flow_id), numbered in order of appearance: everything below
    # is numpy takes and integer groupbys (mapping through a MultiIndex is far slower)
    flow = frame.groupby(["capture", "flow_id"], sort=False).ngroup().to_numpy()
    first_row = np.unique(flow, return_index=True)[1]
    first = frame.iloc[first_row].reset_index(drop=True)
    # side a: the sender of the flow's first frame in this capture
    a_addr = first["src"].to_numpy(object)[flow]
    a_port = first["sport"].astype("Int64").fillna(-1).to_numpy()[flow]
    from_a = ((frame["src"].to_numpy(object) == a_addr)
              & (frame["sport"].astype("Int64").fillna(-1).to_numpy() == a_port))
    wire = frame["wire_len"].fillna(0).to_numpy("int64")
    frame["packets_ab"] = from_a.astype("int64")
    frame["bytes_ab"] = np.where(from_a, wire, 0)
    frame["packets_ba"] = (~from_a).astype("int64")
    frame["bytes_ba"] = np.where(from_a, 0, wire)

    table = frame.groupby(flow, sort=True).agg(
        packets_ab=("packets_ab", "sum"), bytes_ab=("bytes_ab", "sum"),
        packets_ba=("packets_ba", "sum"), bytes_ba=("bytes_ba", "sum"),
        packets=("wire_len", "size"), bytes=("wire_len", "sum"),
        first_ts_ns=("ts_ns", "min"), last_ts_ns=("ts_ns", "max"),
        max_ip_len=("datagram_len", "max"), fragments=("fragment", "sum"),
    ).reset_index(drop=True)
    table = pd.concat([first[["capture", "flow_id", "encap", "vni", "proto", "src", "sport",
                              "dst", "dport"]], table], axis=1)
    table = table.rename(columns={"src": "a_addr", "sport": "a_port", "dst": "b_addr",
                                  "dport": "b_port"})
    table["duration_ns"] = table["last_ts_ns"] - table["first_ts_ns"]
    seconds = table["duration_ns"].astype("Float64") / 1e9
    table["throughput_bps"] = (table["bytes"].astype("Float64") * 8 / seconds).where(seconds > 0)

    conversation = _conversation_key(table["proto"], _endpoint(table["a_addr"], table["a_port"]),
                                     _endpoint(table["b_addr"], table["b_port"]))
    _attach_overlay(table, rows, flow, conversation)
    # the inner MTU of the flow's overlay: underlay MTU minus that overlay's largest overhead
    tunnel_overhead = frame[frame["encap"].ne(NO_TUNNEL)].groupby(
        ["encap", "vni"], dropna=False, as_index=False)["overhead"].max()
    overlay_overhead = table[["overlay_encap", "overlay_vni"]].merge(
        tunnel_overhead.rename(columns={"encap": "overlay_encap", "vni": "overlay_vni"}),
        on=["overlay_encap", "overlay_vni"], how="left")["overhead"]
    table["path_mtu"] = (mtu - overlay_overhead.fillna(0).to_numpy("int64"))
    table["exceeds_mtu"] = (table["max_ip_len"] > table["path_mtu"]).fillna(False)
    table["nat_flow_id"] = _nat_flow_ids(table, rows, flow, conversation, nat_flows)
    # the flows in trouble first, then the heaviest
    table = table.sort_values(["exceeds_mtu", "bytes", "capture", "flow_id"],
                              ascending=[False, False, True, True], kind="stable")
    return _typed(table, FLOWS_SCHEMA)


def _first_per_flow(values: pd.Series, flow: np.ndarray, flows_count: int) -> pd.Series:
    """The first non-NA value of each flow (``flow``: the flow number of each value)."""
    firsts = pd.Series(values.to_numpy(), dtype=values.dtype).groupby(flow).first()
    return firsts.reindex(range(flows_count))


def _attach_overlay(table: pd.DataFrame, rows: pd.DataFrame, flow: np.ndarray,
                    conversation: pd.Series) -> None:
    """Set overlay_encap/overlay_vni: the flow's own tunnel, else the one carrying its packets."""
    own = table["encap"].ne(NO_TUNNEL)
    encap = table["encap"].where(own).astype("string")
    vni = table["vni"].astype("UInt32").where(own)
    if "packet_id" in rows:  # the correlation links sightings of one packet exactly
        tunnelled = rows[_tunnelled(rows) & rows["packet_id"].notna()]
        carrier = tunnelled.drop_duplicates("packet_id").set_index("packet_id")
        packet_id = rows["packet_id"]
        encap = encap.fillna(_first_per_flow(
            packet_id.map(_text(carrier["encap"])).astype("string"), flow, len(table)))
        vni = vni.fillna(_first_per_flow(
            packet_id.map(carrier["vni"]).astype("UInt32"), flow, len(table)))
    else:  # the same 5-tuple inside exactly one overlay
        carriers = pd.DataFrame({"key": conversation[own], "encap": encap[own],
                                 "vni": vni[own]}).drop_duplicates()
        carriers = carriers[~carriers["key"].duplicated(keep=False)]
        found = pd.DataFrame({"key": conversation.where(~own)}).merge(carriers, on="key",
                                                                      how="left")
        encap = encap.fillna(found["encap"].astype("string"))
        vni = vni.fillna(found["vni"].astype("UInt32"))
    table["overlay_encap"] = encap
    table["overlay_vni"] = vni


def _nat_flow_ids(table: pd.DataFrame, rows: pd.DataFrame, flow: np.ndarray,
                  conversation: pd.Series, nat_flows: pd.DataFrame | None) -> pd.Series:
    if "nat_flow_id" in rows:  # labelled by the correlation, on every sighting
        return _first_per_flow(rows["nat_flow_id"].astype("Int64"), flow, len(table))
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
        reason = _text(packets["error"])
        snaplen_cut = reason.isna() & (packets["cap_len"].astype("Int64")
                                       < packets["wire_len"].astype("Int64")).fillna(False)
        reason = reason.mask(snaplen_cut, "snaplen-cut")
        flagged = packets.assign(reason=reason).dropna(subset=["reason"])
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
    return _typed(table.sort_values(["capture", "reason"], kind="stable"), ERRORS_SCHEMA)


def captures(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per capture file: volume, time span, link type, interfaces, problems."""
    if packets.empty:
        return _typed(pd.DataFrame(), CAPTURES_SCHEMA)
    frame = pd.DataFrame({
        "capture": _text(packets["capture"]), "wire_len": packets["wire_len"].astype("Int64"),
        "ts_ns": packets["ts_ns"], "linktype": packets["linktype"],
        "interface": packets["interface"], "tunnelled": _tunnelled(packets).astype("int64"),
        "fragment": packets["fragment"].fillna(False).astype("int64"),
        "error": packets["error"].notna().astype("int64"),
    })
    grouped = frame.groupby("capture", sort=False)
    table = grouped.agg(
        packets=("wire_len", "size"), bytes=("wire_len", "sum"), first_ts_ns=("ts_ns", "min"),
        last_ts_ns=("ts_ns", "max"), linktype=("linktype", "first"),
        tunnelled=("tunnelled", "sum"), fragments=("fragment", "sum"), errors=("error", "sum"),
    )
    table["interfaces"] = grouped["interface"].agg(_joined)
    cut = {s["capture"] for s in packets.attrs.get("read_stats", [])
           if s.get("stopped_at") is not None}
    table["complete"] = ~table.index.isin(list(cut))
    return _typed(table.reset_index(), CAPTURES_SCHEMA)


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
