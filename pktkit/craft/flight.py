"""A packet in flight: the frame's bytes as they are now, plus what the builder knows of it.

Endpoints build their packets with Scapy once; between capture points the kernel only rewrites
bytes (MACs, TTL, NAT, tunnel headers), and so do our transforms. Builders never guess from
bytes what they can know: the tunnel chain, VNI and overhead are recorded by the transform that
adds them, and the offsets of the inner headers follow from that chain.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from array import array
from dataclasses import dataclass, replace
from typing import Literal

ETH_HEADER = 14
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58


@dataclass(frozen=True)
class Encapsulation:
    """One tunnel header stack added by a VTEP: its name, VNI/key and wire bytes added.

    ``header_bytes`` is what follows the outer IP header up to the inner frame (UDP + VXLAN,
    GRE, ...); ``inner_link`` says whether the inner frame keeps an Ethernet header."""

    name: str  # vxlan, geneve, nvgre, ipip
    vni: int | None
    overhead_bytes: int
    header_bytes: int
    inner_link: Literal["ether", "raw"]


@dataclass(frozen=True)
class InFlight:
    """The frame at one point of its path: Ethernet (``link="ether"``) or a bare IP packet."""

    frame: bytes
    link: Literal["ether", "raw"] = "ether"
    tunnels: tuple[Encapsulation, ...] = ()  # outermost first
    fragment: str = "none"  # none, first, non-first: of the innermost IP packet

    def with_frame(self, frame: bytes, link: Literal["ether", "raw"] | None = None) -> InFlight:
        return replace(self, frame=frame, link=link or self.link)

    @property
    def encap(self) -> str:
        return "/".join(t.name for t in self.tunnels) or "none"

    @property
    def vni(self) -> int | None:
        keyed = [t.vni for t in self.tunnels if t.vni is not None]
        return keyed[-1] if keyed else None

    @property
    def overhead_bytes(self) -> int:
        return sum(t.overhead_bytes for t in self.tunnels)

    def ip_offsets(self) -> list[int]:
        """Offset of every IP header in the frame, outermost first (one per tunnel, plus one)."""
        offset = ETH_HEADER if self.link == "ether" else 0
        offsets = [offset]
        for tunnel in self.tunnels:
            offset += ip_header_len(self.frame, offset) + tunnel.header_bytes
            if tunnel.inner_link == "ether":
                offset += ETH_HEADER
            offsets.append(offset)
        return offsets


def ip_version(frame: bytes, offset: int) -> int:
    return frame[offset] >> 4


def ip_header_len(frame: bytes, offset: int) -> int:
    """IPv4 IHL in bytes, or 40 for IPv6 (our builders add no IPv6 extension headers)."""
    return (frame[offset] & 0x0F) * 4 if ip_version(frame, offset) == 4 else 40


def ip_proto(frame: bytes, offset: int) -> int:
    return frame[offset + 9] if ip_version(frame, offset) == 4 else frame[offset + 6]


def ip_addresses(frame: bytes, offset: int) -> tuple[str, str]:
    if ip_version(frame, offset) == 4:
        return (str(ipaddress.IPv4Address(frame[offset + 12 : offset + 16])),
                str(ipaddress.IPv4Address(frame[offset + 16 : offset + 20])))
    return (str(ipaddress.IPv6Address(frame[offset + 8 : offset + 24])),
            str(ipaddress.IPv6Address(frame[offset + 24 : offset + 40])))


def is_fragment(frame: bytes, offset: int) -> bool:
    if ip_version(frame, offset) != 4:
        return False
    return struct.unpack_from("!H", frame, offset + 6)[0] & 0x3FFF != 0  # MF or offset


def l4_ports(frame: bytes, offset: int) -> tuple[int | None, int | None]:
    """Ports of the L4 header after the IP header at ``offset``; ICMP echo: the identifier.

    None for a non-first fragment and for protocols without ports."""
    if ip_version(frame, offset) == 4 and struct.unpack_from("!H", frame, offset + 6)[0] & 0x1FFF:
        return None, None
    proto, l4 = ip_proto(frame, offset), offset + ip_header_len(frame, offset)
    if proto in (PROTO_TCP, PROTO_UDP):
        sport, dport = struct.unpack_from("!HH", frame, l4)
        return sport, dport
    if (proto, frame[l4]) in ((PROTO_ICMP, 0), (PROTO_ICMP, 8), (PROTO_ICMPV6, 128),
                              (PROTO_ICMPV6, 129)):
        ident = struct.unpack_from("!H", frame, l4 + 4)[0]
        return ident, ident
    return None, None


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum (the value to store). Summed in native order, swapped once at the end,
    which RFC 1071 section 2(B) allows."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(array("H", bytes(data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if sys.byteorder == "little":
        total = ((total & 0xFF) << 8) | (total >> 8)
    return ~total & 0xFFFF
