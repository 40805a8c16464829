"""The columnar fast path gives exactly the reference table, and ``pktkit packets`` writes it.

Every comparison is ``read_packets(..., engine="reference")`` (frame by frame through
``Decoder``) against the fast path, with ``pandas.testing.assert_frame_equal`` (dtypes
included) and equal ``read_stats``; the fast path also runs with tiny batches, so that flows,
address dictionaries and cut files meet batch boundaries everywhere.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_decode import (
    eth,
    geneve,
    gre,
    icmp_echo,
    inner_frame,
    ipv4,
    ipv6,
    tcp,
    udp,
    vxlan,
    vxlan_frame,
)
from test_read import ng_block, ng_epb, ng_idb, ng_shb, ng_spb, pcap_bytes

from pktkit.capture import flows
from pktkit.capture.arrow import arrow_schema
from pktkit.capture.batches import DEFAULT_BATCH, raw_batches
from pktkit.capture.columns import BatchDecoder
from pktkit.capture.frame import SCHEMA
from pktkit.capture.output import write_table
from pktkit.capture.read import CaptureCutWarning
from pktkit.capture.schema import COLUMNS, INT_COLUMNS
from pktkit.capture.table import read_columnar, read_packets, summarize
from pktkit.capture.vectorized import Frames
from pktkit.cli import main as cli_main
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS
from pktkit.errors import CaptureError, UsageError

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))
T0 = 1_767_000_000_000_000_000


def _read(
    paths: Sequence[Path], engine: str, batch_size: int = DEFAULT_BATCH, **kwargs: object
) -> tuple[pd.DataFrame | None, str | None, list[str]]:
    """(table, error message, warning messages) of one engine."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if engine == "reference":
                df = read_packets(paths, engine="reference", **kwargs)  # type: ignore[arg-type]
            else:
                df = read_columnar(list(paths), BatchDecoder(batch_size=batch_size, **kwargs))
        except CaptureError as exc:
            return None, str(exc), []
    return df, None, [str(w.message) for w in caught if w.category is CaptureCutWarning]


def assert_same(paths: Sequence[Path], batch_sizes: Sequence[int] = (7,), **kwargs: object) -> None:
    """The fast path's table, errors and warnings are the reference path's, at every size."""
    ref, ref_error, ref_warnings = _read(paths, "reference", **kwargs)
    for size in (DEFAULT_BATCH, *batch_sizes):
        fast, error, warned = _read(paths, "fast", size, **kwargs)
        names = ", ".join(p.name for p in paths)
        assert (error, warned) == (ref_error, ref_warnings), f"{names} (batch {size})"
        if ref is not None:
            assert fast is not None
            pd.testing.assert_frame_equal(fast, ref, obj=f"{names} (batch {size})")
            assert fast.attrs == ref.attrs, names


def pcap_file(path: Path, records: list[tuple[bytes, int]], linktype: int = 1) -> Path:
    """A µs pcap whose records are (data, wire_len): wire_len > len(data) is a snaplen cut."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, (data, wire_len) in enumerate(records):
        out.append(struct.pack("<IIII", 1_767_000_000 + i // 3, i * 1000 % 1_000_000, len(data),
                               wire_len))
        out.append(data)
    path.write_bytes(b"".join(out))
    return path


def full(frames: list[bytes]) -> list[tuple[bytes, int]]:
    return [(f, len(f)) for f in frames]


# -- the corpus and the reference captures ----------------------------------------------------


def _corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.pcap*")) if (CORPUS / "MANIFEST.tsv").is_file() else []


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_every_corpus_capture(path: Path) -> None:
    assert_same([path], batch_sizes=(3,))


def test_all_corpus_captures_in_one_table(corpus_dir: Path) -> None:
    """Flow ids and address dictionaries carry over from file to file."""
    files = sorted(corpus_dir.glob("*.pcap*"))
    assert_same(files, batch_sizes=(64,))
    assert_same(files, batch_sizes=(), vxlan_ports=[53, 80])


def _reference_capture_sets() -> list[list[Path]]:
    return [sorted(d.glob("*.pcap*")) for d in sorted((REPO / "captures").glob("*/"))
            if any(d.glob("*.pcap*"))]


@pytest.mark.parametrize("files", _reference_capture_sets(), ids=lambda fs: fs[0].parent.name)
def test_reference_captures(files: list[Path]) -> None:
    assert_same(files, batch_sizes=(5,))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Every scenario, written as tcpdump per interface (ether, pcap) and -i any (sll2, pcapng)."""
    root = tmp_path_factory.mktemp("scenarios")
    out: dict[str, list[Path]] = {}
    for name in SCENARIOS:
        for linktype, fmt in (("ether", "pcap"), ("sll2", "pcapng"), ("sll2", "pcap")):
            folder = root / f"{name}-{linktype}-{fmt}"
            result = generate(make_scenario(name), folder, fmt=fmt, linktype=linktype)  # type: ignore[arg-type]
            out[folder.name] = [folder / f for f in result.files]
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_generated_scenarios(generated: dict[str, list[Path]], name: str) -> None:
    for key, files in generated.items():
        if key.startswith(name + "-") and not key.removeprefix(name + "-").startswith("v6"):
            assert_same(files, batch_sizes=(11,))
            assert_same(files, batch_sizes=(), ifnames={1: "lo", 2: "eth0", 5: "cni0"})


