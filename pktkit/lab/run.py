"""``pktkit lab``: build a scenario with namespaces, record it with ``pktkit collect`` on every
node while the traffic runs, tear it down, and write the captures with ``truth.json``.

Output folder (written into a hidden staging folder beside it and renamed when complete)::

    truth.json          the generator's schema, from the captures and conntrack; its
                        ``capture`` names are the files in the nodes' bundles
    lab.json            scenario, parameters, plan, flow results, impairment, timings, notes
    <node>/             each node's complete pktkit collect bundle: <node>-any.pcap
                        (tcpdump -i any, SLL2, ns), <node>-eth0.pcap, bundle.json, snapshots
    agents/             the traffic agents' stderr

``pktkit analyze DIR`` reads it as a folder of bundles (node names, interface names, addresses
and conntrack dumps from each bundle).

Why the namespaces go before the truth is built: the truth needs only files, and the shorter
the namespaces live, the less a crash can leave behind. Everything the run made is removed on
normal exit, on error, and on SIGINT/SIGTERM/SIGHUP (:mod:`pktkit.lab.stage`,
:mod:`pktkit.lab.guard`).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from pktkit.capture.bundle import ANY, SNAPSHOT_FILES, read_bundle_folder
from pktkit.collect import collect
from pktkit.errors import OutputError
from pktkit.files import StagingFolder, write_json
from pktkit.lab.frames import CaptureFile
from pktkit.lab.netns import LabError
from pktkit.lab.plan import Setup
from pktkit.lab.stage import staged
from pktkit.lab.traffic import FlowResult
from pktkit.lab.truth import build_truth

T = TypeVar("T")
READY_TIMEOUT_S = 30.0
SETTLE_S = 0.05  # after every tcpdump listens, before the first packet


@dataclass
class LabResult:
    out_dir: Path
    scenario: str
    seed: int
    files: list[str]
    frames: int
    packets: int
    nat_flows: int
    unlabelled: int
    flows_failed: list[int]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"--out {out}: exists and is not an empty folder; remove it or "
                          "choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputError(f"--out {out}: cannot write in {parent}; choose a writable --out")


def _recording(setup: Setup, bundles: Path, traffic: Callable[[], T],
               critical: Callable[[], AbstractContextManager[object]]) -> T:
    """Run ``traffic`` while ``pktkit collect`` records every node (one thread each); returns
    what ``traffic`` returned once every bundle is complete. The collectors are always
    stopped and joined, with signals held (``critical``): an interrupted run must not exit
    while a collector still stops its tcpdump."""
    stop = threading.Event()
    errors: dict[str, BaseException] = {}
    threads, readies = [], []
    for node, ns in setup.nodes.items():
        ready = threading.Event()

        def work(node: str = node, netns: str = ns.name, ready: threading.Event = ready) -> None:
            try:
                collect(bundles / node, interfaces=["any", *setup.capture_interfaces],
                        netns=netns, stop_event=stop, node=node, ready=ready)
            except BaseException as exc:  # reported by the main thread
                errors[node] = exc
                ready.set()

        thread = threading.Thread(target=work, name=f"collect-{node}", daemon=True)
        threads.append(thread)
        readies.append(ready)
        thread.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for ready in readies:
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise LabError("lab: a node's tcpdump did not start capturing in "
                               f"{READY_TIMEOUT_S:g} s")
        if errors:
            raise next(iter(errors.values()))
        time.sleep(SETTLE_S)
        result = traffic()
    finally:
        with critical():
            stop.set()
            for thread in threads:
                thread.join()
    if errors:
        raise next(iter(errors.values()))
    return result


def _captures(staging: Path, setup: Setup) -> list[CaptureFile]:
    """Each node's captures, as its bundle describes them (the ``any`` capture first)."""
    captures = []
    for node in setup.nodes:
        bundle = read_bundle_folder(staging / node)
        links = bundle.links
        names = links.ifnames() if links is not None else {}
        macs = {link.name: link.mac or "" for link in links.links} if links is not None else {}
        for capture in sorted(bundle.captures, key=lambda c: c.interface != ANY):
            captures.append(CaptureFile(capture.path.name, capture.path, node,
                                        capture.interface, names, macs))
    return captures


