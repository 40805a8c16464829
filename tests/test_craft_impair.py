"""pktkit.craft.impair through the generator: queues, loss with TCP's retransmissions,
reordering, duplicate records and drifting clocks, checked on the bytes (the oracle's parser)
against truth.json and against what Linux and the RFCs do."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path

import pytest
from craft_checks import (
    Frame,
    Generated,
    assert_checksums_valid,
    assert_files_in_time_order,
    generated,
    tcp_payload,
    tcp_timestamps,
)

from pktkit.craft.impair import (
    DUPLICATE_GAP_US,
    TCP_RTO_MIN_NS,
    ClockModel,
    Impairments,
    parse_impairments,
)
from pktkit.errors import UsageError

MS = 1_000_000
HEAVY = ["queue=20ms", "loss=0.15", "reorder=0.2", "duplicate=0.05"]


@pytest.fixture(scope="module")
def vxlan(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generated(tmp_path_factory.mktemp("impaired"), "vxlan-overlay", seed=3, flows=30,
                     impairments=HEAVY, clock_offset_s=0.3, clock_drift_ppm=80)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generated(tmp_path_factory.mktemp("impaired"), "flat-routed-v6", seed=5, flows=30,
                     impairments=HEAVY)


def wire_delays(gen: Generated) -> list[tuple[tuple[int, str], int, int]]:
    """Per packet that crossed between the nodes: ((flow, sending node), send time, true
    one-way delay from the sender's last sighting to the receiver's first), in send order."""
    out = []
    for sightings in gen.by_packet().values():
        sightings = [s for s in sightings if not s.truth["duplicate"]]
        nodes = [s.truth["node"] for s in sightings]
        change = next((i for i in range(1, len(nodes)) if nodes[i] != nodes[i - 1]), None)
        if change is not None:
            sent = sightings[change - 1].truth["true_ts_ns"]
            out.append(((sightings[0].truth["flow_id"], nodes[0]), sent,
                        sightings[change].truth["true_ts_ns"] - sent))
    return sorted(out, key=lambda item: item[1])


def test_bytes_and_timestamps_stay_true(vxlan: Generated) -> None:
    """Every frame, resent ones included, has valid checksums; each file is in time order;
    each timestamp is its node's clock at the true time, truncated to the µs, as truth says."""
    assert_checksums_valid(vxlan)
    assert_files_in_time_order(vxlan)
    clocks = {node: ClockModel(**model) for node, model in vxlan.truth["clocks"].items()}
    assert clocks["node-b"] == ClockModel(300 * MS, 80.0, clocks["node-a"].at_ns)
    for frame in vxlan.all_frames():
        truth = frame.truth
        reading = clocks[truth["node"]].reading(truth["true_ts_ns"])
        assert frame.record.ts_ns == truth["ts_ns"] == reading // 1000 * 1000


def test_a_duplicate_repeats_the_frame_before_it(vxlan: Generated) -> None:
    """A duplicate record is the same bytes at the same point, 0–3 µs after the original,
    with the original's packet and hop; nothing else in the capture repeats bytes."""
    duplicates = 0
    for frames in vxlan.frames.values():
        last: dict[bytes, Frame] = {}
        for frame in frames:
            data = frame.record.data
            if frame.truth["duplicate"]:
                duplicates += 1
                original = last[data]
                gap = frame.truth["true_ts_ns"] - original.truth["true_ts_ns"]
                assert DUPLICATE_GAP_US[0] * 1000 <= gap <= DUPLICATE_GAP_US[1] * 1000
                assert (original.truth["packet_id"], original.truth["hop"]) == \
                    (frame.truth["packet_id"], frame.truth["hop"])
                assert not original.truth["duplicate"]
            else:
                assert data not in last, f"{frame.capture}#{frame.number} repeats bytes"
            last[data] = frame
    assert duplicates >= 20


def test_lost_tcp_segments_are_resent_after_the_rto(vxlan: Generated) -> None:
    """A TCP segment lost on the underlay was seen only up to the sender's eth0; TCP sends it
    again after at least TCP_RTO_MIN (1 s for a SYN), doubling on each further loss: the same
    sequence numbers, flags and payload, a new IPv4 ID, a TCP timestamp that ticked on."""
    packets = vxlan.by_packet()
    resent = 0
    for loss in vxlan.truth["lost"]:
        lost = [s for s in packets[loss["packet_id"]] if not s.truth["duplicate"]]
        assert {s.truth["node"] for s in lost} == {loss["node"]}
        assert (lost[-1].truth["interface"], lost[-1].truth["true_ts_ns"]) == \
            ("eth0", loss["true_ts_ns"])
        if loss["retransmitted_as"] is None:
            continue
        resent += 1
        again = packets[loss["retransmitted_as"]]
        first, second = lost[0], again[0]
        tcp, tcp_again = first.layer("tcp"), second.layer("tcp")
        assert tcp is not None and tcp_again is not None
        for field in ("seq", "ack", "flags"):
            assert tcp.fields[field] == tcp_again.fields[field]
        assert tcp_payload(first) == tcp_payload(second)
        # seen at the first point a few µs after it was sent: the hop's own jitter aside
        waited = second.truth["true_ts_ns"] - first.truth["true_ts_ns"]
        rto = 1000 * MS if int(tcp.fields["flags"]) & 0x02 else TCP_RTO_MIN_NS
        assert waited >= rto - 50_000
        assert tcp_timestamps(second)[0] - tcp_timestamps(first)[0] == round(waited / MS)
        assert first.ip.fields["id"] != second.ip.fields["id"]
    assert resent >= 3


