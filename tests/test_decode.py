"""Frame decoding, checked against frames built by hand from the RFC header layouts.

Every frame here is assembled with struct (never with pktkit's own crafting code), so the
expected values (overheads, VNIs, ports) come from the RFCs, not from the code under test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pktkit.capture.decode import DecodedPacket, Decoder, Tunnel, decode
from pktkit.capture.read import read_frames
from pktkit.capture.reasons import (
    BAD_IP,
    BAD_L4,
    BAD_LINK,
    BAD_TUNNEL,
    INTERNAL_ERROR,
    TOO_DEEP,
    TRUNCATED,
    UNKNOWN_LINKTYPE,
)

# -- byte builders (RFC layouts; shared with test_table.py) ----------------------------------

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")


def eth(
    payload: bytes, ethertype: int = 0x0800, *, tags: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """Ethernet II (IEEE 802.3): dst, src, then (TPID, TCI) tags, then the ethertype."""
    tag_bytes = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in tags)
    return MAC_B + MAC_A + tag_bytes + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str, dst: str, proto: int, payload: bytes, *, ident: int = 0x1234, ttl: int = 64,
    flags_frag: int = 0, options: bytes = b"", total: int | None = None, ihl: int | None = None,
    version: int = 4,
) -> bytes:
    """RFC 791 header (checksum left 0: the decoder does not verify it)."""
    header_len = 20 + len(options)
    ihl = header_len // 4 if ihl is None else ihl
    total = header_len + len(payload) if total is None else total
    return struct.pack(
        "!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, ident, flags_frag, ttl, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    ) + options + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, plen: int | None = None) -> bytes:
    """RFC 8200 fixed header."""
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB", 6 << 28, plen, nh, 64) + socket.inet_pton(
        socket.AF_INET6, src
    ) + socket.inet_pton(socket.AF_INET6, dst) + payload


def udp(sport: int, dport: int, payload: bytes, *, length: int | None = None) -> bytes:
    length = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, length, 0) + payload


def tcp(
    sport: int, dport: int, *, flags: int = 0x002, doff: int = 5, payload: bytes = b""
) -> bytes:
    options = b"\x01" * (max(doff, 5) * 4 - 20)
    return struct.pack(
        "!HHIIBBHHH", sport, dport, 1000, 0, (doff << 4) | (flags >> 8), flags & 0xFF, 65535, 0, 0
    ) + options + payload


def icmp_echo(ident: int = 7, seq: int = 1, icmp_type: int = 8) -> bytes:
    return struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + b"ping"


def vxlan(vni: int, payload: bytes, *, flags: int = 0x08) -> bytes:
    """RFC 7348 §5: flags (I = 0x08), 24 reserved bits, VNI (24 bits), 8 reserved bits."""
    return struct.pack("!B3sI", flags, b"\x00\x00\x00", vni << 8) + payload


def geneve(vni: int, protocol: int, payload: bytes, *, options: bytes = b"",
           version: int = 0, opt_len: int | None = None) -> bytes:
    """RFC 8926 §3.4: Ver(2) OptLen(6) O C Rsvd(6) Protocol Type(16) VNI(24) Reserved(8)."""
    opt_len = len(options) // 4 if opt_len is None else opt_len
    return struct.pack("!BBHI", (version << 6) | opt_len, 0, protocol, vni << 8) + options + payload


def geneve_option(option_class: int, option_type: int, data: bytes) -> bytes:
    """RFC 8926 §3.5: class(16) type(8) R R R Length(5, in 4-byte words), data."""
    return struct.pack("!HBB", option_class, option_type, len(data) // 4) + data


def gre(protocol: int, payload: bytes, *, key: int | None = None, seq: int | None = None,
        checksum: bool = False, version: int = 0) -> bytes:
    """RFC 2784 + RFC 2890: C K S bits, version, protocol type, then checksum/key/sequence."""
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0)
    flags |= (0x1000 if seq is not None else 0) | version
    out = struct.pack("!HH", flags, protocol)
    if checksum:
        out += b"\x00\x00\x00\x00"
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out + payload


def inner_tcp_ipv4() -> bytes:
    return ipv4("192.168.1.1", "192.168.1.2", 6, tcp(40000, 443, payload=b"hello"))


def inner_frame() -> bytes:
    return eth(inner_tcp_ipv4())


def vxlan_frame(vni: int = 4242, dport: int = 4789) -> bytes:
    return eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(51000, dport, vxlan(vni, inner_frame()))))


INNER = ("192.168.1.1", "192.168.1.2", 6, 40000, 443)


def innermost(p: DecodedPacket) -> tuple:
    return (p.src, p.dst, p.proto, p.sport, p.dport)


# -- hand-checked overheads (acceptance 3) ----------------------------------------------------


def test_vxlan_over_ipv4_overhead_50() -> None:
    p = decode(vxlan_frame(), 1)
    assert p.error is None
    assert (p.encap, p.vni, p.overhead_bytes) == ("vxlan", 4242, 14 + 20 + 8 + 8)
    assert innermost(p) == INNER
    assert (p.outer_src, p.outer_dst, p.outer_sport, p.outer_dport) == (
        "10.0.0.1", "10.0.0.2", 51000, 4789)
    assert p.ethertype == 0x0800 and p.tcp_flags == 0x002


def test_vxlan_over_ipv6_overhead_70() -> None:
    frame = eth(ipv6("fd00::1", "fd00::2", 17, udp(51000, 4789, vxlan(7, inner_frame()))), 0x86DD)
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes, p.error) == ("vxlan", 7, 14 + 40 + 8 + 8, None)
    assert (p.outer_src, p.outer_dst) == ("fd00::1", "fd00::2")
    assert innermost(p) == INNER


def test_geneve_with_one_8_byte_option_overhead_58() -> None:
    option = geneve_option(0x0102, 0x80, b"\xaa\xbb\xcc\xdd")  # 4-byte header + 4 bytes data
    assert len(option) == 8
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17,
                     udp(40001, 6081, geneve(10, 0x6558, inner_frame(), options=option))))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes, p.error) == ("geneve", 10, 14 + 20 + 8 + 8 + 8, None)
    assert innermost(p) == INNER


def test_geneve_carrying_ip_without_ethernet() -> None:
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 6081, geneve(0, 0x0800, inner_tcp_ipv4()))))
    p = decode(frame, 1)
    # IP payload: the outer link header is not overhead (the packet needs one anyway).
    assert (p.encap, p.vni, p.overhead_bytes) == ("geneve", 0, 20 + 8 + 8)
    assert innermost(p) == INNER


def test_nvgre_over_ipv4_overhead_42_and_vsid() -> None:
    key = (0x123456 << 8) | 0x7F  # RFC 7637 §3.2: VSID (24 bits) | FlowID (8 bits)
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x6558, inner_frame(), key=key)))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes, p.error) == ("nvgre", 0x123456, 14 + 20 + 8, None)
    assert p.tunnels == [Tunnel("nvgre", 0x123456, key)]
    assert (p.outer_src, p.outer_sport) == ("10.0.0.1", None)
    assert innermost(p) == INNER


def test_ipip_overhead_20_is_the_outer_ip_header_only() -> None:
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 4, inner_tcp_ipv4()))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes) == ("ipip", None, 20)
    assert innermost(p) == INNER
    assert (p.outer_src, p.outer_dst, p.outer_proto) == ("10.0.0.1", "10.0.0.2", 4)


def test_6in4_and_4in6_and_raw_ip_link() -> None:
    inner6 = ipv6("2001:db8::1", "2001:db8::2", 17, udp(5353, 53, b"q"))
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 41, inner6)), 1)
    assert (p.encap, p.overhead_bytes, p.src, p.proto, p.dport) == (
        "ipip", 20, "2001:db8::1", 17, 53)
    p = decode(eth(ipv6("2001:db8::a", "2001:db8::b", 4, inner_tcp_ipv4()), 0x86DD), 1)
    assert (p.encap, p.overhead_bytes, innermost(p)) == ("ipip", 40, INNER)
    p = decode(ipv4("10.0.0.1", "10.0.0.2", 4, inner_tcp_ipv4()), 101)  # no link header
    assert (p.encap, p.overhead_bytes, innermost(p)) == ("ipip", 20, INNER)


def test_plain_gre_with_checksum_key_and_sequence() -> None:
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 47,
                     gre(0x0800, inner_tcp_ipv4(), key=99, seq=5, checksum=True)))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes) == ("gre", 99, 20 + 4 + 4 + 4 + 4)
    assert innermost(p) == INNER


def test_gre_keepalive_payload_is_not_ip() -> None:
    """A tunnel carrying something that is not IP: src/dst stay empty, outer_* hold the IPs."""
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x0000, b"", key=40)))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.src, p.outer_src, p.error) == ("gre", 40, None, "10.0.0.1", None)


def test_erspan_type_ii_and_iii_reach_the_mirrored_frame() -> None:
    erspan2 = struct.pack("!HHI", (1 << 12) | 100, 0x0123, 0)  # ver 1, VLAN 100, session 0x123
    frame = eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(0x88BE, erspan2 + inner_frame(), seq=7)))
    p = decode(frame, 1)
    assert (p.encap, p.overhead_bytes) == ("erspan", 14 + 20 + 8 + 8)
    assert p.tunnels[0].erspan_type == 2 and p.tunnels[0].erspan_session == 0x123
    assert innermost(p) == INNER
    # type III: ver 2, session 5, timestamp, SGT, P/FT(0 = Ethernet)/HW ID/D/Gra/O = 0
    erspan3 = struct.pack("!HHIHH", (2 << 12) | 20, 5, 0xA3595BFF, 0, 0x0006)
    p = decode(eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(0x22EB, erspan3 + inner_frame()))), 1)
    assert (p.encap, p.overhead_bytes, p.tunnels[0].erspan_type) == ("erspan", 14 + 20 + 4 + 12, 3)
    assert innermost(p) == INNER
    # type I: GRE 0x88BE without sequence number, no ERSPAN header
    p = decode(eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(0x88BE, inner_frame()))), 1)
    assert (p.encap, p.overhead_bytes, p.tunnels[0].erspan_type) == ("erspan", 14 + 20 + 4, 1)


def test_vxlan_ports_default_extra_and_gpe() -> None:
    assert decode(vxlan_frame(dport=8472), 1).encap == "vxlan"
    assert decode(vxlan_frame(dport=9999), 1).encap == "none"
    p = decode(vxlan_frame(dport=9999), 1, vxlan_ports=[9999])
    assert (p.encap, p.vni, innermost(p)) == ("vxlan", 4242, INNER)
    gpe = struct.pack("!BHBI", 0x0C, 0, 1, 77 << 8) + inner_tcp_ipv4()  # I+P, next = IPv4
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 4790, gpe))), 1)
    assert (p.encap, p.vni, p.overhead_bytes, innermost(p)) == ("vxlan-gpe", 77, 20 + 8 + 8,
                                                                 INNER)


def test_sll2_capture_counts_the_ethernet_header_that_was_on_the_wire() -> None:
    # SLL2: protocol, reserved, ifindex, ARPHRD_ETHER (1), packet type, addr len, addr (8).
    cooked = struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 4, 6, b"\x02" * 6)
    p = decode(cooked + vxlan_frame()[14:], 276)
    assert (p.encap, p.overhead_bytes) == ("vxlan", 14 + 20 + 8 + 8)
    tunnel_device = struct.pack("!HHIHBB8s", 0x0800, 0, 9, 768, 4, 0, b"")  # ARPHRD_TUNNEL
    p = decode(tunnel_device + vxlan_frame()[14:], 276)
    assert p.overhead_bytes == 20 + 8 + 8  # that device had no Ethernet header


def test_nested_vxlan_three_deep() -> None:
    frame = inner_frame()
    for vni, net in ((3, "10.3.0"), (2, "10.2.0"), (1, "10.1.0")):
        frame = eth(ipv4(f"{net}.1", f"{net}.2", 17, udp(4789, 4789, vxlan(vni, frame))))
    p = decode(frame, 1)
    assert (p.encap, p.vni, p.overhead_bytes) == ("vxlan/vxlan/vxlan", 3, 3 * 50)
    assert [t.vni for t in p.tunnels] == [1, 2, 3]
    assert (p.outer_src, innermost(p)) == ("10.1.0.1", INNER)


def test_tunnel_depth_is_bounded() -> None:
    packet = inner_tcp_ipv4()
    for _ in range(12):
        packet = ipv4("10.9.9.1", "10.9.9.2", 4, packet)
    p = decode(packet, 101)
    assert p.error == TOO_DEEP and len(p.tunnels) == 8
    assert Decoder(max_depth=20).decode(packet, 101).error is None


def test_thousands_of_nested_gre_headers_stop_at_the_depth_limit() -> None:
    """dpkt's eager recursion has no bound (2,000 nested GRE headers: RecursionError); the walk
    goes one layer at a time and stops at max_depth."""
    packet = inner_tcp_ipv4()
    for _ in range(2000):
        packet = ipv4("10.9.9.1", "10.9.9.2", 47, gre(0x0800, packet))
    p = decode(eth(packet), 1)
    assert (p.error, len(p.tunnels)) == (TOO_DEEP, 8)


# -- tunnel payloads: decoded to the innermost IP, or named as unsupported ------------------------


def pptp(payload: bytes, call_id: int = 6016, seq: int | None = 1, ack: int | None = None,
         ppp: bytes = b"\xff\x03\x00\x21") -> bytes:
    """RFC 2637 §4.1 enhanced GRE: flags C R K S s Recur A, version 1; protocol 0x880B; key =
    payload length (16) + call id (16); sequence and acknowledgment when S and A are set."""
    body = ppp + payload
    flags = 0x2000 | 0x0001 | (0x1000 if seq is not None else 0) | (0x0080 if ack is not None
                                                                   else 0)
    out = struct.pack("!HHHH", flags, 0x880B, len(body), call_id)
    out += b"" if seq is None else struct.pack("!I", seq)
    out += b"" if ack is None else struct.pack("!I", ack)
    return out + body


def mpls(payload: bytes, *labels: int) -> bytes:
    """RFC 3032 label stack entries: label(20) TC(3) S(1) TTL(8); S on the last."""
    labels = labels or (29,)
    return b"".join(struct.pack("!I", (label << 12) | ((i == len(labels) - 1) << 8) | 255)
                    for i, label in enumerate(labels)) + payload


def test_pptp_key_is_payload_length_and_call_id_not_a_vni() -> None:
    """Every PPTP packet's key field differs with its length: it must not become a VNI."""
    for ppp, ppp_len in ((b"\xff\x03\x00\x21", 4), (b"\x00\x21", 2), (b"\x21", 1)):
        frame = eth(ipv4("10.0.0.1", "10.0.0.2", 47, pptp(inner_tcp_ipv4(), ppp=ppp, ack=9)))
        p = decode(frame, 1)
        assert (p.encap, p.vni, p.error) == ("pptp", None, None)
        assert innermost(p) == INNER
        assert p.overhead_bytes == 20 + 16 + ppp_len  # GRE v1 with sequence and ack, PPP
    lcp = eth(ipv4("10.0.0.1", "10.0.0.2", 47, pptp(b"\x01\x01\x00\x04", ppp=b"\xc0\x21")))
    p = decode(lcp, 1)  # LCP: the link's own control traffic, not an error
    assert (p.encap, p.src, p.error) == ("pptp", None, None)
    compressed = eth(ipv4("10.0.0.1", "10.0.0.2", 47, pptp(b"\x00" * 8, ppp=b"\x00\xfd")))
    assert decode(compressed, 1).error == "unsupported-payload (ppp 0x00fd)"
    # GRE version 0 carrying PPP without address/control (suricata-verify's defrag trace)
    p = decode(eth(ipv4("7.7.7.7", "9.9.9.9", 47, gre(0x880B, b"\x00\x21" + inner_tcp_ipv4()))), 1)
    assert (p.encap, p.vni, innermost(p), p.overhead_bytes) == ("gre", None, INNER, 20 + 4 + 2)


