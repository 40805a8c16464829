"""Raw batches: a capture's frames, many at a time, in place in one buffer.

The fast path's input (:class:`RawBatch`). A classic uncompressed pcap is mapped into memory
(no copy; the pages of each consumed batch are dropped again, so memory stays flat however large
the file) and its records are found many at a time by :mod:`~pktkit.capture.walk` (chains in
lock step, proven exact). One gather then copies every record header together with the first
``HEAD`` bytes of its frame into a 2-D uint8 array. pcapng is walked the same way for its runs
of plain Enhanced Packet Blocks; every other block, and gzip, goes through the
reference :class:`~pktkit.capture.read.CaptureReader`'s own parsers, so its rules (cuts,
interfaces, resolutions) live in one place.

A mapped capture must not be truncated while it is read (the process would get SIGBUS); a file
that grows meanwhile is read as it was when opened.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pktkit.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SHB,
    BLOCK_SPB,
    BYTE_ORDER_MAGICS,
    DIRECTIONS,
    EPB_HEADER_BYTES,
    MAX_RECORD_BYTES,
    PCAP_HEADER_BYTES,
    PCAP_MAGICS,
    PCAP_RECORD_HEADER_BYTES,
    PCAPNG_SHB_MAGIC,
)
from pktkit.capture.read import CaptureReader, PcapngInterface, RawFrame, ReadStats, RecordCut
from pktkit.capture.walk import ChainWalk, epb_walk, pcap_walk

HEAD = 128  # bytes of each frame the vectorized path looks at; a stack reaching past: fallback
# frames per batch (mixed-1M, provisional): 16,384 cost ~10 % more CPU in one thread, ~4 % in a
# run (more numpy calls per frame, each one's overhead with the GIL held); 65,536 ~115 MB more peak
# memory (pages and columns in flight)
DEFAULT_BATCH = 32768
DIRECTION_CODE = {name: code for code, name in enumerate(DIRECTIONS)}
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_REC, _EPB = PCAP_RECORD_HEADER_BYTES, EPB_HEADER_BYTES


@dataclass(slots=True)
class RawBatch:
    """Consecutive frames of one capture, in place in one buffer.

    ``buf`` (often the mapped file itself) holds at least ``HEAD`` readable bytes from every
    ``start`` on. ``head``, when given, already holds each frame's first bytes: row i (plus one
    spare row) from column ``head_skip`` on, at least ``HEAD`` of them (the pcap and pcapng
    readers gather them in one go with the record or block headers).
    """

    capture: str
    first_frame: int  # frame number of the first frame (1-based)
    buf: np.ndarray  # uint8
    start: np.ndarray  # int64 offset of each frame's data in buf
    cap_len: np.ndarray  # int64
    wire_len: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    ts_missing: np.ndarray | None  # bool per frame (pcapng simple packet blocks); None: all set
    linktype: np.ndarray  # int64
    interface_id: np.ndarray | None = None  # int64, -1 for none; None: pcap (all none)
    interface_code: np.ndarray | None = None  # int32 index into interface_names, -1 for none
    interface_names: list[str] | None = None
    direction: np.ndarray | None = None  # int8 direction code from epb_flags, -1 for none
    head: np.ndarray | None = None  # (n + 1, head_skip + >= HEAD) uint8, C-contiguous
    head_skip: int = 0

    def __len__(self) -> int:
        return len(self.start)

    def frame_bytes(self, i: int) -> bytes:
        s = int(self.start[i])
        return self.buf[s:s + int(self.cap_len[i])].tobytes()


def _pcap_batches(path: Path, stats: ReadStats, batch_size: int,
                  span: tuple[int, int | None] | None = None) -> Iterator[RawBatch]:
    """Classic uncompressed pcap, batch by batch, with :class:`CaptureReader`'s cut rules.

    The file is mapped, not read: frames are decoded where the page cache holds them, with no
    copy, and the pages of each consumed batch are dropped from this process's resident set, so
    memory stays flat however large the file. ``span``: only the records from offset ``start``
    (a proven record start, :mod:`~pktkit.capture.chunks`) up to ``end`` (None: the file's
    end, with its cut rules), frames numbered from 1 there."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < PCAP_HEADER_BYTES:
            stats.stopped_at, stats.reason = 0, "file ends inside the pcap file header"
            return
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    advise = getattr(mapped, "madvise", None)
    if advise is not None:
        advise(mmap.MADV_SEQUENTIAL)  # read ahead aggressively
    try:
        yield from _mapped_pcap_batches(mapped, size, stats, batch_size, span)
    finally:
        with contextlib.suppress(BufferError):  # a batch still uses it: closed when it goes
            mapped.close()