# -- hand-made edge cases ---------------------------------------------------------------------

A, B = "10.1.0.1", "10.1.0.2"
V6A, V6B = "fd00::1", "fd00::2"


def _udp4(dport: int, payload: bytes, **kw: object) -> bytes:
    return ipv4("10.0.0.1", "10.0.0.2", 17, udp(50000, dport, payload), **kw)  # type: ignore[arg-type]


def ethernet_edge_frames() -> list[bytes]:
    tcp4 = ipv4(A, B, 6, tcp(1234, 80, payload=b"x" * 30))
    udp4 = ipv4(A, B, 17, udp(53, 40000, b"q" * 20))
    icmp4 = ipv4(A, B, 1, icmp_echo())
    tcp6 = ipv6(V6A, V6B, 6, tcp(1, 2))
    frames = [
        eth(tcp4), eth(udp4), eth(icmp4), eth(ipv4(A, B, 89, b"ospf")), eth(ipv4(A, B, 50, b"e")),
        eth(tcp6, 0x86DD), eth(ipv6(V6A, V6B, 17, udp(5, 6, b"")), 0x86DD),
        eth(ipv6(V6A, V6B, 58, b"\x80\x00\x00\x00"), 0x86DD), eth(ipv6(V6A, V6B, 59, b""), 0x86DD),
        eth(ipv4(A, B, 58, b"\x80\x00\x00\x00")),  # ICMPv6 protocol number over IPv4
        # VLAN tags: one, QinQ, three, four (more than the fast path peels), old QinQ TPID
        eth(tcp4, tags=((0x8100, 10),)), eth(tcp4, tags=((0x88A8, 20), (0x8100, 10))),
        eth(tcp4, tags=((0x8100, 1), (0x8100, 2), (0x8100, 3))),
        eth(tcp4, tags=((0x8100, 1),) * 4), eth(udp4, tags=((0x9100, 7),)),
        eth(tcp6, 0x86DD, tags=((0x8100, 5),)),
        # IPv4 options, bad IHL/version, length fields, TSO (total 0), Ethernet padding
        *[eth(ipv4(A, B, 6, tcp(1, 2), options=b"\x01" * n)) for n in (4, 8, 20, 40)],
        eth(ipv4(A, B, 6, tcp(1, 2), ihl=4)), eth(ipv4(A, B, 6, tcp(1, 2), version=6)),
        eth(ipv4(A, B, 6, tcp(1, 2), total=10)), eth(ipv4(A, B, 6, tcp(1, 2), total=200)),
        eth(ipv4(A, B, 6, tcp(1, 2), total=0)), eth(ipv4(A, B, 1, icmp_echo()) + b"\0" * 30),
        # fragments: first (with ports), middle, last; DF alone is no fragment
        eth(ipv4(A, B, 17, udp(1, 2, b"a" * 40), flags_frag=0x2000)),
        eth(ipv4(A, B, 17, b"b" * 40, flags_frag=0x2005)),
        eth(ipv4(A, B, 17, b"c" * 40, flags_frag=0x0010)),
        eth(ipv4(A, B, 6, tcp(1, 2), flags_frag=0x4000)),
        eth(ipv6(V6A, V6B, 44, b"\x11\0\0\x01\0\0\0\x07" + udp(1, 2, b"")), 0x86DD),
        eth(ipv6(V6A, V6B, 0, b"\x06\0" + b"\0" * 6 + tcp(1, 2)), 0x86DD),
        eth(ipv6(V6A, V6B, 6, tcp(1, 2), plen=0), 0x86DD),
        eth(ipv6(V6A, V6B, 6, tcp(1, 2), plen=90), 0x86DD),
        # UDP and TCP length fields
        eth(ipv4(A, B, 17, udp(1, 2, b"z" * 8, length=0))),
        eth(ipv4(A, B, 17, udp(1, 2, b"z" * 8, length=4))),
        eth(ipv4(A, B, 17, udp(1, 2, b"z" * 8, length=40))),
        eth(ipv4(A, B, 17, udp(1, 2, b"z" * 8, length=10))),
        eth(ipv4(A, B, 6, tcp(1, 2, doff=4))), eth(ipv4(A, B, 6, tcp(1, 2, doff=15))),
        eth(ipv4(A, B, 6, tcp(1, 2)[:12] + b"\xf0\x12")),  # data offset past the packet
        eth(ipv4(A, B, 1, b"\x08")), eth(ipv4(A, B, 1, b"\x08\x00")),  # ICMP cut short
        # tunnels: VXLAN on both ports and an extra one, without I flag, nested, inner
        # IPv6/ARP/fragment/VLAN, over IPv6; Geneve, VXLAN-GPE, GRE, IP-in-IP
        vxlan_frame(), vxlan_frame(7, 8472), vxlan_frame(9, 5555), vxlan_frame(9, 4790),
        eth(_udp4(4789, vxlan(3, inner_frame(), flags=0x00))),
        eth(_udp4(4789, vxlan(3, eth(_udp4(8472, vxlan(4, inner_frame())))))),
        eth(_udp4(4789, vxlan(3, eth(tcp6, 0x86DD)))),
        eth(_udp4(4789, vxlan(3, eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, 0x0806)))),
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 6, tcp(1, 2), flags_frag=0x2000))))),
        eth(_udp4(4789, vxlan(3, eth(tcp4, tags=((0x8100, 9),)))), tags=((0x8100, 8),)),
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 1, icmp_echo()))))),
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 6, tcp(1, 2), options=b"\1" * 40))))),
        eth(ipv6(V6A, V6B, 17, udp(1, 4789, vxlan(5, inner_frame()))), 0x86DD),
        eth(_udp4(6081, geneve(3, 0x6558, inner_frame()))), eth(_udp4(4790, b"\x0c\0\0\x03" * 4)),
        eth(ipv4(A, B, 47, gre(0x6558, inner_frame(), key=0x500))),
        eth(ipv4(A, B, 4, ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2)))),
        eth(ipv4(A, B, 41, tcp6)),
        eth(_udp4(4789, vxlan(3, inner_frame()), total=0)),
        eth(_udp4(4789, vxlan(3, inner_frame()), flags_frag=0x2000)),
        eth(ipv4("10.0.0.1", "10.0.0.2", 17, b"v" * 60, flags_frag=0x0003)),  # its later piece
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 17, b"d" * 40, flags_frag=0x0005))))),
        # not IP: ARP, LLC, LLDP, Cisco MetaData, runt frames
        eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, 0x0806), eth(b"\x42" * 40, 100),
        eth(b"\0" * 40, 0x88CC), eth(b"\x01\x01\x00\x01\x00\x05\x08\x00" + tcp4, 0x8909),
        b"\x01" * 10, b"", eth(b"", 0x0800),
    ]
    return frames


