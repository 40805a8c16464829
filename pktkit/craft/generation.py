"""``pktkit generate``: run a scenario builder and write its captures plus ``truth.json``.

Streaming all the way: the engine yields sightings in time order, each goes straight to its
capture file and its truth entry, so a million packets never sit in memory together.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pktkit.capture.formats import CAPTURE_SET_FILE, CaptureFormat
from pktkit.capture.write import CaptureSetWriter, Linktype, TsResolution
from pktkit.craft import params as P
from pktkit.craft.engine import EPOCH_NS, Engine, Scenario
from pktkit.craft.impair import ClockModel, Impairments, check_drift, parse_impairments
from pktkit.craft.metadata import write_metadata
from pktkit.craft.nodes import check_node_count, node_clocks
from pktkit.craft.scenarios import SCENARIOS
from pktkit.craft.truth import TRUTH_FILE, LostTruth, PacketTruth, TruthWriter
from pktkit.errors import OutputError, UsageError
from pktkit.files import write_json

MAX_CLOCK_OFFSET_S = 86400  # a day: clocks further apart are a misconfiguration, not drift


@dataclass
class GenerateResult:
    out_dir: Path
    files: list[str]
    packets: int
    per_file: dict[str, int] = field(default_factory=dict)
    metadata: list[str] = field(default_factory=list)  # kubectl.json / docker.json written


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of every scenario."""
    return [(name, cls.description) for name, cls in SCENARIOS.items()]


def scenario_parameters(name: str) -> list[tuple[str, object, str]]:
    """(parameter, default, help) of one scenario: the keys ``--set`` accepts."""
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    return [(spec.name, spec.default, spec.metadata.get("help", ""))
            for spec in dataclasses.fields(SCENARIOS[name].Params)]


def make_scenario(name: str, *, seed: int = 1, flows: int | None = None,
                  duration_s: float | None = None, overrides: Mapping[str, str] | None = None,
                  clock_offset_s: float = 0.0, clock_drift_ppm: float = 0.0,
                  impairments: Impairments | Iterable[str] = (),
                  nodes: int | None = None) -> Scenario:
    """Instantiate a scenario with validated parameters (``overrides`` as from ``--set``).

    ``clock_offset_s``/``clock_drift_ppm``: the second node's clock reads ``t + offset +
    drift × (t − start)``; ``impairments``: an :class:`Impairments`, or ``--impair`` strings
    (``"queue=20ms"``, ``"loss=0.01"``, ...; see :mod:`pktkit.craft.impair`).

    ``nodes``: N nodes instead of the scenario's two, flows between random pairs of them, and
    every node but the first its own clock, drawn within ±``clock_offset_s`` and
    ±``clock_drift_ppm`` (:mod:`pktkit.craft.nodes`)."""
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)} "
                         "(pktkit generate --list)")
    cls = SCENARIOS[name]
    params = P.apply_overrides(P.validate(cls.Params()), overrides or {})
    flow_count = cls.default_flows if flows is None else P.check_positive("--flows", flows)
    duration = cls.default_duration_s if duration_s is None else duration_s
    if not 0 < duration <= 86400:
        raise UsageError(f"--duration {duration!r} is out of range; give 0 < S <= 86400 seconds")
    if not isinstance(impairments, Impairments):
        impairments = parse_impairments(impairments)
    if not math.isfinite(clock_offset_s) or abs(clock_offset_s) > MAX_CLOCK_OFFSET_S:
        raise UsageError(f"--clock-offset {clock_offset_s!r}: give a finite number of seconds "
                         f"from -{MAX_CLOCK_OFFSET_S} to {MAX_CLOCK_OFFSET_S} (the second "
                         "node's clock against the first)")
    check_drift(clock_drift_ppm)
    if nodes is not None:
        if not cls.many_nodes:
            takes = ", ".join(n for n, c in SCENARIOS.items() if c.many_nodes)
            raise UsageError(f"--nodes: scenario {name!r} has a fixed topology; --nodes works "
                             f"with {takes}")
        check_node_count(nodes)
    scenario = cls(params, seed, flow_count, duration, impairments=impairments, nodes=nodes)
    names = scenario.node_names()
    for option, value in (("--clock-offset", clock_offset_s), ("--clock-drift", clock_drift_ppm)):
        if value and len(names) < 2:
            raise UsageError(f"{option}: scenario {name!r} has one node ({names[0]}); "
                             "a clock of its own needs a second node")
    if nodes is not None:
        scenario.clocks = node_clocks(names, clock_offset_s, float(clock_drift_ppm),
                                      f"{name}:{seed}", EPOCH_NS)
        return scenario
    scenario.clocks = {node: ClockModel(at_ns=EPOCH_NS) for node in names}
    if len(names) > 1:
        scenario.clocks[names[1]] = ClockModel(round(clock_offset_s * 1e6) * 1000,
                                               float(clock_drift_ppm), EPOCH_NS)
    return scenario


