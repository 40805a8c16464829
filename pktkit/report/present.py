"""How report values read for people: column headings with their unit, cells in that unit,
names with their addresses beside them, cells worth a red background, plurals, and the
summary's headline cards and small tables.

Shared by the page (:mod:`~pktkit.report.page`) and the Markdown summary
(:mod:`~pktkit.report.render`), so both say the same thing the same way. The tables keep
their raw values (ns, bit/s, fractions) and raw column names; only the presentation converts:
a column's heading names the unit its cells are written in (``p50 (µs)`` over ``39``),
chosen per column from its typical value, and a time column says whose clock it is on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

DURATION_UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))
RATE_UNITS = ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s"), (1.0, "bit/s"))
# an address column whose name column is not ``<address>_name`` (see analysis.naming)
NAMED_LISTS = {"vteps": "vtep_names"}
PLURALS = {"capture": "captures", "packet": "packets", "byte": "bytes", "flow": "flows",
           "overlay": "overlays", "NAT flow": "NAT flows", "error": "errors", "row": "rows",
           "node": "nodes", "analysis": "analyses", "problem": "problems"}


def plural(count: int, singular: str) -> str:
    """"1 capture", "2 captures" (the count written with thousands separators)."""
    return f"{count:,} {singular if count == 1 else PLURALS.get(singular, singular + 's')}"


def format_duration(ns: float) -> str:
    for scale, unit in DURATION_UNITS[:-1]:
        if abs(ns) >= scale:
            return f"{ns / scale:.4g} {unit}"
    return f"{ns:.0f} ns"


def format_rate(bps: float) -> str:
    for scale, unit in RATE_UNITS[:-1]:
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


def number(value: float) -> str:
    """A value in its column's unit: four significant digits, whole above a thousand."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _unit(values: pd.Series, units: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    """The unit of the column's typical (median) magnitude."""
    present = pd.to_numeric(values, errors="coerce").dropna().abs()
    typical = float(present.median()) if len(present) else 0.0
    return next(((s, u) for s, u in units if typical >= s), units[-1])


def is_time(column: str) -> bool:
    return column == "ts_ns" or column.endswith("_ts_ns")


def heading_and_format(column: str, values: pd.Series, clock: str | None
                       ) -> tuple[str, Callable[[Any], str] | None]:
    """A column's heading (its name, the unit its cells are in) and how its values read
    (None: as they are)."""
    if is_time(column):
        # time of day when the whole column is one UTC date (the page title says which)
        days = {utc(v).date() for v in values.dropna()}
        pattern = "%H:%M:%S.%f" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S.%f"
        base = column.removesuffix("ts_ns").removesuffix("_") or "time"
        return (f"{base} (UTC, {clock or 'capture clock'})",
                lambda v: utc(v).strftime(pattern))
    if column.endswith("_ns"):
        scale, unit = _unit(values, DURATION_UNITS)
        return f"{column.removesuffix('_ns')} ({unit})", lambda v: number(v / scale)
    if column.endswith("_bps"):
        scale, unit = _unit(values, RATE_UNITS)
        return f"{column.removesuffix('_bps')} ({unit})", lambda v: number(v / scale)
    if column.endswith(("_share", "_efficiency")):
        return f"{column} (%)", lambda v: f"{v * 100:.1f}"
    if column.endswith("_mean"):
        return column, lambda v: f"{v:.4g}"
    return column, None


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


@dataclass(frozen=True)
class Shown:
    """A column as people read it: heading, alignment, each cell's text, the address beside
    a name (``""``: none), and which cells are problems."""

    column: str
    heading: str
    numeric: bool
    cells: list[str]
    beside: list[str]
    bad: list[bool]


def name_of(column: str, columns: Any) -> str | None:
    """The name column that goes with an address column, if the table has it."""
    name = NAMED_LISTS.get(column, column.removesuffix("_addr") + "_name")
    return name if name != column and name in columns else None


def present(df: pd.DataFrame, clock: str | None = None) -> list[Shown]:
    """The table's columns as people read them (see the module docstring). A name column is
    shown in place of its address column, the address beside each name; ``clock`` says
    whose clock the table's times are on."""
    names = {name_of(c, df.columns) for c in df.columns} - {None}
    shown = []
    for column in df.columns:
        if column in names:
            continue
        values = df[column]
        heading, fmt = heading_and_format(str(column), values, clock)
        cells = ["" if pd.isna(v) else (fmt(v) if fmt and not isinstance(v, str) else str(v))
                 for v in values]
        beside = [""] * len(cells)
        partner = name_of(str(column), df.columns)
        if partner is not None:
            named = ["" if pd.isna(v) else str(v) for v in df[partner]]
            beside = [address if name and name != address else ""
                      for name, address in zip(named, cells, strict=True)]
            cells = [name or address for name, address in zip(named, cells, strict=True)]
            heading = column.removesuffix("_addr")
        numeric = pd.api.types.is_numeric_dtype(values) and not \
            pd.api.types.is_bool_dtype(values)
        shown.append(Shown(str(column), heading, numeric and partner is None, cells, beside,
                           [is_bad(str(column), v) for v in values]))
    return shown


def display(df: pd.DataFrame, clock: str | None = None) -> pd.DataFrame:
    """The table as text cells under their headings (names with their address in
    parentheses): what the Markdown summary prints."""
    columns = present(df, clock)
    return pd.DataFrame({c.heading: [f"{text} ({address})" if address else text
                                     for text, address in zip(c.cells, c.beside, strict=True)]
                         for c in columns}, index=df.index)


# (summary count, label) for the headline cards
HEADLINE: list[tuple[str, str]] = [
    ("captures", "capture"), ("packets", "packet"), ("bytes", "byte"), ("flows", "flow"),
    ("overlays", "overlay"), ("nat_flows", "NAT flow"), ("errors", "error"),
]
# the summary's overlay columns shown on the page (named as in the tables, so they format alike)
OVERLAY_COLUMNS = ["encap", "vni", "packets", "bytes", "vteps", "vtep_names", "outer_dports",
                   "overhead_mean", "overhead_share", "payload_efficiency", "inner_mtu",
                   "max_inner_len", "headroom", "oversized", "fragments", "frag_needed"]


TRANSLATION_COLUMNS = ["nat_flow_id", "kind", "service", "original", "original_name",
                       "translated", "translated_name", "packets"]
LATENCY_METRICS = {"hop": "hops", "node_pair": "node pairs", "nat": "NAT translations",
                   "handshake_rtt": "TCP handshakes", "pod_pair": "pod pairs",
                   "service": "Services"}


def headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(value, label) pairs: the counts, then the time span."""
    counts = summary.get("counts", {})
    cards = [tuple(plural(counts[key], label).split(" ", 1)) for key, label in HEADLINE
             if counts.get(key) is not None]
    duration = summary.get("time", {}).get("duration_s")
    if duration is not None:
        cards.append((format_duration(duration * 1e9), "captured"))
    if summary.get("underlay_mtu") is not None:
        cards.append((str(summary["underlay_mtu"]), "underlay MTU"))
    return cards  # type: ignore[return-value]


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
        table = pd.DataFrame(translations)
        frames.append(("NAT translations",
                       table[[c for c in TRANSLATION_COLUMNS if c in table]]))
    for metric, records in summary.get("latency", {}).items():
        frames.append((f"Slowest {LATENCY_METRICS.get(metric, metric)} (by median)",
                       pd.DataFrame(records)))
    if summary.get("clock_offsets"):
        frames.append(("Clock offsets", pd.DataFrame(summary["clock_offsets"])))
    return frames
