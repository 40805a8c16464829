"""Per-packet sizes: the innermost IP datagram, reassembled across fragments, against the MTU.

Sizes come from the IP headers' own length fields (the packet table's ``ip_len``: IPv4 total
length, IPv6 40 + payload length), never from the frame length: 802.1Q/802.1ad tags, Ethernet
trailers and the capture's link header change the frame, not the datagram. Only a table
without ``ip_len`` (made by hand) falls back to ``wire_len − link header − overhead_bytes``,
which is off by 4 bytes per VLAN tag and by any trailer. ``l4_payload_len`` and
``frag_offset`` are used likewise when present.

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
TCP frames whose outer IP packet exceeds ``underlay_mtu`` (their innermost ``ip_len`` exceeds
the inner MTU) are offload super-frames captured on a host, not wire packets: they are counted
as ``gso_frames`` and left out of ``oversized`` and ``max_inner_len``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    Rows,
)
from pktkit.capture.frame import typed_frame
from pktkit.capture.headers import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP

DEFAULT_UNDERLAY_MTU = 1500


# Bytes of the capture's own link header, by LINKTYPE_*. Ethernet without 802.1Q tags.
LINK_HEADER_BYTES: dict[int, int] = {
    1: 14,  # Ethernet
    113: 16,  # Linux cooked (SLL)
    276: 20,  # Linux cooked v2 (SLL2)
    0: 4, 108: 4,  # BSD / OpenBSD loopback
    101: 0, 12: 0, 14: 0, 228: 0, 229: 0,  # raw IP
}


# Linux's default ipfrag_time: fragments further apart are never reassembled into one.
REASSEMBLY_TIMEOUT_NS = 30 * 10**9


# Columns that identify one IP datagram's fragments within one capture point.
_DATAGRAM_KEY = ["capture", "interface", "direction", "encap", "vni", "src", "dst", "proto",
                 "ip_id"]


SIZES_SCHEMA: dict[str, str] = {
    "ip_len": "Int64", "l4_payload_len": "Int64", "datagram": "Int64", "datagram_len": "Int64",
    "inner_mtu": "Int64", "gso": "boolean", "oversized": "boolean", "frag_needed": "boolean",
}


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
class Sizes:
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


def size_arrays(packets: pd.DataFrame, underlay_mtu: int) -> Sizes:
    """The work of :func:`packet_sizes` (non-empty table), column by column in numpy."""
    n = len(packets)
    rows = Rows(packets)
    is_ip = ~rows.isna("ip_version")
    version = rows.values("ip_version", "int16", 0)
    v4, v6 = version == 4, version == 6
    del version
    fragment = rows.values("fragment", "bool", False)
    proto = rows.values("proto", "int32", -1)
    overhead = rows.values("overhead_bytes", "int64", 0)
    if "ip_len" in packets:
        ip_len = rows.values("ip_len", "float64", np.nan)
    else:  # a hand-made table: derived from the frame (see the module docstring)
        ip_len = rows.values("wire_len", "float64", np.nan, copy=True)
        ip_len -= _link_header_bytes(packets["linktype"]) + overhead
        ip_len[~is_ip] = np.nan
    # the underlay MTU applies to the outermost IP packet: the innermost one plus what the
    # tunnels add inside it, i.e. ip_len against the inner MTU (underlay MTU − overhead)
    inner_mtu = underlay_mtu - overhead
    gso = (proto == IPPROTO_TCP) & ~fragment & (np.nan_to_num(ip_len) > inner_mtu)
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

    oversized = ~gso & (np.nan_to_num(datagram_len) > inner_mtu)
    del inner_mtu, overhead
    icmp_type = rows.values("icmp_type", "int32", -1)
    frag_needed = ((v4 & (icmp_type == 3) & (rows.values("icmp_code", "int32", -1) == 4))
                   | (v6 & (icmp_type == 2)))
    return Sizes(ip_len=ip_len, l4_payload_len=l4_payload, datagram_len=datagram_len,
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
    sizes = size_arrays(packets, underlay_mtu)
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
