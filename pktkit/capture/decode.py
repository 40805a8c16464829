"""Frame decoding: one captured frame's bytes → a :class:`DecodedPacket`, with dpkt's classes.

The walk goes link layer → 802.1Q/802.1ad tags → IPv4/IPv6 → L4, and through tunnels
recursively (VXLAN, VXLAN-GPE, Geneve, GRE/NVGRE/ERSPAN, PPTP, MPLS, NSH, Teredo, IP-in-IP) to
the innermost packet, at most ``max_depth`` tunnels deep.

dpkt parses, this walk judges. Every header is unpacked by its dpkt class, dpkt's own
(``dpkt.ip.IP``, ``dpkt.tcp.TCP``, ...) or :mod:`pktkit.dpkt`'s for the tunnels dpkt lacks, one
layer at a time: a class parses its header only (:func:`_fixed` for dpkt's,
:func:`pktkit.dpkt.shallow` for pktkit's), and the walk decides what comes next (the tunnel
layers' ``payload_class()``). Doing it layer by layer rather than letting dpkt decode the
frame eagerly is deliberate: dpkt catches an inner layer's failure and leaves bytes, so only
the layer itself can say which rule failed; its recursion has no depth bound (2,000 nested GRE
headers raise RecursionError); and it decodes what the table never needs (the packets ICMP
errors quote). dpkt's exceptions become ``error`` values here, at pktkit's boundary:
``NeedData`` (the bytes end inside the header) is ``truncated`` when the capture cut the frame
and a ``bad-...-header`` otherwise, ``UnpackError`` (a field dpkt rejects) a
``bad-...-header``. The rules dpkt does not check are the walk's, explicitly: IP version,
length fields against their container, TCP data offset against the bytes, VLAN tags (any
number; 0x9200 is not one), IPv6 extension headers (135/139/140 too; a Fragment header
anywhere in the chain), VXLAN's I flag, tunnel versions. The numpy fast path
(:mod:`pktkit.capture.vectorized`) applies the same rules to the stacks it vectorises and
leaves every other frame to this decoder, so the two engines give one table.

Byte regions: each layer is parsed inside ``[off, end)``, where ``end`` is the smaller of the
enclosing length field and the captured bytes, and ``clipped`` says that the real data goes on
past ``end`` (snaplen cut, or the rest of an IP fragment). A header that does not fit its region
is ``truncated`` when the region is clipped and a ``bad-...-header`` otherwise (a length field
that contradicts its container). A tunnel payload pktkit does not decode is an
``unsupported-payload`` naming it (``reasons.unsupported_payload``), except the non-IP payloads
a tunnel is meant to carry (ARP, LLC, GRE keepalives, CDP, PPP control protocols).

Checksums (:mod:`~pktkit.capture.checksums`): every IPv4 header and every TCP/UDP/ICMP/ICMPv6
checksum of the frame, inner and outer, not those of a packet an ICMP error quotes; the
packet's ``checksum`` is the worst of them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import dpkt

import pktkit.dpkt as layers
from pktkit.capture import checksums
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
    ETH_ARP,
    ETH_CMD,
    ETH_IPV4,
    ETH_IPV6,
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
    IPV6_EXTENSIONS,
    IPV6_FAMILIES,
    MAX_ETHER_LENGTH,
    UDP,
    VLAN_TPIDS,
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
    unsupported_payload,
)
from pktkit.capture.tunnel_ports import udp_tunnel_classes

MAX_TUNNEL_DEPTH = 8

# ``payload_hash`` covers at most this many leading payload bytes: a fixed window, so that
# sightings cut by different snaplens (or behind different header stacks) still hash alike,
# and a columnar decoder can gather it like a header. A multiple of 8 (see payload_digest).
PAYLOAD_HASH_BYTES = 64
HASH_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_MASK64 = (1 << 64) - 1
_WORDS = struct.Struct(f"<{PAYLOAD_HASH_BYTES // 8}Q")

# Payloads that are not IP but are what their tunnel or link is meant to carry: no error.
NON_IP_ETHERTYPES = frozenset({
    ETH_ARP, 0x0000,  # (GRE protocol 0: a keepalive's returning GRE header)
    0x2000, 0x2004, 0x88CC, 0x9000,  # CDP, DTP, LLDP, Ethernet loopback (Cisco keepalives)
})
PPP_CONTROL = 0x8000  # RFC 1661: 0x8000-0xbfff network control, 0xc000-0xffff link control

_U16 = struct.Struct("!H")
_U16_U16 = struct.Struct("!HH")
_inet_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_NeedData, _UnpackError = dpkt.NeedData, dpkt.UnpackError


def _unpack_fixed(self: Any, buf: bytes) -> None:
    """dpkt's ``Packet.__init__`` for a buffer, without its keyword and packing set-up: the
    ``__hdr__`` fields and ``data``; NeedData when ``buf`` is shorter than the header."""
    try:
        dpkt.Packet.unpack(self, buf)
    except struct.error:
        raise _NeedData(f"{len(buf)} bytes, {self.__hdr_len__} needed") from None


def _fixed(cls: type) -> Any:
    """``cls`` unpacking its fixed ``__hdr__`` fields only (the rest stays bytes in ``data``):
    dpkt's classes decode their payloads eagerly, the walk goes one layer at a time."""
    return type(cls.__name__, (cls,), {"__init__": _unpack_fixed, "__module__": __name__})


