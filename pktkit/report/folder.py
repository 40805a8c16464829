"""The report folder: tables, plots and pages of one analysis (or of several, with an index).

Output folder (:func:`write_analysis`): ``packets.parquet``; every report table as CSV and
Parquet (captures, overlays, overhead, flows, nat_flows, latency, clock_offsets, hops,
handshakes, errors); the plots as PNG; ``summary.json``, ``summary.md`` and ``index.html``.
Everything is first written into a hidden temp folder beside the target and moved in when
complete, so a failure leaves nothing half-written. :func:`write_collection` does the same for
several analyses, one subfolder each, plus an index page.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pktkit.analysis.pipeline import Analysis
from pktkit.capture.output import write_table
from pktkit.errors import OutputError
from pktkit.report.digest import summary
from pktkit.report.render import write_report
from pktkit.report.tables import analysis_tables


def _output_error(out_dir: Path, why: str) -> OutputError:
    return OutputError(f"{out_dir}: cannot write there ({why}); choose a writable folder")


def check_output(out_dir: str | os.PathLike[str]) -> None:
    """Fail early (before any analysis, writing nothing) when ``out_dir`` cannot be made."""
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another --out")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise _output_error(Path(out_dir), f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _output_error(Path(out_dir), f"{existing} is not writable")


class _Staging:
    """A hidden temp folder beside ``out_dir`` (same file system, so moves are renames), and
    the parent folders made for it; on failure everything made is removed again."""

    def __init__(self, out_dir: Path) -> None:
        check_output(out_dir)
        self.out = out_dir
        parent = out_dir.absolute().parent
        self.made = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = parent / f".{out_dir.name}.{secrets.token_hex(6)}.partial"
            self.tmp.mkdir()
        except OSError as exc:
            self._remove_made()
            raise _output_error(out_dir, exc.strerror or str(exc)) from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._publish()
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if kind is not None:
            self._remove_made()

    def _remove_made(self) -> None:
        for folder in self.made:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def _publish(self) -> None:
        """Move the finished files into ``out`` (the whole folder renamed when new)."""
        out, tmp = self.out, self.tmp
        try:
            if not out.exists():
                os.replace(tmp, out)
                return
            for item in sorted(tmp.iterdir()):
                target = out / item.name
                if item.is_dir() and target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        except OSError as exc:
            raise _output_error(out, exc.strerror or str(exc)) from None


def _write_files(analysis: Analysis, folder: Path, *, figures: bool) -> dict[str, Any]:
    tables = analysis_tables(analysis)
    result = summary(tables)
    result["correlation"] = correlation_summary(analysis)
    plots = {}
    if figures:
        from pktkit.report.plot import build_figures

        plots = build_figures(tables, analysis.packets)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_table(analysis.packets, folder / "packets.parquet")
        write_report(folder, tables, plots, result)
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
    with _Staging(Path(out_dir)) as tmp:
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
    with _Staging(Path(out_dir)) as tmp:
        for name, make in analyses:
            results[name] = _write_files(make(), tmp / name, figures=figures)
        _write_index(tmp, results)
    return results


def _write_index(folder: Path, results: Mapping[str, Any]) -> None:
    rows = []
    for name, result in results.items():
        counts, corr = result.get("counts", {}), result.get("correlation", {})
        rows.append((name, counts.get("captures", 0), counts.get("packets", 0),
                     corr.get("packets", 0), len(corr.get("nodes", [])),
                     counts.get("nat_flows") or 0, len(result.get("problems", []))))
    head = ("analysis", "captures", "frames", "packets", "nodes", "NAT flows", "problems")
    md = ["# pktkit analyses", "", "| " + " | ".join(head) + " |",
          "|" + " --- |" * len(head)]
    md += [f"| [{r[0]}]({r[0]}/index.html) | " + " | ".join(map(str, r[1:])) + " |"
           for r in rows]
    (folder / "summary.md").write_text("\n".join(md) + "\n")
    (folder / "summary.json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                         + "\n")
    cells = "".join(
        f'<tr><td><a href="{html.escape(r[0])}/index.html">{html.escape(r[0])}</a></td>'
        + "".join(f"<td>{v:,}</td>" for v in r[1:]) + "</tr>" for r in rows)
    (folder / "index.html").write_text(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pktkit "
        "analyses</title><style>body{font:14px system-ui,sans-serif;margin:24px auto;"
        "max-width:900px}table{border-collapse:collapse}td,th{border:1px solid #ddd;"
        "padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>"
        "<body><h1>pktkit analyses</h1><table><tr>"
        + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + cells
        + "</table></body></html>\n")
