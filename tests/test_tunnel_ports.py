"""UDP tunnel ports: ``--vxlan-port auto`` finds the corpus's VXLAN and Geneve ports and nothing
else, finds ports nobody configured (the generator's ground truth says which frames are
tunnelled), resists plain UDP that comes close; ports of other tunnels are refused."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_dpkt import CORPUS_FILES

from pktkit.capture import tunnel_ports as tp
from pktkit.capture.table import read_packets
from pktkit.cli import main as cli_main
from pktkit.errors import UsageError

EXPECTED = {  # every other corpus file: nothing
    "tcpdump__vxlan.pcap": {4789: "vxlan"},
    "tcpdump__vxlan_port_8472.pcap": {8472: "vxlan"},
    "tcpdump__gso-ipv4-vxlan-ipv4.pcap": {4789: "vxlan"},
    "suricata-verify__vxlan-aws-mirror.pcap": {4789: "vxlan"},
    "ndpi__vxlan-vlan.pcap": {4789: "vxlan"},
    "zeek__vxlan-triple-nested.pcap": {4789: "vxlan"},  # GPE-shaped header, next proto 3
    "tcpdump__geneve.pcap": {6081: "geneve"},
    "tcpdump__geneve-gcp.pcap": {6081: "geneve"},  # one packet: its inner IPv4 checksum verifies
    "zeek__geneve-many-options.pcap": {6081: "geneve"},
    "zeek__geneve-47101.pcap": {6081: "geneve"},
}


def test_expectations_cover_the_manifests_tunnel_files(corpus_dir: Path) -> None:
    with open(corpus_dir / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {r["file"] for r in rows if r["vxlan_pkts"] != "0" or r["geneve_pkts"] != "0"} == set(
        EXPECTED)


def test_corpus_ports_found_and_nothing_else(corpus_dir: Path) -> None:
    """Every corpus file on its own (plain UDP of every kind: DNS, QUIC, RTP, NTP, DHCP, ...)
    and all of them at once: VXLAN on 4789 and 8472, Geneve on 6081, nothing else."""
    union: dict[int, str] = {}
    for name in CORPUS_FILES:
        table = read_packets(corpus_dir / name, vxlan_ports="auto")
        found = {p["port"]: p["kind"] for p in table.attrs["tunnel_ports"]}
        assert found == EXPECTED.get(name, {}), name
        assert table.equals(read_packets(corpus_dir / name)), name  # nothing else changes
        union.update(found)
    assert union == {4789: "vxlan", 6081: "geneve", 8472: "vxlan"}
    together = read_packets([corpus_dir / n for n in CORPUS_FILES], vxlan_ports="auto")
    assert {p["port"]: p["kind"] for p in together.attrs["tunnel_ports"]} == union


@pytest.mark.parametrize(("scenario", "overrides", "port", "kind"), [
    ("vxlan-overlay", {"port_a": "9999"}, 9999, "vxlan"),
    ("geneve-overlay", {"geneve_port": "7000"}, 7000, "geneve"),
])
def test_auto_finds_a_port_nobody_configured(scenario: str, overrides: dict[str, str],
                                             port: int, kind: str, tmp_path: Path) -> None:
    """Without being told, every tunnelled frame is decoded as truth.json says it was made."""
    from pktkit.craft.generation import generate, make_scenario
    from pktkit.craft.truth import load_truth

    generate(make_scenario(scenario, flows=8, overrides=overrides), tmp_path)
    files = sorted(tmp_path.glob("*.pcap"))
    truth = load_truth(tmp_path)["packets"]
    want = {(t["capture"], t["frame"]): (t["encap"], t["vni"]) for t in truth}
    table = read_packets(files, vxlan_ports="auto")
    found = {p["port"]: p["kind"] for p in table.attrs["tunnel_ports"]}
    assert found.get(port) == kind
    got = {(c, f): (e, None if pd.isna(v) else int(v)) for c, f, e, v in
           table[["capture", "frame", "encap", "vni"]].itertuples(index=False)}
    assert got == want
    plain = read_packets(files)  # without auto, the port is plain UDP
    assert (plain["outer_dport"] == port).sum() == 0 and (table["outer_dport"] == port).sum()


def test_auto_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pktkit.craft.generation import generate, make_scenario

    generate(make_scenario("vxlan-overlay", flows=4, overrides={"port_a": "9999"}), tmp_path)
    files = [str(p) for p in sorted(tmp_path.glob("*eth0.pcap"))]
    assert cli_main(["packets", *files, "--vxlan-port", "auto"]) == 0
    out = capsys.readouterr().out
    assert "tunnel ports found: vxlan 4789, vxlan 9999" in out
    assert cli_main(["packets", *files, "--vxlan-port", "auto", "-o",
                     str(tmp_path / "t.parquet")]) == 0
    assert "tunnel ports found: vxlan 4789, vxlan 9999" in capsys.readouterr().out


def test_ports_of_other_tunnels_are_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """``--vxlan-port 6081`` would decode Geneve as VXLAN (wrong VNIs, garbage inner frames)."""
    for port, owner in ((6081, "geneve"), (4790, "vxlan-gpe"), (4754, "gre-in-udp"),
                        (3544, "teredo"), (1701, "l2tp")):
        with pytest.raises(UsageError, match=f"UDP port {port} is {owner}'s"):
            tp.udp_tunnel_classes([port])
    with pytest.raises(UsageError, match="UDP port 4789 is vxlan's"):
        tp.udp_tunnel_classes(geneve_ports=[4789])
    capture = tmp_path / "x.pcap"
    capture.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    assert cli_main(["packets", str(capture), "--vxlan-port", "6081"]) == 2
    assert "UDP port 6081 is geneve's (pktkit decodes it as geneve already)" in (
        capsys.readouterr().err)
    assert cli_main(["packets", str(capture), "--vxlan-port", "auto", "--vxlan-port", "9"]) == 2
    assert "give it alone" in capsys.readouterr().err


# -- crafted payloads ---------------------------------------------------------------------------

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ipv4_header(total: int = 60, proto: int = 6) -> bytes:
    head = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0,
                                 b"\x0a\0\0\x01", b"\x0a\0\0\x02"))
    words = sum(struct.unpack(">10H", head))
    while words > 0xFFFF:
        words = (words & 0xFFFF) + (words >> 16)
    head[10:12] = struct.pack(">H", ~words & 0xFFFF)
    return bytes(head)


def vxlan(vni: int, flags: int = 0x08) -> bytes:
    return struct.pack(">B3xI", flags, vni << 8) + MAC_B + MAC_A + b"\x08\x00" + ipv4_header()


def judged(payloads: list[bytes], port: int = 9999) -> tp.PortVerdict:
    win = np.zeros((len(payloads), tp.WINDOW), np.uint8)
    for i, p in enumerate(payloads):
        win[i, :min(len(p), tp.WINDOW)] = np.frombuffer(p[:tp.WINDOW], np.uint8)
    avail = np.array([len(p) for p in payloads], np.int64)
    counts = tp.PortCounts()
    keep = counts.wanted(np.full(len(payloads), port))
    assert keep.sum() == min(len(payloads), tp.SAMPLE)
    counts.add(np.full(len(payloads), port), win, avail, payloads.__getitem__)
    return counts.verdicts()[port]


def test_one_vxlan_packet_needs_a_verifying_inner_ipv4_header() -> None:
    assert judged([vxlan(7)]).kind == "vxlan"
    no_checksum = vxlan(7)[:8 + 14 + 10] + b"\0\0" + vxlan(7)[8 + 14 + 12:]
    assert judged([no_checksum]).kind is None
    assert judged([no_checksum] * 3).kind == "vxlan"  # MIN_PACKETS plausible ones will do


def test_share_rule_and_gbp() -> None:
    rtp = bytes.fromhex("80600001") + bytes(60)
    assert judged([vxlan(1)] * 19 + [rtp]).kind == "vxlan"  # 95 %
    assert judged([vxlan(1)] * 18 + [rtp] * 2).kind is None
    assert judged([vxlan(1, flags=0x88)] * 5).kind is None  # VXLAN-GBP: not plain VXLAN


def dns_query(ident: int, name: bytes, flags: int = 0) -> bytes:
    labels = b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0"
    return struct.pack(">HHHHHH", ident, flags, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"


def test_plain_udp_that_starts_like_vxlan_is_not_taken() -> None:
    """A DNS query with id 0x0800 and no flags has exactly VXLAN's first 8 bytes (flags 0x08,
    reserved zero, VNI 1, reserved zero): the inner-frame checks must reject it."""
    rng = np.random.default_rng(5)
    queries = [dns_query(0x0800, b"host%d.example.org" % i) for i in range(200)]
    assert all(q[:8] == bytes.fromhex("0800000000010000") for q in queries)
    assert judged(queries, 53).vxlan == 0
    quic = [bytes([0xC0 | int(rng.integers(0, 64))]) + rng.bytes(60) for _ in range(200)]
    rtp = [bytes([0x80, 96]) + rng.bytes(62) for _ in range(200)]
    ntp = [bytes([0x23]) + rng.bytes(47) for _ in range(200)]
    for payloads in (quic, rtp, ntp):
        v = judged(payloads)
        assert (v.kind, v.vxlan, v.geneve) == (None, 0, 0)


def test_geneve_rules() -> None:
    inner = MAC_B + MAC_A + b"\x08\x00" + ipv4_header()
    option = struct.pack(">HBB", 0x0102, 0x80, 1) + b"abcd"
    good = struct.pack(">BBHI", 2, 0, 0x6558, 5 << 8) + option + inner
    assert judged([good], 6081).kind == "geneve"
    broken_walk = struct.pack(">BBHI", 2, 0, 0x6558, 5 << 8) + struct.pack(
        ">HBB", 1, 1, 2) + b"abcd" + inner  # the TLV claims 8 bytes, the header has 4
    assert judged([broken_walk] * 5, 6081).geneve == 0
    gcp = struct.pack(">BBHI", 0, 0, 0x0800, 0) + ipv4_header()
    assert judged([gcp], 6081).kind == "geneve"
    assert judged([struct.pack(">BBHI", 0x40, 0, 0x6558, 0) + inner] * 5, 6081).kind is None


def test_random_payloads_pass_neither_rule() -> None:
    """200,000 random payloads whose first byte is VXLAN's 0x08: none looks like VXLAN or
    Geneve; with a valid VXLAN header forced, the inner-frame checks alone pass about 2e-5."""
    rng = np.random.default_rng(1)
    trials = 200_000
    win = rng.integers(0, 256, (trials, tp.WINDOW), np.uint8)
    win[:, 0] = 0x08
    avail = np.full(trials, 64, np.int64)
    vx, _ = tp.looks_like_vxlan(win, avail)
    ge, _ = tp.looks_like_geneve(win, avail, lambda i: win[i].tobytes() + rng.bytes(18))
    assert vx.sum() == ge.sum() == 0
    win[:, [0, 1, 2, 3, 7]] = [0x08, 0, 0, 0, 0]
    vx, strong = tp.looks_like_vxlan(win, avail)
    assert vx.sum() < 40 and strong.sum() == 0


def test_at_most_sample_packets_per_port_are_judged() -> None:
    counts = tp.PortCounts()
    ports = np.array([5] * 300 + [6] * 10)
    keep = counts.wanted(ports)
    assert keep[:300].sum() == tp.SAMPLE and keep[300:].all()
