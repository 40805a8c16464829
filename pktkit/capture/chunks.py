"""A capture cut into pieces at proven record boundaries, for work split across processes.

:func:`split` walks a whole uncompressed capture with :mod:`~pktkit.capture.walk` (chains in
lock step, every offset proven from the file's first record, so a cut never lands inside a
packet whatever the packets hold) and cuts it near equal byte shares. Each :class:`Chunk` says
where its records start and end and the frame number of its first one; a pcapng chunk also
lists the blocks a reader needs first (every section header and interface description before
it: interface numbers continue across sections). The walk stops where
:class:`~pktkit.capture.read.CaptureReader` stops (a cut or corrupt record), so the chunks cover
exactly the frames the reader yields.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pktkit.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SPB,
    BYTE_ORDER_MAGICS,
    MAX_RECORD_BYTES,
    PCAP_HEADER_BYTES,
    PCAP_MAGICS,
    PCAPNG_SHB_MAGIC,
)
from pktkit.capture.read import CaptureReader, PcapngInterface, RecordCut
from pktkit.capture.walk import byte_words, epb_walk, pcap_walk
from pktkit.errors import CaptureError

WALK_LIMIT = 1 << 18  # records per walk call: bounds the offsets held at once


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records ``[start, end)`` of a capture; ``first_frame``: the frame number (1-based) of
    the first; ``preamble``: (offset, length) of the pcapng blocks to read before it."""

    start: int
    end: int
    first_frame: int
    preamble: tuple[tuple[int, int], ...] = ()


def split(path: str | os.PathLike[str], pieces: int) -> list[Chunk]:
    """``path`` (uncompressed pcap or pcapng) in at most ``pieces`` chunks of about equal bytes,
    each starting at a record (pcapng: a block); chunks without records are left out."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CaptureError(f"{path}: empty file; pass a pcap/pcapng capture")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        data = np.frombuffer(mapped, np.uint8)
        targets = [size * k // max(pieces, 1) for k in range(1, max(pieces, 1))]
        if mapped[:4] in PCAP_MAGICS:
            return _pcap_chunks(mapped, data, targets)
        if mapped[:4] == PCAPNG_SHB_MAGIC:
            return _pcapng_chunks(path, mapped, data, targets)
        raise CaptureError(f"{Path(path).name}: not an uncompressed pcap or pcapng capture; "
                           "decompress it first")
    finally:
        del data
        # the walk's views may outlive this call (a sampling profiler holding the frame, as
        # Dask's workers run one: seen as a BufferError in a worker now and then); the
        # mapping then closes when the last of them goes, as batches.py does
        with contextlib.suppress(BufferError):
            mapped.close()


class _Cuts:
    """Collects, walk by walk, the first record at or after each target offset."""

    def __init__(self, targets: list[int]) -> None:
        self.targets, self.found = targets, []  # (offset, frame number)
        self.frames = 0  # records walked so far

    def walked(self, offsets: np.ndarray, preamble: tuple[tuple[int, int], ...]) -> None:
        while self.targets and len(offsets) and offsets[-1] >= self.targets[0]:
            at = int(np.searchsorted(offsets, self.targets.pop(0)))
            self.found.append((int(offsets[at]), self.frames + at + 1, preamble))
        self.frames += len(offsets)

    def chunks(self, first: int, end: int, preamble: tuple = ()) -> list[Chunk]:
        starts = [(first, 1, preamble), *self.found]
        chunks = []
        for (start, frame, pre), (stop, after, _) in zip(
                starts, [*starts[1:], (end, self.frames + 1, ())], strict=True):
            if after > frame:
                chunks.append(Chunk(start, stop, frame, pre))
            elif chunks:  # (blocks without packets: the chunk before reads them)
                chunks[-1] = Chunk(chunks[-1].start, stop, chunks[-1].first_frame,
                                   chunks[-1].preamble)
            # (before the first packet: in the next chunk's preamble)
        return chunks


def _pcap_chunks(mapped: mmap.mmap, data: np.ndarray, targets: list[int]) -> list[Chunk]:
    order, ticks = PCAP_MAGICS[mapped[:4]]
    if len(mapped) < PCAP_HEADER_BYTES:
        return []
    snaplen = struct.unpack_from(order + "I", mapped, 16)[0]
    walk = pcap_walk(data, order, ticks, snaplen, mapped)
    cuts = _Cuts(targets)
    pos = PCAP_HEADER_BYTES
    while len(offsets := walk.walk(pos, WALK_LIMIT)):
        cuts.walked(offsets, ())
        last = int(offsets[-1])
        pos = last + 16 + struct.unpack_from(order + "I", mapped, last + 8)[0]
    return cuts.chunks(PCAP_HEADER_BYTES, pos)


def _pcapng_chunks(path: str | os.PathLike[str], mapped: mmap.mmap, data: np.ndarray,
                   targets: list[int]) -> list[Chunk]:
    """Blocks one at a time through the reader's own parsers (their rules stop the walk where
    the reader stops), runs of little-endian EPBs by the chain walk, checked as the parsers
    check them (trailing length, a described interface, room for the data)."""
    size, pos, order = len(mapped), 0, "<"
    preamble: list[tuple[int, int]] = []  # SHBs and IDBs so far
    interfaces: list[PcapngInterface] = []  # of the current section
    section_base = 0
    cuts = _Cuts(targets)
    walk = None
    words = byte_words(data, "<")
    reader = CaptureReader(path)
    reader.close()  # (only its parsers are used)
    while pos + 12 <= size:
        if mapped[pos:pos + 4] == PCAPNG_SHB_MAGIC:
            order = BYTE_ORDER_MAGICS.get(mapped[pos + 8:pos + 12], "")
            if not order:
                break
        kind, length = struct.unpack_from(order + "II", mapped, pos)
        if (length < 12 or length % 4 or length > MAX_RECORD_BYTES or pos + length > size
                or struct.unpack_from(order + "I", mapped, pos + length - 4)[0] != length):
            break  # (a cut or corrupt block: the reader stops here too)
        if order == "<" and kind == BLOCK_EPB and interfaces:
            walk = walk or epb_walk(data, len(interfaces), mapped)
            run = walk.walk(pos, WALK_LIMIT)
            length_of = words[run + 4].astype(np.int64)
            ok = ((words[run + length_of - 4] == length_of) & (words[run + 8] < len(interfaces))
                  & (words[run + 20].astype(np.int64) + 32 <= length_of))
            take = int(np.argmin(ok)) if not ok.all() else len(run)
            if take > 1:  # (the run's last block goes the ordinary way below)
                cuts.walked(run[:take - 1], tuple(preamble))
                pos = int(run[take - 1])
                length = int(length_of[take - 1])
        body = mapped[pos + 8:pos + length - 4]
        try:
            if mapped[pos:pos + 4] == PCAPNG_SHB_MAGIC:
                section_base += len(interfaces)
                interfaces, walk = [], None
                preamble.append((pos, length))
            elif kind == BLOCK_IDB:
                interfaces.append(reader.parse_interface(body, order,
                                                         section_base + len(interfaces)))
                walk = None
                preamble.append((pos, length))
            elif kind in (BLOCK_EPB, BLOCK_SPB, BLOCK_OPB):
                reader.parse_packet(kind, body, order, interfaces, pos, cuts.frames + 1)
                cuts.walked(np.array([pos], np.int64), tuple(preamble))
        except RecordCut:
            break
        pos += length
    first = preamble[0][0] + preamble[0][1] if preamble else 0
    return cuts.chunks(first, pos, tuple(preamble[:1]))
