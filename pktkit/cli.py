"""The ``pktkit`` command line. Each verb parses its arguments and calls the library.

Errors the user can cause are :class:`~pktkit.errors.PktkitError`: one line on stderr, exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from pktkit import __version__
from pktkit.capture.headers import MAX_MTU, MIN_MTU
from pktkit.errors import PktkitError, UsageError
from pktkit.units import parse_duration


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (and name the subcommand's --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _key_value(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: expected KEY=VALUE")
    return key, value


def _cmd_generate(args: argparse.Namespace) -> int:
    from pktkit.craft.generation import generate, list_scenarios, make_scenario, scenario_parameters

    if args.list and args.scenario:
        for name, default, help_text in scenario_parameters(args.scenario):
            print(f"{name:<20} {default!s:<18} {help_text}")
        return 0
    if args.list:
        rows = list_scenarios()
        width = max(len(name) for name, _ in rows)
        for name, description in rows:
            print(f"{name:<{width}}  {description}")
        return 0
    if not args.scenario or not args.out:
        raise UsageError("generate needs SCENARIO and --out DIR (or --list)")
    overrides = dict(_key_value("--set", item) for item in args.set)
    scenario = make_scenario(args.scenario, seed=args.seed, flows=args.flows,
                             duration_s=args.duration, overrides=overrides,
                             clock_offset_s=args.clock_offset, clock_drift_ppm=args.clock_drift,
                             impairments=args.impair, nodes=args.nodes)
    result = generate(scenario, args.out, fmt=args.format, linktype=args.linktype)
    if not args.quiet:
        print(f"{scenario.name}: {result.packets} frames in {len(result.files)} files "
              f"under {result.out_dir}/ (+ truth.json)")
        for name, count in result.per_file.items():
            print(f"  {name:<28} {count:>8} frames")
    return 0


@contextlib.contextmanager
def _cut_warnings_as_lines() -> Iterator[None]:
    """A cut capture keeps every whole packet and warns: one ``pktkit: warning:`` line on
    stderr per warning, the same for every verb (also when a later file turns out not to be
    a capture), never Python's warning format with a source path."""
    import warnings

    from pktkit.capture.read import CaptureCutWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureCutWarning)
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, CaptureCutWarning):
                    print(f"pktkit: warning: {warning.message}", file=sys.stderr)


def _cmd_packets(args: argparse.Namespace) -> int:
    text: str | None = None
    ports = _vxlan_ports(args.vxlan_port)
    dataset = args.out is not None and _is_dataset_output(args.out)
    if _scaled(args) and not dataset:
        raise UsageError("--workers and --scheduler write a dataset: give -o DIR/ (a path "
                         "ending in / or an existing folder)")
    with _cut_warnings_as_lines():
        if args.out:
            from pktkit.capture.autoports import resolve_ports
            from pktkit.capture.output import write_packets  # no pandas import for Parquet

            resolved = resolve_ports(args.captures, ports)
            if resolved.found is not None and not args.quiet:
                print(resolved.describe())
            if dataset:
                stats = _write_dataset(args, resolved)
            else:
                stats = write_packets(args.captures, args.out, vxlan_ports=resolved)
        else:
            from pktkit.capture.table import read_packets, summarize

            text = summarize(read_packets(args.captures, vxlan_ports=ports))
    if text is not None:
        print(text)
    elif not args.quiet:
        total, files = sum(s.frames for s in stats), len(stats)  # (no pandas for this path)
        print(f"{total} packet{'s' * (total != 1)} from {files} capture{'s' * (files != 1)} "
              f"written to {args.out}")
    return 0


def _is_dataset_output(out: str) -> bool:
    from pktkit.capture.dataset import is_dataset_output

    return is_dataset_output(out)


def _scaled(args: argparse.Namespace) -> bool:
    """Whether the verb runs on a Dask cluster (``--workers`` other than 1, ``--scheduler``)."""
    if args.scheduler is not None and args.workers != 1:
        raise UsageError("--scheduler uses that cluster's workers: give it without --workers")
    if args.memory_limit != "auto" and (args.scheduler is not None or args.workers == 1):
        raise UsageError("--memory-limit sizes the workers of a local cluster: give it with "
                         "--workers N (a cluster at --scheduler has its workers' own limits)")
    return args.scheduler is not None or args.workers != 1


