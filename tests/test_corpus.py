"""The third-party capture corpus, checked against tshark packet by packet and MANIFEST.tsv.

tshark runs on each file here (nothing is cached in the repo), in parallel, with exactly the
options MANIFEST.tsv was derived with: ``tshark -n -r FILE -d udp.port==8472,vxlan``.

How tshark's fields map to pktkit's columns (these are definitions, not disagreements):

- Innermost IP: the last ``ip``/``ipv6`` layer in ``frame.protocols`` before any ``icmp`` /
  ``icmpv6`` layer (what follows an ICMP layer is the header an ICMP error quotes; tshark
  lists its ``ip.src`` as another occurrence). Its index among the ip (ipv6) layers selects
  the ``ip.src`` (``ipv6.src``) occurrence; TCP/UDP ports likewise by position.
- A tunnel whose payload is not IP (GRE keepalive, CDP over GRE, ARP inside VXLAN): tshark's
  last ``ip.src`` is the tunnel's outer header; pktkit leaves src..dport empty (the outer
  header is in outer_*), so the expectation is empty.
- NVGRE: tshark has no NVGRE dissector and prints the raw GRE key; pktkit's vni is the VSID,
  key >> 8 (RFC 7637), for a keyed GRE header followed by Ethernet.
- PPTP (GRE version 1): the key field is payload length + call id (tshark shows no
  ``gre.key``), no VNI.
- VXLAN-GPE: tshark lists no ``vxlan`` layer in ``frame.protocols`` for it (the next layer,
  NSH say, follows ``udp``), but fills ``vxlan.vni``: a GPE VNI is a ``vxlan.vni`` value with no
  ``vxlan`` layer of its own.
- IPv6 proto: the upper-layer protocol after extension headers (``ipv6.fraghdr.nxt`` when a
  Fragment header follows, else the protocol of the next layer, else ``ipv6.nxt``).
- outer_ip_id: the first ``ip.id`` (or, for an outer IPv6 header, the ``ipv6.fraghdr.ident``
  of a Fragment header right after it) of a frame with a tunnel or another IP header after its
  first IP header; none otherwise.

Documented tshark differences: see ``REASSEMBLY_DIFFERENCES``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from pktkit.capture.decode import DecodedPacket, Decoder
from pktkit.capture.read import RawFrame, read_frames
from pktkit.capture.table import read_packets

TSHARK_OPTIONS = ["-n", "-d", "udp.port==8472,vxlan"]
NO_REASSEMBLY = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id",
    "frame.interface_name", "frame.protocols", "sll.ifindex", "sll.pkttype", "vlan.id",
    "ieee8021ad.id",
    "ip.src", "ip.dst", "ip.proto", "ip.id", "ipv6.src", "ipv6.dst", "ipv6.nxt",
    "ipv6.fraghdr.nxt", "ipv6.fraghdr.ident",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "vxlan.vni", "geneve.vni",
    "gre.flags.key", "gre.key", "gre.flags.version",
]

# tshark (default preferences, as MANIFEST.tsv was made) reassembles IP fragments: it shows
# the reassembled datagram's upper layers on the frame that completes it, and nothing above IP
# on the others. pktkit decodes each frame alone: the first fragment's L4 (and tunnel)
# headers, nothing above IP on later fragments. On these files, and only there, frames may
# differ; every differing frame must be an IP fragment and must agree with tshark run with
# reassembly off (NO_REASSEMBLY), which is tshark's own per-frame view.
REASSEMBLY_DIFFERENCES = {
    "ndpi__dns-fragmented.pcap": (
        "large DNS responses fragmented at IPv4 and IPv6: tshark shows the UDP ports on the "
        "last fragment, pktkit on the first"
    ),
    "zeek__erspan-gre-teb-fragmented.pcap": (
        "outer IPv4 fragments of NVGRE packets: tshark decodes the GRE key and inner packet on "
        "the last fragment, pktkit on the first (the one holding the GRE header)"
    ),
    "zeek__ipv4-fragmented-tcp.pcap": (
        "the datagram never completes, so tshark shows no TCP ports on any fragment; the first "
        "fragment holds the TCP header and pktkit reads its ports"
    ),
}
IP_LAYERS = ("ip", "ipv6")
STOP_LAYERS = ("icmp", "icmpv6")  # what follows is a quoted header, not the packet
TUNNEL_LAYERS = ("vxlan", "geneve", "gre", "nsh", "mpls", "ppp", "teredo")
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ip": 4, "ipv6": 41, "gre": 47}
COMPARED = ("vni", "outer_ip_id", "src", "dst", "proto", "sport", "dport")

# MANIFEST.tsv columns that were derived differently from what pktkit counts:
# (file, column) → (MANIFEST value, pktkit value, why).
MANIFEST_DIFFERENCES = {
    ("ndpi__6in4.pcap", "ipv6_tcp_pkts"): (
        "77", "75", "two ICMPv6 errors quote an IPv6/TCP header; MANIFEST counted 'ipv6:tcp' "
        "anywhere in frame.protocols, pktkit does not decode headers quoted by ICMP",
    ),
    ("tcpdump__802.1ad_QinQ.pcap", "vlan_ids"): (
        {"2001"}, {"200", "2001"}, "tshark files the 802.1ad service tag (id 200) under "
        "ieee8021ad.id, not vlan.id, so MANIFEST lists only the inner 802.1Q tag",
    ),
}

Row = dict[str, list[str]]


def run_tshark(tshark: str, path: Path, extra: list[str]) -> list[Row]:
    cmd = [tshark, *TSHARK_OPTIONS, *extra, "-r", str(path), "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [
        {name: value.split("|") if value else [] for name, value in zip(FIELDS, line.split("\t"),
                                                                         strict=True)}
        for line in out.splitlines()
    ]


def expected_from_tshark(row: Row) -> dict[str, object]:
    """vni and innermost src/dst/proto/sport/dport in pktkit's terms (module docstring)."""
    layers = row["frame.protocols"][0].split(":")
    seen: Counter[str] = Counter()
    innermost: tuple[str, int, int] | None = None
    tunnel_after_ip = False
    ids: list[int | None] = []
    keyed_gre = 0
    for pos, name in enumerate(layers):
        if name in STOP_LAYERS:
            break
        if name in IP_LAYERS:
            innermost, tunnel_after_ip = (name, seen[name], pos), False
        elif name in ("vxlan", "geneve"):
            ids.append(int(row[f"{name}.vni"][seen[name]], 0))
        elif name == "nsh" and len(row["vxlan.vni"]) > seen["vxlan"]:  # VXLAN-GPE before it
            ids.append(int(row["vxlan.vni"][seen["vxlan"]]))
        elif name == "gre":
            key = None
            if row["gre.flags.version"][seen["gre"]] == "1":
                pass  # PPTP: payload length + call id, no VNI
            elif row["gre.flags.key"][seen["gre"]] in ("1", "True"):
                key = int(row["gre.key"][keyed_gre], 0)
                keyed_gre += 1
                if layers[pos + 1:pos + 2] == ["eth"]:  # NVGRE: VSID
                    key >>= 8
            ids.append(key)
        tunnel_after_ip = tunnel_after_ip or name in TUNNEL_LAYERS
        seen[name] += 1
    vni = next((i for i in reversed(ids) if i is not None), None)
    result: dict[str, object] = dict.fromkeys(COMPARED)
    result["vni"] = vni
    result["outer_ip_id"] = outer_ip_id_from_tshark(row, layers)
    if innermost is None or tunnel_after_ip:
        return result
    family, index, pos = innermost
    following = pos + 1
    while following < len(layers) and layers[following].startswith("ipv6."):
        following += 1  # extension headers
    next_layer = layers[following] if following < len(layers) else ""
    if family == "ip":
        proto = int(row["ip.proto"][index])
    elif layers[pos + 1:pos + 2] == ["ipv6.fraghdr"]:
        proto = int(row["ipv6.fraghdr.nxt"][layers[:pos].count("ipv6.fraghdr")])
    else:
        proto = PROTOCOL_NUMBERS.get(next_layer, int(row["ipv6.nxt"][index]))
    result.update(src=row[f"{family}.src"][index], dst=row[f"{family}.dst"][index], proto=proto)
    if next_layer in ("tcp", "udp"):
        k = layers[:following].count(next_layer)
        result["sport"] = int(row[f"{next_layer}.srcport"][k])
        result["dport"] = int(row[f"{next_layer}.dstport"][k])
    return result