def _mapped_pcap_batches(
    mapped: mmap.mmap, size: int, stats: ReadStats, batch_size: int,
    span: tuple[int, int | None] | None = None,
) -> Iterator[RawBatch]:
    order, ticks_per_second = PCAP_MAGICS[mapped[:4]]
    ns_per_tick = 1_000_000_000 // ticks_per_second
    snaplen, network = struct.unpack(order + "II", mapped[16:24])
    linktype = network & 0xFFFF
    u32 = struct.Struct(order + "I").unpack_from
    fields = np.dtype(order + "u4")
    data = np.frombuffer(mapped, np.uint8)
    walk = pcap_walk(data, order, ticks_per_second, snaplen, mapped)
    begin, released = PCAP_HEADER_BYTES, 0  # first record not handed out yet; pages dropped below
    stop = None  # where a span ends (None: the file's end)
    if span is not None:
        begin, stop = span
        released = begin - begin % mmap.PAGESIZE
    previous = begin  # the batch before the last one handed out ends here
    frames = 0
    stats.bytes_read = begin
    while len(pos := walk.walk(begin, batch_size)):
        if stop is not None:
            pos = pos[pos < stop]
            if not len(pos):
                break
        n = len(pos)
        last = int(pos[-1])
        end = last + _REC + u32(mapped, last + 8)[0]
        buf, at = data, pos
        if last + _REC + HEAD > size:  # the file's last frames: pad a copy (RawBatch.buf)
            buf = np.zeros(end - begin + HEAD, np.uint8)
            buf[:end - begin] = data[begin:end]
            at = pos - begin
        # Each record header with the first HEAD bytes of its frame, in one gather (+ a spare
        # row, see _Frames.block).
        head = sliding_window_view(buf, _REC + HEAD)[np.append(at, at[-1])]
        rec = head[:n, :_REC].view(fields)  # (n, 4): seconds, fraction, cap_len, wire_len
        yield RawBatch(
            stats.capture, frames + 1, buf, at + _REC, rec[:, 2].astype(np.int64),
            rec[:, 3].astype(np.int64),
            rec[:, 0].astype(np.int64) * 1_000_000_000 + rec[:, 1].astype(np.int64) * ns_per_tick,
            None, np.full(n, linktype, np.int64), head=head, head_skip=_REC,
        )
        frames += n
        # (the batch handed out last may still be read in another thread: keep its pages)
        released = _drop_pages(mapped, released, previous)
        previous = begin = end
        stats.frames, stats.bytes_read = frames, begin
    # No whole record at ``begin``: the clean end, or where CaptureReader stops.
    left = size - begin if stop is None else 0
    if left:
        stats.stopped_at = begin
        if left < _REC:
            stats.reason = "file ends inside a record header"
        elif (cap_len := u32(mapped, begin + 8)[0]) > MAX_RECORD_BYTES:
            stats.reason = f"corrupt record header (captured length {cap_len})"
        else:
            stats.reason = "file ends inside a packet record"


def _drop_pages(mapped: mmap.mmap, released: int, upto: int) -> int:
    """Drop the mapped file pages before ``upto`` from this process's resident set (the page
    cache keeps them), so that memory stays flat however large the file; → the new mark."""
    drop = upto - upto % mmap.PAGESIZE
    if drop > released and hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_DONTNEED, released, drop - released)
        return drop
    return released


def _frame_batches(reader: CaptureReader, batch_size: int) -> Iterator[RawBatch]:
    """Any capture the reference reader reads (pcapng, gzip), packed into raw batches."""
    names: dict[str, int] = {}
    chunk: list[RawFrame] = []
    first = 1
    for raw in reader:
        chunk.append(raw)
        if len(chunk) == batch_size:
            yield _pack_frames(chunk, first, names)
            first += len(chunk)
            chunk = []
    if chunk:
        yield _pack_frames(chunk, first, names)


def _pack_frames(frames: list[RawFrame], first: int, names: dict[str, int]) -> RawBatch:
    n = len(frames)
    cap = np.fromiter((f.cap_len for f in frames), np.int64, n)
    start = np.zeros(n, np.int64)
    np.cumsum(cap[:-1], out=start[1:])
    buf = np.frombuffer(b"".join([f.data for f in frames]) + bytes(HEAD), np.uint8)
    ts = [f.ts_ns for f in frames]
    missing = np.fromiter((t is None for t in ts), bool, n)
    ts_arr = np.fromiter((0 if t is None else t for t in ts), np.int64, n)
    codes = np.fromiter(
        (-1 if f.interface is None else names.setdefault(f.interface, len(names))
         for f in frames), np.int32, n)
    return RawBatch(
        frames[0].capture, first, buf, start, cap,
        np.fromiter((f.wire_len for f in frames), np.int64, n), ts_arr,
        missing if missing.any() else None,
        np.fromiter((f.linktype for f in frames), np.int64, n),
        np.fromiter((-1 if f.interface_id is None else f.interface_id for f in frames),
                    np.int64, n),
        codes, list(names),
        np.fromiter((DIRECTION_CODE.get(f.direction, -1) for f in frames), np.int8, n),  # type: ignore[arg-type]
    )


