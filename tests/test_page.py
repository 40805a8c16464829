"""The report pages people read (pktkit.report.page), parsed as HTML: a table of contents that
lists and reaches every section, a link back to the index, human section titles, headings
whose unit is the unit of their cells (checked against the CSV beside the page), time
columns that name their clock, names first with their addresses beside, correct plurals,
no empty plot, and an index that says per analysis what was found, its top problem linked to
the section that shows it.

No browser needed: tests/test_screenshots.py renders the same pages in Chromium.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import pktkit
from pktkit.craft.generation import generate, make_scenario
from pktkit.report.folder import write_collection
from pktkit.report.page import TABLE_TITLES
from pktkit.report.present import DURATION_UNITS, RATE_UNITS

ANALYSES = {"clusterip": "k8s-clusterip", "vxlan": "vxlan-overlay", "portmap": "docker-portmap"}


class Page(HTMLParser):
    """The parts of a page the tests read: ids, links, sections with their title, tables
    (headings with their raw column, cells with the address beside), figures."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.contents: list[str] = []  # hrefs in nav#contents
        self.sections: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.text = ""
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._href: str | None = None
        self._link_text = ""
        self._in_contents = False
        self._cell: dict[str, str] | None = None
        self._heading: dict[str, str] | None = None
        self._h2: str | None = None
        self.feed(text)

    @property
    def section(self) -> dict[str, Any] | None:
        return self.sections[-1] if self.sections else None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._stack.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "nav" and a.get("id") == "contents":
            self._in_contents = True
        if tag == "section":
            self.sections.append({"id": a["id"], "title": "", "tables": []})
        if tag == "h2" and self.section is not None and not self.section["title"]:
            self._h2 = ""
        if tag == "a":
            self._href, self._link_text = a.get("href", ""), ""
            if self._in_contents:
                self.contents.append(a.get("href", ""))
        if tag == "table":
            if self.section is None:  # the index page's table is in no section
                self.sections.append({"id": "page", "title": "", "tables": []})
            self.section["tables"].append({"head": [], "rows": []})  # type: ignore[index]
        if tag == "th" and self.section is not None and self.section["tables"]:
            self._heading = {"text": "", "column": a.get("title", "")}
        if tag == "tr" and self.section is not None and self.section["tables"]:
            self.section["tables"][-1]["rows"].append([])
        if tag == "td" and self.section is not None and self.section["tables"]:
            self._cell = {"text": "", "beside": ""}
        if tag == "figure":
            self.figures.append(a.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        opened = self._stack.pop()[0] if self._stack else None
        if tag == "nav" and self._in_contents and opened == "nav":
            self._in_contents = False
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._link_text.strip()))
            self._href = None
        if tag == "h2" and self._h2 is not None:
            self.section["title"] = self._h2.replace("↑ contents", "").strip()  # type: ignore
            self._h2 = None
        if tag == "th" and self._heading is not None:
            self.section["tables"][-1]["head"].append(self._heading)  # type: ignore[index]
            self._heading = None
        if tag == "td" and self._cell is not None:
            cell = {key: value.strip() for key, value in self._cell.items()}
            self.section["tables"][-1]["rows"][-1].append(cell)  # type: ignore[index]
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._href is not None:
            self._link_text += data
        if self._h2 is not None:
            self._h2 += data
        if self._heading is not None:
            self._heading["text"] += data
        if self._cell is not None:
            in_address = any(t == "span" and a.get("class") == "addr" for t, a in self._stack)
            self._cell["beside" if in_address else "text"] += data

    def table(self, section: str) -> tuple[list[dict[str, str]], list[list[dict[str, str]]]]:
        (found,) = [s for s in self.sections if s["id"] == section]
        table = found["tables"][0]
        return table["head"], [row for row in table["rows"] if row]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pages")
    jobs = []
    for name, scenario in ANALYSES.items():
        generate(make_scenario(scenario, seed=1), root / "captures" / name)
        jobs.append((name, lambda folder=root / "captures" / name: pktkit.analyze(folder)))
    write_collection(jobs, root / "out")
    return root / "out"


def page(report: Path, name: str) -> Page:
    return Page((report / name / "index.html").read_text())


