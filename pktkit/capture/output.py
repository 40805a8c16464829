"""Table files: the packet table (or any report table) as CSV or Parquet, written atomically.

:func:`write_packets` streams captures straight into a file batch by batch, in flat memory
(``pktkit packets -o``): Parquet without importing pandas, its row groups encoded in a second
thread while the next batches decode. :func:`write_table` writes a DataFrame;
:func:`table_written_meanwhile` writes one in a second thread while the caller goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # (pandas is never imported here: the Parquet path must not pay for it)
    import pandas as pd
    import pyarrow.parquet as pq

from pktkit.capture.arrow import arrow_array, arrow_schema, arrow_strings, string_array
from pktkit.capture.autoports import PortsArg, resolve_ports
from pktkit.capture.batches import DEFAULT_BATCH
from pktkit.capture.columns import BatchDecoder, ColumnBatch
from pktkit.capture.read import ReadStats, warn_if_cut
from pktkit.capture.schema import CATEGORY_COLUMNS, COLUMNS, INT_COLUMNS, STRING_COLUMNS
from pktkit.errors import UsageError
from pktkit.files import Stopped, atomic_path, meanwhile

TABLE_SUFFIXES = (".csv", ".parquet")
ROW_GROUP_ROWS = 32768  # Parquet row groups: whole batches, at least this many rows (memory)
# Parquet: dictionary pages only where values repeat (strings, categories); the integer columns
# byte-stream-split (each value's bytes in separate streams: snappy then finds the repeats in the
# high bytes; measured on mixed-1M: 0.39 µs a row and 30 bytes against 0.45 µs and 47 bytes
# plain, pyarrow >= 17 and so pandas and dask read it); min/max statistics only for the columns
# readers filter row groups by. Snappy: lz4 is no faster here, zstd level 1 a third slower.
_DICTIONARY_COLUMNS = [*STRING_COLUMNS, *CATEGORY_COLUMNS]
_SPLIT_COLUMNS = {name: "BYTE_STREAM_SPLIT" for name in INT_COLUMNS}
_STATISTICS_COLUMNS = ["frame", "ts_ns", "flow_id"]

PathArg = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
# Interface names of SLL2 indexes: one map for every capture, or one per capture (in order).
IfnamesArg = Mapping[int, str] | Sequence[Mapping[int, str] | None] | None


def path_list(paths: PathArg) -> list[str | os.PathLike[str]]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def ifnames_list(ifnames: IfnamesArg, count: int) -> list[Mapping[int, str] | None]:
    """``ifnames`` as one map (or None) per capture. A sequence must have one per capture."""
    if ifnames is None or isinstance(ifnames, Mapping):
        return [ifnames] * count
    per_capture = list(ifnames)
    if len(per_capture) != count:
        raise UsageError(f"ifnames: {len(per_capture)} interface maps for {count} captures; "
                         "give one map per capture, or one map for all")
    return per_capture


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
            names = batch.names(name)
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


def write_packets(
    paths: PathArg,
    out: str | os.PathLike[str],
    *,
    vxlan_ports: PortsArg = (),
    ifnames: IfnamesArg = None,
    batch_size: int = DEFAULT_BATCH,
) -> list[ReadStats]:
    """Decode captures straight into a CSV or Parquet file, batch by batch, in flat memory.

    The file holds what ``write_table(read_packets(paths, ...), out)`` would write: the same
    CSV text; in Parquet the same table, in row groups of ~32k rows, except that ``encap``'s
    categories come back in order of appearance rather than sorted. Written atomically (temp
    file + rename). Returns one :class:`~pktkit.capture.read.ReadStats` per capture; a cut
    capture also warns, as in read_packets. Parquet output does not import pandas.
    ``vxlan_ports``: as in read_packets (``"auto"`` reads the captures twice; resolve it
    first with :func:`~pktkit.capture.autoports.resolve_ports` to see the ports found).
    """
    out = Path(out)
    suffix = table_suffix(out)
    files = path_list(paths)
    ports = resolve_ports(files, vxlan_ports)
    decoder = BatchDecoder(ports.vxlan, None, batch_size, geneve_ports=ports.geneve)

    def batches() -> Iterator[ColumnBatch]:
        for path, names in zip(files, ifnames_list(ifnames, len(files)), strict=True):
            yield from decoder.batches(path, names)
            warn_if_cut(decoder.stats[-1])

    with atomic_path(out, "the table") as tmp:
        if suffix == ".csv":
            from pktkit.capture.csv_text import write_csv
            from pktkit.capture.frame import batches_frame

            with open(tmp, "wb") as handle:
                header = True
                for batch in batches():
                    write_csv(batches_frame([batch]), handle, header=header)
                    header = False
                if header:  # no rows at all: the header line alone, as write_table writes it
                    handle.write((",".join(COLUMNS) + "\n").encode())
        else:
            write_parquet_batches(tmp, arrow_schema(), batches())
    return decoder.stats


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer of packet-table columns (``schema``: all of them, or a subset) with
    the encodings above."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(
        path, schema, use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in schema.names],
        column_encoding={c: e for c, e in _SPLIT_COLUMNS.items() if c in schema.names},
        write_statistics=[c for c in _STATISTICS_COLUMNS if c in schema.names])


def write_parquet_batches(path: Path, schema: pa.Schema, batches: Iterator[ColumnBatch]) -> None:
    """Row groups of whole batches, ROW_GROUP_ROWS rows or more. Arrow conversion, encoding
    and compressing run in a second thread (pyarrow drops the GIL there), overlapping the
    decoding."""
    pending: queue.Queue[ColumnBatch | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with parquet_writer(path, schema) as writer:
                group: list[pa.RecordBatch] = []
                while (batch := pending.get()) is not None or group:
                    if batch is not None:
                        group.append(arrow_batch(batch, schema))
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


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` as CSV or Parquet (chosen by the suffix), atomically: temp file + rename.
    Parquet is written by :func:`write_parquet`."""
    path = Path(path)
    suffix = table_suffix(path)
    with atomic_path(path, "the table") as tmp:
        if suffix == ".csv":
            from pktkit.capture.csv_text import write_csv  # (pandas: not on the Parquet path)

            write_csv(df, tmp)
        else:
            write_parquet(df, tmp)
    return path


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str], *,
                  stop: threading.Event | None = None) -> None:
    """``df.to_parquet(path, index=False)`` in flat memory: a table longer than one row group
    (:data:`ROW_GROUP_ROWS` rows) is converted to Arrow and written one row
    group at a time, so its Arrow copy is never whole, with :func:`table_encodings`. The file
    reads back as the same DataFrame, dtypes, categories and ``attrs`` included, as pandas'
    own file does; only its row groups are smaller. ``stop`` set:
    :class:`~pktkit.files.Stopped` is raised before the next row group."""
    rows_per_group = ROW_GROUP_ROWS
    if len(df) <= rows_per_group:  # one row group either way: pandas' own file
        df.to_parquet(path, index=False)
        return
    import pyarrow.parquet as pq

    # the whole table's schema, with pandas' metadata, as to_parquet would write it
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    if df.attrs:
        schema = schema.with_metadata({**schema.metadata,
                                       b"PANDAS_ATTRS": json.dumps(df.attrs).encode()})
    with pq.ParquetWriter(path, schema, compression="snappy", **table_encodings(schema)) as writer:
        for start in range(0, len(df), rows_per_group):
            if stop is not None and stop.is_set():
                raise Stopped(path)
            part = df.iloc[start:start + rows_per_group]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def table_encodings(schema: pa.Schema) -> dict[str, object]:
    """ParquetWriter settings for any table's columns, as the packet table's
    (:func:`parquet_writer`): integer columns byte-stream-split, every other one with
    dictionary pages (pyarrow's default for all). On an analysis's 1,033,636-row packet table:
    1.5 s and 39 MB against 2.5 s and 44 MB with the defaults, the same values read back."""
    integers = [field.name for field in schema if pa.types.is_integer(field.type)]
    return {"use_dictionary": [field.name for field in schema if field.name not in integers],
            "column_encoding": dict.fromkeys(integers, "BYTE_STREAM_SPLIT")}


@contextlib.contextmanager
def table_written_meanwhile(df: pd.DataFrame, path: str | os.PathLike[str]) -> Iterator[None]:
    """``write_table(df, path)`` of a ``.parquet`` ``path`` in a second thread while the
    block runs (:func:`~pktkit.files.meanwhile`): pyarrow converts and encodes mostly
    without the GIL, so the block's work and the encoding share the cores. The file is
    complete (or its error raised) when the block ends; if the block fails or is
    interrupted, the write stops at its next row group and leaves nothing. The thread writes
    a shallow copy: columns added or replaced in the block are not seen, but ``df``'s
    values must not be changed in place meanwhile."""
    table = df.copy(deep=False)

    def write(stop: threading.Event) -> None:
        with atomic_path(path, "the table") as tmp:
            write_parquet(table, tmp, stop=stop)

    with meanwhile(write):
        yield
