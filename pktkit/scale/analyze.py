"""``pktkit analyze`` on a Dask cluster.

Captures are decoded by tasks into a packet dataset in a scratch folder beside the output
(:mod:`~pktkit.scale.decode`; a dataset given as input is used as it is), the correlation runs
on the cluster by partitions of whole packets (:mod:`~pktkit.scale.correlate`), and the
single-process pipeline's later stages (overlays, NAT flows, names, latency) and the report
take its result on the client (:func:`pktkit.analysis.pipeline.analyze` with the cluster's
correlation). Until those stages work in partitions too, the client reads the packet table
back from the dataset, as one process holds it.

Bundles (their links, addresses and conntrack dumps belong to the reading of their
captures), and captures given together with datasets, are analyzed as **one task** instead:
the single-process analysis and its report on a worker, written into the scratch folder and
moved into place by the client (:class:`~pktkit.files.StagingFolder`), so that a worker
stopped while it writes leaves nothing but the scratch folder, which its owner removes once
the cluster is closed. Paths are made absolute here: the workers may run in another folder
(or on other machines, which must see the same paths).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pktkit.analysis.correlate import Correlation
from pktkit.analysis.inputs import metadata_beside, opened_inputs
from pktkit.analysis.pipeline import analyze
from pktkit.analysis.rows import string_codes
from pktkit.capture.autoports import resolve_ports
from pktkit.capture.dataset import DatasetCapture
from pktkit.files import StagingFolder, output_error, scratch_folder
from pktkit.progress import Progress
from pktkit.report.folder import write_analysis
from pktkit.scale.correlate import correlate_on_cluster
from pktkit.scale.decode import write_dataset

if TYPE_CHECKING:
    from distributed import Client

# the hops table's categorical columns → the packet table's column whose labels they take
HOP_CATEGORIES = {"node": "node", "interface": "interface", "capture": "capture",
                  "direction": "direction", "from_node": "node", "from_interface": "interface"}


def analyze_on_cluster(client: Client, captures: Sequence[str | os.PathLike[str]],
                       out: str | os.PathLike[str], *,
                       nodes: Mapping[str, str] | None = None,
                       options: Mapping[str, Any] | None = None,
                       progress: Progress | None = None,
                       scratch: Path | None = None) -> tuple[dict, list[str]]:
    """Analyze ``captures`` (files, folders, datasets; bundles: as one task) on the cluster
    and write the report folder ``out``; returns what
    :func:`~pktkit.report.folder.write_analysis` returns and the analysis' notes. ``nodes``,
    ``options``: as :func:`pktkit.analyze` takes them; ``progress(stage, done, total)``: the
    decoding (stage ``decode``, per task), then the stages of :func:`pktkit.analyze`.
    ``scratch``: a folder for the decoded captures, which the caller removes (the CLI: after
    the cluster is closed, so that no task still running can write into it); default: one
    beside ``out``, removed here."""
    given = _absolute(options or {})
    nodes = {str(Path(path).absolute()): name for path, name in (nodes or {}).items()}
    paths = [str(Path(p).absolute()) for p in captures]
    out = Path(out).absolute()
    with opened_inputs(paths, nodes) as found, contextlib.ExitStack() as stack:
        if scratch is None:
            out.parent.mkdir(parents=True, exist_ok=True)
            scratch = stack.enter_context(scratch_folder(out))
        datasets = list(dict.fromkeys(i.dataset for i in found.captures if i.dataset))
        plain = [i for i in found.captures if i.dataset is None]
        if any(i.source is not None for i in plain) or (datasets and plain):
            report = scratch / "report"
            task = client.submit(analyze_into, paths, str(report), nodes, given,
                                 key=f"pktkit-analyze-{secrets.token_hex(4)}")
            summary, notes = task.result()
            publish(report, out)
            return summary, notes
        beside_k8s, beside_docker = metadata_beside(plain)
        given["k8s"] = [*given.get("k8s", []), *map(str, beside_k8s)]
        given["docker"] = [*given.get("docker", []), *map(str, beside_docker)]
        ports = given.pop("vxlan_ports", ())
        if plain:
            work = scratch / "packets"
            write_dataset(client, [DatasetCapture(i.path, i.node, i.label, dict(i.interfaces),
                                                  i.interface) for i in plain], work,
                          resolve_ports([i.path for i in plain], ports),
                          progress=(lambda done, total: progress("decode", done, total))
                          if progress else None)
            datasets = [work]
        result = analyze(datasets, **given, progress=progress,
                         correlation=functools.partial(_correlation, client, datasets))
        return write_analysis(result, out), result.notes


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


def _correlation(client: Client, datasets: Sequence[Path], packets: pd.DataFrame,
                 **options: Any) -> Correlation:
    """The pipeline's correlation step, run on the cluster from the datasets' files (the
    hops' categories as one process takes them from the table)."""
    categories = {name: string_codes(packets[column])[1]
                  for name, column in HOP_CATEGORIES.items() if column in packets}
    return correlate_on_cluster(client, datasets, len(packets), categories=categories,
                                **options)


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
