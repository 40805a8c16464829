"""The packet table read lean, for the analysis, the report and the plots.

A million-row table must not be copied whole, nor turned into a Python object per row:
columns are read one at a time as numpy arrays, strings and categories as integer codes,
rows are grouped by those codes, and Python touches only one row per group or per
distinct value.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

NO_TUNNEL = "none"  # the encap of a packet that is not tunnelled
NO_VALUE = np.int64(-1)  # integer columns: NA
# Initial hash-table size when factorizing values known to be few (slots, categories): by
# default pandas sizes the table for every row being distinct.
FEW_VALUES = 1024
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64


class Rows:
    """Some rows of the packet table (``positions``; None: all of them), read column by
    column as numpy arrays, so that the rows are never copied as a frame."""

    def __init__(self, packets: pd.DataFrame, positions: np.ndarray | None = None) -> None:
        self.packets, self.positions = packets, positions

    def __contains__(self, name: str) -> bool:
        return name in self.packets

    def _array(self, name: str) -> Any:
        column = self.packets[name].array
        return column if self.positions is None else column[self.positions]

    def values(self, name: str, dtype: str, na_value: Any, copy: bool = False) -> np.ndarray:
        """The column as a numpy array of ``dtype``, NA as ``na_value``. Without ``copy`` it
        may be the table's own buffer (a column already of ``dtype``): not to be modified in
        place. (``copy`` costs nothing more when the dtype is converted anyway.)"""
        return self._array(name).to_numpy(dtype, na_value=na_value, copy=copy)

    def isna(self, name: str) -> np.ndarray:
        return np.asarray(pd.isna(self._array(name)), dtype=bool)

    def codes(self, name: str) -> np.ndarray:
        """Integer codes of the column's values (equal values, equal codes; −1: NA), none
        above the row count: category codes, non-negative integers up to the row count (ids)
        as they are, anything else factorized."""
        column = self.packets[name].array
        codes = None
        if pd.api.types.is_integer_dtype(column.dtype):
            values = column.to_numpy("int64", na_value=-1)
            missing = np.asarray(pd.isna(column), dtype=bool)
            if np.all((values >= 0) | missing) and values.max(initial=0) <= len(values):
                codes = values
        if codes is None:
            codes = coded(column)[0]
        return codes if self.positions is None else codes[self.positions]

    def take(self, name: str, rows: np.ndarray) -> pd.Series:
        """The column's values at ``rows`` (positions among these rows), in its own dtype."""
        at = rows if self.positions is None else self.positions[rows]
        return pd.Series(self.packets[name].array[at])

    def encap_codes(self) -> tuple[np.ndarray, list[str]]:
        """Codes of the ``encap`` names, NA counted as ``none`` (as ``_text(..).fillna``),
        and the names they stand for."""
        codes, uniques = coded(self.packets["encap"].array)
        if self.positions is not None:
            codes = codes[self.positions]
        # one code per name, whether it came as NA or as "none"; the last entry is NA's (−1)
        canonical, names = pd.factorize(np.array([*map(str, uniques), NO_TUNNEL], dtype=object))
        return canonical[codes], [str(name) for name in names]


def tunnel_rows(encap: np.ndarray, names: list[str]) -> np.ndarray:
    """Which rows are tunnelled, from :meth:`Rows.encap_codes`."""
    return np.array([name != NO_TUNNEL for name in names], dtype=bool)[encap]


def coded(column: Any) -> tuple[np.ndarray, list[Any]]:
    """A column's integer codes (−1: NA) and the values they stand for; categories keep their
    own codes (factorizing would hash a row count's worth of them)."""
    if isinstance(column, pd.Categorical):
        return column.codes.astype(np.int64), list(column.categories)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes, list(uniques)


