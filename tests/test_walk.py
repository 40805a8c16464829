"""Record walks in lock step give exactly the offsets of the one-at-a-time walk.

The sequential walks (``walk_pcap_records``, ``walk_epbs``) follow the formats' length fields
one record at a time, as the reference reader does; every chain walk here must return the same
offsets: on every corpus and reference capture, on files cut at random bytes, and on captures
built to fool the resync (payloads that hold whole pcap records or EPBs with plausible headers,
so that resyncs land on false starts and the proof has to reject them). The chain path is
forced on small files by shrinking the chains (``RECORDS_PER_CHAIN``) and resync windows.
"""

from __future__ import annotations

import mmap
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from test_read import ng_block, ng_epb, ng_idb, ng_shb, pcap_bytes

from pktkit.capture import walk
from pktkit.capture.formats import PCAP_MAGICS, PCAPNG_SHB_MAGIC
from pktkit.capture.walk import epb_walk, pcap_walk, walk_epbs, walk_pcap_records

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))
T0 = 1_767_000_000_000_000_000


@pytest.fixture(autouse=True)
def small_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains of a few records and narrow resync windows: small files take the chain path."""
    monkeypatch.setattr(walk, "RECORDS_PER_CHAIN", 2)
    monkeypatch.setattr(walk, "RESYNC_WIDTH", 8)


def _mapped(path: Path) -> tuple[mmap.mmap, np.ndarray]:
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return mapped, np.frombuffer(mapped, np.uint8)


def _pcap_offsets(path: Path, limit: int) -> tuple[list[int], list[int]]:
    """(chain walk's offsets in calls of ``limit``, the sequential walk's)."""
    mapped, data = _mapped(path)
    order, ticks = PCAP_MAGICS[mapped[:4]]
    snaplen = struct.unpack_from(order + "I", mapped, 16)[0]
    chains = pcap_walk(data, order, ticks, snaplen, mapped)
    got: list[int] = []
    pos = 24
    while len(part := chains.walk(pos, limit)):
        got += part.tolist()
        last = got[-1]
        pos = last + 16 + struct.unpack_from(order + "I", mapped, last + 8)[0]
    return got, walk_pcap_records(mapped, 24, len(mapped), len(mapped), order)


def _epb_runs(path: Path, limit: int) -> tuple[list[int], list[int]]:
    """Every block of a little-endian pcapng file, followed one at a time; each run of EPBs
    walked both ways from its first block → (chain walks' offsets, sequential offsets)."""
    mapped, data = _mapped(path)
    pos, interfaces, got, expected = 0, 0, [], []
    while pos + 12 <= len(mapped):
        kind, length = struct.unpack_from("<II", mapped, pos)
        if length < 12 or length % 4 or pos + length > len(mapped):
            break
        if mapped[pos:pos + 4] == PCAPNG_SHB_MAGIC:
            interfaces = 0
        elif kind == 1:
            interfaces += 1
        elif kind == 6 and interfaces:
            run = walk_epbs(mapped, pos, len(mapped), len(mapped))
            chains = epb_walk(data, interfaces, mapped)
            at = pos
            while len(part := chains.walk(at, limit)):
                got += part.tolist()
                at = got[-1] + struct.unpack_from("<I", mapped, got[-1] + 4)[0]
                if at == run[-1] + struct.unpack_from("<I", mapped, run[-1] + 4)[0]:
                    break
            expected += run
            pos = run[-1]
            length = struct.unpack_from("<I", mapped, pos + 4)[0]
        pos += length
    return got, expected


def _captures() -> list[Path]:
    found = sorted(CORPUS.rglob("*.pcap*")) + sorted((REPO / "captures").rglob("*.pcap*"))
    return [p for p in found if not p.name.endswith(".gz")]


def test_corpus_and_reference_captures_walk_exactly(corpus_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    files = _captures()
    assert len(files) > 30
    walked_ng = 0
    lock_steps = []
    chains = walk.ChainWalk._chains

    def spy(self: walk.ChainWalk, *args: object) -> object:
        lock_steps.append(1)
        return chains(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(walk.ChainWalk, "_chains", spy)
    for path in files:
        magic = path.read_bytes()[:4]
        for limit in (5, 64, 1 << 20):
            if magic in PCAP_MAGICS:
                got, expected = _pcap_offsets(path, limit)
            elif magic == PCAPNG_SHB_MAGIC and path.read_bytes()[8:12] == b"\x4d\x3c\x2b\x1a":
                got, expected = _epb_runs(path, limit)
                walked_ng += bool(expected)
            else:
                continue
            assert got == expected, f"{path.name}, limit {limit}"
    assert walked_ng >= 3
    assert len(lock_steps) > 200  # (the chain path ran, not only the sequential walk)


def _records(rng: random.Random, count: int, fake_every: int) -> list[tuple[int, bytes]]:
    """Frames of random bytes and sizes; every ``fake_every``-th one's payload holds whole
    pcap records with plausible headers (what a resync may land on)."""
    frames = []
    for i in range(count):
        data = bytearray(rng.randbytes(rng.choice((0, 14, 60, 90, 400, 1514))))
        if fake_every and i % fake_every == 0:
            fakes = pcap_bytes([(T0 + j, rng.randbytes(rng.randrange(20, 80)))
                                for j in range(rng.randrange(3, 9))])[24:]
            data[rng.randrange(0, 16):] = fakes
        frames.append((T0 + i * 1000, bytes(data)))
    return frames


@pytest.mark.parametrize("fake_every", [0, 1, 7])
def test_random_pcaps_cut_anywhere_walk_exactly(tmp_path: Path, fake_every: int) -> None:
    rng = random.Random(fake_every)
    whole = pcap_bytes(_records(rng, 600, fake_every))
    path = tmp_path / "x.pcap"
    for cut in [len(whole), *(rng.randrange(24, len(whole)) for _ in range(12))]:
        path.write_bytes(whole[:cut])
        for limit in (3, 50, 4096):
            got, expected = _pcap_offsets(path, limit)
            assert got == expected, f"cut {cut}, limit {limit}"


def test_false_resyncs_are_rejected_by_the_proof(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Payloads full of plausible records: resyncs land on false starts, and the walk still
    returns exactly the true records (the proof breaks where a chain misses the next start)."""
    rng = random.Random(5)
    path = tmp_path / "fake.pcap"
    path.write_bytes(pcap_bytes(_records(rng, 800, 1)))
    broken = []
    proven = walk.ChainWalk._proven

    def spy(*args: object) -> tuple[np.ndarray, int, bool]:
        result = proven(*args)  # type: ignore[arg-type]
        broken.append(not result[2])
        return result

    monkeypatch.setattr(walk.ChainWalk, "_proven", staticmethod(spy))
    got, expected = _pcap_offsets(path, 400)
    assert got == expected
    assert any(broken)


def test_corrupt_and_cut_records_stop_the_walk_as_the_reader_stops(tmp_path: Path) -> None:
    rng = random.Random(3)
    whole = bytearray(pcap_bytes(_records(rng, 300, 0)))
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(whole)
    _, expected = _pcap_offsets(path, 1 << 20)
    at = expected[200]
    whole[at + 8:at + 12] = struct.pack("<I", walk.MAX_RECORD_BYTES + 1)  # corrupt length
    path.write_bytes(whole)
    got, expected = _pcap_offsets(path, 16)
    assert got == expected and len(got) == 200


def test_pcapng_epb_runs_with_fake_blocks_and_other_blocks(tmp_path: Path) -> None:
    """EPB runs broken by interface blocks and a second section; payloads holding EPBs."""
    rng = random.Random(9)
    blocks = [ng_shb(), ng_idb(), ng_idb(linktype=113)]
    for i in range(700):
        data = bytearray(rng.randbytes(rng.choice((14, 60, 200, 1500))))
        if i % 3 == 0:
            fake = ng_epb(0, T0 // 1000 + i, rng.randbytes(40)) * 3
            data[rng.randrange(0, 12):] = fake
        blocks.append(ng_epb(i % 2, T0 // 1000 + i, bytes(data)))
        if i in (250, 400):
            blocks.append(ng_idb())
        if i == 500:
            blocks += [ng_shb(), ng_idb()]
        if i == 600:
            blocks.append(ng_block(0x99, b"unknown"))
    path = tmp_path / "x.pcapng"
    path.write_bytes(b"".join(blocks))
    for limit in (4, 100, 1 << 20):
        got, expected = _epb_runs(path, limit)
        assert got == expected and len(expected) == 700