def test_what_is_not_resent_is_gone_with_its_answer(routed: Generated) -> None:
    """A lost UDP or ICMP packet is never sent again and nothing answers it: its flow has no
    packet coming back after it; a lost pure ACK is not resent either."""
    packets, flows = routed.by_packet(), routed.by_flow()
    gone = [loss for loss in routed.truth["lost"] if loss["retransmitted_as"] is None]
    kinds = set()
    for loss in gone:
        lost = packets[loss["packet_id"]][0]
        proto = lost.truth["proto"]
        kinds.add(proto)
        if proto == 6:  # a pure ACK
            tcp = lost.layer("tcp")
            assert tcp is not None and not tcp_payload(lost)
            assert not int(tcp.fields["flags"]) & 0x03
            continue
        flow = flows[loss["flow_id"]]
        sender = lost.truth["src"]
        if sender != next(iter(flow.values()))[0].truth["src"]:
            continue  # a lost answer: nothing depends on it
        # a lost request: the next packet of the other side comes after the next request
        later = [pid for pid in flow if pid > loss["packet_id"]]
        answers = [pid for pid in later if flow[pid][0].truth["src"] != sender]
        if answers:
            requests = [pid for pid in later if flow[pid][0].truth["src"] == sender]
            assert requests and min(requests) < min(answers), loss
    assert {17, 58} <= kinds, kinds  # DNS and ping lost on their way


def test_a_queue_holds_crossings_for_milliseconds(vxlan: Generated, tmp_path: Path) -> None:
    """With queue=20ms, crossings wait up to 20 ms in congestion episodes; without, every
    crossing takes about the link's delay (a floor of 68 µs here, a short tail above)."""
    delays = [d for _, _, d in wire_delays(vxlan)]
    assert sum(d > MS for d in delays) >= 5 and max(delays) > 10 * MS
    assert max(delays) <= 20 * MS + MS  # the queue's cap, plus the link and reordering
    calm = generated(tmp_path, "vxlan-overlay", seed=3, flows=30)
    calm_delays = [d for _, _, d in wire_delays(calm)]
    assert min(calm_delays) == 68_000 and max(calm_delays) < 300_000


def test_reordering_lets_the_next_packet_overtake(vxlan: Generated, tmp_path: Path) -> None:
    """reorder: some packets arrive after a later packet of their flow from the same node;
    without it, a link is first in, first out for every flow."""
    def overtaken(gen: Generated) -> int:
        by_flow: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
        for flow, sent, delay in wire_delays(gen):
            by_flow[flow].append((sent, sent + delay))
        count = 0
        for crossings in by_flow.values():
            arrivals = [arrived for _, arrived in crossings]
            count += sum(a > b for a, b in itertools.pairwise(arrivals))
        return count
    assert overtaken(vxlan) >= 1
    assert overtaken(generated(tmp_path, "vxlan-overlay", seed=3, flows=30)) == 0


def test_the_overlay_of_every_sighting(vxlan: Generated) -> None:
    """overlay_encap/overlay_vni: on the tunnelled copy its own encap and VNI, on every other
    sighting of the same packet the same; the tenants' VNIs 1 and 2 both appear."""
    for sightings in vxlan.by_packet().values():
        tunnelled = {(s.truth["encap"], s.truth["vni"]) for s in sightings
                     if s.truth["encap"] != "none"}
        overlays = {(s.truth["overlay_encap"], s.truth["overlay_vni"]) for s in sightings}
        assert len(tunnelled) == 1 and overlays == tunnelled
    assert {f.truth["overlay_vni"] for f in vxlan.all_frames()} == {1, 2}


@pytest.mark.parametrize(("items", "message"), [
    (["loss=2"], "0..0.5"), (["loss=x"], "loss"), (["queue=20"], "duration"),
    (["queue=-1ms"], "duration"), (["latency=1"], "queue, loss"), (["loss"], "KEY=VALUE"),
    (["loss=0.1", "loss=0.2"], "twice"),
])
def test_bad_impairments_are_one_line_errors(items: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        parse_impairments(items)
    assert "\n" not in str(error.value)


def test_impairments_read_as_written() -> None:
    found = parse_impairments(["queue=1.5ms", "loss=0.01", "duplicate=0"])
    assert found == Impairments(queue_ns=1_500_000, loss=0.01)
    assert found.describe() == {"queue": "1.5ms", "loss": 0.01} and not Impairments()


def test_a_clock_reads_offset_plus_drift() -> None:
    clock = ClockModel(offset_ns=300 * MS, drift_ppm=80.0, at_ns=10**18)
    assert clock.reading(10**18) == 10**18 + 300 * MS
    assert clock.reading(10**18 + 10**9) == 10**18 + 10**9 + 300 * MS + 80_000
    assert clock.reading(10**18 - 10**9) == 10**18 - 10**9 + 300 * MS - 80_000
    assert math.isclose(ClockModel(drift_ppm=-1.5).reading(2 * 10**9), 2 * 10**9 - 3000)


def _frames_of(gen: Generated) -> dict[str, bytes]:  # for an equality of whole folders
    return {name: (gen.out / name).read_bytes() for name in gen.truth["captures"]}


def test_no_impairment_draws_nothing(tmp_path: Path) -> None:
    """A run without --impair is byte for byte the run with every impairment at zero."""
    plain = generated(tmp_path / "a", "k8s-nodeport", seed=2)
    zero = generated(tmp_path / "b", "k8s-nodeport", seed=2,
                     impairments=["loss=0", "reorder=0", "duplicate=0"])
    assert _frames_of(plain) == _frames_of(zero)
    assert plain.truth["lost"] == [] and plain.truth["params"]["impairments"] == {}