def _write_dataset(args: argparse.Namespace, ports: object) -> list:
    """``packets -o DIR/``: the captures' nodes and labels as analyze names them, decoded
    here one after the other (``--workers 1``) or by tasks on a Dask cluster."""
    from pktkit.analysis.inputs import resolve_inputs
    from pktkit.capture.dataset import DatasetCapture, write_dataset
    from pktkit.capture.read import ReadStats, warn_if_cut
    from pktkit.files import check_output_folder

    check_output_folder(args.out)
    captures = [DatasetCapture(i.path, i.node, i.label, dict(i.interfaces), i.interface)
                for i in resolve_inputs(args.captures)]
    stats: list[ReadStats]
    if not _scaled(args):
        stats = write_dataset(captures, args.out, ports)  # type: ignore[arg-type]
    else:
        from pktkit.capture.dataset import staged_dataset
        from pktkit.progress import ProgressBar
        from pktkit.scale.cluster import dask_client
        from pktkit.scale.decode import decode_into

        bar = ProgressBar(not args.quiet and sys.stderr.isatty())
        # the cluster inside the staging: stopped early, its workers are gone before the
        # staged folder is removed (none can write into it after)
        try:
            with staged_dataset(args.out) as folder, dask_client(
                    args.workers, args.scheduler, memory_limit=args.memory_limit,
                    announce=None if args.quiet else _announce) as client:
                stats = decode_into(
                    client, captures, folder, ports,  # type: ignore[arg-type]
                    progress=lambda done, total: bar(f"decode {done}/{total}", done / total))
        finally:
            bar.close()
    for one in stats:
        warn_if_cut(one)
    return stats


def _announce(line: str) -> None:
    print(f"pktkit: {line}", file=sys.stderr, flush=True)


def port(text: str) -> int | str:  # (argparse names it: "invalid port value")
    if text == "auto":
        return text
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(text)
    return port


def mtu(text: str) -> int:  # (argparse names it: "invalid mtu value")
    """An MTU in bytes: from 68 (the IPv4 minimum, RFC 791) to 65535."""
    value = int(text)
    if not MIN_MTU <= value <= MAX_MTU:
        raise ValueError(text)
    return value


def _vxlan_ports(given: list[int | str]) -> list[int] | str:
    """``--vxlan-port``: port numbers, or ``auto`` alone."""
    if "auto" not in given:
        return [int(p) for p in given]
    if len(given) > 1:
        raise UsageError("--vxlan-port auto finds every VXLAN and Geneve port; give it alone")
    return "auto"


def _bundled_captures() -> Path:
    """The reference captures/ folder of this checkout (or of the working directory)."""
    for folder in (Path(__file__).resolve().parents[1] / "captures", Path("captures")):
        if folder.is_dir():
            return folder
    raise UsageError("no CAPTURE given and no bundled captures/ folder found; pass capture "
                     "files or folders (or run `make captures`)")


