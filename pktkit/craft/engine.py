"""The scenario engine: walks each logical packet along its path and times every sighting.

A scenario describes capture points (:class:`~pktkit.capture.write.Interface`), and flows: for each,
the path of each direction (a list of :class:`Hop`) and the conversation (a list of
:class:`~pktkit.craft.traffic.Emission`). The engine applies the kernel transforms hop by hop,
draws each hop's delay from the timing model, and yields :class:`Sighting` records in time
order. Flows must come in order of start time; a flow's sightings are held only until no later
flow can precede them, so memory stays flat however many flows there are.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pktkit.capture.write import Interface
from pktkit.craft.flight import ETH_HEADER, InFlight, ip_addresses, ip_proto, l4_ports
from pktkit.craft.impair import (
    TCP_RTO_MIN_NS,
    TCP_SYN_RTO_NS,
    ClockModel,
    Impairments,
    Underlay,
)
from pktkit.craft.inventory import Inventory
from pktkit.craft.kernel import FlowState, Transform, ether_header, rewrite_tuple
from pktkit.craft.nat import Conntrack, NatLedger
from pktkit.craft.traffic import Emission, is_tcp, resent_when_lost, retransmission
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
    wire: bool = False  # the step crosses a link between hosts (where --impair acts)


@dataclass(frozen=True)
class Path:
    """One direction of a flow: the sender's link header, its hops, and the last mile."""

    src_mac: str
    dst_mac: str
    hops: tuple[Hop, ...]
    final_latency_us: float = 20.0
    final_wire: bool = False  # the last mile crosses a link between hosts


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
    overlay: tuple[str, int | None] = ("none", None)  # encap, vni of the packet's tunnelled copy
    duplicate: bool = False  # a second record of the same frame at the same point


@dataclass(frozen=True)
class Loss:
    """A packet the underlay dropped: last seen at ``point`` at ``true_ts_ns``."""

    packet_id: int
    flow_id: int
    point: Interface
    true_ts_ns: int
    retransmitted_as: int | None  # the packet id of TCP's retransmission


@dataclass
class Timing:
    """Per-hop latency: a floor plus a non-negative excess, in whole µs.

    A hop never takes less than its floor (propagation, serialization, the kernel's least
    work): ``(1 - jitter)`` of the hop's mean. Above it come the waits that vary (the CPU, the
    NIC's interrupt moderation, other traffic), exponentially distributed with the rest of the
    mean: most packets near the floor, a few well above, none below. Whole microseconds
    because that is what tcpdump records; at least 1 µs per hop so that the order of
    sightings along a path is never ambiguous."""

    rng: random.Random
    jitter: float = 0.15

    def delay_ns(self, mean_us: float) -> int:
        excess = self.rng.expovariate(1.0 / (mean_us * self.jitter))
        return max(1, round(mean_us * (1.0 - self.jitter) + excess)) * 1000


