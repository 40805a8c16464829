"""Write a report folder: ``index.html``, ``summary.md``, ``summary.json``, every table as CSV
and Parquet, every plot as PNG.

``index.html`` is one self-contained page: inline CSS, the plots embedded as
``data:image/png;base64`` URIs, no script and no external URL, so it opens offline and can be
mailed as one file. The summary comes first (headline counts, problems, overlays), then one
section per table with the plots that belong to it; tables longer than
:data:`MAX_HTML_ROWS` (:data:`HTML_ROWS`) show their first rows and link the full
CSV/Parquet beside the page.
Every file is written as a temp file in the folder and renamed into place.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pktkit.capture.output import write_parquet
from pktkit.errors import OutputError, UsageError

if TYPE_CHECKING:  # a report without figures does not load matplotlib
    from matplotlib.figure import Figure

MAX_HTML_ROWS = 200
# Raw per-sighting tables are for the files; the page shows a taste of them.
HTML_ROWS = {"hops": 20}
PNG_DPI = 100

# Section title and one-line description per known table; others get their name.
TABLE_TITLES: dict[str, tuple[str, str]] = {
    "captures": ("Captures", "One row per capture file."),
    "overlays": ("Overlay networks", "Per encapsulation and VNI: traffic, flows, VTEP pairs."),
    "overhead": ("Encapsulation overhead and MTU",
                 "Header bytes per packet, share of wire bytes, payload efficiency, the "
                 "largest inner packet against the inner MTU, oversized datagrams, fragments, "
                 "ICMP fragmentation needed."),
    "flows": ("Flows", "Per bidirectional flow per capture, those exceeding the MTU first, "
                       "then the heaviest: overlay, NAT flow, MTU, both directions, "
                       "throughput."),
    "nat_flows": ("NAT flows", "Each translated connection: original and translated tuple."),
    "latency": ("Latency", "Delay percentiles per hop, node pair, NAT and handshake."),
    "clock_offsets": ("Clock offsets", "Each node's clock against the reference node."),
    "hops": ("Hops", "Every sighting of every packet along its path."),
    "errors": ("Errors", "Decode problems by capture and reason."),
}
# The table whose section shows a plot (plots of no listed table go to a last section).
FIGURE_SECTIONS: dict[str, str] = {
    "overhead_share": "overhead", "throughput": "overlays", "latency_hop": "latency",
    "latency_node_pair": "latency", "nat_timeline": "nat_flows",
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 24px 48px; color: #1d2330; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #d8dce4; }
.sub, .desc, .files { color: #5a6272; } .files a { color: #2456a8; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #d8dce4; border-radius: 6px; padding: 8px 14px; min-width: 96px; }
.card b { display: block; font-size: 20px; } .card span { color: #5a6272; font-size: 12px; }
.problems li { margin: 3px 0; } .problems .kind { font-weight: 600; color: #a3261b; }
.ok { color: #1f7a3a; font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #e1e4ea; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f2f4f8; position: sticky; top: 0; white-space: normal; vertical-align: bottom;
     min-width: 3em; }
td.text, th.text { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; }
td.bad, tr:nth-child(even) td.bad { background: #fbe3e0; color: #8a1f14; font-weight: 600; }
figure { margin: 16px 0; } figure img { max-width: 100%; border: 1px solid #e1e4ea; }
figcaption { color: #5a6272; font-size: 12px; }
"""


# -- atomic files --------------------------------------------------------------------------


def _write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write`` on a temp file beside ``path`` and rename it over ``path``: a reader
    never sees half a file, and a failure leaves no partial file behind."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    created = False
    try:
        # created here, exclusively, with the umask's permissions (mkstemp's are 0600)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        created = True
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror}); choose a "
                          "writable folder") from None
    finally:
        if created:  # never remove a file that some other writer created
            tmp.unlink(missing_ok=True)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    return _write_atomic(path, lambda tmp: tmp.write_bytes(data))


def _check_name(kind: str, name: str) -> str:
    if not _SAFE_NAME.fullmatch(name):
        raise UsageError(f"{kind} name {name!r}: use letters, digits, '_', '-' and '.' only "
                         "(it becomes a file name)")
    return name


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no software tag: the bytes depend on the plot only)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buffer.getvalue()


