"""pktkit.dpkt: the layer classes, their registration with dpkt, and a dpkt loop over the corpus
against tshark and against pktkit's table (issue 14's acceptance: a dpkt user's loop gives each
packet's VNI and inner tuple as ``pktkit packets`` does)."""

from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path

import dpkt
import pandas as pd
import pytest
from test_columns import pcap_file
from test_corpus import NO_REASSEMBLY, expected_from_tshark, run_tshark

import pktkit
import pktkit.dpkt as layers
from pktkit.capture.table import read_packets

REPO = Path(__file__).resolve().parent.parent
CORPUS_FILES = [
    "kurose-ross__NAT_ISP_side.pcap", "kurose-ross__NAT_home_side.pcap",
    "lwerdna__simple_http_sll2.pcap", "ndpi__4in4-qinq.pcap", "ndpi__4in6.pcap",
    "ndpi__6in4.pcap", "ndpi__dns-fragmented.pcap", "ndpi__pcapng-3-interfaces.pcapng",
    "ndpi__sll-any-router.pcap", "ndpi__sll-pcapng-mixed-hatype.pcapng", "ndpi__vxlan-vlan.pcap",
    "suricata-verify__sll2-http.pcap", "suricata-verify__vxlan-aws-mirror.pcap",
    "tcpdump__802.1ad_QinQ.pcap", "tcpdump__erspan-type-iii-ft-0.pcap", "tcpdump__geneve-gcp.pcap",
    "tcpdump__geneve.pcap", "tcpdump__gso-ipv4-vxlan-ipv4.pcap", "tcpdump__various_gre.pcap",
    "tcpdump__vxlan.pcap", "tcpdump__vxlan_port_8472.pcap",
    "zeek__erspan-gre-teb-fragmented.pcap", "zeek__erspanII.pcap", "zeek__ftp-ipv6.pcap",
    "zeek__geneve-47101.pcap", "zeek__geneve-many-options.pcap", "zeek__gre-sample.pcap",
    "zeek__gre-within-gre.pcap", "zeek__ipv4-fragmented-tcp.pcap", "zeek__linux_dlt_sll2.pcap",
    "zeek__pcapng-multi-interface.pcapng", "zeek__tcp-truncated-snaplen68.pcap",
    "zeek__vlan-qinqinq.pcap", "zeek__vxlan-triple-nested.pcap",
    "payloads/suricata-verify__gre-ppp-frag-max-ip.pcap",
    "payloads/tcpdump__nsh-over-vxlan-gpe.pcap", "payloads/zeek__gre-over-udp-4754.pcap",
    "payloads/zeek__gre-pptp.pcap", "payloads/zeek__http-qinq-0.pcap",
    "payloads/zeek__mixed-vlan-mpls.pcap",
]

View = tuple[int | None, tuple | None]  # (vni, innermost 5-tuple or None)


def dpkt_view(packet: dpkt.Packet) -> View:
    """What a dpkt user reads off the layers: the innermost tunnel id and IP 5-tuple."""
    vni = None
    for layer in layers.layers(packet):
        found = layers.tunnel_id(layer)
        vni = found if found is not None else vni
    return vni, layers.innermost(packet)


def table_view(record: dict) -> View:
    def value(v: object) -> object:
        return None if pd.isna(v) else v if isinstance(v, str) else int(v)  # type: ignore[call-overload]
    five = tuple(value(record[k]) for k in ("src", "dst", "proto", "sport", "dport"))
    return value(record["vni"]), (None if five[0] is None else five)  # type: ignore[return-value]


def tshark_view(row: dict) -> View:
    want = expected_from_tshark(row)
    five = tuple(want[k] for k in ("src", "dst", "proto", "sport", "dport"))
    return want["vni"], (None if five[0] is None else five)  # type: ignore[return-value]


