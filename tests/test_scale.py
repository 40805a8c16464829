"""pktkit.scale: a LocalCluster of 2 workers gives what one process gives — the dataset's rows
(captures cut into chunks, a cut capture, pcap and pcapng) and the analysis (every table and
plot; packet ids through a bijection with one process's, the packet table as the dataset
``packets/``) — also when a worker is killed in the middle of the run (Dask runs its task
again); what the client gathers does not grow with frames; bad cluster arguments are one-line
errors with exit 2; every cluster is closed with no process left behind."""

from __future__ import annotations

import contextlib
import copy
import io
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pktkit import cli
from pktkit.analysis.inputs import resolve_inputs
from pktkit.analysis.pipeline import analyze
from pktkit.capture.autoports import resolve_ports
from pktkit.capture.dataset import DatasetCapture, read_manifest, write_dataset
from pktkit.craft.generation import generate, make_scenario
from pktkit.report.folder import write_analysis
from pktkit.scale import cluster as scale_cluster
from pktkit.scale.analyze import analyze_on_cluster
from pktkit.scale.cluster import dask_client
from pktkit.scale.decode import write_dataset as write_on_cluster

CHUNK = 20_000  # bytes: the test captures (30-90 kB) are cut into 2-5 chunks


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(2, dashboard_address=":0") as connected:
        yield connected
    assert not multiprocessing.active_children()  # the workers and nannies are gone


@pytest.fixture
def own_client() -> Iterator[object]:
    """A cluster for one test that kills a worker: the module's cluster stays whole for the
    others (in one full run a killed worker's nanny was closed after its restart, and the
    tests after it met a cluster one worker short)."""
    with dask_client(2, dashboard_address=":0") as connected:
        yield connected


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """An impaired two-node overlay as per-interface pcap files and as -i any pcapng files,
    and a pcap cut inside a record (the last chunk must stop where the whole file's reader
    stops)."""
    root = tmp_path_factory.mktemp("scale")
    impairments = ["queue=5ms", "loss=0.02", "reorder=0.05", "duplicate=0.05"]
    generate(make_scenario("vxlan-overlay", seed=4, impairments=impairments), root / "ether")
    generate(make_scenario("geneve-overlay", seed=5, impairments=impairments), root / "any",
             fmt="pcapng", linktype="sll2")
    ether = sorted((root / "ether").glob("*.pcap"))
    biggest = max(ether, key=lambda p: p.stat().st_size)
    cut = root / "ether" / "cut-copy.pcap"
    data = biggest.read_bytes()
    cut.write_bytes(data[:len(data) - 37])
    return [*ether, cut, *sorted((root / "any").glob("*.pcapng"))]


def _kill_once(marker: str, task: str, kill: bool = True) -> object:
    """A worker plugin that SIGKILLs its worker process as it starts a task whose key holds
    ``task``, once in all (the first to create ``marker``); ``kill=False``: only the
    marker (the task ran on a worker)."""
    from distributed import WorkerPlugin

    class KillOnce(WorkerPlugin):  # (defined in here: pickled by value to the workers)
        def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
            if finish == "executing" and task in str(key):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
                if kill:
                    os.kill(os.getpid(), signal.SIGKILL)

    return KillOnce()


def test_chunks_share_the_workers_by_bytes(tmp_path: Path) -> None:
    """Few captures: cut to keep every worker busy, by bytes; many: one task each, cut only
    past the chunk size; never below the least chunk; a compressed file is never cut."""
    from pktkit.scale.decode import chunk_counts

    sizes = {"big": 3000, "small": 1000, "tiny": 10}
    paths = []
    for name, size in sizes.items():
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(size - 4))  # (a pcap's magic)
        paths.append(path)
    gz = tmp_path / "big.pcap.gz"
    gz.write_bytes(b"\x1f\x8b" + bytes(5000))
    assert chunk_counts(paths[:1], 8, chunk_bytes=10_000, min_chunk_bytes=100) == [8]
    assert chunk_counts(paths[:2], 8, chunk_bytes=10_000, min_chunk_bytes=100) == [6, 2]
    assert chunk_counts(paths, 8, chunk_bytes=10_000, min_chunk_bytes=100) == [6, 2, 1]
    assert chunk_counts(paths[:1], 8, chunk_bytes=10_000, min_chunk_bytes=1000) == [3]
    assert chunk_counts(paths[:1], 1, chunk_bytes=1000, min_chunk_bytes=100) == [3]
    assert chunk_counts(paths * 3, 2, chunk_bytes=10_000, min_chunk_bytes=100) == [1] * 9
    assert chunk_counts([gz, tmp_path / "missing.pcap"], 8, chunk_bytes=100,
                        min_chunk_bytes=1) == [1, 1]


