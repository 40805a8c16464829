"""Record walks: where a mapped capture's records start, found many at a time and proven exact.

Each record's offset depends on every length before it (pcap: ``next = p + 16 + cap_len``;
pcapng: ``next = p + block_length``), so a walk from the first record is a Python loop of one
iteration per packet (~0.4 µs each). :class:`ChainWalk` instead walks K chains in lock step,
one numpy gather per step for all of them, ~K times fewer Python iterations:

1. **Resync.** The byte range to cover, ``[begin, hi)``, is cut into K spans. From each cut
   the first *plausible* record start is searched, vectorized over a window of candidate
   positions: a header whose fields look like a record (the format's :class:`RecordRule`) and
   whose next two records do too. Plausible is only a guess; nothing relies on it.
2. **Lock step.** Chain j walks from its start ``s_j`` (chain 0 from ``begin``, a known record)
   until it reaches or passes ``s_{j+1}``; every step moves all the live chains at once.
   A chain stops early where the sequential walk would: a record that is cut by the end of
   the file, corrupt (longer than ``MAX_RECORD_BYTES``), or not of the walk's kind.
3. **Proof.** Chain 0 starts at a true record, so its records are true. If chain j's records
   are true and it ends *exactly* at ``s_{j+1}``, then ``s_{j+1}`` is a true record, and so by
   induction are all of chain j+1's. When chain j ends elsewhere (``s_{j+1}`` was a false
   start), its end is still a true record: if a later chain passed through that offset, the
   walk goes on from there along that chain, otherwise it stops there and the next call
   resumes from it. So the offsets returned are exactly the sequential walk's, whatever the
   bytes hold; bad guesses cost only time.

Few records to walk, or no resync found (odd files), and it walks sequentially instead.
:func:`split_points` cuts a capture into pieces at proven record boundaries (for work split
across processes).
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pktkit.capture.formats import (
    BLOCK_EPB,
    EPB_HEADER_BYTES,
    MAX_RECORD_BYTES,
    PCAP_HEADER_BYTES,
    PCAP_RECORD_HEADER_BYTES,
)

RECORDS_PER_CHAIN = 24  # average records one chain walks: fewer chains cost more steps
MAX_CHAINS = 1024
RESYNC_ROUNDS, RESYNC_WIDTH = 8, 256  # rounds per cut; bytes a round (or the average record)
PLAUSIBLE_AHEAD = 2  # a resync candidate's next records that must look plausible too
DAY_SECONDS = 86_400  # a resync candidate's timestamp is within a day of the walk's first
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_REC = PCAP_RECORD_HEADER_BYTES


def byte_words(data: np.ndarray, order: str) -> np.ndarray:
    """The 32-bit word at every byte offset of ``data`` (in the file's byte ``order``): a
    strided view, no copy; ``words[p]`` reads bytes p..p+3."""
    n = max(len(data) - 3, 0)
    return np.ndarray((n,), np.dtype(order + "u4"), buffer=data, strides=(1,)) if n else \
        np.zeros(0, np.dtype(order + "u4"))


@dataclass(frozen=True, slots=True)
class RecordRule:
    """How one format's records chain. ``step(p)`` → (next offset, whether the record at p is
    whole and of the walk's kind) for an array of offsets; ``plausible(q)`` → whether the
    header at each candidate offset (each ≤ size - ``header``) looks like a record; before
    it, ``screen`` = (byte offset, low, span) picks candidates cheaply: the header's byte at
    that offset, minus ``low``, is at most ``span`` (unsigned 8-bit)."""

    header: int  # bytes of a record header (plausible reads within them)
    screen: tuple[int, int, int]
    step: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    plausible: Callable[[np.ndarray], np.ndarray]
    sequential: Callable[[int, int], list[int]]  # (pos, limit) → offsets, one at a time


class ChainWalk:
    """Walks one mapped capture's records (see the module docstring); ``walk`` returns the
    offsets of up to ``limit`` whole records from a true record offset ``pos``."""

    def __init__(self, data: np.ndarray, words: np.ndarray, rule: RecordRule) -> None:
        self.data, self.words, self.rule, self.size = data, words, rule, len(data)
        self.average = 0.0  # bytes per record so far (sizes each call's byte range)
        self.walked = 0  # records walked so far

    def walk(self, pos: int, limit: int) -> np.ndarray:
        parts: list[np.ndarray] = [np.zeros(0, np.int64)]
        count = 0
        while count < limit:
            # (while the average record size rests on few records, walk fewer at once: a
            # byte range sized on a bad guess would touch pages far past the batch)
            step_limit = min(limit - count, max(8 * self.walked, 2 * RECORDS_PER_CHAIN))
            got, pos, broken = self._walk_once(pos, step_limit)
            self.walked += len(got)
            parts.append(got)
            count += len(got)
            if broken and count < limit:  # (a false resync: the rest one at a time)
                parts.append(np.array(self.rule.sequential(pos, limit - count), np.int64))
                break
            if not len(got) or pos < 0:
                break
        return np.concatenate(parts) if len(parts) > 2 else parts[-1]

    def _walk_once(self, pos: int, limit: int) -> tuple[np.ndarray, int, bool]:
        """Up to ``limit`` offsets from ``pos`` → (offsets, where the next call goes on or -1
        when there is nothing more to walk, whether a false resync cut the proof short)."""
        rule = self.rule
        if self.average == 0.0 or limit < 2 * RECORDS_PER_CHAIN:  # learn the record size
            first = np.array(rule.sequential(pos, min(limit, 2 * RECORDS_PER_CHAIN)), np.int64)
            if len(first) > 1:
                self.average = (int(first[-1]) - int(first[0])) / (len(first) - 1)
            if len(first) < min(limit, 2 * RECORDS_PER_CHAIN):
                return first, -1, False  # the walk stopped
            return first, int(rule.step(first[-1:])[0][0]), False
        hi = min(self.size, pos + int(limit * self.average * 1.05) + 1)
        chains = min(MAX_CHAINS, max(1, limit // RECORDS_PER_CHAIN))
        spacing = (hi - pos) // chains
        starts = self._resync(pos, spacing, chains - 1, hi) if spacing >= 4 * rule.header \
            else np.zeros(0, np.int64)
        if len(starts) < (chains - 1) // 4:  # hardly any record looks like one: one at a time
            return np.array(rule.sequential(pos, limit), np.int64), -1, False
        offsets, end, dead, broken = self._chains(np.concatenate([[pos], starts]), hi, limit)
        if len(offsets) > 1:
            self.average = (end - int(offsets[0])) / len(offsets)
        return offsets, -1 if dead else end, broken

    def _resync(self, pos: int, spacing: int, cuts: int, hi: int) -> np.ndarray:
        """The first plausible record start at or after each cut ``pos + k * spacing`` (k = 1
        .. ``cuts``), before ``hi``; ascending and distinct; cuts with none in reach are left
        out. Each round copies a window of bytes after every cut still searching (one strided
        gather), screens one byte of each offset (the rule's ``screen``), and checks the few
        offsets left whole (``plausible``, then the records after them)."""
        rule, size = self.rule, self.size
        at, low, span = rule.screen
        low_byte, span_byte = np.uint8(low), np.uint8(span)
        limit = min(hi, size - rule.header)  # candidates stay below
        found = np.full(cuts, -1, np.int64)
        todo = np.arange(cuts)
        width = int(min(max(self.average, RESYNC_WIDTH), 16 * RESYNC_WIDTH))
        for round_ in range(RESYNC_ROUNDS):
            first = pos + spacing + round_ * width  # the window of cut k starts k spacings on
            fit = min(cuts, max(0, (limit - width - first) // spacing + 1))
            todo = todo[todo < fit]
            if not len(todo):
                break
            windows = as_strided(self.data[first + at:], (fit, width), (spacing, 1))
            block = windows[todo] if len(todo) < fit else np.ascontiguousarray(windows)
            hits = np.flatnonzero(block == low_byte if span == 0 else block - low_byte <= span_byte)
            q = first + todo[hits // width] * spacing + hits % width
            hit = q[rule.plausible(q)]
            for _ in range(PLAUSIBLE_AHEAD):  # the next records must look like records too
                if not len(hit):
                    break
                nxt, whole = rule.step(hit)
                inside = whole & (nxt <= size - rule.header)
                ahead = np.zeros(len(hit), bool)
                ahead[inside] = rule.plausible(nxt[inside])
                hit = hit[ahead | (whole & (nxt == size))]  # (the file's last record: fine)
            if len(hit):
                hit = np.sort(hit)  # (windows of close cuts may overlap)
                # the first hit after each cut still searching, before the next cut
                owner = np.minimum((hit - pos) // spacing - 1, cuts - 1)  # the cut before
                first_hit = np.flatnonzero(np.diff(owner, prepend=-1) != 0)
                owner, hit = owner[first_hit], hit[first_hit]
                mine = found[owner] < 0
                found[owner[mine]] = hit[mine]
                todo = todo[found[todo] < 0]
        return found[found >= 0]  # (each within its cut's span: ascending, distinct)

    def _chains(self, starts: np.ndarray, hi: int, limit: int
                ) -> tuple[np.ndarray, int, bool, bool]:
        """Lock step from ``starts`` (``starts[0]`` a true record), then the proof → (the
        proven offsets, at most ``limit``; the true record offset where they end; whether the
        walk stops there for good; whether a false start cut the proof short)."""
        step = self.rule.step
        target = np.append(starts[1:], hi)
        cur = starts.copy()
        active = np.ones(len(starts), bool)  # chains still walking (no compaction: fewer ops)
        dead = np.zeros(len(starts), bool)  # ended at a record the walk cannot take
        at_step: list[np.ndarray] = []  # every chain's offset at each step
        taken: list[np.ndarray] = []  # whether it is a record of that chain
        while True:
            nxt, whole = step(cur)
            if not whole.all():
                dead |= active & ~whole
                active &= whole
                nxt = np.where(whole, nxt, cur)
            at_step.append(cur)
            taken.append(active)
            cur = np.where(active, nxt, cur)
            active = active & (nxt < target)
            if not active.any():
                break
        # chain by chain, step by step: ascending (chain j stays below chain j+1's start)
        took = np.stack(taken, axis=1)
        offsets = np.stack(at_step, axis=1)[took]
        end = cur  # each chain's end: the first offset at or past its target, or where it died
        # The proof: chains 0, 1, ... while each ends exactly at the next one's start.
        if ((end[:-1] == starts[1:]) & ~dead[:-1]).all():
            proven, stop_at, stopped, broken = offsets, int(end[-1]), bool(dead[-1]), False
        else:
            owner = np.repeat(np.arange(len(starts)), took.sum(axis=1))
            proven, stop_at, stopped = self._proven(offsets, owner, starts, end, dead)
            broken = not stopped
        if len(proven) > limit:
            return proven[:limit], int(proven[limit]), False, False
        return proven, stop_at, stopped, broken

    @staticmethod
    def _proven(offsets: np.ndarray, owner: np.ndarray, starts: np.ndarray, end: np.ndarray,
                dead: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """The offsets reached from ``starts[0]`` when some chain did not end at the next
        one's start: follow each true end into whichever chain walked through it → (offsets,
        the true record offset where they end, whether the walk stopped there for good)."""
        bounds = np.searchsorted(owner, np.arange(len(starts) + 1))  # chain j: [b_j, b_j+1)
        keep = np.zeros(len(offsets), bool)
        at, j = 0, 0  # a proven offset (index) and its chain
        while True:
            keep[at:bounds[j + 1]] = True
            true_end = int(end[j])
            if dead[j]:
                return offsets[keep], true_end, True
            at = int(np.searchsorted(offsets, true_end))
            if at == len(offsets) or int(offsets[at]) != true_end:
                return offsets[keep], true_end, False
            j = int(owner[at])


# -- the formats' rules ------------------------------------------------------------------------


def pcap_walk(data: np.ndarray, order: str, ticks_per_second: int, snaplen: int,
              mapped: mmap.mmap | np.ndarray) -> ChainWalk:
    """Classic pcap records: a 16-byte header (seconds, fraction, captured and original
    length) and ``cap_len`` bytes. A record is taken while it is whole in the file and its
    captured length is at most MAX_RECORD_BYTES, as :class:`~pktkit.capture.read.CaptureReader`
    takes them. Plausible: seconds within a day of the first record's, fraction below a
    second, cap_len ≤ wire_len ≤ MAX_RECORD_BYTES, cap_len ≤ the snaplen."""
    size = len(data)
    words = byte_words(data, order)
    first = size >= PCAP_HEADER_BYTES + _REC
    start_seconds = int(words[PCAP_HEADER_BYTES]) if first else 0
    earliest = max(start_seconds - DAY_SECONDS, 0)
    longest = snaplen if 0 < snaplen <= MAX_RECORD_BYTES else MAX_RECORD_BYTES

    def step(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cap = words[np.minimum(p, size - _REC) + 8]
        nxt = p + _REC + cap
        return nxt, (cap <= MAX_RECORD_BYTES) & (nxt <= size)  # (so p + 16 <= size too)

    def plausible(q: np.ndarray) -> np.ndarray:
        seconds, fraction, cap, wire = (words[q + k] for k in (0, 4, 8, 12))
        return ((seconds - np.uint32(earliest) <= np.uint32(2 * DAY_SECONDS))
                & (fraction < ticks_per_second) & (cap <= wire) & (cap <= longest)
                & (wire <= MAX_RECORD_BYTES))

    def sequential(pos: int, limit: int) -> list[int]:
        return walk_pcap_records(mapped, pos, size, limit, order)

    # screen: the most significant byte of the seconds (a day later, at most one more)
    high = 3 if order == "<" else 0
    rule = RecordRule(_REC, (high, earliest >> 24, ((earliest + 2 * DAY_SECONDS) >> 24)
                             - (earliest >> 24)), step, plausible, sequential)
    return ChainWalk(data, words, rule)


def walk_pcap_records(
    buf: mmap.mmap | np.ndarray, pos: int, have: int, limit: int, order: str
) -> list[int]:
    """Offsets of the whole records in ``buf[pos:have]``, from ``pos``, at most ``limit``,
    one at a time (a Python loop: the fallback, and the first records of a walk).
    Little-endian files read the captured length through four pre-cast ``memoryview`` s, one
    per alignment, which is cheaper than ``struct.unpack_from``."""
    out: list[int] = []
    append = out.append
    if order == "<" and _LITTLE_ENDIAN_HOST:
        raw = memoryview(buf)
        views = tuple(raw[k:k + (len(raw) - k) // 4 * 4].cast("I") for k in range(4))

        def captured(p: int) -> int:
            return views[p & 3][(p + 8) >> 2]
    else:
        u32 = struct.Struct(order + "I").unpack_from

        def captured(p: int) -> int:
            return u32(buf, p + 8)[0]
    # No "pos + _REC <= have" test per record: past it, nxt > have anyway (or the read fails).
    with contextlib.suppress(IndexError, struct.error):
        for _ in range(limit):
            cap = captured(pos)
            nxt = pos + _REC + cap
            if nxt > have or cap > MAX_RECORD_BYTES:
                break
            append(pos)
            pos = nxt
    return out


def epb_walk(data: np.ndarray, interfaces: int, mapped: mmap.mmap | np.ndarray) -> ChainWalk:
    """Little-endian pcapng Enhanced Packet Blocks: type 6, a length that is a multiple of 4,
    at least 32 and whole in the file; a run ends at the first block of another kind (which
    the caller reads its own way). Whether the vectorized path takes each block whole is for
    the caller to check. Plausible: also an interface of the section, cap_len ≤ wire_len,
    room for the data and the trailing length equal to the leading one."""
    size = len(data)
    words = byte_words(data, "<")

    def step(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = p <= size - 8
        at = np.minimum(p, size - 8)
        kind, length = words[at], words[at + 4].astype(np.int64)
        nxt = p + length
        return nxt, (inside & (kind == BLOCK_EPB) & (length >= 32) & (length & 3 == 0)
                     & (nxt <= size))

    def plausible(q: np.ndarray) -> np.ndarray:
        kind, length, interface, cap, wire = (words[q + k] for k in (0, 4, 8, 20, 24))
        length = length.astype(np.int64)
        ok = ((kind == BLOCK_EPB) & (length >= 32) & (length & 3 == 0) & (q + length <= size)
              & (interface < interfaces) & (cap <= wire) & (32 + cap <= length)
              & (length <= MAX_RECORD_BYTES))
        rows = np.flatnonzero(ok)
        ok[rows] = words[q[rows] + length[rows] - 4] == length[rows]
        return ok

    def sequential(pos: int, limit: int) -> list[int]:
        return walk_epbs(mapped, pos, size, limit)

    rule = RecordRule(EPB_HEADER_BYTES, (0, BLOCK_EPB, 0), step, plausible, sequential)  # (LE)
    return ChainWalk(data, words, rule)


def walk_epbs(buf: mmap.mmap | np.ndarray, pos: int, size: int, limit: int) -> list[int]:
    """Offsets of the whole little-endian EPBs from ``pos``, at most ``limit``, one at a time,
    up to the first block of another type."""
    positions: list[int] = []
    append = positions.append
    raw = memoryview(buf)
    views = tuple(raw[k:k + (len(raw) - k) // 4 * 4].cast("I") for k in range(4))
    with contextlib.suppress(IndexError):  # (a block header past the end: stop)
        for _ in range(limit):
            view = views[pos & 3]
            q = pos >> 2
            length = view[q + 1]
            if view[q] != BLOCK_EPB or length < 32 or length & 3 or pos + length > size:
                break
            append(pos)
            pos += length
    return positions
