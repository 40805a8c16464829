"""The public API: exactly what ``__all__`` promises (pktkit, pktkit.report, pktkit.plot), and
analysis does not pull in Scapy."""

from __future__ import annotations

import subprocess
import sys

import pktkit
import pktkit.plot
import pktkit.report

PUBLIC = {
    "CaptureError", "OutputError", "PktkitError", "UsageError", "__version__",
    "analyze", "frames", "generate", "list_scenarios", "load_truth", "make_scenario",
    "read_packets",
}
DPKT = {"CMD", "ERSPAN2", "ERSPAN3", "EthernetCMD", "GRE", "Geneve", "GeneveOption", "LINKTYPES",
        "Loopback", "MPLS", "NSH", "NVGRE", "PPP", "Teredo", "UDP", "UDP_PORTS", "VXLAN",
        "VXLANGPE", "WCCP", "decode", "innermost", "install", "layers", "register_udp_port",
        "shallow", "tunnel_id", "uninstall"}
REPORT = {"build_tables", "captures", "checksums", "errors", "flows", "overhead", "overlays",
          "summary"}
PLOT = {"build_figures", "latency_cdf", "nat_timeline", "overhead_share", "throughput"}


def test_all_is_the_documented_public_api() -> None:
    assert set(pktkit.__all__) == PUBLIC
    for name in pktkit.__all__:
        assert getattr(pktkit, name) is not None


def test_report_and_plot_are_public_modules() -> None:
    """The notebooks use these two: their ``__all__`` is a contract like pktkit's."""
    for module, names in ((pktkit.report, REPORT), (pktkit.plot, PLOT)):
        assert set(module.__all__) == names
        for name in names:
            assert callable(getattr(module, name)), f"{module.__name__}.{name}"


def test_pktkit_dpkt_is_a_public_module_importing_only_dpkt() -> None:
    """For dpkt users: its ``__all__`` is a contract, and it needs nothing else of pktkit."""
    code = ("import sys, pktkit.dpkt as d; print(sorted(d.__all__)); "
            "print(sorted(m for m in sys.modules if m.startswith('pktkit')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, modules = out.stdout.splitlines()
    assert eval(names) == sorted(DPKT)
    assert eval(modules) == ["pktkit", "pktkit.dpkt", "pktkit.errors"]  # (pktkit's own import)


def test_import_pktkit_does_not_import_scapy() -> None:
    code = "import sys, pktkit; pktkit.load_truth; print('scapy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
