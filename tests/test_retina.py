"""Microsoft Retina's Linux capture bundle, built here as Retina's source builds it
(``compressFolderToTarGz``: a directory member ``.`` first, then the folder walked in byte
order, names without ``./``), from the synthetic metadata in ``tests/data/retina/`` (ours, with
invented names and addresses: node ``kw-node-a``, ifindex 1 lo, 2 flannel.1, 3 eth0, 4 cni0,
5 veth3f9a1c2e, 6 veth7b20d4aa; its proc-net/nf_conntrack holds a NodePort DNAT+SNAT) and a
``tcpdump -i any`` pcap written below (classic pcap, µs, SLL2, snaplen 262144, as Retina's
tcpdump writes it). The layout and grammar: Retina v1.2.6 ``network_capture_unix.go`` and
``capture_manager.go``."""

from __future__ import annotations

import shutil
import struct
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from scapy.layers.inet import IP, TCP

import pktkit
from pktkit import cli
from pktkit.capture.retina import command_outputs, read_retina_folder
from pktkit.capture.unpack import open_bundles
from pktkit.errors import CaptureError

FIXTURE = Path(__file__).parent / "data" / "retina"
BASE = "pktkit-cap-kw-node-a-20260105093000UTC"
MACS = {3: "00:0d:3a:5c:71:0e", 4: "7a:21:9f:03:be:40", 5: "4e:1f:8a:93:64:0a",
        6: "d2:74:4b:d7:f2:94"}
POD5, POD9, CLIENT_MAC = "9e:4b:0a:61:d2:05", "c6:18:e3:77:40:09", "00:00:5e:00:01:01"
IN, OTHERHOST, OUT = 0, 3, 4
NAMES = {3: "eth0", 4: "cni0", 5: "veth3f9a1c2e", 6: "veth7b20d4aa"}


def tcp(src: str, sport: int, dst: str, dport: int, flags: str, ttl: int, ip_id: int,
        seq: int, ack: int = 0) -> bytes:
    return bytes(IP(src=src, dst=dst, ttl=ttl, id=ip_id, flags="DF")
                 / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240))


# (µs after the start, ifindex, packet type, source MAC, IP packet): what tcpdump -i any
# records of a NodePort connection translated by kube-proxy (DNAT to the web pod, SNAT to
# cni0's address, as the fixture's conntrack entry says) and of a pod-to-pod connection
# across cni0 (the bridge: one copy per host-side veth).
FRAMES = [
    (0, 3, IN, CLIENT_MAC, tcp("203.0.113.50", 52114, "198.51.100.11", 30080, "S", 55, 100, 1)),
    (31, 4, OUT, MACS[4], tcp("10.244.0.1", 52114, "10.244.0.5", 8080, "S", 54, 100, 1)),
    (33, 5, OUT, MACS[4], tcp("10.244.0.1", 52114, "10.244.0.5", 8080, "S", 54, 100, 1)),
    (95, 5, OTHERHOST, POD5, tcp("10.244.0.5", 8080, "10.244.0.1", 52114, "SA", 64, 0, 9,
                                 2)),
    (97, 4, IN, POD5, tcp("10.244.0.5", 8080, "10.244.0.1", 52114, "SA", 64, 0, 9, 2)),
    (121, 3, OUT, MACS[3], tcp("198.51.100.11", 30080, "203.0.113.50", 52114, "SA", 63, 0, 9,
                               2)),
    (2000, 5, OTHERHOST, POD5, tcp("10.244.0.5", 38272, "10.244.0.9", 8080, "S", 64, 7, 5)),
    (2011, 6, OUT, POD5, tcp("10.244.0.5", 38272, "10.244.0.9", 8080, "S", 64, 7, 5)),
]
START_US = 1767605400 * 1_000_000


def sll2_pcap(path: Path, frames: list[tuple[int, int, int, str, bytes]]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 276)]
    for at, ifindex, pkttype, mac, packet in frames:
        data = struct.pack("!HHIHBB", 0x0800, 0, ifindex, 1, pkttype, 6) + \
            bytes.fromhex(mac.replace(":", "")) + b"\0\0" + packet
        ts = START_US + at
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
        out.append(data)
    path.write_bytes(b"".join(out))
    return path


