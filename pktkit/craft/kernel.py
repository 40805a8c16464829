"""What the Linux kernel does to a packet between two capture points, as byte rewrites.

Each transform takes the packet in flight and the flow's state and returns the frame(s) that
leave it (more than one when it fragments, none when it drops). Every header field the kernel
sets is set here explicitly. Checksums are recomputed after every rewrite, as the kernel's NAT
and forwarding do. The outer UDP checksum: a vxlan device computes it by default (``udp_csum``
on, measured with pktkit lab on Linux 6.18: a capture on the sending host shows the partial
sum its offload leaves, the receiver the whole one, written here); a geneve device leaves it
zero over IPv4 unless ``udpcsum`` is set (RFC 8926 allows it); over IPv6 it is always computed
(udp6zerocsumtx is off). docs/FIDELITY.md lists what differs from the kernel and why.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pktkit.craft.flight import (
    ETH_HEADER,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Encapsulation,
    InFlight,
    internet_checksum,
    ip_addresses,
    ip_header_len,
    ip_proto,
    ip_version,
    is_fragment,
    l4_ports,
)
from pktkit.craft.nat import Conntrack, ConntrackEntry

ETHERTYPE = {4: ETHERTYPE_IPV4, 6: ETHERTYPE_IPV6}
LINUX_EPHEMERAL = (32768, 60999)  # net.ipv4.ip_local_port_range, also the VXLAN source-port range
VXLAN_FLAGS_VNI_VALID = 0x08  # RFC 7348: the I flag; every other bit reserved, zero


@dataclass
class FlowState:
    """Per-connection state shared by the transforms of both directions."""

    direction: str = "fwd"  # fwd: as the originator sent it; rev: the replies
    conntrack: ConntrackEntry | None = None


class Transform(Protocol):
    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]: ...


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ether_header(src_mac: str, dst_mac: str, version: int) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETHERTYPE[version])


def _ip_offset(flight: InFlight) -> int:
    return ETH_HEADER if flight.link == "ether" else 0


def set_ipv4_header_checksum(buf: bytearray, offset: int) -> None:
    header_len = ip_header_len(buf, offset)
    buf[offset + 10 : offset + 12] = b"\x00\x00"
    buf[offset + 10 : offset + 12] = struct.pack(
        "!H", internet_checksum(buf[offset : offset + header_len]))


def _pseudo_header(buf: bytearray, offset: int, proto: int, length: int) -> bytes:
    if ip_version(buf, offset) == 4:
        return bytes(buf[offset + 12 : offset + 20]) + struct.pack("!xBH", proto, length)
    return bytes(buf[offset + 8 : offset + 40]) + struct.pack("!IxxxB", length, proto)


def ip_payload_len(buf: bytes | bytearray, offset: int) -> int:
    if ip_version(buf, offset) == 4:
        return struct.unpack_from("!H", buf, offset + 2)[0] - ip_header_len(buf, offset)
    return struct.unpack_from("!H", buf, offset + 4)[0]


def set_l4_checksum(buf: bytearray, offset: int, *, fresh: bool = False) -> None:
    """Recompute the TCP/UDP/ICMP/ICMPv6 checksum of the IP packet at ``offset`` (whole
    datagrams only: a fragment's checksum covers bytes it does not carry). A UDP/IPv4 "no
    checksum" (zero) stays so, unless the datagram is ``fresh`` (its sender computes one)."""
    if is_fragment(buf, offset):
        return
    proto = ip_proto(buf, offset)
    start = offset + ip_header_len(buf, offset)
    length = ip_payload_len(buf, offset)
    field_at = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMP: 2, PROTO_ICMPV6: 2}.get(proto)
    if field_at is None:
        return
    if proto == PROTO_UDP and ip_version(buf, offset) == 4 and not fresh and \
            struct.unpack_from("!H", buf, start + 6)[0] == 0:
        return  # "no checksum" stays so through NAT
    buf[start + field_at : start + field_at + 2] = b"\x00\x00"
    covered = bytes(buf[start : start + length])
    if proto != PROTO_ICMP:  # ICMPv4 alone has no pseudo-header
        covered = _pseudo_header(buf, offset, proto, length) + covered
    value = internet_checksum(covered)
    if proto == PROTO_UDP and value == 0:
        value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    buf[start + field_at : start + field_at + 2] = struct.pack("!H", value)


