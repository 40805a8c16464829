"""Per-group aggregates of some rows that merge: the report's tables from partitions.

A report table groups the packet table's rows (per capture, per flow, per overlay ...) and
reduces each group: counts, sums, extremes, the value of its first row, its distinct values.
:func:`aggregate` does that over one partition's rows — one row per group it touches, with
the smallest row-order key of the group (``order``: the groups' order of first appearance);
:func:`merge` combines the partials of all partitions into the same per-group values a single
table gives. A partial's size is its groups (× the distinct values a ``distinct`` aggregate
keeps, × at most ``HEAD`` for a ``head``), never its rows.

Aggregates (:class:`Agg`): ``sum`` (of integers; the valid rows), ``min``/``max`` (NA when no
row is valid), ``first`` (the value of the group's first valid row in row order, a column
of the values' dtype made nullable; its order kept beside it as ``<name>@``; of a DataFrame,
each of its columns as ``<name>.<column>``), ``head`` (the first ``HEAD`` values in row
order, a list; of a DataFrame, tuples of its columns), ``distinct`` (the set of distinct
values). Only ``head`` and ``distinct`` hold Python objects per group: a partial of many
groups (flows) stays columnar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.rows import coded, group_extreme, group_rows, group_sum, run_starts

HEAD = 6  # errors list 5 frame numbers and "…" beyond: the sixth says there are more


@dataclass
class Agg:
    """One aggregate of a group's rows: ``kind`` (module docstring), the per-row ``values``
    (numpy array or Series; for ``distinct``, integer codes per row or a Series), ``valid``
    (which rows count; None: all); for ``distinct``, ``text`` makes the values of some rows
    (positions) when ``values`` are codes."""

    kind: str
    values: Any = None
    valid: np.ndarray | None = None
    text: Callable[[np.ndarray], Sequence[Any]] | None = None


def _first_rows(group: np.ndarray, order: np.ndarray, rows: np.ndarray, count: int,
                take: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Of ``rows``, per group the first ``take`` in row order: (their positions among
    ``rows``' sort, their rows), in (group, order) order."""
    sort = rows[np.lexsort((order[rows], group[rows]))]
    g = group[sort]
    start = np.flatnonzero(run_starts(g))
    rank = np.arange(len(sort)) - np.repeat(start, np.diff(np.append(start, len(sort))))
    kept = sort[rank < take]
    return group[kept], kept


def _taken(values: Any, where: np.ndarray) -> Any:
    """``values`` (a column, or an array of one) at the rows ``where``, NA where it is -1,
    keeping a nullable or extension dtype (a numpy number or bool becomes its nullable
    dtype): a ``first`` aggregate stays a column, with no Python object per group."""
    array = (values if isinstance(values, pd.Series) else pd.Series(values)).array
    if isinstance(array, pd.arrays.NumpyExtensionArray) and array.dtype.kind in "iufb":
        array = pd.array(array.to_numpy())
    return array.take(where, allow_fill=True)


def _first_columns(partial: pd.DataFrame, name: str) -> list[str]:
    """The columns of a ``first`` aggregate: ``name``, or ``name.COLUMN`` for each column of
    the DataFrame it took."""
    return [c for c in partial.columns if c == name or c.startswith(f"{name}.")]