def test_mpls_over_ethernet_gre_and_udp() -> None:
    p = decode(eth(mpls(inner_tcp_ipv4()), 0x8847), 1)
    assert (p.encap, p.vni, innermost(p), p.overhead_bytes) == ("mpls", None, INNER, 4)
    # IPv4 with options after the stack (dpkt's own Ethernet takes only 0x45 for IPv4)
    with_options = ipv4("192.168.1.1", "192.168.1.2", 6, tcp(40000, 443), options=b"\x01" * 4)
    assert innermost(decode(eth(mpls(with_options, 16, 17), 0x8847), 1)) == INNER
    # a pseudowire: control word 0, then an Ethernet frame (the outer link header is overhead)
    p = decode(eth(mpls(b"\x00" * 4 + inner_frame()), 0x8847), 1)
    assert (p.encap, innermost(p), p.overhead_bytes) == ("mpls", INNER, 14 + 4 + 4)
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x8847, mpls(inner_tcp_ipv4())))), 1)
    assert (p.encap, innermost(p), p.overhead_bytes) == ("gre/mpls", INNER, 20 + 4 + 4)
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(49152, 6635, mpls(inner_tcp_ipv4())))), 1)
    assert (p.encap, p.outer_dport, innermost(p), p.overhead_bytes) == ("mpls", 6635, INNER,
                                                                        20 + 8 + 4)
    p = decode(eth(mpls(b"\x10\x00\x00\x00"), 0x8847), 1)  # G-ACh (first nibble 1)
    assert p.error == "unsupported-payload (mpls payload nibble 1)"


