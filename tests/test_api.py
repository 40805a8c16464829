"""The public API: exactly what ``__all__`` promises, and analysis does not pull in Scapy."""

from __future__ import annotations

import subprocess
import sys

import pktkit

PUBLIC = {
    "CaptureError", "OutputError", "PktkitError", "UsageError", "__version__",
    "analyze", "generate", "list_scenarios", "load_truth", "make_scenario", "read_packets",
}


def test_all_is_the_documented_public_api() -> None:
    assert set(pktkit.__all__) == PUBLIC
    for name in pktkit.__all__:
        assert getattr(pktkit, name) is not None


def test_import_pktkit_does_not_import_scapy() -> None:
    code = "import sys, pktkit; pktkit.load_truth; print('scapy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
