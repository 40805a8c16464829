"""A packet in flight: the Scapy frame as it is now, plus what the builder knows about it.

Builders never guess from bytes: the encapsulation chain, VNI and overhead are recorded by the
transform that adds them. The innermost and outer tuples are read from the Scapy layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Packet

IP_LAYERS = (IP, IPv6)


@dataclass(frozen=True)
class Encapsulation:
    """One tunnel header stack added by a VTEP: its name, VNI/key and wire bytes added."""

    name: str  # vxlan, geneve, nvgre, ipip
    vni: int | None
    overhead_bytes: int


@dataclass(frozen=True)
class InFlight:
    """The frame at one point of its path (``pkt`` starts with Ether, or IP on a raw device)."""

    pkt: Packet
    tunnels: tuple[Encapsulation, ...] = ()  # outermost first
    fragment: str = "none"  # none, first, non-first: of the innermost IP packet

    def with_pkt(self, pkt: Packet) -> InFlight:
        return replace(self, pkt=pkt)

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


def ip_layers(pkt: Packet) -> list[Packet]:
    """Every IPv4/IPv6 header of the frame, outermost first (ICMP-quoted headers excluded)."""
    return [layer for layer in pkt.iterpayloads() if type(layer) in IP_LAYERS]


def l4_ports(ip_layer: Packet) -> tuple[int | None, int | None]:
    """Ports of the L4 header right after ``ip_layer``; ICMP echo gives its identifier twice."""
    payload = ip_layer.payload
    if isinstance(payload, TCP | UDP):
        return payload.sport, payload.dport
    if isinstance(payload, ICMP) and payload.type in (0, 8):
        return payload.id, payload.id
    if isinstance(payload, ICMPv6EchoRequest | ICMPv6EchoReply):
        return payload.id, payload.id
    return None, None


def ip_proto(ip_layer: Packet) -> int:
    return int(ip_layer.proto if isinstance(ip_layer, IP) else ip_layer.nh)