@pytest.mark.parametrize("name", ANALYSES)
def test_contents_list_and_reach_every_section(report: Path, name: str) -> None:
    found = page(report, name)
    sections = [s["id"] for s in found.sections]
    assert found.contents == [f"#{s}" for s in sections]  # all of them, in page order
    assert len(sections) >= 10 and sections[0] == "summary"
    # every section leads back to the contents
    for section in found.sections[1:]:
        assert section["title"]
    ups = [href for href, text in found.links if text == "↑ contents"]
    assert ups == ["#contents"] * len(sections)
    for href, _ in found.links:  # every in-page link lands on an id
        if href.startswith("#"):
            assert href[1:] in found.ids, href


@pytest.mark.parametrize("name", ANALYSES)
def test_a_link_back_to_the_index(report: Path, name: str) -> None:
    found = page(report, name)
    back = [href for href, text in found.links if "All analyses" in text]
    assert back == ["../index.html"]
    assert (report / name / back[0]).resolve() == (report / "index.html").resolve()
    assert (report / "index.html").is_file()


@pytest.mark.parametrize("name", ANALYSES)
def test_every_section_has_a_human_title(report: Path, name: str) -> None:
    found = page(report, name)
    for section in found.sections:
        table = section["id"].removeprefix("t-")
        assert "_" not in section["title"], section
        if table in TABLE_TITLES:
            assert section["title"] == TABLE_TITLES[table][0]
    titles = {s["title"] for s in found.sections}
    assert {"TCP handshakes", "Decode errors"} <= titles
    assert "handshakes" not in titles and "nat_disagreements" not in titles


def _unit_scale(heading: str) -> float | None:
    unit = re.search(r"\(([^()]*)\)$", heading)
    units = dict((u, s) for s, u in (*DURATION_UNITS, *RATE_UNITS))
    return units.get(unit.group(1)) if unit else None


@pytest.mark.parametrize("name", ANALYSES)
def test_headings_name_the_unit_of_their_cells(report: Path, name: str) -> None:
    """Each duration or rate column: its heading ends in its unit, its cells are plain
    numbers in that unit, equal to the CSV's value (ns, bit/s) to the digits shown; each time
    column names UTC and a clock."""
    found = page(report, name)
    checked = 0
    for section in found.sections[1:]:
        table_name = section["id"].removeprefix("t-")
        csv = report / name / f"{table_name}.csv"
        if not section["tables"] or not csv.exists():
            continue
        head, rows = found.table(section["id"])
        values = pd.read_csv(csv)
        for index, heading in enumerate(head):
            column = heading["column"]
            cells = [row[index]["text"] for row in rows]
            if column.endswith("ts_ns"):
                assert re.search(r"\(UTC, .*clock.*\)$", heading["text"]), heading
                assert all(re.fullmatch(r"[\d:. -]*", c) for c in cells)
            elif column.endswith(("_ns", "_bps")):
                scale = _unit_scale(heading["text"])
                assert scale is not None, heading
                for cell, raw in zip(cells, values[column], strict=False):
                    if cell == "":
                        assert pd.isna(raw)
                        continue
                    assert re.fullmatch(r"-?[\d,]+(\.\d+)?", cell), (heading, cell)
                    shown = float(cell.replace(",", "")) * scale
                    assert shown == pytest.approx(raw, rel=1e-3, abs=0.5 * scale), (
                        heading, cell, raw)
                    checked += 1
    assert checked > 20
    # the hops table is on the reference clock, corrected; the handshakes on the captures'
    hops, _ = found.table("t-hops")
    assert "time (UTC, node-a clock, corrected)" in [h["text"] for h in hops] or \
        name == "portmap"
    shakes, _ = found.table("t-handshakes")
    assert "syn (UTC, capture clock)" in [h["text"] for h in shakes]


