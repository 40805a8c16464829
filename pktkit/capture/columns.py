"""Columnar batch decoding: captures → the per-packet table's columns, many frames per numpy op.

The reference path (:mod:`pktkit.capture.read` → :class:`~pktkit.capture.decode.Decoder`, one Python object
per frame) costs ~16 µs a packet; this one decodes the common header stacks of a whole batch of
frames at once (~1 µs a packet end to end, Parquet included; see ``make bench``).

1. **Raw batches.** A classic uncompressed pcap is mapped into memory (no copy; the pages of
   each consumed batch are dropped again, so memory stays flat however large the file) and
   walked record header by record header: the one per-packet Python loop, a ``memoryview``
   index and an add per record. One gather then copies every record header together with the
   first ``HEAD`` bytes of its frame into a 2-D uint8 array. pcapng and gzip go through the
   reference :class:`~pktkit.capture.read.CaptureReader` (their block and stream rules live there
   once) and are packed into the same form.
2. **Fast stacks.** Layer by layer, on the rows still in play: link (Ethernet with up to three
   VLAN tags, SLL, SLL2, raw IP) → IPv4/IPv6 → TCP/UDP/ICMP or another upper protocol, and
   through one VXLAN header (UDP to a VXLAN port) → Ethernet → the same again. Every bounds
   and length rule of the reference decoder is applied as a mask; a header at the same offset
   in every row is read as a strided view, otherwise with one gather per layer. A row is
   *fast* only when it decodes completely, without error, within ``HEAD`` bytes.
3. **Fallback.** Every other row (truncated or malformed, fragments, GRE, Geneve, IP-in-IP,
   IPv6 extension headers, ARP, nested tunnels, other link types, ...) is decoded by the
   reference :class:`~pktkit.capture.decode.Decoder`. The fast stacks compute nothing the decoder would
   compute differently, so the table is the reference table, by construction and by test
   (``tests/test_columns.py``, including fuzzed frames).
4. **Columns.** Addresses stay integers to the end; only distinct ones are formatted, once per
   run. Flow ids come from an integer key per row (both endpoints in a fixed order), looked up
   in a numpy hash table that persists across batches and files, so ids are numbered in order
   of first appearance exactly as ``read_packets(..., engine="reference")`` numbers them.
5. **Output.** Arrow arrays straight from the numpy buffers; Parquet is written in a second
   thread. Writing Parquet never imports pandas (its import is a fifth of a 1M-packet run).

A mapped capture must not be truncated while it is read (the process would get SIGBUS); a file
that grows meanwhile is read as it was when opened.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import queue
import socket
import stat
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

from pktkit.capture.decode import (
    ERROR_REASONS,
    ETH_IPV4,
    ETH_IPV6,
    HASH_MULTIPLIER,
    IPPROTO_FRAGMENT,
    IPV6_EXTENSIONS,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_RAW_ALIASES,
    PAYLOAD_HASH_BYTES,
    PKTTYPE_DIRECTION,
    VLAN_TPIDS,
    DecodedPacket,
    Decoder,
    payload_digest,
)
from pktkit.capture.read import (  # (private names: this module shares the reader's own rules)
    _PCAP_MAGICS,
    MAX_RECORD_BYTES,
    CaptureCutWarning,
    CaptureReader,
    RawFrame,
    ReadStats,
    _Cut,
    _Interface,
)
from pktkit.errors import OutputError, UsageError

HEAD = 128  # bytes of each frame the vectorized path looks at; a stack reaching past: fallback
DEFAULT_BATCH = 32768  # frames per batch: bigger batches cost memory and gain no speed
ROW_GROUP_ROWS = 131072  # Parquet row groups gather whole batches up to this many rows

DIRECTIONS = ("in", "out", "other")  # category order of the ``direction`` column
_DIRECTION_CODE = {name: code for code, name in enumerate(DIRECTIONS)}
_PKTTYPE_CODE = np.full(65536, -1, np.int8)  # SLL/SLL2 packet type → direction code
for _pkttype, _name in PKTTYPE_DIRECTION.items():
    _PKTTYPE_CODE[_pkttype] = _DIRECTION_CODE[_name]
_ERROR_CODE = {reason: code for code, reason in enumerate(ERROR_REASONS)}

MAX_VLAN_TAGS = 3  # more tags (never seen in practice): the reference decoder
_IP_TUNNEL_PROTOS = (4, 41, 47)  # IPIP, IPv6-in-IP, GRE: left to the reference decoder
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_V6_NOT_FAST = np.array(sorted({*IPV6_EXTENSIONS, IPPROTO_FRAGMENT}), np.int64)
_ENCAP_VXLAN = 1  # encap codes: 0 "none", 1 "vxlan", then as fallback rows meet others
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6

# Numeric output columns and their numpy dtypes (the table's nullable dtypes, unboxed).
INT_COLUMNS: dict[str, type[np.integer]] = {
    "frame": np.uint32, "ts_ns": np.int64, "interface_id": np.uint32, "ifindex": np.uint32,
    "linktype": np.uint16, "wire_len": np.uint32, "cap_len": np.uint32, "vni": np.uint32,
    "outer_sport": np.uint16, "outer_dport": np.uint16, "ethertype": np.uint16,
    "ip_version": np.uint8, "proto": np.uint8, "sport": np.uint16, "dport": np.uint16,
    "ttl": np.uint8, "ip_id": np.uint32, "tcp_flags": np.uint16, "icmp_type": np.uint8,
    "icmp_code": np.uint8, "overhead_bytes": np.uint32, "flow_id": np.int64,
    "ip_len": np.uint32, "frag_offset": np.uint16, "tcp_seq": np.uint32, "tcp_ack": np.uint32,
    "icmp_id": np.uint16, "icmp_seq": np.uint16, "l4_payload_len": np.uint32,
    "payload_hash": np.uint32,
}
# the match fields (see pktkit.capture.decode): copied from the reference decoder for fallback rows
_MATCH_FIELDS = ("ip_len", "frag_offset", "tcp_seq", "tcp_ack", "icmp_id", "icmp_seq",
                 "l4_payload_len", "payload_hash")
_EMPTY_DIGEST = payload_digest(b"")
_ICMP_ECHO = np.zeros((256, 256), bool)  # [proto, type]: an echo request or reply
for _proto, _type in ((1, 0), (1, 8), (58, 128), (58, 129)):
    _ICMP_ECHO[_proto, _type] = True

STRING_COLUMNS = ("capture", "interface", "outer_src", "outer_dst", "src", "dst")
ADDRESS_COLUMNS = ("outer_src", "outer_dst", "src", "dst")
# Categorical columns: their categories, None for the open vocabulary of ``encap``.
CATEGORY_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "direction": DIRECTIONS, "encap": None, "error": ERROR_REASONS,
}

# -- raw batches ------------------------------------------------------------------------------


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


def _pcap_batches(path: Path, stats: ReadStats, batch_size: int) -> Iterator[RawBatch]:
    """Classic uncompressed pcap, batch by batch, with :class:`CaptureReader`'s cut rules.

    The file is mapped, not read: frames are decoded where the page cache holds them, with no
    copy, and the pages of each consumed batch are dropped from this process's resident set, so
    memory stays flat however large the file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            stats.stopped_at, stats.reason = 0, "file ends inside the pcap file header"
            return
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    advise = getattr(mapped, "madvise", None)
    if advise is not None:
        advise(mmap.MADV_SEQUENTIAL)  # read ahead aggressively
    try:
        yield from _mapped_pcap_batches(mapped, size, stats, batch_size)
    finally:
        with contextlib.suppress(BufferError):  # a batch still uses it: closed when it goes
            mapped.close()


