"""``pktkit analyze`` on a Dask cluster.

For now the whole single-process analysis (:func:`pktkit.analysis.pipeline.analyze`) and the
writing of its report (:func:`pktkit.report.folder.write_analysis`) run as **one task** on a
worker: the client only sends paths and receives the summary. The map/reduce form of issue 13
(decode into a dataset by tasks, per-file partition keys, a shuffle by those keys, survey →
settle → assign per partition, the tables as partials merged on the client) replaces this task
once the partition keys and the correlation and tables in parts exist; the inputs, options and
output are already the ones it takes. Paths are made absolute here: the workers may run in
another folder (or on other machines, which must see the same paths).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client


def analyze_on_cluster(client: Client, captures: Sequence[str | os.PathLike[str]],
                       out: str | os.PathLike[str], *,
                       nodes: Mapping[str, str] | None = None,
                       options: Mapping[str, Any] | None = None) -> tuple[dict, list[str]]:
    """Analyze ``captures`` (files, folders, bundles, datasets) on the cluster and write the
    report folder ``out``; returns what :func:`~pktkit.report.folder.write_analysis` returns
    and the analysis' notes. ``nodes``, ``options``: as :func:`pktkit.analyze` takes them."""
    absolute = {str(Path(path).absolute()): name for path, name in (nodes or {}).items()}
    given = dict(options or {})
    given["conntrack"] = [(node, str(Path(path).absolute()))
                          for node, path in given.get("conntrack", [])]
    for name in ("k8s", "docker"):
        given[name] = [str(Path(p).absolute()) for p in given.get(name, [])]
    task = client.submit(analyze_into, [str(Path(p).absolute()) for p in captures],
                         str(Path(out).absolute()), absolute, given,
                         key=f"pktkit-analyze-{secrets.token_hex(4)}")
    return task.result()


def analyze_into(captures: list[str], out: str, nodes: dict[str, str],
                 options: dict[str, Any]) -> tuple[dict, list[str]]:
    """The task: the analysis of ``captures`` written to ``out``; the summary and notes."""
    from pktkit.analysis.pipeline import analyze
    from pktkit.report.folder import write_analysis

    found = analyze(captures, nodes=nodes, **options)
    return write_analysis(found, Path(out)), found.notes