def test_ethernet_edge_cases(tmp_path: Path) -> None:
    frames = ethernet_edge_frames()
    path = pcap_file(tmp_path / "edges.pcap", full(frames))
    assert_same([path], batch_sizes=(1, 4))
    assert_same([path], batch_sizes=(), vxlan_ports=[5555, 53])
    fast = read_packets(path)
    assert (fast["encap"] == "vxlan").sum() >= 10 and fast["error"].notna().sum() >= 10


def fragment_frames() -> list[bytes]:
    """IPv4 fragments: first (TCP, UDP, ICMP), middle, last; a VXLAN datagram's pieces (the
    first holds the tunnel header), and pieces of an inner packet inside VXLAN."""
    return [
        eth(ipv4(A, B, 6, tcp(1, 2, payload=b"t" * 40), flags_frag=0x2000)),
        eth(ipv4(A, B, 17, udp(1, 2, b"a" * 40), flags_frag=0x2000)),
        eth(ipv4(A, B, 1, icmp_echo() + b"i" * 30, flags_frag=0x2000)),
        eth(ipv4(A, B, 17, b"b" * 40, flags_frag=0x2005)),
        eth(ipv4(A, B, 6, b"c" * 41, flags_frag=0x4010)),  # DF with an offset: still a piece
        eth(_udp4(4789, vxlan(3, inner_frame()), flags_frag=0x2000)),
        eth(ipv4("10.0.0.1", "10.0.0.2", 17, b"v" * 60, flags_frag=0x0003)),
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 6, tcp(1, 2), flags_frag=0x2000))))),
        eth(_udp4(4789, vxlan(3, eth(ipv4(A, B, 17, b"d" * 40, flags_frag=0x0005))))),
    ]