def _mapped_pcap_batches(
    mapped: mmap.mmap, size: int, stats: ReadStats, batch_size: int
) -> Iterator[RawBatch]:
    order, ticks_per_second = _PCAP_MAGICS[mapped[:4]]
    ns_per_tick = 1_000_000_000 // ticks_per_second
    linktype = struct.unpack(order + "I", mapped[20:24])[0] & 0xFFFF
    u32 = struct.Struct(order + "I").unpack_from
    fields = np.dtype(order + "u4")
    data = np.frombuffer(mapped, np.uint8)
    begin, released = 24, 0  # the first record not handed out yet; pages dropped before it
    frames = 0
    stats.bytes_read = begin
    while positions := _walk_pcap_records(mapped, begin, size, batch_size, order):
        pos = np.array(positions, np.int64)
        n = len(pos)
        last = positions[-1]
        end = last + 16 + u32(mapped, last + 8)[0]
        buf, at = data, pos
        if last + 16 + HEAD > size:  # the file's last frames: pad a copy (RawBatch.buf)
            buf = np.zeros(end - begin + HEAD, np.uint8)
            buf[:end - begin] = data[begin:end]
            at = pos - begin
        # Each record header with the first HEAD bytes of its frame, in one gather (+ a spare
        # row, see _Frames.block).
        head = sliding_window_view(buf, 16 + HEAD)[np.append(at, at[-1])]
        rec = head[:n, :16].view(fields)  # (n, 4): seconds, fraction, cap_len, wire_len
        yield RawBatch(
            stats.capture, frames + 1, buf, at + 16, rec[:, 2].astype(np.int64),
            rec[:, 3].astype(np.int64),
            rec[:, 0].astype(np.int64) * 1_000_000_000 + rec[:, 1].astype(np.int64) * ns_per_tick,
            None, np.full(n, linktype, np.int64), head=head, head_skip=16,
        )
        frames += n
        begin = end
        stats.frames, stats.bytes_read = frames, begin
        released = _drop_pages(mapped, released, begin)
    # No whole record at ``begin``: the clean end, or where CaptureReader stops.
    left = size - begin
    if left:
        stats.stopped_at = begin
        if left < 16:
            stats.reason = "file ends inside a record header"
        elif (cap_len := u32(mapped, begin + 8)[0]) > MAX_RECORD_BYTES:
            stats.reason = f"corrupt record header (captured length {cap_len})"
        else:
            stats.reason = "file ends inside a packet record"


