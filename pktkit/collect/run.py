"""``pktkit collect``: one node's captures and state, as one bundle (:mod:`pktkit.capture.bundle`).

Order of work, and why:

1. preflight (root, tcpdump, the namespace, the target) before anything is written;
2. tool versions and the *start* snapshot;
3. one tcpdump for ``-i any`` (SLL2: every device with its index and direction) and one per
   named interface, each confirmed capturing before the next step (``ready`` is set then);
4. wait for the duration, a stop signal or ``stop_event``;
5. after the drain time, stop every tcpdump with SIGINT (its counts), then the *end* snapshot
   (conntrack entries made during the capture, interface indexes of devices created during it);
6. ``bundle.json``, then the bundle appears at ``--out`` at once: a staging folder renamed, or
   a tarball written under a temporary name and renamed (:mod:`pktkit.files`).

The first stop signal only shortens step 4: the bundle is still complete
(:mod:`pktkit.collect.signals`). Any exception (a second signal included) stops tcpdump and
removes the staging folder: nothing half-written remains.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pktkit.capture.bundle import ANY, BUNDLE_FILE, BundleInfo, capture_file_name
from pktkit.collect.signals import stop_on_signals
from pktkit.collect.snapshot import take_snapshot
from pktkit.collect.tcpdump import DRAIN_S, Tcpdump
from pktkit.collect.tools import tool_versions
from pktkit.errors import OutputError, UsageError
from pktkit.files import StagingFolder, atomic_path, scratch_folder, write_json

DEFAULT_SNAPLEN = 262144  # tcpdump's own default
NETNS_DIR = Path("/run/netns")
TARBALL = ".tar.gz"


def preflight(netns: str | None, duration: float | None, snaplen: int) -> None:
    """Every problem the user can fix, as one UsageError line, before any work."""
    if os.geteuid() != 0:
        raise UsageError("pktkit collect must run as root (tcpdump, conntrack and iptables-save "
                         "read kernel state); run it again with sudo")
    if shutil.which("tcpdump") is None:
        raise UsageError("tcpdump is not installed (PATH); install it (apt-get install "
                         "tcpdump) and run pktkit collect again")
    if netns is not None:
        if shutil.which("ip") is None:
            raise UsageError(f"--netns {netns}: needs iproute2's ip, which is not installed")
        if not (NETNS_DIR / netns).exists():
            raise UsageError(f"--netns {netns}: no such network namespace in {NETNS_DIR} "
                             "(see ip netns list); give an existing one or leave --netns out")
    if duration is not None and not 0 < duration <= 86400:
        raise UsageError(f"--duration {duration:g}: give 0 < SECONDS <= 86400 (or leave it out "
                         "and stop with Ctrl-C)")
    if not 0 < snaplen <= DEFAULT_SNAPLEN:
        raise UsageError(f"--snaplen {snaplen}: give 1..{DEFAULT_SNAPLEN} bytes")


def check_target(out: Path) -> None:
    """Refuse before any work: an existing non-empty folder, a folder where a tarball should
    go, or a parent that is missing or not writable."""
    parent = out.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"--out {out}: folder {parent} does not exist; create it or choose "
                          "another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: cannot write in {parent}; choose a writable --out")
    if out.name.endswith(TARBALL):
        if out.exists() and not out.is_file():
            raise OutputError(f"--out {out}: exists and is not a file; choose another --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"--out {out}: exists and is not an empty folder; remove it or "
                          "choose another --out")


@contextmanager
def _bundle_folder(out: Path) -> Iterator[Path]:
    """The folder to fill; on success it becomes ``out`` (a folder renamed into place, or a
    tarball of it with the bundle's name as its one top folder), on failure it is removed."""
    if not out.name.endswith(TARBALL):
        if out.is_dir():
            out.rmdir()  # check_target: empty; the staging folder is renamed in its place
        with StagingFolder(out) as staging:
            yield staging
        return
    with scratch_folder(out) as staging:
        yield staging
        with atomic_path(out, "the bundle") as partial, tarfile.open(partial, "w:gz") as tar:
            tar.add(staging, arcname=out.name.removesuffix(TARBALL))


def _version() -> str | None:
    """pktkit's version as installed (not ``pktkit.__version__``: that would import the
    package's public API, builders included)."""
    try:
        return metadata.version("pktkit")
    except metadata.PackageNotFoundError:
        return None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def _wait(event: threading.Event, duration: float | None, tcpdumps: list[Tcpdump]) -> str:
    """Until the duration passes, ``event`` is set, or a tcpdump exits; says which."""
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
        if remaining <= 0:
            return "duration"
        if event.wait(remaining):
            return "stop"
        if any(not t.running for t in tcpdumps):
            return "tcpdump-exited"


def collect(
    out: str | os.PathLike[str],
    duration: float | None = None,
    interfaces: Sequence[str] = (ANY,),
    bpf: str | None = None,
    snaplen: int = DEFAULT_SNAPLEN,
    netns: str | None = None,
    stop_event: threading.Event | None = None,
    *,
    node: str | None = None,
    ready: threading.Event | None = None,
) -> BundleInfo:
    """Record one node (or network namespace) into the bundle ``out`` (a folder, or a
    ``.tar.gz`` file); return what its ``bundle.json`` says.

    ``interfaces``: ``any`` is always captured; other names get a capture of their own.
    ``stop_event``: set it to end the capture early (the lab does, from another thread);
    without one, SIGINT/SIGTERM/SIGHUP end it (main thread only). ``node``: the name in
    ``bundle.json`` and in file names (default: ``netns``, else the host name). ``ready`` is
    set once every tcpdump is capturing."""
    out = Path(out)
    preflight(netns, duration, snaplen)
    check_target(out)
    node = node or netns or socket.gethostname()
    names = [ANY, *dict.fromkeys(i for i in interfaces if i != ANY)]
    event = stop_event if stop_event is not None else threading.Event()
    guard: AbstractContextManager[list[int]] = (
        stop_on_signals(event) if stop_event is None else nullcontext([]))
    tcpdumps: list[Tcpdump] = []
    with _bundle_folder(out) as staging:
        try:
            with guard as received:
                started_ns = time.time_ns()
                versions, commands = tool_versions()
                commands += take_snapshot(staging, "start", netns)
                for name in names:
                    file = capture_file_name(node, name)
                    tcpdumps.append(Tcpdump(name, staging / file, file, netns=netns,
                                            snaplen=snaplen, bpf=bpf))
                    tcpdumps[-1].start()
                if ready is not None:
                    ready.set()
                stopped_by = _wait(event, duration, tcpdumps)
                time.sleep(DRAIN_S)  # tcpdump's ring hands over its last block (tcpdump.py)
                captures = [t.stop() for t in tcpdumps]
                commands += take_snapshot(staging, "end", netns)
                signals = [signal.Signals(s).name for s in received]
        except BaseException:  # tcpdump stopped before its folder is removed
            for tcpdump in tcpdumps:
                tcpdump.stop()
            raise
        ended_ns = time.time_ns()
        if stopped_by == "stop" and signals:
            stopped_by = f"signal:{signals[0]}"
        info = BundleInfo(
            node=node, hostname=socket.gethostname(), netns=netns, kernel=platform.release(),
            started_at=_iso(started_ns), ended_at=_iso(ended_ns), started_ns=started_ns,
            ended_ns=ended_ns, capture_started_ns=min(c.started_ns for c in captures),
            capture_ended_ns=max(c.ended_ns for c in captures), duration_requested_s=duration,
            stopped_by=stopped_by, signals=signals, interfaces=names, filter=bpf,
            snaplen=snaplen, captures=captures, tool_versions=versions, commands=commands,
            collector={"pid": os.getpid(), "python": platform.python_version(),
                       "pktkit": _version()})
        write_json(staging / BUNDLE_FILE, info.as_json(), "bundle.json")
    return info


def summary_line(info: BundleInfo, out: Path) -> str:
    """One line for the terminal: where the bundle went and what tcpdump counted."""
    counts = ", ".join(f"{c.interface}: {c.packets_captured} captured, "
                       f"{c.packets_dropped} dropped" for c in info.captures)
    failed = [*dict.fromkeys(c.name for c in info.commands
              if c.missing or (c.exit_status not in (0, None)))]
    tail = f"; failed or missing: {', '.join(failed)}" if failed else ""
    return f"{info.node}: {out} ({counts}; stopped by {info.stopped_by}){tail}"
