"""``make bench``: pktkit's per-packet table against tshark and Scapy, whole processes.

1. Builds ``bench/out/mixed-1M.pcap`` (bench/make_capture.py) and, from it, the 4M-packet copy
   ``mixed-4M.pcap``, unless they exist; reads each once so that every tool finds it in the
   page cache.
2. Times, one after another in this run, each as a whole process (interpreter start and
   imports included) with its peak resident memory (``wait4`` rusage: the largest process of
   the tree):

   - ``pktkit packets mixed-1M.pcap -o out.parquet`` (three runs; the median counts);
   - tshark extracting the same columns, read into a pandas DataFrame (:data:`TSHARK`; its
     ratio is the yardstick);
   - Scapy on the first ``--scapy-packets`` packets (PcapReader, the same fields, a
     DataFrame), extrapolated per packet from its decoding time (its ~0.2 s import excluded);
   - ``pktkit packets mixed-4M.pcap`` and ``mixed-10M.pcap -o out.parquet``: the rate of a
     whole process on 4M packets; memory must stay flat.
3. Prints packets/s, the ratio to tshark and peak RSS, and checks the targets (issue 14: at
   least 40 times lean tshark's packets/s on 1M; at least 1M packets/s on 4M; peak memory flat
   and under 300 MB at 1M and 10M).

Usage: python bench/run.py [--packets N] [--scapy-packets N] [--rebuild]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PYTHON = sys.executable
RATIO_TARGET = 40  # pktkit's packets/s over lean tshark's, on the 1M capture
RATE_TARGET = 1_000_000  # packets/s on the 4M capture, the whole process
MEMORY_TARGET_MB = 300  # peak RSS at 1M and 10M, about equal (flat)
SIZES = (4, 10)  # the larger captures: copies of the 1M one

# tshark, the leanest correct way: no name resolution, VXLAN also on 8472 (as pktkit), only the
# fields below, no reassembly or TCP analysis, and every protocol dissector off except the ones
# these fields need (a temporary profile's disabled_protos: tshark 4.0's --disable-protocol
# takes one name at a time and has no "ALL"). Same rows and values as tshark's defaults here.
TSHARK_FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "eth.type", "vxlan.vni",
    "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id", "ip.flags.mf", "ip.frag_offset",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "tcp.srcport", "tcp.dstport", "tcp.flags",
    "udp.srcport", "udp.dstport", "icmp.type", "icmp.code",
]
TSHARK_KEEP = {"frame", "eth", "ethertype", "vlan", "ip", "ipv6", "tcp", "udp", "icmp", "icmpv6",
               "vxlan"}
TSHARK_PREFS = ["tcp.desegment_tcp_streams:FALSE", "tcp.analyze_sequence_numbers:FALSE",
                "tcp.calculate_timestamps:FALSE", "tcp.track_bytes_in_flight:FALSE",
                "udp.calculate_timestamps:FALSE", "ip.defragment:FALSE", "ipv6.defragment:FALSE"]


def tshark_command(capture: Path) -> list[str]:
    command = ["tshark", "-n", "-r", str(capture), "-d", "udp.port==8472,vxlan"]
    for pref in TSHARK_PREFS:
        command += ["-o", pref]
    command += ["-T", "fields"]
    for field in TSHARK_FIELDS:
        command += ["-e", field]
    return command


@dataclass
class Run:
    tool: str
    packets: int
    seconds: float
    peak_mb: float
    note: str = ""
    cpu: float = 0.0  # user + system seconds of the whole process tree

    @property
    def pps(self) -> float:
        return self.packets / self.seconds


def measured(command: list[str], env: dict[str, str] | None = None
             ) -> tuple[float, float, str, float]:
    """Run a whole process: (wall seconds, peak RSS in MB, stdout, CPU seconds). The peak and
    the CPU time (user + system, the process and its waited-for children) come from
    ``wait4``; on a machine shared with other work, CPU time is the steadier figure."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            sys.exit(f"bench: {' '.join(command[:4])} ... failed ({process.returncode}):\n"
                     f"{err.read()}")
        return wall, usage.ru_maxrss / 1024, out.read(), usage.ru_utime + usage.ru_stime