_Ethernet = _fixed(dpkt.ethernet.Ethernet)  # dst src type (tags and MPLS: the walk)
_VLAN = _fixed(dpkt.ethernet.VLANtag8021Q)  # pri cfi id type
_SLL, _SLL2 = _fixed(dpkt.sll.SLL), _fixed(dpkt.sll2.SLL2)
_IP = _fixed(dpkt.ip.IP)  # v hl tos len id rf df mf offset ttl p sum src dst
_IP6 = _fixed(dpkt.ip6.IP6)  # v fc flow plen nxt hlim src dst
_IP6Extension = _fixed(dpkt.ip6.IP6OptsHeader)  # nxt len: the generic extension header
_IP6Fragment = _fixed(dpkt.ip6.IP6FragmentHeader)  # nxt frag_off m_flag id
_TCP = _fixed(dpkt.tcp.TCP)  # sport dport seq ack off flags win sum urp
_UDP = _fixed(dpkt.udp.UDP)  # sport dport ulen sum
_ICMP = _fixed(dpkt.icmp.ICMP)  # type code sum (ICMPv6: the same three fields)
_Echo = _fixed(dpkt.icmp.ICMP.Echo)  # id seq
_ARP_FIXED = 8  # hrd pro hln pln op; the addresses follow by hln/pln


