"""The ``pktkit`` command line. Each verb parses its arguments and calls the library.

Errors the user can cause are :class:`~pktkit.errors.PktkitError`: one line on stderr, exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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
                             impairments=args.impair)
    result = generate(scenario, args.out, fmt=args.format, linktype=args.linktype)
    if not args.quiet:
        print(f"{scenario.name}: {result.packets} frames in {len(result.files)} files "
              f"under {result.out_dir}/ (+ truth.json)")
        for name, count in result.per_file.items():
            print(f"  {name:<28} {count:>8} frames")
    return 0


def _cmd_packets(args: argparse.Namespace) -> int:
    import warnings

    from pktkit.capture.read import CaptureCutWarning

    # Cut captures: every whole packet is kept; each warning becomes one line on stderr (also
    # when a later file turns out not to be a capture).
    text: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureCutWarning)
        try:
            if args.out:
                from pktkit.capture.output import write_packets  # no pandas import for Parquet

                stats = write_packets(args.captures, args.out, vxlan_ports=args.vxlan_port)
            else:
                from pktkit.capture.table import read_packets, summarize

                text = summarize(read_packets(args.captures, vxlan_ports=args.vxlan_port))
        finally:
            for warning in caught:
                if issubclass(warning.category, CaptureCutWarning):
                    print(f"pktkit: warning: {warning.message}", file=sys.stderr)
    if text is not None:
        print(text)
    elif not args.quiet:
        total = sum(s.frames for s in stats)
        print(f"{total} packets from {len(stats)} captures written to {args.out}")
    return 0


def port(text: str) -> int:  # (argparse names it: "invalid port value")
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(text)
    return port


def _bundled_captures() -> Path:
    """The reference captures/ folder of this checkout (or of the working directory)."""
    for folder in (Path(__file__).resolve().parents[1] / "captures", Path("captures")):
        if folder.is_dir():
            return folder
    raise UsageError("no CAPTURE given and no bundled captures/ folder found; pass capture "
                     "files or folders (or run `make captures`)")


def _analysis_lines(name: str, result: dict, out: Path) -> list[str]:
    from pktkit.report.labels import clock_model_text

    corr, counts = result.get("correlation", {}), result.get("counts", {})
    nodes, captures = len(corr.get("nodes", [])), counts.get("captures", 0)
    lines = [f"{name}: {counts.get('packets', 0)} frames from {captures} "
             f"capture{'s' * (captures != 1)} on {nodes} node{'s' * (nodes != 1)}: "
             f"{corr.get('packets', 0)} "
             f"packets, {counts.get('nat_flows') or 0} NAT flows → {out / 'index.html'}"]
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
    from pktkit.analysis.inputs import resolve_inputs
    from pktkit.analysis.pipeline import STAGES, analyze, return_memory_eagerly
    from pktkit.files import check_output_folder
    from pktkit.progress import terminal_bar
    from pktkit.report.folder import write_analysis, write_collection

    # Everything the user gave is checked before any work, so that a mistake costs nothing.
    nodes = {}
    for text in args.node:
        name, sep, path = text.partition("=")
        if not (sep and name and path):
            raise UsageError(f"--node {text!r}: expected NAME=CAPTURE (e.g. --node "
                             "node-a=node-a-eth0.pcap)")
        nodes[path] = name
    single = bool(args.captures or nodes)
    if single:
        resolve_inputs(args.captures, nodes)
    elif args.conntrack:
        raise UsageError("--conntrack needs the captures it belongs to (CAPTURE or --node)")
    conntrack = [conntrack_arg(text) for text in args.conntrack]
    for _, path in conntrack:
        if not Path(path).is_file():
            raise UsageError(f"--conntrack {path}: no such file")
    window_ns = None if args.window is None else parse_duration("--window", args.window)
    check_output_folder(args.out)
    return_memory_eagerly()  # this process does nothing else
    bar = terminal_bar(not (args.quiet or args.json))
    options = {"conntrack": conntrack, "vxlan_ports": args.vxlan_port,
               "underlay_mtu": args.underlay_mtu, "clock_correction": args.clock_correction}
    if window_ns is not None:
        options["window_ns"] = window_ns
    steps = len(STAGES) + 1  # + writing

    def tracker(label: str, base: float, share: float):
        return lambda stage, done, total: bar(f"{label}{stage}", base + share * done / steps)

    try:
        if single:
            found = analyze(args.captures, nodes=nodes, **options,
                            progress=tracker("", 0.0, 1.0))
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
    if args.json:
        print(json.dumps(output, indent=2, ensure_ascii=False))
    elif not args.quiet:
        for name, result in results.items():
            print("\n".join(_analysis_lines(name, result,
                                            args.out if single else args.out / name)))
        if not single:
            print(f"index of {len(results)} analyses: {args.out / 'index.html'}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from pktkit.craft.summary import summarize_dirs

    print(summarize_dirs([Path(p) for p in args.dirs]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pktkit", description="Craft and analyze container-network captures.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = sub.add_parser("generate", help="write a scenario's captures and truth.json",
                         description="Write what tcpdump would record at every capture point "
                                     "of a scenario, plus truth.json.")
    gen.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    gen.add_argument("--list", action="store_true",
                     help="list the scenarios (with SCENARIO: its --set parameters) and exit")
    gen.add_argument("--out", type=Path, help="output directory (created if missing)")
    gen.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    gen.add_argument("--format", choices=["pcap", "pcapng"], default="pcap")
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
    gen.add_argument("-q", "--quiet", action="store_true")
    gen.set_defaults(func=_cmd_generate)

    pkts = sub.add_parser("packets", help="decode captures into the per-packet table",
                          description="Decode captures into one row per packet (columns: "
                                      "pktkit.capture.schema): write it as CSV or Parquet, or "
                                      "print a summary.")
    pkts.add_argument("captures", nargs="+", metavar="CAPTURE",
                      help="pcap/pcapng files (gzip is fine)")
    pkts.add_argument("-o", "--out", type=Path, metavar="OUT",
                      help="write the table to OUT.csv or OUT.parquet (default: print a summary)")
    pkts.add_argument("--vxlan-port", type=port, action="append", default=[], metavar="N",
                      help="also decode UDP port N as VXLAN (4789 and 8472 always are; "
                           "repeatable)")
    pkts.add_argument("-q", "--quiet", action="store_true")
    pkts.set_defaults(func=_cmd_packets)

    ana = sub.add_parser(
        "analyze", help="correlate captures across capture points and nodes; write a report",
        description="Give every packet one packet_id across all its sightings (veth, bridge, "
                    "tunnel, eth0, other nodes), order them into hops, estimate the nodes' "
                    "clock offsets, measure hop/node/NAT/handshake latency, find NAT flows, "
                    "and write DIR/index.html, summary.md, summary.json, every table as CSV "
                    "and Parquet (packets.parquet, hops, latency, clock_offsets, nat_flows, "
                    "...) and the plots. With no CAPTURE: every folder of the bundled "
                    "captures/, each into DIR/FOLDER/, with DIR/index.html listing them.")
    ana.add_argument("captures", nargs="*", metavar="CAPTURE",
                     help="capture files or folders of them (capture-set.json beside them "
                          "names nodes and interfaces)")
    ana.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                     help="output folder (created; files in it are replaced)")
    ana.add_argument("--node", action="append", default=[], metavar="NAME=CAPTURE",
                     help="CAPTURE was taken on node NAME (repeatable; default: "
                          "capture-set.json, else the file name)")
    ana.add_argument("--conntrack", action="append", default=[], metavar="[NAME=]FILE",
                     help="a conntrack dump (conntrack -L, /proc/net/nf_conntrack) of node "
                          "NAME to confirm the NAT flows (repeatable)")
    ana.add_argument("--underlay-mtu", type=int, default=1500, metavar="BYTES",
                     help="MTU of the node network (default 1500)")
    ana.add_argument("--vxlan-port", type=port, action="append", default=[], metavar="N",
                     help="also decode UDP port N as VXLAN (repeatable)")
    ana.add_argument("--window", default=None, metavar="DURATION",
                     help="sightings of one packet this far apart at most (default 1s): within "
                          "it a packet is matched however long a queue held it")
    ana.add_argument("--clock-correction", choices=["auto", "always", "never"], default="auto",
                     help="subtract the estimated clock offsets: when significant (auto, the "
                          "default), always, or never")
    ana.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    ana.add_argument("-q", "--quiet", action="store_true")
    ana.set_defaults(func=_cmd_analyze)

    summ = sub.add_parser("summary", help="per-capture summary of generated capture folders")
    summ.add_argument("dirs", nargs="+", help="folders holding captures and truth.json")
    summ.set_defaults(func=_cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except PktkitError as exc:
        print(f"pktkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pktkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