# -- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_dpkt_loop_equals_tshark_and_both_engines(name: str, corpus_dir: Path,
                                                  tshark: str) -> None:
    """Every frame of every corpus file: VNI (innermost tunnel id) and innermost 5-tuple, from
    dpkt with these layers, from tshark (IP reassembly off: each frame alone, as dpkt and
    pktkit decode it) and from ``read_packets`` with either engine, all equal."""
    path = corpus_dir / name
    rows = run_tshark(tshark, path, NO_REASSEMBLY)
    tables = {engine: read_packets(path, engine=engine)  # type: ignore[arg-type]
              for engine in ("fast", "reference")}
    frames = list(pktkit.frames(path))
    assert len(frames) == len(rows) == len(tables["fast"]) == len(tables["reference"])
    problems = []
    for frame, row, fast, ref in zip(frames, rows, tables["fast"].to_dict("records"),
                                     tables["reference"].to_dict("records"), strict=True):
        got = dpkt_view(layers.decode(frame))
        want = tshark_view(row)
        if not got == want == table_view(fast) == table_view(ref):
            problems.append(f"frame {frame.frame}: dpkt {got}, tshark {want}, "
                            f"table {table_view(fast)} / {table_view(ref)}")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("linktype", ["ether", "sll2"])
def test_dpkt_loop_over_a_vxlan_pcapng_equals_pktkit_packets(linktype: str,
                                                              tmp_path: Path) -> None:
    """The acceptance check on pcapng (the corpus has no VXLAN pcapng): pktkit's generator
    writes Flannel (8472) and IANA (4789) VXLAN captures; ``import dpkt, pktkit.dpkt`` and a
    dpkt loop give each packet's VNI and inner tuple as ``pktkit packets`` does."""
    from pktkit.craft.generation import generate, make_scenario

    generate(make_scenario("vxlan-overlay", flows=6), tmp_path, fmt="pcapng", linktype=linktype)
    captures = sorted(tmp_path.glob("*.pcapng"))
    ports: set[int] = set()
    tunnelled = 0
    for path in captures:
        table = pktkit.read_packets(path)
        for frame, record in zip(pktkit.frames(path), table.to_dict("records"), strict=True):
            packet = layers.decode(frame)
            assert dpkt_view(packet) == table_view(record), (path.name, frame.frame)
            for layer in layers.layers(packet):
                if isinstance(layer, dpkt.udp.UDP) and isinstance(layer.data, layers.VXLAN):
                    ports.add(layer.dport)
                    tunnelled += 1
    assert ports == {4789, 8472} and tunnelled > 50


