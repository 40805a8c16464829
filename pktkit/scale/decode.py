"""Captures decoded in parallel into a packet dataset: one task per capture, or per chunk.

A capture larger than ``chunk_bytes`` (uncompressed pcap or pcapng on a file), or one of
fewer captures than workers, is cut into chunks (:func:`chunk_counts`) at proven record
boundaries (:func:`pktkit.capture.chunks.split`, itself a task: it
walks the whole file); every capture or chunk is then one task that decodes it and writes its
part of the dataset (:func:`pktkit.capture.dataset.decode_part`) on the worker. The client
gets back only each part's frame count, stats and flow keys (bounded by its flows, not its
frames). Each part numbered its flows alone: the client numbers the keys as one table would
(first appearance, in the captures' order) and the parts whose numbering differs are rewritten
by tasks again (:func:`~pktkit.capture.dataset.renumber_flows`). The dataset is staged beside
its target and renamed into place at the end (:func:`~pktkit.capture.dataset.staged_dataset`):
its rows are those of ``--workers 1`` (:func:`~pktkit.capture.dataset.write_dataset`).

A task whose worker dies (killed, out of memory) is run again by Dask on another worker; a part
is written under a temporary name and renamed whole, so a rerun replaces nothing half-written.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pktkit.capture.autoports import TunnelPorts
from pktkit.capture.chunks import Chunk, split
from pktkit.capture.dataset import (
    DatasetCapture,
    PartResult,
    decode_part,
    global_flow_ids,
    merged_stats,
    renumber_flows,
    staged_dataset,
    write_manifest,
)
from pktkit.capture.formats import PCAP_MAGICS, PCAPNG_SHB_MAGIC
from pktkit.capture.read import ReadStats

if TYPE_CHECKING:
    from distributed import Client, Future

CHUNK_BYTES = 256 << 20  # a capture larger than this is decoded in chunks of about this size
MIN_CHUNK_BYTES = 16 << 20  # no smaller chunks (each costs a task and a walk of its file)

Progress = Callable[[int, int], None]  # (tasks done, tasks in all)


def chunk_counts(paths: Sequence[Path], workers: int, chunk_bytes: int = CHUNK_BYTES,
                 min_chunk_bytes: int = MIN_CHUNK_BYTES) -> list[int]:
    """How many chunks to cut each capture into: at most ``chunk_bytes`` each, and, while
    there are fewer captures than workers, a share of the workers by bytes (a single large
    capture keeps every worker busy), never chunks below ``min_chunk_bytes``. 1 for a
    compressed file, a pipe or anything else that cannot be cut (only an uncompressed pcap or
    pcapng on a file can)."""
    sizes = [_cuttable_size(path) for path in paths]
    total = sum(sizes) or 1
    counts = []
    for size in sizes:
        share = -(-workers * size // total) if len(paths) < workers else 1
        counts.append(max(1, min(max(-(-size // chunk_bytes), share),
                                 max(1, size // min_chunk_bytes))))
    return counts


def _cuttable_size(path: Path) -> int:
    """The size of an uncompressed pcap or pcapng file, else 0."""
    try:
        if not path.is_file():
            return 0
        with open(path, "rb") as f:
            magic = f.read(4)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return 0  # (the decoding task names the problem)
    return size if magic in PCAP_MAGICS or magic == PCAPNG_SHB_MAGIC else 0


def write_dataset(client: Client, captures: Sequence[DatasetCapture],
                  out: str | os.PathLike[str], ports: TunnelPorts, *,
                  chunk_bytes: int = CHUNK_BYTES, min_chunk_bytes: int = MIN_CHUNK_BYTES,
                  progress: Progress | None = None) -> list[ReadStats]:
    """Decode ``captures`` on the cluster into a dataset at ``out`` (see the module
    docstring); returns each capture's :class:`ReadStats` (the caller warns of cut ones).
    Staged beside ``out``: stopped early, the tasks still running on a cluster that goes on
    (``--scheduler``) fail for want of the folder; close a local cluster before the staging
    goes, as the CLI does with :func:`decode_into`."""
    with staged_dataset(out) as folder:
        return decode_into(client, captures, folder, ports, chunk_bytes=chunk_bytes,
                           min_chunk_bytes=min_chunk_bytes, progress=progress)


def decode_into(client: Client, captures: Sequence[DatasetCapture], folder: Path,
                ports: TunnelPorts, *, chunk_bytes: int = CHUNK_BYTES,
                min_chunk_bytes: int = MIN_CHUNK_BYTES,
                progress: Progress | None = None) -> list[ReadStats]:
    """:func:`write_dataset` into a staged dataset ``folder``
    (:func:`~pktkit.capture.dataset.staged_dataset`), manifest included."""
    run = secrets.token_hex(4)
    where = str(folder)
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {})) or 1
    pieces = dict(enumerate(chunk_counts([c.path for c in captures], workers, chunk_bytes,
                                         min_chunk_bytes)))
    cuts = {i: client.submit(split, str(captures[i].path), n, key=f"pktkit-split-{run}-{i}")
            for i, n in pieces.items() if n > 1}
    chunks: dict[int, list[Chunk | None]] = {i: [None] for i in pieces}
    chunks.update({i: list(found) or [None]
                   for i, found in zip(cuts, client.gather(list(cuts.values())), strict=True)})
    tasks: list[Future] = []
    owner: list[int] = []
    for i, capture in enumerate(captures):
        for k, chunk in enumerate(chunks[i]):
            tasks.append(client.submit(
                decode_part, capture, chunk, k, where, ports,
                last=k == len(chunks[i]) - 1, key=f"pktkit-decode-{run}-{i}-{k}"))
            owner.append(i)
    results: list[PartResult] = _gather(client, tasks, progress)
    mappings = global_flow_ids([r.flow_keys for r in results])
    rewrites = [client.submit(renumber_flows, where, r.part, m, key=f"pktkit-flows-{run}-{j}")
                for j, (r, m) in enumerate(zip(results, mappings, strict=True))
                if not np.array_equal(m, np.arange(len(m)))]
    client.gather(rewrites)
    parts = [[r.part for r, o in zip(results, owner, strict=True) if o == i]
             for i in range(len(captures))]
    stats = [merged_stats([r.stats for r, o in zip(results, owner, strict=True) if o == i])
             for i in range(len(captures))]
    write_manifest(folder, captures, parts, stats, ports)
    return stats


def _gather(client: Client, tasks: list[Future], progress: Progress | None) -> list:
    """The tasks' results in order, ``progress`` called as each completes; a failed task's
    exception is raised here (a PktkitError keeps its one-line message)."""
    from distributed import as_completed

    for done, future in enumerate(as_completed(tasks), 1):
        if future.status == "error":
            future.result()  # raises the task's exception
        if progress:
            progress(done, len(tasks))
    return client.gather(tasks)
