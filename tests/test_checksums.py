"""Checksums: the arithmetic against a literal RFC 1071 sum, crafted packets of every status in
both engines (dpkt writes their checksums, an independent implementation), and the ``checksum``
column of every corpus file against tshark's verdicts."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_columns import pcap_file
from test_corpus import NO_REASSEMBLY
from test_dpkt import CORPUS_FILES

from pktkit.capture import checksums as cs
from pktkit.capture.table import read_packets


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071, literally: 16-bit words, end-around carry; mod 65535 for comparison."""
    if len(data) & 1:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack(">H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total % 65535


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000),
       cuts=st.lists(st.tuples(st.integers(0, 2999), st.integers(0, 1600)), min_size=1,
                     max_size=30),
       lead=st.integers(0, 7))
def test_region_sums_equal_rfc1071(data: bytes, cuts: list, lead: int) -> None:
    """Any region at any alignment (``lead`` shifts the buffer), up to the buffer's last byte."""
    buf = np.frombuffer(bytes(lead) + data, np.uint8)[lead:]
    rows = [(a % len(data), min(n, len(data) - a % len(data))) for a, n in cuts]
    at = np.array([a for a, _ in rows], np.int64)
    length = np.array([n for _, n in rows], np.int64)
    want = [ones_complement_sum(data[a:a + n]) for a, n in rows]
    assert cs.region_sums(buf, at, length).tolist() == want
    assert [cs.region_sum(data, a, n) for a, n in rows] == want
    even = data[:len(data) // 2 * 2]
    if even:
        block = np.frombuffer(even, np.uint8).reshape(1, -1)
        assert cs.block_sums(block).tolist() == [ones_complement_sum(even)]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=2, max_size=3000),
       regions=st.lists(st.tuples(st.integers(0, 2999), st.integers(1, 1600), st.integers(0, 99),
                                  st.integers(0, 99), st.booleans()), min_size=1, max_size=20))
def test_nested_region_sums_equal_rfc1071(data: bytes, regions: list) -> None:
    """Outer regions holding an inner one at any offset, odd or even, with bytes after it or
    not (``inside``): each outer region's sum is still RFC 1071's over all its bytes."""
    at, length, inside = [], [], []
    for a, n, into, tail, nested in regions:
        a %= len(data)
        n = min(n, len(data) - a)
        outer = len(at)
        at.append(a)
        length.append(n)
        inside.append(-1)
        skip, keep = min(into, n), max(n - min(into, n) - min(tail, n), 0)
        if nested:  # the inner region: after ``skip`` bytes, ``keep`` long
            inside[outer] = len(at)
            at.append(a + skip)
            length.append(keep)
            inside.append(-1)
    buf = np.frombuffer(data, np.uint8)
    got = cs.nested_region_sums(buf, np.array(at), np.array(length), np.array(inside))
    assert got.tolist() == [ones_complement_sum(data[a:a + n])
                            for a, n in zip(at, length, strict=True)]


# -- crafted packets: both engines, every status ----------------------------------------------

V4 = (b"\x0a\x00\x00\x01", b"\xc0\xa8\x01\x02")
V6 = (bytes.fromhex("20010db8000000000000000000000001"),
      bytes.fromhex("fe800000000000000000000000000abc"))
ETHER = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"


def ipv4(l4: dpkt.Packet | bytes, proto: int, **kw: int) -> bytes:
    """IPv4 with every checksum filled in by dpkt (IP header, and the TCP/UDP inside)."""
    return bytes(dpkt.ip.IP(src=V4[0], dst=V4[1], p=proto, ttl=64, id=7, data=l4, **kw))


def ipv6(l4: dpkt.Packet, nxt: int) -> bytes:
    body = bytes(l4)
    ip = dpkt.ip6.IP6(src=V6[0], dst=V6[1], nxt=nxt, hlim=64, plen=len(body), data=l4)
    return bytes(ip)


def tcp(payload: bytes = b"hello, world!") -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(sport=1234, dport=80, seq=1, flags=0x18, data=payload)


def udp(payload: bytes = b"odd", dport: int = 5353) -> dpkt.udp.UDP:
    return dpkt.udp.UDP(sport=53, dport=dport, ulen=8 + len(payload), data=payload)


def ether(ip: bytes, v6: bool = False) -> bytes:
    return ETHER + (b"\x86\xdd" if v6 else b"\x08\x00") + ip


def set16(frame: bytes, at: int, value: int) -> bytes:
    return frame[:at] + struct.pack(">H", value) + frame[at + 2:]