class Scenario(ABC):
    """Base of every scenario builder. Subclasses set the class attributes and two methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    default_flows: ClassVar[int] = 8
    default_duration_s: ClassVar[float] = 2.0
    # Two nodes, two clocks: long enough a span that the crossings pin a drifting clock to
    # within 2 ppm (docs/ARCHITECTURE.md, "Clocks"; the drift error goes as 1/span).
    MULTI_NODE_DURATION_S: ClassVar[float] = 10.0
    many_nodes: ClassVar[bool] = False  # takes ``nodes`` (--nodes N: pktkit.craft.nodes)

    def __init__(self, params: Any, seed: int, flows: int, duration_s: float,
                 clocks: dict[str, ClockModel] | None = None,
                 impairments: Impairments | None = None, nodes: int | None = None) -> None:
        self.params = params
        self.node_count = nodes  # None: the scenario's own (two-node) topology
        self.seed = seed
        self.flow_count = flows
        self.duration_ns = int(duration_s * 1e9)
        self.rng = random.Random(f"{self.name}:{seed}")
        self.nat_ledger = NatLedger()
        self.clocks: dict[str, ClockModel] = clocks or {}  # node → its clock (else true time)
        self.impairments = impairments or Impairments()

    def node_names(self) -> list[str]:
        """The nodes, in the order of their first capture point."""
        return list(dict.fromkeys(iface.node for iface in self.interfaces()))

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


@dataclass
class _Walk:
    """One packet followed along its path: its sightings (time, frame, hop, hop index), its
    arrival (-1: it never arrived) and whether the underlay lost it (TCP sends it again)."""

    seen: list[tuple[int, InFlight, Hop, int]]
    arrival: int
    lost: bool = False


_NO_REPLY_AFTER_LOSS = {"fwd": "rev", "rev": "fwd"}


class Engine:
    """Turns a scenario's flows into time-ordered sightings."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.timing = Timing(random.Random(f"{scenario.name}:{scenario.seed}:timing"))
        self.underlay = Underlay(scenario.impairments, f"{scenario.name}:{scenario.seed}")
        self.losses: list[Loss] = []  # every packet the underlay dropped, in walk order
        self._next_packet_id = 1

    def _wire(self, hop_name: str, now: int) -> tuple[int, bool, bool]:
        """Crossing a link: (time after its queue and any reordering hold, held, lost)."""
        if not self.underlay.impairments:
            return now, False, False
        if self.underlay.lost():
            return now, False, True
        now += self.underlay.queue_wait_ns(hop_name, now)
        hold = self.underlay.reorder_hold_ns()
        return now + hold, hold > 0, False

    def _walk(self, emission: Emission, l3: Any, path: Path, send_ns: int, state: FlowState,
              fifo: dict[tuple[str, int], int]) -> _Walk:
        """Follow one packet (``l3``: its IP packet, the emission's or a retransmission's).

        ``fifo`` holds, per (direction, hop), when the flow's previous packet passed there: a
        link is a queue, so a packet never overtakes an earlier one of its flow (jitter alone
        would reorder segments sent a few µs apart over a millisecond-long hop) unless the
        underlay reorders it."""
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
                return _Walk(seen, -1)
            now += self.timing.delay_ns(hop.latency_us)
            held = False
            if hop.wire:
                assert hop.point is not None
                now, held, lost = self._wire(f"{hop.point.label}:{hop.direction}", now)
                if lost:
                    return _Walk(seen, -1, lost=True)
            key = (emission.direction, number)
            if not held:
                now = max(now, fifo.get(key, now - 1000) + 1000)
                fifo[key] = now
            for transform in hop.transforms:
                flights = [out for flight in flights for out in transform(flight, state)]
            if not flights:
                return _Walk(seen, -1)  # dropped by the kernel
            if hop.point is not None:
                seen.extend((now, flight, hop, sighting_index) for flight in flights)
                sighting_index += 1
        now += self.timing.delay_ns(path.final_latency_us)
        if path.final_wire:
            last = path.hops[-1].point
            now, _, lost = self._wire(f"{last.label if last else '?'}:beyond", now)
            if lost:
                return _Walk(seen, -1, lost=True)
        return _Walk(seen, now)

    def _retransmission_ids(self, flow: FlowSpec) -> dict[str, int]:
        """Per direction, the IPv4 ID the socket gives its first retransmission: past every
        ID of the conversation (the counter has moved on by the time the timer fires)."""
        last: dict[str, int] = {}
        for emission in flow.emissions:
            if emission.l3.version == 4:
                last[emission.direction] = max(last.get(emission.direction, -1),
                                               int(emission.l3.id))
        return {direction: value + 1 for direction, value in last.items()}

    def walk_flow(self, flow: FlowSpec) -> list[Sighting]:
        state = FlowState()
        raw: list[tuple[int, InFlight, Hop, int, int]] = []
        fifo: dict[tuple[str, int], int] = {}
        next_id = self._retransmission_ids(flow)
        previous_send = previous_arrival = flow.start_ns
        skip_reply_from: str | None = None  # a lost UDP/ICMP packet gets no answer
        for emission in flow.emissions:
            if skip_reply_from is not None:
                unanswered = (emission.direction == skip_reply_from
                              and emission.after == "arrival")
                skip_reply_from = None
                if unanswered:
                    continue
            base = previous_arrival if emission.after == "arrival" else previous_send
            send = base + round(emission.delay_us) * 1000
            state.direction = emission.direction
            path = flow.forward if emission.direction == "fwd" else flow.reverse
            l3, timeout, waited = emission.l3, None, 0
            while True:
                packet_id = self._next_packet_id
                self._next_packet_id += 1
                walk = self._walk(emission, l3, path, send + waited, state, fifo)
                raw.extend((ts, flight, hop, index, packet_id)
                           for ts, flight, hop, index in walk.seen)
                if not walk.lost:
                    break
                point = walk.seen[-1][2].point if walk.seen else path.hops[0].point
                assert point is not None
                loss_ts = walk.seen[-1][0] if walk.seen else send + waited
                if not resent_when_lost(l3):  # UDP, ICMP, a TCP pure ACK: gone
                    self.losses.append(Loss(packet_id, flow.flow_id, point, loss_ts, None))
                    if not is_tcp(l3):  # and nothing answers it
                        skip_reply_from = _NO_REPLY_AFTER_LOSS[emission.direction]
                    break
                # TCP's retransmission timer: doubled for each loss of the same segment
                if timeout is None:
                    syn = bool(int(l3["TCP"].flags) & 0x02)
                    timeout = TCP_SYN_RTO_NS if syn else TCP_RTO_MIN_NS + 1_000_000
                else:
                    timeout *= 2
                waited += timeout
                self.losses.append(Loss(packet_id, flow.flow_id, point, loss_ts,
                                        self._next_packet_id))
                ip_id = next_id.get(emission.direction, 0)
                next_id[emission.direction] = ip_id + 1
                l3 = retransmission(emission.l3, ip_id, waited // 1_000_000)
            send += waited  # the conversation waits for the packet that arrived
            previous_send = send
            previous_arrival = walk.arrival if walk.arrival >= 0 else send
        # The NAT entry is known only once the first packet met the NAT hook; every sighting
        # of the flow, pre-NAT ones included, belongs to it.
        nat_flow_id = state.conntrack.nat_flow_id if state.conntrack else None
        overlay: dict[int, tuple[str, int | None]] = {}
        for _, flight, _, _, packet_id in raw:
            if flight.tunnels and packet_id not in overlay:
                overlay[packet_id] = (flight.encap, flight.vni)
        sightings = []
        for ts, flight, hop, index, packet_id in raw:
            assert hop.point is not None
            outer, inner = _describe(flight)
            sighting = Sighting(
                true_ts_ns=ts, point=hop.point, direction=_direction(hop, flight),
                frame=flight.frame, packet_id=packet_id, hop=index, flow_id=flow.flow_id,
                nat_flow_id=nat_flow_id, encap=flight.encap, vni=flight.vni,
                overhead_bytes=flight.overhead_bytes, fragment=flight.fragment,
                outer=outer, inner=inner, overlay=overlay.get(packet_id, ("none", None)))
            sightings.append(sighting)
            gap = self.underlay.duplicate_gap_ns()
            if gap is not None:
                sightings.append(dataclasses.replace(sighting, true_ts_ns=ts + gap,
                                                     duplicate=True))
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