def dataset_inputs(captures: list[Path]) -> list[DatasetCapture]:
    return [DatasetCapture(i.path, i.node, i.label, dict(i.interfaces), i.interface)
            for i in resolve_inputs(captures)]


def assert_same_dataset(got: Path, want: Path) -> None:
    """Equal rows (pandas' reading) and equal manifests but for the parts' names."""
    pd.testing.assert_frame_equal(pd.read_parquet(got), pd.read_parquet(want))
    got_manifest, want_manifest = read_manifest(got), read_manifest(want)
    for entry in [*got_manifest["captures"], *want_manifest["captures"]]:
        entry.pop("parts")
    assert got_manifest == want_manifest


def test_two_workers_write_the_rows_of_one_process(client: object, captures: list[Path],
                                                   tmp_path: Path) -> None:
    inputs = dataset_inputs(captures)
    ports = resolve_ports(captures, "auto")  # (Geneve and VXLAN ports found in the packets)
    one = write_dataset(inputs, tmp_path / "one", ports)
    steps: list[tuple[int, int]] = []
    many = write_on_cluster(client, inputs, tmp_path / "many", ports, chunk_bytes=CHUNK,
                            min_chunk_bytes=1,
                            progress=lambda done, total: steps.append((done, total)))
    assert many == one  # each capture's frames, bytes read, and where a cut one stopped
    assert one[captures.index(captures[-3])].stopped_at is not None  # the cut copy
    parts = [len(c["parts"]) for c in read_manifest(tmp_path / "many")["captures"]]
    assert max(parts) >= 3 and sum(parts) == len(steps) == steps[-1][1]
    assert_same_dataset(tmp_path / "many", tmp_path / "one")
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_a_worker_killed_mid_run_is_retried(own_client: object, captures: list[Path],
                                            tmp_path: Path) -> None:
    client = own_client
    marker = tmp_path / "killed-once"
    inputs = dataset_inputs(captures)
    ports = resolve_ports(captures, "auto")
    write_dataset(inputs, tmp_path / "one", ports)
    client.register_plugin(_kill_once(str(marker), "pktkit-decode"),  # type: ignore[attr-defined]
                           name="pktkit-kill-once")
    try:
        write_on_cluster(client, inputs, tmp_path / "many", ports, chunk_bytes=CHUNK,
                         min_chunk_bytes=1)
    finally:
        client.unregister_worker_plugin("pktkit-kill-once")  # type: ignore[attr-defined]
    assert marker.exists()  # a worker did die in the run
    assert_same_dataset(tmp_path / "many", tmp_path / "one")
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def _values(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each categorical column as its values (a run in parts lists the
    categories in another order) and a fresh index."""
    table = table.reset_index(drop=True)
    for name in table.columns:
        if isinstance(table[name].dtype, pd.CategoricalDtype):
            table[name] = table[name].astype(object).where(table[name].notna(), None)
    return table


def packet_id_mapping(got: pd.DataFrame, want: pd.DataFrame) -> pd.Series:
    """The cluster's packet ids → one process's, from the rows of both packet tables matched
    by (capture, frame); asserts it is a bijection (the same packets, numbered otherwise)."""
    pairs = pd.DataFrame({"got": got["packet_id"], "want": want["packet_id"]}).dropna()
    pairs = pairs.drop_duplicates()
    assert pairs["got"].is_unique and pairs["want"].is_unique  # one to one
    assert pd.isna(got["packet_id"]).equals(pd.isna(want["packet_id"]))
    return pd.Series(pairs["want"].to_numpy(), index=pairs["got"].to_numpy())


def assert_same_report(got: Path, want: Path) -> None:
    """Every table of two report folders equal, the packet ids through a bijection between
    the two numberings: ``want`` one process's (``packets.parquet``), ``got`` a cluster's
    (its packet table the dataset ``packets/``; rows in parts' order, compared by capture
    and frame)."""
    tables = sorted(p.name for p in want.glob("*.parquet"))
    assert {"packets.parquet", "hops.parquet", "latency.parquet", "nat_flows.parquet",
            "clock_offsets.parquet"} <= set(tables)
    got_tables = sorted(p.name for p in got.glob("*.parquet"))
    if (got / "packets").is_dir():  # a run in parts
        assert not (got / "packets.parquet").exists()
        got_tables.append("packets.parquet")
        one = _values(pd.read_parquet(want / "packets.parquet"))
        many = _values(pd.read_parquet(got / "packets"))[list(one.columns)]
        order = ["capture", "frame"]
        one = one.sort_values(order, kind="stable").reset_index(drop=True)
        many = many.sort_values(order, kind="stable").reset_index(drop=True)
        ids = packet_id_mapping(many, one)
        many["packet_id"] = pd.array(many["packet_id"].map(ids), dtype="Int64")
        for name in ("node", "capture"):  # (the dataset's partition columns: categoricals)
            many[name] = many[name].astype(one[name].dtype)
        pd.testing.assert_frame_equal(many, one, obj="packets")
        tables.remove("packets.parquet")
        got_hops = pd.read_parquet(got / "hops.parquet")
        got_hops["packet_id"] = pd.array(got_hops["packet_id"].map(ids), dtype="Int64")
        want_hops = pd.read_parquet(want / "hops.parquet")
        key = ["packet_id", "hop"]
        pd.testing.assert_frame_equal(
            _values(got_hops.sort_values(key)), _values(want_hops.sort_values(key)), obj="hops")
        tables.remove("hops.parquet")
        # hops.csv joined from the parts' lines reads as one process's (ids mapped)
        got_csv, want_csv = pd.read_csv(got / "hops.csv"), pd.read_csv(want / "hops.csv")
        got_csv["packet_id"] = got_csv["packet_id"].map(ids)
        pd.testing.assert_frame_equal(got_csv.sort_values(key).reset_index(drop=True),
                                      want_csv.sort_values(key).reset_index(drop=True),
                                      obj="hops.csv")
        for name in tables:
            pd.testing.assert_frame_equal(_sorted(pd.read_parquet(got / name)),
                                          _sorted(pd.read_parquet(want / name)), obj=name)
        assert sorted(got_tables) == sorted([*tables, "packets.parquet", "hops.parquet"])
        # the same files (CSV, plots, pages), the plots drawn alike
        assert {p.name for p in got.iterdir()} - {"packets"} == \
            {p.name for p in want.iterdir()} - {"packets.parquet"}
        for png in want.glob("*.png"):
            assert (got / png.name).read_bytes() == png.read_bytes(), png.name
        return
    assert tables == got_tables
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(got / name), pd.read_parquet(want / name),
                                      obj=name)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows in the order of their values (latency scopes are listed in packet id
    order; the ids differ), categoricals as values."""
    table = _values(table)
    text = pd.Series(["\x1f".join(map(str, row)) for row in
                      table.itertuples(index=False, name=None)], dtype=object)
    return table.iloc[np.argsort(text.to_numpy(), kind="stable")].reset_index(drop=True)


@pytest.fixture(scope="module")
def analysis_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """A NodePort Service across two nodes (DNAT and masquerade on node-a), node-b's clock
    offset and drifting, the underlay impaired; and their single-process report."""
    root = tmp_path_factory.mktemp("analysis")
    generate(make_scenario("k8s-nodeport", seed=6, flows=12, clock_offset_s=0.2,
                           clock_drift_ppm=40, impairments=["queue=2ms", "loss=0.02",
                                                            "reorder=0.05",
                                                            "duplicate=0.05"]),
             root / "vx", fmt="pcapng", linktype="sll2")
    files = sorted((root / "vx").glob("*.pcapng"))
    write_analysis(analyze(files), root / "one")
    return files, root / "one"


def test_analyze_on_the_cluster_is_the_single_process(client: object, analysis_set: tuple,
                                                      tmp_path: Path) -> None:
    files, one = analysis_set
    summary, notes = analyze_on_cluster(client, files, tmp_path / "many")
    assert summary["correlation"]["packets"] > 50 and summary["counts"]["nat_flows"] > 5
    assert notes == []
    assert_same_report(tmp_path / "many", one)
    # a dataset as the input: the same analysis (its metadata given: a dataset has none)
    write_dataset(dataset_inputs(files), tmp_path / "ds", resolve_ports(files, ()))
    analyze_on_cluster(client, [tmp_path / "ds"], tmp_path / "from-ds",
                       options={"k8s": [files[0].parent / "kubectl.json"]})
    assert_same_report(tmp_path / "from-ds", one)
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]  # scratch removed


