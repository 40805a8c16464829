"""The node's state at the start and at the end of a capture: one file per command.

Why both ends: conntrack entries are made during the capture (the end dump confirms NAT
flows) and time out after it (the start dump shows what was already there); devices, routes
and neighbours can change mid-capture (a pod started, an ARP entry learnt), and the end
snapshot names the interface indexes of devices created during it.

The network commands run inside the capture's namespace; the clock probes do not (the clock
is the host's, and ``chronyc`` reaches chronyd through the host's socket).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pktkit.capture.bundle import SNAPSHOT_FILES, CommandRecord
from pktkit.collect.clock import adjtimex_state
from pktkit.collect.tools import run_tool
from pktkit.files import write_json


@dataclass(frozen=True)
class Probe:
    name: str  # a key of SNAPSHOT_FILES: where its output goes
    argv: tuple[str, ...]
    in_netns: bool = True

    @property
    def file(self) -> str:
        return SNAPSHOT_FILES[self.name]


NETWORK_PROBES = (
    Probe("conntrack", ("conntrack", "-L", "-o", "extended")),
    Probe("ip-link", ("ip", "-j", "-d", "link")),
    Probe("ip-addr", ("ip", "-j", "addr")),
    Probe("ip-route", ("ip", "-j", "route")),
    Probe("ip-neigh", ("ip", "-j", "neigh")),
    Probe("iptables-nat", ("iptables-save", "-t", "nat")),
    Probe("iptables-filter", ("iptables-save", "-t", "filter")),
    Probe("iptables-mangle", ("iptables-save", "-t", "mangle")),
    Probe("bridge-fdb", ("bridge", "-j", "fdb")),
    Probe("hostname", ("hostname",)),
)
CHRONYC = Probe("chronyc", ("chronyc", "tracking"), in_netns=False)
TIMEDATECTL = Probe("timedatectl", ("timedatectl", "show"), in_netns=False)


def take_snapshot(bundle: Path, phase: str, netns: str | None) -> list[CommandRecord]:
    """Run every probe; files go to ``bundle/<phase>/``. Returns one record per command.

    The clock: ``chronyc tracking``; when it is missing or fails, ``timedatectl show``; and
    always the kernel's own state by ``adjtimex`` (recorded as a command named adjtimex)."""
    (bundle / phase).mkdir(exist_ok=True)
    records = [_run(bundle, phase, probe, netns) for probe in NETWORK_PROBES]
    chrony = _run(bundle, phase, CHRONYC, netns)
    records.append(chrony)
    if chrony.missing or chrony.exit_status != 0:
        records.append(_run(bundle, phase, TIMEDATECTL, netns))
    records.append(_adjtimex(bundle, phase))
    return records


def _run(bundle: Path, phase: str, probe: Probe, netns: str | None) -> CommandRecord:
    return run_tool(probe.name, list(probe.argv), phase=phase,
                    netns=netns if probe.in_netns else None, bundle=bundle,
                    output=f"{phase}/{probe.file}")


def _adjtimex(bundle: Path, phase: str) -> CommandRecord:
    started = time.time_ns()
    state = adjtimex_state()
    output = f"{phase}/{SNAPSHOT_FILES['adjtimex']}"
    write_json(bundle / output, state, "the clock state")
    failed = "error" in state
    return CommandRecord("adjtimex", phase, ["adjtimex(2)"], None, 1 if failed else 0,
                         started, time.time_ns(), output, error=state.get("error"))
