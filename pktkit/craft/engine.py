"""The scenario engine: walks each logical packet along its path and times every sighting.

A scenario describes capture points (:class:`~pktkit.capture.write.Interface`), and flows: for each,
the path of each direction (a list of :class:`Hop`) and the conversation (a list of
:class:`~pktkit.craft.traffic.Emission`). The engine applies the kernel transforms hop by hop,
draws each hop's delay from the timing model, and yields :class:`Sighting` records in time
order. Flows must come in order of start time; a flow's sightings are held only until no later
flow can precede them, so memory stays flat however many flows there are.
"""

from __future__ import annotations

import heapq
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pktkit.capture.write import Interface
from pktkit.craft.flight import ETH_HEADER, InFlight, ip_addresses, ip_proto, l4_ports
from pktkit.craft.inventory import Inventory
from pktkit.craft.kernel import FlowState, Transform, ether_header, rewrite_tuple
from pktkit.craft.nat import Conntrack, NatLedger
from pktkit.craft.traffic import Emission
from pktkit.craft.truth import NatFlowTruth

EPOCH_NS = 1_768_471_200 * 10**9  # 2026-01-15 10:00:00 UTC: every scenario starts here


@dataclass(frozen=True)
class Hop:
    """The transforms the packet meets since the previous hop, then where it is seen (if
    anywhere): ``point`` None is a step no capture point observes (a router on the Internet)."""

    point: Interface | None
    direction: str  # "in" or "out", from the capturing host's point of view
    latency_us: float
    transforms: tuple[Transform, ...] = ()


@dataclass(frozen=True)
class Path:
    """One direction of a flow: the sender's link header, its hops, and the last mile."""

    src_mac: str
    dst_mac: str
    hops: tuple[Hop, ...]
    final_latency_us: float = 20.0


@dataclass
class FlowSpec:
    flow_id: int
    start_ns: int  # offset from the scenario epoch
    forward: Path
    reverse: Path
    emissions: list[Emission]


@dataclass(frozen=True)
class Sighting:
    """One frame as recorded at one capture point, with what the builder knows of it."""

    true_ts_ns: int
    point: Interface
    direction: str  # in, out, other (a bridge port received it for another MAC)
    frame: bytes
    packet_id: int
    hop: int
    flow_id: int
    nat_flow_id: int | None
    encap: str
    vni: int | None
    overhead_bytes: int
    fragment: str
    outer: tuple[str | None, str | None, int | None, int | None]
    inner: tuple[str, str, int, int | None, int | None]


@dataclass
class Timing:
    """Per-hop latency: the hop's mean, scaled by seeded Gaussian jitter, in whole µs.

    Whole microseconds because that is what tcpdump records; at least 1 µs per hop so that the
    order of sightings along a path is never ambiguous."""

    rng: random.Random
    jitter: float = 0.15

    def delay_ns(self, mean_us: float) -> int:
        scale = max(0.3, 1.0 + self.rng.gauss(0.0, self.jitter))
        return max(1, round(mean_us * scale)) * 1000


class Scenario(ABC):
    """Base of every scenario builder. Subclasses set the class attributes and two methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    default_flows: ClassVar[int] = 8
    default_duration_s: ClassVar[float] = 2.0

    def __init__(self, params: Any, seed: int, flows: int, duration_s: float,
                 clock_offsets_ns: dict[str, int] | None = None) -> None:
        self.params = params
        self.seed = seed
        self.flow_count = flows
        self.duration_ns = int(duration_s * 1e9)
        self.rng = random.Random(f"{self.name}:{seed}")
        self.nat_ledger = NatLedger()
        self.clock_offsets_ns = clock_offsets_ns or {}

    def conntrack(self) -> Conntrack:
        return Conntrack(random.Random(f"{self.name}:{self.seed}:ct"), self.nat_ledger)

    def start_ns(self, index: int) -> int:
        """Start of flow ``index``: evenly over the duration, whole µs, never decreasing."""
        step = self.duration_ns // max(1, self.flow_count)
        return (index * step + self.rng.randint(0, max(0, step // 2))) // 1000 * 1000

    @abstractmethod
    def interfaces(self) -> list[Interface]:
        """Every capture point, in the order files and interface blocks are written."""

    @abstractmethod
    def flows(self) -> Iterator[FlowSpec]:
        """The flows in order of ``start_ns`` (the engine relies on that order)."""

    def nat_flows(self) -> list[NatFlowTruth]:
        """Every NAT flow created so far (complete once the engine has run)."""
        return list(self.nat_ledger.flows)

    def conntracks(self) -> list[Conntrack]:
        """The NAT tables whose entries should expire as time passes (none by default)."""
        return []

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> Inventory | None:
        """The cluster or Docker host the scenario stands for, for ``kubectl.json`` /
        ``docker.json`` and the truth of names (None: neither). ``spans``: each flow's first
        and last sighting (ns since the epoch, reference clock), known once the engine ran."""
        return None


def _describe(flight: InFlight) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(outer src, dst, sport, dport) and the innermost (src, dst, proto, sport, dport)."""
    offsets = flight.ip_offsets()
    frame, inner_at = flight.frame, offsets[-1]
    proto = ip_proto(frame, inner_at)
    # Ports are TCP/UDP's only (as in the decoded table and tshark); the ICMP echo identifier
    # stands in for ports only in NAT flows, as conntrack uses it.
    has_ports = proto in (6, 17) and flight.fragment != "non-first"
    sport, dport = l4_ports(frame, inner_at) if has_ports else (None, None)
    inner = (*ip_addresses(frame, inner_at), proto, sport, dport)
    if not flight.tunnels:
        return (None, None, None, None), inner
    outer_at = offsets[0]
    outer_ports = l4_ports(frame, outer_at) if ip_proto(frame, outer_at) == 17 else (None, None)
    return (*ip_addresses(frame, outer_at), *outer_ports), inner


