"""A scenario standing, for as long as a ``with`` block runs: namespaces, devices, rules,
impairment, traffic agents with their servers. Removed when the block ends, however it ends.

Why separate from :func:`pktkit.lab.run.run_lab`: recording a run is one use; another is
to keep the lab up and point your own tools at it (``pktkit collect --netns``, tcpdump,
``conntrack -E``), which ``pktkit lab SCENARIO --hold SECONDS`` does from the command line
and the collector's acceptance test does from Python.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pktkit.lab.guard import Guard, guarded
from pktkit.lab.impair import Impairment, apply_impairment, parse_impair
from pktkit.lab.netns import Registry, sweep_stale
from pktkit.lab.plan import Setup
from pktkit.lab.preflight import check_host
from pktkit.lab.scenarios import make_lab_scenario
from pktkit.lab.scenarios.base import LabScenario
from pktkit.lab.topology import Topology
from pktkit.lab.traffic import Agents, FlowResult


@dataclass
class StagedLab:
    """A standing lab: its scenario, what was set up, and the means to send traffic."""

    spec: LabScenario
    setup: Setup
    topo: Topology
    agents: Agents
    registry: Registry
    guard: Guard
    impairment: Impairment
    impaired: list[str] = field(default_factory=list)
    stale_removed: list[str] = field(default_factory=list)

    def netns(self, node: str) -> str:
        """The namespace name of capture node ``node`` (for ``pktkit collect --netns``)."""
        return self.setup.nodes[node].name

    def run_flows(self) -> list[FlowResult]:
        return self.agents.run_flows()

    def run_again(self) -> list[FlowResult]:
        """The plan once more with kernel-chosen source ports (the planned ones may still be
        in TIME_WAIT); ICMP keeps its identifiers."""
        saved = self.setup.flows
        self.setup.flows = [f if f.kind == "ping" else dataclasses.replace(f, sport=0)
                            for f in saved]
        try:
            return self.agents.run_flows()
        finally:
            self.setup.flows = saved


@contextmanager
def staged(scenario: str, *, seed: int = 1, impair: Sequence[str] = (),
           flows: int | None = None, overrides: Mapping[str, str] | None = None,
           gso: bool = True, log_dir: Path) -> Iterator[StagedLab]:
    """Build ``scenario`` and start its agents and servers; everything is removed when the
    block ends (also on error and on SIGINT/SIGTERM/SIGHUP, which raise
    :class:`~pktkit.lab.guard.Interrupted`). ``log_dir`` receives the agents' stderr."""
    spec = make_lab_scenario(scenario, seed=seed, flows=flows, overrides=overrides)
    impairment = parse_impair(impair)
    registry = Registry()
    with guarded(registry.close) as guard:
        registry.critical = guard.critical
        check_host(need_tc=impairment.queue_rate is not None)
        stale = sweep_stale()
        topo = Topology(registry)
        setup = spec.build(topo)
        if not gso:
            topo.disable_gso()
        impaired = apply_impairment(topo, setup, impairment, seed)
        agents = Agents(registry, setup, log_dir)
        agents.start()
        yield StagedLab(spec, setup, topo, agents, registry, guard, impairment, impaired, stale)
        agents.stop()


def hold(lab: StagedLab, seconds: float, *, every: float = 1.0) -> int:
    """Keep ``lab`` up for ``seconds``, sending its plan every ``every`` seconds (first with
    the planned ports, then with kernel-chosen ones); returns how many rounds ran."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        (lab.run_flows if rounds == 0 else lab.run_again)()
        rounds += 1
        time.sleep(max(0.0, min(every, deadline - time.monotonic())))
    return rounds
