"""The report's HTML pages, through jinja2 templates shipped with the package.

``index.html`` of an analysis is one self-contained page: inline CSS, the plots embedded as
``data:image/png;base64`` URIs, no script and no external URL, so it opens offline and can be
mailed as one file. A bar at the top links back to the index of the analyses (when the
analysis is one of several) and to the table of contents; then come the summary (headline
counts, problems each linked to the section that shows it, overlays, the slowest paths), and
one section per table with the plots that belong to it. Tables longer than
:data:`MAX_HTML_ROWS` (:data:`HTML_ROWS`) show their first rows and link the full CSV/Parquet
beside the page. Cells read as :mod:`~pktkit.report.present` writes them: names first with
their addresses beside, units in the headings, times on a named clock.

The index of several analyses says per analysis what was found: nodes, overlays, NAT flows,
the slowest hop and the top problem, linked to its section.
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

from pktkit.report.labels import overlay_label
from pktkit.report.present import (
    format_duration,
    headline,
    plural,
    present,
    summary_frames,
    time_span,
)

MAX_HTML_ROWS = 200
# Raw per-sighting tables are for the files; the page shows a taste of them.
HTML_ROWS = {"hops": 20}
CAPTURE_CLOCK = "capture clock"  # each capturing node's own clock, as the files recorded it
CLOCK_NOTE = ("Times are UTC on the clock of the node that captured them (capture clock), not "
              "corrected for the offsets between nodes.")

# Section title and one-line description per table; others get their name, readable.
TABLE_TITLES: dict[str, tuple[str, str]] = {
    "captures": ("Captures", "One row per capture file."),
    "overlays": ("Overlay networks",
                 "Per encapsulation and VNI: traffic, flows, the tunnel endpoints (VTEPs)."),
    "overhead": ("Encapsulation overhead and MTU",
                 "Header bytes per packet, share of wire bytes, payload efficiency, the "
                 "largest inner packet against the inner MTU, oversized datagrams, fragments, "
                 "ICMP fragmentation needed."),
    "flows": ("Flows", "Per bidirectional flow per capture, those exceeding the MTU first, "
                       "then the heaviest: overlay, NAT flow, MTU, both directions, "
                       "throughput."),
    "nat_flows": ("NAT flows", "Each translated connection: the original and translated "
                               "tuple, who is behind each address, the Service that "
                               "translated it."),
    "latency": ("Latency", "Delay percentiles per hop, node pair, NAT translation, TCP "
                           "handshake, pod pair and Service."),
    "clock_offsets": ("Clock offsets", "Each node's clock against the reference node."),
    "hops": ("Hops", "Every sighting of every packet along its path."),
    "handshakes": ("TCP handshakes", "Each TCP handshake at each capture point: SYN, SYN-ACK, "
                                     "ACK and the round trip between SYN and ACK."),
    "nat_disagreements": ("NAT flows against the conntrack dumps",
                          "Where a conntrack dump and the captures disagree about a "
                          "translation."),
    "identities": ("Who is who", "The names the cluster and container metadata give: pods "
                                 "(with node and workload), Services, nodes and containers, "
                                 "and the addresses they held when."),
    "errors": ("Decode errors", "Decode problems by capture and reason."),
    "checksums": ("Checksums", "IPv4, TCP, UDP and ICMP checksum verdicts per capture and "
                               "interface, inner and outer headers; offload: outgoing frames "
                               "captured before the NIC filled their checksums in."),
}
# The table whose section shows a plot (plots of no listed table go to a last section).
FIGURE_SECTIONS: dict[str, str] = {
    "overhead_share": "overhead", "throughput": "overlays", "latency_hop": "latency",
    "latency_node_pair": "latency", "nat_timeline": "nat_flows",
}
FIGURE_TITLES: dict[str, str] = {
    "overhead_share": "Where the wire bytes go, per encapsulation",
    "throughput": "Tunnelled throughput over time",
    "latency_hop": "Latency per hop (CDF)",
    "latency_node_pair": "Latency between nodes (CDF)",
    "nat_timeline": "NAT flows over time",
}
# The section that shows a problem (decode error reasons: the errors table).
PROBLEM_SECTIONS: dict[str, str] = {
    "flow-exceeds-mtu": "flows", "oversized": "overhead", "fragments": "overhead",
    "frag-needed": "overhead", "gso-frames": "overhead",
}
# Columns a page shows first (the files keep their order): who, before how.
SHOWN_FIRST: dict[str, tuple[str, ...]] = {"nat_flows": ("nat_flow_id", "kind", "service")}
INDEX_HEAD = ("analysis", "captures", "packets", "nodes", "overlays", "NAT flows",
              "slowest hop (median)", "top problem", "problems")

TableView = dict[str, list[Any]]  # head: [(heading, kind, column)], rows: [[(text, css, beside)]]


def _wbr(name: object) -> Markup:
    """A heading that may wrap after an underscore (long snake_case names)."""
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


def table_view(df: pd.DataFrame, clock: str | None = None) -> TableView:
    """A table as the template shows it: headings with their alignment and raw column name,
    and each cell's text with its CSS classes (``text``/``num``, ``bad`` for a problem cell)
    and the address beside a name."""
    columns = present(df, clock)
    head = [(c.heading, "num" if c.numeric else "text", c.column) for c in columns]
    rows = [[(c.cells[i], ("num" if c.numeric else "text") + (" bad" if c.bad[i] else ""),
              c.beside[i]) for c in columns] for i in range(len(df))]
    return {"head": head, "rows": rows}


def section_title(name: str) -> tuple[str, str]:
    return TABLE_TITLES.get(name, (name.replace("_", " ").capitalize(), ""))


def problem_section(problem: str) -> str:
    """The table that shows a problem."""
    return PROBLEM_SECTIONS.get(problem, "errors")


def _clock(name: str, tables: Mapping[str, pd.DataFrame]) -> str:
    """Whose clock a table's times are on."""
    if name == "hops":
        offsets = tables.get("clock_offsets")
        reference = (str(offsets["reference_node"].iloc[0])
                     if offsets is not None and len(offsets) else "the reference node")
        return f"{reference} clock, corrected"
    if name == "identities":
        return "metadata clock"
    return CAPTURE_CLOCK


