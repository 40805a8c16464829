"""Figures of the report: the public face of :mod:`pktkit.report.plot` (the notebooks use it)."""

from __future__ import annotations

from pktkit.report.plot import (
    build_figures,
    latency_cdf,
    nat_timeline,
    overhead_share,
    throughput,
)

__all__ = ["build_figures", "latency_cdf", "nat_timeline", "overhead_share", "throughput"]
