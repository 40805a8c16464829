"""Capture writers, checked byte by byte against the file-format specifications."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from oracle import read_capture

from pktkit.capture.write import CaptureSetWriter, Interface, PcapngWriter, PcapWriter, to_sll2
from pktkit.errors import OutputError

ETH0 = Interface("node", "eth0", 2)
TUNL0 = Interface("node", "tunl0", 9, link="raw")
# dst 02:00:00:00:00:01, src 02:00:00:00:00:02, IPv4, then 20 bytes of IP header.
FRAME = bytes.fromhex("020000000001" "020000000002" "0800") + bytes.fromhex(
    "450000140001000040000000c0a80001c0a80002")


def test_pcap_global_header_and_record_header_microseconds(tmp_path: Path) -> None:
    writer = PcapWriter(tmp_path / "a.pcap", 1, "us")
    writer.write(1_700_000_000_123_456_789, 0, FRAME)
    writer.commit()
    raw = (tmp_path / "a.pcap").read_bytes()
    # libpcap: magic, v2.4, thiszone 0, sigfigs 0, snaplen 262144, linktype 1 (Ethernet).
    assert raw[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    assert raw[24:40] == struct.pack("<IIII", 1_700_000_000, 123_456, 34, 34)
    assert raw[40:] == FRAME


def test_pcap_nanosecond_magic_and_fraction(tmp_path: Path) -> None:
    writer = PcapWriter(tmp_path / "a.pcap", 1, "ns")
    writer.write(1_700_000_000_123_456_789, 0, FRAME)
    writer.commit()
    raw = (tmp_path / "a.pcap").read_bytes()
    assert raw[:4] == bytes.fromhex("4d3cb2a1")  # 0xa1b23c4d little-endian
    assert raw[24:32] == struct.pack("<II", 1_700_000_000, 123_456_789)


def test_pcapng_blocks_interface_names_and_resolution(tmp_path: Path) -> None:
    writer = PcapngWriter(tmp_path / "a.pcapng", "ns")
    assert writer.add_interface(ETH0, 1) == 0
    assert writer.add_interface(TUNL0, 101) == 1
    writer.write(1_700_000_000_000_000_001, 1, FRAME[14:])
    writer.commit()
    raw = (tmp_path / "a.pcapng").read_bytes()
    # Section Header Block: type, length, byte-order magic 0x1A2B3C4D, version 1.0.
    block_type, length, magic, major, minor = struct.unpack_from("<IIIHH", raw)
    assert (block_type, magic, major, minor) == (0x0A0D0D0A, 0x1A2B3C4D, 1, 0)
    assert struct.unpack_from("<I", raw, length - 4)[0] == length  # trailing length repeated
    # IDBs: if_name "eth0"/"tunl0" (option 2), if_tsresol 9 (option 9).
    assert b"\x02\x00\x04\x00eth0" in raw and b"\x02\x00\x05\x00tunl0" in raw
    assert raw.count(b"\x09\x00\x01\x00\x09") == 2
    records = read_capture(tmp_path / "a.pcapng")
    assert [(r.interface_id, r.linktype, r.ts_ns) for r in records] == [
        (1, 101, 1_700_000_000_000_000_001)]
    assert records[0].data == FRAME[14:]


def test_sll2_header_fields_for_ethernet_and_raw_devices() -> None:
    # SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, 8-byte address.
    cooked = to_sll2(FRAME, ETH0, "out")
    assert cooked[:20] == struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4, 6,
                                      bytes.fromhex("020000000002"))
    assert cooked[20:] == FRAME[14:]
    raw_ip = FRAME[14:]
    cooked = to_sll2(raw_ip, TUNL0, "in")
    assert cooked[:20] == struct.pack("!HHIHBB8s", 0x0800, 0, 9, 768, 0, 0, b"")
    assert cooked[20:] == raw_ip


def test_capture_set_one_file_per_interface_or_per_node(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    per_iface = CaptureSetWriter(tmp_path / "e", [ETH0, TUNL0], "pcap", "ether")
    assert per_iface.write(10**9, TUNL0, "in", FRAME[14:]) == ("node-tunl0.pcap", 1, 20)
    per_iface.commit()
    assert read_capture(tmp_path / "e" / "node-tunl0.pcap")[0].linktype == 101
    (tmp_path / "n").mkdir()
    per_node = CaptureSetWriter(tmp_path / "n", [ETH0, TUNL0], "pcapng", "sll2")
    assert per_node.write(10**9, ETH0, "out", FRAME) == ("node-any.pcapng", 1, 40)
    assert per_node.write(10**9, TUNL0, "in", FRAME[14:]) == ("node-any.pcapng", 2, 40)
    per_node.commit()
    records = read_capture(tmp_path / "n" / "node-any.pcapng")
    assert [(r.interface_id, r.linktype) for r in records] == [(0, 276), (1, 276)]


def test_nothing_is_visible_until_commit_and_abort_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    writer = CaptureSetWriter(tmp_path / "e", [ETH0], "pcap", "ether")
    writer.write(10**9, ETH0, "in", FRAME)
    assert not (tmp_path / "e" / "node-eth0.pcap").exists()
    writer.abort()
    assert list((tmp_path / "e").iterdir()) == []


def test_unwritable_directory_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        PcapWriter(tmp_path / "missing" / "a.pcap", 1)
