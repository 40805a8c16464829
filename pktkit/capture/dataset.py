"""The packet table as a dataset: hive-partitioned Parquet, a folder per node and capture.

``pktkit packets CAPTURE... -o DIR/`` writes, atomically (a staged folder renamed into place)::

    DIR/_pktkit_dataset.json                          the manifest (below)
    DIR/node=NODE/capture=CAPTURE/part-00000.parquet  one part per capture, or per chunk
    DIR/node=NODE/capture=CAPTURE/part-00001.parquet  of a large one, in frame order

``NODE`` and ``CAPTURE`` are percent-encoded (pyarrow's "uri" segment encoding, which pandas,
pyarrow and dask decode): a capture label holding ``/`` stays one folder. Part numbers are
zero-padded so that a reader listing the files in name order reads the frames in order.

The part files hold every column of the packet table (:mod:`~pktkit.capture.schema`, same types
and Parquet encodings as ``packets -o x.parquet``) except ``capture``, which the partition
holds, as ``node`` does. What a reader gets (``pd.read_parquet(DIR)``,
``dask.dataframe.read_parquet(DIR)``): the table's columns in its order, their pandas dtypes,
then ``node`` and ``capture`` last, as **categoricals** (hive partition columns); rows in
node, capture and frame order (folders in name order). ``flow_id`` is numbered across the
whole dataset, in order of first appearance in the captures' order, as in one table.
:func:`read_capture` gives one capture's rows back with the packet table's exact dtypes.

The manifest: ``{"pktkit_dataset": 1, "partitioning": ["node", "capture"], "captures":
[{"node", "capture", "source", "parts", "frames", "read_stats"}], "tunnel_ports"}``: the
captures in the order they were given (the table's order; ``source`` the path read, ``parts``
relative paths, ``read_stats`` as ``ReadStats``), and the VXLAN/Geneve ports ``--vxlan-port
auto`` found (null otherwise). Files starting with ``_`` or ``.`` are skipped by the readers.

:func:`write_dataset` decodes the captures one after the other in this process (flow ids
continue across them); :func:`decode_part` decodes one capture or chunk alone (a task of
:mod:`pktkit.scale`) and returns its flow keys, so that :func:`global_flow_ids` and
:func:`renumber_flows` make the parts' numbering the one table's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from pktkit.capture.arrow import arrow_schema, arrow_strings
from pktkit.capture.autoports import TunnelPorts
from pktkit.capture.batches import DEFAULT_BATCH
from pktkit.capture.chunks import Chunk
from pktkit.capture.columns import BatchDecoder, ColumnBatch
from pktkit.capture.flows import FLOW_KEY_WORDS, FlowIds
from pktkit.capture.formats import PCAP_MAGICS
from pktkit.capture.output import parquet_writer, write_parquet_batches
from pktkit.capture.read import ReadStats
from pktkit.errors import CaptureError, UsageError
from pktkit.files import PARTIAL_SUFFIX, StagingFolder, write_json

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "_pktkit_dataset.json"
PARTITIONING = ("node", "capture")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetCapture:
    """One capture to write: where it is read, its node and ``capture`` label, the names of
    its SLL2 interface indexes, and its one interface (a per-interface capture), if known."""

    path: Path
    node: str
    label: str
    interfaces: dict[int, str] = field(default_factory=dict)
    interface: str | None = None

    def folder(self) -> str:
        """The partition folder, relative to the dataset."""
        return f"node={quote(self.node, safe='')}/capture={quote(self.label, safe='')}"

    def part(self, index: int) -> str:
        return f"{self.folder()}/part-{index:05d}.parquet"


@dataclass
class PartResult:
    """What decoding one part returns (small: no rows): its file, frames, the flow keys in
    its own numbering (row = local flow id) and its reader's stats."""

    part: str
    frames: int
    flow_keys: np.ndarray
    stats: ReadStats


