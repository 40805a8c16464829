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
    from pktkit.generate import generate, list_scenarios, make_scenario, scenario_parameters

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
                             clock_offset_s=args.clock_offset)
    result = generate(scenario, args.out, fmt=args.format, linktype=args.linktype)
    if not args.quiet:
        print(f"{scenario.name}: {result.packets} frames in {len(result.files)} files "
              f"under {result.out_dir}/ (+ truth.json)")
        for name, count in result.per_file.items():
            print(f"  {name:<28} {count:>8} frames")
    return 0


def _cmd_packets(args: argparse.Namespace) -> int:
    import warnings

    from pktkit.read import CaptureCutWarning

    # Cut captures: every whole packet is kept; each warning becomes one line on stderr (also
    # when a later file turns out not to be a capture).
    text: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureCutWarning)
        try:
            if args.out:
                from pktkit.columns import write_packets  # no pandas import for Parquet

                stats = write_packets(args.captures, args.out, vxlan_ports=args.vxlan_port)
            else:
                from pktkit.table import read_packets, summarize

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


def _cmd_summary(args: argparse.Namespace) -> int:
    from pktkit.summary import summarize_dirs

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
    gen.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a scenario parameter (repeatable)")
    gen.add_argument("-q", "--quiet", action="store_true")
    gen.set_defaults(func=_cmd_generate)

    pkts = sub.add_parser("packets", help="decode captures into the per-packet table",
                          description="Decode captures into one row per packet (see "
                                      "pktkit.table): write it as CSV or Parquet, or print a "
                                      "summary.")
    pkts.add_argument("captures", nargs="+", metavar="CAPTURE",
                      help="pcap/pcapng files (gzip is fine)")
    pkts.add_argument("-o", "--out", type=Path, metavar="OUT",
                      help="write the table to OUT.csv or OUT.parquet (default: print a summary)")
    pkts.add_argument("--vxlan-port", type=port, action="append", default=[], metavar="N",
                      help="also decode UDP port N as VXLAN (4789 and 8472 always are; "
                           "repeatable)")
    pkts.add_argument("-q", "--quiet", action="store_true")
    pkts.set_defaults(func=_cmd_packets)

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
