"""The report's HTML pages, through jinja2 templates shipped with the package.

``index.html`` of an analysis is one self-contained page: inline CSS, the plots embedded as
``data:image/png;base64`` URIs, no script and no external URL, so it opens offline and can be
mailed as one file. The summary comes first (headline counts, problems, overlays), then one
section per table with the plots that belong to it; tables longer than
:data:`MAX_HTML_ROWS` (:data:`HTML_ROWS`) show their first rows and link the full CSV/Parquet
beside the page. The templates (``templates/*.j2``) hold the markup; this module prepares
what they show, as text, and jinja2 escapes it.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from pktkit.report.present import display, headline, is_bad, summary_frames, time_span

MAX_HTML_ROWS = 200
# Raw per-sighting tables are for the files; the page shows a taste of them.
HTML_ROWS = {"hops": 20}

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
    "checksums": ("Checksums", "IPv4, TCP, UDP and ICMP checksum verdicts per capture and "
                               "interface, inner and outer headers; offload: outgoing frames "
                               "captured before the NIC filled their checksums in."),
}
# The table whose section shows a plot (plots of no listed table go to a last section).
FIGURE_SECTIONS: dict[str, str] = {
    "overhead_share": "overhead", "throughput": "overlays", "latency_hop": "latency",
    "latency_node_pair": "latency", "nat_timeline": "nat_flows",
}
INDEX_HEAD = ("analysis", "captures", "frames", "packets", "nodes", "NAT flows", "problems")

TableView = dict[str, list[Any]]  # head: [(name, kind)], rows: [[(text, css class)]]


def _wbr(name: object) -> Markup:
    """A header that may wrap after an underscore (long snake_case names)."""
    return Markup(str(escape(str(name))).replace("_", "_<wbr>"))


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pktkit.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["wbr"] = _wbr
    return env


@functools.cache
def _css() -> Markup:
    """The page's style sheet, inline (raw text inside <style>: not to be escaped)."""
    return Markup("\n" + resources.files("pktkit.report").joinpath("templates/style.css")
                  .read_text())


def table_view(df: pd.DataFrame) -> TableView:
    """A table as the template shows it: header names with their alignment, and each cell's
    text with its CSS classes (``text``/``num``, ``bad`` for a problem cell)."""
    kinds = ["text" if not pd.api.types.is_numeric_dtype(df[c])
             or pd.api.types.is_bool_dtype(df[c]) else "num" for c in df.columns]
    rows = []
    for raw, shown in zip(df.itertuples(index=False, name=None),
                          display(df).itertuples(index=False, name=None), strict=True):
        rows.append([(text, kind + (" bad" if is_bad(str(c), v) else ""))
                     for c, kind, v, text in zip(df.columns, kinds, raw, shown, strict=True)])
    return {"head": list(zip(df.columns, kinds, strict=True)), "rows": rows}


def _section(name: str, table: pd.DataFrame, figures: list[tuple[str, str]]) -> dict[str, Any]:
    title, description = TABLE_TITLES.get(name, (name, ""))
    rows, limit = len(table), HTML_ROWS.get(name, MAX_HTML_ROWS)
    return {"name": name, "title": title, "description": description, "rows": f"{rows:,}",
            "cut": f"; the first {limit} are shown" if rows > limit else "",
            "view": table_view(table.head(limit)) if rows else None, "figures": figures}


def render_html(tables: Mapping[str, pd.DataFrame], figure_pngs: Mapping[str, bytes],
                summary: Mapping[str, Any]) -> str:
    """The page: summary, then each table with its plots, then plots of no listed table."""
    placed: dict[str, list[tuple[str, str]]] = {}
    loose: list[tuple[str, str]] = []
    for name, png in figure_pngs.items():
        data = base64.b64encode(png).decode("ascii")
        section = FIGURE_SECTIONS.get(name)
        (placed.setdefault(section, []) if section in tables else loose).append((name, data))
    counts = summary.get("counts", {})
    subtitle = f"{counts.get('packets', 0):,} packets from {counts.get('captures', 0)} captures"
    time = summary.get("time", {})
    if time.get("first_ts_ns") is not None:
        subtitle += ", " + time_span(time["first_ts_ns"], time["last_ts_ns"])
    return _environment().get_template("report.html.j2").render(
        css=_css(), subtitle=subtitle, cards=headline(summary),
        problems=[{"problem": p["problem"], "where": str(p["where"]), "detail": p["detail"]}
                  for p in summary.get("problems", [])],
        summary_tables=[(title, table_view(frame)) for title, frame in summary_frames(summary)],
        notes=list(summary.get("notes", [])),
        sections=[_section(name, table, placed.get(name, [])) for name, table in tables.items()],
        loose_figures=loose)


def render_index(results: Mapping[str, Any]) -> tuple[str, str]:
    """The index of several analyses as (HTML, Markdown): per analysis its captures, frames,
    packets, nodes, NAT flows and problems, linked to its own page."""
    rows = []
    for name, result in results.items():
        counts, corr = result.get("counts", {}), result.get("correlation", {})
        rows.append((name, (counts.get("captures", 0), counts.get("packets", 0),
                            corr.get("packets", 0), len(corr.get("nodes", [])),
                            counts.get("nat_flows") or 0, len(result.get("problems", [])))))
    md = ["# pktkit analyses", "", "| " + " | ".join(INDEX_HEAD) + " |",
          "|" + " --- |" * len(INDEX_HEAD)]
    md += [f"| [{name}]({name}/index.html) | " + " | ".join(map(str, values)) + " |"
           for name, values in rows]
    page = _environment().get_template("index.html.j2").render(head=INDEX_HEAD, rows=rows)
    return page, "\n".join(md) + "\n"