def build_captures(packets: int, rebuild: bool) -> tuple[Path, list[Path]]:
    OUT.mkdir(parents=True, exist_ok=True)
    small = OUT / f"mixed-{_count(packets)}.pcap"
    maker = [PYTHON, str(HERE / "make_capture.py")]
    script = HERE / "make_capture.py"
    # a capture older than the script that makes it is stale (and so are its copies)
    rebuild |= small.exists() and small.stat().st_mtime < script.stat().st_mtime
    if rebuild or not small.exists():
        subprocess.run([*maker, str(small), "--packets", str(packets)], check=True)
    larger = []
    for times in SIZES:
        large = OUT / f"mixed-{_count(times * packets)}.pcap"
        if rebuild or not large.exists():
            subprocess.run([*maker, str(large), "--repeat", str(times), "--source", str(small)],
                           check=True)
        larger.append(large)
    return small, larger


def warm(path: Path) -> None:
    """Read a capture once, so that every tool meets it in the page cache, not on disk."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def _count(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else str(n)


def pktkit_command(capture: Path, out: Path) -> list[str]:
    script = Path(PYTHON).with_name("pktkit")
    launcher = [str(script)] if script.exists() else [PYTHON, "-m", "pktkit.cli"]
    return [*launcher, "packets", str(capture), "-o", str(out), "-q"]


def run_pktkit(capture: Path, packets: int, repeats: int) -> Run:
    out = OUT / "out.parquet"
    runs = [measured(pktkit_command(capture, out)) for _ in range(repeats)]
    rows = _parquet_rows(out)
    if rows != packets:
        sys.exit(f"bench: pktkit wrote {rows} rows for {packets} packets")
    walls = [wall for wall, _, _, _ in runs]
    note = "runs " + ", ".join(f"{w:.2f}" for w in walls) + " s" if repeats > 1 else ""
    return Run("pktkit packets -o .parquet", packets, statistics.median(walls),
               max(rss for _, rss, _, _ in runs), note,
               statistics.median(cpu for _, _, _, cpu in runs))


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def run_tshark(capture: Path, packets: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="pktkit-bench-tshark-") as profile:
        listed = subprocess.run(["tshark", "-G", "protocols"], capture_output=True, text=True,
                                check=True).stdout
        names = [line.split("\t")[2] for line in listed.splitlines() if line.count("\t") >= 2]
        disabled = [n for n in names if n not in TSHARK_KEEP and not n.startswith("_ws.")]
        Path(profile, "disabled_protos").write_text("\n".join(disabled) + "\n")
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=profile)
        wall, rss, out, cpu = measured([PYTHON, __file__, "--worker", "tshark", str(capture)],
                                       env)
    rows, vnis = (int(x) for x in out.split())
    if rows != packets or not vnis:
        sys.exit(f"bench: tshark gave {rows} rows ({vnis} with a VNI) for {packets} packets")
    return Run("tshark -T fields → pandas", packets, wall, rss, cpu=cpu)


def run_scapy(capture: Path, subset: int) -> Run:
    wall, rss, out, _ = measured([PYTHON, __file__, "--worker", "scapy", str(capture),
                                  str(subset)])
    rows, import_s, decode_s = out.split()
    packets = int(rows)
    return Run("Scapy PcapReader → pandas", packets, float(decode_s), rss,
               f"first {packets} packets; whole process {wall:.1f} s incl. {float(import_s):.1f} s "
               "import; per-packet rate of the decoding")


# -- workers (run as their own processes) ------------------------------------------------------


def tshark_worker(capture: str) -> None:
    import pandas as pd

    process = subprocess.Popen(tshark_command(Path(capture)), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    df = pd.read_csv(process.stdout, sep="\t", header=None, names=TSHARK_FIELDS,
                     low_memory=False)
    if process.wait():
        sys.exit(f"tshark failed ({process.returncode})")
    print(len(df), int(df["vxlan.vni"].notna().sum()))


def scapy_worker(capture: str, subset: int) -> None:
    started = time.perf_counter()
    import pandas as pd
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import PcapReader

    imported = time.perf_counter()
    rows = []
    with PcapReader(capture) as reader:
        for number, pkt in enumerate(reader, 1):
            vni = outer_src = outer_dst = outer_sport = outer_dport = None
            inner = pkt
            if VXLAN in pkt:  # the same split as pktkit: outer header, then the inner packet
                outer_ip, outer_udp = pkt[IP], pkt[UDP]
                outer_src, outer_dst = outer_ip.src, outer_ip.dst
                outer_sport, outer_dport = outer_udp.sport, outer_udp.dport
                vni = pkt[VXLAN].vni
                inner = pkt[VXLAN].payload
            ip, icmp = inner.getlayer(IP), inner.getlayer(ICMP)
            l4 = inner.getlayer(TCP) or inner.getlayer(UDP)
            rows.append((
                number, int(pkt.time * 1_000_000_000), pkt.wirelen or len(pkt), len(pkt),
                pkt[Ether].type, vni, outer_src, outer_dst, outer_sport, outer_dport,
                ip and ip.src, ip and ip.dst, ip and ip.proto, ip and ip.ttl, ip and ip.id,
                l4 and l4.sport, l4 and l4.dport, int(pkt[TCP].flags) if TCP in inner else None,
                icmp and icmp.type, icmp and icmp.code,
            ))
            if number == subset:
                break
    df = pd.DataFrame(rows, columns=[
        "frame", "ts_ns", "wire_len", "cap_len", "ethertype", "vni", "outer_src", "outer_dst",
        "outer_sport", "outer_dport", "src", "dst", "proto", "ttl", "ip_id", "sport", "dport",
        "tcp_flags", "icmp_type", "icmp_code"])
    print(len(df), imported - started, time.perf_counter() - imported)


def floors_worker(capture: str, table: str) -> None:
    """CPU seconds of the parts no pktkit run can skip, each alone in this process: Parquet
    encoding of the 1M table (the writer's settings: one thread writes one file), the checksum
    arithmetic over every byte of the capture, the record walk."""
    import mmap

    import numpy as np
    import pyarrow.parquet as pq

    from pktkit.capture import checksums, output
    from pktkit.capture.formats import PCAP_MAGICS
    from pktkit.capture.walk import pcap_walk

    arrow = pq.read_table(table, schema=None)
    started = time.process_time()
    with tempfile.TemporaryDirectory(dir=OUT) as scratch, pq.ParquetWriter(
            Path(scratch) / "floor.parquet", arrow.schema,
            use_dictionary=output._DICTIONARY_COLUMNS, column_encoding=output._SPLIT_COLUMNS,
            write_statistics=output._STATISTICS_COLUMNS) as writer:
        for start in range(0, arrow.num_rows, output.ROW_GROUP_ROWS):
            writer.write_table(arrow.slice(start, output.ROW_GROUP_ROWS))
    parquet = time.process_time() - started
    del arrow
    with open(capture, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mapped, np.uint8)
    started = time.process_time()
    step = 1 << 24
    for at in range(24, len(data), step):  # (mapping the pages counts: every run maps them)
        checksums.region_sums(data, np.array([at]), np.array([min(step, len(data) - at)]))
    summed = time.process_time() - started
    order, ticks = PCAP_MAGICS[mapped[:4]]
    walk = pcap_walk(data, order, ticks, 262144, mapped)
    started = time.process_time()
    pos = 24
    while len(offsets := walk.walk(pos, 1 << 16)):
        last = int(offsets[-1])
        pos = last + 16 + int(data[last + 8:last + 12].view(order + "u4")[0])
    walked = time.process_time() - started
    print(json.dumps({"parquet": parquet, "checksums": summed, "walk": walked}))


def stages_worker(capture: str) -> None:
    """CPU seconds of each stage of ``pktkit packets -o`` run one after another in one thread
    (the run itself spreads them over three threads): the record walk with the gather of each
    frame's head (the first touch of most pages), the vectorized layers with the reference
    decoder's rows, the L4 checksum sums, the payload hashes, the columns (flow ids, address
    codes), the Arrow conversion and the Parquet encoding."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pktkit.capture import output
    from pktkit.capture.arrow import arrow_schema
    from pktkit.capture.batches import raw_batches
    from pktkit.capture.columns import BatchDecoder
    from pktkit.capture.vectorized import payload_hashes

    clock = time.process_time
    decoder, schema = BatchDecoder(), arrow_schema()
    spent = dict.fromkeys(STAGES, 0.0)
    _, raws = raw_batches(capture)
    group: list[pa.RecordBatch] = []
    with tempfile.TemporaryDirectory(dir=OUT) as scratch, pq.ParquetWriter(
            Path(scratch) / "stages.parquet", schema,
            use_dictionary=output._DICTIONARY_COLUMNS, column_encoding=output._SPLIT_COLUMNS,
            write_statistics=output._STATISTICS_COLUMNS) as writer:
        batches = iter(raws)
        while True:
            marks = [clock()]
            raw = next(batches, None)
            marks.append(clock())
            if raw is None:
                break
            started = decoder._start(raw, {})
            marks.append(clock())
            started.f.finish_checksums()
            marks.append(clock())
            payload_hashes(raw, started.f)
            marks.append(clock())
            columns = decoder._columns(raw, started.f, started)
            marks.append(clock())
            group.append(output.arrow_batch(columns, schema))
            marks.append(clock())
            if sum(len(b) for b in group) >= output.ROW_GROUP_ROWS:
                table = pa.Table.from_batches(group, schema)
                writer.write_table(table, row_group_size=len(table))
                group = []
            marks.append(clock())
            for stage, (begin, end) in zip(STAGES, itertools.pairwise(marks), strict=True):
                spent[stage] += end - begin
        if group:
            started_at = clock()
            writer.write_table(pa.Table.from_batches(group, schema))
            spent["parquet"] += clock() - started_at
    spent["walk"] += marks[1] - marks[0]
    print(json.dumps(spent))