def _walk_pcap_records(
    buf: mmap.mmap | np.ndarray, pos: int, have: int, limit: int, order: str
) -> list[int]:
    """Offsets of the whole records in ``buf[pos:have]``, from ``pos``, at most ``limit``.

    The one per-packet Python loop of the fast path (~0.3 µs a record: each offset depends on
    every length before it, so it cannot be vectorized). Little-endian files read the captured
    length through four pre-cast ``memoryview``s, one per alignment, which is cheaper than
    ``struct.unpack_from``."""
    out: list[int] = []
    append = out.append
    # No "pos + 16 <= have" test per record: past it, nxt > have anyway (or the read fails).
    if order == "<" and _LITTLE_ENDIAN_HOST:
        raw = memoryview(buf)
        size = len(raw)
        views = tuple(raw[k:k + (size - k) // 4 * 4].cast("I") for k in range(4))
        with contextlib.suppress(IndexError):
            for _ in range(limit):
                nxt = pos + 16 + views[pos & 3][(pos + 8) >> 2]
                if nxt > have:
                    break
                append(pos)
                pos = nxt
        return out
    u32 = struct.Struct(order + "I").unpack_from
    with contextlib.suppress(struct.error):
        for _ in range(limit):
            nxt = pos + 16 + u32(buf, pos + 8)[0]
            if nxt > have:
                break
            append(pos)
            pos = nxt
    return out


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
        np.fromiter((_DIRECTION_CODE.get(f.direction, -1) for f in frames), np.int8, n),  # type: ignore[arg-type]
    )


# -- pcapng ----------------------------------------------------------------------------------
# Runs of plain Enhanced Packet Blocks (the bulk of any pcapng file) are walked and decoded like
# pcap records; every other block (section and interface headers, simple/obsolete packet
# blocks, EPBs with options, anything odd or cut) goes one at a time through the reference
# reader's own block parsers, so the rules stay in pktkit.capture.read.

_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
_SHB, _IDB, _SPB, _OPB, _EPB = 0x0A0D0D0A, 1, 3, 2, 6
_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


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
        self.interfaces: list[_Interface] = []  # those of the current section
        self.section_base = 0  # interface numbers continue across sections, as in tshark
        self.frames = 0  # frames handed out or pending
        self.names: dict[str, int] = {}  # interface name → code (RawBatch.interface_code)
        self.specials: list[RawFrame] = []  # frames read the reference way, not yet handed out

    def batches(self) -> Iterator[RawBatch]:
        pos = released = 0
        self.stats.bytes_read = 0
        while pos < self.size:
            run = self._plain_run(pos)
            if run is not None:
                if self.specials:
                    yield self._flush()
                batch, pos = self._run_batch(run)
                self.stats.frames, self.stats.bytes_read = self.frames, pos
                yield batch
                released = _drop_pages(self.mapped, released, pos)
                continue
            try:
                pos = self._block(pos)
            except _Cut as cut:
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
        positions: list[int] = []
        append, size = positions.append, self.size
        raw = memoryview(self.mapped)
        views = tuple(raw[k:k + (len(raw) - k) // 4 * 4].cast("I") for k in range(4))
        with contextlib.suppress(IndexError):  # (a block header past the end: stop)
            for _ in range(self.batch_size):
                view = views[pos & 3]
                q = pos >> 2
                length = view[q + 1]
                if view[q] != _EPB or length < 32 or length & 3 or pos + length > size:
                    break
                append(pos)
                pos += length
        if not positions:
            return None
        pos_arr = np.array(positions, np.int64)
        fields = sliding_window_view(self.data, 28)[pos_arr].view("<u4").astype(np.int64)
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
        if last + 28 + HEAD > self.size:  # the file's last frames: pad a copy
            first = int(pos[0])
            buf = np.zeros(end - first + HEAD, np.uint8)
            buf[:end - first] = self.data[first:end]
            at = pos - first
        head = sliding_window_view(buf, 28 + HEAD)[np.append(at, at[-1])]
        fields = head[:n, :28].view("<u4").astype(np.int64)  # type len ifid hi lo cap wire
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
            self.stats.capture, self.frames - n + 1, buf, at + 28, fields[:, 5], fields[:, 6],
            ts, None, scale[:, 3], scale[:, 4], scale[:, 5].astype(np.int32),
            list(self.names), np.full(n, -1, np.int8), head=head, head_skip=28,
        ), end

    def _block(self, pos: int) -> int:
        """One block exactly as CaptureReader reads it (its parsers, its cut rules)."""
        mapped, size, reader = self.mapped, self.size, self.reader
        if size - pos < 8:
            raise _Cut(pos, "file ends inside a block header")
        if mapped[pos:pos + 4] == _SHB_MAGIC:
            if size - pos < 12:
                raise _Cut(pos, "file ends inside a section header block")
            bom = mapped[pos + 8:pos + 12]
            if bom not in _BYTE_ORDER:
                raise _Cut(pos, f"corrupt section header (byte-order magic {bom.hex()})")
            self.order = _BYTE_ORDER[bom]
            block_type = _SHB
            length = struct.unpack_from(self.order + "I", mapped, pos + 4)[0]
        else:
            block_type, length = struct.unpack_from(self.order + "II", mapped, pos)
        if length < 12 or length % 4 or length > MAX_RECORD_BYTES:
            raise _Cut(pos, f"corrupt block length {length}")
        if pos + length > size:
            raise _Cut(pos, "file ends inside a block")
        if struct.unpack_from(self.order + "I", mapped, pos + length - 4)[0] != length:
            raise _Cut(pos, "corrupt block (trailing length differs)")
        body = mapped[pos + 8:pos + length - 4]
        if block_type == _SHB:
            self.section_base += len(self.interfaces)
            self.interfaces = []
        elif block_type == _IDB:
            interface_id = self.section_base + len(self.interfaces)
            self.interfaces.append(reader._interface(body, self.order, interface_id))
        elif block_type in (_EPB, _SPB, _OPB):
            frame = reader._packet(block_type, body, self.order, self.interfaces, pos,
                                   self.frames + 1)
            self.frames += 1
            self.specials.append(frame)
        return pos + length

    def _flush(self) -> RawBatch:
        batch = _pack_frames(self.specials, self.frames - len(self.specials) + 1, self.names)
        self.specials = []
        return batch


def raw_batches(
    path: str | Path, batch_size: int = DEFAULT_BATCH
) -> tuple[ReadStats, Iterator[RawBatch]]:
    """Open one capture (``CaptureError`` if it is none) → its stats and its raw batches.

    The stats fill in while the batches are consumed, exactly as :class:`CaptureReader`'s."""
    reader = CaptureReader(path)
    if not reader.stats.compressed and stat.S_ISREG(os.stat(reader.path).st_mode):
        if reader.format == "pcap":  # (a pipe cannot be mapped)
            reader.close()
            return reader.stats, _pcap_batches(reader.path, reader.stats, batch_size)
        return reader.stats, _pcapng_batches(reader, batch_size)
    return reader.stats, _frame_batches(reader, batch_size)


# -- the vectorized decoder -------------------------------------------------------------------


Rows = slice | np.ndarray  # slice(None): every row of the batch (views, no index copies)
Offset = int | np.ndarray  # an int when every row in play has the header at the same offset
ALL: slice = slice(None)


def _uniform(offsets: np.ndarray) -> Offset:
    """An int when all offsets are equal: then header blocks are views, not gathers."""
    if len(offsets) and (offsets == offsets[0]).all():
        return int(offsets[0])
    return offsets


def _be16(block: np.ndarray, at: int) -> np.ndarray:
    return block[:, at:at + 2].view(">u2")[:, 0].astype(np.int64)


def _be32(block: np.ndarray, at: int) -> np.ndarray:
    return block[:, at:at + 4].view(">u4")[:, 0].astype(np.int64)


class _Frames:
    """One batch's first ``HEAD`` bytes per frame (one row each), and every decode result.

    Integer results are int64 with -1 for "not set"; addresses are (family, high 64 bits, low
    64 bits) with family 0 for "not set". The layer methods take the rows in play (``ALL`` or
    an index array), each row's header offset and its region (``end``, ``clipped``: see
    :mod:`pktkit.capture.decode`), read their header as one (rows, width) block, and hand on the rows
    that are still well-formed; a row that leaves the fast stacks anywhere is never marked
    ``fast`` and goes to the reference decoder.
    """

    def __init__(self, raw: RawBatch, vxlan_ports: np.ndarray, other_ports: np.ndarray) -> None:
        n = self.n = len(raw)
        if raw.head is None:
            # One extra row so that a block read up to HEAD bytes past a row stays in bounds.
            starts = np.append(raw.start, raw.start[-1]) if n else np.zeros(1, np.int64)
            self.head, self.skip = sliding_window_view(raw.buf, HEAD)[starts], 0
        else:
            self.head, self.skip = raw.head, raw.head_skip
        self.width = self.head.shape[1]  # the row stride of flat
        self.flat = self.head.reshape(-1)
        self.vxlan_ports, self.other_ports = vxlan_ports, other_ports
        self.fast = np.zeros(n, bool)
        minus = np.full(n, -1, np.int64)
        self.ifindex, self.pktdir, self.ethertype = minus.copy(), minus.copy(), minus.copy()
        self.ip_version, self.proto, self.ttl, self.ip_id = (minus.copy() for _ in range(4))
        self.sport, self.dport, self.tcp_flags = minus.copy(), minus.copy(), minus.copy()
        self.icmp_type, self.icmp_code, self.vni = minus.copy(), minus.copy(), minus
        self.outer_sport, self.outer_dport = minus.copy(), minus.copy()
        self.ip_len, self.frag_offset, self.tcp_seq, self.tcp_ack = (minus.copy() for _ in range(4))
        self.icmp_id, self.icmp_seq, self.l4_payload_len = (minus.copy() for _ in range(3))
        self.payload_hash = minus.copy()  # filled by payload_hashes() from these two:
        self.payload_at = minus.copy()  # where the payload starts in the frame
        self.payload_end = minus.copy()  # where the captured region of its layer ends
        self.more_fragments = np.full(n, -1, np.int8)
        self.overhead = np.zeros(n, np.int64)
        self.encap = np.zeros(n, np.int64)
        self.link_wire = np.zeros(n, np.int64)  # link bytes on the wire - link bytes captured
        self.addr = {name: (np.zeros(n, np.int8), np.zeros(n, np.uint64), np.zeros(n, np.uint64))
                     for name in ADDRESS_COLUMNS}

    def block(self, rows: Rows, o: Offset, width: int) -> np.ndarray:
        """``width`` header bytes from offset ``o`` of each row in play, one row each."""
        if isinstance(o, int) and o + width <= HEAD:
            at = self.skip + o
            return self.head[rows if isinstance(rows, np.ndarray) else slice(0, self.n),
                             at:at + width]
        # o <= HEAD: at most inside the spare row
        index = np.arange(self.n)[rows] * self.width + (self.skip + o)
        return sliding_window_view(self.flat, width)[index]

    @staticmethod
    def keep(ok: np.ndarray, rows: Rows, *per_row: Offset) -> tuple[Rows, list]:
        """The rows (and their per-row values) where ``ok``; no copies when that is all."""
        if ok.all():
            return rows, list(per_row)
        rows = np.flatnonzero(ok) if isinstance(rows, slice) else rows[ok]
        return rows, [v[ok] if isinstance(v, np.ndarray) else v for v in per_row]

    # link layer

    def link(self, rows: Rows, linktype: int, end: np.ndarray, clipped: np.ndarray) -> None:
        if linktype == LINKTYPE_ETHERNET:
            rows, (end, clipped) = self.keep(end >= 14, rows, end, clipped)
            self.ethertype_(rows, 14, end, clipped, _be16(self.block(rows, 12, 2), 0))
        elif linktype in (LINKTYPE_LINUX_SLL2, LINKTYPE_LINUX_SLL):
            sll2 = linktype == LINKTYPE_LINUX_SLL2
            size = 20 if sll2 else 16
            rows, (end, clipped) = self.keep(end >= size, rows, end, clipped)
            header = self.block(rows, 0, size)
            if sll2:
                proto, hatype, pkttype = _be16(header, 0), _be16(header, 8), header[:, 10]
                self.ifindex[rows] = _be32(header, 4)
            else:
                pkttype, hatype, proto = _be16(header, 0), _be16(header, 2), _be16(header, 14)
            self.pktdir[rows] = _PKTTYPE_CODE[pkttype]
            # the wire's link bytes minus the captured ones (see DecodedPacket.overhead_bytes)
            self.link_wire[rows] = np.where(hatype == 1, 14, 0) - size
            rows, (end, clipped, proto) = self.keep(hatype != 824, rows, end, clipped, proto)
            self.ethertype_(rows, size, end, clipped, proto)  # (SLL netlink: no ethertype)
        elif linktype in (LINKTYPE_RAW, *LINKTYPE_RAW_ALIASES, LINKTYPE_IPV4, LINKTYPE_IPV6):
            version = self.block(rows, 0, 1)[:, 0] >> 4
            if linktype == LINKTYPE_IPV4:
                version[:] = 4
            elif linktype == LINKTYPE_IPV6:
                version[:] = 6
            for want, parse in ((4, self.ipv4), (6, self.ipv6)):
                sub, (e, c) = self.keep((version == want) & (end >= 1), rows, end, clipped)
                parse(sub, 0, e, c, outer=True)
        # NULL/LOOP and unknown link types: the reference decoder

    def ethertype_(
        self, rows: Rows, o: Offset, end: np.ndarray, clipped: np.ndarray,
        etype: np.ndarray, outer: bool = True,
    ) -> None:
        """Peel VLAN tags, then IPv4 or IPv6 (anything else: the reference decoder)."""
        ok = np.ones(len(end), bool)
        for _ in range(MAX_VLAN_TAGS):
            tag = np.zeros(len(etype), bool)
            for tpid in VLAN_TPIDS:
                tag |= etype == tpid
            if not tag.any():
                break
            ok &= ~tag | (o + 4 <= np.minimum(end, HEAD))
            etype = np.where(tag, _be16(self.block(rows, o + 2, 2), 0), etype)
            o = _uniform(np.where(tag, o + 4, o))
        # (more tags, Cisco MetaData, ARP, LLC, ...: the reference decoder)
        v4, v6 = etype == ETH_IPV4, etype == ETH_IPV6
        rows, (o, end, clipped, etype, v4) = self.keep(ok & (v4 | v6), rows, o, end, clipped,
                                                        etype, v4)
        self.ethertype[rows] = etype
        for want, parse in ((v4, self.ipv4), (~v4, self.ipv6)):
            if want.any():
                sub, (o_, e, c) = self.keep(want, rows, o, end, clipped)
                parse(sub, o_, e, c, outer)

    # network layer

    def ipv4(
        self, rows: Rows, o: Offset, end: np.ndarray, clipped: np.ndarray, outer: bool
    ) -> None:
        header = self.block(rows, o, 20)
        vihl = header[:, 0]
        ihl = (vihl & 0x0F).astype(np.int64) * 4
        total, frag = _be16(header, 2), _be16(header, 6)
        has_total = total != 0
        fits = o + total <= end
        ok = ((vihl >> 4 == 4) & (ihl >= 20) & (o + ihl <= np.minimum(end, HEAD))
              & ((frag & 0x3FFF) == 0)  # fragments: the reference decoder
              & (~has_total | ((total >= ihl) & (fits | clipped))))
        shrink = has_total & fits  # the IP length ends the region: drop Ethernet padding
        end = np.where(shrink, o + total, end)
        clipped = clipped & ~shrink
        ip_len = np.where(has_total, total, end - o)  # 0: TSO frame, the captured bytes
        rows, (header, o, ihl, end, clipped, ip_len) = self.keep(ok, rows, header, o, ihl, end,
                                                                 clipped, ip_len)
        self.ip_len[rows] = ip_len
        self.frag_offset[rows], self.more_fragments[rows] = 0, 0  # (fragments: fallback)
        self.ip_version[rows] = 4
        self.ip_id[rows] = _be16(header, 4)
        self.ttl[rows] = header[:, 8]
        proto = header[:, 9].astype(np.int64)
        self.proto[rows] = proto
        for name, at in (("src", 12), ("dst", 16)):
            fam, hi, lo = self.addr[name]
            fam[rows], hi[rows], lo[rows] = 4, 0, header[:, at:at + 4].view(">u4")[:, 0]
        self.l4(rows, _uniform(o + ihl), end, clipped, proto, outer, o + ip_len)

    def ipv6(
        self, rows: Rows, o: Offset, end: np.ndarray, clipped: np.ndarray, outer: bool
    ) -> None:
        header = self.block(rows, o, 40)
        plen, nh = _be16(header, 4), header[:, 6].astype(np.int64)
        fits = o + 40 + plen <= end
        ok = ((header[:, 0] >> 4 == 6) & (o + 40 <= np.minimum(end, HEAD))
              & (plen != 0)  # jumbogram or TSO frame: the reference decoder
              & (fits | clipped) & ~np.isin(nh, _V6_NOT_FAST))
        end = np.where(fits, o + 40 + plen, end)
        clipped = clipped & ~fits
        rows, (header, o, nh, end, clipped) = self.keep(ok, rows, header, o, nh, end, clipped)
        self.ip_version[rows] = 6
        self.ip_id[rows] = -1
        self.ip_len[rows] = 40 + header[:, 4:6].view(">u2")[:, 0].astype(np.int64)
        self.frag_offset[rows], self.more_fragments[rows] = 0, 0
        self.ttl[rows] = header[:, 7]
        self.proto[rows] = nh
        for name, at in (("src", 8), ("dst", 24)):
            fam, hi, lo = self.addr[name]
            fam[rows] = 6
            hi[rows] = header[:, at:at + 8].view(">u8")[:, 0]
            lo[rows] = header[:, at + 8:at + 16].view(">u8")[:, 0]
        self.l4(rows, o + 40, end, clipped, nh, outer, o + self.ip_len[rows])

    # transport layer and VXLAN

    def l4(
        self, rows: Rows, o: Offset, end: np.ndarray, clipped: np.ndarray,
        proto: np.ndarray, outer: bool, wire_end: np.ndarray,
    ) -> None:
        """``wire_end``: where the IP packet ends by its length field (see decode._payload)."""
        header = self.block(rows, o, 14)  # up to the TCP flags
        lim = np.minimum(end, HEAD)
        tcp, udp = proto == 6, proto == 17
        icmp = (proto == 1) | (proto == 58)
        ports = tcp | udp
        sport, dport = _be16(header, 0), _be16(header, 2)
        offset_byte = header[:, 12]
        data_offset = (offset_byte >> 4).astype(np.int64) * 4
        udp_len = _be16(header, 4)
        udp_fits = o + udp_len <= end
        # an ICMP header's echo id/seq, when the frame has them, must be within HEAD
        icmp_ok = (o + 4 <= lim) & ((o + 8 <= lim) | (o + 8 > end))
        ok = np.where(
            tcp, (o + 20 <= lim) & (data_offset >= 20) & (o + data_offset <= end),
            np.where(udp, (o + 8 <= lim) & (udp_len >= 8) & (udp_fits | clipped),
                     np.where(icmp, icmp_ok, ~np.isin(proto, _IP_TUNNEL_PROTOS))))
        vxlan = udp & np.isin(dport, self.vxlan_ports)
        ok &= ~(udp & np.isin(dport, self.other_ports))  # Geneve, VXLAN-GPE: fallback
        if not outer:
            ok &= ~vxlan  # nested tunnels: fallback
        self.sport[rows] = np.where(ports, sport, -1)
        self.dport[rows] = np.where(ports, dport, -1)
        self.tcp_flags[rows] = np.where(tcp, ((offset_byte & 1).astype(np.int64) << 8)
                                        | header[:, 13], -1)
        self.icmp_type[rows] = np.where(icmp, header[:, 0].astype(np.int64), -1)
        self.icmp_code[rows] = np.where(icmp, header[:, 1].astype(np.int64), -1)
        self.tcp_seq[rows] = np.where(tcp, _be32(header, 4), -1)
        self.tcp_ack[rows] = np.where(tcp, _be32(header, 8), -1)
        echo = icmp & _ICMP_ECHO[proto, header[:, 0]] & (o + 8 <= end)
        self.icmp_id[rows] = np.where(echo, _be16(header, 4), -1)
        self.icmp_seq[rows] = np.where(echo, _be16(header, 6), -1)
        # the payload: after the TCP/UDP/ICMP header, else the whole IP payload
        start = o + np.where(tcp, data_offset, np.where(udp | icmp, 8, 0))
        stop = np.where(udp & (o + udp_len <= wire_end), o + udp_len, wire_end)
        has = ~icmp | (o + 8 <= wire_end)
        self.l4_payload_len[rows] = np.where(has, np.maximum(stop - start, 0), -1)
        self.payload_at[rows] = np.where(has, start, -1)
        self.payload_end[rows] = end
        done, _ = self.keep(ok & ~vxlan, rows)
        self.fast[done] = True
        tunnel = ok & vxlan
        if tunnel.any():
            end = np.where(udp_fits, o + udp_len, end)
            clipped = clipped & ~udp_fits
            rows, (o, end, clipped) = self.keep(tunnel, rows, o, end, clipped)
            self.l4_payload_len[rows] = self.payload_at[rows] = -1  # the inner packet's follow
            self.vxlan(rows, _uniform(o + 8) if isinstance(o, np.ndarray) else o + 8, end,
                       clipped)

    def vxlan(self, rows: Rows, o: Offset, end: np.ndarray, clipped: np.ndarray) -> None:
        """RFC 7348 header, then the inner Ethernet frame; the outer fields move to outer_*."""
        header = self.block(rows, o, 22)  # VXLAN 8 + inner Ethernet 14
        ok = (o + 22 <= np.minimum(end, HEAD)) & (header[:, 0] & 0x08 != 0)
        rows, (header, o, end, clipped) = self.keep(ok, rows, header, o, end, clipped)
        self.encap[rows] = _ENCAP_VXLAN
        self.vni[rows] = _be32(header, 4) >> 8
        self.overhead[rows] = o + 8 + self.link_wire[rows]  # the payload starts at o + 8
        self.outer_sport[rows], self.outer_dport[rows] = self.sport[rows], self.dport[rows]
        for outer_name, name in (("outer_src", "src"), ("outer_dst", "dst")):
            for target, source in zip(self.addr[outer_name], self.addr[name], strict=True):
                target[rows] = source[rows]
        self.ethertype_(rows, o + 22, end, clipped, _be16(header, 20), outer=False)


def _payload_hashes(raw: RawBatch, f: _Frames) -> None:
    """``payload_hash`` of the fast rows: :func:`pktkit.capture.decode.payload_digest` of the first
    PAYLOAD_HASH_BYTES of the payload, one 64-bit word step at a time over all rows. The window
    may reach past HEAD, so it is gathered from the frames themselves."""
    length = np.minimum(f.l4_payload_len, PAYLOAD_HASH_BYTES)
    rows = np.flatnonzero(f.fast & (f.payload_at >= 0) & (f.payload_at + length <= f.payload_end))
    if not len(rows):
        return
    length, at = length[rows], raw.start[rows] + f.payload_at[rows]
    near_end = at + PAYLOAD_HASH_BYTES > len(raw.buf)  # no full window to view: one by one
    for row, a, k in zip(rows[near_end].tolist(), at[near_end].tolist(),
                         length[near_end].tolist(), strict=True):
        f.payload_hash[row] = payload_digest(raw.buf[a:a + k].tobytes())
    keep = ~near_end & (length > 0)
    f.payload_hash[rows[length == 0]] = _EMPTY_DIGEST  # (pure ACKs: no bytes to gather)
    rows, length, at = rows[keep], length[keep], at[keep]
    window = sliding_window_view(raw.buf, PAYLOAD_HASH_BYTES)[at]
    short = length < PAYLOAD_HASH_BYTES
    if short.any():  # zero the bytes past a short payload
        window[short] *= (np.arange(PAYLOAD_HASH_BYTES) < length[short, None])
    words = window.view("<u8")
    h = length.astype(np.uint64)
    for j in range(PAYLOAD_HASH_BYTES // 8):
        h = (h ^ words[:, j]) * np.uint64(HASH_MULTIPLIER)
        h ^= h >> np.uint64(29)
    f.payload_hash[rows] = (h >> np.uint64(32)).astype(np.int64)


# -- the output batch -------------------------------------------------------------------------

Column = tuple[np.ndarray, np.ndarray | None]  # values, NA mask (None: no NA)
Strings = tuple[np.ndarray, pa.Array]  # int32 codes (-1: NA) into an Arrow string dictionary


@dataclass(slots=True)
class ColumnBatch:
    """One batch of table rows, unboxed.

    ``ints``/``bools``: values and NA masks in the table's dtypes; ``strings``: codes into a
    dictionary of distinct strings (only those were ever boxed); ``categories``: codes (-1 for
    NA) into the categories of :data:`CATEGORY_COLUMNS` (``encap``: into ``encap_names``).
    """

    n: int
    ints: dict[str, Column]
    bools: dict[str, Column]
    strings: dict[str, Strings]
    categories: dict[str, np.ndarray]
    encap_names: list[str]


def _masked(values: np.ndarray, dtype: type[np.integer]) -> Column:
    mask = values < 0
    return values.astype(dtype), (mask if mask.any() else None)


def _v6_text(hi: int, lo: int) -> str:
    return socket.inet_ntop(_AF_INET6, hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))


def _v4_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _address_numbers(text: str | None) -> tuple[int, int, int]:
    """A decoder's address string → (family, high, low): the inverse of the formatting."""
    if text is None:
        return 0, 0, 0
    if ":" in text:
        packed = socket.inet_pton(_AF_INET6, text)
        return 6, int.from_bytes(packed[:8], "big"), int.from_bytes(packed[8:], "big")
    return 4, 0, int.from_bytes(socket.inet_pton(_AF_INET, text), "big")


class _HashIndex:
    """A growing map uint64 value → id, looked up for a whole array at once.

    Open addressing with linear probing in two numpy arrays, at most half full: a lookup is one
    or two vectorized gather-and-compare rounds where a dict would cost a Python call per row
    (and ``searchsorted`` a cache miss per level)."""

    def __init__(self, bits: int = 12) -> None:
        self.count = 0
        self._allocate(bits)

    def _allocate(self, bits: int) -> None:
        self.shift = np.uint64(64 - bits)
        self.mask = (1 << bits) - 1
        self.keys = np.zeros(1 << bits, np.uint64)
        self.ids = np.full(1 << bits, -1, np.int64)  # -1: empty slot

    def _home(self, x: np.ndarray) -> np.ndarray:
        return ((x * np.uint64(0x9E3779B97F4A7C15)) >> self.shift).astype(np.int64)

    def lookup(self, x: np.ndarray) -> np.ndarray:
        """The id of every value, -1 where absent."""
        out = np.full(len(x), -1, np.int64)
        todo = np.arange(len(x))
        slot = self._home(x)
        while len(todo):
            ids = self.ids[slot]
            hit = (ids >= 0) & (self.keys[slot] == x[todo])
            out[todo[hit]] = ids[hit]
            on = (ids >= 0) & ~hit  # the slot holds another value: probe the next one
            todo, slot = todo[on], (slot[on] + 1) & self.mask
        return out

    def add(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Add distinct ``values`` that are not present yet."""
        if 2 * (self.count + len(values)) > len(self.keys):  # keep it at most half full
            used = self.ids >= 0
            old_values, old_ids = self.keys[used], self.ids[used]
            bits = max(int(2 * (self.count + len(values))).bit_length() + 1, 12)
            self._allocate(bits)
            self.count = 0
            self.add(old_values, old_ids)
        pending = np.arange(len(values))
        slot = self._home(values)
        while len(pending):
            free = np.flatnonzero(self.ids[slot] < 0)
            _, first = np.unique(slot[free], return_index=True)
            placed = free[first]  # one value per free slot; the others probe on
            self.keys[slot[placed]] = values[pending[placed]]
            self.ids[slot[placed]] = ids[pending[placed]]
            on = np.ones(len(pending), bool)
            on[placed] = False
            pending, slot = pending[on], (slot[on] + 1) & self.mask
        self.count += len(values)


# Multipliers of the 64-bit flow-key digest (odd constants from splitmix/xxhash/murmur).
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5], np.uint64)
FLOW_KEY_WORDS = len(_MIX)


def flow_digest(words: list[np.ndarray]) -> np.ndarray:
    """A 64-bit digest of flow keys given as FLOW_KEY_WORDS uint64 columns (equal keys, equal
    digests; a collision only costs speed, see :class:`_FlowIds`)."""
    digest = words[0] * _MIX[0]
    for word, mix in zip(words[1:], _MIX[1:], strict=True):
        digest ^= word * mix
    digest ^= digest >> np.uint64(29)
    return digest


class _FlowIds:
    """Flow ids in order of first appearance, across batches: key → id.

    Keys are found through their 64-bit digest in a :class:`_HashIndex` and then compared
    whole with the stored key of the id found, so a digest collision can never merge two flows:
    the first one seen switches this numbering to an exact dict (slower, equally correct)."""

    def __init__(self) -> None:
        self.index = _HashIndex()
        self.keys = np.empty((1024, FLOW_KEY_WORDS), np.uint64)  # row = id; grows by doubling
        self.count = 0
        self.exact: dict[bytes, int] | None = None

    def ids(self, words: list[np.ndarray]) -> np.ndarray:
        """The id of each key (given as FLOW_KEY_WORDS uint64 columns)."""
        key = np.stack(words, axis=1)
        if self.exact is not None:
            return self._exact_ids(key)
        digest = flow_digest(words)
        ids = self.index.lookup(digest)
        known = ids >= 0
        stored = self.keys[ids] if known.all() else self.keys[ids[known]]
        if not np.array_equal(stored, key if known.all() else key[known]):
            return self._switch_to_exact(key)  # a new key whose digest is taken
        todo = np.flatnonzero(ids < 0)
        if not len(todo):
            return ids
        # New flows: number their distinct keys in order of first appearance.
        new_key, new_digest = key[todo], digest[todo]
        _, first, inverse = np.unique(new_digest, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if not (new_key[first[inverse]] == new_key).all():
            return self._switch_to_exact(key)  # two new keys share a digest
        order = np.argsort(first)
        numbered = np.empty(len(first), np.int64)
        numbered[order] = np.arange(self.count, self.count + len(first))
        ids[todo] = numbered[inverse]
        self._store(new_key[first[order]])
        self.index.add(new_digest[first], numbered)
        return ids

    def _store(self, keys: np.ndarray) -> None:
        need = self.count + len(keys)
        if need > len(self.keys):
            grown = np.empty((max(need, 2 * len(self.keys)), FLOW_KEY_WORDS), np.uint64)
            grown[:self.count] = self.keys[:self.count]
            self.keys = grown
        self.keys[self.count:need] = keys
        self.count = need

    def _switch_to_exact(self, key: np.ndarray) -> np.ndarray:
        stored = np.ascontiguousarray(self.keys[:self.count]).view(f"V{8 * FLOW_KEY_WORDS}")
        self.exact = {k: i for i, k in enumerate(stored.ravel().tolist())}
        return self._exact_ids(key)

    def _exact_ids(self, key: np.ndarray) -> np.ndarray:
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rows = np.ascontiguousarray(key[first[order]])
        words = rows.view(f"V{8 * FLOW_KEY_WORDS}").ravel().tolist()
        exact = self.exact
        assert exact is not None
        numbered = np.empty(len(first), np.int64)
        numbered[order] = [exact.setdefault(k, len(exact)) for k in words]
        new = numbered[order] >= self.count
        self._store(rows[new])
        return numbered[inverse.ravel()]


class _AddressTexts:
    """Distinct addresses → their text, numbered once for the whole run."""

    def __init__(self) -> None:
        self.v4 = _HashIndex()
        self.v6: dict[tuple[int, int], int] = {}
        self.texts: list[str] = []
        self._arrow = arrow_strings([])

    def v4_codes(self, values: np.ndarray) -> np.ndarray:
        codes = self.v4.lookup(values)
        missing = codes < 0
        if missing.any():
            new = np.unique(values[missing])
            ids = np.arange(len(self.texts), len(self.texts) + len(new))
            self.texts.extend(_v4_text(v) for v in new.tolist())
            self.v4.add(new, ids)
            codes[missing] = self.v4.lookup(values[missing])
        return codes

    def v6_codes(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        pairs = np.stack([hi, lo], axis=1)
        distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
        ids = []
        for pair in map(tuple, distinct.tolist()):
            if pair not in self.v6:
                self.v6[pair] = len(self.texts)
                self.texts.append(_v6_text(*pair))
            ids.append(self.v6[pair])
        return np.array(ids, np.int64)[inverse.ravel()]

    def dictionary(self) -> pa.Array:
        if len(self._arrow) < len(self.texts):  # append the new texts only
            added = arrow_strings(self.texts[len(self._arrow):])
            self._arrow = pa.concat_arrays([self._arrow, added])
        return self._arrow


class BatchDecoder:
    """Decodes captures into :class:`ColumnBatch` es; flow ids persist across batches and files.

    ``vxlan_ports``/``ifnames`` as for :func:`pktkit.capture.table.read_packets`. After a file's batches
    are consumed, ``stats[-1]`` is its :class:`ReadStats`.
    """

    def __init__(
        self, vxlan_ports: Iterable[int] = (), ifnames: Mapping[int, str] | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.decoder = Decoder(vxlan_ports)
        tunnels = self.decoder.udp_tunnels
        self._vxlan_ports = np.array(sorted(p for p, k in tunnels.items() if k == "vxlan"))
        self._other_ports = np.array(sorted(p for p, k in tunnels.items() if k != "vxlan"))
        self.ifnames = dict(ifnames or {})
        self.batch_size = batch_size
        self.stats: list[ReadStats] = []
        self.encap_names = ["none", "vxlan"]  # encap code → name; grows with fallback rows
        self._encap_codes = {name: code for code, name in enumerate(self.encap_names)}
        self._flows = _FlowIds()
        self._texts = _AddressTexts()

    def batches(self, path: str | Path) -> Iterator[ColumnBatch]:
        """The batches of one capture; raises ``CaptureError`` at once if it is not one."""
        stats, raws = raw_batches(path, self.batch_size)
        self.stats.append(stats)
        return (self.decode(raw) for raw in raws)

    def decode(self, raw: RawBatch) -> ColumnBatch:
        n = len(raw)
        f = _Frames(raw, self._vxlan_ports, self._other_ports)
        end = raw.cap_len
        clipped = raw.wire_len > raw.cap_len
        linktypes = np.unique(raw.linktype)
        if len(linktypes) == 1:
            f.link(ALL, int(linktypes[0]), end, clipped)
        else:
            for lt in linktypes:
                rows = np.flatnonzero(raw.linktype == lt)
                f.link(rows, int(lt), end[rows], clipped[rows])
        _payload_hashes(raw, f)
        fragment = np.zeros(n, bool)
        error = np.full(n, -1, np.int8)
        for i in np.flatnonzero(~f.fast).tolist():
            p = self.decoder.decode(raw.frame_bytes(i), int(raw.linktype[i]), int(raw.wire_len[i]))
            self._fill(f, i, p)
            fragment[i] = p.fragment
            error[i] = -1 if p.error is None else _ERROR_CODE[p.error]
        return self._columns(raw, f, fragment, error)

    def _fill(self, f: _Frames, i: int, p: DecodedPacket) -> None:
        """Overwrite row ``i`` with the reference decoder's result."""
        for name, value in (
            ("ifindex", p.ifindex), ("ethertype", p.ethertype), ("ip_version", p.ip_version),
            ("proto", p.proto), ("sport", p.sport), ("dport", p.dport), ("ttl", p.ttl),
            ("ip_id", p.ip_id), ("tcp_flags", p.tcp_flags), ("icmp_type", p.icmp_type),
            ("icmp_code", p.icmp_code), ("vni", p.vni), ("outer_sport", p.outer_sport),
            ("outer_dport", p.outer_dport), *((name, getattr(p, name)) for name in _MATCH_FIELDS),
        ):
            getattr(f, name)[i] = -1 if value is None else value
        f.more_fragments[i] = -1 if p.more_fragments is None else p.more_fragments
        f.pktdir[i] = -1 if p.direction is None else _DIRECTION_CODE[p.direction]
        f.overhead[i] = p.overhead_bytes
        encap = p.encap
        f.encap[i] = self._encap_codes.setdefault(encap, len(self._encap_codes))
        if f.encap[i] == len(self.encap_names):
            self.encap_names.append(encap)
        for name, text in (("outer_src", p.outer_src), ("outer_dst", p.outer_dst),
                           ("src", p.src), ("dst", p.dst)):
            fam, hi, lo = _address_numbers(text)
            arrays = f.addr[name]
            arrays[0][i], arrays[1][i], arrays[2][i] = fam, hi, lo

    def _columns(
        self, raw: RawBatch, f: _Frames, fragment: np.ndarray, error: np.ndarray
    ) -> ColumnBatch:
        n = len(raw)
        ints: dict[str, Column] = {
            "frame": (np.arange(raw.first_frame, raw.first_frame + n, dtype=np.uint32), None),
            "ts_ns": (raw.ts_ns, raw.ts_missing),
            "interface_id": (_masked(raw.interface_id, np.uint32) if raw.interface_id is not None
                             else (np.zeros(n, np.uint32), np.ones(n, bool))),
            "linktype": (raw.linktype.astype(np.uint16), None),
            "wire_len": (raw.wire_len.astype(np.uint32), None),
            "cap_len": (raw.cap_len.astype(np.uint32), None),
            "overhead_bytes": (f.overhead.astype(np.uint32), None),
            "flow_id": _masked(self._flow_ids(f), np.int64),
        }
        for name in ("ifindex", "vni", "outer_sport", "outer_dport", "ethertype", "ip_version",
                     "proto", "sport", "dport", "ttl", "ip_id", "tcp_flags", "icmp_type",
                     "icmp_code", *_MATCH_FIELDS):
            ints[name] = _masked(getattr(f, name), INT_COLUMNS[name])
        more = f.more_fragments < 0
        bools = {"fragment": (fragment, None),
                 "more_fragments": (f.more_fragments == 1, more if more.any() else None)}
        direction = f.pktdir.astype(np.int8)
        if raw.direction is not None:
            direction = np.where(direction >= 0, direction, raw.direction)
        strings = self._addresses(f)
        strings["capture"] = (np.zeros(n, np.int32), arrow_strings([raw.capture]))
        strings["interface"] = self._interfaces(raw, f)
        return ColumnBatch(
            n, ints, bools, strings,
            {"direction": direction, "encap": f.encap.astype(np.int32), "error": error},
            list(self.encap_names),
        )

    def _addresses(self, f: _Frames) -> dict[str, Strings]:
        """Codes into one dictionary of addresses shared by the four address columns."""
        out: dict[str, Strings] = {}
        for name in ADDRESS_COLUMNS:
            fam, hi, lo = f.addr[name]
            codes = np.full(len(fam), -1, np.int32)
            v4 = fam == 4
            codes[v4] = self._texts.v4_codes(lo[v4])
            v6 = fam == 6
            if v6.any():
                codes[v6] = self._texts.v6_codes(hi[v6], lo[v6])
            out[name] = (codes, self._texts.dictionary())
        return out

    def _interfaces(self, raw: RawBatch, f: _Frames) -> Strings:
        """``ifnames[ifindex]``, else the pcapng interface name, else the ifindex as text."""
        n = len(raw)
        named = raw.interface_code if raw.interface_code is not None else np.full(n, -1, np.int32)
        if (f.ifindex < 0).all() and (named < 0).all():
            return np.full(n, -1, np.int32), arrow_strings([])
        # (ifindex + 1: 33 bits) and (name code + 1: < 2**31) in one uint64 key
        keys = ((f.ifindex + 1).astype(np.uint64) << np.uint64(31)) | (
            (named + 1).astype(np.uint64))
        distinct, inverse = np.unique(keys, return_inverse=True)
        names = raw.interface_names or []
        index: dict[str, int] = {}
        mapping = np.full(len(distinct), -1, np.int32)
        for j, key in enumerate(distinct.tolist()):
            ifindex, code = (key >> 31) - 1, (key & 0x7FFFFFFF) - 1
            if ifindex >= 0 and ifindex in self.ifnames:
                text: str | None = self.ifnames[ifindex]
            elif code >= 0:
                text = names[code]
            else:
                text = None if ifindex < 0 else str(ifindex)
            if text is not None:
                mapping[j] = index.setdefault(text, len(index))
        return mapping[inverse.ravel()], arrow_strings(list(index))

    def _flow_ids(self, f: _Frames) -> np.ndarray:
        """Flow ids in order of first appearance (see :mod:`pktkit.capture.table`), -1 for none.

        The key holds what the reference key holds, as integers: both endpoints (address
        family, address, port + 1, so that 0 stands for "no port") in a fixed order, the
        innermost tunnel's VNI + 1, the encapsulation chain and the protocol + 1."""
        sf, sh, sl = f.addr["src"]
        df, dh, dl = f.addr["dst"]
        flow = np.full(len(sf), -1, np.int64)
        rows = np.flatnonzero((sf != 0) & (df != 0))
        if not len(rows):
            return flow
        if len(rows) == len(sf):  # every row: no gathers
            rows = ALL  # type: ignore[assignment]
        sh, sl, dh, dl = sh[rows], sl[rows], dh[rows], dl[rows]
        sp = (f.sport[rows] + 1).astype(np.uint64)
        dp = (f.dport[rows] + 1).astype(np.uint64)
        # both directions of a connection: sort the two endpoints (any fixed order will do)
        swap = (dh < sh) | ((dh == sh) & ((dl < sl) | ((dl == sl) & (dp < sp))))
        words = [
            np.where(swap, dh, sh), np.where(swap, dl, sl), np.where(swap, sh, dh),
            np.where(swap, sl, dl),
            # ports, and the family that keeps ::a.b.c.d apart from a.b.c.d
            (np.where(swap, dp, sp) << np.uint64(32)) | (np.where(swap, sp, dp) << np.uint64(8))
            | sf[rows].astype(np.uint64),
            (f.vni[rows] + 1).astype(np.uint64),
            (f.encap[rows].astype(np.uint64) << np.uint64(16))
            | (f.proto[rows] + 1).astype(np.uint64),
        ]
        flow[rows] = self._flows.ids(words)
        return flow


Engine = Literal["fast", "reference"]


# -- output: Arrow and Parquet without pandas, CSV through it ---------------------------------
# `pktkit packets -o x.parquet` never imports pandas (a fifth of its run time on a 1M-packet
# file); the Arrow schema carries the pandas metadata that gives the table's dtypes back.

TABLE_SUFFIXES = (".csv", ".parquet")
COLUMNS = (  # the table's columns in order (pktkit.capture.table.SCHEMA has their pandas dtypes)
    "capture", "frame", "ts_ns", "interface", "interface_id", "ifindex", "direction",
    "linktype", "wire_len", "cap_len", "encap", "vni", "outer_src", "outer_dst", "outer_sport",
    "outer_dport", "ethertype", "ip_version", "src", "dst", "proto", "sport", "dport", "ttl",
    "ip_id", "fragment", "tcp_flags", "icmp_type", "icmp_code", "ip_len", "frag_offset",
    "more_fragments", "tcp_seq", "tcp_ack", "icmp_id", "icmp_seq", "l4_payload_len",
    "payload_hash", "overhead_bytes", "flow_id", "error",
)
# Parquet: dictionary pages only where values repeat (strings, categories: the integer columns
# encode faster plainly), min/max statistics only for the columns readers filter row groups by.
_DICTIONARY_COLUMNS = [*STRING_COLUMNS, *CATEGORY_COLUMNS]
_STATISTICS_COLUMNS = ["frame", "ts_ns", "flow_id"]


def warn_if_cut(stats: ReadStats) -> None:
    if not stats.complete:
        warnings.warn(stats.describe(), CaptureCutWarning, stacklevel=3)


# Arrow arrays are built from their buffers (zero-copy), not with ``pa.array``: that one
# imports pandas on first use, to check its argument's type.


def arrow_array(values: np.ndarray, mask: np.ndarray | None, type_: pa.DataType) -> pa.Array:
    """A numpy array of ``type_``'s width (or bools) and its NA mask (True: NA) → Arrow."""
    n = len(values)
    data = np.ascontiguousarray(values)
    if pa.types.is_boolean(type_):
        data = np.packbits(data, bitorder="little")
    elif data.dtype.itemsize * 8 != type_.bit_width:
        raise TypeError(f"{data.dtype} values for an Arrow {type_} array")
    if mask is None or not mask.any():
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(data)], null_count=0)
    validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(data)],
                                 null_count=int(mask.sum()))