def _section(name: str, table: pd.DataFrame, figures: list[dict[str, str]],
             tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    title, description = section_title(name)
    first = [c for c in SHOWN_FIRST.get(name, ()) if c in table]
    table = table[[*first, *(c for c in table.columns if c not in first)]]
    # (a table written elsewhere in parts: its first rows, its count in attrs)
    rows, limit = int(table.attrs.get("rows", len(table))), HTML_ROWS.get(name, MAX_HTML_ROWS)
    clock = _clock(name, tables)
    if clock == CAPTURE_CLOCK and any(str(c).endswith("ts_ns") for c in table.columns):
        description = f"{description} {CLOCK_NOTE}".strip()
    return {"name": name, "title": title, "description": description,
            "rows": plural(rows, "row"),
            "cut": f"; the first {limit} are shown" if rows > limit else "",
            "view": table_view(table.head(limit), clock) if rows else None,
            "figures": figures}


def render_html(tables: Mapping[str, pd.DataFrame], figure_pngs: Mapping[str, bytes],
                summary: Mapping[str, Any], *, index_href: str | None = None) -> str:
    """The page: summary, then each table with its plots, then plots of no listed table.
    ``index_href``: the index of the analyses this one belongs to (the back link)."""
    placed: dict[str, list[dict[str, str]]] = {}
    loose: list[dict[str, str]] = []
    for name, png in figure_pngs.items():
        figure = {"name": name, "title": FIGURE_TITLES.get(name, name.replace("_", " ")),
                  "data": base64.b64encode(png).decode("ascii")}
        section = FIGURE_SECTIONS.get(name)
        (placed.setdefault(section, []) if section in tables else loose).append(figure)
    counts = summary.get("counts", {})
    subtitle = (f"{plural(counts.get('packets', 0), 'packet')} from "
                f"{plural(counts.get('captures', 0), 'capture')}")
    time = summary.get("time", {})
    if time.get("first_ts_ns") is not None:
        subtitle += ", " + time_span(time["first_ts_ns"], time["last_ts_ns"])
    sections = [_section(name, table, placed.get(name, []), tables)
                for name, table in tables.items()]
    contents = [("summary", "Summary"), *((f"t-{s['name']}", s["title"]) for s in sections)]
    if loose:
        contents.append(("plots", "Plots"))
    problems = [{"problem": p["problem"], "where": str(p["where"]), "detail": p["detail"],
                 "href": f"#t-{problem_section(p['problem'])}"
                 if problem_section(p["problem"]) in tables else None}
                for p in summary.get("problems", [])]
    return _environment().get_template("report.html.j2").render(
        css=_css(), subtitle=subtitle, cards=headline(summary), index_href=index_href,
        contents=contents, problems=problems,
        summary_tables=[(title, table_view(frame)) for title, frame in summary_frames(summary)],
        notes=list(summary.get("notes", [])), sections=sections, loose_figures=loose)


def _found(name: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """What the index says of one analysis."""
    counts, corr = result.get("counts", {}), result.get("correlation", {})
    overlays = [overlay_label(o.get("encap"), o.get("vni")) for o in result.get("overlays", [])]
    hops = result.get("latency", {}).get("hop", [])
    slowest = (f"{hops[0]['scope']}: {format_duration(hops[0]['p50_ns'])}"
               if hops and hops[0].get("p50_ns") is not None else "")
    problems = result.get("problems", [])
    top = problems[0] if problems else None
    return {
        "name": name, "href": f"{name}/index.html",
        "captures": f"{counts.get('captures', 0):,}", "packets": f"{counts.get('packets', 0):,}",
        "nodes": ", ".join(corr.get("nodes", [])), "overlays": ", ".join(overlays) or "none",
        "nat_flows": f"{counts.get('nat_flows') or 0:,}", "slowest": slowest,
        "problem": None if top is None else {
            "text": f"{top['problem']} — {top['where']}",
            "href": f"{name}/index.html#t-{problem_section(top['problem'])}"},
        "problems": f"{len(problems):,}",
    }


def render_index(results: Mapping[str, Any]) -> tuple[str, str]:
    """The index of several analyses as (HTML, Markdown): per analysis its captures,
    packets, nodes, overlays, NAT flows, slowest hop and top problem, linked to its page."""
    rows = [_found(name, result) for name, result in results.items()]
    md = ["# pktkit analyses", "", plural(len(rows), "analysis") + ".", "",
          "| " + " | ".join(INDEX_HEAD) + " |", "|" + " --- |" * len(INDEX_HEAD)]
    for row in rows:
        problem = (f"[{row['problem']['text']}]({row['problem']['href']})".replace("|", "\\|")
                   if row["problem"] else "none")
        md.append(f"| [{row['name']}]({row['href']}) | {row['captures']} | {row['packets']} | "
                  f"{row['nodes']} | {row['overlays']} | {row['nat_flows']} | "
                  f"{row['slowest']} | {problem} | {row['problems']} |")
    page = _environment().get_template("index.html.j2").render(
        css=_css(), head=INDEX_HEAD, rows=rows, count=plural(len(rows), "analysis"))
    return page, "\n".join(md) + "\n"