# -- formatting for people -----------------------------------------------------------------


def _duration(ns: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if abs(ns) >= scale:
            return f"{ns / scale:.4g} {unit}"
    return f"{ns:.0f} ns"


def _rate(bps: float) -> str:
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


def _utc(ns: Any) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def _time_span(first_ns: Any, last_ns: Any) -> str:
    """"2026-01-15 10:00:00 – 10:00:02 UTC" (the date once when both are on it)."""
    first, last = _utc(first_ns), _utc(last_ns)
    end = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
    return f"{first:%Y-%m-%d %H:%M:%S} – {last.strftime(end)} UTC"


def _cell_format(column: str, values: pd.Series) -> Callable[[Any], str] | None:
    """How a column's values read on the page (None: as they are)."""
    if column.endswith("ts_ns"):
        # time of day when the whole column is one UTC date (the page title says which)
        days = {_utc(v).date() for v in values.dropna()}
        pattern = "%H:%M:%S.%f" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S.%f"
        return lambda v: _utc(v).strftime(pattern)
    if column.endswith("_ns"):
        return _duration
    if column.endswith(("_share", "_efficiency")):
        return lambda v: f"{v:.1%}"
    if column.endswith("_bps"):
        return _rate
    if column.endswith("_mean"):
        return lambda v: f"{v:.4g}"
    return None


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """The table as text cells: times, durations, shares and rates readable; NA empty."""
    shown = pd.DataFrame(index=df.index)
    for column in df.columns:
        values = df[column]
        fmt = _cell_format(str(column), values)
        shown[column] = [
            "" if pd.isna(v) else (fmt(v) if fmt and not isinstance(v, str) else str(v))
            for v in values
        ]
    return shown


def _is_bad(column: str, value: Any) -> bool:
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


def _html_table(df: pd.DataFrame) -> str:
    text_columns = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])
                    or pd.api.types.is_bool_dtype(df[c])}
    kinds = ["text" if c in text_columns else "num" for c in df.columns]
    # long snake_case headers may wrap after an underscore
    head = "".join(f'<th class="{kind}">{html.escape(str(c)).replace("_", "_<wbr>")}</th>'
                   for c, kind in zip(df.columns, kinds, strict=True))
    body = []
    for raw, shown in zip(df.itertuples(index=False, name=None),
                          _display(df).itertuples(index=False, name=None), strict=True):
        cells = "".join(
            f'<td class="{kind}{" bad" if _is_bad(str(c), v) else ""}">{html.escape(text)}</td>'
            for c, kind, v, text in zip(df.columns, kinds, raw, shown, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


# -- the summary, as HTML and Markdown -----------------------------------------------------

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


def _headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(value, label) pairs: the counts, then the time span."""
    counts = summary.get("counts", {})
    cards = [(f"{counts[key]:,}", label) for key, label in HEADLINE
             if counts.get(key) is not None]
    duration = summary.get("time", {}).get("duration_s")
    if duration is not None:
        cards.append((_duration(duration * 1e9), "captured"))
    if summary.get("underlay_mtu") is not None:
        cards.append((str(summary["underlay_mtu"]), "underlay MTU"))
    return cards


def _summary_frames(summary: Mapping[str, Any]) -> list[tuple[str, pd.DataFrame]]:
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


def _summary_html(summary: Mapping[str, Any]) -> str:
    parts = ['<section id="summary"><h2>Summary</h2><div class="cards">']
    parts += [f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}'
              "</span></div>" for value, label in _headline(summary)]
    parts.append("</div><h3>Problems</h3>")
    problems = summary.get("problems", [])
    if problems:
        parts.append('<ul class="problems">')
        parts += [f'<li><span class="kind">{html.escape(p["problem"])}</span> — '
                  f'{html.escape(str(p["where"]))}: {html.escape(p["detail"])}</li>'
                  for p in problems]
        parts.append("</ul>")
    else:
        parts.append('<p class="ok">No problems found.</p>')
    for title, frame in _summary_frames(summary):
        parts.append(f"<h3>{html.escape(title)}</h3>{_html_table(frame)}")
    parts += [f'<p class="desc">Note: {html.escape(note)}</p>'
              for note in summary.get("notes", [])]
    parts.append("</section>")
    return "".join(parts)


def _markdown_table(df: pd.DataFrame) -> str:
    shown = _display(df)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |"
              for row in shown.itertuples(index=False, name=None)]
    return "\n".join(lines)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: headline, problems, overlays, latency, clock offsets."""
    lines = ["# pktkit report", "",
             " · ".join(f"**{value}** {label}" for value, label in _headline(summary)), "",
             "## Problems", ""]
    problems = summary.get("problems", [])
    lines += [f"- **{p['problem']}** — {p['where']}: {p['detail']}" for p in problems]
    if not problems:
        lines.append("No problems found.")
    for title, frame in _summary_frames(summary):
        lines += ["", f"## {title}", "", _markdown_table(frame)]
    lines += ["", *(f"Note: {note}" for note in summary.get("notes", []))]
    return "\n".join(lines).rstrip() + "\n"


# -- the page ------------------------------------------------------------------------------


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{name}"><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(name)}.png'
            "</figcaption></figure>")


def _table_section(name: str, table: pd.DataFrame, figures: list[str]) -> str:
    title, description = TABLE_TITLES.get(name, (name, ""))
    rows, limit = len(table), HTML_ROWS.get(name, MAX_HTML_ROWS)
    cut = f"; the first {limit} are shown" if rows > limit else ""
    files = (f'<p class="files">{rows:,} rows{cut} · <a href="{name}.csv">{name}.csv</a> · '
             f'<a href="{name}.parquet">{name}.parquet</a></p>')
    body = _html_table(table.head(limit)) if rows else '<p class="desc">(empty)</p>'
    return (f'<section id="t-{name}"><h2>{html.escape(title)}</h2>'
            f'<p class="desc">{html.escape(description)}</p>{files}{body}'
            + "".join(figures) + "</section>")


def render_html(tables: Mapping[str, pd.DataFrame], figure_pngs: Mapping[str, bytes],
                summary: Mapping[str, Any]) -> str:
    """The page: summary, then each table with its plots, then plots of no listed table."""
    placed: dict[str, list[str]] = {}
    loose: list[str] = []
    for name, png in figure_pngs.items():
        section = FIGURE_SECTIONS.get(name)
        (placed.setdefault(section, []) if section in tables else loose).append(
            _figure_html(name, png))
    sections = [_table_section(name, table, placed.get(name, []))
                for name, table in tables.items()]
    if loose:
        sections.append('<section id="plots"><h2>Plots</h2>' + "".join(loose) + "</section>")
    counts = summary.get("counts", {})
    subtitle = f"{counts.get('packets', 0):,} packets from {counts.get('captures', 0)} captures"
    time = summary.get("time", {})
    if time.get("first_ts_ns") is not None:
        subtitle += ", " + _time_span(time["first_ts_ns"], time["last_ts_ns"])
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>pktkit report</title><style>{CSS}</style></head><body>"
            f'<h1>pktkit report</h1><p class="sub">{html.escape(subtitle)}</p>'
            + _summary_html(summary) + "".join(sections) + "</body></html>\n")


def write_report(
    out_dir: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure],
    summary: Mapping[str, Any],
) -> list[Path]:
    """Write the report folder (created if missing); returns the files written, index.html
    last (it is written once everything it links to exists)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    written: list[Path] = []
    for name, table in tables.items():
        _check_name("table", name)
        written.append(_write_atomic(out / f"{name}.csv",
                                     lambda tmp, t=table: t.to_csv(tmp, index=False)))
        written.append(_write_atomic(out / f"{name}.parquet",
                                     lambda tmp, t=table: write_parquet(t, tmp)))
    pngs = {_check_name("figure", name): figure_png(fig) for name, fig in figures.items()}
    written += [_write_bytes(out / f"{name}.png", png) for name, png in pngs.items()]
    written.append(_write_bytes(out / "summary.json",
                                (json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
                                .encode()))
    written.append(_write_bytes(out / "summary.md", summary_markdown(summary).encode()))
    written.append(_write_bytes(out / "index.html",
                                render_html(tables, pngs, summary).encode()))
    return written
