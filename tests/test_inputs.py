"""pktkit.analysis.inputs: which files are read and where each was captured. Plain captures
(symlinks, files named twice) and node bundles: generated scenarios laid out as the nodes'
``pktkit collect`` bundles (no capture-set.json: only each node's ``ip link``, ``ip addr``,
bridge fdb and conntrack dump say what the captures are), checked against truth.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from bundle_checks import make_bundles, tarball

from pktkit import cli
from pktkit.analysis.inputs import opened_inputs, read_table, resolve_inputs
from pktkit.analysis.pipeline import analyze
from pktkit.craft.generation import generate, make_scenario
from pktkit.errors import UsageError

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    made = {}
    for name, scenario, linktype in (("routed-any", "flat-routed", "sll2"),
                                     ("snat-ether", "docker-snat", "ether")):
        made[name] = root / name
        generate(make_scenario(scenario, seed=2), made[name], linktype=linktype)
    return made


def truth_frame(folder: Path) -> pd.DataFrame:
    return pd.DataFrame(json.loads((folder / "truth.json").read_text())["packets"])


def merged(result_packets: pd.DataFrame, folder: Path) -> pd.DataFrame:
    truth = truth_frame(folder)
    table = result_packets.assign(capture=result_packets["capture"].astype(str),
                                  frame=result_packets["frame"].astype(int))
    both = truth.merge(table, on=["capture", "frame"], suffixes=("_t", "_a"))
    assert len(both) == len(truth) == len(table)
    return both


def conntrack_lines(folder: Path) -> str:
    """The truth's NAT flows as ``conntrack -L`` prints them (original, then reply tuple)."""
    lines = []
    for f in json.loads((folder / "truth.json").read_text())["nat_flows"]:
        name = {6: "tcp", 17: "udp", 1: "icmp"}[f["proto"]]
        if f["proto"] == 1:
            lines.append(f"icmp     1 29 src={f['orig_src']} dst={f['orig_dst']} type=8 code=0 "
                         f"id={f['orig_sport']} src={f['xlat_dst']} dst={f['xlat_src']} type=0 "
                         f"code=0 id={f['xlat_sport']} mark=0 use=1")
        else:
            lines.append(f"{name}      {f['proto']} 117 src={f['orig_src']} dst={f['orig_dst']} "
                         f"sport={f['orig_sport']} dport={f['orig_dport']} src={f['xlat_dst']} "
                         f"dst={f['xlat_src']} sport={f['xlat_dport']} dport={f['xlat_sport']} "
                         "[ASSURED] mark=0 use=1")
    return "\n".join(lines) + "\n"


def test_sll2_bundles_name_interfaces_and_nodes_as_the_truth(generated: dict[str, Path],
                                                             tmp_path: Path) -> None:
    folder = generated["routed-any"]
    bundles = make_bundles(folder, tmp_path, addresses={"node-a": ["192.168.50.11"],
                                                        "node-b": ["192.168.50.12"]})
    result = analyze(list(bundles.values()))
    both = merged(result.packets, folder)
    assert (both["node_t"] == both["node_a"]).all()
    assert (both["interface_t"] == both["interface_a"]).all()
    assert (both["direction_t"] == both["direction_a"].astype(str)).all()
    assert result.node_addresses == {"node-a": ["192.168.50.11"], "node-b": ["192.168.50.12"]}
    # the same as the folder with its capture-set.json
    plain = analyze([folder])
    assert plain.packets["packet_id"].tolist() == result.packets["packet_id"].tolist()