def outer_ip_id_from_tshark(row: Row, layers: list[str]) -> int | None:
    """The outermost IP header's identification when a tunnel (or another IP header) follows
    it, before any ICMP layer: what pktkit calls ``outer_ip_id``."""
    cut = next((i for i, name in enumerate(layers) if name in STOP_LAYERS), len(layers))
    layers = layers[:cut]
    first = next((i for i, name in enumerate(layers) if name in IP_LAYERS), None)
    if first is None or not any(name in TUNNEL_LAYERS or name in IP_LAYERS
                                for name in layers[first + 1:]):
        return None
    if layers[first] == "ip":
        return int(row["ip.id"][0], 0)
    fragment_header = layers[first + 1:first + 2] == ["ipv6.fraghdr"]
    return int(row["ipv6.fraghdr.ident"][0], 0) if fragment_header else None


def vlan_ids_from_tshark(row: Row) -> list[int]:
    """802.1ad (ieee8021ad.id) and 802.1Q (vlan.id) tags in frame order."""
    pending = {"ieee8021ad": list(row["ieee8021ad.id"]), "vlan": list(row["vlan.id"])}
    return [int(pending[layer].pop(0)) for layer in row["frame.protocols"][0].split(":")
            if layer in pending]


def table_values(record: dict[str, object]) -> dict[str, object]:
    return {name: None if pd.isna(record[name]) else record[name] for name in COMPARED}


