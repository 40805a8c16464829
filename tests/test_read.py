"""Capture reading: formats by magic number, timestamps, interfaces, cut and bad files.

The capture files here are built byte by byte with struct from the format specifications
(pcap: draft-ietf-opsawg-pcap; pcapng: draft-ietf-opsawg-pcapng), not with pktkit's writers.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from pktkit.capture.read import CaptureCutWarning, CaptureReader, RawFrame, read_frames
from pktkit.errors import CaptureError

# -- byte builders (shared with test_table.py) ----------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def pcap_bytes(
    frames: list[tuple[int, bytes]],
    *,
    linktype: int = 1,
    nanos: bool = False,
    big_endian: bool = False,
    wire_extra: int = 0,
) -> bytes:
    """A classic pcap file: ``frames`` are (ts_ns, data); wire_len = len(data) + wire_extra."""
    order = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nanos else PCAP_MAGIC_US
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for ts_ns, data in frames:
        seconds, rest = divmod(ts_ns, 1_000_000_000)
        fraction = rest if nanos else rest // 1000
        wire_len = len(data) + wire_extra
        out.append(struct.pack(order + "IIII", seconds, fraction, len(data), wire_len))
        out.append(data)
    return b"".join(out)


def ng_block(block_type: int, body: bytes, order: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def ng_option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def ng_shb(order: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def ng_idb(
    linktype: int = 1, name: str | None = None, tsresol: int | None = None, order: str = "<",
    tsoffset: int | None = None,
) -> bytes:
    options = b""
    if name is not None:
        options += ng_option(2, name.encode(), order)
    if tsresol is not None:
        options += ng_option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        options += ng_option(14, struct.pack(order + "q", tsoffset), order)
    if options:
        options += ng_option(0, b"", order)
    return ng_block(1, struct.pack(order + "HHI", linktype, 0, 0) + options, order)


def ng_epb(
    interface_id: int, ticks: int, data: bytes, *, wire_len: int | None = None,
    flags: int | None = None, order: str = "<",
) -> bytes:
    body = struct.pack(
        order + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
        len(data) if wire_len is None else wire_len,
    ) + data + b"\x00" * (-len(data) % 4)
    if flags is not None:
        body += ng_option(2, struct.pack(order + "I", flags), order) + ng_option(0, b"", order)
    return ng_block(6, body, order)


def ng_spb(data: bytes, wire_len: int | None = None, order: str = "<") -> bytes:
    return ng_block(3, struct.pack(order + "I", len(data) if wire_len is None else wire_len)
                    + data, order)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


FRAME_A = bytes(range(60))
FRAME_B = bytes(range(100, 174))
TS_1 = 1_700_000_000_123_456_789
TS_2 = 1_700_000_001_000_000_001


# -- classic pcap ----------------------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_magic_variants(tmp_path: Path, nanos: bool, big_endian: bool) -> None:
    content = pcap_bytes([(TS_1, FRAME_A), (TS_2, FRAME_B)], nanos=nanos, big_endian=big_endian,
                         linktype=113)
    path = write(tmp_path, "x.cap", content)  # extension says nothing
    reader = CaptureReader(path)
    frames = list(reader)
    assert reader.format == "pcap"
    assert [f.frame for f in frames] == [1, 2]
    expected_ts = [TS_1, TS_2] if nanos else [TS_1 // 1000 * 1000, TS_2 // 1000 * 1000]
    assert [f.ts_ns for f in frames] == expected_ts
    assert all(type(f.ts_ns) is int for f in frames)
    assert [f.data for f in frames] == [FRAME_A, FRAME_B]
    assert frames[0] == RawFrame("x.cap", 1, expected_ts[0], None, None, 113, 60, 60, FRAME_A)
    assert reader.stats.complete and reader.stats.frames == 2
    assert reader.stats.bytes_read == len(content)


def test_pcap_snaplen_cut_frame_keeps_wire_len(tmp_path: Path) -> None:
    path = write(tmp_path, "t.pcap", pcap_bytes([(TS_1, FRAME_A)], wire_extra=1000))
    (frame,) = read_frames(path)
    assert (frame.cap_len, frame.wire_len) == (60, 1060)


def test_header_only_captures_have_zero_frames(tmp_path: Path) -> None:
    pcap = write(tmp_path, "h.pcap", pcap_bytes([]))
    ng = write(tmp_path, "h.pcapng", ng_shb() + ng_idb())
    for path in (pcap, ng):
        reader = CaptureReader(path)
        assert list(reader) == []
        assert reader.stats.complete


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcap.gz"])
def test_cut_at_every_byte_yields_whole_frames_and_reports_the_cut(
    tmp_path: Path, kind: str
) -> None:
    """Every prefix of a 3-frame file: exactly the frames wholly inside it, and where it stopped."""
    frames = [(TS_1, FRAME_A), (TS_2, FRAME_B), (TS_2 + 5000, FRAME_A[:7])]
    if kind == "pcapng":
        parts = [ng_shb(), ng_idb(name="eth0", tsresol=9)]
        parts += [ng_epb(0, ts, data) for ts, data in frames]
    else:
        header = pcap_bytes([], nanos=True)
        parts = [header] + [pcap_bytes([f], nanos=True)[len(header):] for f in frames]
    content = b"".join(parts)
    record_ends = [sum(len(p) for p in parts[:i + 1]) for i in range(len(parts))]
    first_record = 2 if kind == "pcapng" else 1
    for cut in range(4, len(content) + 1):
        data = content[:cut]
        if kind == "pcap.gz":
            data = gzip.compress(data)
        path = write(tmp_path, f"cut.{kind}", data)
        if cut < len(parts[0]):  # the file header (pcapng: section header) cut: no capture
            with pytest.raises(CaptureError, match="cut before any packet"):
                CaptureReader(path)
            continue
        reader = CaptureReader(path)
        got = list(reader)
        whole = [i for i in range(first_record, len(parts)) if record_ends[i] <= cut]
        assert [f.data for f in got] == [frames[i - first_record][1] for i in whole], cut
        at_boundary = cut in record_ends
        assert reader.stats.complete == at_boundary, (cut, reader.stats)
        assert reader.stats.frames == len(whole)
        if not at_boundary:
            last_end = max([e for e in record_ends if e <= cut], default=0)
            assert reader.stats.stopped_at == last_end
            assert "ends inside" in (reader.stats.reason or "")
            assert f"at {'decompressed ' if kind == 'pcap.gz' else ''}byte {last_end}" in (
                reader.stats.describe()
            )


def test_truncated_gzip_stream_keeps_frames_and_reports(tmp_path: Path) -> None:
    content = pcap_bytes([(TS_1, FRAME_A)] * 50)
    compressed = gzip.compress(content)
    path = write(tmp_path, "t.pcap.gz", compressed[: len(compressed) - 30])
    reader = CaptureReader(path)
    got = list(reader)
    assert 0 < len(got) < 50 and all(f.data == FRAME_A for f in got)
    assert not reader.stats.complete and reader.stats.frames == len(got)


def test_read_frames_warns_on_a_cut_file(tmp_path: Path) -> None:
    content = pcap_bytes([(TS_1, FRAME_A), (TS_2, FRAME_B)])
    path = write(tmp_path, "cut.pcap", content[:-10])
    with pytest.warns(CaptureCutWarning, match=r"cut.pcap: file ends inside a packet record "
                                                r"at byte 100; read the 1 whole frames"):
        frames = list(read_frames(path))
    assert len(frames) == 1


def test_corrupt_record_length_stops_reading(tmp_path: Path) -> None:
    content = pcap_bytes([(TS_1, FRAME_A)]) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 10)
    reader = CaptureReader(write(tmp_path, "c.pcap", content))
    assert len(list(reader)) == 1
    assert reader.stats.stopped_at == 24 + 16 + 60
    assert "corrupt record header" in (reader.stats.reason or "")


# -- pcapng ----------------------------------------------------------------------------------


def test_pcapng_per_interface_resolution_names_sections_and_blocks(tmp_path: Path) -> None:
    content = b"".join([
        ng_shb(),
        ng_idb(1, "eth0", tsresol=9),  # 10^-9
        ng_idb(113, "any"),  # default: 10^-6
        ng_epb(0, TS_1, FRAME_A, flags=1),  # inbound
        ng_epb(1, TS_2 // 1000, FRAME_B, wire_len=500, flags=2),  # outbound
        ng_block(5, b"\x00" * 12),  # interface statistics block: ignored
        ng_spb(FRAME_A[:10]),  # simple packet block → interface 0, no timestamp
        ng_shb(">"),  # second section, big-endian: interfaces start again, numbered on
        ng_idb(276, "br0", tsresol=0x80 | 10, order=">"),  # 2^-10 s
        ng_idb(1, None, tsresol=3, order=">", tsoffset=100),  # ms, +100 s
        ng_epb(1, 2500, FRAME_B, order=">"),
        ng_epb(0, 3 * 1024 + 512, FRAME_A, order=">"),
    ])
    path = write(tmp_path, "multi.pcap", content)  # pcapng under a .pcap name
    reader = CaptureReader(path)
    frames = list(reader)
    assert reader.format == "pcapng"
    summary = [(f.frame, f.ts_ns, f.interface, f.interface_id, f.linktype, f.direction)
               for f in frames]
    assert summary == [
        (1, TS_1, "eth0", 0, 1, "in"),
        (2, TS_2 // 1000 * 1000, "any", 1, 113, "out"),
        (3, None, "eth0", 0, 1, None),
        (4, 2_500_000_000 + 100_000_000_000, None, 3, 1, None),
        (5, 3_500_000_000, "br0", 2, 276, None),
    ]
    assert (frames[1].cap_len, frames[1].wire_len) == (len(FRAME_B), 500)
    assert frames[2].data == FRAME_A[:10]
    assert reader.stats.complete and reader.stats.frames == 5


def test_pcapng_packet_for_undescribed_interface_stops(tmp_path: Path) -> None:
    content = ng_shb() + ng_idb() + ng_epb(0, 1, FRAME_A) + ng_epb(4, 2, FRAME_A)
    reader = CaptureReader(write(tmp_path, "u.pcapng", content))
    assert len(list(reader)) == 1
    assert "interface 4" in (reader.stats.reason or "")


def test_pcapng_bad_block_length_stops(tmp_path: Path) -> None:
    good = ng_shb() + ng_idb() + ng_epb(0, 1, FRAME_A)
    reader = CaptureReader(write(tmp_path, "b.pcapng", good + struct.pack("<II", 6, 13) + b"x" * 8))
    assert len(list(reader)) == 1
    assert reader.stats.stopped_at == len(good)
    assert "corrupt block length 13" in (reader.stats.reason or "")


def test_gzip_compressed_pcapng(tmp_path: Path) -> None:
    content = ng_shb() + ng_idb(name="eth0", tsresol=9) + ng_epb(0, TS_1, FRAME_A)
    reader = CaptureReader(write(tmp_path, "z.bin", gzip.compress(content)))
    frames = list(reader)
    assert reader.format == "pcapng" and reader.stats.compressed
    assert [(f.ts_ns, f.data, f.interface) for f in frames] == [(TS_1, FRAME_A, "eth0")]


def test_reading_is_lazy(tmp_path: Path) -> None:
    """The first frame comes before the file is read through (constant memory)."""
    content = pcap_bytes([(TS_1, FRAME_B)] * 20_000)
    path = write(tmp_path, "big.pcap", content)
    reader = CaptureReader(path)
    frames = iter(reader)
    next(frames)
    assert reader._file.tell() < len(content) // 10
    reader.close()


# -- not a capture ---------------------------------------------------------------------------


def _one_line_error(path: Path) -> str:
    with pytest.raises(CaptureError) as info:
        list(read_frames(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    assert "empty file (0 bytes)" in _one_line_error(write(tmp_path, "empty.pcap", b""))


def test_non_capture_file_is_an_error_naming_the_bytes(tmp_path: Path) -> None:
    message = _one_line_error(write(tmp_path, "notes.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert "not a pcap or pcapng capture" in message
    assert "47 45 54 20 2f 20 48 54 54 50" in message  # "GET / HTTP"
    assert "tcpdump" in message  # says what to pass instead


def test_gzip_of_non_capture_and_broken_gzip_are_errors(tmp_path: Path) -> None:
    message = _one_line_error(write(tmp_path, "a.gz", gzip.compress(b"hello world")))
    assert "inside gzip" in message and "68 65 6c 6c 6f" in message
    assert "gzip" in _one_line_error(write(tmp_path, "b.gz", b"\x1f\x8b" + b"\xff" * 20))
    assert "empty file" in _one_line_error(write(tmp_path, "c.gz", gzip.compress(b"")))


def test_a_cut_file_header_is_not_a_capture(tmp_path: Path) -> None:
    """10 bytes with a pcap magic: nothing a capture tool can read (tshark: cut short), so no
    empty table but the one-line error, in both engines and every verb."""
    path = write(tmp_path, "ten.pcap", pcap_bytes([])[:10])
    assert "only 10 bytes, but a pcap file header has 24" in _one_line_error(path)


def test_a_damaged_first_block_or_record_is_not_a_capture(tmp_path: Path) -> None:
    """tshark: "isn't a capture file" / "appears to be damaged or corrupt"."""
    shb = ng_shb()
    zeroed = write(tmp_path, "bom.pcapng", shb[:8] + b"\0\0\0\0" + shb[12:] + ng_idb())
    assert "section header, is corrupt (byte-order magic 00000000" in _one_line_error(zeroed)
    trailer = write(tmp_path, "trail.pcapng", shb[:-4] + b"\1\0\0\0" + ng_idb())
    assert "trailing length differs" in _one_line_error(trailer)
    absurd = write(tmp_path, "absurd.pcap", pcap_bytes([])
                   + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 64)
    assert "first record says it holds 2147483647 bytes" in _one_line_error(absurd)


def test_file_shorter_than_a_magic_number_is_an_error(tmp_path: Path) -> None:
    assert "too short" in _one_line_error(write(tmp_path, "s.pcap", b"\xd4\xc3"))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    assert "cannot open" in _one_line_error(tmp_path / "nope.pcap")