@pytest.mark.parametrize("stage", ["survey", "named"])
def test_a_worker_killed_in_the_correlation_or_the_tables_is_retried(
        own_client: object, analysis_set: tuple, tmp_path: Path, stage: str) -> None:
    """Killed in a survey round, or while it applies the NAT flow ids and names (the parts,
    assigned, live on the workers): Dask makes the lost parts again from their lineage, the
    report is the same."""
    client = own_client
    files, one = analysis_set
    marker = tmp_path / "killed-once"
    client.register_plugin(_kill_once(str(marker), stage),  # type: ignore[attr-defined]
                           name=f"pktkit-kill-{stage}")
    try:
        analyze_on_cluster(client, files, tmp_path / "many")
    finally:
        client.unregister_worker_plugin(f"pktkit-kill-{stage}")  # type: ignore[attr-defined]
    assert marker.exists()  # a worker died holding parts: Dask made them again
    assert_same_report(tmp_path / "many", one)


def test_the_pair_fits_run_on_the_workers(client: object, analysis_set: tuple,
                                         tmp_path: Path) -> None:
    """The clock round's pair fits are tasks on the workers, not the client's work (they grow
    with the square of the nodes); the report is the same."""
    files, one = analysis_set
    marker = tmp_path / "pair-fits-ran"
    client.register_plugin(_kill_once(str(marker), "pair-fits", kill=False),  # type: ignore[attr-defined]
                           name="pktkit-mark-pair-fits")
    try:
        analyze_on_cluster(client, files, tmp_path / "many")
    finally:
        client.unregister_worker_plugin("pktkit-mark-pair-fits")  # type: ignore[attr-defined]
    assert marker.exists()
    assert_same_report(tmp_path / "many", one)