@dataclass
class Capture:
    """One corpus file as pktkit sees it."""

    name: str
    table: pd.DataFrame
    raw: list[RawFrame]
    decoded: list[DecodedPacket]


@pytest.fixture(scope="module")
def manifest(corpus_dir: Path) -> dict[str, dict[str, str]]:
    with open(corpus_dir / "MANIFEST.tsv", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert len(rows) == 34
    for name, row in rows.items():  # results below mean nothing for an altered file
        digest = hashlib.sha256((corpus_dir / name).read_bytes()).hexdigest()
        assert digest == row["sha256"], f"{name} differs from the corpus MANIFEST"
    return rows


@pytest.fixture(scope="module")
def captures(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> dict[str, Capture]:
    decoder = Decoder()
    result = {}
    for name in manifest:
        path = corpus_dir / name
        raw = list(read_frames(path))
        decoded = [decoder.decode(f.data, f.linktype, f.wire_len) for f in raw]
        result[name] = Capture(name, read_packets(path), raw, decoded)
    return result


@pytest.fixture(scope="module")
def tshark_rows(
    corpus_dir: Path, tshark: str, manifest: dict[str, dict[str, str]]
) -> dict[tuple[str, bool], list[Row]]:
    """(file, reassembly) → tshark rows; reassembly off only for the files that need it."""
    jobs = [(name, True) for name in manifest]
    jobs += [(name, False) for name in REASSEMBLY_DIFFERENCES]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        outputs = pool.map(
            lambda job: run_tshark(tshark, corpus_dir / job[0], [] if job[1] else NO_REASSEMBLY),
            jobs,
        )
        return dict(zip(jobs, outputs, strict=True))


def test_table_agrees_with_tshark_packet_by_packet(
    captures: dict[str, Capture], tshark_rows: dict[tuple[str, bool], list[Row]]
) -> None:
    problems: list[str] = []
    for name, capture in captures.items():
        rows = tshark_rows[(name, True)]
        assert len(rows) == len(capture.table), name
        differing = []
        for record, row, packet in zip(capture.table.to_dict("records"), rows, capture.decoded,
                                       strict=True):
            got, want = table_values(record), expected_from_tshark(row)
            if got != want:
                differing.append(record["frame"])
                if name not in REASSEMBLY_DIFFERENCES or not packet.fragment:
                    problems.append(f"{name} frame {record['frame']}: tshark {want}, pktkit {got}")
        if name in REASSEMBLY_DIFFERENCES:
            assert differing, f"{name}: no reassembly difference any more; update the list"
            unassembled = tshark_rows[(name, False)]
            for record, row in zip(capture.table.to_dict("records"), unassembled, strict=True):
                got, want = table_values(record), expected_from_tshark(row)
                if got != want:
                    problems.append(f"{name} frame {record['frame']} (no reassembly): "
                                    f"tshark {want}, pktkit {got}")
    assert not problems, "\n".join(problems[:30])


def test_payload_files_agree_with_tshark(corpus_dir: Path, tshark: str) -> None:
    """payloads/: the tunnel payloads issue 14 added (PPP in GRE, PPTP, NSH after VXLAN-GPE,
    GRE-in-UDP, MPLS over Ethernet, QinQ), both engines against tshark frame by frame (IP
    reassembly off: suricata-verify's trace is one datagram in 1,024 fragments inside GRE),
    without a decode error."""
    folder = corpus_dir / "payloads"
    with open(folder / "MANIFEST.tsv", newline="") as handle:
        names = [row["file"] for row in csv.DictReader(handle, delimiter="\t")]
    assert len(names) == 6
    problems: list[str] = []
    for name in names:
        rows = run_tshark(tshark, folder / name, NO_REASSEMBLY)
        for engine in ("fast", "reference"):
            table = read_packets(folder / name, engine=engine)  # type: ignore[arg-type]
            assert len(rows) == len(table), name
            assert table["error"].isna().all(), (name, table["error"].value_counts())
            for record, row in zip(table.to_dict("records"), rows, strict=True):
                got, want = table_values(record), expected_from_tshark(row)
                if got != want:
                    problems.append(f"{name} frame {record['frame']} ({engine}): tshark {want}, "
                                    f"pktkit {got}")
    assert not problems, "\n".join(problems[:30])


def test_frame_facts_agree_with_tshark(
    captures: dict[str, Capture], tshark_rows: dict[tuple[str, bool], list[Row]],
    manifest: dict[str, dict[str, str]],
) -> None:
    """Timestamps (exact ns), lengths, interfaces, SLL fields and VLAN tags of every frame."""
    pkttype_direction = {"0": "in", "1": "in", "2": "in", "3": "other", "4": "out"}
    problems: list[str] = []
    for name, capture in captures.items():
        for raw, packet, row in zip(capture.raw, capture.decoded, tshark_rows[(name, True)],
                                    strict=True):
            want = {
                "ts_ns": int(Decimal(row["frame.time_epoch"][0]) * 1_000_000_000),
                "wire_len": int(row["frame.len"][0]),
                "cap_len": int(row["frame.cap_len"][0]),
                "interface_id": int(row["frame.interface_id"][0])
                if manifest[name]["format"] == "pcapng" else None,
                # tshark says "unknown" for an interface block without if_name
                "interface": None if row["frame.interface_name"] in ([], ["unknown"])
                else row["frame.interface_name"][0],
                "ifindex": int(row["sll.ifindex"][0]) if row["sll.ifindex"] else None,
                "direction": pkttype_direction.get((row["sll.pkttype"] or [""])[0]),
                "vlan_ids": vlan_ids_from_tshark(row),
            }
            got = {
                "ts_ns": raw.ts_ns, "wire_len": raw.wire_len, "cap_len": raw.cap_len,
                "interface_id": raw.interface_id, "interface": raw.interface,
                "ifindex": packet.ifindex, "direction": packet.direction,
                "vlan_ids": packet.vlan_ids,
            }
            if got != want:
                problems.append(f"{name} frame {raw.frame}: tshark {want}, pktkit {got}")
    assert not problems, "\n".join(problems[:30])


def test_pcapng_per_interface_timestamps(captures: dict[str, Capture]) -> None:
    """The dpkt 1.9.8 pitfall: interface 1 has µs resolution, interface 0 ns."""
    table = captures["zeek__pcapng-multi-interface.pcapng"].table
    first = table.groupby("interface_id").ts_ns.first().to_dict()
    assert first == {0: 1767663089_500330493, 1: 1767663437_111897000}


def _set(text: str) -> set[str]:
    return set() if text == "-" else set(text.split(","))


def _hex_key(key: int) -> str:
    return f"0x{key:08x}"


def test_counts_agree_with_manifest(
    captures: dict[str, Capture], manifest: dict[str, dict[str, str]]
) -> None:
    """MANIFEST.tsv columns (tshark-derived) recomputed from pktkit's decode.

    gre_pkts: tshark counts a fragmented GRE packet on its reassembling (last) fragment,
    pktkit on its first; both count one frame per datagram, so the numbers agree.
    """
    problems: list[str] = []
    for name, capture in captures.items():
        row, table, packets = manifest[name], capture.table, capture.decoded

        def tunnels(*kinds: str, packets: list[DecodedPacket] = packets) -> list:
            return [t for p in packets for t in p.tunnels if t.kind in kinds]

        def frames_with(*kinds: str, packets: list[DecodedPacket] = packets) -> int:
            return sum(any(t.kind in kinds for t in p.tunnels) for p in packets)

        gre_kinds = ("gre", "nvgre", "erspan")
        interfaces = Counter(f.interface_id for f in capture.raw if f.interface_id is not None)
        pktkit = {
            "packets": str(len(table)),
            "vxlan_pkts": str(frames_with("vxlan")),
            "vxlan_vnis": {str(t.vni) for t in tunnels("vxlan")},
            "geneve_pkts": str(frames_with("geneve")),
            "geneve_vnis": {str(t.vni) for t in tunnels("geneve")},
            "gre_pkts": str(frames_with(*gre_kinds)),
            "gre_keys": {_hex_key(t.gre_key) for t in tunnels(*gre_kinds) if t.gre_key is not None},
            "erspan_pkts": str(frames_with("erspan")),
            "erspan_versions": {str(t.erspan_type - 1) for t in tunnels("erspan")},
            "erspan_span_ids": {str(t.erspan_session) for t in tunnels("erspan")},
            "ip_in_ip_pkts": str(frames_with("ipip")),
            "vlan_pkts": str(sum(bool(p.vlan_ids) for p in packets)),
            "vlan_ids": {str(v) for p in packets for v in p.vlan_ids},
            "ipv4_fragment_pkts": str(sum(p.ipv4_fragment for p in packets)),
            "ipv6_fragment_pkts": str(sum(p.ipv6_fragment for p in packets)),
            "truncated_pkts": str(int((table.cap_len < table.wire_len).sum())),
            "max_frame_len": str(int(table.wire_len.max())),
            "ipv6_tcp_pkts": str(sum(p.ip_version == 6 and p.proto == 6 and not (
                p.fragment and p.sport is None) for p in packets)),
            "pkts_per_interface": ";".join(f"{i}:{n}" for i, n in sorted(interfaces.items()))
            or "-",
            "sll2_ifindexes": {str(p.ifindex) for p in packets if p.ifindex is not None},
            "sll_pkttypes": {str(p.pkttype) for p in packets if p.pkttype is not None},
        }
        for column, value in pktkit.items():
            want: object = _set(row[column]) if isinstance(value, set) else row[column]
            if (name, column) in MANIFEST_DIFFERENCES:
                manifest_value, pktkit_value, _why = MANIFEST_DIFFERENCES[(name, column)]
                assert want == manifest_value, f"{name} {column}: MANIFEST changed; update"
                want = pktkit_value
            if value != want:
                problems.append(f"{name} {column}: MANIFEST {want}, pktkit {value}")
    assert not problems, "\n".join(problems)


def test_corpus_decodes_without_errors_except_real_truncation(
    captures: dict[str, Capture],
) -> None:
    errors = {
        (name, int(frame), str(reason))
        for name, capture in captures.items()
        for frame, reason in capture.table.loc[capture.table.error.notna(), ["frame", "error"]]
        .itertuples(index=False)
    }
    # snaplen 68 cuts frame 1's 40-byte TCP header (tshark: "TCP truncated"); the other frames
    # of that file lose only payload or options beyond a 20-byte header that still fits.
    assert errors == {("zeek__tcp-truncated-snaplen68.pcap", 1, "truncated")}


def test_corpus_columns_worth_pinning(captures: dict[str, Capture]) -> None:
    """Values the README names, read off the table."""
    geneve = captures["tcpdump__geneve.pcap"].table
    assert set(geneve.groupby("outer_src").vni.unique().map(tuple)) == {(10,), (11,)}
    assert set(geneve.overhead_bytes) == {50, 58}  # VNI 10 carries one 8-byte option
    nested = captures["zeek__vxlan-triple-nested.pcap"].table.iloc[0]
    assert (nested.encap, nested.vni, nested.overhead_bytes) == ("vxlan/vxlan/vxlan", 3, 150)
    nvgre = captures["zeek__erspan-gre-teb-fragmented.pcap"].table
    assert set(nvgre.vni.dropna()) == {0, 131072}
    assert (nvgre.encap == "none").sum() == 39  # non-first fragments: no GRE header
    gcp = captures["tcpdump__geneve-gcp.pcap"].table.iloc[0]
    assert (gcp.encap, gcp.src, gcp.proto) == ("geneve", "192.168.100.2", 6)
    router = captures["ndpi__sll-any-router.pcap"]
    assert router.raw[0].linktype == 113 and set(router.table.direction.dropna()) == {
        "in", "out", "other"}
    sll2 = captures["zeek__linux_dlt_sll2.pcap"].table
    assert set(sll2.interface) == {"1", "26"}
    assert captures["zeek__pcapng-multi-interface.pcapng"].table.interface.nunique() == 2
    vlan = captures["ndpi__vxlan-vlan.pcap"].table
    assert set(vlan.overhead_bytes) == {54}  # the outer 802.1Q tag counts
