"""Captures decoded in parallel into a packet dataset: one task per capture, or per chunk.

A capture larger than ``chunk_bytes`` (uncompressed pcap or pcapng on a file) is cut into
chunks at proven record boundaries (:func:`pktkit.capture.chunks.split`, itself a task: it
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

Progress = Callable[[int, int], None]  # (tasks done, tasks in all)


def chunk_count(path: Path, chunk_bytes: int) -> int:
    """How many chunks to cut ``path`` into: 1 for a small file, a compressed one or a pipe
    (only an uncompressed pcap or pcapng on a file can be cut)."""
    try:
        if not path.is_file() or (size := path.stat().st_size) <= chunk_bytes:
            return 1
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return 1  # (the decoding task names the problem)
    if magic not in PCAP_MAGICS and magic != PCAPNG_SHB_MAGIC:
        return 1
    return -(-size // chunk_bytes)


def write_dataset(client: Client, captures: Sequence[DatasetCapture],
                  out: str | os.PathLike[str], ports: TunnelPorts, *,
                  chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None
                  ) -> list[ReadStats]:
    """Decode ``captures`` on the cluster into a dataset at ``out`` (see the module
    docstring); returns each capture's :class:`ReadStats` (the caller warns of cut ones).
    Staged beside ``out``: stopped early, the tasks still running on a cluster that goes on
    (``--scheduler``) fail for want of the folder; close a local cluster before the staging
    goes, as the CLI does with :func:`decode_into`."""
    with staged_dataset(out) as folder:
        return decode_into(client, captures, folder, ports, chunk_bytes=chunk_bytes,
                           progress=progress)


def decode_into(client: Client, captures: Sequence[DatasetCapture], folder: Path,
                ports: TunnelPorts, *, chunk_bytes: int = CHUNK_BYTES,
                progress: Progress | None = None) -> list[ReadStats]:
    """:func:`write_dataset` into a staged dataset ``folder``
    (:func:`~pktkit.capture.dataset.staged_dataset`), manifest included."""
    run = secrets.token_hex(4)
    where = str(folder)
    pieces = {i: chunk_count(c.path, chunk_bytes) for i, c in enumerate(captures)}
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
