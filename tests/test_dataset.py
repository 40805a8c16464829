"""pktkit.capture.dataset: ``pktkit packets CAPTURE... -o DIR/`` writes the packet table as a
hive-partitioned Parquet dataset that pandas and dask.dataframe read back with the documented
schema, that ``pktkit analyze`` reads as it reads the captures, and that appears whole or not
at all. The captures are generated with the real world's trouble (impairments, pcapng from
``tcpdump -i any``, a cut file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

from pktkit import cli
from pktkit.analysis.inputs import read_table, resolve_inputs
from pktkit.analysis.pipeline import analyze
from pktkit.capture.dataset import MANIFEST, read_capture, read_manifest
from pktkit.capture.read import CaptureCutWarning
from pktkit.craft.generation import generate, make_scenario

PARTITIONS = ["node", "capture"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A two-node VXLAN overlay recorded with -i any (pcapng, SLL2) under queueing, loss,
    reordering and duplicates, plus a copy of one capture cut inside a record."""
    root = tmp_path_factory.mktemp("dataset")
    scenario = make_scenario("vxlan-overlay", seed=3, impairments=[
        "queue=5ms", "loss=0.02", "reorder=0.05", "duplicate=0.05"])
    generate(scenario, root / "gen", fmt="pcapng", linktype="sll2")
    files = sorted((root / "gen").glob("*.pcapng"))
    whole = files[0].read_bytes()
    cut = root / "gen" / "cut-copy.pcapng"
    cut.write_bytes(whole[:len(whole) * 2 // 3])
    return [*files, cut]


def write(captures: list[Path], out: str, *more: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["packets", *map(str, captures), "-o", out, "-q", *more])
    return code, err.getvalue()


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as strings (their category lists differ by reader, their values not)."""
    return df.astype({c: "string" for c in df.columns
                      if isinstance(df[c].dtype, pd.CategoricalDtype)})


@pytest.mark.filterwarnings("ignore::Warning:dask.dataframe.io.parquet.arrow")
def test_pandas_and_dask_read_the_documented_schema(captures: list[Path],
                                                    tmp_path: Path) -> None:
    code, err = write(captures, f"{tmp_path / 'ds'}/")
    assert code == 0
    assert err.count("pktkit: warning: cut-copy.pcapng") == 1  # the cut copy, as packets -o
    with pytest.warns(CaptureCutWarning):  # what analyze reads: nodes, interfaces
        expected = read_table(resolve_inputs(captures))
    assert expected["node"].nunique() == 3  # (the cut copy is a node of its own)
    for got in (pd.read_parquet(tmp_path / "ds"),
                dd.read_parquet(str(tmp_path / "ds")).compute().reset_index(drop=True)):
        # the table's columns in its order and dtypes, then the partitions as categoricals
        columns = [c for c in expected.columns if c not in PARTITIONS]
        assert list(got.columns) == [*columns, *PARTITIONS]
        for name in PARTITIONS:
            assert isinstance(got[name].dtype, pd.CategoricalDtype)
        for name in columns:
            if name in ("encap", "error"):  # categories: those seen, in the reader's order
                assert isinstance(got[name].dtype, pd.CategoricalDtype)
            else:
                assert got[name].dtype == expected[name].dtype, name
        # rows: in node, capture, frame order (folders in name order)
        want = expected.sort_values([*PARTITIONS, "frame"], kind="stable")
        want = want.reset_index(drop=True)[[*columns, *PARTITIONS]]
        pd.testing.assert_frame_equal(plain(got), plain(want))
    manifest = read_manifest(tmp_path / "ds")
    cut = next(c for c in manifest["captures"] if c["capture"] == "cut-copy.pcapng")
    assert cut["read_stats"]["stopped_at"] is not None
    assert cut["frames"] == int((expected["capture"] == "cut-copy.pcapng").sum())


def test_each_capture_reads_back_as_the_table(captures: list[Path], tmp_path: Path) -> None:
    assert write(captures, f"{tmp_path / 'ds'}/")[0] == 0
    manifest = read_manifest(tmp_path / "ds")
    assert [c["capture"] for c in manifest["captures"]] == [p.name for p in captures]
    back = pd.concat([read_capture(tmp_path / "ds", entry) for entry in manifest["captures"]],
                     ignore_index=True)
    with pytest.warns(CaptureCutWarning):
        expected = read_table(resolve_inputs(captures)).drop(columns="node")
    expected.attrs = {}
    # flow ids numbered across the dataset as across one table: exactly equal
    for name in ("encap", "error"):
        back[name] = back[name].cat.set_categories(expected[name].cat.categories)
    pd.testing.assert_frame_equal(back, expected)


def test_analyze_reads_a_dataset_as_its_captures(captures: list[Path], tmp_path: Path) -> None:
    whole = captures[:-1]  # (the cut copy would be a third capture point of one node)
    assert write(whole, f"{tmp_path / 'ds'}/")[0] == 0
    assert write(whole[:1], f"{tmp_path / 'first'}/")[0] == 0
    direct = analyze(whole)
    for given in ([tmp_path / "ds"], [tmp_path / "first", *whole[1:]]):  # alone, mixed
        found = analyze(given)
        assert found.packets["packet_id"].notna().sum() > 0.9 * len(found.packets)
        for name in ("packets", "hops", "nat_flows", "latency", "clock_offsets", "handshakes"):
            got, want = getattr(found, name), getattr(direct, name)
            got.attrs, want.attrs = {}, {}
            pd.testing.assert_frame_equal(got, want, obj=name)


def test_written_whole_or_not_at_all(captures: list[Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a file that is no capture: exit 2, one line, nothing written beside
    junk = tmp_path / "notes.pcap"
    junk.write_text("not a capture\n")
    out = tmp_path / "out"
    code, err = write([captures[0], junk], f"{out}/")
    assert code == 2 and err.count("\n") == 1 and "notes.pcap" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pcap"]
    # a folder holding something else is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, err = write(captures[:1], str(other))
    assert code == 2 and "neither empty nor a pktkit dataset" in err
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    # a dataset rewritten with one node's captures keeps no folder of the other node
    assert write(captures[:2], f"{out}/")[0] == 0
    nodes = {p.name for p in out.iterdir() if p.name.startswith("node=")}
    assert len(nodes) == 2
    assert write(captures[:1], str(out))[0] == 0  # an existing folder is a dataset target
    left = {p.name for p in out.iterdir()}
    assert left == {MANIFEST, f"node={read_manifest(out)['captures'][0]['node']}"}
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_partition_values_are_encoded(captures: list[Path], tmp_path: Path) -> None:
    # two files of one name: their labels hold a "/", kept in one folder level by encoding
    for side in ("left dir", "right"):
        (tmp_path / side).mkdir()
        shutil.copy(captures[0], tmp_path / side / "same.pcapng")
    files = [tmp_path / "left dir" / "same.pcapng", tmp_path / "right" / "same.pcapng"]
    assert write(files, f"{tmp_path / 'ds'}/")[0] == 0
    labels = ["left dir/same.pcapng", "right/same.pcapng"]
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert [c["capture"] for c in manifest["captures"]] == labels
    back = pd.read_parquet(tmp_path / "ds")
    assert sorted(back["capture"].astype(str).unique()) == labels
    # (each file's node is its label's stem, as analyze names it: a "/" in the node too)
    assert sorted(back["node"].astype(str).unique()) == ["left dir/same", "right/same"]


@pytest.mark.filterwarnings("ignore::Warning:dask.dataframe.io.parquet.arrow")
def test_an_empty_capture_in_a_dataset(captures: list[Path], tmp_path: Path) -> None:
    """A header-only capture (an N-node set's pod nobody talked to) is a dataset part with no
    rows and categoricals without categories; the dataset analyzes as its captures do (it
    used to raise 'dtype of categories must be the same' while joining the parts)."""
    import struct

    empty = tmp_path / "idle-veth.pcap"  # pcap header: magic, v2.4, Ethernet, no record
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    given = [*captures[:-1], empty]
    assert write(given, f"{tmp_path / 'ds'}/")[0] == 0
    direct, found = analyze(given), analyze([tmp_path / "ds"])
    assert len(found.packets) == len(direct.packets) > 0
    for name in ("packets", "hops", "latency", "clock_offsets"):
        got, want = getattr(found, name), getattr(direct, name)
        got.attrs, want.attrs = {}, {}
        pd.testing.assert_frame_equal(got, want, obj=name)