def test_bundles_on_the_cluster_are_one_task_of_the_single_process(
        client: object, analysis_set: tuple, tmp_path: Path) -> None:
    """Bundles (their node addresses and links belong to the reading of their captures): the
    single-process analysis as one task, its report moved into place by the client."""
    from bundle_checks import make_bundles

    files, _ = analysis_set
    bundles = list(make_bundles(files[0].parent, tmp_path / "bundles", addresses={
        "node-a": ["192.168.50.11"], "node-b": ["192.168.50.12"]}).values())
    alone = analyze(bundles)
    write_analysis(alone, tmp_path / "one")
    summary, notes = analyze_on_cluster(client, bundles, tmp_path / "many")
    assert summary["correlation"]["packets"] > 50 and notes == alone.notes
    assert_same_report(tmp_path / "many", tmp_path / "one")
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_bad_cluster_arguments_are_one_line_errors(captures: list[Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale_cluster, "CONNECT_TIMEOUT_S", 1)
    capture, out = str(captures[0]), f"{tmp_path / 'ds'}/"
    for args, says in (
        (["packets", capture, "-o", out, "--workers", "0"], "invalid workers value: '0'"),
        (["analyze", capture, "-o", str(tmp_path / "r"), "--workers", "many"], "'many'"),
        (["packets", capture, "-o", out, "--scheduler", "tcp://127.0.0.1:9"],
         "--scheduler tcp://127.0.0.1:9: cannot connect"),
        (["analyze", capture, "-o", str(tmp_path / "r"), "--scheduler", "tcp://127.0.0.1:9"],
         "--scheduler tcp://127.0.0.1:9: cannot connect"),
        (["packets", capture, "-o", str(tmp_path / "t.parquet"), "--workers", "2"],
         "give -o DIR/"),
        (["packets", capture, "--workers", "2"], "give -o DIR/"),
        (["packets", capture, "-o", out, "--workers", "2", "--scheduler", "tcp://x:1"],
         "give it without --workers"),
        (["analyze", capture, "-o", str(tmp_path / "r"), "--workers", "2", "--memory-limit",
          "1GB"], "invalid memory_limit value: '1GB'"),
        (["packets", capture, "-o", out, "--workers", "2", "--memory-limit", "lots"],
         "invalid memory_limit value: 'lots'"),
        (["analyze", capture, "-o", str(tmp_path / "r"), "--memory-limit", "2GB"],
         "give it with --workers N"),
        (["packets", capture, "-o", out, "--scheduler", "tcp://x:1", "--memory-limit", "2GB"],
         "give it with --workers N"),
    ):
        code, stdout, stderr = main(*args)
        assert (code, stdout) == (2, ""), args
        assert stderr.count("\n") == 1 and says in stderr, (args, stderr)
    assert not list(tmp_path.iterdir())  # nothing written, nothing left


def test_cli_analyze_on_a_scheduler(client: object, analysis_set: tuple,
                                    tmp_path: Path) -> None:
    files, one = analysis_set
    address = client.scheduler.address  # type: ignore[attr-defined]
    code, out, err = main("analyze", *map(str, files), "-o", str(tmp_path / "r"),
                          "--scheduler", address)
    assert code == 0, err
    assert err.startswith(f"pktkit: Dask cluster at {address}: 2 workers; dashboard http")
    assert out.startswith("k8s-nodeport: ") or "NAT flow" in out
    assert_same_report(tmp_path / "r", one)


def test_cli_packets_on_two_workers(captures: list[Path], tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())  # (the module's cluster, if it runs)
    code, _, err = main("packets", *map(str, captures[:4]), "-o", str(tmp_path / "one") + "/",
                        "-q")
    assert code == 0 and err == ""
    code, out, err = main("packets", *map(str, captures[:4]), "-o", str(tmp_path / "two") + "/",
                          "--workers", "2", "--memory-limit", "1.6GB")
    assert code == 0, err
    # the limit as the scheduler knows it: 1.6e9 bytes
    assert err.startswith("pktkit: Dask cluster: 2 workers of 1 thread and 1.49 GiB of "
                          "memory; dashboard http")
    assert out.strip().endswith(f"from 4 captures written to {tmp_path / 'two'}/")
    assert_same_dataset(tmp_path / "two", tmp_path / "one")
    assert set(multiprocessing.active_children()) <= before  # its cluster is gone


@pytest.mark.parametrize(("verb", "signum", "delay"), [
    ("packets", signal.SIGINT, 1.0), ("packets", signal.SIGTERM, 3.0),
    ("analyze", signal.SIGINT, 4.0)])
def test_a_stopped_run_leaves_nothing(captures: list[Path], analysis_set: tuple,
                                      tmp_path: Path, verb: str, signum: int,
                                      delay: float) -> None:
    """Stopped while the cluster starts, decodes or correlates: one line, the signal's exit
    code, no worker process left, no staged or scratch folder left (the cluster is closed
    before they go, so no worker writes into them after)."""
    import subprocess
    import sys
    import time
    import uuid

    if verb == "packets":
        given = tmp_path / "in"
        given.mkdir()
        for i in range(150):
            (given / f"copy-{i}.pcap").write_bytes(captures[0].read_bytes())
        args = ["packets", str(given), "-o", f"{tmp_path / 'out'}/"]
    else:
        args = ["analyze", *map(str, analysis_set[0]), "-o", str(tmp_path / "out")]
    token = uuid.uuid4().hex
    run = subprocess.Popen([sys.executable, "-m", "pktkit.cli", *args, "--workers", "2"],
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, "PKTKIT_TEST_RUN": token})
    deadline = time.monotonic() + 60
    while not _catches(run.pid, signal.SIGTERM):  # main() has begun: the run is ours to stop
        assert run.poll() is None and time.monotonic() < deadline, "pktkit never started"
        time.sleep(0.01)
    time.sleep(delay)
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    lines = [line for line in err.splitlines() if not line.startswith("pktkit: Dask cluster")]
    if run.returncode == 0:  # (a fast machine finished first: then the output is whole)
        assert (tmp_path / "out").is_dir(), err
    else:
        assert run.returncode == 128 + signum, err
        assert len(lines) == 1 and lines[0].startswith("pktkit: "), err
        assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name], err
    deadline = time.monotonic() + 30
    while _processes_with(token):  # (a worker's nanny may take a moment to see it go)
        assert time.monotonic() < deadline, "worker processes left behind"
        time.sleep(0.2)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (the kernel's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def _processes_with(token: str) -> list[str]:
    """The processes whose environment holds ``token`` (the run's and its children's)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if token.encode() in environ.read_bytes():
                found.append(environ.parent.name)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("scenario", ["vxlan-overlay", "docker-snat"])
def test_more_scenarios_on_the_cluster_are_the_single_process(
        client: object, scenario: str, tmp_path: Path) -> None:
    """VXLAN's two tenants with the same pod addresses (conversations told apart by their
    overlay across parts), Docker's masquerade (NAT flows and names from docker.json), with
    drops, reordering and duplicates."""
    generate(make_scenario(scenario, seed=8, flows=16,
                           impairments=["queue=1ms", "loss=0.02", "reorder=0.05",
                                        "duplicate=0.05"]), tmp_path / "in")
    files = sorted((tmp_path / "in").glob("*.pcap"))
    alone = write_analysis(analyze(files), tmp_path / "one")
    summary, _ = analyze_on_cluster(client, files, tmp_path / "many")
    assert summary["correlation"]["packets"] > 50
    assert_same_report(tmp_path / "many", tmp_path / "one")
    assert _scopes_sorted(summary) == _scopes_sorted(alone)
    many = pd.read_parquet(tmp_path / "many" / "packets")
    if scenario == "vxlan-overlay":  # both tenants' VNIs, one pod address in both
        assert set(many["overlay_vni"].dropna()) == {1, 2}
    else:
        assert many["nat_flow_id"].notna().any() and summary["counts"]["nat_flows"] > 0


def _scopes_sorted(summary: dict) -> dict:
    """``summary`` with each latency metric's scopes in name order (they are listed in
    packet id order)."""
    import json

    summary = json.loads(json.dumps(summary))
    for metric, rows in summary.get("latency", {}).items():
        summary["latency"][metric] = sorted(rows, key=lambda row: json.dumps(row))
    return summary


def _copies(source: Path, target: Path, copies: int, apart_s: int = 100) -> list[Path]:
    """Each pcap of ``source`` as ``copies`` copies of its records one after the other,
    ``apart_s`` seconds apart (the same conversations, ``copies`` times the frames); the
    metadata files beside them copied."""
    import shutil
    import struct

    target.mkdir()
    for item in source.glob("*.json"):
        shutil.copy(item, target / item.name)
    files = []
    for path in sorted(source.glob("*.pcap")):
        data = path.read_bytes()
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        records, at = [], 24
        while at + 16 <= len(data):  # (record header: seconds, fraction, saved, wire length)
            seconds, rest = struct.unpack_from(order + "I", data, at)[0], data[at + 4:at + 16]
            saved = struct.unpack_from(order + "I", data, at + 8)[0]
            records.append((seconds, rest, data[at + 16:at + 16 + saved]))
            at += 16 + saved
        with (target / path.name).open("wb") as f:
            f.write(data[:24])
            for k in range(copies):
                for seconds, rest, body in records:
                    f.write(struct.pack(order + "I", seconds + k * apart_s) + rest + body)
        files.append(target / path.name)
    return files


def test_what_the_client_receives_does_not_grow_with_frames(
        client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partials gathered from the workers at each step, pickled: the same conversations
    in 4× the frames (the capture repeated, 100 s apart) give the same bytes for the steps
    whose partials are per conversation, NAT connection, scope or histogram bin (the
    packets' count per part, and the hops table, are not among them)."""
    import pickle

    from pktkit.scale import tables as scale_tables

    generate(make_scenario("docker-snat", seed=9), tmp_path / "in")
    step = scale_tables._step
    sizes: dict[str, int] = {}

    def measured(client: object, held: list, task: object, *args: object,
                 **shared: object) -> tuple[list, list]:
        new, outs = step(client, held, task, *args, **shared)  # type: ignore[arg-type]
        sizes[task.__name__] = len(pickle.dumps(outs))  # type: ignore[attr-defined]
        return new, outs

    merged_reports = scale_tables.merged_reports

    def measured_reports(client: object, held: list, underlay_mtu: int, folder: Path
                         ) -> list:
        reports = merged_reports(client, held, underlay_mtu, folder)  # type: ignore[arg-type]
        sizes["reports"] = len(pickle.dumps(reports))
        return reports

    monkeypatch.setattr(scale_tables, "_step", measured)
    monkeypatch.setattr(scale_tables, "merged_reports", measured_reports)
    found = {}
    for copies in (1, 4):
        files = _copies(tmp_path / "in", tmp_path / f"x{copies}", copies)
        summary, _ = analyze_on_cluster(client, files, tmp_path / f"out{copies}")
        found[copies] = (summary["correlation"]["frames"], dict(sizes))
    (frames_1, once), (frames_4, four) = found[1], found[4]
    assert frames_4 == 4 * frames_1
    assert set(once) == set(four) == {"numbered", "flows", "counted", "named", "acked",
                                      "sampled", "reports", "binned"}
    for name in ("numbered", "flows", "counted", "acked", "sampled", "reports", "binned"):
        assert four[name] <= 1.1 * once[name], (name, once[name], four[name])
    # the handshakes' openings: per SYN and SYN-ACK (a handshake's three packets may be in
    # three parts), so they grow with the connections opened, not with the frames
    assert four["named"] < 2 * once["named"], (once["named"], four["named"])


