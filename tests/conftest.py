"""Shared fixtures. ``tests/`` is on sys.path so that tests can import the ``oracle`` helpers."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# A suite started in the background by a shell without job control (`make test &`, nohup)
# inherits SIGINT ignored, and so does every pktkit run a test starts: a test that stops a
# run with SIGINT (Ctrl-C) then waited for a run that ignored it (a 60 s timeout), or passed
# on a run that simply finished. Ctrl-C's default, as a terminal gives it: children that
# exec start with SIGINT's default action, and Python turns it into KeyboardInterrupt.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The third-party capture corpus beside the repo (or $PKTKIT_CORPUS); skip when absent."""
    path = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"capture corpus not found at {path} (set PKTKIT_CORPUS)")
    return path


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (.ci/run installs it)")
    return path


# -- pktkit lab: the real kernel in network namespaces --------------------------------------

LAB_SCENARIOS = ("docker-snat", "docker-portmap", "flat-routed", "vxlan-overlay", "k8s-nodeport")


def lab_unavailable() -> str | None:
    """Why the lab cannot run here (not root, no network namespaces, a tool missing), or
    None. CI runs as root with namespace support."""
    if os.geteuid() != 0:
        return "pktkit lab needs root (CI runs the lab tests as root)"
    from pktkit.errors import UsageError
    from pktkit.lab.preflight import check_host

    try:
        check_host()
    except UsageError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def lab_available() -> None:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_run(lab_available: None, tmp_path_factory: pytest.TempPathFactory):
    """``lab_run(scenario)``: the session's ``pktkit lab`` run of that scenario (seed 1), made
    on first use (2.5 to 5 s each)."""
    from lab_checks import LabOutput

    from pktkit.lab.run import run_lab

    runs: dict[str, LabOutput] = {}

    def get(scenario: str) -> LabOutput:
        if scenario not in runs:
            out = tmp_path_factory.mktemp("lab") / scenario
            runs[scenario] = LabOutput(out, run_lab(scenario, out, seed=1))
        return runs[scenario]

    return get