def is_dataset_output(text: str | os.PathLike[str]) -> bool:
    """Whether ``-o`` names a dataset: a path ending in ``/`` or an existing folder."""
    return str(text).endswith(("/", os.sep)) or Path(text).is_dir()


def is_dataset(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST).is_file()


def part_schema() -> pa.Schema:
    """The part files' schema: the table's without the partition columns (pandas metadata
    included, so that each column reads back in the table's dtype)."""
    schema = arrow_schema()
    meta = json.loads(schema.metadata[b"pandas"])
    meta["columns"] = [c for c in meta["columns"] if c["name"] not in PARTITIONING]
    kept = pa.schema([f for f in schema if f.name not in PARTITIONING])
    return kept.with_metadata({b"pandas": json.dumps(meta).encode()})


# -- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_dataset(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A staging folder for a dataset at ``out`` (new, empty, or a dataset: replaced whole);
    moved into place when the block succeeds, removed otherwise. Leftover partial files of a
    task that died are removed before publishing."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not is_dataset(out):
        raise UsageError(f"{out}: a folder that is neither empty nor a pktkit dataset; give a "
                         "new or empty folder for the dataset")
    old = [p for p in out.iterdir() if p.name.startswith("node=")] if out.is_dir() else []
    with StagingFolder(out) as tmp:
        yield tmp
        for leftover in tmp.rglob(f".*{PARTIAL_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        new = {p.name for p in tmp.iterdir()}
    for folder in old:  # a previous dataset's nodes that this one does not have
        if folder.name not in new:
            shutil.rmtree(folder, ignore_errors=True)


def write_manifest(folder: Path, captures: Sequence[DatasetCapture],
                   parts: Sequence[Sequence[str]], stats: Sequence[ReadStats],
                   ports: TunnelPorts) -> None:
    """The manifest of a dataset staged in ``folder`` (the captures in the table's order)."""
    write_json(folder / MANIFEST, {
        "pktkit_dataset": FORMAT_VERSION, "partitioning": list(PARTITIONING),
        "captures": [{"node": c.node, "capture": c.label, "source": str(c.path),
                      "parts": list(p), "frames": s.frames, "read_stats": asdict(s)}
                     for c, p, s in zip(captures, parts, stats, strict=True)],
        "tunnel_ports": ports.attrs() if ports.found is not None else None,
    }, "the dataset manifest", indent=1)


def write_dataset(captures: Sequence[DatasetCapture], out: str | os.PathLike[str],
                  ports: TunnelPorts, *, batch_size: int = DEFAULT_BATCH) -> list[ReadStats]:
    """Decode ``captures`` one after the other into a dataset at ``out`` (one part each);
    returns each capture's :class:`ReadStats` (a cut capture does not warn here: the caller
    does, with :func:`~pktkit.capture.read.warn_if_cut`)."""
    decoder = BatchDecoder(ports.vxlan, None, batch_size, geneve_ports=ports.geneve)
    schema = part_schema()
    with staged_dataset(out) as tmp:
        for capture in captures:
            target = tmp / capture.part(0)
            target.parent.mkdir(parents=True, exist_ok=True)
            batches = decoder.batches(capture.path, capture.interfaces or None)
            _write_part(target, schema, (_placed(b, capture, 0) for b in batches))
        write_manifest(tmp, captures, [[c.part(0)] for c in captures], decoder.stats, ports)
    return decoder.stats


def decode_part(capture: DatasetCapture, chunk: Chunk | None, index: int,
                folder: str | os.PathLike[str], ports: TunnelPorts, *, last: bool = True,
                batch_size: int = DEFAULT_BATCH) -> PartResult:
    """Decode one capture (``chunk`` None) or one chunk of it alone into part ``index`` under
    the staged dataset ``folder``; flow ids are this part's own (see :func:`renumber_flows`).
    A pcap chunk is read in place (its records' span of the mapped file); a pcapng chunk from
    a copy of its records behind the section and interface blocks before it (in a temporary
    folder). The ``last`` chunk runs to the end of the file, so that a cut capture stops where
    the whole file's reader stops. Its frame numbers and stats are the whole capture's."""
    decoder = BatchDecoder(ports.vxlan, None, batch_size, geneve_ports=ports.geneve)
    target = Path(folder) / capture.part(index)
    # never the staged folder itself: a task still running after the run was stopped (and
    # its folder removed) fails instead of leaving a folder behind
    target.parent.parent.mkdir(exist_ok=True)
    target.parent.mkdir(exist_ok=True)
    first = chunk.first_frame - 1 if chunk is not None else 0
    with _chunk_file(capture.path, chunk, last) as (path, shift, span):
        batches = decoder.batches(path, capture.interfaces or None, span)
        _write_part(target, part_schema(), (_placed(b, capture, first) for b in batches))
        stats = decoder.stats[-1]
    stats.capture = capture.path.name
    if shift:  # offsets in the copy → offsets in the capture
        stats.bytes_read += shift
        if stats.stopped_at is not None:
            stats.stopped_at += shift
    return PartResult(capture.part(index), stats.frames, decoder.flow_keys(), stats)


def _write_part(target: Path, schema: pa.Schema, batches: Iterator[ColumnBatch]) -> None:
    from pktkit.files import atomic_path

    with atomic_path(target, "a dataset part") as tmp:
        write_parquet_batches(tmp, schema, batches)


def _placed(batch: ColumnBatch, capture: DatasetCapture, first_frame: int) -> ColumnBatch:
    """A batch's frame numbers moved on by ``first_frame`` (a chunk's) and the capture's one
    interface on rows that name none."""
    if first_frame:
        values, mask = batch.ints["frame"]
        batch.ints["frame"] = (values + np.uint32(first_frame), mask)
    if capture.interface:
        codes, names = batch.strings["interface"]
        if (codes < 0).any():
            known = names.to_pylist()
            if capture.interface not in known:
                known.append(capture.interface)
            codes = np.where(codes < 0, known.index(capture.interface), codes).astype(np.int32)
            batch.strings["interface"] = (codes, arrow_strings(known))
    return batch


@contextlib.contextmanager
def _chunk_file(path: Path, chunk: Chunk | None, last: bool
                ) -> Iterator[tuple[Path, int, tuple[int, int | None] | None]]:
    """Where to read a chunk: (file, shift, span). No chunk: the capture itself. A pcap: the
    capture, with the span of the chunk's records (to the file's end for the ``last``). A
    pcapng: a copy of the chunk's records behind the blocks of its preamble, and how far the
    records moved (copy offset + shift = capture offset; the ``last`` copy runs to the end)."""
    if chunk is None:
        yield path, 0, None
        return
    with open(path, "rb") as source:
        if os.pread(source.fileno(), 4, 0) in PCAP_MAGICS:
            yield path, 0, (chunk.start, None if last else chunk.end)
            return
        with tempfile.TemporaryDirectory(prefix="pktkit-chunk-") as folder:
            head = b"".join(os.pread(source.fileno(), length, at)
                            for at, length in chunk.preamble)
            copy = Path(folder) / path.name
            end = os.fstat(source.fileno()).st_size if last else chunk.end
            with open(copy, "wb") as target:
                target.write(head)
                at = chunk.start
                while at < end and (block := os.pread(source.fileno(),
                                                      min(1 << 23, end - at), at)):
                    target.write(block)
                    at += len(block)
            yield copy, chunk.start - len(head), None


def global_flow_ids(keys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each part's local flow id → the id of one table of the parts in this order (first
    appearance across them), from the parts' key tables (row = local id)."""
    numbering = FlowIds()
    mapped = []
    for table in keys:
        table = table.reshape(-1, FLOW_KEY_WORDS)
        mapped.append(numbering.ids([np.ascontiguousarray(table[:, j])
                                     for j in range(FLOW_KEY_WORDS)]) if len(table)
                      else np.zeros(0, np.int64))
    return mapped


def renumber_flows(folder: str | os.PathLike[str], part: str, mapping: np.ndarray) -> None:
    """Rewrite one part with ``flow_id`` mapped through ``mapping`` (local → global), one row
    group at a time (flat memory); atomically."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pktkit.files import atomic_path

    path = Path(folder) / part
    source = pq.ParquetFile(path)
    schema = source.schema_arrow
    column = schema.get_field_index("flow_id")
    lookup = pa.array(mapping, pa.int64())
    with atomic_path(path, "a dataset part") as tmp, parquet_writer(tmp, schema) as writer:
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            table = table.set_column(column, "flow_id",
                                     pc.take(lookup, table.column("flow_id")))
            writer.write_table(table, row_group_size=len(table))


def merged_stats(parts: Sequence[ReadStats]) -> ReadStats:
    """One capture's stats from its chunks' (in order): the frames added, the last one's
    end (where a cut capture stopped)."""
    last = parts[-1]
    return ReadStats(last.capture, parts[0].format, parts[0].compressed,
                     sum(p.frames for p in parts), last.bytes_read, last.stopped_at, last.reason)


# -- reading ---------------------------------------------------------------------------------


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CaptureError(f"{path}: not a readable pktkit dataset manifest ({exc}); "
                           "rewrite the dataset with pktkit packets -o DIR/") from None
    if not isinstance(data, dict) or data.get("pktkit_dataset") != FORMAT_VERSION:
        raise CaptureError(f"{path}: not a pktkit dataset of version {FORMAT_VERSION}; "
                           "rewrite it with this pktkit (pktkit packets -o DIR/)")
    return data


def _part_files(folder: str | os.PathLike[str], entry: Mapping[str, Any]) -> list[Path]:
    """The Parquet files of one capture of a dataset; a one-line error if one is missing."""
    files = [Path(folder) / part for part in entry["parts"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CaptureError(f"{missing[0]}: part of the dataset {folder} is missing; rewrite "
                           "the dataset with pktkit packets -o DIR/")
    return files


def read_capture_columns(folder: str | os.PathLike[str], entry: Mapping[str, Any],
                         columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of one capture's rows, as stored (no ``capture`` column, no categories
    made): what a pass needing a few columns reads of the dataset."""
    import pyarrow.parquet as pq

    schema = part_schema()
    tables = [pq.read_table(f, columns=list(columns), schema=schema)
              for f in _part_files(folder, entry)]
    table = pa.concat_tables(tables) if tables else pa.schema(
        [schema.field(name) for name in columns]).empty_table()
    return table.to_pandas()


def read_capture(folder: str | os.PathLike[str], entry: Mapping[str, Any]) -> pd.DataFrame:
    """One capture's rows of a dataset (``entry``: its manifest record) as the packet table
    reads them (``read_packets``' columns and dtypes; ``capture`` = its label)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from pktkit.capture.frame import SCHEMA, empty_frame
    from pktkit.capture.reasons import error_categories

    tables = [pq.read_table(f, schema=part_schema()) for f in _part_files(folder, entry)]
    table = pa.concat_tables(tables) if tables else part_schema().empty_table()
    df = table.to_pandas() if table.num_rows else empty_frame(
        {k: v for k, v in SCHEMA.items() if k != "capture"})
    df.insert(0, "capture", pd.array([str(entry["capture"])] * len(df), dtype="string"))
    for name in ("encap", "error"):  # the categories read_packets gives
        column = df[name].astype("category")
        column = column.cat.rename_categories([str(c) for c in column.cat.categories])
        seen = [str(v) for v in column.dropna().unique()]
        wanted = sorted(seen) if name == "encap" else error_categories(seen)
        df[name] = column.cat.set_categories(wanted)
    return df.astype({k: v for k, v in SCHEMA.items() if k not in ("encap", "error")})
