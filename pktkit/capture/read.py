"""Capture reading: classic pcap, pcapng and gzip-compressed either, streamed frame by frame.

The format is taken from the file's magic number, never from its name (a ``.pcap`` file may hold
pcapng). Timestamps are integer nanoseconds since the epoch.

Our own few block parsers rather than dpkt's readers, because dpkt 1.9.8 gets real files wrong:
its pcapng reader applies the first interface's ``if_tsresol`` to every interface, both readers
raise ``NeedData`` (or silently yield a short packet) at a record cut by the end of the file,
and both return float timestamps.

A file that ends in the middle of a record (a capture still being written, a copy cut short)
yields every whole frame before the cut; :attr:`CaptureReader.stats` then says where it stopped.
"""

from __future__ import annotations

import gzip
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pktkit.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SHB,
    BLOCK_SPB,
    BYTE_ORDER_MAGICS,
    EPB_FLAGS,
    GZIP_MAGIC,
    IF_NAME,
    IF_TSOFFSET,
    IF_TSRESOL,
    MAX_RECORD_BYTES,
    OPT_END,
    PCAP_HEADER_BYTES,
    PCAP_MAGICS,
    PCAP_RECORD_HEADER_BYTES,
    PCAPNG_SHB_MAGIC,
    CaptureFormat,
)
from pktkit.errors import CaptureError


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One captured frame, as the file stores it."""

    capture: str  # file name (no folder), the table's ``capture`` column
    frame: int  # 1-based position in its file, as tshark's frame.number
    ts_ns: int | None  # ns since the epoch; None for a pcapng Simple Packet Block (no timestamp)
    interface: str | None  # pcapng if_name of the interface; None in classic pcap
    interface_id: int | None  # pcapng interface number, counted across sections; None in pcap
    linktype: int  # LINKTYPE_* of the file (pcap) or of the frame's interface (pcapng)
    wire_len: int  # original length on the wire
    cap_len: int  # captured length == len(data); less than wire_len when snaplen cut the frame
    data: bytes
    direction: str | None = None  # "in"/"out" from a pcapng epb_flags option, when present


@dataclass(slots=True)
class ReadStats:
    """What a reader got through: filled while iterating, final when iteration ends."""

    capture: str
    format: CaptureFormat
    compressed: bool
    frames: int = 0
    bytes_read: int = 0  # offset just past the last whole record (decompressed offset for gzip)
    stopped_at: int | None = None  # offset of the record that could not be read; None: clean end
    reason: str | None = None  # why reading stopped early

    @property
    def complete(self) -> bool:
        return self.stopped_at is None

    def describe(self) -> str:
        """One line for a warning or a summary."""
        where = "decompressed byte" if self.compressed else "byte"
        if self.complete:
            return f"{self.capture}: {self.frames} frames ({self.format})"
        return (
            f"{self.capture}: {self.reason} at {where} {self.stopped_at}; "
            f"read the {self.frames} whole frames before it"
        )


class CaptureCutWarning(UserWarning):
    """A capture ended in the middle of a record; the frames before the cut were read."""


@dataclass(slots=True)
class PcapngInterface:
    """A pcapng Interface Description Block, reduced to what a frame needs."""

    interface_id: int
    linktype: int
    snaplen: int
    name: str | None
    ts_scale: tuple[int, int]  # ts_ns = ticks * mul // div
    ts_offset_ns: int

    def ts_ns(self, ticks: int) -> int | None:
        """The time in ns since the epoch; None past what int64 ns hold (after 2262), as a
        coarse if_tsresol (2^0: seconds) with a large tick count can say."""
        mul, div = self.ts_scale
        ns = ticks * mul // div + self.ts_offset_ns
        return ns if -(1 << 63) <= ns < 1 << 63 else None


def ts_scale(tsresol: int) -> tuple[int, int]:
    """(mul, div) turning if_tsresol ticks into ns: MSB clear → 10^-n s, MSB set → 2^-n s."""
    exponent = tsresol & 0x7F
    if tsresol & 0x80:
        return 1_000_000_000, 1 << exponent
    if exponent <= 9:
        return 10 ** (9 - exponent), 1
    return 1, 10 ** (exponent - 9)


class RecordCut(Exception):
    """Reading must stop here: the record starting at ``offset`` is incomplete or corrupt."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