def arrow_strings(texts: list[str]) -> pa.Array:
    """Python strings → an Arrow large_string array."""
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def string_array(codes: np.ndarray, dictionary: pa.Array) -> pa.Array:
    """String codes → an Arrow string array (only the dictionary's strings were ever boxed)."""
    if not len(dictionary):
        return pa.nulls(len(codes), pa.large_string())
    return dictionary.take(arrow_array(codes, codes < 0, pa.int32()))


def _pandas_column(name: str) -> dict[str, object]:
    """The pandas metadata pyarrow writes for a column of pktkit.capture.table.SCHEMA's dtype."""
    if name in INT_COLUMNS:
        numpy_type = np.dtype(INT_COLUMNS[name]).name  # uint32 → pandas UInt32
        pandas_type, numpy_type = numpy_type, numpy_type[0].upper() + numpy_type[1:]
        if numpy_type.startswith("Ui"):
            numpy_type = "UI" + numpy_type[2:]
    elif name in STRING_COLUMNS:
        pandas_type, numpy_type = "object", "string"
    elif name in CATEGORY_COLUMNS:
        vocabulary = CATEGORY_COLUMNS[name]
        return {"name": name, "field_name": name, "pandas_type": "categorical",
                "numpy_type": "int8", "metadata": {
                    "num_categories": len(vocabulary or ()), "ordered": False}}
    else:  # fragment, more_fragments
        pandas_type, numpy_type = "bool", "boolean"
    return {"name": name, "field_name": name, "pandas_type": pandas_type,
            "numpy_type": numpy_type, "metadata": None}