def test_nsh_after_vxlan_gpe_and_gre() -> None:
    # RFC 8300: ver 0, O 0, TTL 63, length 6 words; MD type 1; next protocol 1 (IPv4)
    nsh = struct.pack("!HBBI", (63 << 6) | 6, 1, 1, (42 << 8) | 255) + bytes(16)
    gpe = struct.pack("!BHBI", 0x0C, 0, 4, 77 << 8)  # I + P, next protocol 4 (NSH)
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 4790, gpe + nsh + inner_tcp_ipv4())))
    p = decode(frame, 1)
    assert (p.encap, p.vni, innermost(p), p.error) == ("vxlan-gpe/nsh", 77, INNER, None)
    assert p.overhead_bytes == 20 + 8 + 8 + 24
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x894F, nsh + inner_tcp_ipv4()))), 1)
    assert (p.encap, innermost(p)) == ("gre/nsh", INNER)
    unknown = struct.pack("!BHBI", 0x0C, 0, 6, 77 << 8) + b"x" * 20
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 4790, unknown))), 1)
    assert p.error == "unsupported-payload (vxlan-gpe next protocol 6)"


def test_gre_in_udp_teredo_and_wccp() -> None:
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17,
                        udp(36527, 4754, gre(0x0800, inner_tcp_ipv4())))), 1)
    assert (p.encap, p.outer_dport, innermost(p), p.overhead_bytes) == ("gre", 4754, INNER,
                                                                        20 + 8 + 4)
    inner6 = ipv6("2001::1", "2001::2", 17, udp(1024, 53, b"q"))
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 3544, inner6))), 1)
    assert (p.encap, p.src, p.sport, p.overhead_bytes) == ("teredo", "2001::1", 1024, 28)
    # the server's answer comes from 3544, with an origin indication (8 bytes) first
    origin = struct.pack("!HH", 0, 40000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in b"\x01\x02\x03\x04")
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(3544, 40000, origin + inner6))), 1)
    assert (p.encap, p.dport, p.overhead_bytes) == ("teredo", 53, 36)
    # port 3544 is Teredo's by convention only: other payloads are plain UDP
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 3544, b"hello"))), 1)
    assert (p.encap, p.dport, p.error) == ("none", 3544, None)
    wccp = struct.pack("!BBBB", 0x02, 0, 3, 4)  # WCCPv2 redirect header: D, service 0
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x883E, wccp + inner_tcp_ipv4()))), 1)
    assert (p.encap, innermost(p), p.overhead_bytes) == ("gre", INNER, 20 + 4 + 4)
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x883E, inner_tcp_ipv4()))), 1)  # v1
    assert (p.encap, innermost(p), p.overhead_bytes) == ("gre", INNER, 20 + 4)