class CaptureReader:
    """Iterate the frames of one capture file in constant memory.

    Opening checks the format and raises :class:`CaptureError` for an empty, unreadable or
    non-capture file. Iterate once; afterwards :attr:`stats` says how far the file was read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.capture = self.path.name
        self._file = self._open()
        try:
            magic = self._read_exact_or_less(4)
            self.format: CaptureFormat = self._detect(magic)
            # what follows the magic, checked now and read again by the iteration
            self._file = _Replay(self._check_start(magic), self._file)
        except BaseException:
            self._file.close()
            raise
        self._magic = magic
        self.stats = ReadStats(self.capture, self.format, self._compressed)

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> BinaryIO:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()/iteration
        except OSError as exc:
            raise CaptureError(
                f"{self.path}: cannot open ({exc.strerror}); pass an existing pcap/pcapng file"
            ) from None
        # peeked, not read and sought back: a pipe or FIFO (tcpdump -w - |) cannot seek
        head = raw.peek(2)[:2]
        self._compressed = head == GZIP_MAGIC
        if self._compressed:
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        return raw

    def _read_exact_or_less(self, size: int) -> bytes:
        try:
            return self._file.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(
                f"{self.path}: gzip data cannot be decompressed ({exc}); "
                "check the download or decompress it with gunzip to see the damage"
            ) from None

    def _detect(self, magic: bytes) -> CaptureFormat:
        if magic in PCAP_MAGICS:
            return "pcap"
        if magic == PCAPNG_SHB_MAGIC:
            return "pcapng"
        inside = " (inside gzip)" if self._compressed else ""
        if not magic:
            raise CaptureError(
                f"{self.path}: empty file{inside} (0 bytes); nothing was captured, "
                "re-run the capture or pass another file"
            )
        first = (magic + self._read_exact_or_less(12))[:16]
        if len(first) < 4:
            raise CaptureError(
                f"{self.path}: only {len(first)} bytes{inside} ({first.hex(' ')}), too short for "
                "a capture file header; pass a complete pcap/pcapng file"
            )
        raise CaptureError(
            f"{self.path}: not a pcap or pcapng capture{inside} (starts with {first.hex(' ')}); "
            "pass a file written by tcpdump, tshark/dumpcap or pktkit (gzip is fine)"
        )

    def _check_start(self, magic: bytes) -> bytes:
        """The bytes after the magic up to the first record, checked: a file whose file header
        is cut short, or whose first record or block is corrupt, holds nothing a capture tool
        can read (tshark calls it no capture), so it is a CaptureError, not a cut capture."""
        inside = " (inside gzip)" if self._compressed else ""
        if self.format == "pcap":
            order = PCAP_MAGICS[magic][0]
            start = self._read_exact_or_less(PCAP_HEADER_BYTES - 4 + PCAP_RECORD_HEADER_BYTES)
            if len(start) < PCAP_HEADER_BYTES - 4:
                raise CaptureError(
                    f"{self.path}: only {4 + len(start)} bytes{inside}, but a pcap file header "
                    f"has {PCAP_HEADER_BYTES}; the file is cut before any packet or is not a "
                    "capture, pass a complete pcap/pcapng file")
            record = start[PCAP_HEADER_BYTES - 4:]
            if len(record) == PCAP_RECORD_HEADER_BYTES:
                cap_len = struct.unpack_from(order + "I", record, 8)[0]
                if cap_len > MAX_RECORD_BYTES:
                    raise CaptureError(
                        f"{self.path}: not a capture{inside}: its first record says it holds "
                        f"{cap_len} bytes (byte {PCAP_HEADER_BYTES}); pass a file written by "
                        "tcpdump, tshark/dumpcap or pktkit")
            return start
        start = self._read_exact_or_less(8)  # block length, byte-order magic
        bom = start[4:8]
        order = BYTE_ORDER_MAGICS.get(bom)
        length = struct.unpack_from((order or "<") + "I", start, 0)[0] if len(start) == 8 else 0
        if len(start) == 8 and (order is None or length < 28 or length % 4
                                or length > MAX_RECORD_BYTES):
            raise CaptureError(
                f"{self.path}: not a capture{inside}: its first block, the pcapng section "
                f"header, is corrupt (byte-order magic {bom.hex()}, length {length}); pass a "
                "file written by tcpdump, tshark/dumpcap or pktkit")
        rest = self._read_exact_or_less(max(length - 12, 0))
        if len(start) < 8 or len(rest) < length - 12:
            raise CaptureError(
                f"{self.path}: only {4 + len(start) + len(rest)} bytes{inside}, but its pcapng "
                "section header is longer; the file is cut before any packet or is not a "
                "capture, pass a complete pcap/pcapng file")
        if struct.unpack_from(order + "I", rest, len(rest) - 4)[0] != length:  # type: ignore[operator]
            raise CaptureError(
                f"{self.path}: not a capture{inside}: its first block, the pcapng section "
                "header, is corrupt (its trailing length differs); pass a file written by "
                "tcpdump, tshark/dumpcap or pktkit")
        return start + rest

    # -- iteration -------------------------------------------------------------------------

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[RawFrame]:
        frames = self._pcap_frames() if self.format == "pcap" else self._pcapng_frames()
        try:
            yield from frames
        except RecordCut as cut:
            self.stats.stopped_at = cut.offset
            self.stats.reason = cut.reason
        finally:
            self.close()

    def _read(self, size: int, record_offset: int, what: str) -> bytes:
        """Exactly ``size`` bytes of the record at ``record_offset``, or stop with a RecordCut."""
        try:
            data = self._file.read(size)
        except (OSError, EOFError, zlib.error):
            raise RecordCut(record_offset,
                            f"compressed data ends or is damaged inside {what}") from None
        if len(data) < size:
            raise RecordCut(record_offset, f"file ends inside {what}")
        return data

    def _read_header(self, size: int, offset: int, what: str) -> bytes:
        """The next ``size``-byte record or block header; empty at a clean end of file."""
        try:
            head = self._file.read(size)
        except (OSError, EOFError, zlib.error):
            raise RecordCut(offset, "compressed data ends or is damaged") from None
        if head and len(head) < size:
            raise RecordCut(offset, f"file ends inside {what}")
        return head

    def _pcap_frames(self) -> Iterator[RawFrame]:
        order, ticks_per_second = PCAP_MAGICS[self._magic]
        ns_per_tick = 1_000_000_000 // ticks_per_second
        header = self._read(20, 0, "the pcap file header")
        _major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(order + "HHiIII", header)
        linktype = network & 0xFFFF  # upper bits may carry FCS-length flags
        record = struct.Struct(order + "IIII")
        offset = 24
        stats = self.stats
        stats.bytes_read = offset
        number = 0
        while True:
            head = self._read_header(16, offset, "a record header")
            if not head:
                return
            seconds, fraction, cap_len, wire_len = record.unpack(head)
            if cap_len > MAX_RECORD_BYTES:
                raise RecordCut(offset, f"corrupt record header (captured length {cap_len})")
            data = self._read(cap_len, offset, "a packet record")
            number += 1
            yield RawFrame(
                self.capture, number, seconds * 1_000_000_000 + fraction * ns_per_tick,
                None, None, linktype, wire_len, cap_len, data,
            )
            offset += 16 + cap_len
            stats.frames = number
            stats.bytes_read = offset

    def _pcapng_frames(self) -> Iterator[RawFrame]:
        offset = 0
        order = "<"
        interfaces: list[PcapngInterface] = []
        section_base = 0  # interface numbers continue across sections, as in tshark
        number = 0
        stats = self.stats
        first = True
        while True:
            if first:
                head = self._magic + self._read(4, 0, "a block header")
                first = False
            else:
                head = self._read_header(8, offset, "a block header")
                if not head:
                    return
            if head[:4] == PCAPNG_SHB_MAGIC:
                bom = self._read(4, offset, "a section header block")
                if bom not in BYTE_ORDER_MAGICS:
                    raise RecordCut(offset,
                                    f"corrupt section header (byte-order magic {bom.hex()})")
                order = BYTE_ORDER_MAGICS[bom]
                block_type = BLOCK_SHB
                block_len = struct.unpack(order + "I", head[4:])[0]
                body_start = bom
            else:
                block_type, block_len = struct.unpack(order + "II", head)
                body_start = b""
            if block_len < 12 or block_len % 4 or block_len > MAX_RECORD_BYTES:
                raise RecordCut(offset, f"corrupt block length {block_len}")
            rest = self._read(block_len - 8 - len(body_start), offset, "a block")
            body = body_start + rest[:-4]
            if struct.unpack(order + "I", rest[-4:])[0] != block_len:
                raise RecordCut(offset, "corrupt block (trailing length differs)")

            if block_type == BLOCK_SHB:
                section_base += len(interfaces)
                interfaces = []
            elif block_type == BLOCK_IDB:
                interfaces.append(self.parse_interface(body, order, section_base + len(interfaces)))
            elif block_type in (BLOCK_EPB, BLOCK_SPB, BLOCK_OPB):
                frame = self.parse_packet(block_type, body, order, interfaces, offset, number + 1)
                number += 1
                yield frame
                stats.frames = number
            # Other blocks (name resolution, statistics, secrets, custom) carry no frames.
            offset += block_len
            stats.bytes_read = offset

    def parse_interface(self, body: bytes, order: str, interface_id: int) -> PcapngInterface:
        if len(body) < 8:
            raise RecordCut(self.stats.bytes_read, "corrupt interface description block")
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
        name: str | None = None
        tsresol = 6  # pcapng default: microseconds
        tsoffset = 0
        for code, value in _options(body, 8, order):
            if code == IF_NAME:
                name = value.rstrip(b"\x00").decode("utf-8", "replace")
            elif code == IF_TSRESOL and value:
                tsresol = value[0]
            elif code == IF_TSOFFSET and len(value) == 8:
                tsoffset = struct.unpack(order + "q", value)[0]
        return PcapngInterface(
            interface_id, linktype, snaplen, name, ts_scale(tsresol), tsoffset * 1_000_000_000
        )

    def parse_packet(
        self, block_type: int, body: bytes, order: str, interfaces: list[PcapngInterface],
        offset: int, number: int,
    ) -> RawFrame:
        direction: str | None = None
        ts_ns: int | None
        if block_type == BLOCK_EPB:
            if len(body) < 20:
                raise RecordCut(offset, "corrupt enhanced packet block")
            local_id, ts_high, ts_low, cap_len, wire_len = struct.unpack_from(order + "IIIII", body)
            data_start = 20
        elif block_type == BLOCK_OPB:  # obsolete Packet Block: 16-bit interface id and drop count
            if len(body) < 20:
                raise RecordCut(offset, "corrupt packet block")
            local_id, _drops, ts_high, ts_low, cap_len, wire_len = struct.unpack_from(
                order + "HHIIII", body
            )
            data_start = 20
        else:  # Simple Packet Block: interface 0, no timestamp, length implied by the block
            if len(body) < 4:
                raise RecordCut(offset, "corrupt simple packet block")
            local_id, ts_high, ts_low = 0, None, None
            wire_len = struct.unpack_from(order + "I", body)[0]
            data_start = 4
            cap_len = min(wire_len, len(body) - 4)
            if interfaces and interfaces[0].snaplen:
                cap_len = min(cap_len, interfaces[0].snaplen)
        if local_id >= len(interfaces):
            raise RecordCut(
                offset, f"packet block names interface {local_id}, which was not described")
        if data_start + cap_len > len(body):
            raise RecordCut(offset, f"corrupt packet block (captured length {cap_len})")
        iface = interfaces[local_id]
        ts_ns = None if ts_high is None else iface.ts_ns((ts_high << 32) | ts_low)
        if block_type == BLOCK_EPB:
            options_start = data_start + cap_len + (-cap_len % 4)
            for code, value in _options(body, options_start, order):
                if code == EPB_FLAGS and len(value) == 4:
                    inout = struct.unpack(order + "I", value)[0] & 0x3
                    direction = {1: "in", 2: "out"}.get(inout)
        return RawFrame(
            self.capture, number, ts_ns, iface.name, iface.interface_id, iface.linktype,
            wire_len, cap_len, body[data_start:data_start + cap_len], direction,
        )


class _Replay:
    """A file whose first bytes were read already: they are served again, then the rest."""

    def __init__(self, head: bytes, file: BinaryIO) -> None:
        self._head, self._file = head, file

    def read(self, size: int) -> bytes:
        if not self._head:
            return self._file.read(size)
        taken, self._head = self._head[:size], self._head[size:]
        return taken + (self._file.read(size - len(taken)) if len(taken) < size else b"")

    def tell(self) -> int:
        """How far the underlying file has been read."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _options(body: bytes, start: int, order: str) -> Iterator[tuple[int, bytes]]:
    """pcapng options from ``start`` to opt_endofopt or the end of the body (lenient)."""
    pos = start
    header = struct.Struct(order + "HH")
    while pos + 4 <= len(body):
        code, length = header.unpack_from(body, pos)
        if code == OPT_END:
            return
        value = body[pos + 4:pos + 4 + length]
        yield code, value
        pos += 4 + length + (-length % 4)