STAGES = ("walk", "layers", "checksums", "hashes", "columns", "arrow", "parquet")


def run_floors(capture: Path) -> dict[str, float]:
    """The floors of one pktkit run on ``capture`` (see floors_worker), and the interpreter
    with the imports of ``pktkit packets -o``, as a process of its own."""
    _, _, _, imports = measured([PYTHON, "-c", "import pktkit.cli, pyarrow.parquet; "
                                 "from pktkit.capture.output import write_packets"])
    _, _, out, _ = measured([PYTHON, __file__, "--worker", "floors", str(capture),
                             str(OUT / "out.parquet")])
    _, _, staged, _ = measured([PYTHON, __file__, "--worker", "stages", str(capture)])
    return {"imports": imports, **json.loads(out),
            **{f"stage {k}": v for k, v in json.loads(staged).items()}}


# -- report ------------------------------------------------------------------------------------


def print_floors(floors: dict[str, float], small: Run, tshark: Run, rate: Run) -> None:
    """What the targets leave on this machine: after the interpreter and the imports (one
    core), two cores have 2 × (target time − imports) CPU seconds for everything else. The
    floors are only part of that everything; the stages are the whole of it, one at a time."""
    target = small.packets / (RATIO_TARGET * tshark.pps)
    budget = 2 * (target - floors["imports"])
    floor = floors["parquet"] + floors["checksums"] + floors["walk"]
    print(f"floors: CPU seconds, each alone on {_count(small.packets)}: interpreter and imports "
          f"{floors['imports']:.2f}, Parquet encoding of the table {floors['parquet']:.2f}, "
          f"checksum arithmetic over every byte {floors['checksums']:.2f}, record walk "
          f"{floors['walk']:.2f}; pktkit's whole run {small.cpu:.2f}")
    stages = {k.removeprefix("stage "): v for k, v in floors.items() if k.startswith("stage ")}
    print(f"stages: CPU seconds, one after another in one thread on {_count(small.packets)}: "
          + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
          + f"; sum {sum(stages.values()):.2f}")
    print(f"        {RATIO_TARGET}x tshark = {target:.2f} s for the whole process: after the "
          f"imports, 2 cores give {budget:.2f} CPU s, and encoding + checksums + walk alone take "
          f"{floor:.2f} (before decoding, flow ids, payload hashes, Arrow)")
    seconds = rate.packets / RATE_TARGET
    print(f"        {RATE_TARGET:,} packets/s on {_count(rate.packets)} = {seconds:.2f} s: after "
          f"the imports, 2 cores give {2 * (seconds - floors['imports']):.2f} CPU s (both busy "
          f"throughout); pktkit's {_count(rate.packets)} run used {rate.cpu:.2f}")


