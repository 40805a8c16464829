"""How report values read for people: table cells (times, durations, shares, rates), cells
worth a red background, and the summary's headline cards and small tables.

Shared by the page (:mod:`~pktkit.report.page`) and the Markdown summary
(:mod:`~pktkit.report.render`), so both say the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd


def format_duration(ns: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if abs(ns) >= scale:
            return f"{ns / scale:.4g} {unit}"
    return f"{ns:.0f} ns"


def format_rate(bps: float) -> str:
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


def utc(ns: Any) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def time_span(first_ns: Any, last_ns: Any) -> str:
    """"2026-01-15 10:00:00 – 10:00:02 UTC" (the date once when both are on it)."""
    first, last = utc(first_ns), utc(last_ns)
    end = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
    return f"{first:%Y-%m-%d %H:%M:%S} – {last.strftime(end)} UTC"


def cell_format(column: str, values: pd.Series) -> Callable[[Any], str] | None:
    """How a column's values read on the page (None: as they are)."""
    if column.endswith("ts_ns"):
        # time of day when the whole column is one UTC date (the page title says which)
        days = {utc(v).date() for v in values.dropna()}
        pattern = "%H:%M:%S.%f" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S.%f"
        return lambda v: utc(v).strftime(pattern)
    if column.endswith("_ns"):
        return format_duration
    if column.endswith(("_share", "_efficiency")):
        return lambda v: f"{v:.1%}"
    if column.endswith("_bps"):
        return format_rate
    if column.endswith("_mean"):
        return lambda v: f"{v:.4g}"
    return None


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The table as text cells: times, durations, shares and rates readable; NA empty."""
    shown = pd.DataFrame(index=df.index)
    for column in df.columns:
        values = df[column]
        fmt = cell_format(str(column), values)
        shown[column] = [
            "" if pd.isna(v) else (fmt(v) if fmt and not isinstance(v, str) else str(v))
            for v in values
        ]
    return shown


def is_bad(column: str, value: Any) -> bool:
    """A cell worth a red background: an MTU or capture problem."""
    if pd.isna(value) or isinstance(value, str):
        return False
    if column == "exceeds_mtu":
        return bool(value)
    if column == "complete":
        return not value
    if column == "headroom":
        return value < 0
    return column in ("oversized", "frag_needed", "errors") and value > 0


# (summary count, label) for the headline cards
HEADLINE: list[tuple[str, str]] = [
    ("captures", "captures"), ("packets", "packets"), ("bytes", "bytes"), ("flows", "flows"),
    ("overlays", "overlays"), ("nat_flows", "NAT flows"), ("errors", "errors"),
]
# the summary's overlay columns shown on the page (named as in the tables, so they format alike)
OVERLAY_COLUMNS = ["encap", "vni", "packets", "bytes", "vteps", "outer_dports", "overhead_mean",
                   "overhead_share", "payload_efficiency", "inner_mtu", "max_inner_len",
                   "headroom", "oversized", "fragments", "frag_needed"]


LATENCY_METRICS = {"hop": "hops", "node_pair": "node pairs", "nat": "NAT translations",
                   "handshake_rtt": "TCP handshakes"}


def headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(value, label) pairs: the counts, then the time span."""
    counts = summary.get("counts", {})
    cards = [(f"{counts[key]:,}", label) for key, label in HEADLINE
             if counts.get(key) is not None]
    duration = summary.get("time", {}).get("duration_s")
    if duration is not None:
        cards.append((format_duration(duration * 1e9), "captured"))
    if summary.get("underlay_mtu") is not None:
        cards.append((str(summary["underlay_mtu"]), "underlay MTU"))
    return cards


def summary_frames(summary: Mapping[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """The summary's lists as small titled tables: overlays, NAT translations, slowest
    latencies, clock offsets."""
    frames: list[tuple[str, pd.DataFrame]] = []
    if summary.get("overlays"):
        overlays = pd.DataFrame(summary["overlays"])
        frames.append(("Overlays and their cost",
                       overlays[[c for c in OVERLAY_COLUMNS if c in overlays]]))
    translations = summary.get("nat", {}).get("translations")
    if translations:
        frames.append(("NAT translations", pd.DataFrame(translations)))
    for metric, records in summary.get("latency", {}).items():
        frames.append((f"Slowest {LATENCY_METRICS.get(metric, metric)} (by median)",
                       pd.DataFrame(records)))
    if summary.get("clock_offsets"):
        frames.append(("Clock offsets", pd.DataFrame(summary["clock_offsets"])))
    return frames
