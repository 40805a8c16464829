"""``make bench`` part 2: ``pktkit analyze`` on two-node capture sets of growing size, on an
impaired one, and on look-alikes by the hundred.

1. Builds, unless they exist (``bench/out/analyze-<set>/``):

   - ``250k`` and ``1M``: ``pktkit generate vxlan-overlay`` with ``tcpdump -i any`` files
     (SLL2 pcapng, one per node) and node-b's clock 0.25 s ahead; 4,433 and 17,730 flows give
     about 258,000 and 1,034,000 frames;
   - ``1M-impaired``: the 1M set with issue 10's underlay (``--impair queue=20ms loss=0.01
     reorder=0.005 duplicate=0.002``) and node-b's clock 0.3 s ahead, 80 ppm fast;
   - ``200x-v4`` and ``200x-v6``: 200 copies, back to back with their timestamps unchanged
     (``mergecap -a`` of a file with itself), of each node's SLL2 pcap of a small capture:
     vxlan-overlay with 21 flows (1,224 frames; inner IPv4, whose identical records are
     duplicates) and flat-routed-v6 with 30 flows (1,230 frames; IPv6, every copy a look-alike
     packet the split must tell apart): about 245,000 frames each.
2. For each set, as whole processes with ``wait4``'s peak resident memory:

   - a worker that imports pktkit, notes its resident memory (the baseline), runs
     :func:`pktkit.analyze` (timed), adds up the memory of every table it returns
     (``memory_usage(deep=True)``), then writes the folder with
     :func:`pktkit.report.folder.write_analysis` (timed);
   - ``pktkit analyze SET --out DIR --quiet``, the command a user runs (end-to-end time);
   - tshark reading the same files (``-T fields -e frame.number``, one pass each), for scale.

3. Prints the table and checks the targets: from one set to the next, peak memory grows by at
   most GROWTH_TARGET MB per MB of returned tables (the tables themselves are 1 of it; the rest
   is the working memory of the stages), and at the 1M set peak − baseline is at most
   GROWTH_TARGET times the tables. The baseline (interpreter, numpy, pandas, pyarrow: ~136 MB)
   and the report's fixed costs (matplotlib: ~30 MB) do not grow with the packets. Issue 14's
   stricter form is checked too: peak memory at most GROWTH_TARGET times the tables, baseline
   included, and the analysis at most TIME_TARGET times ``pktkit packets`` on the same files;
   beside it, the floor of that ratio: (baseline + matplotlib + tables) / tables, what the
   process holds while it writes the report before any stage's working memory. The impaired 1M set
   takes at most IMPAIRED_TARGET times the 1M set's analysis time and peak memory; the 200 copies
   at most LOOKALIKE_TARGET times the 250k set's analysis time.

Usage: python bench/analyze.py [--rebuild] [--sizes 250k,1M,1M-impaired,200x-v4,200x-v6]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PYTHON = sys.executable
PKTKIT = [PYTHON, "-m", "pktkit.cli"]
# MB of peak memory per MB of returned tables (the tables themselves count 1)
GROWTH_TARGET = 1.5
TIME_TARGET = 3  # pktkit analyze (the CLI, end to end) over pktkit packets -o, same files
IMPAIRED_TARGET = 1.2  # impaired 1M against 1M: time and peak memory
LOOKALIKE_TARGET = 3.0  # 200 copies against 250k distinct frames: time
UNDERLAY = ["--impair", "queue=20ms", "--impair", "loss=0.01", "--impair", "reorder=0.005",
            "--impair", "duplicate=0.002", "--clock-offset", "0.3", "--clock-drift", "80"]
# set → (scenario, flows, duration (s), more generate arguments, copies)
SETS: dict[str, tuple[str, int, float, list[str], int]] = {
    "250k": ("vxlan-overlay", 4433, 0.5, ["--clock-offset", "0.25"], 1),
    "1M": ("vxlan-overlay", 17730, 2.0, ["--clock-offset", "0.25"], 1),
    "1M-impaired": ("vxlan-overlay", 17730, 2.0, UNDERLAY, 1),
    "200x-v4": ("vxlan-overlay", 21, 2.0, ["--format", "pcap"], 200),
    "200x-v6": ("flat-routed-v6", 30, 10.0, ["--format", "pcap"], 200),
}
PCAP_HEADER = 24


def measured(command: list[str]) -> tuple[float, float, str, float]:
    """Run a whole process: (wall seconds, peak RSS in MB, stdout, CPU seconds: user + system,
    from ``wait4``; on a machine shared with other work, the steadier figure)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"bench: {' '.join(command[:5])} ... failed:\n{err.read()}")
        return wall, usage.ru_maxrss / 1024, out.read(), usage.ru_utime + usage.ru_stime