def ether_pcap(path: Path, frames: list[tuple[str, str, bytes]]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i, (dst, src, packet) in enumerate(frames):
        data = bytes.fromhex(dst.replace(":", "") + src.replace(":", "")) + b"\x08\x00" + packet
        ts = START_US + 50 * i
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
        out.append(data)
    path.write_bytes(b"".join(out))
    return path


def retina_folder(tmp_path: Path, *, pcap: str = f"{BASE}.pcap",
                  metadata: bool = True) -> Path:
    folder = tmp_path / "unpacked"
    if metadata:
        shutil.copytree(FIXTURE, folder)
    else:
        folder.mkdir()
        shutil.copyfile(FIXTURE / "tcpdump.log", folder / "tcpdump.log")
    sll2_pcap(folder / pcap, FRAMES)
    return folder


def go_tarball(folder: Path, out: Path) -> Path:
    """As Retina's compressFolderToTarGz: ``.`` first, then filepath.Walk's byte order."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=".", recursive=False)
        for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return out


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    """Where ``kubectl retina capture download --name pktkit-cap`` puts it."""
    (tmp_path / "pktkit-cap").mkdir()
    return go_tarball(retina_folder(tmp_path), tmp_path / "pktkit-cap" / f"{BASE}.tar.gz")


def test_the_tarball_is_read_as_retina_writes_it(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == "." and "proc-net/nf_conntrack" in names and f"{BASE}.pcap" in names
    with open_bundles(bundle) as bundles:
        (found,) = bundles
        assert (found.kind, found.node, found.source) == ("retina", "kw-node-a", bundle)
        assert [(c.path.name, c.interface) for c in found.captures] == [(f"{BASE}.pcap",
                                                                         "any")]
        assert found.links.ifnames() == {1: "lo", 2: "flannel.1", **NAMES}
        assert found.links.own_addresses() == ["10.244.0.0", "198.51.100.11", "10.244.0.1"]
        assert [p.name for p in found.conntrack] == ["nf_conntrack"] and not found.notes


def test_analyze_names_every_interface_and_confirms_the_nat_flow(bundle: Path) -> None:
    result = pktkit.analyze([bundle])
    packets = result.packets.sort_values("frame")
    assert set(packets["node"]) == {"kw-node-a"}
    assert packets["interface"].tolist() == [NAMES[f[1]] for f in FRAMES]
    assert packets["direction"].tolist() == [("in", None, None, "other", "out")[f[2]]
                                             for f in FRAMES]
    # the NodePort SYN seen on eth0, cni0 and the pod's veth is one packet, so is its answer
    assert packets["packet_id"].tolist()[:6] == [packets["packet_id"].iloc[0]] * 3 + \
        [packets["packet_id"].iloc[3]] * 3
    flows = result.nat_flows
    assert len(flows) == 1
    flow = flows.iloc[0]
    assert (flow.kind, flow.orig_src, flow.orig_dport, flow.xlat_src, flow.xlat_dst,
            flow.xlat_dport) == ("snat+dnat", "203.0.113.50", 30080, "10.244.0.1",
                                 "10.244.0.5", 8080)
    assert flow.conntrack == "confirmed"
    assert "198.51.100.11" in result.node_addresses["kw-node-a"]


def test_cli_reads_the_tarball_among_plain_captures(bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    plain = sll2_pcap(tmp_path / "other-node.pcap", FRAMES[6:])
    code = cli.main(["analyze", str(bundle), str(plain), "--out", str(tmp_path / "r"), "-q",
                     "--node", f"kw-a={bundle}"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_parquet(tmp_path / "r" / "packets.parquet")
    assert set(table["node"]) == {"kw-a", "other-node"}
    assert set(table.loc[table["node"] == "other-node", "interface"]) == {"5", "6"}


def test_the_pcap_names_of_older_versions_and_the_node_name(tmp_path: Path) -> None:
    """v0.0.35-v1.0.0-rc1 wrote ``{capture node time}.pcap`` (Retina issue #1732): the node is
    the second word. A tarball outside its capture's folder keeps ``capture-node`` whole."""
    braced = "{pktkit-cap kw-node-a 2026-01-05 09:30:00 +0000 UTC}.pcap"
    folder = retina_folder(tmp_path, pcap=braced)
    assert read_retina_folder(folder).node == "kw-node-a"
    alone = go_tarball(retina_folder(tmp_path / "2"), tmp_path / f"{BASE}.tar.gz")
    with open_bundles(alone) as bundles:
        assert bundles[0].node == "pktkit-cap-kw-node-a"


def test_rotating_files_are_each_a_capture(tmp_path: Path) -> None:
    folder = retina_folder(tmp_path, pcap=f"{BASE}.pcap0")
    sll2_pcap(folder / f"{BASE}.pcap1", FRAMES[:2])
    assert [c.path.name for c in read_retina_folder(folder).captures] == [f"{BASE}.pcap0",
                                                                          f"{BASE}.pcap1"]


def test_without_metadata_interfaces_keep_their_index(tmp_path: Path) -> None:
    folder = retina_folder(tmp_path, metadata=False)
    found = read_retina_folder(folder)
    assert found.links is None and "no interface names" in found.notes[0]
    result = pktkit.analyze([folder])
    assert set(result.packets["interface"]) == {"3", "4", "5", "6"}
    assert result.notes == list(found.notes)


def test_a_failed_command_is_glued_to_the_next(tmp_path: Path) -> None:
    """A failed command's output ends in 'Failed to run "...", error: ...)' without a newline,
    and the next command's line follows on the same line (processMetadataFile)."""
    text = (FIXTURE / "ip-resources.txt").read_text()
    neigh = "/usr/sbin/ip -d -j neighbor show"
    body_start = text.index(f"\n{neigh}\n", text.index("Execute:")) + len(neigh) + 2
    body_end = text.index("/usr/sbin/ip rule list\n", body_start)
    broken = (text[:body_start] + f'\nFailed to run "{neigh}", error: exit status 1)'
              + text[body_end:])
    outputs = command_outputs(broken)
    assert outputs[neigh].endswith("error: exit status 1)")
    assert outputs["/usr/sbin/ip rule list"].startswith("0:\tfrom all lookup local")
    assert outputs["/usr/sbin/ip -d -j addr show"].startswith('[{"ifindex":1')
    folder = retina_folder(tmp_path)
    (folder / "ip-resources.txt").write_text(broken)
    assert read_retina_folder(folder).links.ifnames()[5] == "veth3f9a1c2e"


def test_a_failed_addr_command_falls_back_to_proc_net(tmp_path: Path) -> None:
    folder = retina_folder(tmp_path)
    addr = "/usr/sbin/ip -d -j addr show"
    text = (folder / "ip-resources.txt").read_text()
    start = text.index(f"\n{addr}\n", text.index("Execute:")) + len(addr) + 2
    end = text.index("/usr/sbin/ip -d -j neighbor show\n", start)
    (folder / "ip-resources.txt").write_text(
        text[:start] + f'\nFailed to run "{addr}", error: exit status 255)' + text[end:])
    found = read_retina_folder(folder)
    assert found.links.ifnames() == {1: "lo", 2: "flannel.1", **NAMES}  # dev_mcast, if_inet6
    assert found.links.by_name("eth0").mac is None  # /proc/net says no MAC: no directions


def test_a_single_ethernet_interface_capture(tmp_path: Path) -> None:
    """Before v0.0.35 (or with --interfaces), tcpdump captured one device, Ethernet-framed;
    tcpdump.log says which. Its frames get that device and, from its MAC, their direction."""
    folder = retina_folder(tmp_path, metadata=True)
    (folder / f"{BASE}.pcap").unlink()
    log = (FIXTURE / "tcpdump.log").read_text().replace(
        "listening on any, link-type LINUX_SLL2 (Linux cooked v2)",
        "listening on eth0, link-type EN10MB (Ethernet)").replace(" -i any", " -i eth0")
    (folder / "tcpdump.log").write_text(log)
    ether_pcap(folder / f"{BASE}.pcap", [(MACS[3], CLIENT_MAC, FRAMES[0][4]),
                                        (CLIENT_MAC, MACS[3], FRAMES[5][4])])
    result = pktkit.analyze([folder])
    assert result.packets["interface"].tolist() == ["eth0", "eth0"]
    assert result.packets["direction"].tolist() == ["in", "out"]


def test_windows_bundles_are_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "win"
    folder.mkdir()
    (folder / "netsh.log").write_text("netsh trace start ...\n")
    (folder / f"{BASE}.etl").write_bytes(b"\0" * 16)
    packed = go_tarball(folder, tmp_path / f"{BASE}.tar.gz")
    with pytest.raises(CaptureError, match="a Windows Retina capture"), open_bundles(packed):
        pass
