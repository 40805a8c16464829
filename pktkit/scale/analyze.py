"""``pktkit analyze`` on a Dask cluster.

For now the whole single-process analysis (:func:`pktkit.analysis.pipeline.analyze`) and the
writing of its report (:func:`pktkit.report.folder.write_analysis`) run as **one task** on a
worker: the client only sends paths and receives the summary. The map/reduce form of issue 13
(decode into a dataset by tasks, per-file partition keys, a shuffle by those keys, survey →
settle → assign per partition, the tables as partials merged on the client) replaces this task
once the partition keys and the correlation and tables in parts exist; the inputs, options and
output are already the ones it takes. Paths are made absolute here: the workers may run in
another folder (or on other machines, which must see the same paths).

The task writes the report into a scratch folder beside the output; the client moves it into
place (:class:`~pktkit.files.StagingFolder`): a worker stopped while it writes leaves nothing
but the scratch folder, which its owner removes once the cluster is closed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pktkit.analysis.pipeline import analyze
from pktkit.files import StagingFolder, output_error, scratch_folder
from pktkit.progress import Progress
from pktkit.report.folder import write_analysis

if TYPE_CHECKING:
    from distributed import Client


def analyze_on_cluster(client: Client, captures: Sequence[str | os.PathLike[str]],
                       out: str | os.PathLike[str], *,
                       nodes: Mapping[str, str] | None = None,
                       options: Mapping[str, Any] | None = None,
                       progress: Progress | None = None,
                       scratch: Path | None = None) -> tuple[dict, list[str]]:
    """Analyze ``captures`` (files, folders, bundles, datasets) on the cluster and write the
    report folder ``out``; returns what :func:`~pktkit.report.folder.write_analysis` returns
    and the analysis' notes. ``nodes``, ``options``: as :func:`pktkit.analyze` takes them;
    ``progress(stage, done, total)``: called when the analysis is done. ``scratch``: a folder
    beside ``out`` for the work, which the caller removes (the CLI: after the cluster is
    closed, so that no task still running can write into it); default: one made and removed
    here."""
    given = _absolute(options or {})
    nodes = {str(Path(path).absolute()): name for path, name in (nodes or {}).items()}
    paths = [str(Path(p).absolute()) for p in captures]
    out = Path(out).absolute()
    with contextlib.ExitStack() as stack:
        if scratch is None:
            out.parent.mkdir(parents=True, exist_ok=True)
            scratch = stack.enter_context(scratch_folder(out))
        report = scratch / "report"
        task = client.submit(analyze_into, paths, str(report), nodes, given,
                             key=f"pktkit-analyze-{secrets.token_hex(4)}")
        summary, notes = task.result()
        publish(report, out)
        if progress:
            progress("analyze", 1, 1)
        return summary, notes


def publish(folder: Path, out: Path) -> None:
    """Move the files of ``folder`` (on ``out``'s file system) into ``out``, as
    :class:`~pktkit.files.StagingFolder` publishes: a new ``out`` whole, an existing one file
    by file."""
    with StagingFolder(out) as staged:
        try:
            for item in sorted(folder.iterdir()):
                os.replace(item, staged / item.name)
        except OSError as exc:
            raise output_error(out, "the report", exc) from None


def _absolute(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every path made absolute (the workers may run elsewhere)."""
    given = dict(options)
    given["conntrack"] = [(node, str(Path(path).absolute()))
                          for node, path in given.get("conntrack", [])]
    for name in ("k8s", "docker"):
        given[name] = [str(Path(p).absolute()) for p in given.get(name, [])]
    return given


def analyze_into(captures: list[str], out: str, nodes: dict[str, str],
                 options: dict[str, Any]) -> tuple[dict, list[str]]:
    """Task: the single-process analysis of ``captures`` written to ``out``; the summary and
    notes."""
    found = analyze(captures, nodes=nodes, **options)
    return write_analysis(found, Path(out)), found.notes