def read_frames(path: str | Path) -> Iterator[RawFrame]:
    """The frames of one capture (public as ``pktkit.frames``): pcap, pcapng or gzip of
    either, by magic number; each :class:`RawFrame` with its ``ts_ns`` (integer ns, every
    pcapng interface at its own ``if_tsresol``/``if_tsoffset``), ``interface`` (name) and
    ``interface_id`` (index), ``linktype``, ``wire_len`` and ``data``. A file cut inside a
    record yields every whole frame, then warns with :class:`CaptureCutWarning`. Raises
    ``CaptureError`` at once for a file that is no capture. ``pktkit.dpkt.decode(frame)``
    turns a frame into dpkt objects."""
    reader = CaptureReader(path)  # (a CaptureError now, not at the first frame)
    return _frames(reader)


def _frames(reader: CaptureReader) -> Iterator[RawFrame]:
    yield from reader
    if not reader.stats.complete:
        warnings.warn(reader.stats.describe(), CaptureCutWarning, stacklevel=2)


frames = read_frames  # the public name


def warn_if_cut(stats: ReadStats) -> None:
    """Warn with :class:`CaptureCutWarning` when a capture ended inside a record."""
    if not stats.complete:
        warnings.warn(stats.describe(), CaptureCutWarning, stacklevel=3)