def report(runs: list[Run], tshark: Run, small: Run, larger: list[Run],
           floors: dict[str, float]) -> bool:
    print()
    print(f"{'tool':<28} {'packets':>9} {'seconds':>8} {'CPU s':>7} {'packets/s':>10} "
          f"{'vs tshark':>9} {'peak RSS':>9}")
    for run in runs:
        cpu = f"{run.cpu:>7.2f}" if run.cpu else f"{'':>7}"
        print(f"{run.tool:<28} {run.packets:>9} {run.seconds:>8.2f} {cpu} {run.pps:>10,.0f} "
              f"{run.pps / tshark.pps:>8.2f}x {run.peak_mb:>6.0f} MB"
              + (f"   ({run.note})" if run.note else ""))
    ratio = small.pps / tshark.pps
    rate = larger[0]
    largest = larger[-1]
    flat = largest.peak_mb / small.peak_mb
    speed_ok = ratio >= RATIO_TARGET
    rate_ok = rate.pps >= RATE_TARGET
    memory_ok = max(r.peak_mb for r in [small, *larger]) < MEMORY_TARGET_MB and flat < 1.25
    print()
    print(f"speed:  pktkit {ratio:.1f}x lean tshark's packets/s on {_count(small.packets)} "
          f"(target >= {RATIO_TARGET}x): {'PASS' if speed_ok else 'FAIL'}")
    print(f"rate:   pktkit {rate.pps:,.0f} packets/s on {_count(rate.packets)}, the whole process "
          f"(target >= {RATE_TARGET:,}): {'PASS' if rate_ok else 'FAIL'}")
    sizes = ", ".join(f"{_count(r.packets)} {r.peak_mb:.0f} MB" for r in [small, *larger])
    print_floors(floors, small, tshark, rate)
    print(f"memory: {sizes} (x{flat:.2f} from {_count(small.packets)} to "
          f"{_count(largest.packets)}; target flat, < {MEMORY_TARGET_MB} MB): "
          f"{'PASS' if memory_ok else 'FAIL'}")
    return speed_ok and rate_ok and memory_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--scapy-packets", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="pktkit runs (median counts)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the captures")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker[0] == "tshark":
            tshark_worker(args.worker[1])
        elif args.worker[0] == "floors":
            floors_worker(args.worker[1], args.worker[2])
        elif args.worker[0] == "stages":
            stages_worker(args.worker[1])
        else:
            scapy_worker(args.worker[1], int(args.worker[2]))
        return 0
    if shutil.which("tshark") is None:
        sys.exit("bench: tshark is not installed")
    small_capture, large_captures = build_captures(args.packets, args.rebuild)
    print("captures: " + ", ".join(f"{c.name} ({c.stat().st_size / 1e6:.0f} MB)"
                                   for c in [small_capture, *large_captures]))
    print(f"tshark: {' '.join(tshark_command(small_capture))}")
    print("        with WIRESHARK_CONFIG_DIR=<profile whose disabled_protos lists every "
          f"protocol but {', '.join(sorted(TSHARK_KEEP))}>")
    warm(small_capture)
    small = run_pktkit(small_capture, args.packets, args.repeats)
    floors = run_floors(small_capture)
    tshark = run_tshark(small_capture, args.packets)
    scapy = run_scapy(small_capture, args.scapy_packets)
    larger = []
    for times, capture in zip(SIZES, large_captures, strict=True):
        warm(capture)  # (the 10M capture, 8 GB, fits this machine's page cache)
        run = run_pktkit(capture, times * args.packets, 1)
        run.tool = f"pktkit, {_count(times * args.packets)} capture"
        larger.append(run)
    return 0 if report([small, tshark, scapy, *larger], tshark, small, larger, floors) else 1


if __name__ == "__main__":
    sys.exit(main())