def _take_ttl(buf: bytearray, offset: int, routers: int) -> bool:
    """Subtract ``routers`` from the TTL/hop limit; False when a router would drop it."""
    ttl_at = offset + (8 if ip_version(buf, offset) == 4 else 7)
    if buf[ttl_at] <= routers:
        return False
    buf[ttl_at] -= routers
    if ip_version(buf, offset) == 4:
        set_ipv4_header_checksum(buf, offset)
    return True


@dataclass
class Route:
    """IP forwarding by this node: TTL/hop limit minus one, new link header for the next device.

    ``src_mac``/``dst_mac`` None means the next device has no link header (an ipip tunl0)."""

    src_mac: str | None
    dst_mac: str | None

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        packet = bytearray(flight.frame[_ip_offset(flight) :])
        if not _take_ttl(packet, 0, 1):
            return []  # the kernel drops it (and would send ICMP time exceeded)
        if self.src_mac is None or self.dst_mac is None:
            return [flight.with_frame(bytes(packet), "raw")]
        link = ether_header(self.src_mac, self.dst_mac, ip_version(packet, 0))
        return [flight.with_frame(link + bytes(packet), "ether")]


@dataclass
class Transit:
    """Routers between capture points that no one captures: each takes one from the TTL."""

    routers: int

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        buf = bytearray(flight.frame)
        if not _take_ttl(buf, _ip_offset(flight), self.routers):
            return []
        return [flight.with_frame(bytes(buf))]


def rewrite_tuple(buf: bytearray, offset: int, src: str, sport: int, dst: str,
                  dport: int) -> None:
    """Set the addresses and ports (ICMP echo: identifier) of the IP packet at ``offset``,
    then fix its checksums, as netfilter's NAT does."""
    v4 = ip_version(buf, offset) == 4
    size = 4 if v4 else 16
    src_at = offset + (12 if v4 else 8)
    buf[src_at : src_at + size] = ipaddress.ip_address(src).packed
    buf[src_at + size : src_at + 2 * size] = ipaddress.ip_address(dst).packed
    proto, l4 = ip_proto(buf, offset), offset + ip_header_len(buf, offset)
    if proto in (PROTO_TCP, PROTO_UDP):
        struct.pack_into("!HH", buf, l4, sport, dport)
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        struct.pack_into("!H", buf, l4 + 4, sport)  # replies carry the same identifier
    if v4:
        set_ipv4_header_checksum(buf, offset)
    set_l4_checksum(buf, offset)


def packet_tuple(frame: bytes, offset: int) -> tuple[int, str, int, str, int]:
    src, dst = ip_addresses(frame, offset)
    sport, dport = l4_ports(frame, offset)
    return ip_proto(frame, offset), src, sport or 0, dst, dport or 0


@dataclass
class Nat:
    """netfilter NAT on this node: creates the conntrack entry on the first packet.

    Place it in the forward path where the translated packet first becomes visible; the reverse
    path gets :class:`NatReply` at the point where replies are translated back."""

    table: Conntrack
    snat_to: str | None = None
    dnat_to: tuple[str, int] | None = None
    random_fully: bool = False  # MASQUERADE --random-fully, as kube-proxy writes it

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        offset = _ip_offset(flight)
        if flow.conntrack is None:
            orig = packet_tuple(flight.frame, offset)
            flow.conntrack = self.table.translate(orig, snat_to=self.snat_to, dnat_to=self.dnat_to,
                                                  random_fully=self.random_fully)
        _, src, sport, dst, dport = flow.conntrack.xlat
        buf = bytearray(flight.frame)
        rewrite_tuple(buf, offset, src, sport, dst, dport)
        return [flight.with_frame(bytes(buf))]


