"""Running the collector's external tools, each run recorded for ``bundle.json``.

Every run becomes a :class:`~pktkit.capture.bundle.CommandRecord` (argv, exit status, times,
stderr): a missing tool is a record with ``missing: true``, never an exception, because an
empty dump must be told apart from a dump that was never taken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from pktkit.capture.bundle import CommandRecord
from pktkit.files import write_bytes

STDERR_KEEP = 2000  # characters of a tool's stderr kept in bundle.json
TIMEOUT_S = 20.0


def dies_with_us(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it (SIGKILL) when this process dies, even by
    SIGKILL: ``setpriv --pdeathsig KILL``, then a check that our pid is still its parent.

    Why the check: the parent-death signal is set after the fork; had we died in between,
    the child would be an orphan already and never get the signal. ``sh`` reads $PPID after
    setpriv's prctl, so an orphan exits instead of capturing forever. Without setpriv (or
    sh) the command runs as given."""
    if shutil.which("setpriv") is None or shutil.which("sh") is None:
        return list(argv)
    check = f'[ "$PPID" = "{os.getpid()}" ] || exit 111; exec "$@"'
    return ["setpriv", "--pdeathsig", "KILL", "sh", "-c", check, "sh", *argv]


def in_netns(argv: list[str], netns: str | None) -> list[str]:
    """``argv`` run inside ``netns`` via ``ip netns exec`` (which also applies /etc/netns)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run_tool(name: str, argv: list[str], *, phase: str, netns: str | None, bundle: Path,
             output: str | None, timeout: float = TIMEOUT_S) -> CommandRecord:
    """Run ``argv`` (in ``netns``), write its stdout to ``bundle/output`` and record the run.

    Never raises for the tool's sake: a missing binary, a non-zero exit or a timeout are in the
    record. Failing to write the output file raises OutputError (the bundle is broken)."""
    started = time.time_ns()
    record = CommandRecord(name, phase, list(argv), netns, None, started, started, output)
    if shutil.which(argv[0]) is None:
        record.missing, record.error, record.output = True, f"{argv[0]}: not installed", None
        return record
    try:
        done = subprocess.run(in_netns(argv, netns), capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        record.ended_ns = time.time_ns()
        record.error = f"timed out after {timeout:g} s"
        stdout = exc.stdout or b""
        record.stderr = (exc.stderr or b"").decode("utf-8", "replace")[:STDERR_KEEP]
    except OSError as exc:
        record.ended_ns = time.time_ns()
        record.error, record.output = f"{argv[0]}: {exc.strerror}", None
        return record
    else:
        record.ended_ns = time.time_ns()
        record.exit_status = done.returncode
        record.stderr = done.stderr.decode("utf-8", "replace")[:STDERR_KEEP]
        stdout = done.stdout
    if output is not None:
        path = bundle / output
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, stdout, f"{argv[0]}'s output")
    return record


def first_line(text: str) -> str:
    """The first non-empty line of a tool's version banner."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


VERSION_COMMANDS: dict[str, list[str]] = {
    "tcpdump": ["tcpdump", "--version"],
    "conntrack": ["conntrack", "--version"],
    "ip": ["ip", "-V"],
    "bridge": ["bridge", "-V"],
    "iptables-save": ["iptables-save", "--version"],
    "chronyc": ["chronyc", "--version"],
}


def tool_versions() -> tuple[dict[str, str | None], list[CommandRecord]]:
    """The first line of each tool's version banner (None: missing), and the runs."""
    versions: dict[str, str | None] = {}
    records = []
    for tool, argv in VERSION_COMMANDS.items():
        started = time.time_ns()
        record = CommandRecord(tool, "version", argv, None, None, started, started, None)
        if shutil.which(argv[0]) is None:
            record.missing, record.error = True, f"{argv[0]}: not installed"
            versions[tool] = None
        else:
            try:
                done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                record.error, versions[tool] = str(exc), None
            else:
                record.exit_status, record.ended_ns = done.returncode, time.time_ns()
                text = (done.stdout + done.stderr).decode("utf-8", "replace")
                versions[tool] = first_line(text) or None
        records.append(record)
    return versions, records