def group_rows(*codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number the rows by their values in ``codes`` together (NA, −1, a value like any other),
    in order of first appearance, as ``groupby(sort=False, dropna=False).ngroup()`` does;
    returns the group of each row and the first row of each group."""
    groups, first = group_key(codes[0] + 1)
    for more in codes[1:]:
        groups, first = group_key(groups * np.int64(more.max(initial=-1) + 2) + (more + 1))
    return groups, first


def group_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_rows` of one non-negative integer key. A key up to the row count is numbered
    through a table indexed by it, a larger one hashed first."""
    rows = len(key)
    if key.max(initial=0) > rows:
        key = pd.factorize(key)[0]
    # each key's first row (same dtypes throughout: numpy's fast path for minimum.at)
    first = np.full(key.max(initial=-1) + 1, rows, dtype=index_dtype(rows))
    np.minimum.at(first, key, np.arange(rows, dtype=first.dtype))
    present = np.flatnonzero(first < rows)
    present = present[np.argsort(first[present], kind="stable")]  # in order of appearance
    number = np.empty(len(first), dtype=index_dtype(len(present)))
    number[present] = np.arange(len(present))
    return number[key], first[present]


def index_dtype(size: int) -> type[np.signedinteger]:
    """int32 where it can count to ``size``: half the memory of int64 for row numbers."""
    return np.int32 if size < 2**31 - 1 else np.int64


def group_sum(groups: np.ndarray, count: int, values: np.ndarray) -> np.ndarray:
    """Per group, the sum of ``values`` (int64, exact)."""
    total = np.zeros(count, dtype=np.int64)
    np.add.at(total, groups, values)
    return total


def group_extreme(groups: np.ndarray, count: int, values: np.ndarray, valid: np.ndarray,
                   largest: bool) -> pd.arrays.IntegerArray:
    """Per group, the smallest or largest of the valid ``values`` (integers, or whole
    floats); NA where there is none."""
    if not valid.all():
        groups, values = groups[valid], values[valid]
    start = (-np.inf if largest else np.inf) if values.dtype.kind == "f" else (
        np.iinfo(np.int64).min if largest else np.iinfo(np.int64).max)
    result = np.full(count, start, dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    (np.maximum if largest else np.minimum).at(result, groups, values)
    none = np.bincount(groups, minlength=count) == 0
    result[none] = 0
    return pd.arrays.IntegerArray(result.astype(np.int64), none)


def group_first(groups: np.ndarray, count: int, valid: np.ndarray) -> np.ndarray:
    """Per group, its first valid row (−1: none)."""
    rows = np.flatnonzero(valid)
    first = np.full(count, len(groups), dtype=np.int64)
    np.minimum.at(first, groups[rows], rows)
    first[first == len(groups)] = -1
    return first


def group_nunique(groups: np.ndarray, count: int, codes: np.ndarray) -> np.ndarray:
    """Per group, how many distinct codes (≥ 0; −1 is NA and not counted) its rows have."""
    valid = codes >= 0
    pairs = np.unique(groups[valid] * np.int64(codes.max(initial=0) + 1) + codes[valid])
    return np.bincount(pairs // (codes.max(initial=0) + 1), minlength=count)


def distinct_rows(groups: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """One row for each distinct (group, code) pair with a code (not NA): the rows to read
    a group's distinct values from."""
    valid = np.flatnonzero(codes >= 0)
    first = group_rows(groups[valid], codes[valid])[1]
    return valid[first]


# -- whole columns, for the analysis stages ---------------------------------------------


def int_column(packets: pd.DataFrame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A nullable integer/boolean column (at ``rows``; default: all) as int64 with -1 for NA
    (absent column: all NA). May share memory with the table: not to be modified."""
    size = len(packets) if rows is None else len(rows)
    if name not in packets:
        return np.full(size, NO_VALUE)
    column = packets[name].array
    if isinstance(column, pd.Categorical):
        codes = column.codes if rows is None else column.codes[rows]
        return codes.astype(np.int64)
    if rows is not None:
        column = column.take(rows)  # the rows before widening: no int64 copy of the column
    return column.to_numpy(dtype=np.int64, na_value=-1)


def string_codes(values: pd.Series, order: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """Factorize strings: (int32 codes with -1 for NA, the labels in order of first
    appearance); ``order`` labels first. A categorical column is factorized by its codes
    (its labels as strings), without building a string per row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # the category codes in order of first appearance; NA (code -1) stays -1
        seen, present = pd.factorize(values.array.codes, size_hint=FEW_VALUES)
        valid = present >= 0
        rank = np.where(valid, np.cumsum(valid) - 1, -1)
        codes = rank[seen]
        labels = [str(x) for x in values.array.categories[present[valid]]]
    else:
        codes, labels = pd.factorize(values.astype("string"), use_na_sentinel=True)
        labels = [str(x) for x in labels]
    if order:
        ranked = [x for x in order if x in labels] + [x for x in labels if x not in order]
        remap = np.array([ranked.index(x) for x in labels] + [-1], np.int32)
        return remap[codes], ranked
    return codes.astype(np.int32), labels


def shared_codes(*columns: pd.Series | tuple[np.ndarray, list[str]],
                 ) -> tuple[list[np.ndarray], list[str]]:
    """String columns coded in one space (equal text, equal code in every column; -1: NA),
    and the labels: each column factorized on its own (or given as its
    :func:`string_codes`), the labels merged."""
    coded_columns = [column if isinstance(column, tuple) else string_codes(column)
                     for column in columns]
    labels = list(dict.fromkeys(label for _, found in coded_columns for label in found))
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for codes, found in coded_columns:
        remap = np.array([*(index[label] for label in found), -1], np.int32)
        out.append(remap[codes])
    return out, labels


def text_words(labels: Sequence[str]) -> np.ndarray:
    """A 64-bit word per label from its text alone (BLAKE2b), the same in every process and
    every table: for digests that must agree between partitions of the rows."""
    return np.array([int.from_bytes(hashlib.blake2b(str(x).encode(), digest_size=8).digest(),
                                    "little", signed=True) for x in labels], np.int64)


def address_words(codes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per row, :func:`text_words` of its label (``codes`` into ``labels``; -1: NA, -1)."""
    words = np.append(text_words(labels), np.int64(-1))
    return words[codes]


def row_digest(words: Iterable[np.ndarray], n: int | None = None) -> np.ndarray:
    """A 64-bit digest per row of integer columns (splitmix64 finalizer, chained; narrower
    integers count as their int64 value). ``words`` may be a generator (then ``n`` rows):
    only one column is alive at a time."""
    words = iter(words)
    first = next(words)
    h = np.full(len(first) if n is None else n, 0x9E3779B97F4A7C15, np.uint64)
    for word in itertools.chain([first], words):
        # an int64 column's bits as they are (no copy); a narrower one sign-extended
        h ^= word.view(np.uint64) if word.dtype == np.int64 else word.astype(np.uint64)
        h ^= h >> np.uint64(30)
        h *= _M1
        h ^= h >> np.uint64(27)
        h *= _M2
        h ^= h >> np.uint64(31)
    return h.view(np.int64)


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """Boolean: row i starts a new run of equal keys (rows already sorted by them)."""
    n = len(keys[0])
    start = np.zeros(n, bool)
    if n:
        start[0] = True
        for key in keys:
            start[1:] |= key[1:] != key[:-1]
    return start


def run_ids(start: np.ndarray) -> np.ndarray:
    ids = np.cumsum(start)
    ids -= 1
    return ids


def combinations(*codes: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct rows of small integer ``codes`` columns (each ≥ -1) in sorted order, and
    each row's number among them. A row is one int64 key (mixed radix, which sorts like the
    row), so few keys are hashed and sorted instead of the stacked rows."""
    radices = [int(column.max()) + 2 if len(column) else 1 for column in codes]
    key = np.zeros(len(codes[0]), np.int64)
    for column, radix in zip(codes, radices, strict=True):
        key *= radix
        key += column
        key += 1
    numbers, keys = pd.factorize(key, size_hint=FEW_VALUES)
    del key
    order = np.argsort(keys)
    rank = np.empty(len(keys), np.intp)
    rank[order] = np.arange(len(keys))
    combos = []
    for k in keys[order].tolist():  # the key's digits, back to codes
        digits = []
        for radix in reversed(radices):
            k, digit = divmod(k, radix)
            digits.append(digit - 1)
        combos.append(tuple(reversed(digits)))
    return combos, rank[numbers]
