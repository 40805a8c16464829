"""Captures cut into chunks at record boundaries: each chunk, read alone after its preamble,
gives exactly the reference reader's frames from its first frame number on, and together the
chunks give every frame the reader gives (whole files, files cut at random bytes)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pktkit.capture import walk
from pktkit.capture.chunks import Chunk, split
from pktkit.capture.formats import PCAP_MAGICS, PCAPNG_SHB_MAGIC
from pktkit.capture.read import CaptureReader, RawFrame
from pktkit.errors import CaptureError

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(autouse=True)
def small_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chains: small files take the chain walk, not only the sequential one."""
    monkeypatch.setattr(walk, "RECORDS_PER_CHAIN", 2)
    monkeypatch.setattr(walk, "RESYNC_WIDTH", 8)


def _frames(path: Path) -> list[tuple[object, ...]]:
    reader = CaptureReader(path)
    return [_key(f) for f in reader]


def _key(f: RawFrame) -> tuple[object, ...]:
    return (f.frame, f.ts_ns, f.interface, f.interface_id, f.linktype, f.wire_len, f.data)


def _chunk_file(whole: bytes, chunk: Chunk, tmp: Path) -> Path:
    """The chunk as a capture of its own: the pcap file header, or the pcapng preamble."""
    head = whole[:24] if whole[:4] in PCAP_MAGICS else b"".join(
        whole[at:at + length] for at, length in chunk.preamble)
    tmp.write_bytes(head + whole[chunk.start:chunk.end])
    return tmp


def assert_chunks_read_as_the_whole(path: Path, tmp_path: Path, pieces: int) -> int:
    whole = path.read_bytes()
    expected = _frames(path)
    chunks = split(path, pieces)
    assert len(chunks) <= pieces
    got: list[tuple[object, ...]] = []
    for i, chunk in enumerate(chunks):
        if i:
            assert chunk.start == chunks[i - 1].end
        frames = _frames(_chunk_file(whole, chunk, tmp_path / "chunk"))
        assert frames, f"{path.name}: chunk {i} holds no frame"
        # numbered from the chunk's first frame, the frames are the reference's
        got += [(chunk.first_frame + k[0] - 1, *k[1:]) for k in frames]
    assert got == expected, f"{path.name} in {pieces}"
    return len(chunks)


def _captures() -> list[Path]:
    found = sorted(CORPUS.rglob("*.pcap*")) + sorted((REPO / "captures").rglob("*.pcap*"))
    return [p for p in found if p.read_bytes()[:4] in (*PCAP_MAGICS, PCAPNG_SHB_MAGIC)]


def test_every_corpus_and_reference_capture_splits_exactly(corpus_dir: Path,
                                                           tmp_path: Path) -> None:
    files = _captures()
    assert len(files) > 30
    several = 0
    for path in files:
        for pieces in (1, 3, 8):
            several += assert_chunks_read_as_the_whole(path, tmp_path, pieces) > 1
    assert several > 40


def test_cut_files_split_where_the_reader_stops(corpus_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(14)
    sources = [p for p in _captures() if p.stat().st_size > 4000][:12]
    assert any(p.read_bytes()[:4] == PCAPNG_SHB_MAGIC for p in sources)
    for path in sources:
        whole = path.read_bytes()
        for _ in range(3):
            cut = tmp_path / f"cut{path.suffix}"
            cut.write_bytes(whole[:rng.randrange(len(whole) // 3, len(whole))])
            assert_chunks_read_as_the_whole(cut, tmp_path, 4)


def test_not_a_capture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"hello, world, this is no capture")
    with pytest.raises(CaptureError):
        split(path, 2)


def test_pcap_chunks_read_in_place_as_the_whole(corpus_dir: Path, tmp_path: Path) -> None:
    """A pcap chunk read in place (``raw_batches``' span of the mapped file, as the dataset's
    decoding tasks read it), frames numbered from its first: the reference reader's frames;
    the last chunk of a cut file stops where the reader stops, with its stats."""
    from pktkit.capture.batches import raw_batches

    rng = random.Random(13)
    files = [p for p in _captures() if p.read_bytes()[:4] in PCAP_MAGICS]
    cut = tmp_path / "cut.pcap"
    whole = files[-1].read_bytes()
    cut.write_bytes(whole[:rng.randrange(len(whole) // 2, len(whole))])
    several = 0
    for path in [*files, cut]:
        reference = CaptureReader(path)
        expected = [(f.frame, f.ts_ns, f.wire_len, f.data) for f in reference]
        chunks = split(path, 5)
        several += len(chunks) > 1
        got: list[tuple[object, ...]] = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            stats, raws = raw_batches(path, 7, (chunk.start, None if last else chunk.end))
            for raw in raws:
                got += [(chunk.first_frame + raw.first_frame - 1 + k, int(raw.ts_ns[k]),
                         int(raw.wire_len[k]), raw.frame_bytes(k)) for k in range(len(raw))]
            if last:
                assert (stats.bytes_read, stats.stopped_at, stats.reason) == (
                    reference.stats.bytes_read, reference.stats.stopped_at,
                    reference.stats.reason), path.name
            else:
                assert stats.complete and stats.bytes_read == chunk.end
        assert got == expected, path.name
    assert several > 10
