"""Frame decoding: one captured frame's bytes → a :class:`DecodedPacket`.

The walk goes link layer → 802.1Q/802.1ad tags → IPv4/IPv6 → L4, and through tunnels
recursively (VXLAN, VXLAN-GPE, Geneve, GRE/NVGRE/ERSPAN, IP-in-IP) to the innermost packet,
at most ``max_depth`` tunnels deep.

Own struct-based code rather than dpkt objects, deliberately: the table needs byte offsets
(``overhead_bytes``), the partial fields of a cut header, and a short reason for every failure;
dpkt has no VXLAN or Geneve, decodes eagerly (recursing into payloads we may not want), and
signals problems with several exception types at arbitrary depths. Every length check is
explicit here, and :meth:`Decoder.decode` additionally turns any unexpected exception into
``error="internal-error"``, so no exception ever escapes.

Byte regions: each layer is parsed inside ``[off, end)``, where ``end`` is the smaller of the
enclosing length field and the captured bytes, and ``clipped`` says that the real data goes on
past ``end`` (snaplen cut, or the rest of an IP fragment). A header that does not fit its region
is ``truncated`` when the region is clipped and a ``bad-...-header`` otherwise (a length field
that contradicts its container).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from pktkit.capture.formats import (
    ARPHRD_ETHER,
    ARPHRD_NETLINK,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_ALIASES,
    PKTTYPE_DIRECTION,
)
from pktkit.capture.headers import (
    CISCO_METADATA,
    ERSPAN_II,
    ERSPAN_III,
    ETH_ARP,
    ETH_CMD,
    ETH_ERSPAN_2,
    ETH_ERSPAN_3,
    ETH_IPV4,
    ETH_IPV6,
    ETH_TEB,
    ETHERNET,
    GENEVE,
    GENEVE_PORT,
    GRE,
    ICMP,
    ICMP_ECHO,
    ICMP_ECHO_TYPES,
    IPPROTO_AH,
    IPPROTO_FRAGMENT,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4,
    IPV6,
    IPV6_EXTENSIONS,
    IPV6_FAMILIES,
    IPV6_FRAGMENT,
    MAX_ETHER_LENGTH,
    SLL,
    SLL2,
    TCP,
    UDP,
    VLAN,
    VLAN_TPIDS,
    VXLAN,
    VXLAN_GPE,
    VXLAN_GPE_PORT,
    VXLAN_PORTS,
)
from pktkit.capture.reasons import (
    BAD_ARP,
    BAD_IP,
    BAD_L4,
    BAD_LINK,
    BAD_TUNNEL,
    INTERNAL_ERROR,
    TOO_DEEP,
    TRUNCATED,
    UNKNOWN_LINKTYPE,
)

MAX_TUNNEL_DEPTH = 8

# ``payload_hash`` covers at most this many leading payload bytes: a fixed window, so that
# sightings cut by different snaplens (or behind different header stacks) still hash alike,
# and a columnar decoder can gather it like a header. A multiple of 8 (see payload_digest).
PAYLOAD_HASH_BYTES = 64
HASH_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_MASK64 = (1 << 64) - 1
_WORDS = struct.Struct(f"<{PAYLOAD_HASH_BYTES // 8}Q")

# field offsets, from the declared layouts
_ETH_TYPE = ETHERNET.offset["type"]
_SLL2_PROTO, _SLL2_IFINDEX = SLL2.offset["ethtype"], SLL2.offset["intindex"]
_SLL2_HATYPE, _SLL2_PKTTYPE = SLL2.offset["hrd"], SLL2.offset["type"]
_SLL_PKTTYPE, _SLL_HATYPE, _SLL_PROTO = SLL.offset["type"], SLL.offset["hrd"], SLL.offset["ethtype"]
_CMD_TYPE = CISCO_METADATA.offset["type"]
_IP4_LEN, _IP4_TTL, _IP4_PROTO = IPV4.offset["len"], IPV4.offset["ttl"], IPV4.offset["p"]
_IP4_SRC, _IP4_DST = IPV4.offset["src"], IPV4.offset["dst"]
_IP6_PLEN, _IP6_NEXT, _IP6_HLIM = IPV6.offset["plen"], IPV6.offset["nxt"], IPV6.offset["hlim"]
_IP6_SRC, _IP6_DST = IPV6.offset["src"], IPV6.offset["dst"]
_FRAG6_OFFSET, _FRAG6_ID = IPV6_FRAGMENT.offset["_frag_off_resv_m"], IPV6_FRAGMENT.offset["id"]
_TCP_SEQ, _TCP_OFFSET = TCP.offset["seq"], TCP.offset["_off_flags"]
_UDP_LEN = UDP.offset["ulen"]
_ICMP_ECHO_AT = ICMP.size  # the echo identifier and sequence follow the 4-byte ICMP header
_VXLAN_VNI = VXLAN.offset["vni_reserved"]
_GPE_NEXT = VXLAN_GPE.offset["next_protocol"]
_GENEVE_PROTO = GENEVE.offset["protocol"]

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U16_U16 = struct.Struct("!HH")
_U16_U16_U16 = struct.Struct("!HHH")
_U32_U32 = struct.Struct("!II")
_inet_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


class Tunnel(NamedTuple):
    """One decoded tunnel header."""

    kind: str  # vxlan, vxlan-gpe, geneve, nvgre, gre, erspan, ipip
    vni: int | None = None  # VXLAN/Geneve VNI, NVGRE VSID, or the key of a plain GRE/ERSPAN
    gre_key: int | None = None  # the raw 32-bit GRE key (GRE, NVGRE, ERSPAN), if present
    erspan_type: int | None = None  # 1, 2 or 3 (ERSPAN type I/II/III)
    erspan_session: int | None = None


@dataclass(slots=True)
class DecodedPacket:
    """What one frame holds. Fields that could not be read stay None; ``error`` says why."""

    linktype: int
    error: str | None = None
    ifindex: int | None = None  # SLL2 interface index
    pkttype: int | None = None  # SLL/SLL2 packet type
    direction: str | None = None  # "in", "out", "other", from the SLL/SLL2 packet type
    vlan_ids: list[int] = field(default_factory=list)  # every 802.1Q/ad tag, outermost first
    tunnels: list[Tunnel] = field(default_factory=list)  # outermost first
    l3_offset: int | None = None  # where the outermost network header starts in the frame
    link_wire_bytes: int = 0  # the outer link header as it was on the wire (see overhead_bytes)
    link_header_len: int = 0  # the capture's own link header (Ethernet 14, SLL2 20, ...)
    link_ethernet: bool = False  # the captured device framed packets as Ethernet
    payload_offset: int = 0  # where the innermost tunnel's payload starts
    inner_ether: bool = False  # the innermost tunnel carries an Ethernet frame
    # the outermost IP header and its L4 ports; set only when a tunnel was decoded
    outer_src: str | None = None
    outer_dst: str | None = None
    outer_proto: int | None = None
    outer_sport: int | None = None
    outer_dport: int | None = None
    # the innermost frame: its ethertype, and its IP packet (None when it is not IP)
    ethertype: int | None = None
    ip_version: int | None = None
    src: str | None = None
    dst: str | None = None
    proto: int | None = None  # upper-layer protocol (after IPv6 extension headers)
    ttl: int | None = None  # IPv4 TTL / IPv6 hop limit
    ip_id: int | None = None  # IPv4 identification / IPv6 fragment identification
    sport: int | None = None  # TCP/UDP only
    dport: int | None = None
    tcp_flags: int | None = None  # 9 bits: NS CWR ECE URG ACK PSH RST SYN FIN
    icmp_type: int | None = None  # ICMP or ICMPv6
    icmp_code: int | None = None
    # What survives a packet's path (NAT, TTL, tunnels), for matching its sightings.
    ip_len: int | None = None  # innermost IP packet's length field (v6: 40 + payload length)
    frag_offset: int | None = None  # innermost IP header's fragment offset, in bytes
    more_fragments: bool | None = None  # innermost IP header's MF flag
    tcp_seq: int | None = None
    tcp_ack: int | None = None
    icmp_id: int | None = None  # ICMP/ICMPv6 echo request/reply only
    icmp_seq: int | None = None
    # Innermost L4 payload bytes in this frame, by the length fields (not the captured bytes):
    # after the TCP header, the UDP header, the 8-byte ICMP header; the whole IP payload of
    # other protocols and of non-first fragments.
    l4_payload_len: int | None = None
    # payload_digest() of the first min(PAYLOAD_HASH_BYTES, l4_payload_len) of those bytes;
    # None when the capture cut them off.
    payload_hash: int | None = None
    fragment: bool = False  # some IP header in the frame is a fragment (either version)
    ipv4_fragment: bool = False  # some IPv4 header has MF set or a fragment offset
    ipv6_fragment: bool = False  # some IPv6 header chain has a Fragment header

    @property
    def overhead_bytes(self) -> int:
        """Wire bytes the encapsulation adds in front of the innermost frame.

        Everything from the outermost network header to the innermost tunnel's payload, plus,
        when that payload is an Ethernet frame (VXLAN, Geneve, NVGRE, ERSPAN), the outer link
        header as it was on the wire: the inner frame brings its own link header, so the outer
        one is overhead. When the payload is a bare IP packet (IP-in-IP, GRE, Geneve without
        Ethernet), the outer link header is not counted: the packet would need one anyway.
        VXLAN over IPv4 on Ethernet: 14 + 20 + 8 + 8 = 50, also in an SLL2 capture (whose
        cooked header replaced the 14 Ethernet bytes that were on the wire); IPIP: 20."""
        if not self.tunnels or self.l3_offset is None:
            return 0
        link = self.link_wire_bytes if self.inner_ether else 0
        return self.payload_offset - self.l3_offset + link

    @property
    def encap(self) -> str:
        """Tunnel chain, outermost first, joined by "/"; "none" without tunnel."""
        return "/".join(t.kind for t in self.tunnels) if self.tunnels else "none"

    @property
    def vni(self) -> int | None:
        """The identifier of the innermost tunnel that has one."""
        for tunnel in reversed(self.tunnels):
            if tunnel.vni is not None:
                return tunnel.vni
        return None


class Decoder:
    """Decodes frames; holds the UDP port → tunnel map so each call does no setup."""

    def __init__(
        self, vxlan_ports: Iterable[int] = (), *, max_depth: int = MAX_TUNNEL_DEPTH
    ) -> None:
        self.max_depth = max_depth
        self.udp_tunnels: dict[int, str] = {VXLAN_GPE_PORT: "vxlan-gpe", GENEVE_PORT: "geneve"}
        for port in (*VXLAN_PORTS, *vxlan_ports):
            self.udp_tunnels[int(port)] = "vxlan"

    def decode(self, data: bytes, linktype: int, wire_len: int | None = None) -> DecodedPacket:
        """Decode one frame. ``wire_len`` > ``len(data)`` marks a snaplen-cut frame."""
        p = DecodedPacket(linktype)
        clipped = wire_len is not None and wire_len > len(data)
        try:
            self._link(p, data, len(data), clipped)
        except Exception:  # the boundary: a bug must cost one packet's fields, not a capture
            p.error = p.error or INTERNAL_ERROR
        return p

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _fail(p: DecodedPacket, clipped: bool, bad: str) -> None:
        """A header does not fit its region: cut by the capture, or a lying length field."""
        if p.error is None:
            p.error = TRUNCATED if clipped else bad

    def _enter_tunnel(self, p: DecodedPacket, tunnel: Tunnel, payload: int) -> bool:
        """Record a decoded tunnel header; the inner frame's fields start empty."""
        if len(p.tunnels) >= self.max_depth:
            p.error = p.error or TOO_DEEP
            return False
        if not p.tunnels:
            p.outer_src, p.outer_dst, p.outer_proto = p.src, p.dst, p.proto
            p.outer_sport, p.outer_dport = p.sport, p.dport
        p.tunnels.append(tunnel)
        p.payload_offset = payload
        p.inner_ether = False  # until the payload turns out to be an Ethernet frame
        p.ethertype = p.ip_version = p.src = p.dst = p.proto = p.ttl = p.ip_id = None
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        return True

    # -- link layer ------------------------------------------------------------------------

    def _link(self, p: DecodedPacket, buf: bytes, end: int, clipped: bool) -> None:
        lt = p.linktype
        if lt == LINKTYPE_ETHERNET:
            p.link_header_len, p.link_ethernet = ETHERNET.size, True
            self._ether(p, buf, 0, end, clipped)
        elif lt == LINKTYPE_LINUX_SLL2:
            if end < SLL2.size:
                return self._fail(p, clipped, BAD_LINK)
            p.link_header_len = SLL2.size
            p.link_ethernet = _U16.unpack_from(buf, _SLL2_HATYPE)[0] == ARPHRD_ETHER
            proto = _U16.unpack_from(buf, _SLL2_PROTO)[0]
            p.ifindex = _U32.unpack_from(buf, _SLL2_IFINDEX)[0]
            p.pkttype = buf[_SLL2_PKTTYPE]
            p.direction = PKTTYPE_DIRECTION.get(p.pkttype)
            self._ethertype(p, buf, SLL2.size, end, clipped, proto)
        elif lt == LINKTYPE_LINUX_SLL:
            if end < SLL.size:
                return self._fail(p, clipped, BAD_LINK)
            p.pkttype = _U16.unpack_from(buf, _SLL_PKTTYPE)[0]
            p.direction = PKTTYPE_DIRECTION.get(p.pkttype)
            hatype = _U16.unpack_from(buf, _SLL_HATYPE)[0]
            p.link_header_len, p.link_ethernet = SLL.size, hatype == ARPHRD_ETHER
            if hatype != ARPHRD_NETLINK:  # (its protocol field is a netlink family)
                proto = _U16.unpack_from(buf, _SLL_PROTO)[0]
                self._ethertype(p, buf, SLL.size, end, clipped, proto)
        elif lt in (LINKTYPE_RAW, *LINKTYPE_RAW_ALIASES):
            if end < 1:
                return self._fail(p, clipped, BAD_LINK)
            version = buf[0] >> 4
            if version == 4:
                self._ipv4(p, buf, 0, end, clipped)
            elif version == 6:
                self._ipv6(p, buf, 0, end, clipped)
            else:
                p.error = BAD_LINK
        elif lt == LINKTYPE_IPV4:
            self._ipv4(p, buf, 0, end, clipped)
        elif lt == LINKTYPE_IPV6:
            self._ipv6(p, buf, 0, end, clipped)
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if end < 4:
                return self._fail(p, clipped, BAD_LINK)
            family = int.from_bytes(buf[:4], "little")
            if family > 0xFFFF:  # written big-endian (LOOP always, NULL on big-endian hosts)
                family = int.from_bytes(buf[:4], "big")
            if family == 2:
                self._ipv4(p, buf, 4, end, clipped)
            elif family in IPV6_FAMILIES:
                self._ipv6(p, buf, 4, end, clipped)
        else:
            p.error = UNKNOWN_LINKTYPE
        return None

    def _ether(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        p.inner_ether = bool(p.tunnels)
        if off + ETHERNET.size > end:
            return self._fail(p, clipped, BAD_LINK)
        etype = _U16.unpack_from(buf, off + _ETH_TYPE)[0]
        self._ethertype(p, buf, off + ETHERNET.size, end, clipped, etype)
        return None

    def _ethertype(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, etype: int
    ) -> None:
        """Dispatch on an ethertype, first peeling VLAN tags and Cisco MetaData."""
        while True:
            if etype in VLAN_TPIDS:
                if off + VLAN.size > end:
                    return self._fail(p, clipped, BAD_LINK)
                tci, etype = _U16_U16.unpack_from(buf, off)
                p.vlan_ids.append(tci & 0x0FFF)
                off += VLAN.size
            elif etype == ETH_CMD:
                if off + CISCO_METADATA.size > end:
                    return self._fail(p, clipped, BAD_LINK)
                etype = _U16.unpack_from(buf, off + _CMD_TYPE)[0]
                off += CISCO_METADATA.size
            else:
                break
        if etype <= MAX_ETHER_LENGTH:  # an 802.3 length field: LLC follows (STP, CDP, ...), not IP
            return None
        p.ethertype = etype
        if etype == ETH_IPV4:
            self._ipv4(p, buf, off, end, clipped)
        elif etype == ETH_IPV6:
            self._ipv6(p, buf, off, end, clipped)
        elif etype == ETH_ARP:
            self._arp(p, buf, off, end, clipped)
        return None

    def _arp(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        if off + 8 > end:
            return self._fail(p, clipped, BAD_ARP)
        hlen, plen = buf[off + 4], buf[off + 5]
        if off + 8 + 2 * (hlen + plen) > end:
            self._fail(p, clipped, BAD_ARP)
        return None

    # -- IP ------------------------------------------------------------------------------

    @staticmethod
    def _network_start(p: DecodedPacket, off: int) -> None:
        """Note where the outermost network header starts, and the link bytes on the wire
        before it: the capture's VLAN tags, plus 14 when the device was Ethernet (an SLL/SLL2
        header stands in for the 14 Ethernet bytes that were on the wire)."""
        if p.l3_offset is None:
            p.l3_offset = off
            p.link_wire_bytes = (off - p.link_header_len) + (14 if p.link_ethernet else 0)

    def _ipv4(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        self._network_start(p, off)
        if off + IPV4.size > end:
            return self._fail(p, clipped, BAD_IP)
        vihl = buf[off]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < IPV4.size:
            p.error = p.error or BAD_IP
            return None
        total, ident, frag = _U16_U16_U16.unpack_from(buf, off + _IP4_LEN)  # len id flags+offset
        p.ip_version = 4
        p.ttl = buf[off + _IP4_TTL]
        p.proto = proto = buf[off + _IP4_PROTO]
        p.ip_id = ident
        p.src = _inet_ntop(_AF_INET, buf[off + _IP4_SRC:off + _IP4_SRC + 4])
        p.dst = _inet_ntop(_AF_INET, buf[off + _IP4_DST:off + _IP4_DST + 4])
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        if off + ihl > end:
            return self._fail(p, clipped, BAD_IP)
        if total:  # 0 = not filled in (TSO/GSO super-frame): take the captured bytes
            if total < ihl:
                p.error = p.error or BAD_IP
                return None
            if off + total <= end:
                end, clipped = off + total, False  # drop Ethernet padding; all bytes present
            elif not clipped:
                p.error = p.error or BAD_IP  # length points past a complete frame; go on
        p.ip_len = total or end - off
        wire_end = off + p.ip_len
        more_fragments, frag_offset = frag & 0x2000, frag & 0x1FFF
        p.frag_offset, p.more_fragments = frag_offset * 8, bool(more_fragments)
        if more_fragments or frag_offset:
            p.fragment = p.ipv4_fragment = True
            if frag_offset:  # a non-first fragment holds no L4 (or tunnel) header
                _payload(p, buf, off + ihl, wire_end, end)
                return None
            clipped = True  # the first fragment: the datagram goes on in later fragments
        self._ip_payload(p, buf, off + ihl, end, clipped, proto, wire_end)
        return None

    def _ipv6(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        self._network_start(p, off)
        if off + IPV6.size > end:
            return self._fail(p, clipped, BAD_IP)
        if buf[off] >> 4 != 6:
            p.error = p.error or BAD_IP
            return None
        payload_len = _U16.unpack_from(buf, off + _IP6_PLEN)[0]
        nh = buf[off + _IP6_NEXT]
        p.ip_version = 6
        p.ttl = buf[off + _IP6_HLIM]
        p.ip_id = None
        p.src = _inet_ntop(_AF_INET6, buf[off + _IP6_SRC:off + _IP6_SRC + 16])
        p.dst = _inet_ntop(_AF_INET6, buf[off + _IP6_DST:off + _IP6_DST + 16])
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        p.proto = nh
        if payload_len:  # 0 = jumbogram or TSO super-frame: take the captured bytes
            if off + IPV6.size + payload_len <= end:
                end, clipped = off + IPV6.size + payload_len, False
            elif not clipped:
                p.error = p.error or BAD_IP
        p.ip_len = IPV6.size + payload_len if payload_len else end - off
        wire_end = off + p.ip_len
        p.frag_offset, p.more_fragments = 0, False
        pos = off + IPV6.size
        while nh in IPV6_EXTENSIONS or nh == IPPROTO_FRAGMENT:
            if nh == IPPROTO_FRAGMENT:
                if pos + IPV6_FRAGMENT.size > end:
                    return self._fail(p, clipped, BAD_IP)
                offset_flags = _U16.unpack_from(buf, pos + _FRAG6_OFFSET)[0]
                p.ip_id = _U32.unpack_from(buf, pos + _FRAG6_ID)[0]
                p.fragment = p.ipv6_fragment = True
                p.proto = nh = buf[pos]
                p.frag_offset, p.more_fragments = (offset_flags >> 3) * 8, bool(offset_flags & 1)
                pos += IPV6_FRAGMENT.size
                if offset_flags >> 3:  # non-first fragment: no L4 header
                    _payload(p, buf, pos, wire_end, end)
                    return None
                if offset_flags & 1:
                    clipped = True
                continue
            if pos + 2 > end:
                return self._fail(p, clipped, BAD_IP)
            length = (buf[pos + 1] + 2) * 4 if nh == IPPROTO_AH else (buf[pos + 1] + 1) * 8
            if pos + length > end:
                return self._fail(p, clipped, BAD_IP)
            p.proto = nh = buf[pos]
            pos += length
        self._ip_payload(p, buf, pos, end, clipped, nh, wire_end)
        return None

    def _ip_payload(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, proto: int,
        wire_end: int,
    ) -> None:
        """The upper layer of an IP packet whose payload starts at ``off``; ``wire_end`` is
        where the packet ends by its length field (past ``end`` when the capture cut it)."""
        if proto == IPPROTO_TCP:
            self._tcp(p, buf, off, end, clipped, wire_end)
        elif proto == IPPROTO_UDP:
            self._udp(p, buf, off, end, clipped, wire_end)
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            if off + 4 > end:
                if off + 2 <= end:
                    p.icmp_type, p.icmp_code = buf[off], buf[off + 1]
                return self._fail(p, clipped, BAD_L4)
            p.icmp_type, p.icmp_code = buf[off], buf[off + 1]
            echo_end = off + _ICMP_ECHO_AT + ICMP_ECHO.size  # the 8-byte ICMP header's end
            if (proto, p.icmp_type) in ICMP_ECHO_TYPES and echo_end <= end:
                p.icmp_id, p.icmp_seq = _U16_U16.unpack_from(buf, off + _ICMP_ECHO_AT)
            if echo_end <= wire_end:
                _payload(p, buf, echo_end, wire_end, end)
        elif proto == IPPROTO_GRE:
            self._gre(p, buf, off, end, clipped)
        elif proto in (IPPROTO_IPIP, IPPROTO_IPV6) and self._enter_tunnel(p, Tunnel("ipip"), off):
            if proto == IPPROTO_IPIP:
                self._ipv4(p, buf, off, end, clipped)
            else:
                self._ipv6(p, buf, off, end, clipped)
        elif proto not in (IPPROTO_IPIP, IPPROTO_IPV6):  # (a tunnel too deep: no payload)
            _payload(p, buf, off, wire_end, end)
        return None

    # -- L4 ------------------------------------------------------------------------------

    def _tcp(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, wire_end: int
    ) -> None:
        if off + 4 <= end:
            p.sport, p.dport = _U16_U16.unpack_from(buf, off)
        if off + TCP.size > end:
            return self._fail(p, clipped, BAD_L4)
        data_offset = (buf[off + _TCP_OFFSET] >> 4) * 4
        p.tcp_flags = ((buf[off + _TCP_OFFSET] & 1) << 8) | buf[off + _TCP_OFFSET + 1]
        p.tcp_seq, p.tcp_ack = _U32_U32.unpack_from(buf, off + _TCP_SEQ)
        if data_offset < TCP.size:
            p.error = p.error or BAD_L4
        elif off + data_offset > end:
            self._fail(p, clipped, BAD_L4)
        else:
            _payload(p, buf, off + data_offset, wire_end, end)
        return None

    def _udp(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, wire_end: int
    ) -> None:
        if off + 4 <= end:
            p.sport, p.dport = _U16_U16.unpack_from(buf, off)
        if off + UDP.size > end:
            return self._fail(p, clipped, BAD_L4)
        length = _U16.unpack_from(buf, off + _UDP_LEN)[0]
        if length:  # 0 only in IPv6 jumbograms (RFC 2675): the IP length rules
            if length < UDP.size:
                p.error = p.error or BAD_L4
                return None
            if off + length <= end:
                end, clipped = off + length, False
            elif not clipped:
                p.error = p.error or BAD_L4  # length points past the IP payload; go on
            if off + length <= wire_end:
                wire_end = off + length  # bytes after the datagram are not payload
        payload = off + UDP.size
        _payload(p, buf, payload, wire_end, end)
        kind = self.udp_tunnels.get(p.dport)  # type: ignore[arg-type]
        if kind == "vxlan":
            self._vxlan(p, buf, payload, end, clipped)
        elif kind == "geneve":
            self._geneve(p, buf, payload, end, clipped)
        elif kind == "vxlan-gpe":
            self._vxlan_gpe(p, buf, payload, end, clipped)
        return None

    # -- tunnels -------------------------------------------------------------------------

    def _vxlan(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 7348: flags(8, I = 0x08) reserved(24) VNI(24) reserved(8), then Ethernet."""
        if off + VXLAN.size > end:
            return self._fail(p, clipped, BAD_TUNNEL)
        if not buf[off] & 0x08:  # no valid VNI: receivers drop these (RFC 7348 §5)
            p.error = p.error or BAD_TUNNEL
            return None
        vni = _U32.unpack_from(buf, off + _VXLAN_VNI)[0] >> 8
        if self._enter_tunnel(p, Tunnel("vxlan", vni), off + VXLAN.size):
            self._ether(p, buf, off + VXLAN.size, end, clipped)
        return None

    def _vxlan_gpe(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """VXLAN-GPE: flags(R R Ver(2) I P B O) reserved(16) next-protocol(8) VNI(24) rsvd(8)."""
        if off + VXLAN_GPE.size > end:
            return self._fail(p, clipped, BAD_TUNNEL)
        flags = buf[off]
        if flags & 0x30 or not flags & 0x08:  # version must be 0; I flag set
            p.error = p.error or BAD_TUNNEL
            return None
        next_protocol = buf[off + _GPE_NEXT] if flags & 0x04 else 3  # P clear: Ethernet
        vni = _U32.unpack_from(buf, off + _VXLAN_VNI)[0] >> 8
        payload = off + VXLAN_GPE.size
        if not self._enter_tunnel(p, Tunnel("vxlan-gpe", vni), payload):
            return None
        if next_protocol == 1:
            self._ipv4(p, buf, payload, end, clipped)
        elif next_protocol == 2:
            self._ipv6(p, buf, payload, end, clipped)
        elif next_protocol == 3:
            self._ether(p, buf, payload, end, clipped)
        return None  # NSH, MPLS, ...: not decoded further

    def _geneve(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 8926: Ver(2) OptLen(6) O C Rsvd(6) ProtocolType(16) VNI(24) Rsvd(8) options."""
        if off + GENEVE.size > end:
            return self._fail(p, clipped, BAD_TUNNEL)
        first = buf[off]
        if first >> 6:  # only version 0 is defined
            p.error = p.error or BAD_TUNNEL
            return None
        header_len = GENEVE.size + (first & 0x3F) * 4  # options: opt_len counts 4-byte words
        if off + header_len > end:
            return self._fail(p, clipped, BAD_TUNNEL)
        protocol = _U16.unpack_from(buf, off + _GENEVE_PROTO)[0]
        vni = _U32.unpack_from(buf, off + GENEVE.offset["vni_reserved"])[0] >> 8
        payload = off + header_len
        if self._enter_tunnel(p, Tunnel("geneve", vni), payload):
            if protocol == ETH_TEB:
                self._ether(p, buf, payload, end, clipped)
            else:  # e.g. 0x0800/0x86DD: IP without an inner Ethernet header (GCP)
                self._ethertype(p, buf, payload, end, clipped, protocol)
        return None

    def _gre(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 2784/2890 (and 1701 routing, 2637 PPTP): flags+version, protocol, options."""
        if off + GRE.size > end:
            return self._fail(p, clipped, BAD_TUNNEL)
        flags, protocol = _U16_U16.unpack_from(buf, off)
        version = flags & 0x0007
        if version > 1:
            p.error = p.error or BAD_TUNNEL
            return None
        pos = off + GRE.size
        if flags & 0xC000:  # checksum present (C) or routing present (R): checksum + offset
            pos += 4
        key: int | None = None
        if flags & 0x2000:  # K
            if pos + 4 > end:
                return self._fail(p, clipped, BAD_TUNNEL)
            key = _U32.unpack_from(buf, pos)[0]
            pos += 4
        if flags & 0x1000:  # S: sequence number
            pos += 4
        if version == 1:  # enhanced GRE (PPTP): key required, optional acknowledgment
            if key is None:
                p.error = p.error or BAD_TUNNEL
                return None
            if flags & 0x0080:
                pos += 4
        if flags & 0x4000:  # R (RFC 1701): source route entries until a null entry
            while True:
                if pos + 4 > end:
                    return self._fail(p, clipped, BAD_TUNNEL)
                family, _sre_offset, sre_len = struct.unpack_from("!HBB", buf, pos)
                pos += 4 + sre_len
                if family == 0 and sre_len == 0:
                    break
        if pos > end:
            return self._fail(p, clipped, BAD_TUNNEL)

        if protocol in (ETH_ERSPAN_2, ETH_ERSPAN_3):
            self._erspan(p, buf, pos, end, clipped, protocol, key, bool(flags & 0x1000))
        elif protocol == ETH_TEB:
            # Key present: the NVGRE layout (RFC 7637), key = VSID(24) FlowID(8).
            tunnel = (
                Tunnel("nvgre", key >> 8, key) if key is not None else Tunnel("gre", None, None)
            )
            if self._enter_tunnel(p, tunnel, pos):
                self._ether(p, buf, pos, end, clipped)
        elif self._enter_tunnel(p, Tunnel("gre", key, key), pos):
            if protocol == ETH_CMD:  # GRE form of Cisco MetaData: ethertype first, 8 bytes
                if pos + CISCO_METADATA.size > end:
                    return self._fail(p, clipped, BAD_TUNNEL)
                protocol = _U16.unpack_from(buf, pos)[0]
                pos += CISCO_METADATA.size
                p.payload_offset = pos
            self._ethertype(p, buf, pos, end, clipped, protocol)
        return None

    def _erspan(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool,
        protocol: int, key: int | None, has_sequence: bool,
    ) -> None:
        """ERSPAN type I (no header), II (8 bytes, version 1), III (12 + optional 8, version 2)."""
        session: int | None = None
        frame_type = 0
        if protocol == ETH_ERSPAN_2 and not has_sequence:
            erspan_type, header_len = 1, 0
        else:
            erspan_type, header_len, version = (
                (2, ERSPAN_II.size, 1) if protocol == ETH_ERSPAN_2 else (3, ERSPAN_III.size, 2))
            if off + header_len > end:
                return self._fail(p, clipped, BAD_TUNNEL)
            if buf[off] >> 4 != version:
                p.error = p.error or BAD_TUNNEL
                return None
            session = _U16.unpack_from(buf, off + 2)[0] & 0x03FF
            if erspan_type == 3:
                flags = _U16.unpack_from(buf, off + ERSPAN_III.offset["p_ft_hwid_d_gra_o"])[0]
                frame_type = (flags >> 10) & 0x1F  # 0 = Ethernet frame
                if flags & 0x0001:  # O: an 8-byte platform-specific subheader follows
                    header_len += 8
                    if off + header_len > end:
                        return self._fail(p, clipped, BAD_TUNNEL)
        tunnel = Tunnel("erspan", key, key, erspan_type, session)
        if self._enter_tunnel(p, tunnel, off + header_len) and frame_type == 0:
            self._ether(p, buf, off + header_len, end, clipped)
        return None


def _clear_match_fields(p: DecodedPacket) -> None:
    """A new (inner) IP header starts: the previous one's match fields do not describe it."""
    p.ip_len = p.frag_offset = p.more_fragments = p.tcp_seq = p.tcp_ack = None
    p.icmp_id = p.icmp_seq = p.l4_payload_len = p.payload_hash = None


def payload_digest(window: bytes) -> int:
    """A 32-bit hash of at most PAYLOAD_HASH_BYTES bytes: zero-padded to that size, read as
    little-endian 64-bit words, folded into the length by multiply-xorshift; the top 32 bits.
    Not CRC-32: eight word steps vectorize over a batch of frames (:mod:`pktkit.capture.columns`),
    where 64 byte steps of a CRC cost more than the rest of the decoding."""
    h = len(window)
    for word in _WORDS.unpack(window.ljust(PAYLOAD_HASH_BYTES, b"\0")):
        h = ((h ^ word) * HASH_MULTIPLIER) & _MASK64
        h ^= h >> 29
    return h >> 32


def _payload(p: DecodedPacket, buf: bytes, start: int, wire_end: int, end: int) -> None:
    """Record the payload from ``start`` to ``wire_end`` (by the length fields), hashing its
    first PAYLOAD_HASH_BYTES when the capture holds them (``end``: the captured region)."""
    length = max(0, wire_end - start)
    p.l4_payload_len = length
    window = min(length, PAYLOAD_HASH_BYTES)
    p.payload_hash = payload_digest(buf[start:start + window]) if start + window <= end else None


@lru_cache(maxsize=16)
def _decoder(vxlan_ports: tuple[int, ...]) -> Decoder:
    return Decoder(vxlan_ports)


def decode(
    data: bytes, linktype: int, *, wire_len: int | None = None, vxlan_ports: Iterable[int] = ()
) -> DecodedPacket:
    """Decode one frame (a convenience over :class:`Decoder` for one-off use)."""
    return _decoder(tuple(sorted(vxlan_ports))).decode(data, linktype, wire_len)
