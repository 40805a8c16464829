"""pktkit.analysis.fragments through correlate(): a datagram's fragments as one sighting, one
packet with its whole copies and across NAT; a tunnel packet's pieces with their first piece.

Synthetic tables shaped after the lab's captures (``pktkit lab``, Linux 6.18; the lab tests
check the same on the kernel's bytes as root), with lengths worked out from the IP header
rules by hand, and a corpus capture read against tshark's reading of the same bytes.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from synthetic_tables import table

from pktkit.analysis import correlate
from pktkit.analysis.pipeline import analyze

T0 = 10**18
US = 1_000
# docker-snat's oversized datagram (the lab's frames 97-101): 2,000 bytes of UDP payload from
# 172.17.0.2:48192, IP id 6672; the container's 1500-byte MTU cuts the 2,008-byte IP payload
# at 1,480 (the first fragment: 8 bytes of UDP header, 1,472 of payload; the second: 528).
UDP = {"ip_version": 4, "proto": 17, "ip_id": 6672, "dst": "203.0.113.10", "sport": 48192,
       "dport": 514, "payload_hash": 288857908}
WHOLE = {**UDP, "l4_payload_len": 2000}
FIRST = {**UDP, "more_fragments": True, "l4_payload_len": 1472}
REST = {**UDP, "frag_offset": 1480, "l4_payload_len": 528, "sport": None, "dport": None,
        "payload_hash": 1909270694}


def at(ts_us: float, interface: str, *pieces: dict[str, Any], **fields: Any,
       ) -> list[dict[str, Any]]:
    """Rows of one sighting: each piece at ``interface`` and time, with ``fields``."""
    return [{**piece, "ts_ns": T0 + round(ts_us * US), "interface": interface, **fields}
            for piece in pieces]


def docker_snat(start_us: float, container: str, port: int) -> list[dict[str, Any]]:
    """The datagram as the lab's host saw it: fragments on the container's veth (sent by it),
    whole on docker0 (conntrack reassembled it), fragments on eth0 masqueraded, TTL - 1, in
    both the -i any file and eth0's own."""
    inside = {"src": container, "sport": port}
    outside = {"src": "192.168.1.10", "ttl": 63}
    return [*at(start_us, f"veth-{container}", {**FIRST, **inside}, {**REST, **inside},
                direction="other", capture="any.pcap"),
            *at(start_us + 0.02, "docker0", {**WHOLE, **inside}, direction="in",
                capture="any.pcap"),
            *at(start_us + 0.07, "eth0", {**FIRST, **outside}, {**REST, **outside},
                direction="out", capture="any.pcap"),
            *at(start_us + 0.07, "eth0", {**FIRST, **outside}, {**REST, **outside},
                capture="eth0.pcap")]


def test_a_datagram_across_conntrack_and_nat_is_one_packet() -> None:
    """Its fragments before the NAT, the whole datagram conntrack reassembled, the
    re-fragmented and masqueraded copies: one packet, four hops (a datagram's fragments at
    one point share theirs)."""
    found = correlate.correlate(table(docker_snat(0, "172.17.0.2", 48192)))
    assert set(found.packet_id) == {0}
    assert list(found.hop) == [0, 0, 1, 2, 2, 3, 3]
    assert list(found.hops["interface"]) == ["veth-172.17.0.2", "docker0", "eth0", "eth0"]


def test_look_alike_datagrams_through_one_nat_stay_apart() -> None:
    """Two containers send the same bytes with the same IP id and source port, 0.4 s apart:
    after the masquerade their copies look alike on eth0; each is its own packet, by time."""
    rows = docker_snat(0, "172.17.0.2", 48192) + docker_snat(400_000, "172.17.0.3", 48192)
    found = correlate.correlate(table(rows))
    assert list(found.packet_id) == [0] * 7 + [1] * 7


def test_a_datagram_cut_at_other_boundaries_is_the_same_packet() -> None:
    """Re-fragmented for a 1,000-byte MTU after the NAT: IP payloads of 976, 976 and 56 bytes
    (offsets 0, 976, 1,952), the first carrying the UDP header: 968 + 976 + 56 = 2,000 bytes
    of payload, as before."""
    outside = {"src": "192.168.1.10", "ttl": 63, "direction": "out"}
    pieces = [{**FIRST, "l4_payload_len": 968},
              {**REST, "frag_offset": 976, "l4_payload_len": 976, "more_fragments": True},
              {**REST, "frag_offset": 1952, "l4_payload_len": 56}]
    rows = [*at(0, "veth", {**FIRST, "src": "172.17.0.2"}, {**REST, "src": "172.17.0.2"},
                direction="other"),
            *at(0.07, "eth0", *(dict(piece, **outside) for piece in pieces))]
    found = correlate.correlate(table(rows))
    assert set(found.packet_id) == {0} and list(found.hop) == [0, 0, 1, 1, 1]