def test_unknown_tunnel_payloads_are_named_known_non_ip_ones_are_not_errors() -> None:
    def error(payload: bytes) -> str | None:
        return decode(eth(ipv4("10.0.0.1", "10.0.0.2", 47, payload)), 1).error

    assert error(gre(0x8881, b"x" * 20)) == "unsupported-payload (gre 0x8881)"
    assert error(gre(0x0000, b"", key=40)) is None  # keepalive
    assert error(gre(0x2000, b"x" * 20)) is None  # CDP
    assert error(gre(0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20)) is None
    erspan3 = struct.pack("!HHIHH", (2 << 12) | 20, 5, 0, 0, 3 << 10)  # frame type 3
    assert error(gre(0x22EB, erspan3 + b"x" * 20)) == "unsupported-payload (erspan frame type 3)"
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 6081, geneve(5, 0x1234, b"x" * 9)))), 1)
    assert (p.encap, p.vni, p.error) == ("geneve", 5, "unsupported-payload (geneve 0x1234)")
    # an Ethernet frame's unknown type is no tunnel payload: no error (LLDP, say)
    assert decode(eth(b"\0" * 40, 0x88B5), 1).error is None


# -- link layers, tags, IP details -------------------------------------------------------------


@pytest.mark.parametrize(("pkttype", "direction"),
                         [(0, "in"), (1, "in"), (2, "in"), (3, "other"), (4, "out"), (7, None)])
