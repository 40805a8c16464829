"""The report folder: tables, plots and pages of one analysis (or of several, with an index).

Output folder (:func:`write_analysis`): ``packets.parquet`` (a run on a Dask cluster writes
the packet table as the dataset ``packets/`` instead: :mod:`pktkit.scale.tables`); every report
table as CSV and
Parquet (captures, overlays, overhead, flows, nat_flows, latency, clock_offsets, hops,
handshakes, errors); the plots as PNG; ``summary.json``, ``summary.md`` and ``index.html``.
Everything is first written into a hidden temp folder beside the target and moved in when
complete, so a failure leaves nothing half-written. :func:`write_collection` does the same for
several analyses, one subfolder each, plus an index page.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pktkit.analysis.pipeline import Analysis
from pktkit.capture.output import table_written_meanwhile
from pktkit.files import StagingFolder
from pktkit.report.digest import summary
from pktkit.report.page import render_index
from pktkit.report.render import write_report
from pktkit.report.tables import analysis_tables


def _write_files(analysis: Analysis, folder: Path, *, figures: bool,
                 index_href: str | None = None) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    plots = {}
    try:
        # (the largest file, encoded meanwhile by pyarrow, mostly without the GIL, while
        # this thread builds the report's tables and plots: ~1.5 s of 20 on 1M frames)
        with table_written_meanwhile(analysis.packets, folder / "packets.parquet"):
            tables = analysis_tables(analysis)
            result = summary(tables)
            result["correlation"] = correlation_summary(analysis)
            if "tunnel_ports" in analysis.packets.attrs:  # (--vxlan-port auto: ports found)
                result["tunnel_ports"] = analysis.packets.attrs["tunnel_ports"]
            if figures:
                from pktkit.report.plot import build_figures

                plots = build_figures(tables, analysis.packets)
        write_report(folder, tables, plots, result, index_href=index_href)
    finally:
        if plots:
            import matplotlib.pyplot as plt

            for figure in plots.values():
                plt.close(figure)
    return result


def correlation_summary(analysis: Analysis) -> dict[str, Any]:
    """The correlation in the summary: packets, sightings, nodes, clock offsets (with the
    correction applied)."""
    hops = analysis.hops
    return {
        "packets": int(analysis.packets["packet_id"].nunique()),
        "sightings": len(hops),
        "frames": len(analysis.packets),
        "nodes": list(dict.fromkeys(x.node for x in analysis.inputs)),
        "packets_seen_twice_or_more": int((hops["hop"] == 1).sum()),
        "clock_offsets": json.loads(analysis.clock_offsets.to_json(orient="records")),
    }


def write_analysis(
    analysis: Analysis, out_dir: str | os.PathLike[str], *, figures: bool = True
) -> dict[str, Any]:
    """Write the analysis folder (see the module docstring) atomically; returns the summary
    (:func:`pktkit.report.tables.summary` plus ``correlation``)."""
    with StagingFolder(Path(out_dir)) as tmp:
        return _write_files(analysis, tmp, figures=figures)


def write_collection(
    analyses: Iterable[tuple[str, Callable[[], Analysis]]],
    out_dir: str | os.PathLike[str],
    *,
    figures: bool = True,
) -> dict[str, Any]:
    """Several analyses, one subfolder each (``name``; each made when its turn comes, so only
    one is in memory), plus ``index.html``/``summary.md``/``summary.json`` listing them; all
    moved into ``out_dir`` when complete. Returns {name: summary}."""
    results: dict[str, Any] = {}
    with StagingFolder(Path(out_dir)) as tmp:
        for name, make in analyses:
            results[name] = _write_files(make(), tmp / name, figures=figures,
                                         index_href="../index.html")
        _write_index(tmp, results)
    return results


def _write_index(folder: Path, results: Mapping[str, Any]) -> None:
    page, markdown = render_index(results)
    (folder / "summary.md").write_text(markdown)
    (folder / "summary.json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                         + "\n")
    (folder / "index.html").write_text(page)