class Tunnel(NamedTuple):
    """One decoded tunnel header."""

    kind: str  # vxlan, vxlan-gpe, geneve, nvgre, gre, pptp, erspan, ipip, mpls, nsh, teredo
    vni: int | None = None  # VXLAN/Geneve VNI, NVGRE VSID, or the key of a plain GRE/ERSPAN
    # (PPTP's key field is payload length + call id, MPLS labels and NSH paths are no VNI)
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
    outer_ip_id: int | None = None  # IPv4 identification / IPv6 fragment identification
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
    # the worst checksum status of the frame's headers (checksums.OK, ...; NONE: none checked)
    checksum: int = checksums.NONE

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
    def checksum_status(self) -> str | None:
        """The ``checksum`` column: ok, bad, offload, unchecked; None when nothing was checked."""
        return None if self.checksum < 0 else checksums.COLUMN_VALUES[self.checksum]

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
    """Decodes frames; holds the UDP port → tunnel map so each call does no setup.

    ``vxlan_ports``/``geneve_ports`` add UDP destination ports decoded as VXLAN/Geneve (those
    of :data:`pktkit.dpkt.UDP_PORTS` always are; a port that belongs to another tunnel is
    refused, see :func:`~pktkit.capture.tunnel_ports.udp_tunnel_classes`)."""

    def __init__(
        self, vxlan_ports: Iterable[int] = (), *, geneve_ports: Iterable[int] = (),
        max_depth: int = MAX_TUNNEL_DEPTH,
    ) -> None:
        self.max_depth = max_depth
        self.udp_tunnels = udp_tunnel_classes(vxlan_ports, geneve_ports)

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

    def _parse(self, p: DecodedPacket, cls: Any, buf: bytes, off: int, end: int,
               clipped: bool, bad: str) -> Any:
        """The dpkt object of the header at ``off`` (its region ends at ``end``), or None with
        the error set: dpkt's exceptions become error values here."""
        try:
            return cls(buf[off:end])
        except _NeedData:  # the region ends inside the header
            self._fail(p, clipped, bad)
        except _UnpackError:  # a field dpkt rejects
            p.error = p.error or bad
        return None

    def _tunnel(self, p: DecodedPacket, cls: type, buf: bytes, off: int, end: int,
                clipped: bool, bad: str = BAD_TUNNEL) -> Any:
        """A :mod:`pktkit.dpkt` header, its payload left as bytes (or None)."""
        return self._parse(p, layers.shallow(cls), buf, off, end, clipped, bad)

    def _enter_tunnel(self, p: DecodedPacket, tunnel: Tunnel, payload: int) -> bool:
        """Record a decoded tunnel header; the inner frame's fields start empty."""
        if len(p.tunnels) >= self.max_depth:
            p.error = p.error or TOO_DEEP
            return False
        if not p.tunnels:
            p.outer_src, p.outer_dst, p.outer_proto = p.src, p.dst, p.proto
            p.outer_sport, p.outer_dport, p.outer_ip_id = p.sport, p.dport, p.ip_id
        p.tunnels.append(tunnel)
        p.payload_offset = payload
        p.inner_ether = False  # until the payload turns out to be an Ethernet frame
        p.ethertype = p.ip_version = p.src = p.dst = p.proto = p.ttl = p.ip_id = None
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        return True

    @staticmethod
    def _unsupported(p: DecodedPacket, protocol: str) -> None:
        p.error = p.error or unsupported_payload(protocol)

    # -- link layer ------------------------------------------------------------------------

    def _link(self, p: DecodedPacket, buf: bytes, end: int, clipped: bool) -> None:
        lt = p.linktype
        if lt == LINKTYPE_ETHERNET:
            p.link_header_len, p.link_ethernet = _Ethernet.__hdr_len__, True
            self._ether(p, buf, 0, end, clipped)
        elif lt in (LINKTYPE_LINUX_SLL2, LINKTYPE_LINUX_SLL):
            cls = _SLL2 if lt == LINKTYPE_LINUX_SLL2 else _SLL
            sll = self._parse(p, cls, buf, 0, end, clipped, BAD_LINK)
            if sll is None:
                return None
            p.link_header_len, p.link_ethernet = cls.__hdr_len__, sll.hrd == ARPHRD_ETHER
            p.pkttype = sll.type
            p.direction = PKTTYPE_DIRECTION.get(p.pkttype)
            if cls is _SLL2:
                p.ifindex = sll.intindex & 0xFFFFFFFF  # (dpkt declares it signed)
            if sll.hrd != ARPHRD_NETLINK:  # (its protocol field is a netlink family)
                self._ethertype(p, buf, cls.__hdr_len__, end, clipped, sll.ethtype)
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
            loop = self._tunnel(p, layers.Loopback, buf, 0, end, clipped, BAD_LINK)
            if loop is None:
                return None
            if loop.family == 2:
                self._ipv4(p, buf, 4, end, clipped)
            elif loop.family in IPV6_FAMILIES:
                self._ipv6(p, buf, 4, end, clipped)
        else:
            p.error = UNKNOWN_LINKTYPE
        return None

    def _ether(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        p.inner_ether = bool(p.tunnels)
        eth = self._parse(p, _Ethernet, buf, off, end, clipped, BAD_LINK)
        if eth is not None:
            self._ethertype(p, buf, off + _Ethernet.__hdr_len__, end, clipped, eth.type)

    def _ethertype(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, etype: int,
        tunnel: str | None = None,
    ) -> None:
        """Dispatch on an ethertype, first peeling VLAN tags and Cisco MetaData. ``tunnel``
        names the tunnel whose protocol field this is (gre, geneve): there an unknown
        protocol is an unsupported payload; an Ethernet frame's unknown type is not."""
        while True:
            if etype in VLAN_TPIDS:
                tag = self._parse(p, _VLAN, buf, off, end, clipped, BAD_LINK)
                if tag is None:
                    return None
                p.vlan_ids.append(tag.id)
                etype = tag.type
                off += _VLAN.__hdr_len__
            elif etype == ETH_CMD:
                cmd = self._tunnel(p, layers.EthernetCMD, buf, off, end, clipped, BAD_LINK)
                if cmd is None:
                    return None
                etype = cmd.type
                off += cmd.__hdr_len__
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
        elif etype in (layers.ETH_TYPE_MPLS, layers.ETH_TYPE_MPLS_MCAST):
            self._mpls(p, buf, off, end, clipped)
        elif etype == layers.ETH_TYPE_NSH:
            self._nsh(p, buf, off, end, clipped)
        elif tunnel is not None and etype not in NON_IP_ETHERTYPES:
            self._unsupported(p, f"{tunnel} 0x{etype:04x}")
        return None

    def _arp(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        if off + _ARP_FIXED > end:
            return self._fail(p, clipped, BAD_ARP)
        hln, pln = buf[off + 4], buf[off + 5]  # (dpkt's ARP assumes 6 and 4)
        if off + _ARP_FIXED + 2 * (hln + pln) > end:
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
        ip = self._parse(p, _IP, buf, off, end, clipped, BAD_IP)
        if ip is None:
            if p.error == TRUNCATED:  # the capture cut the header: its checksum too
                p.checksum = checksums.combine_one(p.checksum, checksums.UNCHECKED)
            return None
        ihl = ip.hl * 4
        if ip.v != 4 or ihl < _IP.__hdr_len__:
            p.error = p.error or BAD_IP
            return None
        total = ip.len
        p.ip_version = 4
        p.ttl = ip.ttl
        p.proto = proto = ip.p
        p.ip_id = ip.id
        p.src = _inet_ntop(_AF_INET, ip.src)
        p.dst = _inet_ntop(_AF_INET, ip.dst)
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        p.checksum = checksums.combine_one(p.checksum,
                                           checksums.ipv4_header_status(buf, off, ihl))
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
        fragment = bool(ip.mf or ip.offset)
        p.frag_offset, p.more_fragments = ip.offset * 8, bool(ip.mf)
        if fragment:
            p.fragment = p.ipv4_fragment = True
            if ip.offset:  # a non-first fragment holds no L4 (or tunnel) header
                _payload(p, buf, off + ihl, wire_end, end)
                return None
            clipped = True  # the first fragment: the datagram goes on in later fragments
        self._ip_payload(p, buf, off + ihl, end, clipped, proto, wire_end, off, 4, fragment)
        return None

    def _ipv6(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        self._network_start(p, off)
        ip = self._parse(p, _IP6, buf, off, end, clipped, BAD_IP)
        if ip is None:
            return None
        if ip.v != 6:
            p.error = p.error or BAD_IP
            return None
        payload_len, nh = ip.plen, ip.nxt
        p.ip_version = 6
        p.ttl = ip.hlim
        p.ip_id = None
        p.src = _inet_ntop(_AF_INET6, ip.src)
        p.dst = _inet_ntop(_AF_INET6, ip.dst)
        p.sport = p.dport = p.tcp_flags = p.icmp_type = p.icmp_code = None
        _clear_match_fields(p)
        p.proto = nh
        size = _IP6.__hdr_len__
        if payload_len:  # 0 = jumbogram or TSO super-frame: take the captured bytes
            if off + size + payload_len <= end:
                end, clipped = off + size + payload_len, False
            elif not clipped:
                p.error = p.error or BAD_IP
        p.ip_len = size + payload_len if payload_len else end - off
        wire_end = off + p.ip_len
        p.frag_offset, p.more_fragments = 0, False
        pos = off + size
        fragment = False
        while nh in IPV6_EXTENSIONS or nh == IPPROTO_FRAGMENT:
            if nh == IPPROTO_FRAGMENT:
                frag = self._parse(p, _IP6Fragment, buf, pos, end, clipped, BAD_IP)
                if frag is None:
                    return None
                p.ip_id = frag.id
                p.fragment = p.ipv6_fragment = fragment = True
                p.proto = nh = frag.nxt
                p.frag_offset, p.more_fragments = frag.frag_off * 8, bool(frag.m_flag)
                pos += _IP6Fragment.__hdr_len__
                if frag.frag_off:  # non-first fragment: no L4 header
                    _payload(p, buf, pos, wire_end, end)
                    return None
                if frag.m_flag:
                    clipped = True
                continue
            ext = self._parse(p, _IP6Extension, buf, pos, end, clipped, BAD_IP)
            if ext is None:
                return None
            # (dpkt's IP6AHHeader counts everything after it; RFC 4302: (len + 2) 4-byte words)
            length = (ext.len + 2) * 4 if nh == IPPROTO_AH else (ext.len + 1) * 8
            if pos + length > end:
                return self._fail(p, clipped, BAD_IP)
            p.proto = nh = ext.nxt
            pos += length
        self._ip_payload(p, buf, pos, end, clipped, nh, wire_end, off, 6, fragment)
        return None

    def _ip_payload(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, proto: int,
        wire_end: int, ip_off: int, version: int, fragment: bool,
    ) -> None:
        """The upper layer of an IP packet whose payload starts at ``off``; ``wire_end`` is
        where the packet ends by its length field (past ``end`` when the capture cut it).
        ``ip_off``, ``version`` and ``fragment`` describe that IP header (for checksums)."""
        if proto in checksums.CHECKSUM_FIELD:
            l4_len = wire_end - off
            if proto == IPPROTO_UDP and off + UDP.size <= end:  # the UDP checksum's own length
                ulen = _U16.unpack_from(buf, off + UDP.offset["ulen"])[0]
                if UDP.size <= ulen <= l4_len:
                    l4_len = ulen
            p.checksum = checksums.combine_one(p.checksum, checksums.l4_status(
                buf, ip_off, version, off, proto, l4_len, fragment))
        if proto == IPPROTO_TCP:
            self._tcp(p, buf, off, end, clipped, wire_end)
        elif proto == IPPROTO_UDP:
            self._udp(p, buf, off, end, clipped, wire_end)
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            self._icmp(p, buf, off, end, clipped, wire_end, proto)
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
        if off + 4 <= end:  # the ports of a header the capture cut
            p.sport, p.dport = _U16_U16.unpack_from(buf, off)
        tcp = self._parse(p, _TCP, buf, off, end, clipped, BAD_L4)
        if tcp is None:
            return None
        data_offset = tcp.off * 4
        p.tcp_flags = tcp.flags  # dpkt's 9 flag bits
        p.tcp_seq, p.tcp_ack = tcp.seq, tcp.ack
        if data_offset < _TCP.__hdr_len__:
            p.error = p.error or BAD_L4
        elif off + data_offset > end:  # (dpkt keeps cut options without a word)
            self._fail(p, clipped, BAD_L4)
        else:
            _payload(p, buf, off + data_offset, wire_end, end)
        return None

    def _udp(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, wire_end: int
    ) -> None:
        if off + 4 <= end:
            p.sport, p.dport = _U16_U16.unpack_from(buf, off)
        udp = self._parse(p, _UDP, buf, off, end, clipped, BAD_L4)
        if udp is None:
            return None
        length = udp.ulen  # (dpkt checks none of the length rules)
        if length:  # 0 only in IPv6 jumbograms (RFC 2675): the IP length rules
            if length < _UDP.__hdr_len__:
                p.error = p.error or BAD_L4
                return None
            if off + length <= end:
                end, clipped = off + length, False
            elif not clipped:
                p.error = p.error or BAD_L4  # length points past the IP payload; go on
            if off + length <= wire_end:
                wire_end = off + length  # bytes after the datagram are not payload
        payload = off + _UDP.__hdr_len__
        _payload(p, buf, payload, wire_end, end)
        cls = layers.udp_tunnel(self.udp_tunnels, udp.sport, udp.dport)
        if cls is not None:
            self._udp_tunnel(p, cls, buf, payload, end, clipped)
        return None

    def _icmp(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool, wire_end: int,
        proto: int,
    ) -> None:
        """ICMP/ICMPv6: type and code; an echo's identifier and sequence number. A packet an
        error quotes is not decoded."""
        icmp = self._parse(p, _ICMP, buf, off, end, clipped, BAD_L4)
        if icmp is None:
            if off + 2 <= end:
                p.icmp_type, p.icmp_code = buf[off], buf[off + 1]
            return None
        p.icmp_type, p.icmp_code = icmp.type, icmp.code
        echo_end = off + _ICMP.__hdr_len__ + _Echo.__hdr_len__  # the 8-byte ICMP header's end
        if (proto, p.icmp_type) in ICMP_ECHO_TYPES and echo_end <= end:
            echo = _Echo(icmp.data)
            p.icmp_id, p.icmp_seq = echo.id, echo.seq
        if echo_end <= wire_end:
            _payload(p, buf, echo_end, wire_end, end)
        return None

    # -- tunnels -------------------------------------------------------------------------

    def _udp_tunnel(self, p: DecodedPacket, cls: type, buf: bytes, off: int, end: int,
                    clipped: bool) -> None:
        if cls is layers.VXLAN:
            self._vxlan(p, buf, off, end, clipped)
        elif cls is layers.Geneve:
            self._geneve(p, buf, off, end, clipped)
        elif cls is layers.VXLANGPE:
            self._vxlan_gpe(p, buf, off, end, clipped)
        elif cls is layers.GRE:  # GRE-in-UDP (RFC 8086)
            self._gre(p, buf, off, end, clipped)
        elif cls is layers.MPLS:  # MPLS-in-UDP (RFC 7510)
            self._mpls(p, buf, off, end, clipped)
        elif cls is layers.Teredo:
            self._teredo(p, buf, off, end, clipped)

    def _vxlan(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 7348: flags(8, I = 0x08) reserved(24) VNI(24) reserved(8), then Ethernet."""
        vx = self._tunnel(p, layers.VXLAN, buf, off, end, clipped)
        if vx is None:
            return None
        if not vx.i:  # no valid VNI: receivers drop these (RFC 7348 §5)
            p.error = p.error or BAD_TUNNEL
            return None
        payload = off + vx.__hdr_len__
        if self._enter_tunnel(p, Tunnel("vxlan", vx.vni), payload):
            self._ether(p, buf, payload, end, clipped)
        return None

    def _vxlan_gpe(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """VXLAN-GPE: flags(R R Ver(2) I P B O) reserved(16) next-protocol(8) VNI(24) rsvd(8)."""
        gpe = self._tunnel(p, layers.VXLANGPE, buf, off, end, clipped)
        if gpe is None:
            return None
        if gpe.ver or not gpe.i:  # version must be 0; I flag set
            p.error = p.error or BAD_TUNNEL
            return None
        payload = off + gpe.__hdr_len__
        if self._enter_tunnel(p, Tunnel("vxlan-gpe", gpe.vni), payload):
            self._next_protocol(p, gpe.payload_class(), buf, payload, end, clipped,
                                f"vxlan-gpe next protocol {gpe.next_protocol}")
        return None

    def _next_protocol(self, p: DecodedPacket, cls: Any, buf: bytes, off: int, end: int,
                       clipped: bool, name: str) -> None:
        """The payload of VXLAN-GPE or NSH, by the class its next-protocol field names."""
        if not self._payload_of(p, cls, buf, off, end, clipped):
            self._unsupported(p, name)

    def _payload_of(self, p: DecodedPacket, cls: Any, buf: bytes, off: int, end: int,
                    clipped: bool) -> bool:
        """Decode a payload as the class :mod:`pktkit.dpkt`'s dispatch names (a layer's
        ``payload_class()``); False when the walk has no decoder for that class."""
        if cls is dpkt.ip.IP:
            self._ipv4(p, buf, off, end, clipped)
        elif cls is dpkt.ip6.IP6:
            self._ipv6(p, buf, off, end, clipped)
        elif cls is dpkt.ethernet.Ethernet:
            self._ether(p, buf, off, end, clipped)
        elif cls is layers.NSH:
            self._nsh(p, buf, off, end, clipped)
        elif cls is layers.MPLS:
            self._mpls(p, buf, off, end, clipped)
        else:
            return False
        return True

    def _nsh(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 8300: base header, service path, context headers; then its next protocol."""
        nsh = self._tunnel(p, layers.NSH, buf, off, end, clipped)
        if nsh is None:
            return None
        if nsh.ver:
            p.error = p.error or BAD_TUNNEL
            return None
        payload = off + nsh.length * 4
        if self._enter_tunnel(p, Tunnel("nsh"), payload):
            self._next_protocol(p, nsh.payload_class(), buf, payload, end, clipped,
                                f"nsh next protocol {nsh.next_proto}")
        return None

    def _mpls(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 3032 label stack; the payload by its first nibble, as tshark reads it."""
        self._network_start(p, off)  # (a label stack is where an MPLS packet's network starts)
        mpls = self._tunnel(p, layers.MPLS, buf, off, end, clipped)
        if mpls is None:
            return None
        payload = off + 4 * len(mpls.labels) + len(mpls.control_word)
        if not self._enter_tunnel(p, Tunnel("mpls"), payload):
            return None
        # IPv4, IPv6, or a pseudowire: control word, then Ethernet
        if self._payload_of(p, mpls.payload_class(), buf, payload, end, clipped):
            return None
        if mpls.nibble < 0:
            if clipped:
                self._fail(p, clipped, BAD_TUNNEL)
        else:
            self._unsupported(p, f"mpls payload nibble {mpls.nibble}")
        return None

    def _teredo(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 4380: optional authentication and origin headers, then IPv6. UDP 3544 is
        Teredo's by convention only: a payload that is not an IPv6 packet filling the datagram
        is plain UDP, no error."""
        try:
            teredo = layers.shallow(layers.Teredo)(buf[off:end])
        except _UnpackError:  # (NeedData included: not Teredo as far as the bytes go)
            return None
        payload = off + len(teredo.auth) + len(teredo.origin)
        if not clipped and payload + 40 + _U16.unpack_from(buf, payload + 4)[0] != end:
            return None
        if self._enter_tunnel(p, Tunnel("teredo"), payload):
            self._ipv6(p, buf, payload, end, clipped)
        return None

    def _geneve(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 8926: Ver(2) OptLen(6) O C Rsvd(6) ProtocolType(16) VNI(24) Rsvd(8) options."""
        if off + layers.Geneve.__hdr_len__ <= end and buf[off] >> 6:
            p.error = p.error or BAD_TUNNEL  # only version 0 is defined (options unread)
            return None
        geneve = self._tunnel(p, layers.Geneve, buf, off, end, clipped)
        if geneve is None:
            return None
        payload = off + geneve.__hdr_len__ + geneve.opt_len * 4
        if self._enter_tunnel(p, Tunnel("geneve", geneve.vni), payload):
            if geneve.proto == layers.ETH_TYPE_TEB:
                self._ether(p, buf, payload, end, clipped)
            else:  # e.g. 0x0800/0x86DD: IP without an inner Ethernet header (GCP)
                self._ethertype(p, buf, payload, end, clipped, geneve.proto, "geneve")
        return None

    def _gre(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool) -> None:
        """RFC 2784/2890 (and 1701 routing, 2637 PPTP): flags+version, protocol, options."""
        if off + layers.GRE.__hdr_len__ <= end and buf[off + 1] & 0x07 > 1:
            p.error = p.error or BAD_TUNNEL  # versions 0 and 1 only (fields unread)
            return None
        gre = self._tunnel(p, layers.GRE, buf, off, end, clipped)
        if gre is None:
            return None
        pos = off + gre.header_len
        key = getattr(gre, "key", None)
        protocol, cls = gre.p, gre.payload_class()
        if gre.v == 1:  # enhanced GRE (PPTP): key (payload length + call id) required
            if not gre.flags & layers.GRE_KP:
                p.error = p.error or BAD_TUNNEL
                return None
            if self._enter_tunnel(p, Tunnel("pptp"), pos):  # (a call id is no VNI)
                self._gre_payload(p, buf, pos, end, clipped, protocol, cls)
            return None
        if protocol in (layers.ETH_TYPE_ERSPAN2, layers.ETH_TYPE_ERSPAN3):
            self._erspan(p, buf, pos, end, clipped, protocol, key, cls)
        elif protocol == layers.ETH_TYPE_TEB:
            # Key present: the NVGRE layout (RFC 7637), key = VSID(24) FlowID(8).
            tunnel = (
                Tunnel("nvgre", key >> 8, key) if key is not None else Tunnel("gre", None, None)
            )
            if self._enter_tunnel(p, tunnel, pos):
                self._ether(p, buf, pos, end, clipped)
        elif self._enter_tunnel(p, Tunnel("gre", key, key), pos):
            self._gre_payload(p, buf, pos, end, clipped, protocol, cls)
        return None

    def _gre_payload(self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool,
                     protocol: int, cls: Any) -> None:
        """What a GRE header (or PPP, WCCP, Cisco MetaData inside it) carries."""
        if cls is layers.PPP:
            ppp = self._tunnel(p, layers.PPP, buf, off, end, clipped)
            if ppp is None:
                return None
            p.payload_offset = off = off + len(ppp._hdr)
            if (not self._payload_of(p, ppp.payload_class(), buf, off, end, clipped)
                    and ppp.p < PPP_CONTROL):  # (LCP, IPCP, CCP...: the link's own traffic)
                self._unsupported(p, f"ppp 0x{ppp.p:04x}")
            return None
        elif cls is layers.CMD:  # GRE form of Cisco MetaData: ethertype first, 8 bytes
            cmd = self._tunnel(p, layers.CMD, buf, off, end, clipped)
            if cmd is None:
                return None
            p.payload_offset = off = off + cmd.__hdr_len__
            protocol, cls = cmd.type, cmd.payload_class()
        elif cls is layers.WCCP:  # a 4-byte redirect header (WCCPv2) or none (v1)
            wccp = self._tunnel(p, layers.WCCP, buf, off, end, clipped)
            if wccp is None:
                return None
            p.payload_offset = off = off + (0 if wccp.v1 else wccp.__hdr_len__)
            return self._ipv4(p, buf, off, end, clipped)
        if cls is dpkt.ethernet.Ethernet:
            self._ether(p, buf, off, end, clipped)
        else:  # IPv4, IPv6, ARP, MPLS, NSH by the protocol type, as an Ethernet frame's
            self._ethertype(p, buf, off, end, clipped, protocol, "gre")
        return None

    def _erspan(
        self, p: DecodedPacket, buf: bytes, off: int, end: int, clipped: bool,
        protocol: int, key: int | None, cls: Any,
    ) -> None:
        """ERSPAN type I (no header), II (8 bytes, version 1), III (12 + optional 8, version 2)."""
        session: int | None = None
        header_len = 0
        erspan_type = 1
        if cls is not dpkt.ethernet.Ethernet:  # type II or III
            erspan = self._tunnel(p, cls, buf, off, end, clipped)
            if erspan is None:
                return None
            erspan_type = erspan.erspan_type
            if erspan.ver != erspan_type - 1:
                p.error = p.error or BAD_TUNNEL
                return None
            session = erspan.session_id
            header_len = erspan.__hdr_len__ + len(getattr(erspan, "platform", b""))
            cls = erspan.payload_class()
        tunnel = Tunnel("erspan", key, key, erspan_type, session)
        if not self._enter_tunnel(p, tunnel, off + header_len):
            return None
        at = off + header_len
        if cls is dpkt.ip.IP and at < end and buf[at] >> 4 == 6:  # frame type 2: IP, any
            cls = dpkt.ip6.IP6
        if not self._payload_of(p, cls, buf, at, end, clipped):
            self._unsupported(p, f"erspan frame type {erspan.ft}")
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