def test_a_datagram_missing_a_fragment_joins_the_packet_it_was_cut_from() -> None:
    """A router forwards fragments one by one; the second was lost before it: its two points
    see only the first fragment, a datagram missing pieces. It joins the sender's packet by
    its datagram key (its addresses are the sender's: nothing forwards an incomplete datagram
    through a NAT)."""
    sender = {"src": "10.0.0.1"}
    rows = [*at(0, "eth0", {**FIRST, **sender}, {**REST, **sender}, direction="out"),
            *at(40, "ens1", {**FIRST, **sender}, direction="in", ttl=64, node="router"),
            *at(45, "ens2", {**FIRST, **sender}, direction="out", ttl=63, node="router")]
    found = correlate.correlate(table(rows))
    assert set(found.packet_id) == {0} and list(found.hop) == [0, 0, 1, 2]


def test_an_ipv6_datagram_and_its_fragments_are_one_packet() -> None:
    """IPv6: only a Fragment header has an id; the reassembled packet has none, so the
    fragments (the first with the datagram's first bytes) match the whole copy. A datagram of
    the same length whose first bytes differ does not."""
    whole = {"ip_version": 6, "l4_payload_len": 1800, "payload_hash": 5, "ip_id": None}
    first = {**whole, "ip_id": 77, "more_fragments": True, "l4_payload_len": 1400}
    rest = {**first, "frag_offset": 1408, "more_fragments": False, "l4_payload_len": 400,
            "payload_hash": 8, "sport": None, "dport": None}
    other = {**first, "ip_id": 78, "payload_hash": 6}
    rows = [*at(0, "veth", whole),
            *at(9, "eth0", first, rest, ttl=63),
            *at(500, "veth", {**whole, "payload_hash": 6}),
            *at(509, "eth0", other, {**rest, "ip_id": 78}, ttl=63),
            *at(600_000, "eth0", {**other, "ip_id": 79, "payload_hash": 9}, {**rest, "ip_id": 79},
                ttl=63)]
    found = correlate.correlate(table(rows))
    assert list(found.packet_id) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert list(found.hop) == [0, 1, 1, 0, 1, 1, 0, 0]


# -- the pieces of a tunnel packet ------------------------------------------------------------

VTEPS = {"outer_src": "192.168.10.1", "outer_dst": "192.168.10.2"}


def tunnel_packet(start_us: float, outer_id: int, sport: int) -> list[list[dict[str, Any]]]:
    """Tenant 2000's full-size frame (1,500-byte inner IP packet) in a VXLAN packet of 1,550
    bytes on a 1,500-byte underlay: the first piece holds the VXLAN header and the inner
    packet's first 1,430 bytes (1,480 of outer IP payload), the second the last 70
    (offset 1,480; its row: the outer header, UDP, no ports). Per point, its rows: the pod's
    veth, node-a's eth0, node-b's eth0 (the outer TTL 64, the inner 63: a routed tenant),
    node-b's vxlan device (reassembled, decapsulated)."""
    inner = {"ip_version": 4, "proto": 17, "ip_id": 6548, "src": "10.0.0.2",
             "dst": "10.0.0.3", "sport": sport, "l4_payload_len": 1472,
             "payload_hash": 2358385237 + sport}
    first = {**inner, "ttl": 63, "encap": "vxlan", "vni": 2000, **VTEPS,
             "outer_ip_id": outer_id, "fragment": True}
    piece = {"ip_version": 4, "proto": 17, "ip_id": outer_id, "ttl": 64, "frag_offset": 1480,
             "l4_payload_len": 70, "payload_hash": 571124085, "sport": None, "dport": None,
             "src": VTEPS["outer_src"], "dst": VTEPS["outer_dst"]}
    return [at(start_us, "veth2000-1", inner, node="node-a", direction="other"),
            at(start_us + 12, "eth0", first, node="node-a", direction="out"),
            at(start_us + 13, "eth0", piece, node="node-a", direction="out"),
            at(start_us + 40, "eth0", first, node="node-b", direction="in"),
            at(start_us + 41, "eth0", piece, node="node-b", direction="in"),
            at(start_us + 47, "vxlan2000", {**inner, "ttl": 63}, node="node-b",
               direction="other")]


