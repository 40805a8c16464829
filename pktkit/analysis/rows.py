"""The packet table read lean, for the report and the plots.

A million-row table must not be copied whole, nor turned into a Python object per row:
columns are read one at a time as numpy arrays, strings and categories as integer codes,
rows are grouped by those codes, and Python touches only one row per group or per
distinct value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NO_TUNNEL = "none"  # the encap of a packet that is not tunnelled


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