@dataclass
class NatReply:
    """Reverse translation of a reply (de-SNAT in PREROUTING, de-DNAT in POSTROUTING)."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        if flow.conntrack is None:
            return [flight]
        _, osrc, osport, odst, odport = flow.conntrack.orig
        buf = bytearray(flight.frame)
        rewrite_tuple(buf, _ip_offset(flight), odst, odport, osrc, osport)
        return [flight.with_frame(bytes(buf))]


def flow_hash_port(flight: InFlight, salt: int = 0) -> int:
    """Outer UDP source port from a hash of the inner flow, as ``udp_flow_src_port`` does.

    Fragments hash on addresses only (the kernel does not parse L4 of a fragment)."""
    offset = flight.ip_offsets()[-1]
    src, dst = ip_addresses(flight.frame, offset)
    fragment = is_fragment(flight.frame, offset)
    sport, dport = (None, None) if fragment else l4_ports(flight.frame, offset)
    key = f"{src}|{dst}|{ip_proto(flight.frame, offset)}|{sport}|{dport}|{salt}".encode()
    low, high = LINUX_EPHEMERAL
    return low + (zlib.crc32(key) * (high - low) >> 32)


@dataclass
class _Underlay:
    """The outer Ethernet and IP of a VTEP, with the IP ID counters of the sending host.

    Linux numbers the IDs of packets sent from no connected socket (a tunnel's outer header)
    from one counter per (source, destination, protocol) of the host (``ip_idents``), whatever
    device sends them: two VXLAN devices (VNIs) of one node to the same peer draw from one
    sequence (measured with pktkit lab). ``idents`` is that table; a scenario shares one
    between all its tunnels."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    ttl: int = 64
    rng_seed: int = 0
    df: bool = False  # outer DF: set by devices with path-MTU discovery on (iproute2 gretap)
    inherit: bool = False  # copy TTL and DF from an inner IPv4 packet (ipip fallback tunl0)
    idents: dict[tuple[str, str, int], int] = field(default_factory=dict)
    udp_csum: bool = False  # compute the outer UDP checksum over IPv4 too

    def next_ip_id(self, proto: int) -> int:
        """The next ID of (this host, the peer, ``proto``); the counter starts at random."""
        key = (self.src_ip, self.dst_ip, proto)
        if key not in self.idents:
            self.idents[key] = random.Random(
                f"{self.src_ip}>{self.dst_ip}:{self.rng_seed}").randint(0, 0xFFFF)
        self.idents[key] = (self.idents[key] + 1) & 0xFFFF
        return self.idents[key]

    @property
    def version(self) -> int:
        return 6 if ":" in self.src_ip else 4

    @property
    def link_and_ip_bytes(self) -> int:
        return ETH_HEADER + (40 if self.version == 6 else 20)

    def _ttl_and_df(self, flight: InFlight) -> tuple[int, bool]:
        inner_at = _ip_offset(flight)
        if self.inherit and ip_version(flight.frame, inner_at) == 4:
            return flight.frame[inner_at + 8], bool(flight.frame[inner_at + 6] & 0x40)
        return self.ttl, self.df

    def wrap(self, flight: InFlight, proto: int, payload: bytes,
             udp_ports: tuple[int, int] | None) -> bytes:
        """Outer Ethernet + IP (+ UDP) around ``payload``. Tunnels do not set DF by default,
        so an oversized outer packet is fragmented, not dropped."""
        ttl, df = self._ttl_and_df(flight)
        if udp_ports is not None:
            payload = struct.pack("!HHHH", *udp_ports, 8 + len(payload), 0) + payload
        src = ipaddress.ip_address(self.src_ip).packed
        dst = ipaddress.ip_address(self.dst_ip).packed
        if self.version == 6:
            header = bytearray(struct.pack("!IHBB", 6 << 28, len(payload), proto, ttl)
                               + src + dst)
        else:
            header = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload),
                                           self.next_ip_id(proto), 0x4000 if df else 0, ttl,
                                           proto, 0) + src + dst)
        packet = header + payload
        if self.version == 4:
            set_ipv4_header_checksum(packet, 0)
        if udp_ports is not None and (self.version == 6 or self.udp_csum):
            set_l4_checksum(packet, 0, fresh=True)  # mandatory over IPv6
        return ether_header(self.src_mac, self.dst_mac, self.version) + bytes(packet)

    def _encapsulated(self, flight: InFlight, frame: bytes, name: str, vni: int | None,
                      header_bytes: int, inner_link: Literal["ether", "raw"]) -> list[InFlight]:
        overhead = header_bytes + self.link_and_ip_bytes
        if inner_link == "raw":  # the inner packet's own link header is gone, not added
            overhead -= ETH_HEADER
        tunnel = Encapsulation(name, vni, overhead, header_bytes, inner_link)
        return [InFlight(frame, "ether", (tunnel, *flight.tunnels), flight.fragment)]


def _inner_ether(flight: InFlight) -> bytes:
    if flight.link != "ether":
        raise ValueError("an L2 tunnel carries an Ethernet frame; route to an Ethernet device")
    return flight.frame


@dataclass
class VxlanEncap(_Underlay):
    """Linux vxlan device (RFC 7348): flags 0x08 (VNI valid), reserved bits zero, the outer
    UDP checksum computed (the device's default)."""

    vni: int = 1
    dport: int = 8472
    udp_csum: bool = True

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        vxlan = struct.pack("!II", VXLAN_FLAGS_VNI_VALID << 24, self.vni << 8)
        frame = self.wrap(flight, PROTO_UDP, vxlan + _inner_ether(flight),
                          (flow_hash_port(flight), self.dport))
        return self._encapsulated(flight, frame, "vxlan", self.vni, 16, "ether")


