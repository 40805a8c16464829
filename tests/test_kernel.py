"""Kernel transforms, byte level: each checked against RFC facts by the independent oracle."""

from __future__ import annotations

import random

from oracle import checksum_ok, walk
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pktkit.craft.flight import InFlight, internet_checksum
from pktkit.craft.kernel import (
    Decap,
    FlowState,
    Fragment,
    GeneveEncap,
    IpipEncap,
    Nat,
    NatReply,
    NvgreEncap,
    Route,
    VxlanEncap,
)
from pktkit.craft.nat import Conntrack, NatLedger

POD_FRAME = bytes(
    Ether(src="0a:58:0a:00:00:02", dst="0a:58:0a:00:00:01", type=0x0800)
    / IP(src="10.0.0.2", dst="10.0.0.3", ttl=64, id=4321, flags="DF", proto=6)
    / TCP(sport=40000, dport=80, seq=1000, ack=0, flags="S", window=64240, options=[])
)
UNDERLAY = dict(src_mac="52:54:00:00:00:0a", dst_mac="52:54:00:00:00:0b",
                src_ip="192.168.10.1", dst_ip="192.168.10.2")


def names(frame: bytes, linktype: int = 1) -> list[str]:
    return [layer.name for layer in walk(frame, linktype)]


def test_internet_checksum_matches_rfc1071_worked_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is ~ddf2.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6")) == internet_checksum(
        bytes.fromhex("0001f203f4f5f600"))


def test_route_decrements_ttl_rewrites_macs_and_keeps_checksum_valid() -> None:
    out = Route("aa:aa:aa:aa:aa:01", "bb:bb:bb:bb:bb:02")(InFlight(POD_FRAME), FlowState())
    eth, ip, tcp = walk(out[0].frame, 1)
    assert (eth.fields["src"], eth.fields["dst"]) == ("aa:aa:aa:aa:aa:01", "bb:bb:bb:bb:bb:02")
    assert ip.fields["ttl"] == 63 and ip.fields["header_ok"] == 1
    assert tcp.fields["checksum_ok"] == 1  # TTL is not in the pseudo-header
    raw = Route(None, None)(InFlight(POD_FRAME), FlowState())[0]
    assert raw.link == "raw" and raw.frame == out[0].frame[14:]


def test_nat_rewrites_tuple_fixes_checksums_and_reply_is_reversed() -> None:
    table = Conntrack(random.Random(1), NatLedger())
    flow = FlowState()
    out = Nat(table, snat_to="192.168.1.10")(InFlight(POD_FRAME), flow)[0]
    _, ip, tcp = walk(out.frame, 1)
    assert (ip.fields["src"], tcp.fields["sport"]) == ("192.168.1.10", 40000)
    assert ip.fields["header_ok"] == 1 and tcp.fields["checksum_ok"] == 1
    reply = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x0800)
                  / IP(src="10.0.0.3", dst="192.168.1.10", ttl=60, id=1, flags=0, proto=17)
                  / UDP(sport=80, dport=40000))
    back = NatReply()(InFlight(reply), flow)[0]
    _, ip, udp = walk(back.frame, 1)
    assert (ip.fields["dst"], udp.fields["dport"]) == ("10.0.0.2", 40000)
    assert udp.fields["checksum_ok"] == 1


def test_vxlan_over_ipv4_adds_50_bytes_flags_08_and_a_udp_checksum() -> None:
    out = VxlanEncap(**UNDERLAY, vni=4096, dport=8472)(InFlight(POD_FRAME), FlowState())[0]
    assert len(out.frame) == len(POD_FRAME) + 50 and out.overhead_bytes == 50
    _, ip, udp, vxlan, *_ = walk(out.frame, 1)
    flags = (vxlan.fields["flags"], vxlan.fields["reserved1"], vxlan.fields["reserved2"])
    assert flags == (8, 0, 0)
    assert vxlan.fields["vni"] == 4096 and udp.fields["dport"] == 8472
    assert udp.fields["csum"] != 0 and udp.fields["checksum_ok"] == 1  # vxlan's udp_csum on
    assert ip.fields["header_ok"] == 1 and ip.fields["df"] == 0
    assert 32768 <= udp.fields["sport"] <= 60999
    assert out.frame[50:] == POD_FRAME
    assert Decap()(out, FlowState())[0].frame == POD_FRAME


def test_vxlan_over_ipv6_adds_70_bytes_with_a_valid_udp_checksum() -> None:
    v6 = dict(UNDERLAY, src_ip="fd00:10::1", dst_ip="fd00:10::2")
    out = VxlanEncap(**v6, vni=7, dport=4789)(InFlight(POD_FRAME), FlowState())[0]
    assert len(out.frame) == len(POD_FRAME) + 70
    _, ip6, udp, *_ = walk(out.frame, 1)
    assert ip6.name == "ipv6" and udp.fields["csum"] != 0 and udp.fields["checksum_ok"] == 1


def test_geneve_with_one_option_adds_58_bytes() -> None:
    out = GeneveEncap(**UNDERLAY, vni=99)(InFlight(POD_FRAME), FlowState())[0]
    assert len(out.frame) == len(POD_FRAME) + 14 + 20 + 8 + 8 + 8
    geneve = walk(out.frame, 1)[3]
    assert (geneve.fields["opt_len"], geneve.fields["vni"], geneve.fields["proto"]) == (8, 99,
                                                                                        0x6558)


def test_nvgre_adds_42_bytes_and_packs_vsid_and_flow_id_into_the_key() -> None:
    out = NvgreEncap(**UNDERLAY, vsid=0x123456, flow_id=0x78)(InFlight(POD_FRAME), FlowState())[0]
    assert len(out.frame) == len(POD_FRAME) + 42
    gre = walk(out.frame, 1)[2]
    assert gre.fields["key"] == 0x12345678 and gre.fields["proto"] == 0x6558
    assert gre.fields["flags"] == 0x2000  # K bit only, version 0


def test_ipip_adds_one_ip_header_to_the_inner_packet() -> None:
    out = IpipEncap(**UNDERLAY)(InFlight(POD_FRAME), FlowState())[0]
    assert len(out.frame) == len(POD_FRAME) + 20 and out.overhead_bytes == 20
    assert names(out.frame) == ["eth", "ipv4", "ipv4", "tcp"]
    assert walk(out.frame, 1)[1].fields["proto"] == 4
    decapped = Decap()(out, FlowState())[0]
    assert decapped.link == "raw" and decapped.frame == POD_FRAME[14:]


def test_fragment_splits_on_8_byte_boundaries_and_reassembles() -> None:
    big = bytes(Ether(src="0a:58:0a:00:00:02", dst="0a:58:0a:00:00:01", type=0x0800)
                / IP(src="10.0.0.2", dst="10.0.0.3", ttl=64, id=77, flags=0, proto=17)
                / UDP(sport=5000, dport=514) / (b"x" * 1472))
    pieces = Fragment(1450)(InFlight(big), FlowState())
    assert [p.fragment for p in pieces] == ["first", "non-first"]
    ips = [walk(p.frame, 1)[1].fields for p in pieces]
    assert [(f["len"], f["mf"], f["frag_offset"], f["id"]) for f in ips] == [
        (1444, 1, 0, 77), (20 + 1480 - 1424, 0, 1424, 77)]
    assert all(checksum_ok(p.frame[14:34]) for p in pieces)
    assert pieces[0].frame[34:] + pieces[1].frame[34:] == big[34:]
    dont_fragment = bytearray(big)
    dont_fragment[20] |= 0x40
    assert Fragment(1450)(InFlight(bytes(dont_fragment)), FlowState()) == []