# -- pcapng ----------------------------------------------------------------------------------
# Runs of plain Enhanced Packet Blocks (the bulk of any pcapng file) are walked and decoded like
# pcap records; every other block (section and interface headers, simple/obsolete packet
# blocks, EPBs with options, anything odd or cut) goes one at a time through the reference
# reader's own block parsers, so the rules stay in pktkit.capture.read.


def _pcapng_batches(reader: CaptureReader, batch_size: int) -> Iterator[RawBatch]:
    with open(reader.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    reader.close()
    try:
        yield from _PcapngWalk(reader, mapped, size, batch_size).batches()
    finally:
        with contextlib.suppress(BufferError):  # a batch still uses it: closed when it goes
            mapped.close()


class _PcapngWalk:
    def __init__(
        self, reader: CaptureReader, mapped: mmap.mmap, size: int, batch_size: int
    ) -> None:
        self.reader, self.stats, self.mapped, self.size = reader, reader.stats, mapped, size
        self.batch_size = batch_size
        self.data = np.frombuffer(mapped, np.uint8)
        self.order = "<"
        self.interfaces: list[PcapngInterface] = []  # those of the current section
        self.section_base = 0  # interface numbers continue across sections, as in tshark
        self.frames = 0  # frames handed out or pending
        self.names: dict[str, int] = {}  # interface name → code (RawBatch.interface_code)
        self.specials: list[RawFrame] = []  # frames read the reference way, not yet handed out
        self.walk: ChainWalk | None = None  # EPB runs of the current section's interfaces
        self.walk_interfaces = 0

    def batches(self) -> Iterator[RawBatch]:
        pos = released = previous = 0
        self.stats.bytes_read = 0
        while pos < self.size:
            run = self._plain_run(pos)
            if run is not None:
                if self.specials:
                    yield self._flush()
                batch, pos = self._run_batch(run)
                self.stats.frames, self.stats.bytes_read = self.frames, pos
                yield batch
                # (the batch handed out last may still be read in another thread: keep it)
                released = _drop_pages(self.mapped, released, previous)
                previous = pos
                continue
            try:
                pos = self._block(pos)
            except RecordCut as cut:
                self.stats.stopped_at, self.stats.reason = cut.offset, cut.reason
                break
            self.stats.bytes_read = pos
            if len(self.specials) == self.batch_size:
                yield self._flush()
        if self.specials:
            yield self._flush()
        self.stats.frames = self.frames

    def _plain_run(self, pos: int) -> np.ndarray | None:
        """EPBs from ``pos`` that the vectorized path takes whole: little-endian section, no
        options, lengths that agree, a described interface, a timestamp that fits int64."""
        if self.order != "<" or not _LITTLE_ENDIAN_HOST or not self.interfaces:
            return None
        if self.walk is None or self.walk_interfaces != len(self.interfaces):
            self.walk = epb_walk(self.data, len(self.interfaces), self.mapped)
            self.walk_interfaces = len(self.interfaces)
        pos_arr = self.walk.walk(pos, self.batch_size)
        if not len(pos_arr):
            return None
        fields = sliding_window_view(self.data, _EPB)[pos_arr].view("<u4").astype(np.int64)
        length, local_id, cap = fields[:, 1], fields[:, 2], fields[:, 5]
        trailer = sliding_window_view(self.data, 4)[pos_arr + length - 4].view("<u4")[:, 0]
        ok = ((trailer == length) & (local_id < len(self.interfaces))
              & (32 + cap + (-cap % 4) + 4 > length)  # no room for options
              & (32 + cap <= length) & (fields[:, 3] < 1 << 31))
        ticks = (fields[:, 3] << 32) | fields[:, 4]
        for index, iface in enumerate(self.interfaces):  # ts_ns must not overflow int64
            mul, div = iface.ts_scale
            mine = ok & (local_id == index)
            if mine.any() and (int(ticks[mine].max()) * mul >= 1 << 62 or div >= 1 << 62
                               or abs(iface.ts_offset_ns) >= 1 << 62):
                ok &= ~mine
        bad = np.flatnonzero(~ok)
        take = int(bad[0]) if len(bad) else len(pos_arr)
        return pos_arr[:take] if take else None

    def _run_batch(self, pos: np.ndarray) -> tuple[RawBatch, int]:
        n = len(pos)
        last = int(pos[-1])
        end = last + int(self.data[last + 4:last + 8].view("<u4")[0])
        buf, at = self.data, pos
        if last + _EPB + HEAD > self.size:  # the file's last frames: pad a copy
            first = int(pos[0])
            buf = np.zeros(end - first + HEAD, np.uint8)
            buf[:end - first] = self.data[first:end]
            at = pos - first
        head = sliding_window_view(buf, _EPB + HEAD)[np.append(at, at[-1])]
        fields = head[:n, :_EPB].view("<u4").astype(np.int64)  # type len ifid hi lo cap wire
        local_id = fields[:, 2]
        ticks = (fields[:, 3] << 32) | fields[:, 4]
        ifaces = self.interfaces
        scale = np.array([  # per interface, then per row (huge scales: rows not in runs)
            (*(i.ts_scale if i.ts_scale[1] < 1 << 62 else (1, 1)),
             i.ts_offset_ns if abs(i.ts_offset_ns) < 1 << 62 else 0, i.linktype,
             i.interface_id,
             -1 if i.name is None else self.names.setdefault(i.name, len(self.names)))
            for i in ifaces], np.int64)[local_id]
        ts = ticks * scale[:, 0] // scale[:, 1] + scale[:, 2]
        self.frames += n
        return RawBatch(
            self.stats.capture, self.frames - n + 1, buf, at + _EPB, fields[:, 5], fields[:, 6],
            ts, None, scale[:, 3], scale[:, 4], scale[:, 5].astype(np.int32),
            list(self.names), np.full(n, -1, np.int8), head=head, head_skip=_EPB,
        ), end

    def _block(self, pos: int) -> int:
        """One block exactly as CaptureReader reads it (its parsers, its cut rules)."""
        mapped, size, reader = self.mapped, self.size, self.reader
        if size - pos < 8:
            raise RecordCut(pos, "file ends inside a block header")
        if mapped[pos:pos + 4] == PCAPNG_SHB_MAGIC:
            if size - pos < 12:
                raise RecordCut(pos, "file ends inside a section header block")
            bom = mapped[pos + 8:pos + 12]
            if bom not in BYTE_ORDER_MAGICS:
                raise RecordCut(pos, f"corrupt section header (byte-order magic {bom.hex()})")
            self.order = BYTE_ORDER_MAGICS[bom]
            block_type = BLOCK_SHB
            length = struct.unpack_from(self.order + "I", mapped, pos + 4)[0]
        else:
            block_type, length = struct.unpack_from(self.order + "II", mapped, pos)
        if length < 12 or length % 4 or length > MAX_RECORD_BYTES:
            raise RecordCut(pos, f"corrupt block length {length}")
        if pos + length > size:
            raise RecordCut(pos, "file ends inside a block")
        if struct.unpack_from(self.order + "I", mapped, pos + length - 4)[0] != length:
            raise RecordCut(pos, "corrupt block (trailing length differs)")
        body = mapped[pos + 8:pos + length - 4]
        if block_type == BLOCK_SHB:
            self.section_base += len(self.interfaces)
            self.interfaces = []
        elif block_type == BLOCK_IDB:
            interface_id = self.section_base + len(self.interfaces)
            self.interfaces.append(reader.parse_interface(body, self.order, interface_id))
        elif block_type in (BLOCK_EPB, BLOCK_SPB, BLOCK_OPB):
            frame = reader.parse_packet(block_type, body, self.order, self.interfaces, pos,
                                   self.frames + 1)
            self.frames += 1
            self.specials.append(frame)
        return pos + length

    def _flush(self) -> RawBatch:
        batch = _pack_frames(self.specials, self.frames - len(self.specials) + 1, self.names)
        self.specials = []
        return batch


def raw_batches(
    path: str | Path, batch_size: int = DEFAULT_BATCH,
    span: tuple[int, int | None] | None = None,
) -> tuple[ReadStats, Iterator[RawBatch]]:
    """Open one capture (``CaptureError`` if it is none) → its stats and its raw batches.

    The stats fill in while the batches are consumed, exactly as :class:`CaptureReader`'s.
    ``span`` (an uncompressed pcap file only): the records from ``start`` to ``end`` (see
    :func:`_pcap_batches`)."""
    reader = CaptureReader(path)
    # (a pipe cannot be mapped)
    mapped = not reader.stats.compressed and stat.S_ISREG(os.stat(reader.path).st_mode)
    if mapped and reader.format == "pcap":
        reader.close()
        return reader.stats, _pcap_batches(reader.path, reader.stats, batch_size, span)
    if span is not None:
        reader.close()
        raise ValueError(f"{path}: a span of records is read from an uncompressed pcap file "
                         "only")
    if mapped:
        return reader.stats, _pcapng_batches(reader, batch_size)
    return reader.stats, _frame_batches(reader, batch_size)

