"""``write_csv`` writes the bytes ``DataFrame.to_csv(index=False)`` writes: on every table of
the report of every bundled capture set, and on hand-made columns of every kind it converts
(and of the kinds it leaves to pandas); the Arrow path must be the one taken where it can."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plot import CAPTURES, packets, truth

import pktkit.report as report
from pktkit.capture.csv_text import arrow_columns, write_csv

FOLDERS = sorted(p.name for p in CAPTURES.iterdir() if (p / "truth.json").is_file())


def pandas_bytes(table: pd.DataFrame, header: bool = True) -> bytes:
    return table.to_csv(index=False, header=header).encode()


def our_bytes(table: pd.DataFrame, header: bool = True) -> bytes:
    out = io.BytesIO()
    write_csv(table, out, header=header)
    return out.getvalue()


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_report_table_as_pandas_writes_it(folder: str, tmp_path: Path) -> None:
    tables = report.build_tables(packets(folder))
    for name, table in tables.items():
        assert our_bytes(table) == pandas_bytes(table), (folder, name)
        write_csv(table, tmp_path / f"{name}.csv")
        assert (tmp_path / f"{name}.csv").read_bytes() == pandas_bytes(table), (folder, name)
    # the large tables take the fast path (they are why it exists)
    assert arrow_columns(tables["flows"]) is not None, tables["flows"].dtypes
    assert truth(folder)["captures"]


def _columns() -> dict[str, pd.Series]:
    """Every kind write_csv converts, with NA where the kind has one."""
    return {
        "int": pd.Series([0, -5, 7, 2**62], dtype="int64"),
        "uint64": pd.Series([0, 1, 2, 2**64 - 1], dtype="uint64"),
        "int8": pd.Series([-128, 0, 1, 127], dtype="int8"),
        "Int64": pd.array([1, None, -3, 4], dtype="Int64"),
        "UInt16": pd.array([None, 65535, 0, 1], dtype="UInt16"),
        "bool": pd.Series([True, False, True, False]),
        "boolean": pd.array([True, None, False, True], dtype="boolean"),
        "float": pd.Series([0.1, 1e-05, 1e16, 123.0]),
        "float more": pd.Series([-0.0, np.inf, np.nan, 1.5e300]),
        "float32": pd.Series([3.14, 0.1, np.nan, 1e-08], dtype="float32"),
        "Float64": pd.array([0.25, None, 2.0 / 3.0, 1e22], dtype="Float64"),
        "text": pd.Series(["a", None, "", "ü → ☃"], dtype=object),
        "string": pd.array(["x", None, "10.0.0.1:80", "fd00::1"], dtype="string"),
        "category": pd.Categorical(["vxlan", None, "none", "vxlan"]),
        "nan text": pd.Series(["a", np.nan, "b", "c"], dtype=object),
    }


def test_every_kind_it_converts() -> None:
    table = pd.DataFrame(_columns())
    assert arrow_columns(table) is not None
    assert our_bytes(table) == pandas_bytes(table)
    assert our_bytes(table, header=False) == pandas_bytes(table, header=False)
    assert our_bytes(table.iloc[:0]) == pandas_bytes(table.iloc[:0])
    for name, column in _columns().items():  # each beside an int column
        pair = pd.DataFrame({"n": range(4), name: column})
        assert our_bytes(pair) == pandas_bytes(pair), name


@pytest.mark.parametrize("column", [
    pd.Series(["a,b", "c", "d", "e"]), pd.Series(['say "hi"', "c", "d", "e"]),
    pd.Series(["two\nlines", "c", "d", "e"]), pd.Series(["cr\r", "c", "d", "e"]),
    pd.Series([1, "mixed", 2.5, None], dtype=object),
    pd.Series(pd.to_datetime(["2026-12-07", None, "2026-12-08", "2026-12-09"])),
    pd.Series(pd.to_timedelta([1, 2, 3, 4], unit="s")),
    pd.Categorical([1, 2, None, 1]), pd.Series([b"bytes", b"x", b"y", b"z"]),
    pd.Series([1 + 2j, 0j, 1j, 2 + 0j]),
])
def test_what_it_leaves_to_pandas(column: object) -> None:
    """Text that needs quotes, times, mixed objects, bytes, categories of numbers: pandas."""
    table = pd.DataFrame({"n": range(4), "x": column})
    assert arrow_columns(table) is None
    assert our_bytes(table) == pandas_bytes(table)


def test_one_column_and_odd_names() -> None:
    """A lone column (an empty string alone on its line is '""' to pandas) and header names
    that need quotes."""
    lone = pd.DataFrame({"x": ["", "a"]})
    assert our_bytes(lone) == pandas_bytes(lone) == b'x\n""\na\n'
    odd = pd.DataFrame({"a,b": [1, 2], 'say "x"': [3, 4], 5: [6, 7]})
    assert arrow_columns(odd) is not None
    assert our_bytes(odd) == pandas_bytes(odd) == b'"a,b","say ""x""",5\n1,3,6\n2,4,7\n'
    levels = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]))
    assert our_bytes(levels) == pandas_bytes(levels) == b"a,a\nx,y\n1,2\n"