def pseudo_sum(ip: bytes, proto: int) -> int:
    """The folded, uncomplemented pseudo-header sum Linux leaves for the NIC (CHECKSUM_PARTIAL)."""
    v6 = ip[0] >> 4 == 6
    addrs = ip[8:40] if v6 else ip[12:20]
    length = len(ip) - (40 if v6 else 20)
    total = sum(struct.unpack(f">{len(addrs) // 2}H", addrs)) + proto + length
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def crafted() -> dict[str, tuple[bytes, int, str | None]]:
    """name → (frame, wire_len, the checksum column's value)."""
    good = ipv4(tcp(), 6)
    echo = ipv4(dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=2, data=b"ping!")), 1)
    v6_udp = ipv6(udp(), 17)
    vxlan = ipv4(udp(struct.pack(">II", 0x08000000, 77 << 8) + ether(good), 4789), 17)
    vxlan = set16(vxlan, 20 + 6, 0)  # Linux sends VXLAN without a UDP checksum

    def summed_vxlan(inner: bytes) -> bytes:  # the outer UDP checksum filled in (dpkt)
        return ipv4(udp(struct.pack(">II", 0x08000000, 77 << 8) + inner, 4789), 17)

    bad_inner = good[:-1] + bytes([good[-1] ^ 1])
    vxlan_summed = summed_vxlan(ether(good))
    frames = {
        "tcp-good": (ether(good), "ok"),
        "udp-good-odd-length": (ether(ipv4(udp(b"odd"), 17)), "ok"),
        "icmp-good": (ether(echo), "ok"),
        "tcp6-good": (ether(ipv6(tcp(b"12345"), 6), True), "ok"),
        "icmp6-good": (ether(ipv6(dpkt.icmp6.ICMP6(type=128, data=dpkt.icmp6.ICMP6.Echo(
            id=1, seq=2, data=b"x")), 58), True), "ok"),
        "tcp-payload-flipped": (ether(good[:-1] + bytes([good[-1] ^ 0x40])), "bad"),
        "ip-header-bad": (ether(set16(good, 10, 0x1234)), "bad"),
        "ip-header-zero": (ether(set16(good, 10, 0)), "offload"),  # Windows' IP offload
        "tcp-partial": (ether(set16(good, 20 + 16, pseudo_sum(good, 6))), "offload"),
        "tcp-partial-off-by-one": (ether(set16(good, 20 + 16, pseudo_sum(good, 6) ^ 1)), "bad"),
        "udp6-partial": (ether(set16(v6_udp, 40 + 6, pseudo_sum(v6_udp, 17)), True), "offload"),
        "udp-zero": (ether(set16(ipv4(udp(), 17), 20 + 6, 0)), "ok"),
        "udp6-zero": (ether(set16(v6_udp, 40 + 6, 0), True), "ok"),
        "icmp-pseudo-sum-is-bad": (ether(set16(echo, 22, pseudo_sum(good, 6))), "bad"),
        "vxlan-outer-zero-inner-good": (ether(vxlan), "ok"),
        "vxlan-inner-bad": (ether(vxlan[:-1] + bytes([vxlan[-1] ^ 1])), "bad"),
        # the outer UDP checksum covers the inner packet (summed once for both, see checksums)
        "vxlan-outer-good-inner-good": (ether(vxlan_summed), "ok"),
        "vxlan-outer-bad-inner-good": (ether(set16(vxlan_summed, 20 + 6, 0x1234)), "bad"),
        "vxlan-outer-good-inner-bad": (ether(summed_vxlan(ether(bad_inner))), "bad"),
        "vxlan-both-bad": (ether(vxlan_summed[:-1] + bytes([vxlan_summed[-1] ^ 1])), "bad"),
        "vxlan-vni-flipped": (ether(vxlan_summed[:33] + bytes([vxlan_summed[33] ^ 1])
                                    + vxlan_summed[34:]), "bad"),
        "vxlan-inner-padded": (ether(summed_vxlan(ether(good) + b"\x00pad")), "ok"),
        "gre-not-checked": (ether(ipv4(b"\x00\x00\x00\x00", 47)), "ok"),  # only its IP header
        "arp-nothing-checked": (ETHER + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
                                + bytes(20), None),
    }
    out = {name: (frame, len(frame), want) for name, (frame, want) in frames.items()}
    # cut by the snaplen: the L4 bytes are not all there; a fragment: the datagram is not
    out["tcp-snaplen-cut"] = (ether(good)[:-1], len(ether(good)), "unchecked")
    out["ip-header-cut"] = (ether(good)[:14 + 18], len(ether(good)), "unchecked")
    first = ipv4(b"\x00\x50\x00\x50" + bytes(20), 6, mf=1)  # MF: a first fragment
    out["first-fragment"] = (ether(first), len(ether(first)), "unchecked")
    return out


