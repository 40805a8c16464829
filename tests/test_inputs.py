"""pktkit.analysis.inputs: which files are read and where each was captured."""

from __future__ import annotations

import shutil
from pathlib import Path

from pktkit.analysis.inputs import read_table, resolve_inputs

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


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
