"""UDP tunnel ports: the port → tunnel map, ports a user names, and ports found in the packets.

:func:`udp_tunnel_classes` is the map both decoders use: :data:`pktkit.dpkt.UDP_PORTS` (VXLAN
4789/8472, VXLAN-GPE 4790, Geneve 6081, GRE-in-UDP 4754, MPLS-in-UDP 6635, Teredo 3544) plus
the ports a user adds. A port that belongs to another tunnel is refused: ``--vxlan-port 6081``
would decode Geneve as VXLAN (wrong VNIs, garbage inner frames).

``--vxlan-port auto`` (:class:`PortSniffer`) judges every UDP destination port from the packets
themselves. A packet *looks like VXLAN* (RFC 7348) when its UDP payload holds flags 0x08 exactly
(I set, every other flag bit zero: GBP sets G, and carries a policy id in the reserved bits),
the 24 reserved bits after the flags and the 8 after the VNI all zero, and a plausible Ethernet
frame after the 8 bytes. One more header shape counts as VXLAN, because it decodes as VXLAN:
the VXLAN-GPE form of the same thing, flags 0x0C (I and P), 16 reserved bits zero, next protocol
3 (Ethernet); zeek's nested-VXLAN trace sends exactly that to 4789, and tshark and pktkit decode
it as VXLAN.

It *looks like Geneve* (RFC 8926) when version is 0, the 6 reserved bits and the last byte are
zero, the options (opt_len × 4 bytes) fit and walk exactly to their end (each TLV's own
length), the protocol type is 0x6558 (Ethernet, then a plausible frame), 0x0800 (a plausible
IPv4 header) or 0x86DD (IPv6).

A *plausible Ethernet frame*: a unicast source MAC (multicast bit clear) and an ethertype of
IPv4, IPv6, ARP or a VLAN tag; a *plausible IPv4 header*: version 4, IHL ≥ 5, total length ≥
the header; IPv6: version 6. An inner IPv4 header whose checksum verifies is *strong* evidence:
random 20 bytes verify with probability 1/65535.

A port is found as a kind when, among the packets sent to it (up to ``SAMPLE`` looked at), at
least ``MIN_SHARE`` (95 %) look like that kind, and either ``MIN_PACKETS`` (3) of them do or one
carries a strong inner IPv4 header. The second way finds a one-packet capture such as a single
nested VXLAN frame; a port carrying anything else (DNS, QUIC, RTP, NTP, ...) fails the share
test long before (``tests/test_tunnel_ports.py`` measures random payloads and the corpus).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

import pktkit.dpkt as layers
from pktkit.errors import UsageError

VXLAN, GENEVE = "vxlan", "geneve"
MIN_SHARE = 0.95
MIN_PACKETS = 3
SAMPLE = 256  # packets per port looked at: enough for the share, bounded cost
AUTO = "auto"  # vxlan_ports="auto": find the VXLAN and Geneve ports in the packets
# UDP ports that belong to tunnels: naming one as a VXLAN or Geneve port is refused
TUNNEL_PORT_NAMES = {
    **dict.fromkeys(layers.VXLAN_PORTS, VXLAN), layers.VXLAN_GPE_PORT: "vxlan-gpe",
    layers.GENEVE_PORT: GENEVE, layers.GRE_IN_UDP_PORT: "gre-in-udp",
    layers.MPLS_IN_UDP_PORT: "mpls-in-udp", layers.TEREDO_PORT: "teredo",
    1701: "l2tp", 4500: "ipsec-nat-t",
}
_KIND_CLASS = {VXLAN: layers.VXLAN, GENEVE: layers.Geneve}

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_TEB = 0x0800, 0x86DD, 0x0806, 0x6558
_INNER_ETHERTYPES = np.array([ETH_IPV4, ETH_IPV6, ETH_ARP, 0x8100, 0x88A8])
WINDOW = 8 + 14 + 4 + 20  # VXLAN + Ethernet + a VLAN tag + an IPv4 header


def udp_tunnel_classes(
    vxlan_ports: Iterable[int] = (), geneve_ports: Iterable[int] = ()
) -> dict[int, type]:
    """UDP port → :mod:`pktkit.dpkt` tunnel class: the registered ports plus these. Raises
    UsageError for a port outside 1-65535 or one that belongs to another tunnel."""
    ports = dict(layers.UDP_PORTS)
    for kind, given in ((VXLAN, vxlan_ports), (GENEVE, geneve_ports)):
        for port in given:
            port = int(port)
            if not 0 < port < 65536:
                raise UsageError(f"{kind} port {port}: not a UDP port; give 1-65535")
            owner = TUNNEL_PORT_NAMES.get(port, kind)
            if owner != kind:
                done = (f"pktkit decodes it as {owner} already" if port in ports
                        else f"not {kind}'s")
                raise UsageError(
                    f"{kind} port {port}: UDP port {port} is {owner}'s ({done}); drop it, or "
                    "let --vxlan-port auto find the ports that carry VXLAN or Geneve")
            ports[port] = _KIND_CLASS[kind]
    return ports


@dataclass
class PortVerdict:
    """What the packets to one UDP destination port showed."""

    port: int
    packets: int = 0  # looked at (at most SAMPLE)
    vxlan: int = 0  # of them, looking like VXLAN
    geneve: int = 0
    strong: dict[str, int] = field(default_factory=lambda: {VXLAN: 0, GENEVE: 0})

    @property
    def kind(self) -> str | None:
        for kind, passed in ((VXLAN, self.vxlan), (GENEVE, self.geneve)):
            if (self.packets and passed >= MIN_SHARE * self.packets
                    and (passed >= MIN_PACKETS or self.strong[kind])):
                return kind
        return None


# -- per packet, vectorized ---------------------------------------------------------------------


def _u16(win: np.ndarray, at: np.ndarray | int) -> np.ndarray:
    rows = np.arange(len(win))
    return (win[rows, at].astype(np.int64) << 8) | win[rows, np.asarray(at) + 1]


def _ipv4_plausible(win: np.ndarray, at: np.ndarray, avail: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(plausible IPv4 header at ``at``, and its checksum verifies) per row."""
    rows = np.arange(len(win))
    fits = at + 20 <= np.minimum(avail, win.shape[1])
    at_c = np.where(fits, at, 0)
    first = win[rows, at_c]
    ihl = (first & 0x0F).astype(np.int64)
    total = _u16(win, at_c + 2)
    ok = fits & (first >> 4 == 4) & (ihl >= 5) & (total >= ihl * 4)
    words = np.zeros(len(win), np.int64)  # header checksum of a 20-byte header
    for k in range(0, 20, 2):
        words += _u16(win, at_c + k)
    strong = ok & (ihl == 5) & (words % 65535 == 0)
    return ok, strong