def test_an_empty_capture_on_the_cluster(client: object, analysis_set: tuple,
                                         tmp_path: Path) -> None:
    """A header-only capture (an N-node set's idle pod) among the captures: its part has no
    rows; the report is the single process's."""
    import struct

    files, _ = analysis_set
    empty = tmp_path / "idle" / "idle-veth.pcap"  # pcap header: v2.4, Ethernet, no record
    empty.parent.mkdir()
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    given = [*files, empty]
    write_analysis(analyze(given), tmp_path / "one")
    analyze_on_cluster(client, given, tmp_path / "many")
    assert_same_report(tmp_path / "many", tmp_path / "one")


def test_a_steps_shared_state_reaches_the_cluster_once(client: object, tmp_path: Path) -> None:
    """A step's shared state (the pending handshakes, the NAT flows: 41 MB pickled at 10.9M
    frames) is made into objects once for all the step's parts, not once per part: given to
    each of P tasks, it was P copies in the graph and one per task on each worker, and the
    1.5 GB workers of a 10.9M-frame run died in the acked step. Counted where it is
    unpickled (a file per unpickling; the scheduler and workers alike), over 8 parts; each
    task still gets the whole state."""
    from pktkit.scale import tables as scale_tables

    marks = tmp_path / "unpickled"
    marks.mkdir()
    parts = 8

    def unpickled(folder: str, payload: bytes) -> bytes:
        (Path(folder) / f"{os.getpid()}-{os.urandom(4).hex()}").touch()
        return payload

    class Noted:  # (defined here: pickled by value, so the workers need no test module)
        def __reduce__(self) -> tuple:
            return unpickled, (str(marks), b"x" * 1000)

    def measure(held: scale_tables.Held, scale: int, *, state: bytes) -> scale_tables.Held:
        return scale_tables.Held(held.part, held.index, out=scale * len(state))

    held = [client.submit(scale_tables.Held, None, i, pure=False)  # type: ignore[attr-defined]
            for i in range(parts)]
    _, outs = scale_tables._step(client, held, measure, list(range(parts)), state=Noted())
    assert outs == [i * 1000 for i in range(parts)]
    assert 1 <= len(list(marks.iterdir())) <= 2, sorted(p.name for p in marks.iterdir())