def _direction(hop: Hop, flight: InFlight) -> str:
    """The sighting's direction as SLL2's packet type says it: a frame a bridge port receives
    for another MAC (a pod's frame to its gateway or to another pod) is PACKET_OTHERHOST,
    ``other``; what a device receives for its own MAC or a group address is ``in``."""
    assert hop.point is not None
    if hop.direction == "in" and hop.point.bridge_port and flight.link == "ether" \
            and not flight.frame[0] & 1:
        return "other"
    return hop.direction


class Engine:
    """Turns a scenario's flows into time-ordered sightings."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.timing = Timing(random.Random(f"{scenario.name}:{scenario.seed}:timing"))
        self._next_packet_id = 1

    def _walk(self, emission: Emission, path: Path, send_ns: int, state: FlowState,
              fifo: dict[tuple[str, int], int]) -> tuple[list[tuple[int, InFlight, Hop, int]], int]:
        """Follow one packet; return its sightings (time, frame, hop, hop index) and arrival.

        ``fifo`` holds, per (direction, hop), when the flow's previous packet passed there: a
        link is a queue, so a packet never overtakes an earlier one of its flow (jitter alone
        would reorder segments sent a few µs apart over a millisecond-long hop)."""
        l3 = emission.l3
        version = 6 if ":" in l3.src else 4
        frame = bytearray(ether_header(path.src_mac, path.dst_mac, version) + bytes(l3))
        if emission.direction == "rev" and state.conntrack is not None:
            # Conversations are written from the originator's view; the responder answers the
            # translated tuple, which the reverse path's NatReply maps back.
            _, xsrc, xsport, xdst, xdport = state.conntrack.xlat
            rewrite_tuple(frame, ETH_HEADER, xdst, xdport, xsrc, xsport)
        flights = [InFlight(bytes(frame))]
        now = send_ns
        seen: list[tuple[int, InFlight, Hop, int]] = []
        sighting_index = 0
        for number, hop in enumerate(path.hops):
            if emission.lost_after is not None and number >= emission.lost_after:
                return seen, -1
            now += self.timing.delay_ns(hop.latency_us)
            key = (emission.direction, number)
            now = max(now, fifo.get(key, now - 1000) + 1000)
            fifo[key] = now
            for transform in hop.transforms:
                flights = [out for flight in flights for out in transform(flight, state)]
            if not flights:
                return seen, -1  # dropped by the kernel
            if hop.point is not None:
                seen.extend((now, flight, hop, sighting_index) for flight in flights)
                sighting_index += 1
        return seen, now + self.timing.delay_ns(path.final_latency_us)

    def walk_flow(self, flow: FlowSpec) -> list[Sighting]:
        state = FlowState()
        raw: list[tuple[int, InFlight, Hop, int, int]] = []
        fifo: dict[tuple[str, int], int] = {}
        previous_send = previous_arrival = flow.start_ns
        for emission in flow.emissions:
            base = previous_arrival if emission.after == "arrival" else previous_send
            send = base + round(emission.delay_us) * 1000
            state.direction = emission.direction
            path = flow.forward if emission.direction == "fwd" else flow.reverse
            packet_id = self._next_packet_id
            self._next_packet_id += 1
            seen, arrival = self._walk(emission, path, send, state, fifo)
            raw.extend((ts, flight, hop, index, packet_id) for ts, flight, hop, index in seen)
            previous_send = send
            previous_arrival = arrival if arrival >= 0 else send
        # The NAT entry is known only once the first packet met the NAT hook; every sighting
        # of the flow, pre-NAT ones included, belongs to it.
        nat_flow_id = state.conntrack.nat_flow_id if state.conntrack else None
        sightings = []
        for ts, flight, hop, index, packet_id in raw:
            assert hop.point is not None
            outer, inner = _describe(flight)
            sightings.append(Sighting(
                true_ts_ns=ts, point=hop.point, direction=_direction(hop, flight),
                frame=flight.frame, packet_id=packet_id, hop=index, flow_id=flow.flow_id,
                nat_flow_id=nat_flow_id, encap=flight.encap, vni=flight.vni,
                overhead_bytes=flight.overhead_bytes, fragment=flight.fragment,
                outer=outer, inner=inner))
        if state.conntrack is not None:
            last = max((s.true_ts_ns for s in sightings), default=flow.start_ns)
            state.conntrack.expires_ns = last + 120 * 10**9  # conntrack's TIME_WAIT/UDP timeouts
        return sightings

    def run(self) -> Iterator[Sighting]:
        """Every sighting of the scenario in time order (ties: walk order)."""
        pending: list[tuple[int, int, Sighting]] = []
        order = 0
        for flow in self.scenario.flows():
            while pending and pending[0][0] < flow.start_ns:
                yield heapq.heappop(pending)[2]
            for table in self.scenario.conntracks():
                table.expire(flow.start_ns)
            for sighting in self.walk_flow(flow):
                heapq.heappush(pending, (sighting.true_ts_ns, order, sighting))
                order += 1
        while pending:
            yield heapq.heappop(pending)[2]