def _ether_plausible(win: np.ndarray, at: np.ndarray, avail: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(win))
    fits = at + 14 <= np.minimum(avail, win.shape[1])
    at_c = np.where(fits, at, 0)
    unicast_src = (win[rows, at_c + 6] & 1) == 0
    etype = _u16(win, at_c + 12)
    ok = fits & unicast_src & np.isin(etype, _INNER_ETHERTYPES)
    v4, strong = _ipv4_plausible(win, at_c + 14, avail)
    v6 = (win[rows, np.minimum(at_c + 14, win.shape[1] - 1)] >> 4 == 6) & (at_c + 15 <= avail)
    ok &= np.where(etype == ETH_IPV4, v4, np.where(etype == ETH_IPV6, v6, True))
    return ok, ok & (etype == ETH_IPV4) & strong


def looks_like_vxlan(win: np.ndarray, avail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of UDP payload windows (``win``: rows × ≥ WINDOW bytes, ``avail``: payload
    bytes captured): (looks like VXLAN, with a strong inner IPv4 header)."""
    plain = (win[:, 0] == 0x08) & (win[:, 3] == 0)
    gpe_ethernet = (win[:, 0] == 0x0C) & (win[:, 3] == 3)  # I + P, next protocol Ethernet
    header = ((avail >= 8 + 14) & (plain | gpe_ethernet) & (win[:, 1] == 0) & (win[:, 2] == 0)
              & (win[:, 7] == 0))
    inner, strong = _ether_plausible(win, np.full(len(win), 8), avail)
    return header & inner, header & strong


def _geneve_options_walk(payload: bytes) -> bool:
    """The TLV lengths add up exactly to opt_len × 4."""
    end = 8 + (payload[0] & 0x3F) * 4
    pos = 8
    while pos < end:
        if pos + 4 > end:
            return False
        pos += 4 + (payload[pos + 3] & 0x1F) * 4
    return pos == end


def looks_like_geneve(win: np.ndarray, avail: np.ndarray, payload: Callable[[int], bytes]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`looks_like_vxlan`, for Geneve; ``payload(i)`` (row i's UDP payload as bytes)
    serves the option walk, done in Python for the rows that pass everything else."""
    optlen = (win[:, 0] & 0x3F).astype(np.int64) * 4
    proto = _u16(win, 2)
    header = ((avail >= 8) & (win[:, 0] >> 6 == 0) & ((win[:, 1] & 0x3F) == 0)
              & (win[:, 7] == 0) & (8 + optlen <= avail)
              & np.isin(proto, [ETH_TEB, ETH_IPV4, ETH_IPV6]))
    # the inner header sits after the options, which may reach past the window: gather again
    start = 8 + optlen
    inner_win = np.zeros((len(win), WINDOW), np.uint8)
    texts: dict[int, bytes] = {}
    for i in np.flatnonzero(header).tolist():
        texts[i] = payload(i)
        chunk = texts[i][start[i]:start[i] + WINDOW]
        inner_win[i, :len(chunk)] = np.frombuffer(chunk, np.uint8)
    inner_avail = np.maximum(avail - start, 0)
    zero = np.zeros(len(win), np.int64)
    eth_ok, eth_strong = _ether_plausible(inner_win, zero, inner_avail)
    v4_ok, v4_strong = _ipv4_plausible(inner_win, zero, inner_avail)
    v6_ok = (inner_win[:, 0] >> 4 == 6) & (inner_avail >= 40)
    ok = header & np.select([proto == ETH_TEB, proto == ETH_IPV4], [eth_ok, v4_ok], v6_ok)
    for i in np.flatnonzero(ok).tolist():
        ok[i] = _geneve_options_walk(texts[i])
    strong = ok & np.select([proto == ETH_TEB, proto == ETH_IPV4], [eth_strong, v4_strong],
                            False)
    return ok, strong


# -- per port -----------------------------------------------------------------------------------


class PortCounts:
    """Per UDP destination port, how many packets were looked at (at most SAMPLE) and how many
    of them looked like VXLAN or Geneve: counters, so memory stays flat whatever the traffic."""

    def __init__(self) -> None:
        self.seen = np.zeros(65536, np.int64)
        self.counts = {kind: np.zeros(65536, np.int64) for kind in (VXLAN, GENEVE)}
        self.strong = {kind: np.zeros(65536, np.int64) for kind in (VXLAN, GENEVE)}

    def add(self, dport: np.ndarray, win: np.ndarray, avail: np.ndarray,
            payload: Callable[[int], bytes]) -> None:
        """One batch of UDP packets: their destination ports, the first WINDOW bytes of their
        payloads (zero-padded), the payload bytes captured and each payload as bytes."""
        judged = {VXLAN: looks_like_vxlan(win, avail), GENEVE: looks_like_geneve(win, avail,
                                                                                payload)}
        np.add.at(self.seen, dport, 1)
        for kind, (ok, strong) in judged.items():
            np.add.at(self.counts[kind], dport, ok)
            np.add.at(self.strong[kind], dport, strong)

    def wanted(self, dport: np.ndarray) -> np.ndarray:
        """Which of these packets (destination ports, in order) are still to be looked at:
        each port's first SAMPLE."""
        order = np.argsort(dport, kind="stable")
        ports = dport[order]
        rank = np.arange(len(ports)) - np.searchsorted(ports, ports, side="left")
        keep = np.zeros(len(dport), bool)
        keep[order] = rank < SAMPLE - self.seen[ports]
        return keep

    def verdicts(self) -> dict[int, PortVerdict]:
        return {port: PortVerdict(port, int(self.seen[port]), int(self.counts[VXLAN][port]),
                                  int(self.counts[GENEVE][port]),
                                  {kind: int(self.strong[kind][port]) for kind in self.strong})
                for port in np.flatnonzero(self.seen).tolist()}

    def found(self) -> dict[int, str]:
        """Port → "vxlan" or "geneve", for the ports that qualify, in port order."""
        return {port: v.kind for port, v in self.verdicts().items() if v.kind is not None}


def describe(found: Mapping[int, str]) -> str:
    """One line for the ports ``--vxlan-port auto`` found."""
    if not found:
        return "tunnel ports found: none (no UDP port carries VXLAN or Geneve)"
    return "tunnel ports found: " + ", ".join(f"{kind} {port}" for port, kind in found.items())