def build_set(name: str, rebuild: bool) -> Path:
    folder = OUT / f"analyze-{name}"
    if folder.is_dir() and not rebuild:
        return folder
    scenario, flows, duration, more, copies = SETS[name]
    print(f"building {folder} ({flows} flows{f', {copies} copies' if copies > 1 else ''}) ...",
          flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    made = folder if copies == 1 else OUT / f"analyze-{name}-one"
    shutil.rmtree(made, ignore_errors=True)
    fmt = [] if "--format" in more else ["--format", "pcapng"]
    subprocess.run([*PKTKIT, "generate", scenario, "--out", str(made), "--seed", "1", *fmt,
                    "--linktype", "sll2", "--flows", str(flows), "--duration", str(duration),
                    *more, "--quiet"], check=True)
    (made / "truth.json").unlink()  # 450 MB the analysis does not read
    if copies > 1:  # each file back to back with itself, timestamps unchanged (mergecap -a)
        folder.mkdir()
        for path in made.glob("*.pcap"):
            data = path.read_bytes()
            (folder / path.name).write_bytes(data[:PCAP_HEADER] + data[PCAP_HEADER:] * copies)
        shutil.copy(made / "capture-set.json", folder / "capture-set.json")
        shutil.rmtree(made)
    return folder


def worker(folder: str, out: str) -> None:
    """The measured analysis (run as its own process by :func:`main`)."""
    import pktkit
    from pktkit.analysis.pipeline import return_memory_eagerly
    from pktkit.report.folder import write_analysis

    return_memory_eagerly()  # as pktkit analyze does
    baseline = _rss_mb()
    started = time.perf_counter()
    analysis = pktkit.analyze(folder)
    analyzed = time.perf_counter()
    tables = {name: getattr(analysis, name) for name in (
        "packets", "nat_flows", "hops", "latency", "clock_offsets", "handshakes",
        "nat_disagreements")}
    tables_mb = sum(float(t.memory_usage(deep=True).sum()) for t in tables.values()) / 2**20
    before = _rss_mb()
    import pktkit.report.plot  # (the report's figures: matplotlib, a fixed cost)

    plot_mb = _rss_mb() - before
    write_analysis(analysis, out)
    print(json.dumps({"frames": len(analysis.packets), "baseline_mb": baseline,
                      "plot_mb": plot_mb, "tables_mb": tables_mb, "analyze_s": analyzed - started,
                      "write_s": time.perf_counter() - analyzed}))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(folder: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        _, peak, stdout, _ = measured([PYTHON, __file__, "--worker", str(folder),
                                    str(Path(scratch) / "worker")])
        result = json.loads(stdout.strip().splitlines()[-1])
        result["peak_mb"] = peak
        wall, cli_peak, _, cpu = measured([*PKTKIT, "analyze", str(folder), "--out",
                                           str(Path(scratch) / "cli"), "--quiet"])
        result["cli_s"], result["cli_peak_mb"], result["cli_cpu"] = wall, cli_peak, cpu
        captures = sorted([*folder.glob("*.pcapng"), *folder.glob("*.pcap")])
        result["packets_s"], _, _, result["packets_cpu"] = measured([
            *PKTKIT, "packets", *map(str, captures), "-o",
            str(Path(scratch) / "packets.parquet"), "--quiet"])
    if shutil.which("tshark"):
        result["tshark_s"] = sum(measured(["tshark", "-n", "-r", str(path), "-T", "fields",
                                           "-e", "frame.number"])[0]
                                 for path in sorted([*folder.glob("*.pcapng"),
                                                     *folder.glob("*.pcap")]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="regenerate the capture sets")
    parser.add_argument("--sizes", default=",".join(SETS), help="which sets (default: all)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    results = {name: run(build_set(name, args.rebuild)) for name in args.sizes.split(",")}

    print()
    print(f"{'set':<12} {'frames':>9} {'analyze':>8} {'write':>7} {'CLI':>7} {'tshark':>7} "
          f"{'tables':>8} {'baseline':>9} {'peak':>8} {'working/tables':>15}")
    for name, r in results.items():
        working = (r["peak_mb"] - r["baseline_mb"]) / r["tables_mb"]
        tshark = f"{r['tshark_s']:6.1f}s" if "tshark_s" in r else "    n/a"
        print(f"{name:<12} {r['frames']:>9,} {r['analyze_s']:7.1f}s {r['write_s']:6.1f}s "
              f"{r['cli_s']:6.1f}s {tshark} {r['tables_mb']:5.0f} MB {r['baseline_mb']:6.0f} MB "
              f"{r['peak_mb']:5.0f} MB {working:14.2f}x   (CLI peak {r['cli_peak_mb']:.0f} MB)")
    return 0 if _targets(results) else 1


def _targets(results: dict[str, dict[str, float]]) -> bool:
    """Print each target that the sets measured allow to check; True when all are met."""
    print()
    ok = True
    if "250k" in results and "1M" in results:
        small, large = results["250k"], results["1M"]
        growth = ((large["peak_mb"] - small["peak_mb"])
                  / (large["tables_mb"] - small["tables_mb"]))
        within = (large["peak_mb"] - large["baseline_mb"]) / large["tables_mb"] <= GROWTH_TARGET
        met = growth <= GROWTH_TARGET and within
        ok &= met
        print(f"memory: peak grows {growth:.2f} MB per MB of returned tables between the sets "
              f"(at most {GROWTH_TARGET}): {'PASS' if met else 'FAIL'}")
    if "1M" in results:
        large = results["1M"]
        times = large["cli_s"] / large["packets_s"]
        peak_ratio = large["peak_mb"] / large["tables_mb"]
        time_ok, peak_ok = times <= TIME_TARGET, peak_ratio <= GROWTH_TARGET
        ok &= time_ok and peak_ok
        print(f"time:   pktkit analyze {large['cli_s']:.1f} s = {times:.2f}x pktkit packets "
              f"({large['packets_s']:.1f} s) on the same files (target <= {TIME_TARGET}x): "
              f"{'PASS' if time_ok else 'FAIL'}")
        print(f"        in CPU seconds (user + system): analyze {large['cli_cpu']:.1f}, packets "
              f"{large['packets_cpu']:.1f}: {large['cli_cpu'] / large['packets_cpu']:.2f}x "
              "(decoding and encoding spread over threads, the analysis runs in one)")
        print(f"peak:   {large['peak_mb']:.0f} MB = {peak_ratio:.2f}x the returned tables "
              f"({large['tables_mb']:.0f} MB), baseline included (target <= {GROWTH_TARGET}x): "
              f"{'PASS' if peak_ok else 'FAIL'}")
        # what the process holds at the least while it writes the report: its imports, the
        # report's figure library, and the tables
        held = large["baseline_mb"] + large["plot_mb"] + large["tables_mb"]
        print(f"        floor: baseline ({large['baseline_mb']:.0f} MB: interpreter, numpy, "
              f"pandas, pyarrow) + matplotlib for the figures ({large['plot_mb']:.0f} MB) + "
              f"tables = {held / large['tables_mb']:.2f}x the tables before any working memory; "
              f"the target leaves {GROWTH_TARGET * large['tables_mb'] - held:.0f} MB for the "
              f"largest stage's (measured: {large['peak_mb'] - held:.0f} MB)")
    if "1M" in results and "1M-impaired" in results:
        plain, impaired = results["1M"], results["1M-impaired"]
        time_ratio = impaired["analyze_s"] / plain["analyze_s"]
        memory_ratio = impaired["peak_mb"] / plain["peak_mb"]
        met = max(time_ratio, memory_ratio) <= IMPAIRED_TARGET
        ok &= met
        print(f"impaired 1M against 1M: analyze time x{time_ratio:.2f}, peak memory "
              f"x{memory_ratio:.2f} (at most x{IMPAIRED_TARGET}): {'PASS' if met else 'FAIL'}")
    for name in ("200x-v4", "200x-v6"):
        if name in results and "250k" in results:
            ratio = results[name]["analyze_s"] / results["250k"]["analyze_s"]
            met = ratio <= LOOKALIKE_TARGET
            ok &= met
            print(f"{name} (200 copies) against 250k distinct frames: analyze time "
                  f"x{ratio:.2f} (at most x{LOOKALIKE_TARGET}): {'PASS' if met else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