def test_a_large_graph_is_not_announced() -> None:
    """A task given more than 10 MB (a step's shared state, given to each task on purpose)
    makes Dask warn "Sending large graph"; under dask_client the CLI's stderr stays one-line
    messages. Outside it, the same submission does warn (the check can fail)."""
    import warnings

    big = b"x" * (12 << 20)
    with dask_client(1, dashboard_address=":0") as client, \
            warnings.catch_warnings(record=True) as seen:  # (dask_client's filters kept)
        assert client.submit(len, big, pure=False).result() == len(big)
        quiet = [str(w.message) for w in seen]
        with warnings.catch_warnings(record=True) as outside:  # (the filter lifted)
            warnings.simplefilter("always")
            client.submit(len, big + b"y", pure=False).result()
    assert not [m for m in quiet if "large graph" in m]
    assert [w for w in outside if "large graph" in str(w.message)]


def test_rows_at_any_offset_are_written_without_arrow_warnings(tmp_path: Path) -> None:
    """Rows a worker received from another may sit at any byte offset of the message: Arrow's
    dataset writer printed "An input buffer was poorly aligned" for each such buffer on the
    user's terminal (30 lines on a 3M-frame run). Once pktkit.scale is imported (every task of
    it imports it on its worker), such buffers are copied instead, silently."""
    script = (
        "import sys, numpy as np, pyarrow as pa, pyarrow.dataset as ds\n"
        "if sys.argv[2] == 'scale':\n"
        "    import pktkit.scale\n"
        "values = np.frombuffer(bytearray(8001), np.int64, count=1000, offset=1)\n"
        "ds.write_dataset(pa.table({'x': values, 'node': ['a'] * 1000}), sys.argv[1],\n"
        "                 format='parquet', partitioning=['node'], partitioning_flavor='hive')\n"
        "print(pa.dataset.dataset(sys.argv[1], partitioning='hive').to_table()['x'].to_pylist()"
        " == values.tolist())\n")
    env = {k: v for k, v in os.environ.items() if k != "ACERO_ALIGNMENT_HANDLING"}
    for imported, warned in (("scale", False), ("arrow-only", True)):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / imported), imported],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0 and done.stdout == "True\n", done.stderr
        assert ("poorly aligned" in done.stderr) is warned, done.stderr
        assert warned or done.stderr == ""


