"""Stage 4, report: tables for people, plots, and the report folder with its page.

``pktkit.report`` is public (the notebooks use it): the table functions below, each taking the
packet table; :mod:`pktkit.plot` holds the figures.
"""

from __future__ import annotations

from pktkit.report.tables import build_tables, captures, errors, flows, overhead, overlays, summary

__all__ = ["build_tables", "captures", "errors", "flows", "overhead", "overlays", "summary"]
