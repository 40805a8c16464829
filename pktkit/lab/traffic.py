"""Driving the traffic: one agent per talking namespace, servers first, then the flows in order.

Why in order and one at a time: the scenarios' interesting cases are sequences (the second
container's connection while the first's conntrack entry lives), and a flow that is over
before the next begins keeps the captures readable. Flows take milliseconds on the lab's
links, so the default plans run in well under a second; the run's length is the collectors'.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pktkit.lab.netns import LabError, Registry
from pktkit.lab.plan import Setup

AGENT_MODULE = "pktkit.lab.agent"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding pktkit/
START_TIMEOUT_S = 10.0
FLOW_PAUSE_S = 0.01


@dataclass
class FlowResult:
    flow_id: int
    ok: bool
    elapsed_ms: float
    detail: dict[str, Any]


class Agents:
    """The agents of one run, each a child process in its namespace (registered for cleanup)."""

    def __init__(self, registry: Registry, setup: Setup, log_dir: Path) -> None:
        self.registry = registry
        self.setup = setup
        self.log_dir = log_dir  # each agent's stderr: agents/<namespace>.log
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "PYTHONPATH": str(PACKAGE_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for short, ns in self.setup.agents.items():
            with open(self.log_dir / f"{short}.log", "wb") as log:
                self.processes[short] = self.registry.spawn(
                    ns, [sys.executable, "-m", AGENT_MODULE], env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log.fileno())
        for short in self.processes:
            self._read(short, START_TIMEOUT_S)  # {"ready": true}
        for server in self.setup.servers:
            reply = self.request(server.agent, {"op": "serve", "proto": server.proto,
                                                "addr": server.addr, "port": server.port})
            if not reply.get("ok"):
                raise LabError(f"lab: {server.proto} server {server.addr}:{server.port} in "
                               f"{server.agent} did not start ({reply.get('error')})")

    def request(self, short: str, command: dict[str, Any], timeout: float = 30.0
                ) -> dict[str, Any]:
        process = self.processes[short]
        stdin: IO[bytes] | None = process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command).encode() + b"\n")
        stdin.flush()
        return self._read(short, timeout)

    def _read(self, short: str, timeout: float) -> dict[str, Any]:
        process = self.processes[short]
        stdout = process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            state = "exited" if process.poll() is not None else f"silent for {timeout:g} s"
            log = self.log_dir / f"{short}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() \
                else []
            raise LabError(f"lab: the traffic agent in {short} {state}"
                           f"{' (' + tail[0] + ')' if tail else ''}")
        return json.loads(line)

    def run_flows(self) -> list[FlowResult]:
        """Every flow of the plan, in order; a failed flow is recorded, not fatal (loss
        impairments make some fail)."""
        results = []
        for flow in self.setup.flows:
            timeout = flow.timeout_s * (flow.count + 2) + 5
            reply = self.request(flow.client, flow.command(), timeout)
            results.append(FlowResult(flow.flow_id, bool(reply.get("ok")),
                                      float(reply.get("elapsed_ms", 0.0)), reply))
            time.sleep(FLOW_PAUSE_S)
        return results

    def stop(self) -> None:
        """Ask every agent to quit (the registry kills what does not)."""
        for process in self.processes.values():
            with suppress(OSError):
                if process.stdin is not None:
                    process.stdin.write(b'{"op": "quit"}\n')
                    process.stdin.close()
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(2.0)