def test_a_task_whose_workers_all_die_is_a_one_line_cluster_error() -> None:
    """KilledWorker (a task that killed every worker it ran on; no retry allowed here) leaves
    dask_client as a ClusterError saying what to do, and the cluster is closed."""
    import dask

    from pktkit.errors import ClusterError

    before = set(multiprocessing.active_children())
    says = r"died every time .*\(--memory-limit, at least 1.5GB\)"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            pytest.raises(ClusterError, match=says) as caught, \
            dask_client(1, dashboard_address=":0") as connected:
        connected.submit(os._exit, 3, pure=False).result()  # type: ignore[attr-defined]
    assert caught.value.exit_code == 1 and "\n" not in str(caught.value)
    assert set(multiprocessing.active_children()) <= before


def test_dask_counts_the_memory_of_the_parts_it_holds(analysis_set: tuple) -> None:
    """A Part (and a tables step's Held) is sized by its attributes: at least its rows'
    memory, where Dask's default (sys.getsizeof) said ~56 bytes and workers saw their parts as
    unmanaged memory they could not spill."""
    from dask.sizeof import sizeof

    from pktkit.analysis.parts import Part, Scope
    from pktkit.analysis.table_parts import PacketPart
    from pktkit.scale.tables import Held

    _, one = analysis_set
    packets = pd.read_parquet(one / "packets.parquet")
    scope = Scope.of_captures(list(dict.fromkeys(zip(packets["capture"], packets["node"],
                                                     strict=True))),
                              list(dict.fromkeys(packets["node"])), 10**9)
    part = Part(packets, scope)
    rows = int(packets.memory_usage(deep=True).sum())
    units = sum(sizeof(v) for v in vars(part.units).values())
    assert rows > 100_000 and sizeof(part) >= rows + units
    held = Held(PacketPart(packets, packets.head(0), np.zeros(len(packets), np.int64)), 0)
    assert sizeof(held) >= rows + 8 * len(packets)


