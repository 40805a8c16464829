"""pktkit.analyze and ``pktkit analyze``: inputs and node names, the tables and their schemas,
the output folder (complete or absent), the command line's modes and its errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import pktkit
from pktkit import cli
from pktkit.analysis import clocks, hops, latency
from pktkit.analysis import inputs as capture_inputs
from pktkit.analysis import pipeline as analysis
from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
from pktkit.craft.generation import generate, make_scenario
from pktkit.errors import CaptureError, OutputError, UsageError
from pktkit.report import folder
from pktkit.report.tables import NAT_NAME_COLUMNS, analysis_tables

REPORT_FILES = {"index.html", "summary.md", "summary.json", "packets.parquet"}
TABLES = ("captures", "overlays", "overhead", "flows", "nat_flows", "latency", "clock_offsets",
          "hops", "handshakes", "errors", "checksums")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis")
    made = {}
    for name, scenario, linktype, fmt in [("snat", "docker-snat", "ether", "pcap"),
                                          ("snat-any", "docker-snat", "sll2", "pcap"),
                                          ("vx-any", "vxlan-overlay", "sll2", "pcapng")]:
        made[name] = root / name
        generate(make_scenario(scenario, seed=1, clock_offset_s=0.25 if name == "vx-any"
                               else 0.0), made[name], fmt=fmt, linktype=linktype)
    return made


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- the API --------------------------------------------------------------------------------


def test_tables_and_schemas(folders: dict[str, Path]) -> None:
    found = pktkit.analyze(folders["vx-any"])
    assert isinstance(found, analysis.Analysis)
    for name in ("packet_id", "hop", "nat_flow_id", "node", "ts_ref_ns", "overlay_encap",
                 "overlay_vni"):
        assert name in found.packets
    assert str(found.packets["overlay_vni"].dtype) == "UInt32"
    assert str(found.packets["overlay_encap"].dtype) == "category"
    assert str(found.packets["packet_id"].dtype) == "Int64"
    assert found.packets["packet_id"].notna().all() and found.packets["hop"].notna().all()
    for table, schema in [(found.hops, hops.HOPS_SCHEMA),
                          (found.latency, latency.LATENCY_SCHEMA),
                          (found.clock_offsets, clocks.CLOCK_SCHEMA),
                          (found.handshakes, {**latency.HANDSHAKES_SCHEMA,
                                              "src_name": "category", "dst_name": "category"})]:
        assert {c: str(t) for c, t in table.dtypes.items()} == schema
    assert list(found.nat_flows.columns[:len(NAT_FLOWS_COLUMNS)]) == NAT_FLOWS_COLUMNS
    assert list(analysis_tables(found)) == list(TABLES)
    # one row per sighting; ts_ns on the reference clock
    assert len(found.hops) == found.packets.groupby(["packet_id", "hop"]).ngroups
    node_b = found.hops["node"] == "node-b"
    model = found.clock_offsets.set_index("node").loc["node-b"]
    assert abs(model["applied_ns"] - 250_000_000) < 100_000
    merged = found.hops[node_b].merge(found.packets[["capture", "frame", "ts_ns"]],
                                      on=["capture", "frame"], suffixes=("", "_raw"))
    reference = merged["ts_ns"].astype("int64")
    shift = model["offset_ns"] + model["drift_ppm"] * 1e-6 * (reference - model["at_ns"])
    assert ((merged["ts_ns_raw"].astype("int64") - reference - shift).abs() <= 2).all()


def test_nodes_and_interfaces_come_from_the_capture_set(folders: dict[str, Path]) -> None:
    inputs = capture_inputs.resolve_inputs([folders["snat-any"]])
    assert [(i.path.name, i.node) for i in inputs] == [("host-any.pcap", "host")]
    assert inputs[0].interfaces[5] == "veth-c1"
    packets = capture_inputs.read_table(inputs)  # SLL2 pcap: only indexes in the file
    assert set(packets["interface"].unique()) == {"veth-c1", "veth-c2", "docker0", "eth0"}
    per_interface = capture_inputs.read_table(capture_inputs.resolve_inputs([folders["snat"]]))
    assert set(per_interface["interface"].unique()) == {"veth-c1", "veth-c2", "docker0", "eth0"}


def test_without_capture_set_each_file_is_a_node_unless_named(folders: dict[str, Path],
                                                              tmp_path: Path) -> None:
    for path in folders["vx-any"].glob("*.pcapng"):
        shutil.copy(path, tmp_path / path.name)
    found = analysis.analyze(tmp_path)
    assert sorted(found.packets["node"].unique()) == ["node-a-any", "node-b-any"]
    named = analysis.analyze([], nodes={tmp_path / "node-a-any.pcapng": "a",
                                        tmp_path / "node-b-any.pcapng": "b"})
    assert sorted(named.clock_offsets["node"]) == ["a", "b"]
    assert named.packets["packet_id"].nunique() == found.packets["packet_id"].nunique()


def test_files_of_one_name_in_two_folders_keep_apart(folders: dict[str, Path],
                                                     tmp_path: Path) -> None:
    for node in ("node-a", "node-b"):
        (tmp_path / node).mkdir()
        shutil.copy(folders["vx-any"] / f"{node}-any.pcapng", tmp_path / node / "any.pcapng")
    found = analysis.analyze([tmp_path / "node-a" / "any.pcapng",
                              tmp_path / "node-b" / "any.pcapng"])
    assert sorted(found.packets["capture"].unique()) == ["node-a/any.pcapng",
                                                         "node-b/any.pcapng"]
    assert sorted(found.packets["node"].unique()) == ["node-a/any", "node-b/any"]
    assert found.packets["packet_id"].nunique() == 66


def test_missing_capture_and_bad_dump_fail_before_reading(folders: dict[str, Path],
                                                          tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such capture"):
        analysis.analyze(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="no capture files"):
        analysis.analyze(tmp_path)
    dump = tmp_path / "ct.txt"
    dump.write_text("this is not conntrack\n")
    with pytest.raises(UsageError, match="conntrack dump"):
        analysis.analyze(folders["snat"], conntrack=[(None, dump)])


# -- the output folder ------------------------------------------------------------------------


def test_write_analysis_writes_everything(folders: dict[str, Path], tmp_path: Path) -> None:
    found = analysis.analyze(folders["snat"])
    out = tmp_path / "deep" / "out"
    result = folder.write_analysis(found, out)
    files = listing(out)
    assert files >= REPORT_FILES
    for table in TABLES:
        assert {f"{table}.csv", f"{table}.parquet"} <= files, table
    assert {"latency_hop.png", "nat_timeline.png"} <= files
    assert list(pd.read_csv(out / "nat_flows.csv").columns) == [*NAT_FLOWS_COLUMNS,
                                                                *NAT_NAME_COLUMNS]
    assert len(pd.read_csv(out / "nat_flows.csv")) == 6
    hops_csv = pd.read_csv(out / "hops.csv")
    assert list(hops_csv.columns) == list(hops.HOPS_SCHEMA)
    back = pd.read_parquet(out / "packets.parquet")
    assert len(back) == len(found.packets) and "packet_id" in back
    assert json.loads((out / "summary.json").read_text()) == result
    assert result["correlation"]["packets"] == found.packets["packet_id"].nunique()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_nothing(folders: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    found = analysis.analyze(folders["snat"])

    def broken(*args: object, **kwargs: object) -> None:
        raise OutputError("disk full")

    monkeypatch.setattr("pktkit.report.folder.write_report", broken)
    with pytest.raises(OutputError, match="disk full"):
        folder.write_analysis(found, tmp_path / "new" / "out")
    assert listing(tmp_path) == set()
    # an existing folder keeps what it had
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        folder.write_analysis(found, tmp_path / "old")
    assert listing(tmp_path) == {"old", "old/keep.txt"}


def test_rewriting_a_folder_replaces_its_files(folders: dict[str, Path], tmp_path: Path) -> None:
    found = analysis.analyze(folders["snat"])
    folder.write_analysis(found, tmp_path / "out")
    (tmp_path / "out" / "mine.txt").write_text("kept")
    folder.write_analysis(found, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "kept"
    assert listing(tmp_path / "out") >= REPORT_FILES
    assert listing(tmp_path) >= {"out"} and len(list(tmp_path.iterdir())) == 1


# -- the command line -------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_report(folders: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["analyze", str(folders["vx-any"]), "--out", str(tmp_path / "r")],
                         capsys)
    assert code == 0 and err == ""
    assert "564 frames from 2 captures on 2 nodes: 66 packets" in out
    assert "clock node-b: +250.0" in out and " ppm, ± " in out and "; corrected)" in out
    files = listing(tmp_path / "r")
    assert REPORT_FILES | {"nat_flows.csv", "hops.csv", "latency.csv",
                           "clock_offsets.csv"} <= files


def test_cli_json_quiet_and_options(folders: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["analyze", str(folders["snat"]), "--out", str(tmp_path / "j"),
                          "--json", "--underlay-mtu", "9000"], capsys)
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["underlay_mtu"] == 9000 and summary["correlation"]["packets"] == 33
    code, out, err = run(["analyze", str(folders["snat"]), "--out", str(tmp_path / "q"),
                          "-q", "--clock-correction", "never"], capsys)
    assert (code, out, err) == (0, "", "")
    node_args = ["--node", f"host={folders['snat-any'] / 'host-any.pcap'}"]
    code, out, _ = run(["analyze", *node_args, "--out", str(tmp_path / "n")], capsys)
    assert code == 0 and "99 frames from 1 capture on 1 node: 33 packets" in out


def test_cli_without_captures_analyzes_every_bundled_folder(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundled = tmp_path / "captures"
    bundled.mkdir()
    for name in ("snat", "vx-any"):
        shutil.copytree(folders[name], bundled / name)
    (bundled / "README.md").write_text("not a folder")
    monkeypatch.setattr(cli, "_bundled_captures", lambda: bundled)
    code, out, err = run(["analyze", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0 and err == ""
    files = listing(tmp_path / "demo")
    assert {"index.html", "summary.md", "summary.json"} <= files
    for name in ("snat", "vx-any"):
        assert {f"{name}/index.html", f"{name}/hops.csv", f"{name}/packets.parquet"} <= files
    assert "index of 2 analyses" in out
    index = (tmp_path / "demo" / "index.html").read_text()
    assert 'href="snat/index.html"' in index and 'href="vx-any/index.html"' in index
    assert set(json.loads((tmp_path / "demo" / "summary.json").read_text())) == {"snat",
                                                                                 "vx-any"}


def test_cli_conntrack_dump_confirms_nat_flows(folders: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    flow = pktkit.load_truth(folders["snat"])["nat_flows"][0]
    assert flow["proto"] == 6
    dump = tmp_path / "ct.txt"
    dump.write_text(
        f"tcp      6 431999 ESTABLISHED src={flow['orig_src']} dst={flow['orig_dst']} "
        f"sport={flow['orig_sport']} dport={flow['orig_dport']} src={flow['xlat_dst']} "
        f"dst={flow['xlat_src']} sport={flow['xlat_dport']} dport={flow['xlat_sport']} "
        "[ASSURED] mark=0 use=1\n")
    code, _, err = run(["analyze", str(folders["snat"]), "--conntrack", f"host={dump}",
                        "--out", str(tmp_path / "ct"), "-q"], capsys)
    assert (code, err) == (0, "")
    flows = pd.read_csv(tmp_path / "ct" / "nat_flows.csv")
    mine = flows[(flows["orig_sport"] == flow["orig_sport"])
                 & (flows["orig_src"] == flow["orig_src"])]
    assert list(mine["conntrack"]) == ["confirmed"]
    assert set(flows["conntrack"]) == {"confirmed", "absent"}
    assert (tmp_path / "ct" / "nat_disagreements.csv").is_file()


def test_the_bundled_captures_are_found() -> None:
    assert (cli._bundled_captures() / "README.md").is_file()


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "no such capture file or folder"),
    (["--node", "node-a"], "--node 'node-a': expected NAME=CAPTURE"),
    (["{snat}", "--conntrack", "{dump}"], "conntrack dump"),
    (["{snat}", "--conntrack", "{missing}"], "no such file"),
    (["--conntrack", "{dump}"], "--conntrack needs the captures"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:
    dump = tmp_path / "ct.txt"
    dump.write_text("no conntrack here\n")
    values = {"missing": str(tmp_path / "missing.pcap"), "snat": str(folders["snat"]),
              "dump": str(dump)}
    before = listing(tmp_path)
    out_dir = tmp_path / "new" / "out"
    code, out, err = run(["analyze", *(a.format(**values) for a in argv),
                          "--out", str(out_dir)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("pktkit: error: ") and message in err
    assert listing(tmp_path) == before


def test_cli_unwritable_output_is_one_line_exit_2(folders: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        code, out, err = run(["analyze", str(folders["snat"]), "--out", str(target)], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "pktkit: error:" in err and str(target) in err
    assert listing(tmp_path) == {"file"}
    with pytest.raises(SystemExit) as exited:  # argparse's own one-line error
        cli.main(["analyze", str(folders["snat"])])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--out" in err and err.count("\n") == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(folders: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm draws the stages on a terminal, and nothing with --quiet, --json or a redirected
    stderr (a CI log must not fill with carriage returns)."""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli.main(["analyze", str(folders["snat"]), "--out", str(tmp_path / "a")]) == 0
    drawn = terminal.getvalue()
    assert "%|" in drawn and "correlate" in drawn and "write" in drawn and "\r" in drawn
    for flag in ("-q", "--json"):
        terminal.truncate(0)
        terminal.seek(0)
        assert cli.main(["analyze", str(folders["snat"]), "--out", str(tmp_path / "b"),
                         flag]) == 0
        assert terminal.getvalue() == "", flag
    redirected = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", redirected)
    assert cli.main(["analyze", str(folders["snat"]), "--out", str(tmp_path / "c")]) == 0
    assert redirected.getvalue() == ""
