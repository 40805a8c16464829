"""pktkit.capture.bundle and unpack: a bundle folder or tarball (pktkit's) read into its node,
captures, devices, conntrack dumps and metadata files; what is not a bundle is one line."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from bundle_checks import bundle_json, make_bundles, tarball

from pktkit.capture.bundle import capture_file_name, read_bundle_folder
from pktkit.capture.unpack import is_bundle_folder, open_bundles
from pktkit.craft.generation import generate, make_scenario
from pktkit.errors import CaptureError

CONNTRACK = ("ipv4     2 tcp      6 117 TIME_WAIT src=172.17.0.2 dst=203.0.113.10 sport=40000 "
             "dport=80 src=203.0.113.10 dst=192.168.1.10 sport=80 dport=40000 [ASSURED] mark=0 "
             "use=1\n")


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("routed")
    generate(make_scenario("flat-routed", seed=1, flows=4), out, linktype="sll2")
    return out


def test_a_bundle_folder_says_node_captures_devices_dumps_metadata(routed: Path,
                                                                   tmp_path: Path) -> None:
    folders = make_bundles(routed, tmp_path, addresses={"node-a": ["192.168.50.11"]},
                           conntrack={"node-a": CONNTRACK},
                           devices={("node-a", "eth0"): {"address": "52:54:00:6b:0a:11"}})
    (folders["node-a"] / "kubectl.json").write_text("{}")
    bundle = read_bundle_folder(folders["node-a"])
    assert (bundle.kind, bundle.node) == ("pktkit", "node-a")
    assert [(c.path.name, c.interface) for c in bundle.captures] == [("node-a-any.pcap", "any")]
    manifest = json.loads((routed / "capture-set.json").read_text())
    expected = {i["ifindex"]: i["name"] for f in manifest["files"] if f["node"] == "node-a"
                for i in f["interfaces"]}
    assert bundle.links is not None and bundle.links.ifnames() == {1: "lo", **expected}
    assert bundle.links.by_name("eth0").mac == "52:54:00:6b:0a:11"
    assert bundle.links.own_addresses() == ["192.168.50.11"]
    assert bundle.conntrack == (folders["node-a"] / "end" / "conntrack.txt",)
    assert bundle.metadata == {"kubectl.json": folders["node-a"] / "kubectl.json"}
    assert bundle.snapshot("end", "ip-link") == folders["node-a"] / "end" / "ip-link.json"
    assert bundle.snapshot("start", "ip-link") is None and not bundle.notes


def test_start_and_end_snapshots_merge(routed: Path, tmp_path: Path) -> None:
    """A device made during the capture is only in the end snapshot, one removed only in the
    start one: both are named (the kernel does not reuse an index in a namespace's life)."""
    folder = make_bundles(routed, tmp_path)["node-b"]
    (folder / "start").mkdir()
    (folder / "start" / "ip-link.json").write_text(json.dumps(
        [{"ifindex": 40, "ifname": "veth-gone"}, {"ifindex": 2, "ifname": "eth0-old-name"}]))
    links = read_bundle_folder(folder).links
    assert links.ifnames()[40] == "veth-gone" and links.ifnames()[2] == "eth0"


def test_tarballs_and_tarballs_of_tarballs(routed: Path, tmp_path: Path) -> None:
    folders = make_bundles(routed, tmp_path / "b")
    single = tarball(folders["node-a"], tmp_path / "node-a.tar.gz")
    with open_bundles(single) as bundles:
        assert [b.node for b in bundles] == ["node-a"]
        unpacked = bundles[0].root
        assert bundles[0].source == single and unpacked.is_dir()
        assert bundles[0].captures[0].path.is_file()
    assert not unpacked.exists()  # the temporary copy is gone with the block
    tarball(folders["node-b"], tmp_path / "node-b.tar.gz")
    wrapper = tmp_path / "all-captures-20260105093000.tar.gz"
    with tarfile.open(wrapper, "w:gz") as tar:
        for name in ("node-a.tar.gz", "node-b.tar.gz"):
            tar.add(tmp_path / name, arcname=f"cap/{name}")
    with open_bundles(wrapper) as bundles:
        assert sorted(b.node for b in bundles) == ["node-a", "node-b"]
        assert {b.source.name for b in bundles} == {"node-a.tar.gz", "node-b.tar.gz"}
    with open_bundles(folders["node-b"]) as bundles:
        assert bundles[0].root == folders["node-b"]


def test_what_is_not_a_bundle_is_one_line(routed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bundle.json").write_text('{"node": "x"}')
    assert is_bundle_folder(bad)
    with pytest.raises(CaptureError, match=r"not a pktkit bundle.json .*pktkit collect"):
        read_bundle_folder(bad)
    (bad / "bundle.json").write_text(json.dumps(bundle_json("x", [("x-any.pcap", "any")])))
    with pytest.raises(CaptureError, match=r"x-any.pcap: listed in .* but missing"):
        read_bundle_folder(bad)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CaptureError, match=r"junk.tar.gz: not a readable bundle tarball"), \
            open_bundles(tmp_path / "junk.tar.gz"):
        pass
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz") as tar:
        tar.add(empty, arcname="empty")
    with pytest.raises(CaptureError, match=r"empty.tar.gz: no bundle in this tarball"), \
            open_bundles(tmp_path / "empty.tar.gz"):
        pass


def test_tarball_members_cannot_leave_their_folder(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, __import__("io").BytesIO(b"x"))
    with pytest.raises(CaptureError, match="not a readable bundle tarball"), open_bundles(evil):
        pass
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_capture_file_names() -> None:
    assert capture_file_name("node-a", "any") == "node-a-any.pcap"
    assert capture_file_name("kw node/1", "eth0.100") == "kw_node_1-eth0.100.pcap"