def test_crafted_checksums_in_both_engines(tmp_path: Path) -> None:
    cases = crafted()
    path = pcap_file(tmp_path / "checksums.pcap", [(f, w) for f, w, _ in cases.values()])
    for engine in ("fast", "reference"):
        table = read_packets(path, engine=engine)  # type: ignore[arg-type]
        got = [None if pd.isna(v) else v for v in table["checksum"]]
        assert dict(zip(cases, got, strict=True)) == {n: w for n, (_, _, w) in cases.items()}
    assert list(table["checksum"].cat.categories) == ["ok", "bad", "offload", "unchecked"]


def test_combine_is_the_worst_and_zero_counts_as_ok() -> None:
    N, G, B, F, U, Z = cs.NONE, cs.OK, cs.BAD, cs.OFFLOAD, cs.UNCHECKED, cs.ZERO
    outer = np.array([N, G, G, G, Z, G, G, Z], np.int8)
    inner = np.array([N, N, B, F, G, U, Z, N], np.int8)
    extra = np.array([N, G, F, U, G, F, G, N], np.int8)
    want = [N, G, B, F, G, F, G, G]
    assert cs.combine(outer, inner, extra).tolist() == want
    assert [cs.combine_one(*s) for s in zip(outer, inner, extra, strict=True)] == want


# -- the corpus against tshark ----------------------------------------------------------------

CHECK = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", *NO_REASSEMBLY]
STATUS_FIELDS = ["frame.protocols", "ip.checksum.status", "tcp.checksum.status",
                 "udp.checksum.status", "icmp.checksum.status", "icmpv6.checksum.status"]
CHECKED = ("ip", "tcp", "udp", "icmp", "icmpv6")
# tshark's checksum status (0 bad, 1 good, 2 unverified, 3 not present, 4 illegal: a UDP
# checksum 0 over IPv4 and IPv6) → pktkit's; tshark has no offload: for it those are bad.
TSHARK_STATUS = {"0": "bad", "1": "ok", "2": "unchecked", "3": "ok", "4": "ok"}
WORST = ["ok", "unchecked", "offload", "bad"]


def tshark_statuses(tshark: str, path: Path) -> list[list[str]]:
    """Per frame, tshark's verdicts on the headers pktkit checks: the IP, TCP, UDP, ICMP and
    ICMPv6 layers of ``frame.protocols`` up to and including the first ICMP layer (what follows
    is a header an ICMP error quotes), in layer order."""
    import subprocess

    cmd = [tshark, "-n", "-d", "udp.port==8472,vxlan", *CHECK, "-r", str(path), "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in STATUS_FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    frames = []
    for line in out.splitlines():
        values = dict(zip(STATUS_FIELDS, line.split("\t"), strict=True))
        pending = {k: values[f"{k}.checksum.status"].split("|") for k in CHECKED}
        found = []
        for layer in values["frame.protocols"].split(":"):
            if layer in CHECKED and pending[layer] and pending[layer][0]:
                found.append(pending[layer].pop(0))
            if layer in ("icmp", "icmpv6"):
                break
        frames.append(found)
    return frames


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_checksums_agree_with_tshark(name: str, corpus_dir: Path, tshark: str) -> None:
    """Per frame, the ``checksum`` column is the worst of tshark's verdicts on the same headers
    (tshark's bad: pktkit's bad or offload). One documented difference: a packet inside a first
    IP fragment is ``unchecked`` here (its bytes go on in the next fragment); tshark checks the
    bytes it has and says bad."""
    path = corpus_dir / name
    verdicts = tshark_statuses(tshark, path)
    problems = []
    for engine in ("fast", "reference"):
        table = read_packets(path, engine=engine)  # type: ignore[arg-type]
        assert len(table) == len(verdicts)
        for frame, got, fragment, shark in zip(table["frame"], table["checksum"],
                                               table["fragment"], verdicts, strict=True):
            got = None if pd.isna(got) else str(got)
            mapped = [TSHARK_STATUS[v] for v in shark]
            want = max(mapped, key=WORST.index) if mapped else None
            if got == want or (got == "offload" and want == "bad"):
                continue
            if fragment and got == "unchecked" and want == "bad":
                continue
            problems.append(f"frame {frame} ({engine}): pktkit {got}, tshark {shark}")
    assert not problems, "\n".join(problems[:20])


def test_the_corpus_has_checksums_of_every_kind(corpus_dir: Path) -> None:
    """The statuses tested above all occur in the corpus (so that the test can fail)."""
    seen = set()
    for name in CORPUS_FILES:
        seen |= set(read_packets(corpus_dir / name)["checksum"].dropna().astype(str))
    assert seen == {"ok", "bad", "offload", "unchecked"}