def test_sll_and_sll2_direction_and_ifindex(pkttype: int, direction: str | None) -> None:
    packet = inner_tcp_ipv4()
    sll = struct.pack("!HHH8sH", pkttype, 1, 6, MAC_A + b"\0\0", 0x0800) + packet
    p = decode(sll, 113)
    assert (p.pkttype, p.direction, p.ifindex, innermost(p)) == (pkttype, direction, None, INNER)
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 26, 1, pkttype, 6, MAC_A + b"\0\0") + packet
    p = decode(sll2, 276)
    assert (p.pkttype, p.direction, p.ifindex, innermost(p)) == (pkttype, direction, 26, INNER)


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ipv4_link_types(linktype: int) -> None:
    assert innermost(decode(inner_tcp_ipv4(), linktype)) == INNER


def test_raw_ipv6_and_loopback_link_types() -> None:
    packet6 = ipv6("::1", "::1", 6, tcp(1, 2))
    assert decode(packet6, 229).src == "::1"
    assert decode(packet6, 101).proto == 6
    assert decode(b"\x50" + packet6[1:], 101).error == BAD_LINK
    for header in (struct.pack("<I", 2), struct.pack(">I", 2)):  # BSD NULL, either byte order
        assert innermost(decode(header + inner_tcp_ipv4(), 0)) == INNER
    for family in (10, 24, 28, 30):
        assert decode(struct.pack(">I", family) + packet6, 108).dport == 2