def test_ipv4_fragments_take_the_fast_path(tmp_path: Path) -> None:
    """The vectorized layers decode IPv4 fragments themselves (on an overlay whose underlay
    MTU splits packets they were 12 % of the frames, and 28 s of a 3M-frame analysis in the
    frame-by-frame decoder), and give the reference table."""
    path = pcap_file(tmp_path / "pieces.pcap", full(fragment_frames()))
    _, raws = raw_batches(path)
    raw = next(iter(raws))
    frames = Frames(raw, BatchDecoder()._ports)
    frames.decode(raw)
    assert frames.fast.all() and frames.fragment.all()
    assert_same([path], batch_sizes=(1, 4))
    table = read_packets(path)
    assert table["fragment"].all()
    assert table["sport"].notna().tolist() == [1, 1, 0, 0, 0, 1, 0, 1, 0]  # (ICMP: none)
    assert table["icmp_id"].notna().tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert table["frag_offset"].tolist() == [0, 0, 0, 40, 128, 0, 24, 0, 40]
    assert table["vni"].notna().tolist() == [False] * 5 + [True, False, True, True]


def test_edge_cases_cut_by_the_snaplen(tmp_path: Path) -> None:
    """Every frame cut at every length, as a snaplen cuts (wire_len stays the frame's)."""
    records = [(f[:n], len(f)) for f in [*ethernet_edge_frames(), *fragment_frames()]
               for n in range(len(f))]
    assert_same([pcap_file(tmp_path / "snap.pcap", records)], batch_sizes=(97,))


@pytest.mark.parametrize("linktype", [1, 276])
def test_every_prefix_of_vxlan_frames(tmp_path: Path, linktype: int) -> None:
    """Truncated at every length: cut by the capture (snaplen) and with lying length fields."""
    frames = [vxlan_frame(), eth(_udp4(8472, vxlan(3, eth(ipv4(A, B, 6, tcp(1, 2)),
                                                          tags=((0x8100, 4),)))))]
    if linktype == 276:  # the Ethernet header replaced by a cooked one, as tcpdump -i any
        frames = [struct.pack("!HHIHBB8s", 0x0800, 0, 4, 1, 4, 6, b"") + f[14:] for f in frames]
    records = [(f[:n], len(f)) for f in frames for n in range(len(f) + 1)]
    records += [(f[:n], n) for f in frames for n in range(len(f) + 1)]
    assert_same([pcap_file(tmp_path / "cut.pcap", records, linktype)], batch_sizes=(5,))


def _sll2(proto: int, payload: bytes, *, ifindex: int = 3, hatype: int = 1,
          pkttype: int = 0) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, hatype, pkttype, 6, b"") + payload


def _sll(proto: int, payload: bytes, *, hatype: int = 1, pkttype: int = 0) -> bytes:
    return struct.pack("!HHH8sH", pkttype, hatype, 6, b"", proto) + payload


