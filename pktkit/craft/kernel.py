"""What the Linux kernel does to a packet between two capture points, as Scapy transforms.

Each transform takes the packet in flight and the flow's state and returns the frame(s) that
leave it (more than one when it fragments). Every header field that the kernel sets is set here
explicitly: Scapy's defaults are not the kernel's (its VXLAN flags, UDP source port 53, IP ID 1).
Checksums are deleted after a rewrite so that Scapy recomputes them, as the kernel does (or, for
VXLAN/Geneve over IPv4, leaves the outer UDP checksum zero, as Linux does by default).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Protocol

from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from pktkit.craft.flight import Encapsulation, InFlight, ip_layers, ip_proto, l4_ports
from pktkit.craft.nat import Conntrack, ConntrackEntry

ETH_HEADER = 14
ETHERTYPE = {4: 0x0800, 6: 0x86DD}
LINUX_EPHEMERAL = (32768, 60999)  # net.ipv4.ip_local_port_range, also the VXLAN source-port range


@dataclass
class FlowState:
    """Per-connection state shared by the transforms of both directions."""

    direction: str = "fwd"  # fwd: as the originator sent it; rev: the replies
    conntrack: ConntrackEntry | None = None


class Transform(Protocol):
    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]: ...


def _clear_checksums(pkt: Packet) -> None:
    """Drop every checksum so Scapy recomputes them on build (the kernel's NAT fixes them)."""
    for layer in pkt.iterpayloads():
        if isinstance(layer, IP | TCP | UDP | ICMP) and "chksum" in layer.fields:
            del layer.chksum


def _outer_ip(pkt: Packet) -> Packet:
    return ip_layers(pkt)[0]


def _take_ttl(ip: Packet, routers: int) -> bool:
    """Subtract ``routers`` from the TTL/hop limit; False when a router would drop it."""
    if isinstance(ip, IP):
        if ip.ttl <= routers:
            return False
        ip.ttl -= routers
        del ip.chksum
        return True
    if ip.hlim <= routers:
        return False
    ip.hlim -= routers
    return True


def rebuild(pkt: Packet) -> Packet:
    """Freeze a Scapy packet into its bytes and dissect it again (fields become explicit)."""
    cls = Ether if isinstance(pkt, Ether) else (IP if isinstance(pkt, IP) else IPv6)
    return cls(bytes(pkt))


@dataclass
class Route:
    """IP forwarding by this node: TTL/hop limit minus one, new link header for the next device.

    ``src_mac``/``dst_mac`` None means the next device has no link header (an ipip tunl0)."""

    src_mac: str | None
    dst_mac: str | None

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        ip = _outer_ip(flight.pkt).copy()
        if not _take_ttl(ip, 1):
            return []  # the kernel drops it (and would send ICMP time exceeded)
        if self.src_mac is None or self.dst_mac is None:
            return [flight.with_pkt(rebuild(ip))]
        version = 4 if isinstance(ip, IP) else 6
        frame = Ether(src=self.src_mac, dst=self.dst_mac, type=ETHERTYPE[version]) / ip
        return [flight.with_pkt(rebuild(frame))]


@dataclass
class Transit:
    """Routers between capture points that no one captures: each takes one from the TTL."""

    routers: int

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        pkt = flight.pkt.copy()
        if not _take_ttl(_outer_ip(pkt), self.routers):
            return []
        return [flight.with_pkt(rebuild(pkt))]


def rewrite_tuple(ip: Packet, src: str, sport: int, dst: str, dport: int) -> None:
    ip.src, ip.dst = src, dst
    l4 = ip.payload
    if isinstance(l4, TCP | UDP):
        l4.sport, l4.dport = sport, dport
    elif isinstance(l4, ICMP):
        l4.id = sport  # echo identifier; replies carry the same
    _clear_checksums(ip)


@dataclass
class Nat:
    """netfilter NAT on this node: creates the conntrack entry on the first packet.

    Place it in the forward path where the translated packet first becomes visible; the reverse
    path gets :class:`NatReply` at the point where replies are translated back."""

    table: Conntrack
    snat_to: str | None = None
    dnat_to: tuple[str, int] | None = None

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        pkt = flight.pkt.copy()
        ip = _outer_ip(pkt)
        sport, dport = l4_ports(ip)
        if flow.conntrack is None:
            orig = (ip_proto(ip), ip.src, sport or 0, ip.dst, dport or 0)
            flow.conntrack = self.table.translate(orig, snat_to=self.snat_to, dnat_to=self.dnat_to)
        _, src, xsport, dst, xdport = flow.conntrack.xlat
        rewrite_tuple(ip, src, xsport, dst, xdport)
        return [flight.with_pkt(rebuild(pkt))]


@dataclass
class NatReply:
    """Reverse translation of a reply (de-SNAT in PREROUTING, de-DNAT in POSTROUTING)."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        entry = flow.conntrack
        if entry is None:
            return [flight]
        pkt = flight.pkt.copy()
        ip = _outer_ip(pkt)
        _, osrc, osport, odst, odport = entry.orig
        rewrite_tuple(ip, odst, odport, osrc, osport)
        return [flight.with_pkt(rebuild(pkt))]


def flow_hash_port(inner: Packet, salt: int = 0) -> int:
    """Outer UDP source port from a hash of the inner flow, as ``udp_flow_src_port`` does.

    Fragments hash on addresses only (the kernel does not parse L4 of a fragment)."""
    ips = ip_layers(inner)
    ip = ips[-1] if ips else None
    if ip is None:
        key = bytes(inner)[:14]
    else:
        is_fragment = isinstance(ip, IP) and (ip.flags.MF or ip.frag > 0)
        sport, dport = (None, None) if is_fragment else l4_ports(ip)
        key = f"{ip.src}|{ip.dst}|{ip_proto(ip)}|{sport}|{dport}|{salt}".encode()
    low, high = LINUX_EPHEMERAL
    return low + (zlib.crc32(key) * (high - low) >> 32)


@dataclass
class _Underlay:
    """The outer Ethernet and IP of a VTEP, with the IP ID counter of the sending host."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    ttl: int = 64
    rng_seed: int = 0
    _ip_id: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._ip_id = random.Random(f"{self.src_ip}>{self.dst_ip}:{self.rng_seed}").randint(
            0, 0xFFFF
        )

    @property
    def version(self) -> int:
        return 6 if ":" in self.src_ip else 4

    def ip_header(self, proto: int) -> Packet:
        if self.version == 6:
            return IPv6(src=self.src_ip, dst=self.dst_ip, hlim=self.ttl, nh=proto, tc=0, fl=0)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        # Tunnels do not set DF by default, so an oversized outer packet is fragmented.
        return IP(src=self.src_ip, dst=self.dst_ip, ttl=self.ttl, id=self._ip_id, flags=0,
                  tos=0, proto=proto)

    def ether(self) -> Packet:
        return Ether(src=self.src_mac, dst=self.dst_mac, type=ETHERTYPE[self.version])

    @property
    def header_bytes(self) -> int:
        return ETH_HEADER + (40 if self.version == 6 else 20)


@dataclass
class VxlanEncap(_Underlay):
    """Linux vxlan device (RFC 7348): flags 0x08 (VNI valid), UDP checksum off over IPv4."""

    vni: int = 1
    dport: int = 8472

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        udp = UDP(sport=flow_hash_port(flight.pkt), dport=self.dport)
        if self.version == 4:
            udp.chksum = 0  # Linux default: udpcsum off for IPv4 (RFC 7348 allows zero)
        frame = (self.ether() / self.ip_header(17) / udp
                 / VXLAN(flags=0x08, reserved1=0, vni=self.vni, reserved2=0) / flight.pkt)
        tunnel = Encapsulation("vxlan", self.vni, self.header_bytes + 8 + 8)
        return [InFlight(rebuild(frame), (tunnel, *flight.tunnels), flight.fragment)]


@dataclass
class GeneveEncap(_Underlay):
    """Geneve (RFC 8926) on UDP 6081 with option TLVs, carrying the inner Ethernet frame."""

    vni: int = 1
    dport: int = 6081
    options: tuple[tuple[int, int, bytes], ...] = ((0x0102, 0x80, b"\x00\x01\x00\x02"),)

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        tlvs = [GeneveOptions(classid=c, type=t, length=len(d) // 4, data=d)
                for c, t, d in self.options]
        options_bytes = sum(4 + len(d) for _, _, d in self.options)
        udp = UDP(sport=flow_hash_port(flight.pkt), dport=self.dport)
        if self.version == 4:
            udp.chksum = 0
        geneve = GENEVE(version=0, optionlen=options_bytes // 4, oam=0, critical=0, reserved=0,
                        proto=0x6558, vni=self.vni, reserved2=0, options=tlvs)
        frame = self.ether() / self.ip_header(17) / udp / geneve / flight.pkt
        tunnel = Encapsulation("geneve", self.vni, self.header_bytes + 8 + 8 + options_bytes)
        return [InFlight(rebuild(frame), (tunnel, *flight.tunnels), flight.fragment)]


@dataclass
class NvgreEncap(_Underlay):
    """NVGRE (RFC 7637): GRE with the key bit, protocol 0x6558, key = VSID << 8 | FlowID."""

    vsid: int = 1
    flow_id: int = 0

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        gre = GRE(chksum_present=0, routing_present=0, key_present=1, seqnum_present=0,
                  strict_route_source=0, recursion_control=0, flags=0, version=0,
                  proto=0x6558, key=(self.vsid << 8) | self.flow_id)
        frame = self.ether() / self.ip_header(47) / gre / flight.pkt
        tunnel = Encapsulation("nvgre", self.vsid, self.header_bytes + 8)
        return [InFlight(rebuild(frame), (tunnel, *flight.tunnels), flight.fragment)]


@dataclass
class IpipEncap(_Underlay):
    """IP-in-IP (Calico's tunl0): the inner IP packet behind a new outer IP header."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        inner = flight.pkt
        inner_ip = inner.payload if isinstance(inner, Ether) else inner
        version = 6 if isinstance(inner_ip, IPv6) else 4
        proto = 41 if version == 6 else 4
        frame = self.ether() / self.ip_header(proto) / inner_ip
        # The inner packet loses its own link header: only the outer IP header is added.
        tunnel = Encapsulation("ipip", None, self.header_bytes - ETH_HEADER)
        return [InFlight(rebuild(frame), (tunnel, *flight.tunnels), flight.fragment)]


@dataclass
class Decap:
    """The receiving VTEP strips the outermost tunnel; the inner frame (or IP packet) remains."""

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        pkt = flight.pkt
        for layer in pkt.iterpayloads():
            if isinstance(layer, VXLAN | GENEVE | GRE):
                inner = layer.payload
                break
        else:  # ipip: the second IP header
            inner = ip_layers(pkt)[1]
        return [InFlight(rebuild(inner), flight.tunnels[1:], flight.fragment)]


@dataclass
class Fragment:
    """IPv4 fragmentation of the outermost IP packet to ``mtu`` (DF clear), as ``ip_fragment``."""

    mtu: int

    def __call__(self, flight: InFlight, flow: FlowState) -> list[InFlight]:
        pkt = flight.pkt
        ip = _outer_ip(pkt)
        if not isinstance(ip, IP) or ip.len <= self.mtu:
            return [flight]
        if ip.flags.DF:
            return []  # dropped; the kernel answers ICMP fragmentation needed
        link = pkt.copy()
        if isinstance(link, Ether):
            link.remove_payload()
        header_len = ip.ihl * 4
        data = bytes(ip.payload)
        chunk = (self.mtu - header_len) // 8 * 8
        pieces = []
        for offset in range(0, len(data), chunk):
            part = data[offset : offset + chunk]
            more = offset + chunk < len(data)
            frag = IP(version=4, ihl=ip.ihl, tos=ip.tos, id=ip.id, flags="MF" if more else 0,
                      frag=offset // 8, ttl=ip.ttl, proto=ip.proto, src=ip.src, dst=ip.dst,
                      options=ip.options) / Raw(part)
            frame = link / frag if isinstance(link, Ether) else frag
            # Only the innermost IP packet's fragmentation is tracked as ``fragment``.
            position = "first" if offset == 0 else "non-first"
            fragment = position if not flight.tunnels else flight.fragment
            pieces.append(InFlight(rebuild(frame), flight.tunnels, fragment))
        return pieces