def test_names_first_addresses_beside(report: Path) -> None:
    found = page(report, "clusterip")
    head, rows = found.table("t-nat_flows")
    columns = [h["column"] for h in head]
    assert columns[:3] == ["nat_flow_id", "kind", "service"]  # who, before how
    assert "orig_dst_name" not in columns  # shown in the address's place
    destination = [row[columns.index("orig_dst")] for row in rows]
    assert {c["text"] for c in destination} == {"service:default/web:8080",
                                                "service:kube-system/kube-dns:53"}
    assert {c["beside"] for c in destination} == {"10.96.0.100", "10.96.0.10"}
    # without metadata the address alone, nothing beside it
    head, rows = page(report, "vxlan").table("t-flows")
    a = [h["column"] for h in head].index("a_addr")
    assert all(row[a]["beside"] == "" and row[a]["text"].startswith("10.") for row in rows)


WORDS = "capture|packet|row|flow|NAT flow|node|problem|byte|error|overlay"


def _plural_errors(text: str) -> list[str]:
    """"1 captures", "1 analyses", "2 row": counts whose noun disagrees with them."""
    one = re.findall(rf"(?<![\d.,])1 ((?:{WORDS})s|analyses)\b", text)
    many = re.findall(rf"(?<![\d.,])(?:0|[2-9]|\d\d+|\d{{1,3}}(?:,\d{{3}})+) "
                      rf"({WORDS}|analysis)\b(?!s)", text)
    return one + many


@pytest.mark.parametrize("name", [*ANALYSES, None])
def test_plurals(report: Path, name: str | None) -> None:
    text = Page((report / (name or "") / "index.html").read_text()).text
    assert not _plural_errors(text)
    assert not _plural_errors((report / (name or "") / "summary.md").read_text())


def test_the_plural_check_catches_them() -> None:
    assert _plural_errors("138 packets from 1 captures, 2 row, 1 analyses, 3 analysis") == [
        "captures", "analyses", "row", "analysis"]
    assert not _plural_errors("1 capture, 1,024 packets, 2 rows, 1 analysis")


def test_no_empty_plot(report: Path) -> None:
    """A plot with nothing to show is left out: no NAT timeline on the overlay-only report,
    no node-pair latency on the one-node Docker host."""
    assert "fig-nat_timeline" not in page(report, "vxlan").figures
    assert not (report / "vxlan" / "nat_timeline.png").exists()
    assert "fig-nat_timeline" in page(report, "clusterip").figures
    assert "fig-throughput" not in page(report, "clusterip").figures
    assert "fig-latency_node_pair" not in page(report, "portmap").figures


@pytest.mark.parametrize("name", ANALYSES)
def test_problems_link_to_their_section(report: Path, name: str) -> None:
    found = page(report, name)
    links = [href for href, text in found.links if text == "(see the table)"]
    problems = len(read_summary(report, name)["problems"])
    assert len(links) == problems
    assert all(href[1:] in found.ids for href in links)
    if name == "vxlan":
        assert problems and "#t-flows" in links


def read_summary(report: Path, name: str) -> dict[str, Any]:
    return json.loads((report / name / "summary.json").read_text())


def test_the_index_says_what_each_analysis_found(report: Path) -> None:
    index = Page((report / "index.html").read_text())
    head, rows = index.table("page")
    columns = [h["text"] for h in head]
    assert columns == ["analysis", "captures", "packets", "nodes", "overlays", "NAT flows",
                       "slowest hop (median)", "top problem", "problems"]
    by_name = {row[0]["text"]: dict(zip(columns, (c["text"] for c in row), strict=True))
               for row in rows}
    assert set(by_name) == set(ANALYSES)
    assert by_name["vxlan"]["overlays"] == "vxlan vni 1, vxlan vni 2"
    assert by_name["clusterip"]["nodes"] == "node-a, node-b"
    assert by_name["portmap"]["NAT flows"] == "4" and by_name["portmap"]["nodes"] == "host"
    assert by_name["clusterip"]["top problem"] == "none"
    summary = read_summary(report, "vxlan")
    assert by_name["vxlan"]["top problem"].startswith(summary["problems"][0]["problem"])
    slowest = summary["latency"]["hop"][0]["scope"]
    assert by_name["vxlan"]["slowest hop (median)"].startswith(slowest + ": ")
    # every link reaches its page and, for a problem, the section that shows it
    for href, _ in index.links:
        target, _, anchor = href.partition("#")
        assert (report / target).is_file()
        if anchor:
            assert anchor in Page((report / target).read_text()).ids