def run_lab(scenario: str, out: str | os.PathLike[str], seed: int = 1,
            impair: Sequence[str] = (), *, flows: int | None = None,
            overrides: Mapping[str, str] | None = None, gso: bool = True) -> LabResult:
    """Stage ``scenario`` with the real kernel and write its captures and truth to ``out``.

    ``impair``: ``queue=RATE``, ``loss=PERCENT``, ``node=NAME`` items (see
    :mod:`pktkit.lab.impair`); ``flows``: how many flows (default: the scenario's);
    ``overrides``: scenario parameters as ``--set KEY=VALUE`` gives them; ``gso`` False
    turns segmentation offload off on every device (MSS-sized TCP segments, as on a wire;
    by default the kernel's veths pass super-frames of several segments)."""
    started = time.monotonic()
    out = Path(out)
    _check_out(out)
    if out.is_dir():
        out.rmdir()  # _check_out: empty; the staging folder is renamed in its place
    timings: dict[str, float] = {}
    with StagingFolder(out) as staging:
        mark = time.monotonic()
        with staged(scenario, seed=seed, impair=impair, flows=flows, overrides=overrides,
                    gso=gso, log_dir=staging / "agents") as lab:
            timings["setup_s"] = time.monotonic() - mark
            mark = time.monotonic()
            results: list[FlowResult] = _recording(lab.setup, staging, lab.run_flows,
                                                   lab.guard.critical)
            timings["capture_s"] = time.monotonic() - mark
        spec, setup = lab.spec, lab.setup
        namespaces = [ns.name for ns in lab.registry.namespaces]
        mark = time.monotonic()
        captures = _captures(staging, setup)
        params = {**spec.describe(), "source": "pktkit lab", "kernel": platform.release(),
                  "impair": lab.impairment.describe(), "gso": gso, "clock_offsets_ns": {},
                  "format": "pcap", "linktype": "sll2 (any) and ether (eth0)",
                  "ts_resolution": "ns"}
        dumps = {n: staging / n / "end" / SNAPSHOT_FILES["conntrack"] for n in setup.nodes}
        stats = build_truth(staging, captures, dumps, scenario=spec.name, seed=seed,
                            params=params, iface_context=setup.iface_context,
                            vni_context=setup.vni_context)
        timings["truth_s"] = time.monotonic() - mark
        write_json(staging / "lab.json", {
            "scenario": spec.name, "seed": seed, "params": spec.describe(),
            "impairment": lab.impaired, "gso": gso, "kernel": platform.release(),
            "namespaces": namespaces, "stale_namespaces_removed": lab.stale_removed,
            "flows": [{**asdict(f), "result": asdict(r)}
                      for f, r in zip(setup.flows, results, strict=True)],
            "notes": setup.notes, "timings_s": timings, "truth": asdict(stats),
        }, "lab.json")
    failed = [r.flow_id for r in results if not r.ok]
    return LabResult(out, spec.name, seed, [c.file for c in captures], stats.frames,
                     stats.packets, stats.nat_flows, stats.unlabelled, failed,
                     time.monotonic() - started, timings, namespaces)


def result_lines(result: LabResult) -> list[str]:
    """What ``pktkit lab`` prints: the run in one line, then what did not go as planned."""
    lines = [f"{result.scenario}: {result.frames} frames, {result.packets} packets, "
             f"{result.nat_flows} NAT flows in {len(result.files)} captures under "
             f"{result.out_dir}/ (+ truth.json) in {result.seconds:.1f} s"]
    if result.unlabelled:
        lines.append(f"  {result.unlabelled} frames belong to no flow (see truth.json)")
    if result.flows_failed:
        lines.append(f"  flows that did not complete: {result.flows_failed} (see lab.json)")
    return lines


def dump_result(result: LabResult) -> str:
    """``pktkit lab --json``: the result as JSON."""
    return json.dumps({**asdict(result), "out_dir": str(result.out_dir)}, indent=1)