def _analysis_lines(name: str, result: dict, out: Path) -> list[str]:
    from pktkit.capture.tunnel_ports import describe
    from pktkit.report.labels import clock_model_text
    from pktkit.report.present import plural

    corr, counts = result.get("correlation", {}), result.get("counts", {})
    lines = [f"{name}: {plural(counts.get('packets', 0), 'frame')} from "
             f"{plural(counts.get('captures', 0), 'capture')} on "
             f"{plural(len(corr.get('nodes', [])), 'node')}: "
             f"{plural(corr.get('packets', 0), 'packet')}, "
             f"{plural(counts.get('nat_flows') or 0, 'NAT flow')} → {out / 'index.html'}"]
    if "tunnel_ports" in result:
        lines.append("  " + describe({p["port"]: p["kind"] for p in result["tunnel_ports"]}))
    for row in corr.get("clock_offsets", []):
        if row["node"] == row["reference_node"]:
            continue
        if row["offset_ns"] is None:
            lines.append(f"  clock {clock_model_text(row)}, not corrected")
            continue
        applied = "corrected" if row["applied_ns"] else "not corrected"
        lines.append(f"  clock {clock_model_text(row)} against {row['reference_node']} "
                     f"({row['samples']} packets; {applied})")
    return lines


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json

    from pktkit.analysis.conntrack import conntrack_arg
    from pktkit.analysis.inputs import check_inputs
    from pktkit.analysis.metadata import read_metadata
    from pktkit.analysis.pipeline import STAGES, analyze, return_memory_eagerly
    from pktkit.files import check_output_folder, scratch_folder
    from pktkit.progress import terminal_bar
    from pktkit.report.folder import write_analysis, write_collection

    # Everything the user gave is checked before any work, so that a mistake costs nothing.
    notes: list[str] = []
    nodes = {}
    for text in args.node:
        name, sep, path = text.partition("=")
        if not (sep and name and path):
            raise UsageError(f"--node {text!r}: expected NAME=CAPTURE (e.g. --node "
                             "node-a=node-a-eth0.pcap)")
        nodes[path] = name
    single = bool(args.captures or nodes)
    if single:
        check_inputs(args.captures, nodes)
    elif args.conntrack:
        raise UsageError("--conntrack needs the captures it belongs to (CAPTURE or --node)")
    conntrack = [conntrack_arg(text) for text in args.conntrack]
    for _, path in conntrack:
        if not Path(path).is_file():
            raise UsageError(f"--conntrack {path}: no such file")
    if (args.k8s or args.docker) and not single:
        raise UsageError("--k8s and --docker need the captures they belong to (CAPTURE or "
                         "--node); the bundled folders hold their own")
    read_metadata(args.k8s, args.docker)  # a bad file fails before any capture is read
    window_ns = None if args.window is None else parse_duration("--window", args.window)
    check_output_folder(args.out)
    return_memory_eagerly()  # this process does nothing else
    bar = terminal_bar(not (args.quiet or args.json))
    options = {"conntrack": conntrack, "vxlan_ports": _vxlan_ports(args.vxlan_port),
               "k8s": args.k8s, "docker": args.docker,
               "underlay_mtu": args.underlay_mtu, "clock_correction": args.clock_correction}
    if window_ns is not None:
        options["window_ns"] = window_ns
    steps = len(STAGES) + 1  # + writing

    def tracker(label: str, base: float, share: float):
        return lambda stage, done, total: bar(f"{label}{stage}", base + share * done / steps)

    notes: list[str] = []
    scaled = _scaled(args)
    if scaled and not single:
        raise UsageError("--workers and --scheduler need the CAPTURE, BUNDLE or DATASET "
                         "paths to analyze")
    with _cut_warnings_as_lines():  # (their lines come after the bar is gone)
        try:
            if scaled:
                from pktkit.scale.analyze import analyze_on_cluster
                from pktkit.scale.cluster import dask_client

                bar("start the cluster", 0.0)
                # the cluster inside the scratch folder: closed before it is removed
                Path(args.out).absolute().parent.mkdir(parents=True, exist_ok=True)
                with scratch_folder(args.out) as scratch, dask_client(
                        args.workers, args.scheduler, memory_limit=args.memory_limit,
                        announce=None if args.quiet or args.json else _announce) as client:
                    output, notes = analyze_on_cluster(
                        client, args.captures, args.out, nodes=nodes, options=options,
                        scratch=scratch, progress=lambda stage, done, total: bar(
                            f"{stage} {done}/{total}" if stage == "decode" else stage,
                            done / total))
                results = {"analysis": output}
            elif single:
                found = analyze(args.captures, nodes=nodes, **options,
                                progress=tracker("", 0.0, 1.0))
                notes = found.notes
                bar("write", len(STAGES) / steps)
                output: dict = write_analysis(found, args.out)
                results = {"analysis": output}
            else:
                folders = [f for f in sorted(_bundled_captures().iterdir()) if f.is_dir()]
                share = 1.0 / max(1, len(folders))
                jobs = [(f.name, lambda f=f, i=i: analyze(
                            [f], **options, progress=tracker(f"{f.name}: ", i * share, share)))
                        for i, f in enumerate(folders)]
                output = results = write_collection(jobs, args.out)
        finally:
            bar.close()
    for note in notes:  # what a bundle lacked (e.g. interface names)
        print(f"pktkit: warning: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(output, indent=2, ensure_ascii=False))
    elif not args.quiet:
        for name, result in results.items():
            print("\n".join(_analysis_lines(name, result,
                                            args.out if single else args.out / name)))
        if not single:
            print(f"index of {len(results)} analyses: {args.out / 'index.html'}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from pktkit.collect import collect
    from pktkit.collect.run import summary_line

    info = collect(args.out, duration=args.duration, interfaces=args.interface or ["any"],
                   bpf=args.filter, snaplen=args.snaplen, netns=args.netns, node=args.node)
    if not args.quiet:
        print(summary_line(info, args.out))
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from pktkit.lab.netns import sweep_stale
    from pktkit.lab.run import dump_result, result_lines, run_lab
    from pktkit.lab.scenarios import SCENARIOS, list_scenarios

    if args.cleanup:
        removed = sweep_stale()
        print(f"removed {len(removed)} stale lab namespaces"
              + (f": {', '.join(removed)}" if removed else ""))
        return 0
    if args.list and args.scenario:
        if args.scenario not in SCENARIOS:
            raise UsageError(f"unknown lab scenario {args.scenario!r}; choose one of: "
                             f"{', '.join(SCENARIOS)}")
        for spec in fields(SCENARIOS[args.scenario].Params):
            print(f"{spec.name:<18} {spec.default!s:<16} {spec.metadata.get('help', '')}")
        return 0
    if args.list:
        for name, description in list_scenarios():
            print(f"{name:<15} {description}")
        return 0
    overrides = dict(_key_value("--set", item) for item in args.set)
    if args.hold is not None:
        return _lab_hold(args, overrides)
    if not args.scenario or not args.out:
        raise UsageError("lab needs SCENARIO and --out DIR (or --list, --hold SECONDS, "
                         "--cleanup)")
    result = run_lab(args.scenario, args.out, seed=args.seed, impair=args.impair,
                     flows=args.flows, overrides=overrides, gso=not args.no_gso)
    if args.json:
        print(dump_result(result))
    elif not args.quiet:
        print("\n".join(result_lines(result)))
    return 0


def _lab_hold(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    """``--hold``: the lab up for SECONDS, traffic every second, namespaces printed."""
    import tempfile

    from pktkit.lab.stage import hold, staged

    if not args.scenario:
        raise UsageError("--hold needs SCENARIO")
    if not 0 < args.hold <= 3600:
        raise UsageError(f"--hold {args.hold:g}: give 0 < SECONDS <= 3600")
    with tempfile.TemporaryDirectory(prefix="pktkit-lab-") as logs, staged(
            args.scenario, seed=args.seed, impair=args.impair, flows=args.flows,
            overrides=overrides, gso=not args.no_gso, log_dir=Path(logs)) as lab:
        for node in lab.setup.nodes:
            print(f"{node}: --netns {lab.netns(node)}", flush=True)
        rounds = hold(lab, args.hold)
    if not args.quiet:
        print(f"{args.scenario}: {rounds} rounds of traffic in {args.hold:g} s; removed")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from pktkit.craft.summary import summarize_dirs

    print(summarize_dirs([Path(p) for p in args.dirs]))
    return 0


def workers(text: str) -> int | str:  # (argparse names it: "invalid workers value")
    """``--workers``: N >= 1 or ``auto``."""
    from pktkit.scale.cluster import workers_arg

    return workers_arg(text)


def memory_limit(text: str) -> int | str:  # (argparse: "invalid memory_limit value")
    """``--memory-limit``: a size of at least 1.5 GB, or ``auto``."""
    from pktkit.scale.cluster import memory_limit_arg

    return memory_limit_arg(text)


def _add_scale_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=workers, default=1, metavar="N|auto",
                        help=f"{what} on a local Dask cluster of N worker processes (auto: one "
                             "per core; default 1: in this process, no cluster)")
    parser.add_argument("--memory-limit", type=memory_limit, default="auto", metavar="SIZE",
                        help="with --workers N: each worker's memory, such as 2GB (at least "
                             "1.5GB); past 60-70%% of it a worker spills its parts to disk "
                             "(default auto: the machine's memory shared out)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help=f"{what} on the existing Dask cluster at ADDRESS (tcp://HOST:PORT); "
                             "its workers must see the inputs and the output at the same paths")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pktkit", description="Craft and analyze container-network captures.")
    parser.add_argument("--version", action="version", version=f"pktkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = sub.add_parser("generate", help="write a scenario's captures and truth.json",
                         description="Write what tcpdump would record at every capture point "
                                     "of a scenario, plus truth.json.")
    gen.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    gen.add_argument("--list", action="store_true",
                     help="list the scenarios (with SCENARIO: its --set parameters) and exit")
    gen.add_argument("--out", type=Path, help="output directory (created if missing)")
    gen.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    gen.add_argument("--format", choices=["pcap", "pcapng"], default="pcap",
                     help="capture file format (default pcap; pcapng names its interfaces)")
    gen.add_argument("--linktype", choices=["ether", "sll2"], default="ether",
                     help="ether: one file per interface; sll2: one file per node, "
                          "as tcpdump -i any")
    gen.add_argument("--flows", type=int, help="number of flows (default: per scenario)")
    gen.add_argument("--duration", type=float, help="seconds over which flows start")
    gen.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                     help="offset of the second node's clock (multi-node scenarios)")
    gen.add_argument("--clock-drift", type=float, default=0.0, metavar="PPM",
                     help="drift of the second node's clock, parts per million (multi-node "
                          "scenarios; e.g. 80: 80 µs fast per second)")
    gen.add_argument("--impair", action="append", default=[], metavar="KEY=VALUE",
                     help="stage the underlay's trouble (repeatable): queue=DURATION (queueing "
                          "bursts up to it, e.g. 20ms), loss=FRACTION (TCP retransmits), "
                          "reorder=FRACTION, duplicate=FRACTION (a frame recorded twice)")
    gen.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a scenario parameter (repeatable)")
    gen.add_argument("--nodes", type=int, metavar="N",
                     help="N nodes instead of two (overlay and flat-routed scenarios): pods on "
                          "each, flows between random pairs; every node but the first gets "
                          "its own clock, drawn within ±--clock-offset and ±--clock-drift")
    gen.add_argument("-q", "--quiet", action="store_true")
    gen.set_defaults(func=_cmd_generate)

    pkts = sub.add_parser("packets", help="decode captures into the per-packet table",
                          description="Decode captures into one row per packet (columns: "
                                      "pktkit.capture.schema): write it as CSV or Parquet, or "
                                      "print a summary.")
    pkts.add_argument("captures", nargs="+", metavar="CAPTURE",
                      help="pcap/pcapng files (gzip is fine)")
    pkts.add_argument("-o", "--out", metavar="OUT",
                      help="write the table to OUT.csv or OUT.parquet, or as a dataset to "
                           "OUT/ (a path ending in / or an existing folder: Parquet parts "
                           "under node=NODE/capture=CAPTURE/, see README) (default: print a "
                           "summary)")
    pkts.add_argument("--vxlan-port", type=port, action="append", default=[], metavar="N",
                      help="also decode UDP port N as VXLAN (4789 and 8472 always are; "
                           "repeatable; a port of another tunnel, 6081 say, is refused); "
                           "'auto': find the ports carrying VXLAN or Geneve in the packets")
    _add_scale_arguments(pkts, "decode the captures (one task per capture, or per chunk "
                               "of a large one) into the dataset -o DIR/")
    pkts.add_argument("-q", "--quiet", action="store_true")
    pkts.set_defaults(func=_cmd_packets)

    ana = sub.add_parser(
        "analyze", help="correlate captures across capture points and nodes; write a report",
        description="Give every packet one packet_id across all its sightings (veth, bridge, "
                    "tunnel, eth0, other nodes), order them into hops, estimate the nodes' "
                    "clock offsets, measure hop/node/NAT/handshake latency, find NAT flows, "
                    "and write DIR/index.html, summary.md, summary.json, every table as CSV "
                    "and Parquet (packets.parquet, or with --workers the dataset packets/; "
                    "hops, latency, clock_offsets, nat_flows, ...) and the plots. Addresses "
                    "are named (pods, Services, nodes, "
                    "containers) from --k8s/--docker metadata. With no CAPTURE: every folder "
                    "of the bundled captures/, each into DIR/FOLDER/, with DIR/index.html "
                    "listing them.")
    ana.add_argument("captures", nargs="*", metavar="CAPTURE|BUNDLE",
                     help="capture files or folders of them (capture-set.json beside them "
                          "names nodes and interfaces), node bundles (pktkit collect folders "
                          "or .tar.gz, Microsoft Retina capture tarballs: node, interface "
                          "names, addresses and conntrack dumps from the bundle), or folders "
                          "of bundles")
    ana.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                     help="output folder (created; files in it are replaced)")
    ana.add_argument("--node", action="append", default=[], metavar="NAME=CAPTURE",
                     help="CAPTURE (or BUNDLE) was taken on node NAME (repeatable; default: "
                          "the bundle's node, capture-set.json, else the file name)")
    ana.add_argument("--conntrack", action="append", default=[], metavar="[NAME=]FILE",
                     help="a conntrack dump (conntrack -L, /proc/net/nf_conntrack) of node "
                          "NAME to confirm the NAT flows (repeatable)")
    ana.add_argument("--k8s", action="append", default=[], metavar="FILE",
                     help="the output of `kubectl get pods,services,endpointslices,nodes -A -o "
                          "json` (a List; several snapshots may be concatenated) to name pods, "
                          "Services and nodes (repeatable; kubectl.json beside the captures "
                          "is read too)")
    ana.add_argument("--docker", action="append", default=[], metavar="FILE",
                     help="the output of `docker inspect CONTAINER...` and `docker network "
                          "inspect NETWORK...` to name containers (repeatable; docker.json "
                          "beside the captures is read too)")
    ana.add_argument("--underlay-mtu", type=mtu, default=1500, metavar="BYTES",
                     help=f"MTU of the node network, {MIN_MTU} to {MAX_MTU} (default 1500)")
    ana.add_argument("--vxlan-port", type=port, action="append", default=[], metavar="N",
                     help="also decode UDP port N as VXLAN (repeatable); 'auto': find the "
                          "ports carrying VXLAN or Geneve in the packets")
    ana.add_argument("--window", default=None, metavar="DURATION",
                     help="sightings of one packet this far apart at most (default 1s): within "
                          "it a packet is matched however long a queue held it")
    ana.add_argument("--clock-correction", choices=["auto", "always", "never"], default="auto",
                     help="subtract the estimated clock offsets: when significant (auto, the "
                          "default), always, or never")
    _add_scale_arguments(ana, "run the analysis")
    ana.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    ana.add_argument("-q", "--quiet", action="store_true")
    ana.set_defaults(func=_cmd_analyze)

    col = sub.add_parser(
        "collect", help="record a node's traffic and state into a bundle (root)",
        description="Run as root on a node (or in a network namespace with --netns): record "
                    "tcpdump -i any (SLL2, nanosecond timestamps) and every named interface, "
                    "snapshot conntrack, links, addresses, routes, neighbours, iptables (nat, "
                    "filter, mangle), the bridge fdb, the host name and the clock at the start "
                    "and the end, and write a bundle folder (or BUNDLE.tar.gz) with "
                    "bundle.json. Ctrl-C or SIGTERM ends the capture and still writes a "
                    "complete bundle (a second one abandons it). pktkit analyze reads it.")
    col.add_argument("--out", type=Path, required=True, metavar="BUNDLE",
                     help="bundle folder (new or empty), or a file ending in .tar.gz")
    col.add_argument("--duration", type=float, metavar="SECONDS",
                     help="stop after SECONDS (default: at Ctrl-C / SIGTERM)")
    col.add_argument("--interface", "-i", action="extend", nargs="+", default=[],
                     metavar="any|IFACE",
                     help="also capture these interfaces, one file each (any is always "
                          "captured)")
    col.add_argument("--filter", metavar="BPF", help="tcpdump filter expression")
    col.add_argument("--snaplen", type=int, default=262144, metavar="N",
                     help="bytes kept per packet (default 262144, tcpdump's)")
    col.add_argument("--netns", metavar="NAME",
                     help="capture inside this network namespace (ip netns list)")
    col.add_argument("--node", metavar="NAME",
                     help="node name in bundle.json and file names (default: --netns, else "
                          "the host name)")
    col.add_argument("-q", "--quiet", action="store_true")
    col.set_defaults(func=_cmd_collect)

    lab = sub.add_parser(
        "lab", help="stage a scenario with the real kernel (root) and write captures + truth",
        description="As root: build SCENARIO from Linux network namespaces (veth, bridges, "
                    "VXLAN, iptables NAT with conntrack), send real traffic whose payloads "
                    "are marked, record every node with pktkit collect, remove everything, and "
                    "write each node's bundle with a truth.json in the generator's schema "
                    "(NAT flows from the kernel's conntrack). Everything is named "
                    "pktkit-lab-* and removed on exit, error, Ctrl-C or SIGTERM; nothing is "
                    "created in the root namespace. pktkit analyze DIR reads the result.")
    lab.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    lab.add_argument("--out", type=Path, metavar="DIR", help="output folder (new or empty)")
    lab.add_argument("--seed", type=int, default=1,
                     help="seed of ports, identifiers and sizes (default 1)")
    lab.add_argument("--impair", action="append", default=[], metavar="KEY=VALUE",
                     help="queue=RATE (tc tbf on the underlay switch port towards the target "
                          "node; add --no-gso so that tbf does not cut super-frames), "
                          "loss=PERCENT (iptables statistic: every N-th frame to it dropped), "
                          "node=NAME (repeatable or comma-separated)")
    lab.add_argument("--flows", type=int, help="number of flows (default: per scenario)")
    lab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="scenario parameter (see --list SCENARIO)")
    lab.add_argument("--no-gso", action="store_true",
                     help="segmentation offload off on every device: MSS-sized TCP segments "
                          "instead of the veths' super-frames")
    lab.add_argument("--list", action="store_true",
                     help="list the scenarios (with SCENARIO: its --set parameters)")
    lab.add_argument("--hold", type=float, metavar="SECONDS",
                     help="no capture: keep the lab up for SECONDS with traffic every second "
                          "(prints each node's namespace for pktkit collect --netns)")
    lab.add_argument("--cleanup", action="store_true",
                     help="remove the namespaces of lab runs that were SIGKILLed")
    lab.add_argument("--json", action="store_true", help="print the result as JSON")
    lab.add_argument("-q", "--quiet", action="store_true")
    lab.set_defaults(func=_cmd_lab)

    summ = sub.add_parser("summary", help="per-capture summary of generated capture folders",
                          description="Per capture file of folders written by pktkit "
                                      "generate: frames, capture points, encapsulations and "
                                      "VNIs, NAT flows, as truth.json records them.")
    summ.add_argument("dirs", nargs="+", help="folders holding captures and truth.json")
    summ.set_defaults(func=_cmd_summary)
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread like KeyboardInterrupt, so that
    every ``finally`` and ``except BaseException`` removes what the verb was writing."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb with ``argv`` (default: the command line) and return its exit code; the
    signal handlers it sets for the run are restored after it (it is called from tests and
    scripts as well as by :func:`run`)."""
    return _main(argv, whole_process=False)


def run() -> NoReturn:
    """The ``pktkit`` program: the verb, then exit with its code."""
    # Registered first, this exit hook runs after every other one: from then on the stop
    # signals are held, and one still pending ends with the process. Python's finalization
    # gives them their default action back before the process ends, so a SIGTERM in that last
    # window killed a finished run (-15, not its code: seen in CI).
    atexit.register(_hold_stop_signals)
    sys.exit(_main(None, whole_process=True))


def _hold_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def _main(argv: Sequence[str] | None, whole_process: bool) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Python's default for SIGTERM and SIGHUP ends the process on the spot, leaving temp files
    # behind; as an exception they unwind through the writers' cleanup, as Ctrl-C does.
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    code = 1  # (an exception no handler below takes: a traceback, exit 1)
    try:
        code = int(args.func(args))
    except PktkitError as exc:
        print(f"pktkit: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("pktkit: interrupted", file=sys.stderr)
        code = 128 + signal.SIGINT
    except Terminated as exc:
        print(f"pktkit: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        code = 128 + exc.signum
    except BrokenPipeError:
        code = 0
    finally:
        if whole_process:
            # The verb is over, its output whole or removed: a stop signal from now on ends
            # the process with this code, not killed by the signal (Python's default, as
            # though the run had been cut short) nor with a KeyboardInterrupt traceback from
            # the interpreter's shutdown.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _exit_with(code))
        else:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code


def _exit_with(code: int) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return handler


if __name__ == "__main__":
    run()
