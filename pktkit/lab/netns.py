"""Network namespaces and child processes of one lab run, and their guaranteed removal.

Why a registry: the lab must leave nothing behind, whatever ends it. Every namespace is
registered *before* ``ip netns add`` runs and every child process right after it starts;
:meth:`Registry.close` then kills the children (by their own pids, and any process still inside
one of our namespaces), and deletes the namespaces, which deletes every device in them (a veth
pair dies with either end). Nothing is ever created in the root namespace: devices are made
with ``ip -n NS`` (the peer of a veth goes straight into its namespace with ``netns``),
sysctls and iptables run under ``ip netns exec``.

Names: ``pktkit-lab-<pid>-<short>``. The pid makes concurrent runs distinct and lets
:func:`sweep_stale` recognise the leftovers of a run that was SIGKILLed (its pid is gone); its
children were already ended by the kernel (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

from pktkit.collect.tools import dies_with_us
from pktkit.errors import PktkitError

PREFIX = "pktkit-lab-"
NETNS_DIR = Path("/run/netns")
_OURS = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[A-Za-z0-9_.-]+$")
TERM_WAIT_S = 2.0


class LabError(PktkitError):
    """A step of building the lab failed (a command the lab ran exited non-zero)."""


def run(argv: list[str], *, input: str | None = None, check: bool = True,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError naming the command and its error line."""
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip()).splitlines()
        reason = message[-1] if message else f"exit status {done.returncode}"
        raise LabError(f"lab setup: `{' '.join(argv)}` failed ({reason}); this kernel may lack "
                       "a feature the scenario needs")
    return done


@dataclass
class Namespace:
    """One network namespace of the lab (a node, a pod, the switch, a router)."""

    short: str  # the lab's own name for it: node-a, c1, sw, ...
    name: str  # the namespace's name: pktkit-lab-<pid>-<short>

    def ip(self, *args: str) -> None:
        run(["ip", "-n", self.name, *args])

    def exec(self, argv: list[str], *, input: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *argv], input=input, check=check)

    def sysctl(self, settings: dict[str, str | int]) -> None:
        """Set sysctls of this namespace (never the root namespace's)."""
        self.exec(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])

    def has_sysctl(self, key: str) -> bool:
        path = "/proc/sys/" + key.replace(".", "/")
        return self.exec(["test", "-e", path], check=False).returncode == 0

    def iptables(self, rules: str) -> None:
        """Load iptables-save formatted ``rules`` (one iptables-restore: all or nothing)."""
        self.exec(["iptables-restore", "--noflush"], input=rules)


@dataclass
class Registry:
    """What one run made; :meth:`close` removes it all, in reverse order, once."""

    run_id: str = field(default_factory=lambda: str(os.getpid()))
    namespaces: list[Namespace] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    closed: bool = False
    # Set by the run to Guard.critical: creation and registration are not cut by a signal.
    critical: Callable[[], AbstractContextManager[object]] = nullcontext

    def namespace(self, short: str) -> Namespace:
        """Create namespace ``pktkit-lab-<run>-<short>``, loopback up."""
        ns = Namespace(short, f"{PREFIX}{self.run_id}-{short}")
        if any(n.name == ns.name for n in self.namespaces):
            raise LabError(f"lab setup: namespace {ns.name} made twice (scenario bug)")
        with self.critical():
            self.namespaces.append(ns)  # registered first: close() tolerates a missing one
            run(["ip", "netns", "add", ns.name])
        ns.ip("link", "set", "lo", "up")
        return ns

    def spawn(self, ns: Namespace, argv: list[str], *, env: dict[str, str] | None = None,
              stdin: int | None = None, stdout: int | None = None,
              stderr: int | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns`` in a session of its own, ended by the kernel if this
        process dies (:func:`~pktkit.collect.tools.dies_with_us`), and registered for
        :meth:`close`."""
        command = dies_with_us(["ip", "netns", "exec", ns.name, *argv])
        with self.critical():
            process = subprocess.Popen(command, env=env, stdin=stdin, stdout=stdout,
                                       stderr=stderr, start_new_session=True)
            self.processes.append(process)
        return process

    def close(self) -> list[str]:
        """Kill our children, then delete our namespaces. Idempotent; returns problems (for
        the report) instead of raising, so that one failure does not stop the rest."""
        if self.closed:
            return []
        self.closed = True
        problems: list[str] = []
        _end_processes(self.processes)
        for ns in reversed(self.namespaces):
            problems += _delete_namespace(ns.name)
        return problems


def _end_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (its whole session), then SIGKILL what is left after TERM_WAIT_S."""
    live = [p for p in processes if p.poll() is None]
    for process in live:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_WAIT_S
    for process in live:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signum)  # start_new_session: the process leads its own group


def _pids_in(name: str) -> list[int]:
    done = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()] if done.returncode == 0 else []


def _delete_namespace(name: str) -> list[str]:
    """Kill any process still in the namespace (ours: nothing else runs in it), delete it."""
    if not (NETNS_DIR / name).exists():
        return []
    for pid in _pids_in(name):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    done = run(["ip", "netns", "del", name], check=False)
    if done.returncode != 0 and (NETNS_DIR / name).exists():
        return [f"ip netns del {name}: {done.stderr.strip()}"]
    return []


def lab_namespaces() -> list[str]:
    """Every ``pktkit-lab-*`` namespace on this host."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def sweep_stale() -> list[str]:
    """Delete the namespaces of lab runs whose process is gone (SIGKILLed runs); returns
    their names. Namespaces of live runs, and names not of our form, are left alone."""
    removed = []
    for name in lab_namespaces():
        match = _OURS.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        if not _delete_namespace(name):
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