def test_unknown_linktype_is_a_per_packet_error() -> None:
    p = decode(b"\x00" * 40, 147)
    assert (p.error, p.src) == (UNKNOWN_LINKTYPE, None)


def test_vlan_tags_at_any_depth() -> None:
    tags = ((0x88A8, 0x2000 | 30), (0x8100, 20), (0x9100, 10))
    p = decode(eth(inner_tcp_ipv4(), tags=tags), 1)
    assert (p.vlan_ids, innermost(p)) == ([30, 20, 10], INNER)
    inner_tagged = eth(inner_tcp_ipv4(), tags=((0x8100, 5),))
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 4789, vxlan(1, inner_tagged))),
                tags=((0x8100, 100),))
    p = decode(frame, 1)
    assert (p.vlan_ids, p.overhead_bytes, innermost(p)) == ([100, 5], 54, INNER)


def test_ipv4_options_and_ethernet_padding() -> None:
    packet = ipv4("1.2.3.4", "5.6.7.8", 17, udp(1000, 2000, b""), options=b"\x01\x01\x01\x00")
    p = decode(eth(packet + b"\x00" * 20), 1)  # padded to the 60-byte minimum and beyond
    assert (p.src, p.sport, p.dport, p.error) == ("1.2.3.4", 1000, 2000, None)


def test_ipv4_fragments_first_has_ports_others_have_none_and_no_tunnel() -> None:
    payload = udp(51000, 4789, vxlan(5, inner_frame()))
    first = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, payload[:80], flags_frag=0x2000)), 1)
    assert (first.fragment, first.ipv4_fragment, first.encap, first.outer_sport) == (
        True, True, "vxlan", 51000)
    assert (innermost(first), first.error) == (INNER, None)  # inner headers all in fragment 1
    cut_inside = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, payload[:40], flags_frag=0x2000)), 1)
    assert (cut_inside.encap, cut_inside.src, cut_inside.error) == ("vxlan", None, TRUNCATED)
    later = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, payload[80:], flags_frag=10)), 1)
    assert (later.fragment, later.encap, later.proto, later.sport, later.dport, later.vni) == (
        True, "none", 17, None, None, None)


def test_ipv6_extension_headers_and_fragments() -> None:
    hop_by_hop = struct.pack("!BB6s", 60, 0, b"\x01\x04\0\0\0\0")  # next: destination options
    dest_opts = struct.pack("!BB6s", 44, 0, b"\x01\x04\0\0\0\0")  # next: fragment
    fragment_first = struct.pack("!BBHI", 17, 0, 0x0001, 0xABCDEF01)  # offset 0, M = 1
    packet = ipv6("2001:db8::1", "2001:db8::2", 0,
                  hop_by_hop + dest_opts + fragment_first + udp(53, 33000, b"x" * 8))
    p = decode(eth(packet, 0x86DD), 1)
    assert (p.proto, p.sport, p.dport, p.ip_id, p.ipv6_fragment, p.error) == (
        17, 53, 33000, 0xABCDEF01, True, None)
    fragment_later = struct.pack("!BBHI", 17, 0, 185 << 3, 0xABCDEF01)
    p = decode(eth(ipv6("2001:db8::1", "2001:db8::2", 44, fragment_later + b"y" * 16), 0x86DD), 1)
    assert (p.proto, p.sport, p.dport, p.fragment) == (17, None, None, True)