def _prepare_out_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` if needed; True when we created it (and so may remove it on failure)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: exists and is not a directory; choose a directory")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot create it ({exc.strerror}); "
                          "choose a writable directory") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"--out {out_dir}: directory is not writable; choose another")
    return created


def generate(scenario: Scenario, out_dir: str | Path, *, fmt: CaptureFormat = "pcap",
             linktype: Linktype = "ether", ts_resolution: TsResolution = "us") -> GenerateResult:
    """Write every capture file of ``scenario`` and its ``truth.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if fmt not in ("pcap", "pcapng"):
        raise UsageError(f"--format {fmt!r}: choose pcap or pcapng")
    if linktype not in ("ether", "sll2"):
        raise UsageError(f"--linktype {linktype!r}: choose ether or sll2")
    created = _prepare_out_dir(out_dir)
    writer = truth = None
    tick = 1000 if ts_resolution == "us" else 1  # the file's timestamps: whole ticks, truncated
    clocks = scenario.clocks or {node: ClockModel(at_ns=EPOCH_NS) for node in scenario.node_names()}
    try:
        writer = CaptureSetWriter(out_dir, scenario.interfaces(), fmt, linktype, ts_resolution)
        truth = TruthWriter(out_dir / TRUTH_FILE, scenario.name, scenario.seed,
                            P.describe(scenario.params) | {
                                "flows": scenario.flow_count,
                                "duration_s": scenario.duration_ns / 1e9,
                                "clock_offsets_ns": {n: c.offset_ns for n, c in clocks.items()
                                                     if c.offset_ns},
                                "clock_drifts_ppm": {n: c.drift_ppm for n, c in clocks.items()
                                                     if c.drift_ppm},
                                "impairments": scenario.impairments.describe(),
                                "format": fmt, "linktype": linktype,
                                "ts_resolution": ts_resolution})
        result = GenerateResult(out_dir, writer.file_names, 0)
        spans: dict[int, tuple[int, int]] = {}  # flow → first and last sighting (true time)
        engine = Engine(scenario)
        for s in engine.run():
            true_ts_ns = EPOCH_NS + s.true_ts_ns
            first, _ = spans.get(s.flow_id, (true_ts_ns, true_ts_ns))
            spans[s.flow_id] = (first, true_ts_ns)
            ts_ns = clocks[s.point.node].reading(true_ts_ns) // tick * tick
            capture, frame, wire_len = writer.write(ts_ns, s.point, s.direction, s.frame)
            outer_src, outer_dst, outer_sport, outer_dport = s.outer
            src, dst, proto, sport, dport = s.inner
            truth.add_packet(PacketTruth(
                capture=capture, frame=frame, ts_ns=ts_ns, true_ts_ns=true_ts_ns,
                node=s.point.node, interface=s.point.name, direction=s.direction,
                packet_id=s.packet_id, hop=s.hop, flow_id=s.flow_id, nat_flow_id=s.nat_flow_id,
                encap=s.encap, vni=s.vni, overlay_encap=s.overlay[0], overlay_vni=s.overlay[1],
                overhead_bytes=s.overhead_bytes, wire_len=wire_len,
                outer_src=outer_src, outer_dst=outer_dst, outer_sport=outer_sport,
                outer_dport=outer_dport, src=src, dst=dst, proto=proto, sport=sport,
                dport=dport, fragment=s.fragment, duplicate=s.duplicate))
            result.packets += 1
            result.per_file[capture] = frame
        writer.commit()
        inventory = scenario.inventory(spans)
        truth.commit(writer.file_names, scenario.nat_flows(),
                     names=inventory.names() if inventory is not None else [],
                     lost=[LostTruth(loss.packet_id, loss.flow_id, loss.point.node,
                                     loss.point.name, EPOCH_NS + loss.true_ts_ns,
                                     loss.retransmitted_as) for loss in engine.losses],
                     clocks={node: clock.describe() for node, clock in clocks.items()})
        result.metadata = write_metadata(out_dir, inventory)
        write_json(out_dir / CAPTURE_SET_FILE, writer.manifest(), "the capture set",
                   "choose a writable --out directory")
        return result
    except BaseException:
        if writer is not None:
            writer.abort()
        if truth is not None:
            truth.abort()
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
