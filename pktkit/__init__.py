"""pktkit: craft and analyze the packets of container networks.

The public API is small and lives here; everything else is private to its module. Attributes
are imported on first use, so that ``import pktkit`` for analysis does not load Scapy (it lives
only in the builders). ``pktkit.dpkt`` (import it) is dpkt's missing tunnel layers, for dpkt
users: ``for frame in pktkit.frames(CAPTURE): pktkit.dpkt.decode(frame)``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pktkit.errors import CaptureError, OutputError, PktkitError, UsageError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "analyze": "pktkit.analysis.pipeline",
    "read_packets": "pktkit.capture.table",
    "frames": "pktkit.capture.read",
    "generate": "pktkit.craft.generation",
    "make_scenario": "pktkit.craft.generation",
    "list_scenarios": "pktkit.craft.generation",
    "load_truth": "pktkit.craft.truth",
}

__all__ = [
    "CaptureError",
    "OutputError",
    "PktkitError",
    "UsageError",
    "__version__",
    "analyze",
    "frames",
    "generate",
    "list_scenarios",
    "load_truth",
    "make_scenario",
    "read_packets",
]

if TYPE_CHECKING:
    from pktkit.analysis.pipeline import analyze
    from pktkit.capture.read import frames
    from pktkit.capture.table import read_packets
    from pktkit.craft.generation import generate, list_scenarios, make_scenario
    from pktkit.craft.truth import load_truth


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pktkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