def test_icmp_has_no_ports_and_quoted_headers_are_not_the_packet() -> None:
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 1, icmp_echo(ident=77))), 1)
    assert (p.proto, p.sport, p.dport, p.icmp_type, p.icmp_code) == (1, None, None, 8, 0)
    quoted = ipv4("10.0.0.2", "8.8.8.8", 17, udp(5000, 53, b""))
    error = struct.pack("!BBHI", 3, 3, 0, 0) + quoted  # port unreachable quoting UDP
    p = decode(eth(ipv4("8.8.8.8", "10.0.0.2", 1, error)), 1)
    assert (p.src, p.dst, p.proto, p.sport, p.icmp_type, p.icmp_code) == (
        "8.8.8.8", "10.0.0.2", 1, None, 3, 3)
    p = decode(eth(ipv6("fe80::1", "fe80::2", 58, icmp_echo(icmp_type=128)), 0x86DD), 1)
    assert (p.proto, p.icmp_type, p.sport) == (58, 128, None)


def test_arp_is_not_ip() -> None:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A, socket.inet_aton("10.0.0.1"),
                      b"\0" * 6, socket.inet_aton("10.0.0.2"))
    p = decode(eth(arp, 0x0806), 1)
    assert (p.ethertype, p.src, p.proto, p.error) == (0x0806, None, None, None)


def test_llc_frames_have_no_ethertype() -> None:
    p = decode(MAC_B + MAC_A + struct.pack("!H", 38) + b"\x42\x42\x03" + b"\x00" * 35, 1)
    assert (p.ethertype, p.error) == (None, None)


# -- corrupt headers (acceptance 2) -----------------------------------------------------------


def test_bad_ipv4_ihl_and_version() -> None:
    assert decode(eth(ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2), ihl=4)), 1).error == BAD_IP
    assert decode(eth(ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2), version=5)), 1).error == BAD_IP
    p = decode(eth(ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2), total=10)), 1)  # total < header
    assert (p.error, p.src) == (BAD_IP, "1.1.1.1")  # fields read before the problem are kept


def test_bad_ipv6_payload_length() -> None:
    frame = eth(ipv6("fd00::1", "fd00::2", 17, udp(1, 2, b"abc"), plen=500), 0x86DD)
    p = decode(frame, 1)
    assert (p.error, p.src, p.sport) == (BAD_IP, "fd00::1", 1)  # a lie in a complete frame
    p = decode(frame, 1, wire_len=14 + 40 + 500)  # the capture cut the payload: no error
    assert (p.error, p.sport) == (None, 1)
    p = decode(frame[:14 + 40 + 4], 1, wire_len=14 + 40 + 500)  # cut inside the UDP header
    assert (p.error, p.sport) == (TRUNCATED, 1)


def test_bad_gre_flags() -> None:
    for version in (2, 7):
        p = decode(eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(0x0800, inner_tcp_ipv4(),
                                                           version=version))), 1)
        assert (p.error, p.encap, p.src) == (BAD_TUNNEL, "none", "1.1.1.1")
    pptp_without_key = gre(0x880B, b"", version=1)
    assert decode(eth(ipv4("1.1.1.1", "2.2.2.2", 47, pptp_without_key)), 1).error == BAD_TUNNEL


def test_bad_geneve_opt_len_and_version() -> None:
    def geneve_frame(**kwargs: int) -> bytes:
        return eth(ipv4("10.0.0.1", "10.0.0.2", 17,
                        udp(1, 6081, geneve(9, 0x6558, inner_frame(), **kwargs))))
    assert decode(geneve_frame(opt_len=63), 1).error == BAD_TUNNEL  # options past the UDP end
    assert decode(geneve_frame(version=1), 1).error == BAD_TUNNEL
    p = decode(geneve_frame(opt_len=2), 1)  # wrong but fits: the "inner frame" is misparsed
    assert p.encap == "geneve" and p.error != INTERNAL_ERROR