def aggregate(keys: dict[str, pd.Series], order: np.ndarray, aggs: dict[str, Agg]
              ) -> pd.DataFrame:
    """One row per distinct ``keys`` of these rows (key columns: their values, NA as a value
    of its own), its first row's ``order``, and each aggregate (module docstring)."""
    n = len(order)
    group, first = group_rows(*(coded(column.array)[0] for column in keys.values()))
    count = len(first)
    out: dict[str, Any] = {name: column.take(first).reset_index(drop=True) if n
                           else column.iloc[:0].reset_index(drop=True)
                           for name, column in keys.items()}
    smallest = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(smallest, group, order)
    out["order"] = smallest
    everyone = np.ones(n, bool)
    for name, agg in aggs.items():
        valid = everyone if agg.valid is None else agg.valid
        if agg.kind == "sum":
            values = np.ones(n, np.int64) if agg.values is None else agg.values
            out[name] = group_sum(group[valid], count, np.asarray(values)[valid]
                                  .astype(np.int64))
        elif agg.kind in ("min", "max"):
            out[name] = group_extreme(group, count, np.asarray(agg.values), valid,
                                      largest=agg.kind == "max")
        elif agg.kind == "first":
            g, rows = _first_rows(group, order, np.flatnonzero(valid), count)
            where = np.full(count, -1, np.int64)  # per group its first valid row (-1: none)
            where[g] = rows
            out[f"{name}@"] = pd.arrays.IntegerArray(order[np.maximum(where, 0)], where < 0)
            columns = (agg.values.items() if isinstance(agg.values, pd.DataFrame)
                       else [(None, agg.values)])
            for column, values in columns:
                out[name if column is None else f"{name}.{column}"] = _taken(values, where)
        elif agg.kind == "head":
            g, rows = _first_rows(group, order, np.flatnonzero(valid), count, HEAD)
            values = (list(zip(*(agg.values[c].take(rows).tolist()  # a tuple per row
                                 for c in agg.values.columns), strict=True))
                      if isinstance(agg.values, pd.DataFrame)
                      else pd.Series(agg.values).take(rows).tolist())
            heads: list[list[tuple[int, Any]]] = [[] for _ in range(count)]
            for i, o, v in zip(g.tolist(), order[rows].tolist(), values, strict=True):
                heads[i].append((o, v))
            out[name] = heads
        elif agg.kind == "distinct":
            codes = agg.values if agg.text is not None else coded(pd.Series(agg.values)
                                                                   .array)[0]
            rows = np.flatnonzero(valid & (codes >= 0))
            rows = rows[group_rows(group[rows], codes[rows])[1]]
            values = (agg.text(rows) if agg.text is not None
                      else pd.Series(agg.values).take(rows).tolist())
            sets: list[set[Any]] = [set() for _ in range(count)]
            for i, v in zip(group[rows].tolist(), values, strict=True):
                sets[i].add(v)
            out[name] = sets
        else:
            raise ValueError(f"aggregate {name!r}: unknown kind {agg.kind!r}")
    return pd.DataFrame(out)


def merge(partials: Sequence[pd.DataFrame], keys: Sequence[str], kinds: dict[str, str], *,
          as_partial: bool = False) -> pd.DataFrame:
    """The partials of all partitions as one: per group the aggregates of all its rows, the
    groups in order of their first row. ``as_partial``: also each ``first`` aggregate's
    order (``<name>@``), so that the result merges again with other partials (a merge in
    steps: the partials of some partitions merged where they were made)."""
    every = pd.concat(list(partials), ignore_index=True)
    grouped = every.groupby(list(keys), sort=False, dropna=False)
    group = grouped.ngroup().to_numpy()
    count = int(group.max(initial=-1)) + 1
    first_row = np.unique(group, return_index=True)[1]
    out: dict[str, Any] = {k: every[k].take(first_row).reset_index(drop=True) for k in keys}
    order = every["order"].to_numpy(np.int64)
    smallest = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(smallest, group, order)
    out["order"] = smallest
    for name, kind in kinds.items():
        column = every.get(name)
        if kind == "sum":
            out[name] = group_sum(group, count, column.to_numpy(np.int64))
        elif kind in ("min", "max"):
            values = column.to_numpy(np.int64, na_value=0)
            out[name] = group_extreme(group, count, values, column.notna().to_numpy(),
                                      largest=kind == "max")
        elif kind == "first":
            at = every[f"{name}@"]
            valid = np.flatnonzero(at.notna().to_numpy())
            g, rows = _first_rows(group, at.to_numpy(np.int64, na_value=0), valid, count)
            where = np.full(count, -1, np.int64)
            where[g] = rows
            if as_partial:
                out[f"{name}@"] = _taken(at, where)
            for part in _first_columns(every, name):
                out[part] = _taken(every[part], where)
        elif kind == "head":
            heads: list[list[tuple[int, Any]]] = [[] for _ in range(count)]
            for i, part in zip(group.tolist(), column.tolist(), strict=True):
                heads[i].extend(part)
            out[name] = [sorted(h, key=lambda pair: pair[0])[:HEAD] for h in heads]
        elif kind == "distinct":
            sets: list[set[Any]] = [set() for _ in range(count)]
            for i, part in zip(group.tolist(), column.tolist(), strict=True):
                sets[i] |= part
            out[name] = sets
        else:
            raise ValueError(f"merge {name!r}: unknown kind {kind!r}")
    merged = pd.DataFrame(out)
    return merged.iloc[np.argsort(merged["order"].to_numpy(), kind="stable")].reset_index(
        drop=True)


def kinds_of(aggs: dict[str, Agg]) -> dict[str, str]:
    return {name: agg.kind for name, agg in aggs.items()}
