"""Write a report's files: ``index.html`` (:mod:`~pktkit.report.page`), ``summary.md``,
``summary.json``, every table as CSV and Parquet, every plot that has data as PNG (a plot
with nothing to show is left out, not drawn as an empty box).

Every file is written as a temp file in the folder and renamed into place.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pktkit.capture.csv_text import write_csv
from pktkit.capture.output import write_parquet
from pktkit.errors import OutputError, UsageError
from pktkit.files import Stopped, meanwhile, write_atomic, write_bytes, write_text
from pktkit.report.page import render_html
from pktkit.report.present import display, headline, summary_frames

if TYPE_CHECKING:  # a report without figures does not load matplotlib
    from matplotlib.figure import Figure

PNG_DPI = 100
_REPORT = ("the report", "choose a writable folder")  # how a write failure is worded
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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


def _markdown_table(df: pd.DataFrame) -> str:
    shown = display(df)
    lines = ["| " + " | ".join(map(str, shown.columns)) + " |",
             "| " + " | ".join("---" for _ in shown.columns) + " |"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |"
              for row in shown.itertuples(index=False, name=None)]
    return "\n".join(lines)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: headline, problems, overlays, latency, clock offsets."""
    lines = ["# pktkit report", "",
             " · ".join(f"**{value}** {label}" for value, label in headline(summary)), "",
             "## Problems", ""]
    problems = summary.get("problems", [])
    lines += [f"- **{p['problem']}** — {p['where']}: {p['detail']}" for p in problems]
    if not problems:
        lines.append("No problems found.")
    for title, frame in summary_frames(summary):
        lines += ["", f"## {title}", "", _markdown_table(frame)]
    lines += ["", *(f"Note: {note}" for note in summary.get("notes", []))]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    out_dir: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure],
    summary: Mapping[str, Any],
    *,
    index_href: str | None = None,
    written_by_caller: Collection[str] = (),
) -> list[Path]:
    """Write the report folder (created if missing); returns the files written, index.html
    last (it is written once everything it links to exists). ``index_href``: the index of
    the analyses the page links back to. ``written_by_caller``: tables whose CSV and Parquet
    files the caller wrote (a table too large for one process; ``tables`` then holds its
    first rows, and its row count in ``attrs["rows"]``, for the page)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    for name in tables:
        _check_name("table", name)

    def write_tables(stop: threading.Event) -> list[Path]:
        files: list[Path] = []
        for name, table in tables.items():
            if name in written_by_caller:
                continue
            if stop.is_set():
                raise Stopped(name)
            files.append(write_atomic(out / f"{name}.csv",
                                      lambda tmp, t=table: write_csv(t, tmp), *_REPORT))
            files.append(write_atomic(out / f"{name}.parquet",
                                      lambda tmp, t=table: write_parquet(t, tmp), *_REPORT))
        return files

    pngs = {}
    # (the tables' CSV and Parquet, encoded by Arrow mostly without the GIL, are written
    # while the plots are drawn)
    with meanwhile(write_tables) as tables_written:
        if figures:
            from pktkit.report.plot import has_data  # matplotlib is loaded: there are figures

            pngs = {_check_name("figure", name): figure_png(fig)
                    for name, fig in figures.items() if has_data(fig)}
    written = tables_written.result()
    written += [write_bytes(out / f"{name}.png", png, *_REPORT) for name, png in pngs.items()]
    written.append(write_text(out / "summary.json",
                              json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                              *_REPORT))
    written.append(write_text(out / "summary.md", summary_markdown(summary), *_REPORT))
    page = render_html(tables, pngs, summary, index_href=index_href)
    written.append(write_text(out / "index.html", page, *_REPORT))
    return written
