"""``make bench-scale``: issue 13's acceptance, ``pktkit analyze --workers 1`` against
``--workers 2`` on a generated 32-node set of about 10M frames and one of about 20M.

1. The sets (``bench/out/scale-10M/``, ``scale-20M/``; built once, reused while their
   parameters match): ``pktkit generate vxlan-overlay --nodes 32`` with issue 10's underlay
   (queue=20ms, loss 1 %, reordering 0.5 %, duplicates 0.2 %; every node but node-01 its own
   clock within ±0.3 s and ±80 ppm), in *segments*: segment k is the scenario with seed k + 1
   (its own ports, IP IDs, sequence numbers, DNS ids, queue episodes and losses) and the clocks
   of seed 1, ``--flows`` flows over ``--duration`` seconds (default 17,000 over 20 s: about 1M
   frames in 352 capture files). Two segments are generated at a time, one process each; each
   is appended to the set's files with its record timestamps moved k × S later in true time,
   on each node's clock (k × S × (1 + drift), whole µs: each clock stays the straight line
   of its model). Only the 16-byte record headers' seconds and microseconds are rewritten
   (numpy over the raw records); the frames are the generator's bytes. S is the duration plus
   TAIL_S (the last flows' resends) plus GAP_S (more than the window and twice the largest
   clock offset), checked against each segment's real span, so no sighting of one segment can
   be matched with one of another. The 20M set starts as a copy of the 10M one. truth.json is
   not kept (each segment numbers its own packets); ``capture-set.json`` and ``kubectl.json``
   are segment 0's (the topology is the same in every segment). Generation speed is printed.
2. On each set, as whole processes one after another: ``pktkit analyze SET --out DIR
   --workers N --quiet`` for N in ``--workers`` (default 1,2; with N > 1 also
   ``--memory-limit`` 1.5GB: each worker spills its parts past 60-70 % of it). While each
   runs, the process
   tree (the CLI and every descendant: Dask's nanny and worker processes) is sampled every
   0.2 s from /proc (psutil): the whole run's peak is the largest sum of the tree's resident
   memory (an upper bound: pages shared between processes count once per process), and each
   process's own peak is kept; CPU seconds are user + system of the whole tree (``wait4``).
   Without ``--workers`` in ``pktkit analyze --help`` (the flag not merged yet) only the
   single-process run happens and the rest is reported as skipped.
3. The runs' outputs are compared table by table (every ``*.parquet`` file or Parquet dataset
   folder of both): rows matched by (capture, frame) where a table has them, else by all
   columns but the ids; ids (``packet_id``, ``flow_id``, ``nat_flow_id``) must map one to one,
   every other column must be equal (NaN equal to NaN).
4. Prints a table and the targets — ``--workers 2`` at least 1.6× faster than ``--workers 1``
   on the 10M set, every worker's peak under 1.5 GB, the whole run's peak at 20M within 1.2× of
   10M's, identical results — and appends the figures to bench/README.md. Exit status 1 if a
   measured target fails.

Usage: python bench/scale.py [--sizes 10M,20M] [--workers 1,2] [--memory-limit 1.5GB]
       [--flows N] [--duration S] [--rebuild] [--keep-outputs] [--no-readme] [--build-only]
       [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psutil

if TYPE_CHECKING:
    import pandas as pd

    from pktkit.craft.engine import Scenario

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
README = HERE / "README.md"
PKTKIT = [sys.executable, "-m", "pktkit.cli"]
NODES = 32
SCENARIO = "vxlan-overlay"
IMPAIRMENTS = ("queue=20ms", "loss=0.01", "reorder=0.005", "duplicate=0.002")
CLOCK_OFFSET_S, CLOCK_DRIFT_PPM = 0.3, 80.0
WINDOW_S = 1  # pktkit's default correlation window (analysis.grouping.DEFAULT_WINDOW_NS)
TAIL_S = 5  # how long a segment's last flows may run past its duration (TCP resends: < 2 s)
GAP_S = 3  # more than the window plus twice the largest clock offset (0.3 s)
SPEEDUP_TARGET = 1.6  # --workers 2 over --workers 1, on the smallest set
WORKER_MB_TARGET = 1500  # each worker process's peak resident memory
GROWTH_TARGET = 1.2  # the whole run's peak, largest set over smallest
ID_COLUMNS = ("packet_id", "flow_id", "nat_flow_id")
ROW_KEYS = ("capture", "frame")
SAMPLE_S = 0.2
PCAP_US_MAGIC = 0xA1B2C3D4


def set_cache(folder: Path) -> None:
    global OUT
    OUT = folder.resolve()


def parse_size(text: str) -> int:
    scale = {"k": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text.rstrip("kM")) * scale)


# -- 1 and 2. the sets: segments generated in parallel, one after another in time ---------------


def scenario_of(segment: int, flows: int, duration_s: float) -> Scenario:
    """Segment ``segment``'s scenario: seed segment + 1, the clocks of segment 0's."""
    from pktkit.craft.generation import make_scenario

    def made(seed: int) -> Scenario:
        return make_scenario(SCENARIO, seed=seed, flows=flows, duration_s=duration_s,
                             clock_offset_s=CLOCK_OFFSET_S, clock_drift_ppm=CLOCK_DRIFT_PPM,
                             impairments=IMPAIRMENTS, nodes=NODES)

    scenario = made(segment + 1)
    scenario.clocks = made(1).clocks
    return scenario


def generate_segment(segment: int, flows: int, duration_s: float, folder: Path) -> dict:
    """Generate one segment into ``folder`` (a worker process's job); its frames and time."""
    from pktkit.craft.generation import generate

    scenario = scenario_of(segment, flows, duration_s)
    started, cpu = time.perf_counter(), time.process_time()
    result = generate(scenario, folder)
    (folder / "truth.json").unlink()  # true of the segment alone, not of the set
    return {"segment": segment, "frames": result.packets,
            "seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
            "files": result.files, "nodes": scenario.node_names(),
            "clocks": {n: c.drift_ppm for n, c in scenario.clocks.items()},
            "max_offset_ns": max(abs(c.offset_ns) for c in scenario.clocks.values())}


def record_offsets(data: np.ndarray) -> np.ndarray:
    """Where each record header of a classic µs pcap starts (a plain walk: setup, not bench)."""
    if len(data) < 24 or int(data[:4].view("<u4")[0]) != PCAP_US_MAGIC:
        raise SystemExit("the segments must be little-endian µs pcap files")
    at, pos, size = [], 24, len(data)
    while pos + 16 <= size:
        at.append(pos)
        pos += 16 + int(data[pos + 8:pos + 12].view("<u4")[0])
    if pos != size:
        raise SystemExit("a segment's capture ends inside a record")
    return np.array(at, np.int64)


def _field(data: np.ndarray, at: np.ndarray, offset: int) -> np.ndarray:
    index = at[:, None] + offset + np.arange(4)
    return data[index].copy().view("<u4").ravel()


def _timestamps_us(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    return _field(data, at, 0).astype(np.int64) * 1_000_000 + _field(data, at, 4)


def append_segment(done: dict, source: Path, target: Path, shift_us: int) -> tuple[int, int]:
    """Append every file of segment ``source`` to the set ``target``, its record timestamps
    moved by ``shift_us`` of true time on the file's node clock (× (1 + drift)); returns the
    first and last timestamp written (µs)."""
    first, last = math.inf, -math.inf
    for name in done["files"]:
        data = np.fromfile(source / name, np.uint8)
        at = record_offsets(data)
        node = max((n for n in done["nodes"] if name.startswith(n + "-")), key=len)
        moved = _timestamps_us(data, at) + round(shift_us * (1 + done["clocks"][node] * 1e-6))
        if len(at):
            first, last = min(first, int(moved[0])), max(last, int(moved[-1]))
        header = np.empty((len(at), 2), "<u4")
        header[:, 0], header[:, 1] = np.divmod(moved, 1_000_000)
        data[(at[:, None] + np.arange(8)).ravel()] = header.view(np.uint8).ravel()
        new = not (target / name).exists()
        with open(target / name, "ab") as handle:
            handle.write(data.tobytes() if new else data[24:].tobytes())
    for extra in ("capture-set.json", "kubectl.json"):
        if (source / extra).exists() and not (target / extra).exists():
            shutil.copy(source / extra, target / extra)
    return int(first), int(last)


def build_set(size: str, flows: int, duration_s: float, rebuild: bool) -> dict:
    """``bench/out/scale-SIZE/``: segments appended until the set holds SIZE frames; a smaller
    set built before with the same parameters is its first segments (copied, not redone)."""
    from concurrent.futures import ProcessPoolExecutor

    folder = OUT / f"scale-{size}"
    params = {"scenario": SCENARIO, "nodes": NODES, "flows": flows, "duration_s": duration_s,
              "impairments": list(IMPAIRMENTS), "clock_offset_s": CLOCK_OFFSET_S,
              "clock_drift_ppm": CLOCK_DRIFT_PPM, "gap_s": GAP_S}
    target = parse_size(size)

    def stamp_of(path: Path) -> dict | None:
        stamp = path / "scale-stamp.json"
        return json.loads(stamp.read_text()) if stamp.exists() else None

    built = stamp_of(folder)
    if built and built["params"] == params and built["frames"] >= target and not rebuild:
        return built
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    state = {"params": params, "frames": 0, "segments": [], "shift_s": None}
    usable = []  # sets built before with these parameters, no larger than this one
    for path in OUT.glob("scale-*"):
        made = stamp_of(path) if path.is_dir() and path != folder else None
        if made and made.get("params") == params and made["frames"] <= target:
            usable.append((made, path))
    if usable and not rebuild:
        state, prefix = max(usable, key=lambda sp: sp[0]["frames"])
        print(f"building {folder.name}: starting from {prefix.name} "
              f"({state['frames']:,} frames)", flush=True)
        shutil.copytree(prefix, partial)
    partial.mkdir(parents=True, exist_ok=True)
    shift_s = math.ceil(duration_s + TAIL_S + GAP_S)
    state["shift_s"] = shift_s
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        while state["frames"] < target:
            first = len(state["segments"])
            done_frames = [x["frames"] for x in state["segments"]]
            one_will_do = done_frames and target - state["frames"] <= min(done_frames)
            rounds = [first] if one_will_do else [first, first + 1]
            temp = [OUT / f"scale-segment-{k}" for k in rounds]
            for path in temp:
                shutil.rmtree(path, ignore_errors=True)
            futures = [pool.submit(generate_segment, k, flows, duration_s, path)
                       for k, path in zip(rounds, temp, strict=True)]
            for future, path in zip(futures, temp, strict=True):
                done = future.result()
                if state["frames"] >= target:
                    shutil.rmtree(path)
                    continue
                k = done["segment"]
                low, high = append_segment(done, path, partial, k * shift_s * 10**6)
                shutil.rmtree(path)
                span_s = (high - low) / 1e6  # on the nodes' clocks: ≤ true span + 2 offsets
                # the segment's own span, its clocks' spread and the window must fit the shift
                if span_s + 2 * done["max_offset_ns"] / 1e9 + WINDOW_S > shift_s:
                    raise SystemExit(f"segment {k} spans {span_s:.1f} s: raise TAIL_S")
                state["frames"] += done["frames"]
                state["segments"].append({k2: round(v, 1) if isinstance(v, float) else v
                                          for k2, v in done.items()
                                          if k2 in ("segment", "frames", "seconds", "cpu_s")})
                print(f"  segment {k}: {done['frames']:,} frames in {done['seconds']:.0f} s "
                      f"({done['frames'] / done['seconds']:,.0f} frames/s, one process); "
                      f"{state['frames']:,} in the set", flush=True)
    state["build_s"] = round(time.perf_counter() - started, 1)
    (partial / "scale-stamp.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    partial.replace(folder)
    return state


# -- 3. runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0  # the whole tree's largest sum of resident memory
    process_peaks_mb: dict[str, float] = field(default_factory=dict)  # pid:name -> peak
    returncode: int = 0
    skipped: str = ""

    @property
    def worker_peak_mb(self) -> float:
        """The largest peak of a process other than the CLI's own (Dask's workers); with no
        child process, the CLI's (it does the work itself)."""
        children = [mb for key, mb in self.process_peaks_mb.items() if not key.startswith("0:")]
        return max(children) if children else self.process_peaks_mb.get("0:pktkit", 0.0)


def _sample(root: psutil.Process, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        total = 0.0
        for number, proc in enumerate(tree):
            try:
                mb = proc.memory_info().rss / 2**20
                name = "pktkit" if number == 0 else " ".join(proc.cmdline()[1:3])[:60]
            except psutil.Error:
                continue
            total += mb
            key = f"0:{name}" if number == 0 else f"{proc.pid}:{name}"
            run.process_peaks_mb[key] = max(run.process_peaks_mb.get(key, 0.0), mb)
        run.peak_mb = max(run.peak_mb, total)
        stop.wait(SAMPLE_S)


def measure(label: str, command: list[str]) -> Run:
    run = Run(label)
    print(f"  {label}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(psutil.Process(process.pid), run, stop))
    sampler.start()
    stderr = process.stderr.read() if process.stderr else b""
    _, status, usage = os.wait4(process.pid, 0)
    run.wall_s = time.perf_counter() - started
    stop.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    run.returncode = process.returncode
    run.cpu_s = usage.ru_utime + usage.ru_stime
    if run.returncode:
        print(stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    # (a worker killed by its nanny and restarted is a process more)
    heavy = sum(mb > 200 for key, mb in run.process_peaks_mb.items() if not key.startswith("0:"))
    print(f"    {run.wall_s:.0f} s, {run.cpu_s:.0f} s CPU, tree peak {run.peak_mb:,.0f} MB, "
          f"largest worker {run.worker_peak_mb:,.0f} MB, {heavy} worker processes over "
          f"200 MB, exit {run.returncode}", flush=True)
    return run


def has_workers_flag() -> bool:
    help_text = subprocess.run([*PKTKIT, "analyze", "--help"], capture_output=True, text=True)
    return "--workers" in help_text.stdout


# -- 4. identical results -----------------------------------------------------------------------


def tables(folder: Path) -> dict[str, Path]:
    """Every Parquet table of an output folder: ``X.parquet`` files and dataset folders."""
    found = {}
    for path in folder.iterdir():
        if path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
            found[path.name.removesuffix(".parquet")] = path
    return found


def _columns(path: Path) -> list[str]:
    import pyarrow.dataset as ds

    return [c for c in ds.dataset(path, format="parquet", partitioning="hive").schema.names]


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet", partitioning="hive").to_table(
        columns=columns).to_pandas()


def compare_table(one: Path, two: Path) -> list[str]:
    """The differences between one table as written by two runs (empty: identical, ids mapped
    one to one). Large tables are read a few columns at a time."""
    import pandas as pd

    columns = _columns(one)
    if sorted(columns) != sorted(_columns(two)):
        return [f"columns differ: {sorted(set(columns) ^ set(_columns(two)))}"]
    keys = [c for c in ROW_KEYS if c in columns]
    ids = [c for c in columns if c in ID_COLUMNS]
    plain = [c for c in columns if c not in ids and c not in keys]
    if len(keys) < len(ROW_KEYS):  # small tables: rows matched by every column but the ids
        keys, plain = plain, []

    def ordered(path: Path, extra: list[str]) -> pd.DataFrame:
        frame = _read(path, [*keys, *extra])
        if keys:
            return frame.sort_values(keys, kind="stable", ignore_index=True)
        return frame.reset_index(drop=True)

    problems = []
    batches = [plain[i:i + 6] for i in range(0, len(plain), 6)] + [[c] for c in ids]
    for number, batch in enumerate(batches or [[]]):
        a, b = ordered(one, batch), ordered(two, batch)
        if len(a) != len(b):
            return [f"{len(a)} rows against {len(b)}"]
        for column in [*keys, *batch] if number == 0 else batch:
            x, y = a[column], b[column]
            if column in ids:
                pairs = pd.DataFrame({"x": x.to_numpy(), "y": y.to_numpy()}).drop_duplicates()
                if not (pairs["x"].is_unique and pairs["y"].is_unique
                        and (x.isna().to_numpy() == y.isna().to_numpy()).all()):
                    problems.append(f"{column}: no one-to-one map between the two numberings")
            elif not x.equals(y):
                unequal = _unequal_rows(x, y)
                if unequal:
                    problems.append(f"{column}: {unequal} rows differ")
    return problems


def _unequal_rows(x: pd.Series, y: pd.Series) -> int:
    """Rows whose values differ (missing equal to missing; types may differ, as a column
    written as categories by one run and as strings by the other)."""
    both_missing = x.isna().to_numpy() & y.isna().to_numpy()
    try:
        differ = (x != y).fillna(True).to_numpy(bool)
    except TypeError:  # categories of other sets, or other dtypes
        differ = (x.astype(str) != y.astype(str)).to_numpy(bool)
    return int((differ & ~both_missing).sum())


def compare_outputs(one: Path, two: Path) -> dict[str, list[str]]:
    left, right = tables(one), tables(two)
    found = {name: [] if name in right else ["missing in the second output"] for name in left}
    for name in right.keys() - left.keys():
        found[name] = ["missing in the first output"]
    for name in sorted(left.keys() & right.keys()):
        found[name] = compare_table(left[name], right[name])
    return found


# -- 5. report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10M,20M", help="frames of each large set")
    parser.add_argument("--workers", default="1,2", help="--workers values to run")
    parser.add_argument("--memory-limit", default="1.5GB",
                        help="--memory-limit of the runs with workers (default 1.5GB: the "
                             "target; 'auto': the machine's memory shared out, no spilling)")
    parser.add_argument("--flows", type=int, default=17_000, help="flows of the base set")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the base set")
    parser.add_argument("--rebuild", action="store_true", help="generate the base set again")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the analysis folders")
    parser.add_argument("--no-readme", action="store_true", help="do not append to README.md")
    parser.add_argument("--build-only", action="store_true", help="build the sets, run nothing")
    parser.add_argument("--cache", type=Path, default=OUT,
                        help="where the sets and outputs go (default bench/out)")
    args = parser.parse_args(argv)
    set_cache(args.cache)
    sizes = [s.strip() for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]

    OUT.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        for size in sizes:
            build_set(size, args.flows, args.duration, args.rebuild)
        return 0
    flag = has_workers_flag()
    if not flag:
        print("pktkit analyze has no --workers yet: only the single-process run is measured "
              "(as --workers 1); the other runs are skipped")
    results: dict[str, dict[int, Run]] = {}
    frames: dict[str, int] = {}
    built: dict[str, dict] = {}
    identical: dict[str, dict[str, list[str]] | None] = {}
    for size in sizes:
        folder = OUT / f"scale-{size}"
        built[size] = build_set(size, args.flows, args.duration, args.rebuild)
        frames[size] = built[size]["frames"]
        results[size] = {}
        outputs = {}
        for n in workers:
            label = f"{size} --workers {n}"
            if not flag and n != 1:
                results[size][n] = Run(label, skipped="no --workers flag")
                continue
            out_dir = OUT / f"scale-analysis-{size}-w{n}"
            shutil.rmtree(out_dir, ignore_errors=True)
            command = [*PKTKIT, "analyze", str(folder), "--out", str(out_dir), "--quiet"]
            if flag:
                command += ["--workers", str(n)]
            if flag and n != 1 and args.memory_limit != "auto":
                command += ["--memory-limit", args.memory_limit]
            results[size][n] = measure(label, command)
            outputs[n] = out_dir
        done = [n for n in workers if n in outputs and results[size][n].returncode == 0]
        identical[size] = None
        if len(done) >= 2:
            identical[size] = compare_outputs(outputs[done[0]], outputs[done[1]])
            bad = {k: v for k, v in identical[size].items() if v}
            print(f"  results {'identical' if not bad else 'DIFFER'} "
                  f"({len(identical[size])} tables){'' if not bad else ': ' + str(bad)}")
        if not args.keep_outputs:
            for out_dir in outputs.values():
                shutil.rmtree(out_dir, ignore_errors=True)
    lines, failed = report(built, sizes, workers, frames, results, identical)
    print("\n".join(lines))
    if not args.no_readme:
        with open(README, "a") as handle:
            handle.write("\n" + "\n".join(lines) + "\n")
    return 1 if failed else 0


def segments_text(state: dict) -> str:
    """The segments' generation rate (one process each, two at a time)."""
    segments = state["segments"]
    frames = sum(x["frames"] for x in segments)
    seconds, cpu = sum(x["seconds"] for x in segments), sum(x["cpu_s"] for x in segments)
    return (f"{len(segments)} segments, {frames / len(segments):,.0f} frames each, generated at "
            f"{frames / seconds:,.0f} frames/s per process ({frames / cpu:,.0f} per CPU second)")


def report(built: dict[str, dict], sizes: list[str], workers: list[int], frames: dict[str, int],
           results: dict[str, dict[int, Run]],
           identical: dict[str, dict[str, list[str]] | None]) -> tuple[list[str], bool]:
    """The README block: one row per run, then the targets with their ratios."""
    load = os.getloadavg()[0]
    lines = [f"### bench/scale.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"(load average {load:.1f} at the end; provisional unless the machine was quiet)",
             "",
             f"Sets: {SCENARIO} --nodes {NODES}, segments of {built[sizes[0]]['params']['flows']:,}"
             f" flows each ({segments_text(built[sizes[-1]])}).", "",
             "| set | frames | --workers | wall s | CPU s | tree peak MB | largest worker MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        for n in workers:
            run = results[size][n]
            if run.skipped:
                lines.append(f"| {size} | {frames[size]:,} | {n} | skipped: {run.skipped} "
                             "| | | |")
                continue
            status = "" if run.returncode == 0 else f" (exit {run.returncode})"
            lines.append(f"| {size} | {frames[size]:,} | {n} | {run.wall_s:.0f}{status} | "
                         f"{run.cpu_s:.0f} | {run.peak_mb:,.0f} | {run.worker_peak_mb:,.0f} |")
    lines.append("")
    failed = False

    def ok(run: Run | None) -> bool:
        return run is not None and not run.skipped and run.returncode == 0

    first, last = sizes[0], sizes[-1]
    one, two = results[first].get(1), results[first].get(2)
    if ok(one) and ok(two):
        speedup = one.wall_s / two.wall_s  # type: ignore[union-attr]
        passed = speedup >= SPEEDUP_TARGET
        failed |= not passed
        lines.append(f"- {first}: --workers 2 is {speedup:.2f}x as fast as --workers 1 "
                     f"(target >= {SPEEDUP_TARGET}): {'pass' if passed else 'FAIL'}")
    else:
        lines.append(f"- {first}: speed-up not measured (a run skipped or failed)")
    peaks = [r.worker_peak_mb for s in sizes for n, r in results[s].items() if n > 1 and ok(r)]
    if peaks:
        passed = max(peaks) < WORKER_MB_TARGET
        failed |= not passed
        lines.append(f"- largest worker peak {max(peaks):,.0f} MB (target < "
                     f"{WORKER_MB_TARGET} MB): {'pass' if passed else 'FAIL'}")
    for n in workers:
        small, large = results[first].get(n), results[last].get(n)
        if first != last and ok(small) and ok(large):
            growth = large.peak_mb / small.peak_mb  # type: ignore[union-attr]
            passed = growth <= GROWTH_TARGET
            if n > 1:
                failed |= not passed
            lines.append(f"- --workers {n}: whole-run peak {last} / {first} = {growth:.2f} "
                         f"(target <= {GROWTH_TARGET}{'' if n > 1 else ', not required'}): "
                         f"{'pass' if passed else 'FAIL'}")
    for size, found in identical.items():
        if found is None:
            lines.append(f"- {size}: results not compared (fewer than two runs)")
            continue
        bad = {k: v for k, v in found.items() if v}
        failed |= bool(bad)
        lines.append(f"- {size}: {len(found)} tables, " + (
            "identical (ids mapped one to one)" if not bad else f"DIFFER: {bad}"))
    return lines, failed


if __name__ == "__main__":
    sys.exit(main())