def _readme_code() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(# bytes per VNI.*?)```", text, re.S)
    assert len(blocks) == 1, "README: the dpkt example (a python block starting '# bytes per VNI')"
    return blocks[0]


@pytest.mark.parametrize("name", [
    "suricata-verify__vxlan-aws-mirror.pcap", "tcpdump__vxlan_port_8472.pcap",
    "ndpi__vxlan-vlan.pcap", "tcpdump__geneve.pcap", "zeek__geneve-many-options.pcap",
])
def test_readme_example_counts_bytes_per_vni_as_the_table_does(
    name: str, corpus_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    scope: dict = {"CAPTURE": corpus_dir / name}
    exec(compile(_readme_code(), "README.md", "exec"), scope)
    table = read_packets(corpus_dir / name)
    tunnelled = table[table["vni"].notna()]
    want = Counter({int(v): int(n) for v, n in
                    tunnelled.groupby("vni", observed=True)["wire_len"].sum().items()})
    assert want and scope["bytes_per_vni"] == want
    assert str(want.most_common()) in capsys.readouterr().out


# -- payloads no corpus file holds, against tshark --------------------------------------------

V4 = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
INNER_V4 = (b"\xc0\xa8\x00\x01", b"\xc0\xa8\x00\x02")


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _ipv4(proto: int, payload: bytes, addrs: tuple[bytes, bytes] = V4) -> bytes:
    return bytes(dpkt.ip.IP(src=addrs[0], dst=addrs[1], p=proto, ttl=64, id=1, data=payload))


def _ether(etype: int, payload: bytes) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack(">H", etype) + payload


def _inner_udp() -> bytes:
    return _ipv4(17, _udp(5353, 53, b"query"), INNER_V4)


def _inner_ipv6_udp() -> bytes:
    body = _udp(1024, 53, b"q6")
    return bytes(dpkt.ip6.IP6(src=bytes.fromhex("20010000" + "00" * 11 + "01"),
                              dst=bytes.fromhex("20010000" + "00" * 11 + "02"), nxt=17, hlim=64,
                              plen=len(body), data=body))


def synthetic_frames() -> dict[str, bytes]:
    origin = struct.pack(">HH", 0, 40000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in INNER_V4[0])
    label = struct.pack(">I", (100 << 12) | 0x100 | 64)
    nsh1 = struct.pack(">HBBI", 6, 1, 1, (42 << 8) | 255) + bytes(16)
    return {
        "teredo": _ether(0x0800, _ipv4(17, _udp(40000, 3544, _inner_ipv6_udp()))),
        "teredo-origin": _ether(0x0800, _ipv4(17, _udp(3544, 40000, origin + _inner_ipv6_udp()))),
        "mpls-in-udp": _ether(0x0800, _ipv4(17, _udp(49152, 6635, label + _inner_udp()))),
        "wccp-v2": _ether(0x0800, _ipv4(47, struct.pack(">HH", 0, 0x883E)
                                        + bytes([0, 0, 3, 4]) + _inner_udp())),
        "pptp-acfc-pfc": _ether(0x0800, _ipv4(47, struct.pack(
            ">HHHHI", 0x3001, 0x880B, 1 + len(_inner_udp()), 77, 1) + b"\x21" + _inner_udp())),
        "erspan-type-1": _ether(0x0800, _ipv4(47, struct.pack(">HH", 0, 0x88BE)
                                              + _ether(0x0800, _inner_udp()))),
        "nsh-md1-over-gre": _ether(0x0800, _ipv4(47, struct.pack(">HH", 0, 0x894F) + nsh1
                                                 + _inner_udp())),
        "mpls-over-gre": _ether(0x0800, _ipv4(47, struct.pack(">HH", 0, 0x8847) + label
                                              + _inner_udp())),
    }


@pytest.mark.parametrize("name", sorted(synthetic_frames()))
def test_synthetic_payloads_agree_with_tshark(name: str, tmp_path: Path, tshark: str) -> None:
    """Teredo, WCCP, MPLS-in-UDP, PPTP with ACFC/PFC, ERSPAN type I, NSH over GRE: written with
    dpkt, read by tshark, by a dpkt loop and by both engines, to the same innermost packet."""
    frame_bytes = synthetic_frames()[name]
    path = pcap_file(tmp_path / f"{name}.pcap", [(frame_bytes, len(frame_bytes))])
    (row,) = run_tshark(tshark, path, NO_REASSEMBLY)
    (frame,) = pktkit.frames(path)
    want = tshark_view(row)
    assert want[1] is not None
    assert dpkt_view(layers.decode(frame)) == want
    for engine in ("fast", "reference"):
        (record,) = read_packets(path, engine=engine).to_dict("records")  # type: ignore[arg-type]
        assert table_view(record) == want and pd.isna(record["error"])


# -- the classes ------------------------------------------------------------------------------

INNER = _ether(0x0800, _ipv4(17, _udp(5353, 53, b"q" * 12), (b"\xc0\xa8\0\x01", b"\xc0\xa8\0\x02")))
INNER_TUPLE = ("192.168.0.1", "192.168.0.2", 17, 5353, 53)


def test_vxlan_header_fields_and_round_trip() -> None:
    header = bytes.fromhex("08000000") + struct.pack(">I", 5001 << 8)
    vx = layers.VXLAN(header + INNER)
    assert (vx.flags, vx.i, vx.vni, vx.reserved1, vx.reserved2) == (8, 1, 5001, b"\0\0\0", 0)
    assert isinstance(vx.data, dpkt.ethernet.Ethernet) and vx.ethernet is vx.data
    assert bytes(vx) == header + INNER and len(vx) == len(header + INNER)
    assert bytes(layers.VXLAN(vni=7, data=b"x")) == bytes.fromhex("08000000 00000700") + b"x"
    assert layers.VXLAN(bytes.fromhex("00000000 00000100")).i == 0
    shallow = layers.shallow(layers.VXLAN)(header + INNER)  # pktkit's walk: one layer
    assert shallow.data == INNER and shallow.payload_class() is dpkt.ethernet.Ethernet


def test_registration_decodes_udp_in_dpkts_own_ethernet() -> None:
    frame = _ether(0x0800, _ipv4(17, _udp(40000, 8472, bytes.fromhex("0800000000006400") + INNER)))
    eth = dpkt.ethernet.Ethernet(frame)
    assert isinstance(eth.ip.udp, dpkt.udp.UDP)  # still dpkt's UDP, and still ip.udp
    assert eth.ip.udp.vxlan.vni == 100
    assert layers.innermost(eth) == INNER_TUPLE
    assert bytes(eth) == frame
    layers.uninstall()
    try:
        assert type(dpkt.ethernet.Ethernet(frame).ip.udp.data) is bytes  # dpkt as shipped
    finally:
        layers.install()
    assert isinstance(dpkt.ethernet.Ethernet(frame).ip.udp.data, layers.VXLAN)


def test_udp_ports_for_one_call_and_registered_ports() -> None:
    vxlan = bytes.fromhex("0800000000006400") + INNER
    frame = _ether(0x0800, _ipv4(17, _udp(40000, 9999, vxlan)))
    assert type(layers.decode(1, frame).ip.udp.data) is bytes
    assert layers.decode(1, frame, udp_ports={9999: layers.VXLAN}).ip.udp.vxlan.vni == 100
    assert type(layers.decode(1, frame).ip.udp.data) is bytes  # only for that call
    layers.register_udp_port(9999, layers.VXLAN)
    try:
        assert layers.decode(1, frame).ip.udp.vxlan.vni == 100
    finally:
        layers.register_udp_port(9999, None)
    geneve = _ether(0x0800, _ipv4(17, _udp(40000, 6081, bytes.fromhex("0000655800000a00") + INNER)))
    assert layers.decode(1, geneve).ip.udp.geneve.vni == 10
    # the destination port decides: a reply *from* 4789 is not VXLAN
    reply = _ether(0x0800, _ipv4(17, _udp(4789, 40000, vxlan)))
    assert type(layers.decode(1, reply).ip.udp.data) is bytes


def test_geneve_keeps_its_options() -> None:
    options = (struct.pack(">HBB", 0x0102, 0x80, 1) + b"abcd"
               + struct.pack(">HBB", 0xFFFF, 0x05, 2) + b"12345678")
    header = struct.pack(">BBHI", len(options) // 4, 0x40, 0x6558, 4242 << 8)
    g = layers.Geneve(header + options + INNER)
    assert (g.ver, g.opt_len, g.o, g.c, g.proto, g.vni) == (0, 5, 0, 1, 0x6558, 4242)
    assert [(o.cls, o.type, o.critical, o.len, o.data) for o in g.opts] == [
        (0x0102, 0x80, 1, 1, b"abcd"), (0xFFFF, 5, 0, 2, b"12345678")]
    assert isinstance(g.data, dpkt.ethernet.Ethernet)
    assert bytes(g) == header + options + INNER and len(g) == len(header + options + INNER)
    bare = layers.Geneve(struct.pack(">BBHI", 0, 0, 0x0800, 0) + INNER[14:])
    assert isinstance(bare.data, dpkt.ip.IP)  # GCP: IPv4 without inner Ethernet
    with pytest.raises(dpkt.NeedData):
        layers.Geneve(struct.pack(">BBHI", 3, 0, 0x6558, 0) + b"1234")


def test_vxlan_gpe_next_protocols_and_nsh() -> None:
    ip = INNER[14:]
    gpe = layers.VXLANGPE(struct.pack(">BHBI", 0x0C, 0, 1, 16 << 8) + ip)
    assert (gpe.ver, gpe.i, gpe.p, gpe.next_proto, gpe.vni) == (0, 1, 1, 1, 16)
    assert isinstance(gpe.data, dpkt.ip.IP)
    no_p = layers.VXLANGPE(struct.pack(">BHBI", 0x08, 0, 1, 16 << 8) + INNER)
    assert isinstance(no_p.data, dpkt.ethernet.Ethernet)  # P clear: Ethernet, as VXLAN
    nsh = struct.pack(">HBBI", 6, 2, 1, (77 << 8) | 254) + b"\x00\x01\x02\x01ctx1" + (
        b"\x00\x02\x03\x01ctx2")
    gpe = layers.VXLANGPE(struct.pack(">BHBI", 0x0C, 0, 4, 1 << 8) + nsh + ip)
    n = gpe.nsh
    assert (n.ver, n.length, n.md_type, n.next_proto, n.spi, n.si) == (0, 6, 2, 1, 77, 254)
    assert len(n.context) == 16 and isinstance(n.data, dpkt.ip.IP)
    assert bytes(gpe)[8:] == nsh + ip


def test_gre_flavours() -> None:
    ip = INNER[14:]
    nv = layers.GRE(struct.pack(">HHI", 0x2000, 0x6558, (131072 << 8) | 9) + INNER)
    assert type(nv) is layers.NVGRE and isinstance(nv, dpkt.gre.GRE)
    assert (nv.key, nv.vsid, nv.flow_id) == ((131072 << 8) | 9, 131072, 9)
    assert isinstance(nv.data, dpkt.ethernet.Ethernet) and nv.header_len == 8
    assert type(layers.GRE(struct.pack(">HH", 0, 0x6558) + INNER)) is layers.GRE
    one = layers.GRE(struct.pack(">HH", 0, 0x88BE) + INNER)  # ERSPAN type I: no header
    assert isinstance(one.data, dpkt.ethernet.Ethernet)
    two = layers.GRE(struct.pack(">HHI", 0x1000, 0x88BE, 5) + struct.pack(
        ">HHI", 0x1000 | 20, (2 << 13) | 100, 7) + INNER)
    e2 = two.data
    assert isinstance(e2, layers.ERSPAN2)
    assert (e2.ver, e2.vlan, e2.cos, e2.session_id, e2.index) == (1, 20, 2, 100, 7)
    three = layers.GRE(struct.pack(">HH", 0, 0x22EB) + struct.pack(
        ">HHIHH", 0x2000 | 20, 3, 99, 0, 0x0006 | 1) + b"platform" + INNER)
    e3 = three.data
    assert (e3.ver, e3.vlan, e3.session_id, e3.ft, e3.gra, e3.o) == (2, 20, 3, 0, 3, 1)
    assert e3.platform == b"platform" and isinstance(e3.data, dpkt.ethernet.Ethernet)
    assert bytes(three)[4:] == bytes(e3)
    # PPTP (version 1): key = payload length + call id; PPP with and without address/control
    for ppp in (b"\xff\x03\x00\x21", b"\x00\x21", b"\x21", b"\xff\x03\x21"):
        payload = ppp + ip
        pptp = layers.GRE(struct.pack(">HHHHI", 0x3001, 0x880B, len(payload), 6016, 1)
                          + payload)
        assert (pptp.v, pptp.len, pptp.callid, pptp.seq) == (1, len(payload), 6016, 1)
        assert isinstance(pptp.data, layers.PPP) and pptp.data.p == 0x21
        assert pptp.data.acfc == (not ppp.startswith(b"\xff\x03"))
        assert layers.innermost(pptp) == INNER_TUPLE
        assert layers.tunnel_id(pptp) is None  # a call id is not a VNI
    # version 0 has no acknowledgment field (dpkt reads one when bit 8 is set)
    assert layers.GRE(struct.pack(">HH", 0x0080, 0x0800) + ip).header_len == 4
    mpls = struct.pack(">II", (16 << 12) | 64, (17 << 12) | 0x100 | 64)
    m = layers.GRE(struct.pack(">HH", 0, 0x8847) + mpls + ip).data
    assert [(label.val, label.s) for label in m.labels] == [(16, 0), (17, 1)]
    assert isinstance(m.data, dpkt.ip.IP)
    pw = layers.MPLS(struct.pack(">I", (18 << 12) | 0x100) + bytes(4) + INNER)
    assert pw.control_word == bytes(4) and isinstance(pw.data, dpkt.ethernet.Ethernet)
    w = layers.GRE(struct.pack(">HH", 0, 0x883E) + bytes([0x02, 0, 3, 4]) + ip).data
    assert (w.v1, w.d, w.a, w.service_id, w.pri_bucket) == (False, 1, 0, 0, 4)
    assert layers.GRE(struct.pack(">HH", 0, 0x883E) + ip).data.v1
    cmd = layers.GRE(struct.pack(">HHI", 0x2000, 0x8909, 0x28) + bytes.fromhex(
        "0800010100010005") + ip).data
    assert (cmd.type, cmd.sgt) == (0x0800, 5) and isinstance(cmd.data, dpkt.ip.IP)
    eth_cmd = dpkt.ethernet.Ethernet(_ether(0x8909, bytes.fromhex("0101000100050800") + ip))
    assert isinstance(eth_cmd.data, layers.EthernetCMD) and eth_cmd.data.sgt == 5
    assert layers.innermost(eth_cmd) == INNER_TUPLE


def test_teredo_and_gre_in_udp() -> None:
    inner = _inner_ipv6_udp()
    origin = struct.pack(">HH", 0, 40000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in b"\x01\x02\x03\x04")
    t = layers.decode(1, _ether(0x0800, _ipv4(17, _udp(3544, 51000, origin + inner)))).ip.udp.data
    assert isinstance(t, layers.Teredo)  # the server's answer: source port 3544
    assert (t.origin_port, t.origin_addr) == (40000, b"\x01\x02\x03\x04")
    assert layers.innermost(t) == ("2001::1", "2001::2", 17, 1024, 53)
    not_teredo = layers.decode(1, _ether(0x0800, _ipv4(17, _udp(40000, 3544, b"hello"))))
    assert not_teredo.ip.udp.data == b"hello"
    gre_udp = _udp(40000, 4754, struct.pack(">HH", 0, 0x0800) + INNER[14:])
    g = layers.decode(1, _ether(0x0800, _ipv4(17, gre_udp))).ip.udp.data
    assert isinstance(g, layers.GRE) and layers.innermost(g) == INNER_TUPLE


def test_decode_link_types() -> None:
    ip = INNER[14:]
    sll = struct.pack(">HHH8sH", 0, 1, 6, b"", 0x0800) + ip
    sll2 = struct.pack(">HHiHBB8s", 0x0800, 0, 7, 1, 4, 6, b"") + ip
    for linktype, data in ((1, INNER), (113, sll), (276, sll2), (101, ip), (12, ip), (14, ip),
                           (228, ip), (0, b"\x02\0\0\0" + ip), (108, b"\0\0\0\x02" + ip)):
        assert layers.innermost(layers.decode(linktype, data)) == INNER_TUPLE, linktype
    v6 = _inner_ipv6_udp()
    for linktype, data in ((101, v6), (229, v6), (0, b"\x0a\0\0\0" + v6),
                           (108, b"\0\0\0\x18" + v6)):
        assert layers.innermost(layers.decode(linktype, data)) == (
            "2001::1", "2001::2", 17, 1024, 53), linktype
    with pytest.raises(ValueError, match="link type 147"):
        layers.decode(147, INNER)
    with pytest.raises(dpkt.NeedData):
        layers.decode(1, INNER[:10])


def test_nesting_is_bounded_where_dpkt_would_recurse_without_end() -> None:
    """2,000 nested GRE headers: dpkt alone raises RecursionError; with these layers the
    payload past MAX_NESTING tunnels stays bytes."""
    packet = INNER[14:]
    for _ in range(2000):
        packet = _ipv4(47, struct.pack(">HH", 0, 0x0800) + packet)
    eth = dpkt.ethernet.Ethernet(_ether(0x0800, packet))
    found = list(layers.layers(eth))
    # (the outermost GRE is dpkt's own IP decoding it; below it, MAX_NESTING nested payloads)
    assert sum(isinstance(x, dpkt.gre.GRE) for x in found) == layers.MAX_NESTING + 1
    assert type(found[-1].data) is bytes


def test_frames_use_each_interfaces_resolution(corpus_dir: Path) -> None:
    """The corpus pitfall: dpkt's pcapng reader is 1000x off on interface 1 of this file."""
    first: dict[int | None, int | None] = {}
    for f in pktkit.frames(corpus_dir / "zeek__pcapng-multi-interface.pcapng"):
        first.setdefault(f.interface_id, f.ts_ns)
        assert f.linktype == 1
    assert first == {0: 1767663089500330493, 1: 1767663437111897000}


def test_frames_refuses_a_non_capture_at_once(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a capture")
    with pytest.raises(pktkit.CaptureError, match="not a pcap or pcapng"):
        pktkit.frames(path)


def test_repr_and_pprint_work(capsys: pytest.CaptureFixture) -> None:
    frame = _ether(0x0800, _ipv4(17, _udp(40000, 6081, struct.pack(">BBHI", 1, 0, 0x6558, 5 << 8)
                                          + struct.pack(">HBB", 1, 2, 0) + INNER)))
    packet = layers.decode(1, frame)
    assert "Geneve(" in repr(packet) and "vni=5" in repr(packet)
    packet.pprint()
    assert "vni=5" in capsys.readouterr().out

