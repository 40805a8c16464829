"""A lab run killed mid-way leaves nothing: no namespace, no process, no output, no staging
folder; a SIGKILLed run's namespaces are swept by the next run (or ``--cleanup``). Skipped
without root and network namespaces."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lab_checks import CLI

from pktkit.lab.netns import NETNS_DIR, lab_namespaces, run, sweep_stale


def ours(pid: int) -> list[str]:
    return [n for n in lab_namespaces() if n.startswith(f"pktkit-lab-{pid}-")]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (zombies are dead: not counted)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue
            if text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def start_and_wait_for_capture(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "run"
    lab = subprocess.Popen([*CLI, "lab", "vxlan-overlay", "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ours(lab.pid) and list(tmp_path.glob(".run.*.partial/.*.partial/*.pcap")):
            return lab, out
        time.sleep(0.05)
    lab.kill()
    raise AssertionError("the lab run never reached its capture")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_capture_removes_everything(lab_available: None, tmp_path: Path,
                                                 signum: int) -> None:
    lab, out = start_and_wait_for_capture(tmp_path)
    lab.send_signal(signum)
    _, stderr = lab.communicate(timeout=30)
    assert lab.returncode == 128 + signum, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("pktkit: "), stderr
    assert not ours(lab.pid)
    assert not processes_mentioning(f"pktkit-lab-{lab.pid}-")
    assert not out.exists() and not list(tmp_path.glob(".run.*"))


def test_sigkilled_run_is_swept(lab_available: None, tmp_path: Path) -> None:
    lab, _ = start_and_wait_for_capture(tmp_path)
    lab.kill()
    lab.wait()
    assert ours(lab.pid)  # SIGKILL cannot be caught: the namespaces stay ...
    deadline = time.monotonic() + 5
    while processes_mentioning(f"pktkit-lab-{lab.pid}-") and time.monotonic() < deadline:
        time.sleep(0.1)  # ... but the children die with it (parent-death signal)
    assert not processes_mentioning(f"pktkit-lab-{lab.pid}-")
    done = subprocess.run([*CLI, "lab", "--cleanup"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and f"pktkit-lab-{lab.pid}-sw" in done.stdout
    assert not ours(lab.pid)


def test_sweep_leaves_live_runs_alone(lab_available: None) -> None:
    mine = f"pktkit-lab-{os.getpid()}-keep"
    run(["ip", "netns", "add", mine])
    try:
        sweep_stale()
        assert (NETNS_DIR / mine).exists()
    finally:
        run(["ip", "netns", "del", mine])
