"""pktkit.report.render: a self-contained page, the summary first, every file atomic and
readable."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from test_plot import packets, truth_hops, truth_latency

from pktkit.errors import OutputError, UsageError
from pktkit.report import render
from pktkit.report.digest import summary
from pktkit.report.plot import build_figures
from pktkit.report.tables import build_tables

matplotlib.use("agg")


@pytest.fixture(scope="module")
def vxlan_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict]:
    folder = "vxlan-overlay"
    hops = truth_hops(folder)
    tables = build_tables(packets(folder), hops=hops, latency=truth_latency(hops))
    out = tmp_path_factory.mktemp("report") / "vx"  # not there yet: write_report creates it
    written = render.write_report(out, tables, build_figures(tables, packets(folder)),
                                  summary(tables))
    return out, written, tables


def test_writes_every_table_plot_and_summary(vxlan_report) -> None:
    out, written, tables = vxlan_report
    names = {p.name for p in written}
    for table in tables:
        assert {f"{table}.csv", f"{table}.parquet"} <= names
    assert {"overhead_share.png", "throughput.png", "latency_hop.png", "latency_node_pair.png",
            "summary.md", "summary.json"} <= names
    assert "nat_timeline.png" not in names  # no NAT flow: no empty plot
    assert written[-1] == out / "index.html"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no .partial left over
    for path in written:
        assert path.stat().st_size > 0
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "index.html").stat().st_mode & 0o777 == 0o666 & ~umask


def test_index_is_self_contained(vxlan_report) -> None:
    out, _, _ = vxlan_report
    page = (out / "index.html").read_text()
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert not re.search(r'src="(?!data:)', page)  # every image inline
    # relative links to the files beside the page, or within it
    assert all(href.endswith((".csv", ".parquet")) or href.startswith("#")
               for href in re.findall(r'href="([^"]+)"', page))


def test_summary_comes_before_the_first_table(vxlan_report) -> None:
    out, _, tables = vxlan_report
    page = (out / "index.html").read_text()
    summary_at = page.index('id="summary"')
    assert summary_at < page.index('id="t-captures"')
    assert page.index("flow-exceeds-mtu") < page.index('id="t-captures"')
    sections = [page.index(f'id="t-{name}"') for name in tables]
    assert sections == sorted(sections) and summary_at < sections[0]


def test_each_plot_is_embedded_as_png(vxlan_report) -> None:
    out, _, _ = vxlan_report
    page = (out / "index.html").read_text()
    embedded = dict(re.findall(r'<figure id="fig-([\w.-]+)"><img alt="[^"]*" '
                               r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page))
    pngs = {p.stem: p.read_bytes() for p in out.glob("*.png")}
    assert set(embedded) == set(pngs)
    for name, data in embedded.items():
        assert base64.b64decode(data) == pngs[name]
        assert pngs[name].startswith(b"\x89PNG\r\n\x1a\n")
    # each plot sits in the section of its table
    assert page.index('id="t-overhead"') < page.index('id="fig-overhead_share"') < page.index(
        'id="t-flows"')


def test_csv_and_parquet_round_trip(vxlan_report) -> None:
    out, _, tables = vxlan_report
    for name, table in tables.items():
        from_parquet = pd.read_parquet(out / f"{name}.parquet")
        pd.testing.assert_frame_equal(from_parquet, table.reset_index(drop=True),
                                      check_dtype=True)
        from_csv = pd.read_csv(out / f"{name}.csv").astype(table.dtypes.to_dict())
        pd.testing.assert_frame_equal(from_csv, table.reset_index(drop=True), check_dtype=True)


def test_summary_markdown_and_page_text(vxlan_report) -> None:
    out, _, _ = vxlan_report
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("# pktkit report\n")
    assert "**flow-exceeds-mtu** — udp 10.0.0.4:" in markdown
    assert "| vxlan | 1 |" in markdown and "| 11.8 |" in markdown
    assert "| overhead_share (%) |" in markdown
    page = (out / "index.html").read_text()
    assert "2026-01-15 10:00:00 – 10:00:09 UTC" in page
    assert '<td class="text bad">True</td>' in page  # an oversized flow, highlighted
    assert "528 rows; the first 20 are shown" in page  # hops: a preview only


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    """A table that cannot be written leaves neither it nor a partial file behind."""

    class Unwritable(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):  # type: ignore[override]
            raise OSError(28, "No space left on device")

    table = Unwritable({"a": [1]})
    with pytest.raises(OutputError, match="No space left"):
        render.write_report(tmp_path, {"broken": table}, {}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv"]


def test_bad_names_and_empty_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="file name"):
        render.write_report(tmp_path, {"../escape": pd.DataFrame()}, {}, {})
    written = render.write_report(tmp_path / "empty", {"errors": pd.DataFrame({"x": []})}, {},
                                  summary({}))
    page = written[-1].read_text()
    assert "No problems found." in page and "None in these captures." in page


def test_escapes_data_in_the_page(tmp_path: Path) -> None:
    table = pd.DataFrame({"capture": ["<script>alert(1)</script>.pcap"]})
    page = render.write_report(tmp_path, {"captures": table}, {}, {})[-1].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_report_without_figures_does_not_load_matplotlib() -> None:
    code = ("import sys, pktkit.report.render, pktkit.report.tables, pktkit.capture.table; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