def test_other_link_types(tmp_path: Path) -> None:
    tcp4 = ipv4(A, B, 6, tcp(1234, 80))
    tcp6 = ipv6(V6A, V6B, 6, tcp(1, 2))
    vx = _udp4(4789, vxlan(5, inner_frame()))
    files = [
        pcap_file(tmp_path / "sll2.pcap", full(
            [_sll2(0x0800, tcp4, pkttype=p, ifindex=p + 1) for p in range(8)]
            + [_sll2(0x0800, vx), _sll2(0x0800, vx, hatype=772), _sll2(0x86DD, tcp6),
               _sll2(0x8100, b"\x00\x07\x08\x00" + tcp4), _sll2(0x0806, b"\0" * 28),
               _sll2(0x0800, tcp4)[:19]]), 276),
        pcap_file(tmp_path / "sll.pcap", full(
            [_sll(0x0800, tcp4, pkttype=p) for p in range(6)]
            + [_sll(0x0800, vx, hatype=1), _sll(0x0800, vx, hatype=772),
               _sll(16, b"\0" * 20, hatype=824), _sll(0x86DD, tcp6)]), 113),
        *[pcap_file(tmp_path / f"raw{lt}.pcap", full([tcp4, tcp6, vx, b"\x50" * 20, b""]), lt)
          for lt in (101, 12, 14, 228, 229)],
        pcap_file(tmp_path / "null.pcap", full([struct.pack("<I", 2) + tcp4,
                                                struct.pack("<I", 30) + tcp6]), 0),
        pcap_file(tmp_path / "loop.pcap", full([struct.pack(">I", 2) + tcp4]), 108),
        pcap_file(tmp_path / "unknown.pcap", full([tcp4, b""]), 147),
    ]
    assert_same(files, batch_sizes=(2,))
    assert_same(files, batch_sizes=(), ifnames={1: "lo", 3: "eth0", 4: "veth9"})


