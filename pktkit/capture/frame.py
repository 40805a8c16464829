"""Typed DataFrames: the packet table from column batches, and every table with its declared
dtypes even when empty (so that concat, merge and CSV/Parquet output keep the schema)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from pktkit.capture.arrow import string_array
from pktkit.capture.columns import ColumnBatch
from pktkit.capture.reasons import error_categories
from pktkit.capture.schema import PACKET_COLUMNS, Column


def _pandas_dtype(column: Column) -> str | pd.CategoricalDtype:
    if column.categories is not None:
        return pd.CategoricalDtype(list(column.categories))
    return column.pandas_dtype


# the packet table's pandas dtypes (see pktkit.capture.schema for the columns)
SCHEMA: dict[str, str | pd.CategoricalDtype] = {c.name: _pandas_dtype(c) for c in PACKET_COLUMNS}


class ReadStatsList(list):
    """The packet table's ``attrs["read_stats"]`` (one dict per capture): a list that every
    copy of the table shares. pandas deep-copies a frame's ``attrs`` at every column access,
    slice and conversion; with hundreds of captures those copies cost more than the analysis
    itself (a third of a 32-node, 3M-frame run). Treat it as read-only."""

    def __deepcopy__(self, memo: dict[int, object]) -> ReadStatsList:
        return self


def empty_frame(schema: Mapping[str, object]) -> pd.DataFrame:
    """A table with no rows but every column of ``schema`` with its dtype (so that concat,
    merge and CSV/Parquet output of an empty result keep the documented schema)."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in schema.items()})


def typed_frame(df: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with exactly the schema's columns, in order and with its dtypes, on a fresh
    0..n-1 index and with no ``attrs`` (a table made from the packet table must not carry its
    read_stats); no rows: :func:`empty_frame`. A column the schema names must be there."""
    if df.empty:
        return empty_frame(schema)
    typed = df.reset_index(drop=True)[list(schema)].astype(dict(schema))
    typed.attrs = {}
    return typed


def frame_from_columns(data: Mapping[str, Iterable], schema: Mapping[str, str | pd.CategoricalDtype]
           ) -> pd.DataFrame:
    """Columns of Python lists (None for NA) or arrays, in the schema's dtypes."""
    out = {}
    for name, dtype in schema.items():
        values = data[name]
        if isinstance(values, pd.Series | np.ndarray):
            out[name] = pd.Series(np.asarray(values) if isinstance(values, np.ndarray)
                                  else values.to_numpy(), dtype=dtype)
        else:
            out[name] = pd.Series(list(values), dtype=dtype)
    return pd.DataFrame(out)


def batches_frame(batches: list[ColumnBatch]) -> pd.DataFrame:
    """Column batches → the table, with SCHEMA's dtypes (masked arrays built without boxing).

    Consumes the batches: each column's parts are dropped once it is built, so the batches and
    the table are never both whole in memory."""
    first = batches[0]
    is_int = {name: name in first.ints for name in SCHEMA}
    is_bool = {name: name in first.bools for name in SCHEMA}
    is_string = {name: name in first.strings for name in SCHEMA}
    data: dict[str, object] = {}
    for name, dtype in SCHEMA.items():
        if is_int[name] or is_bool[name]:
            parts = [(b.ints if is_int[name] else b.bools).pop(name) for b in batches]
            values = np.concatenate([v for v, _ in parts])
            mask = np.concatenate([np.zeros(len(v), bool) if m is None else m for v, m in parts])
            del parts
            cls = pd.arrays.BooleanArray if is_bool[name] else pd.arrays.IntegerArray
            data[name] = cls(values, mask)
        elif is_string[name]:
            chunks = [string_array(*b.strings.pop(name)) for b in batches]
            data[name] = pd.arrays.ArrowStringArray(pa.chunked_array(chunks, pa.large_string()))
        elif name in ("encap", "error"):  # open vocabularies (see their categories below)
            codes = np.concatenate([b.categories.pop(name) for b in batches])
            names = batches[-1].names(name)  # the names only grow, batch by batch
            used = np.unique(codes[codes >= 0])
            seen = [names[c] for c in used.tolist()]
            # encap: the values seen, sorted, as pandas infers them; error: the reasons first
            categories = sorted(seen) if name == "encap" else error_categories(seen)
            remap = np.full(len(names) + 1, -1, np.int32)  # (the last: NA's -1 stays -1)
            remap[used] = [categories.index(text) for text in seen]
            data[name] = pd.Categorical.from_codes(remap[codes], categories=categories)
        else:
            codes = np.concatenate([b.categories.pop(name) for b in batches])
            data[name] = pd.Categorical.from_codes(codes, dtype=dtype)
    return pd.DataFrame(data, copy=False)
