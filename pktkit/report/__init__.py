"""Stage 4, report: tables for people, plots, and the report folder with its page.

``pktkit.report`` is public (the notebooks use it): the table functions below, each taking the
packet table; :mod:`pktkit.plot` holds the figures.
"""

from __future__ import annotations

from pktkit.report.digest import summary
from pktkit.report.flow_table import flows
from pktkit.report.health import captures, checksums, errors
from pktkit.report.overlay_costs import overhead, overlays
from pktkit.report.tables import build_tables

__all__ = ["build_tables", "captures", "checksums", "errors", "flows", "overhead", "overlays",
           "summary"]