def test_per_interface_captures_get_their_device_and_direction(generated: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """docker-snat's four per-interface pcaps (no direction recorded): the bundle names each
    file's device, and the device's MAC and docker0's fdb say each frame's direction; its
    conntrack dump confirms every NAT flow."""
    folder = generated["snat-ether"]
    devices = {("host", "eth0"): {"address": "52:54:00:12:34:56"},
               ("host", "docker0"): {"address": "02:42:5e:1a:7c:03", "kind": "bridge"},
               ("host", "veth-c1"): {"address": "5a:00:00:00:00:05", "master": "docker0"},
               ("host", "veth-c2"): {"address": "5a:00:00:00:00:07", "master": "docker0"}}
    fdb = {"host": {"02:42:ac:11:00:02": "veth-c1", "02:42:ac:11:00:03": "veth-c2"}}
    bundles = make_bundles(folder, tmp_path, devices=devices, fdb=fdb,
                           conntrack={"host": conntrack_lines(folder)})
    result = analyze([bundles["host"]])
    both = merged(result.packets, folder)
    assert (both["interface_t"] == both["interface_a"]).all()
    assert (both["direction_t"] == both["direction_a"].astype(str)).all()
    flows = result.nat_flows
    assert len(flows) == len(json.loads((folder / "truth.json").read_text())["nat_flows"])
    assert set(flows["conntrack"]) == {"confirmed"}


def test_bundles_in_a_folder_tarballs_and_plain_captures_together(generated: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    folder = generated["routed-any"]
    bundles = make_bundles(folder, tmp_path / "bundles")
    packed = tarball(bundles["node-b"], tmp_path / "node-b.tar.gz")
    shutil.rmtree(bundles["node-b"])
    plain = tmp_path / "plain" / "node-c-any.pcap"
    plain.parent.mkdir()
    shutil.copyfile(folder / "node-a-any.pcap", plain)
    with opened_inputs([tmp_path / "bundles", packed, plain]) as found:
        assert [(i.node, i.label) for i in found.captures] == [
            ("node-a", "node-a-any.pcap"), ("node-b", "node-b-any.pcap"),
            ("node-c-any", "node-c-any.pcap")]
        unpacked = found.captures[1].path
        assert unpacked.is_file() and found.captures[0].interfaces[2] == "eth0"
        assert not found.captures[2].interfaces  # a plain file: its manifest only (none here)
    assert not unpacked.exists()
    with pytest.raises(UsageError, match="opened_inputs"):
        resolve_inputs([packed])
    copied = tmp_path / "copied"  # what scp node-*:b.tar.gz copied/ makes
    copied.mkdir()
    tarball(bundles["node-a"], copied / "a.tar.gz")
    shutil.copyfile(packed, copied / "b.tar.gz")
    with opened_inputs([copied]) as found:
        assert [i.node for i in found.captures] == ["node-a", "node-b"]


def test_same_file_names_in_two_bundles_get_the_bundle_in_their_label(
        generated: dict[str, Path], tmp_path: Path) -> None:
    folder = generated["routed-any"]
    first = make_bundles(folder, tmp_path / "one")["node-a"]
    second = tmp_path / "two" / "node-a-again"
    shutil.copytree(first, second)
    with opened_inputs([first, second], {second: "node-a2"}) as found:
        assert [(i.node, i.label) for i in found.captures] == [
            ("node-a", "node-a/node-a-any.pcap"), ("node-a2", "node-a-again/node-a-any.pcap")]


def test_an_address_of_two_nodes_belongs_to_neither(generated: dict[str, Path],
                                                    tmp_path: Path) -> None:
    bundles = make_bundles(generated["routed-any"], tmp_path, addresses={
        "node-a": ["192.168.50.11", "10.0.0.1"], "node-b": ["192.168.50.12", "10.0.0.1"]})
    result = analyze(list(bundles.values()))
    assert result.node_addresses == {"node-a": ["192.168.50.11"], "node-b": ["192.168.50.12"]}


def test_cli_errors_for_bundles_are_one_line(generated: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bundles = make_bundles(generated["routed-any"], tmp_path / "b")
    both = tmp_path / "both.tar.gz"
    import tarfile

    with tarfile.open(both, "w:gz") as tar:
        for node in ("node-a", "node-b"):
            tar.add(tarball(bundles[node], tmp_path / f"{node}.tar.gz"), f"x/{node}.tar.gz")
    for argv, message in (
            ([str(both), "--node", f"n={both}"], "holds 2 bundles"),
            ([str(tmp_path / "b" / "nothing.tar.gz")], "no such capture file or folder")):
        code = cli.main(["analyze", *argv, "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "r").exists()



def test_a_symlinked_capture_is_described_by_the_capture_set_beside_the_link(
        tmp_path: Path) -> None:
    """The operator's folder holds links to captures stored elsewhere, and its own
    capture-set.json: that one names the node and the interfaces, not the target's folder."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(CAPTURES / "docker-snat-any" / "host-any.pcap", store / "blob-1234.pcap")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "node7-any.pcap").symlink_to(store / "blob-1234.pcap")
    (mine / "capture-set.json").write_text(
        (CAPTURES / "docker-snat-any" / "capture-set.json").read_text()
        .replace('"host-any.pcap"', '"node7-any.pcap"').replace('"host"', '"node7"'))
    inputs = resolve_inputs([mine / "node7-any.pcap"])
    assert [(i.label, i.node) for i in inputs] == [("node7-any.pcap", "node7")]
    assert inputs[0].interfaces[5] == "veth-c1"
    packets = read_table(inputs)
    assert set(packets["interface"].dropna()) >= {"veth-c1", "docker0", "eth0"}
    assert set(packets["node"]) == {"node7"}


def test_the_same_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "link.pcap").symlink_to(CAPTURES / "docker-snat" / "host-eth0.pcap")
    inputs = resolve_inputs([CAPTURES / "docker-snat" / "host-eth0.pcap", tmp_path / "link.pcap"])
    assert len(inputs) == 1
