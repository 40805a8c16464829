"""``pktkit analyze`` on a Dask cluster.

Captures are decoded by tasks into a packet dataset in a scratch folder beside the output
(:mod:`~pktkit.scale.decode`; a dataset given as input is used as it is), the correlation runs
on the cluster by partitions of whole packets (:mod:`~pktkit.scale.correlate`), which stay on
the workers for the later stages (:mod:`~pktkit.scale.tables`: overlays, conversations, NAT
flows, names, handshakes, latency and the report's partials, merged on the client). The
workers write the packet table as the dataset ``packets/`` of the output folder; the client
writes the other tables, the plots and the page (:func:`analyze_in_parts`).

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
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pktkit.analysis.conntrack import read_conntrack
from pktkit.analysis.grouping import DEFAULT_WINDOW_NS
from pktkit.analysis.identities import IdentityMap, service_backends
from pktkit.analysis.inputs import metadata_beside, opened_inputs
from pktkit.analysis.metadata import read_metadata
from pktkit.analysis.naming import HANDSHAKE_NAMES, add_names, name_nat_flows
from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
from pktkit.analysis.pipeline import STAGES, analyze, merged_addresses, owned_by_one
from pktkit.capture.autoports import resolve_ports
from pktkit.capture.dataset import DatasetCapture, read_manifest
from pktkit.capture.frame import SCHEMA
from pktkit.capture.headers import IPPROTO_TCP
from pktkit.files import StagingFolder, output_error, scratch_folder
from pktkit.progress import Progress
from pktkit.report.digest import summary
from pktkit.report.folder import write_analysis
from pktkit.report.health import captures_table
from pktkit.report.overlay_costs import overlays_table
from pktkit.report.render import write_report
from pktkit.report.tables import NAT_NAME_COLUMNS, named_tables, report_tables
from pktkit.scale.correlate import (
    KEY,
    ROW,
    settled_parts,
    table_captures,
)
from pktkit.scale.decode import write_dataset
from pktkit.scale.tables import PACKETS_FOLDER, concat_parts, tables_on_cluster

if TYPE_CHECKING:
    from distributed import Client

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
        return analyze_in_parts(client, datasets, out, scratch, **given,
                                progress=progress), []


def analyze_in_parts(
    client: Client, datasets: Sequence[Path], out: Path, scratch: Path, *,
    conntrack: Sequence[tuple[str | None, str]] = (), underlay_mtu: int = 1500,
    window_ns: int = DEFAULT_WINDOW_NS, clock_correction: str = "auto",
    k8s: Sequence[str] = (), docker: Sequence[str] = (),
    node_addresses: Mapping[str, Sequence[str]] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The analysis of the packet ``datasets`` in parts on the cluster, written to ``out``:
    the packet table by the workers as the dataset ``out/packets/``, every other table, the
    plots and the page by the client from the merged partials
    (:mod:`~pktkit.scale.tables`; the hops rows pass through ``scratch``); returns the
    summary."""
    report = progress or (lambda stage, done, total: None)
    captures = table_captures(datasets)
    manifests = [read_manifest(d) for d in datasets]
    metadata = read_metadata(k8s, docker)
    dumps = [read_conntrack({node: path}) for node, path in conntrack]
    dump = pd.concat(dumps, ignore_index=True) if dumps else None
    owned = owned_by_one(merged_addresses(node_addresses or {}, {n.name: n.addresses
                                                                 for n in metadata.nodes}))
    node_order = list(dict.fromkeys(str(c.entry["node"]) for c in captures))
    report("read", 1, len(STAGES))
    parts, settled = settled_parts(client, datasets, node_order=node_order,
                                   window_ns=window_ns, clock_correction=clock_correction,
                                   node_addresses=owned, scratch=scratch)
    report("correlate", 2, len(STAGES))
    backends = service_backends(metadata)

    def name_tables(nat: Any, handshakes: pd.DataFrame, names: IdentityMap) -> None:
        name_nat_flows(nat.flows, names, backends)
        add_names(handshakes, names, HANDSHAKE_NAMES, "syn_ts_ns", proto=IPPROTO_TCP,
                  after=True)

    def window(partials: list[Any]) -> tuple[int, int] | None:
        from pktkit.report.plot import throughput_window  # (matplotlib: when there is a plot)

        # (the two tables it reads: merging the flows' partials too cost seconds and the
        # client hundreds of MB on millions of frames, for a table made again below)
        return throughput_window({
            "captures": captures_table([p.captures for p in partials], []),
            "overlays": overlays_table([p.overlays for p in partials])})

    stats = [c.entry["read_stats"] for c in captures]
    with StagingFolder(out) as staged:
        found = tables_on_cluster(
            client, parts, settled, drop=(KEY, ROW), row=ROW, dumps=dump,
            names=lambda flows: IdentityMap.from_metadata(metadata).with_published(flows),
            name_tables=name_tables, underlay_mtu=underlay_mtu, window=window,
            folder=staged / PACKETS_FOLDER, hops_folder=scratch / "hops",
            buckets_folder=scratch / "report-buckets", categories={})
        del parts
        report("nat", 3, len(STAGES))
        names = IdentityMap.from_metadata(metadata).with_published(found.nat.flows)
        nat = found.nat.flows
        nat = nat[[*NAT_FLOWS_COLUMNS, *(c for c in NAT_NAME_COLUMNS if c in nat)]]
        assert settled.clock_offsets is not None
        tables = named_tables(
            report_tables(found.report, read_stats=stats,
                          payload_estimated="l4_payload_len" not in SCHEMA,
                          underlay_mtu=underlay_mtu, nat_flows=nat, hops=found.hops,
                          latency=found.latency, clock_offsets=settled.clock_offsets),
            names, found.handshakes, found.nat.disagreements if dump is not None else None,
            names.table())
        result = summary(tables)
        result["correlation"] = {
            "packets": found.packets, "sightings": int(found.hops.attrs["rows"]),
            "frames": sum(int(c.entry["frames"]) for c in captures), "nodes": node_order,
            "packets_seen_twice_or_more": found.second_sightings,
            "clock_offsets": json.loads(settled.clock_offsets.to_json(orient="records"))}
        ports = [p for m in manifests for p in m.get("tunnel_ports") or []]
        if ports:
            result["tunnel_ports"] = list({json.dumps(p, sort_keys=True): p
                                           for p in ports}.values())
        report("latency", 4, len(STAGES))
        from pktkit.report.plot import build_figures

        plots = build_figures(tables, throughput_partials=found.throughput,
                              latency_curves=found.curves)
        try:
            concat_parts(found.hop_files, staged / "hops.parquet", staged / "hops.csv")
            write_report(staged, tables, plots, result, written_by_caller=("hops",))
        finally:
            import matplotlib.pyplot as plt

            for figure in plots.values():
                plt.close(figure)
    return result


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