def test_a_tunnel_packets_pieces_join_their_first_piece() -> None:
    """Two such packets between the same VTEPs, their pieces interleaved at each point (first
    A, first B, piece A, piece B): each piece joins the first piece with its outer id, on
    both nodes, and shares its hop."""
    a, b = tunnel_packet(0, 990, 49815), tunnel_packet(0.5, 991, 49816)
    rows = sorted((row for point in (*a, *b) for row in point), key=lambda r: r["ts_ns"])
    assert [r.get("outer_ip_id", r["ip_id"]) for r in rows if r["interface"] == "eth0"] == \
        [990, 991, 990, 991] * 2
    found = correlate.correlate(table(rows))
    assert len(set(found.packet_id)) == 2
    for packet in set(found.packet_id):
        mine = [(row, hop) for row, hop, p in zip(rows, found.hop, found.packet_id, strict=True)
                if p == packet]
        assert len(mine) == 6
        # the first pieces' outer id and the pieces' own: one outer packet
        assert len({row.get("outer_ip_id", row["ip_id"]) for row, _ in mine
                    if row["interface"] == "eth0"}) == 1
        hop_at = {(row["node"], row["interface"]): hop for row, hop in mine}
        assert sorted(hop_at.values()) == [0, 1, 2, 3]  # a piece: its first piece's hop
        assert all(hop == hop_at[(row["node"], row["interface"])] for row, hop in mine)
    assert len(found.hops) == 8  # a piece is no sighting of its own


def test_pieces_without_their_first_piece_stay_apart() -> None:
    """Without the first piece (lost, or cut by the capture), nothing says which packet a
    piece belongs to: it is a packet of its own, not some other packet's."""
    a = tunnel_packet(0, 990, 49815)
    rows = [row for point in (a[0], a[2], a[5]) for row in point]
    found = correlate.correlate(table(rows))
    assert found.packet_id[0] == found.packet_id[2] != found.packet_id[1]


def tshark_fields(tshark: str, path: Path, fields: list[str]) -> list[dict[str, list[str]]]:
    cmd = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [{name: value.split("|") if value else [] for name, value in
             zip(fields, line.split("\t"), strict=True)} for line in out.splitlines()]


def test_corpus_nvgre_pieces_join_their_packets(corpus_dir: Path, tshark: str) -> None:
    """zeek__erspan-gre-teb-fragmented: GRE (NVGRE layout) packets fragmented after
    encapsulation, 39 non-first pieces without a GRE header (README, Pitfalls). Grouped as
    tshark reads the same bytes (reassembly off: outer source, destination and IP id), every
    fragmented outer packet is one packet of one hop; each piece has no VNI of its own and its
    packet's overlay: NVGRE, the VSID of its first piece's GRE key."""
    path = corpus_dir / "zeek__erspan-gre-teb-fragmented.pcap"
    rows = tshark_fields(tshark, path, ["ip.src", "ip.dst", "ip.id", "ip.flags.mf",
                                        "ip.frag_offset", "gre.key"])
    packets = analyze(path).packets
    assert len(packets) == len(rows)
    datagrams: dict[tuple[str, str, str], list[int]] = collections.defaultdict(list)
    vsid = {}
    for position, row in enumerate(rows):
        if row["ip.flags.mf"][:1] == ["1"] or row["ip.frag_offset"][:1] not in (["0"], []):
            key = (row["ip.src"][0], row["ip.dst"][0], row["ip.id"][0])
            datagrams[key].append(position)
            if row["gre.key"]:
                vsid[key] = int(row["gre.key"][0], 0) >> 8
    pieces = [p for key, positions in datagrams.items() for p in positions[1:]]
    assert len(datagrams) == 16 and len(pieces) == 39 and set(vsid) == set(datagrams)
    packet_id = packets["packet_id"].to_numpy(np.int64)
    hop = packets["hop"].to_numpy(np.int64)
    for key, positions in datagrams.items():
        assert len(set(packet_id[positions])) == 1 and len(set(hop[positions])) == 1, key
        assert (packet_id == packet_id[positions[0]]).sum() == len(positions)
        assert packets["encap"].iloc[positions[0]] == "nvgre"
        for p in positions[1:]:
            row = packets.iloc[p]
            assert row["encap"] == "none" and pd.isna(row["vni"])
            assert (row["overlay_encap"], row["overlay_vni"]) == ("nvgre", vsid[key])
    assert len({packet_id[positions[0]] for positions in datagrams.values()}) == 16