def test_bad_vxlan_flags_and_l4_lengths() -> None:
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 4789, vxlan(5, inner_frame(), flags=0))))
    p = decode(frame, 1)
    assert (p.error, p.encap, p.vni, p.dport) == (BAD_TUNNEL, "none", None, 4789)
    assert decode(eth(ipv4("1.1.1.1", "2.2.2.2", 17, udp(1, 2, b"", length=4))), 1).error == BAD_L4
    assert decode(eth(ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2, doff=4))), 1).error == BAD_L4


def test_every_prefix_of_a_vxlan_frame_decodes() -> None:
    frame = vxlan_frame()
    headers_end = 14 + 20 + 8 + 8 + 14 + 20 + 20  # inner TCP header ends here
    for cut in range(len(frame) + 1):
        p = decode(frame[:cut], 1, wire_len=len(frame))
        assert p.error == (TRUNCATED if cut < headers_end else None), cut
        assert p.vni == (4242 if cut >= 50 else None), cut
        assert p.src == ("192.168.1.1" if cut >= 84 else None if cut >= 50 else
                         "10.0.0.1" if cut >= 34 else None), cut
        assert p.sport == (40000 if cut >= 88 else None if cut >= 50 else
                           51000 if cut >= 38 else None), cut
        unclipped = decode(frame[:cut], 1)  # same bytes, but the frame claims to be whole:
        assert (unclipped.error is None) == (cut == len(frame)), cut  # length fields lie
        assert unclipped.error != INTERNAL_ERROR


# -- fuzzing: nothing escapes decode --------------------------------------------------------

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]


def _hand_made_frames() -> list[tuple[int, bytes]]:
    key = (5 << 8) | 1
    return [
        (1, vxlan_frame()),
        (1, eth(ipv6("fd00::1", "fd00::2", 17, udp(1, 6081, geneve(3, 0x6558, inner_frame(),
                                                                    options=b"\0" * 8))), 0x86DD)),
        (1, eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x6558, inner_frame(), key=key)))),
        (1, eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(0x22EB, b"\x20\x14" + b"\0" * 10
                                                   + inner_frame())))),
        (101, ipv4("10.0.0.1", "10.0.0.2", 4, ipv6("::1", "::2", 0, b"\x2c\0" + b"\0" * 14))),
        (276, struct.pack("!HHIHBB8s", 0x86DD, 0, 3, 1, 4, 6, b"")
         + ipv6("::1", "::2", 44, b"\x11\0\0\x01\0\0\0\x07" + udp(1, 4790, b"\x0c\0\0\x03" * 4))),
    ]


def _corpus_frames(corpus_dir: Path) -> list[tuple[int, bytes]]:
    """The first frames of every corpus capture: every link type and tunnel kind in it."""
    frames: list[tuple[int, bytes]] = []
    for path in sorted(corpus_dir.glob("*.pcap*")):
        for n, raw in enumerate(read_frames(path)):
            if n == 3:
                break
            frames.append((raw.linktype, raw.data))
    return frames


@pytest.fixture(scope="module")
def seed_frames(request: pytest.FixtureRequest) -> list[tuple[int, bytes]]:
    frames = _hand_made_frames()
    with contextlib.suppress(pytest.skip.Exception):  # no corpus: hand-made frames only
        frames += _corpus_frames(request.getfixturevalue("corpus_dir"))
    return frames


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_frames_never_raise(
    seed_frames: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    linktype, frame = data.draw(st.sampled_from(seed_frames))
    mutable = bytearray(frame)
    for _ in range(data.draw(st.integers(0, 6))):
        if mutable:
            mutable[data.draw(st.integers(0, len(mutable) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutable)))
    linktype = data.draw(st.sampled_from([linktype, linktype, *LINKTYPES]))
    wire_len = data.draw(st.sampled_from([None, len(frame)]))
    ports = data.draw(st.sampled_from([(), (53,), (80, 443)]))
    p = decode(bytes(mutable[:cut]), linktype, wire_len=wire_len, vxlan_ports=ports)
    assert isinstance(p, DecodedPacket)
    assert p.error != INTERNAL_ERROR
    assert 0 <= p.overhead_bytes <= cut


@settings(max_examples=200, deadline=None)
@given(linktype=st.sampled_from(LINKTYPES), payload=st.binary(max_size=200))
def test_fuzz_random_bytes_never_raise(linktype: int, payload: bytes) -> None:
    p = decode(payload, linktype)
    assert p.error != INTERNAL_ERROR
