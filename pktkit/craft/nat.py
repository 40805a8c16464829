"""Connection tracking and NAT, as netfilter does it for one node.

An entry is made by the first packet of a connection and holds the original tuple and the
translated one. SNAT keeps the source port (ICMP: the echo identifier) unless another live entry
already uses the same translated tuple; then, as ``nf_nat_l4proto_unique_tuple`` does, it picks
another port from the same range. Replies are translated back with the same entry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pktkit.craft.truth import NatFlowTruth

Tuple5 = tuple[int, str, int, str, int]  # proto, src, sport, dst, dport
ICMP_PROTOS = (1, 58)


@dataclass
class ConntrackEntry:
    nat_flow_id: int
    orig: Tuple5
    xlat: Tuple5
    expires_ns: int = 0

    @property
    def kind(self) -> str:
        snat = self.orig[1:3] != self.xlat[1:3]
        # ICMP's "dport" is the echo identifier again: only a new address makes it DNAT.
        dst_fields = slice(3, 4) if self.orig[0] in ICMP_PROTOS else slice(3, 5)
        dnat = self.orig[dst_fields] != self.xlat[dst_fields]
        return "snat+dnat" if snat and dnat else "snat" if snat else "dnat"

    def truth(self) -> NatFlowTruth:
        proto, osrc, osport, odst, odport = self.orig
        _, xsrc, xsport, xdst, xdport = self.xlat
        return NatFlowTruth(
            nat_flow_id=self.nat_flow_id,
            kind=self.kind,
            proto=proto,
            orig_src=osrc,
            orig_sport=osport,
            orig_dst=odst,
            orig_dport=odport,
            xlat_src=xsrc,
            xlat_sport=xsport,
            xlat_dst=xdst,
            xlat_dport=xdport,
        )


@dataclass
class NatLedger:
    """Every NAT flow of a scenario, across its nodes, numbered 1, 2, 3, ... as created."""

    flows: list[NatFlowTruth] = field(default_factory=list)

    def next_id(self) -> int:
        return len(self.flows) + 1

    def record(self, entry: ConntrackEntry) -> None:
        self.flows.append(entry.truth())


@dataclass
class Conntrack:
    """One node's conntrack table with its NAT decisions."""

    rng: random.Random
    ledger: NatLedger
    live: dict[Tuple5, ConntrackEntry] = field(default_factory=dict)  # by translated tuple

    def expire(self, now_ns: int) -> None:
        for key in [k for k, e in self.live.items() if e.expires_ns <= now_ns]:
            del self.live[key]

    def _taken(self, proto: int, src: str, sport: int, dst: str, dport: int) -> bool:
        # ICMP echo carries its identifier as both "ports": a new id changes both.
        key = (proto, src, sport, dst, sport if proto in ICMP_PROTOS else dport)
        return key in self.live

    def _unique_sport(self, proto: int, src: str, sport: int, dst: str, dport: int,
                      random_fully: bool = False) -> int:
        # A translated tuple may not collide with a live one (it would steer replies wrongly).
        # ``--random-fully`` (kube-proxy's MASQUERADE) draws a port even when the original is free.
        if not random_fully and not self._taken(proto, src, sport, dst, dport):
            return sport
        # The kernel's default ranges when the rule names none: privileged ports stay below
        # 512 or in 600..1023, others anywhere from 1024 (nf_nat_l4proto_unique_tuple).
        low, high = (1024, 65535) if sport >= 1024 else (600, 1023) if sport >= 512 else (1, 511)
        if proto in ICMP_PROTOS:  # identifiers use the whole 16-bit space
            low, high = 0, 65535
        while True:
            candidate = self.rng.randint(low, high)
            if not self._taken(proto, src, candidate, dst, dport):
                return candidate

    def translate(
        self, orig: Tuple5, *, snat_to: str | None = None, dnat_to: tuple[str, int] | None = None,
        random_fully: bool = False,
    ) -> ConntrackEntry:
        """Create the entry for a new connection (DNAT decided first, as PREROUTING runs first).

        ``random_fully``: the SNAT rule has ``--random-fully`` (a random source port always)."""
        proto, src, sport, dst, dport = orig
        if dnat_to is not None:
            dst, dport = dnat_to
        if snat_to is not None:
            src = snat_to
            sport = self._unique_sport(proto, src, sport, dst, dport, random_fully)
            if proto in ICMP_PROTOS:
                dport = sport
        entry = ConntrackEntry(self.ledger.next_id(), orig, (proto, src, sport, dst, dport))
        self.ledger.record(entry)
        self.live[entry.xlat] = entry
        return entry