@dataclass
class GeneveEncap(_Underlay):
    """Geneve (RFC 8926) on UDP 6081 with option TLVs, carrying the inner Ethernet frame.

    Options are (class, type, data); data length a multiple of 4 bytes."""

    vni: int = 1
    dport: int = 6081
    options: tuple[tuple[int, int, bytes], ...] = ((0x0102, 0x80, b"\x00\x01\x00\x02"),)

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        tlvs = b"".join(struct.pack("!HBB", cls, typ, len(data) // 4) + data
                        for cls, typ, data in self.options)
        # Ver 0, opt len in 4-byte words, O clear, C set when an option's type has the critical
        # bit (0x80; as OVS sets TUNNEL_CRIT_OPT), protocol 0x6558 (Ethernet).
        critical = 0x40 if any(typ & 0x80 for _, typ, _ in self.options) else 0
        geneve = struct.pack("!BBHI", len(tlvs) // 4, critical, 0x6558, self.vni << 8) + tlvs
        frame = self.wrap(flight, PROTO_UDP, geneve + _inner_ether(flight),
                          (flow_hash_port(flight), self.dport))
        return self._encapsulated(flight, frame, "geneve", self.vni, 8 + len(geneve), "ether")


@dataclass
class NvgreEncap(_Underlay):
    """NVGRE (RFC 7637): GRE with the key bit, protocol 0x6558, key = VSID << 8 | FlowID."""

    vsid: int = 1
    flow_id: int = 0

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        gre = struct.pack("!HHI", 0x2000, 0x6558, (self.vsid << 8) | self.flow_id)
        frame = self.wrap(flight, 47, gre + _inner_ether(flight), None)
        return self._encapsulated(flight, frame, "nvgre", self.vsid, len(gre), "ether")


@dataclass
class IpipEncap(_Underlay):
    """IP-in-IP (Calico's tunl0): the inner IP packet behind a new outer IP header."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        inner = flight.frame[_ip_offset(flight) :]
        proto = 41 if ip_version(inner, 0) == 6 else 4
        frame = self.wrap(flight, proto, inner, None)
        return self._encapsulated(flight, frame, "ipip", None, 0, "raw")


@dataclass
class Decap:
    """The receiving VTEP strips the outermost tunnel; the inner frame (or IP packet) remains."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        tunnel = flight.tunnels[0]
        inner_ip = flight.ip_offsets()[1]
        start = inner_ip - (ETH_HEADER if tunnel.inner_link == "ether" else 0)
        return [InFlight(flight.frame[start:], tunnel.inner_link, flight.tunnels[1:],
                         flight.fragment)]


@dataclass
class Fragment:
    """IPv4 fragmentation of the outermost IP packet to ``mtu``, as ``ip_fragment`` does.

    A packet with DF set is dropped instead (the kernel answers ICMP fragmentation needed)."""

    mtu: int

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        offset = _ip_offset(flight)
        frame = flight.frame
        if ip_version(frame, offset) != 4:
            return [flight]
        total = struct.unpack_from("!H", frame, offset + 2)[0]
        if total <= self.mtu:
            return [flight]
        flags_frag = struct.unpack_from("!H", frame, offset + 6)[0]
        if flags_frag & 0x4000:
            return []
        if flight.tunnels:
            # A non-first piece of a tunnel packet has no tunnel header: not modelled.
            raise NotImplementedError("fragmenting an encapsulated packet")
        header_len = ip_header_len(frame, offset)
        link, header = frame[:offset], frame[offset : offset + header_len]
        data = frame[offset + header_len : offset + total]
        chunk = (self.mtu - header_len) // 8 * 8
        base_offset = flags_frag & 0x1FFF
        pieces = []
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            more = start + chunk < len(data) or bool(flags_frag & 0x2000)
            piece = bytearray(header + part)
            struct.pack_into("!H", piece, 2, header_len + len(part))
            struct.pack_into("!H", piece, 6, (0x2000 if more else 0) | (base_offset + start // 8))
            set_ipv4_header_checksum(piece, 0)
            # Only the innermost IP packet's fragmentation is tracked as ``fragment``.
            position = "first" if start == 0 and base_offset == 0 else "non-first"
            fragment = position if not flight.tunnels else flight.fragment
            pieces.append(InFlight(link + bytes(piece), flight.link, flight.tunnels, fragment))
        return pieces