def test_pcap_variants_pcapng_and_gzip(tmp_path: Path) -> None:
    frames = [(T0 + i * 1_000_123, f) for i, f in enumerate(ethernet_edge_frames()[:30])]
    paths = []
    for nanos in (False, True):
        for big in (False, True):
            path = tmp_path / f"v{int(nanos)}{int(big)}.pcap"
            path.write_bytes(pcap_bytes(frames, nanos=nanos, big_endian=big, wire_extra=0))
            paths.append(path)
    (tmp_path / "z.pcap.gz").write_bytes(gzip.compress(pcap_bytes(frames)))
    ng = ng_shb() + ng_idb(1, "eth0", 9) + ng_idb(276, "any") + ng_idb(101)
    for i, (ts, f) in enumerate(frames):
        ng += ng_epb(i % 3 if i % 3 != 1 else 0, ts // 1000, f, flags=(None, 1, 2, 3)[i % 4])
    ng += ng_epb(1, 5, _sll2(0x0800, ipv4(A, B, 6, tcp(1, 2)), pkttype=4))
    ng += ng_epb(2, 6, ipv4(A, B, 17, udp(1, 2, b"")), flags=2)
    ng += ng_spb(inner_frame()) + ng_shb(">") + ng_idb(1, "second", order=">")
    ng += ng_epb(0, 7, inner_frame(), order=">", flags=1)
    (tmp_path / "m.pcapng").write_bytes(ng)
    paths += [tmp_path / "z.pcap.gz", tmp_path / "m.pcapng"]
    assert_same(paths, batch_sizes=(3,))


def test_pcapng_blocks_and_cuts(tmp_path: Path) -> None:
    """Plain EPB runs (vectorized) between every other kind of block (the reference's parsers),
    and the file cut at every length."""
    frames = [vxlan_frame(), inner_frame(), eth(ipv4(A, B, 1, icmp_echo())), b"\x01" * 5]
    ng = ng_shb() + ng_idb(1, "eth0", 9) + ng_idb(276, "any")
    ng += b"".join(ng_epb(0, T0 + i, f) for i, f in enumerate(frames))
    ng += ng_epb(1, T0 // 1000, _sll2(0x0800, ipv4(A, B, 6, tcp(1, 2)), pkttype=4))
    ng += ng_block(4, b"\x01\x00\x08\x00" + b"\x0a\0\0\x01" + b"host" + b"\0" * 4)  # NRB
    ng += ng_idb(101, tsresol=0x83, tsoffset=-5)  # 2^-3 s ticks, a negative offset
    ng += ng_epb(2, 123_456_789, ipv4(A, B, 17, udp(1, 2, b"x")))
    ng += ng_idb(1, tsresol=0xBF) + ng_epb(3, 2**40, inner_frame())  # 2^-63 s ticks
    ng += ng_epb(0, T0 + 9, inner_frame(), wire_len=900)  # cut by the snaplen
    ng += ng_epb(0, T0 + 10, inner_frame(), flags=1)  # options: the reference way
    ng += b"".join(ng_epb(i % 2, (T0 // 1000 if i % 2 else T0) + i, f)
                   for i, f in enumerate(frames * 3))
    ng += ng_block(5, b"\0" * 20)  # an interface statistics block
    ng += ng_spb(inner_frame()) + ng_epb(0, 2**62, inner_frame())  # int64-overflowing time
    ng += ng_shb(">") + ng_idb(1, "be", order=">") + ng_epb(0, 7, inner_frame(), order=">")
    ng += ng_shb() + ng_idb(1, "again") + ng_epb(0, T0 // 1000, vxlan_frame())
    whole = tmp_path / "whole.pcapng"
    whole.write_bytes(ng)
    assert_same([whole], batch_sizes=(1, 2, 5))
    for n in [*range(0, 120, 2), *range(120, len(ng), 29)]:
        path = tmp_path / "cut.pcapng"
        path.write_bytes(ng[:n])
        assert_same([path], batch_sizes=())
    bad = bytearray(ng)
    at = ng.index(ng_epb(1, T0 // 1000, _sll2(0x0800, ipv4(A, B, 6, tcp(1, 2)), pkttype=4)))
    for patch in (b"\x07\0\0\0", b"\x08\x01\0\0"):  # undescribed interface, bad length
        bad[at + 8:at + 12] = patch
        (tmp_path / "bad.pcapng").write_bytes(bytes(bad))
        assert_same([tmp_path / "bad.pcapng"], batch_sizes=(3,))
    bad = bytearray(ng)
    bad[at + 28 + 5] ^= 0xFF  # inside the frame: still fine
    bad[-1] ^= 0x01  # the last block's trailing length
    (tmp_path / "trail.pcapng").write_bytes(bytes(bad))
    assert_same([tmp_path / "trail.pcapng"], batch_sizes=(3,))


def test_second_ticks_beyond_int64_ns(tmp_path: Path, tshark: str) -> None:
    """if_tsresol 0x80 (2^0: whole seconds) is legal; a tick count past 2262 has no int64 ns:
    that frame's ts_ns is NA in both engines (it was an OverflowError in the fast path), the
    others keep theirs, and tshark reads the same file and times."""
    seconds = 1_767_000_000
    ng = ng_shb() + ng_idb(1, "eth0", 0x80)
    ng += ng_epb(0, seconds, inner_frame()) + ng_epb(0, (3 << 32) + seconds, inner_frame())
    ng += ng_epb(0, seconds + 1, inner_frame())
    path = tmp_path / "seconds.pcapng"
    path.write_bytes(ng)
    assert_same([path], batch_sizes=(1, 2))
    table = read_packets(path)
    assert table["ts_ns"].tolist() == [seconds * 10**9, pd.NA, (seconds + 1) * 10**9]
    epochs = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert [float(e) for e in epochs] == [seconds, (3 << 32) + seconds, seconds + 1]


def test_cut_files_at_every_length(tmp_path: Path) -> None:
    """Cut anywhere (file header, record header, packet data): the same rows, stats, warning
    and, below a whole magic number, the same error."""
    content = pcap_bytes([(T0, vxlan_frame()), (T0 + 1, inner_frame()), (T0 + 2, b"\x01" * 3)])
    for n in range(len(content)):
        path = tmp_path / f"cut{n}.pcap"
        path.write_bytes(content[:n])
        assert_same([path], batch_sizes=(1,) if n % 4 == 0 else ())
    huge = bytearray(content)
    struct.pack_into("<I", huge, 24 + 16 + len(vxlan_frame()) + 8, 100_000_000)
    (tmp_path / "huge.pcap").write_bytes(bytes(huge))
    assert_same([tmp_path / "huge.pcap"], batch_sizes=(1,))
    assert _read([tmp_path / "huge.pcap"], "fast")[2] == [
        f"huge.pcap: corrupt record header (captured length 100000000) at byte "
        f"{24 + 16 + len(vxlan_frame())}; read the 1 whole frames before it"]


def test_not_a_capture_and_engines(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a capture\n")
    assert_same([text])
    with pytest.raises(UsageError, match="engine"):
        read_packets([], engine="turbo")  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(read_packets([]), read_packets([], engine="reference"))


def test_fuzzed_frames(tmp_path: Path, corpus_dir: Path) -> None:
    """Mutated copies of edge-case and corpus frames, on several link types."""
    rng = random.Random(1234)
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2**31 + 5, 1, 4, 6, b"")
    seeds = ethernet_edge_frames()
    seeds += [sll2 + f[14:] for f in seeds[:40]] + [f[14:] for f in seeds[:40]]
    for path in sorted(corpus_dir.glob("*.pcap")):
        seeds += [f for f, _ in _first_records(path, 4)]
    linktypes = (1, 1, 1, 1, 276, 276, 113, 101, 228, 229)
    by_linktype: dict[int, list[tuple[bytes, int]]] = {lt: [] for lt in linktypes}
    for _ in range(10000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(4)):
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        cut = rng.randrange(len(frame) + 1)
        wire = rng.choice((cut, len(frame)))
        by_linktype[rng.choice(linktypes)].append((bytes(frame[:cut]), wire))
    files = [pcap_file(tmp_path / f"fuzz{lt}.pcap", records, lt)
             for lt, records in by_linktype.items()]
    assert_same(files, batch_sizes=(33,), vxlan_ports=[53])


def _first_records(path: Path, count: int) -> list[tuple[bytes, int]]:
    from pktkit.capture.read import read_frames

    out = []
    for raw in read_frames(path):
        if raw.linktype == 1:
            out.append((raw.data, raw.wire_len))
        if len(out) == count:
            break
    return out


# -- flow ids across batches -------------------------------------------------------------------


def test_a_flow_spanning_batches_keeps_its_id(tmp_path: Path) -> None:
    def pkt(src: str, dst: str, sport: int, dport: int) -> bytes:
        return eth(ipv4(src, dst, 6, tcp(sport, dport)))

    frames = [pkt(A, B, 1000, 80), pkt("9.9.9.9", B, 5, 6), pkt(B, A, 80, 1000),
              vxlan_frame(), pkt(A, B, 1000, 80), pkt("9.9.9.9", B, 5, 7), vxlan_frame(),
              pkt(B, A, 80, 1000)]
    path = pcap_file(tmp_path / "flows.pcap", full(frames))
    for size in (1, 2, 3):
        df = _read([path], "fast", size)[0]
        assert df is not None
        assert df["flow_id"].tolist() == [0, 1, 0, 2, 0, 3, 2, 0]
    assert_same([path], batch_sizes=(1, 2, 3))


def test_many_flows_grow_the_tables(tmp_path: Path) -> None:
    frames = [eth(ipv4(f"10.{i >> 8 & 255}.{i & 255}.1", B, 17, udp(i % 60000 + 1, 53, b"")))
              for i in range(6000)]
    frames += frames[::-7]
    assert_same([pcap_file(tmp_path / "many.pcap", full(frames))], batch_sizes=(500,))


@pytest.mark.parametrize("digest", ["constant", "one-bit"])
def test_digest_collisions_cannot_merge_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digest: str
) -> None:
    """With a useless digest every flow collides; the exact path must take over."""
    def constant(words: list[np.ndarray]) -> np.ndarray:
        return np.zeros(len(words[0]), np.uint64)

    def one_bit(words: list[np.ndarray]) -> np.ndarray:
        return words[1] & np.uint64(1)

    monkeypatch.setattr(flows, "flow_digest", constant if digest == "constant" else one_bit)
    frames = [eth(ipv4(A, f"10.9.0.{i % 7}", 6, tcp(1000 + i % 5, 80))) for i in range(60)]
    assert_same([pcap_file(tmp_path / "c.pcap", full(frames))], batch_sizes=(1, 4))


# -- the output: schema, Parquet and CSV, the command line -------------------------------------


def test_column_spec_matches_the_table_schema() -> None:
    assert list(COLUMNS) == list(SCHEMA)
    for name, dtype in INT_COLUMNS.items():
        assert pd.api.types.pandas_dtype(SCHEMA[name]).numpy_dtype == np.dtype(dtype), name
    empty = pd.DataFrame({n: pd.Series([], dtype=t) for n, t in SCHEMA.items()})
    theirs = pa.Schema.from_pandas(empty, preserve_index=False).pandas_metadata["columns"]
    ours = arrow_schema().pandas_metadata["columns"]
    for a, b in zip(ours, theirs, strict=True):
        if a["name"] == "encap":  # its category count is the data's
            a, b = a | {"metadata": None}, b | {"metadata": None}
        assert a == b


@pytest.fixture
def capture_set(tmp_path: Path, corpus_dir: Path) -> list[Path]:
    edges = pcap_file(tmp_path / "edges.pcap", full(ethernet_edge_frames()))
    return [edges, corpus_dir / "zeek__linux_dlt_sll2.pcap",
            corpus_dir / "zeek__pcapng-multi-interface.pcapng", corpus_dir / "ndpi__6in4.pcap"]


def _parquet_back(path: Path) -> pd.DataFrame:
    back = pd.read_parquet(path)
    back["encap"] = back["encap"].cat.reorder_categories(sorted(back["encap"].cat.categories))
    return back


def test_packets_command_writes_parquet_and_csv(
    tmp_path: Path, capture_set: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = read_packets(capture_set, vxlan_ports=[5555])
    args = [str(p) for p in capture_set] + ["--vxlan-port", "5555"]
    assert cli_main(["packets", *args, "-o", str(tmp_path / "t.parquet")]) == 0
    pd.testing.assert_frame_equal(_parquet_back(tmp_path / "t.parquet"), expected)
    assert cli_main(["packets", *args, "-o", str(tmp_path / "t.csv")]) == 0
    write_table(expected, tmp_path / "expected.csv")
    assert (tmp_path / "t.csv").read_text() == (tmp_path / "expected.csv").read_text()
    out = capsys.readouterr()
    assert out.err == "" and "written to" in out.out
    assert sorted(p.name for p in tmp_path.glob("*.partial")) == []
    assert cli_main(["packets", *args]) == 0  # no -o: the summary
    assert capsys.readouterr().out == summarize(expected) + "\n"


def test_packets_command_errors_and_cut_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "x.txt"
    text.write_text("not a capture")
    assert cli_main(["packets", str(text), "-o", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pktkit: error: ") and "x.txt" in err
    assert not (tmp_path / "o.parquet").exists()
    assert cli_main(["packets", str(text)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli_main(["packets", str(text), "-o", str(tmp_path / "o.json")]) == 2
    assert "o.json" in capsys.readouterr().err

    content = pcap_bytes([(T0, vxlan_frame()), (T0 + 1, inner_frame()), (T0 + 2, inner_frame())])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(content[:-10])
    for out in ("c.parquet", "c.csv"):
        assert cli_main(["packets", str(cut), "-o", str(tmp_path / out)]) == 0
        err = capsys.readouterr().err
        assert err == (f"pktkit: warning: cut.pcap: file ends inside a packet record at byte "
                       f"{len(content) - 16 - len(inner_frame())}; read the 2 whole frames "
                       "before it\n")
    assert len(_parquet_back(tmp_path / "c.parquet")) == 2
    assert len(pd.read_csv(tmp_path / "c.csv")) == 2
    assert cli_main(["packets", str(cut)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("pktkit: warning: cut.pcap") and "2 packets" in captured.out
    # a cut file, then not a capture: the warning, then the error
    assert cli_main(["packets", str(cut), str(text), "-o", str(tmp_path / "d.parquet")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in lines] == [" warning", " error"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["packets", str(cut), "--vxlan-port", "70000"])
    assert exit_info.value.code == 2 and "--vxlan-port" in capsys.readouterr().err


def test_write_packets_with_no_rows(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(pcap_bytes([]))
    from pktkit.capture.output import write_packets

    stats = write_packets([empty], tmp_path / "e.csv")
    assert stats[0].frames == 0
    write_table(read_packets([empty]), tmp_path / "expected.csv")
    assert (tmp_path / "e.csv").read_text() == (tmp_path / "expected.csv").read_text()
    write_packets([empty], tmp_path / "e.parquet")
    assert list(pd.read_parquet(tmp_path / "e.parquet").columns) == list(SCHEMA)


def test_parquet_output_does_not_import_pandas(tmp_path: Path) -> None:
    """The fast command path stays lean: interpreter and imports count in its run time."""
    path = pcap_file(tmp_path / "p.pcap", full([vxlan_frame(), inner_frame()]))
    code = ("import sys; from pktkit.capture.output import write_packets; "
            f"write_packets([{str(path)!r}], {str(tmp_path / 'p.parquet')!r}); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    pd.testing.assert_frame_equal(_parquet_back(tmp_path / "p.parquet"), read_packets(path))