def test_the_rounds_on_a_worker_never_change_the_part_it_holds(analysis_set: tuple) -> None:
    """Dask may pickle a held part (to spill it, or to send it) while a task works on it: each
    round's task works on a copy, the held part stays as it was (its attributes the same
    objects, its arrays the same values), and the rounds still settle. At 10.9M frames with
    1.5GB workers a part changed in place was spilled half done and the next round failed."""
    from pktkit.analysis.parts import Part, Scope, Survey, settle
    from pktkit.scale.correlate import survey

    _, one = analysis_set
    packets = pd.read_parquet(one / "packets.parquet")
    scope = Scope.of_captures(list(dict.fromkeys(zip(packets["capture"], packets["node"],
                                                     strict=True))),
                              list(dict.fromkeys(packets["node"])), 10**9)
    part, settled, rounds = Part(packets, scope), None, 0
    while settled is None or not settled.ready:
        held = {name: (value, copy.deepcopy(value)) for name, value in vars(part).items()
                if name != "packets"}
        held_units = {name: (value, copy.deepcopy(value))
                      for name, value in vars(part.units).items()}
        found = survey(part, settled)
        for attributes, now in ((held, vars(part)), (held_units, vars(part.units))):
            for name, (same, equal) in attributes.items():
                assert now[name] is same, name
                if isinstance(equal, np.ndarray):
                    assert np.array_equal(now[name], equal), name
        rounds += 1
        settled = settle(Survey.merge([found]), previous=settled)
    assert rounds == 7 and part.uts is None and not part.renumbered  # as make_part made it
