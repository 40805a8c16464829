"""``make bench`` part 2: ``pktkit analyze`` on two-node capture sets of growing size.

1. Builds ``bench/out/analyze-250k/`` and ``analyze-1M/`` unless they exist: ``pktkit generate
   vxlan-overlay`` with ``tcpdump -i any`` files (SLL2 pcapng, one per node) and node-b's clock
   0.25 s ahead; 4,433 and 17,730 flows give 258,460 and 1,033,636 frames.
2. For each set, as whole processes with ``wait4``'s peak resident memory:

   - a worker that imports pktkit, notes its resident memory (the baseline), runs
     :func:`pktkit.analyze` (timed), adds up the memory of every table it returns
     (``memory_usage(deep=True)``), then writes the folder with
     :func:`pktkit.analysis.pipeline.write_analysis` (timed);
   - ``pktkit analyze SET --out DIR --quiet``, the command a user runs (end-to-end time);
   - ``pktkit packets SET/*.pcapng -o x.parquet``: the packet table alone, the yardstick of
     ``analyze`` (issue 14: within TIME_TARGET times it);
   - tshark reading the same files (``-T fields -e frame.number``, one pass each), for scale.

3. Prints the table and checks the target: from one set to the next, peak memory grows by at
   most GROWTH_TARGET MB per MB of returned tables (the tables themselves are 1 of it; the rest
   is the working memory of the stages), and at the largest set peak − baseline is at most
   GROWTH_TARGET times the tables. The baseline (interpreter, pandas, pyarrow: ~110 MB) and the
   report's fixed costs (matplotlib) do not grow with the packets. Issue 14's stricter form is
   checked too: peak memory at most GROWTH_TARGET times the tables, baseline included, and the
   analysis at most TIME_TARGET times ``pktkit packets`` on the same files.

Usage: python bench/analyze.py [--rebuild] [--sizes 250k,1M]
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
SETS = {"250k": (4433, 0.5), "1M": (17730, 2.0)}  # flows, duration (s)


def measured(command: list[str]) -> tuple[float, float, str]:
    """Run a whole process: (wall seconds, peak RSS in MB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"bench: {' '.join(command[:5])} ... failed:\n{err.read()}")
        return wall, usage.ru_maxrss / 1024, out.read()


def build_set(name: str, rebuild: bool) -> Path:
    folder = OUT / f"analyze-{name}"
    if folder.is_dir() and not rebuild:
        return folder
    flows, duration = SETS[name]
    print(f"building {folder} ({flows} flows) ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([*PKTKIT, "generate", "vxlan-overlay", "--out", str(folder), "--seed", "1",
                    "--format", "pcapng", "--linktype", "sll2", "--flows", str(flows),
                    "--duration", str(duration), "--clock-offset", "0.25", "--quiet"],
                   check=True)
    (folder / "truth.json").unlink()  # 450 MB the analysis does not read
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
    write_analysis(analysis, out)
    print(json.dumps({"frames": len(analysis.packets), "baseline_mb": baseline,
                      "tables_mb": tables_mb, "analyze_s": analyzed - started,
                      "write_s": time.perf_counter() - analyzed}))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(folder: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        _, peak, stdout = measured([PYTHON, __file__, "--worker", str(folder),
                                    str(Path(scratch) / "worker")])
        result = json.loads(stdout.strip().splitlines()[-1])
        result["peak_mb"] = peak
        wall, cli_peak, _ = measured([*PKTKIT, "analyze", str(folder), "--out",
                                      str(Path(scratch) / "cli"), "--quiet"])
        result["cli_s"], result["cli_peak_mb"] = wall, cli_peak
        result["packets_s"], _, _ = measured([
            *PKTKIT, "packets", *map(str, sorted(folder.glob("*.pcapng"))), "-o",
            str(Path(scratch) / "packets.parquet"), "--quiet"])
    if shutil.which("tshark"):
        result["tshark_s"] = sum(measured(["tshark", "-n", "-r", str(path), "-T", "fields",
                                           "-e", "frame.number"])[0]
                                 for path in sorted(folder.glob("*.pcapng")))
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
    print(f"{'set':<6} {'frames':>9} {'analyze':>8} {'write':>7} {'CLI':>7} {'tshark':>7} "
          f"{'tables':>8} {'baseline':>9} {'peak':>8} {'working/tables':>15}")
    for name, r in results.items():
        working = (r["peak_mb"] - r["baseline_mb"]) / r["tables_mb"]
        tshark = f"{r['tshark_s']:6.1f}s" if "tshark_s" in r else "    n/a"
        print(f"{name:<6} {r['frames']:>9,} {r['analyze_s']:7.1f}s {r['write_s']:6.1f}s "
              f"{r['cli_s']:6.1f}s {tshark} {r['tables_mb']:5.0f} MB {r['baseline_mb']:6.0f} MB "
              f"{r['peak_mb']:5.0f} MB {working:14.2f}x   (CLI peak {r['cli_peak_mb']:.0f} MB)")
    largest = results[list(results)[-1]]
    ok = (largest["peak_mb"] - largest["baseline_mb"]) / largest["tables_mb"] <= GROWTH_TARGET
    if len(results) > 1:
        small = results[next(iter(results))]
        growth = ((largest["peak_mb"] - small["peak_mb"])
                  / (largest["tables_mb"] - small["tables_mb"]))
        ok &= growth <= GROWTH_TARGET
        print(f"\npeak memory grows {growth:.2f} MB per MB of returned tables between the sets")
    print(f"memory: at most {GROWTH_TARGET} MB per MB of returned tables: "
          f"{'PASS' if ok else 'FAIL'}")
    times = largest["cli_s"] / largest["packets_s"]
    peak_ratio = largest["peak_mb"] / largest["tables_mb"]
    time_ok, peak_ok = times <= TIME_TARGET, peak_ratio <= GROWTH_TARGET
    print(f"time:   pktkit analyze {largest['cli_s']:.1f} s = {times:.2f}x pktkit packets "
          f"({largest['packets_s']:.1f} s) on the same files (target <= {TIME_TARGET}x): "
          f"{'PASS' if time_ok else 'FAIL'}")
    print(f"peak:   {largest['peak_mb']:.0f} MB = {peak_ratio:.2f}x the returned tables "
          f"({largest['tables_mb']:.0f} MB), baseline included (target <= {GROWTH_TARGET}x): "
          f"{'PASS' if peak_ok else 'FAIL'}")
    return 0 if ok and time_ok and peak_ok else 1


if __name__ == "__main__":
    sys.exit(main())