def _arrow_type(name: str) -> pa.DataType:
    if name in INT_COLUMNS:
        return pa.from_numpy_dtype(INT_COLUMNS[name])
    if name in STRING_COLUMNS:
        return pa.large_string()
    if name in CATEGORY_COLUMNS:  # encap's open vocabulary may outgrow int8 codes
        index = pa.int32() if CATEGORY_COLUMNS[name] is None else pa.int8()
        return pa.dictionary(index, pa.large_string())
    return pa.bool_()


def arrow_schema() -> pa.Schema:
    """The table's Arrow schema, with the pandas metadata that restores its dtypes."""
    metadata = {"index_columns": [], "column_indexes": [],
                "columns": [_pandas_column(name) for name in COLUMNS], "attributes": {},
                "creator": {"library": "pyarrow", "version": pa.__version__}}
    return pa.schema([pa.field(name, _arrow_type(name)) for name in COLUMNS],
                     metadata={b"pandas": json.dumps(metadata).encode()})


def arrow_batch(batch: ColumnBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays: list[pa.Array] = []
    for field in schema:
        name = field.name
        if name in batch.ints or name in batch.bools:
            values, mask = batch.ints[name] if name in batch.ints else batch.bools[name]
            arrays.append(arrow_array(values, mask, field.type))
        elif name in batch.strings:
            arrays.append(string_array(*batch.strings[name]))
        else:
            codes = batch.categories[name]
            names = CATEGORY_COLUMNS[name] or batch.encap_names
            arrays.append(pa.DictionaryArray.from_arrays(
                arrow_array(codes, codes < 0, field.type.index_type),
                arrow_strings(list(names))))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def table_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UsageError(
            f"{path}: unknown table format {suffix or '(no suffix)'!r}; "
            "name the output file .csv or .parquet"
        )
    return suffix


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temp file beside ``path``, renamed to it when the block succeeds, removed otherwise."""
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the table ({exc.strerror}); choose a writable location"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the table ({exc.strerror}); choose a writable location"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_packets(
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    vxlan_ports: Iterable[int] = (),
    ifnames: Mapping[int, str] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> list[ReadStats]:
    """:func:`pktkit.capture.table.write_packets` (which see); pandas is imported for CSV only."""
    out = Path(out)
    suffix = table_suffix(out)
    decoder = BatchDecoder(vxlan_ports, ifnames, batch_size)

    def batches() -> Iterator[ColumnBatch]:
        for path in paths:
            yield from decoder.batches(path)
            warn_if_cut(decoder.stats[-1])

    with atomic_output(out) as tmp:
        if suffix == ".csv":
            from pktkit.capture.table import SCHEMA, batches_frame

            with open(tmp, "w", newline="") as handle:
                header = True
                for batch in batches():
                    batches_frame([batch]).to_csv(handle, header=header, index=False)
                    header = False
                if header:  # no rows at all: the header line alone, as write_table writes it
                    handle.write(",".join(SCHEMA) + "\n")
        else:
            schema = arrow_schema()
            _write_parquet(tmp, schema, (arrow_batch(batch, schema) for batch in batches()))
    return decoder.stats


def _write_parquet(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
    """Row groups of whole batches, ROW_GROUP_ROWS rows or more. Encoding and compressing run
    in a second thread (pyarrow drops the GIL there), overlapping the decoding."""
    import pyarrow.parquet as pq

    pending: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with pq.ParquetWriter(path, schema, use_dictionary=_DICTIONARY_COLUMNS,
                                  write_statistics=_STATISTICS_COLUMNS) as writer:
                group: list[pa.RecordBatch] = []
                while (batch := pending.get()) is not None or group:
                    if batch is not None:
                        group.append(batch)
                    if batch is None or sum(len(b) for b in group) >= ROW_GROUP_ROWS:
                        table = pa.Table.from_batches(group, schema)
                        writer.write_table(table, row_group_size=len(table))
                        group = []
                    if batch is None:
                        break
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
            while pending.get() is not None:  # keep the producer from blocking
                pass

    thread = threading.Thread(target=write, name="pktkit-parquet", daemon=True)
    thread.start()
    try:
        for batch in batches:
            pending.put(batch)
            if failed:
                break
    finally:
        pending.put(None)
        thread.join()
    if failed:
        raise failed[0]
