"""``pktkit collect``: record one node (or network namespace) into a bundle.

Public: :func:`collect`. The bundle's format is :mod:`pktkit.capture.bundle`'s (the analysis
reads it from there).
"""

from __future__ import annotations

from pktkit.collect.run import collect

__all__ = ["collect"]
