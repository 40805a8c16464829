"""A table's CSV text exactly as ``DataFrame.to_csv(path, index=False)`` writes it, by Arrow's
CSV writer where its bytes are the same, by pandas everywhere else.

pandas formats every cell in Python: the hops table of a 3M-frame analysis (245 MB of CSV)
took it about 10 s. Arrow's writer does the same in a fraction, but formats some types its
own way. So a table goes through Arrow only when every column is one whose text is the same
in both, as converted here:

- integers (numpy, or pandas' nullable ones: NA is an empty cell in both);
- floats, turned into text by numpy as pandas does (``values.astype(str)``; NA: empty);
- booleans, as pandas writes them (``True``/``False``; NA: empty);
- text: ``str`` objects, pandas strings, categoricals of ``str`` (NA: empty), none of them
  holding a comma, a double quote or a line break (pandas quotes those, Arrow without quoting
  cannot write them);

and the table has at least two columns (a lone empty string is ``""`` to pandas) and one
header line (not a MultiIndex). Times and anything else: pandas. The header is written by
the :mod:`csv` module, as pandas writes it.
"""

from __future__ import annotations

import csv
import io
import os
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

_NEEDS_QUOTES = '[,"\r\n]'  # what pandas (csv.QUOTE_MINIMAL) quotes
_BOOL_TEXT = pa.array(["False", "True"])


def write_csv(table: pd.DataFrame, target: str | os.PathLike[str] | BinaryIO, *,
              header: bool = True) -> None:
    """``table.to_csv(target, index=False, header=header)``, the same bytes, faster when the
    columns allow (see the module docstring). ``target``: a path, or a file open for writing
    bytes (the table is appended to it)."""
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as out:
            write_csv(table, out, header=header)
        return
    columns = arrow_columns(table) if table.shape[1] >= 2 and not isinstance(
        table.columns, pd.MultiIndex) else None  # (several header lines: pandas')
    if columns is None:
        target.write(table.to_csv(index=False, header=header).encode())
        return
    if header:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow([str(c) for c in table.columns])
        target.write(line.getvalue().encode())
    pa_csv.write_csv(pa.table(columns, names=[str(i) for i in range(len(columns))]), target,
                     pa_csv.WriteOptions(include_header=False, quoting_style="none"))


def arrow_columns(table: pd.DataFrame) -> list[pa.Array] | None:
    """The columns as Arrow arrays whose CSV text is pandas', or None when one has none."""
    if not all(map(_may_convert, table.dtypes)):  # (before converting any: a float column
        return None                               # at the end would waste the others' work)
    found = []
    for _, column in table.items():
        converted = _column(column)
        if converted is None:
            return None
        found.append(converted)
    return found


def _may_convert(dtype: object) -> bool:
    return isinstance(dtype, pd.CategoricalDtype) or any(
        check(dtype) for check in (pd.api.types.is_bool_dtype, pd.api.types.is_integer_dtype,
                                   pd.api.types.is_float_dtype, pd.api.types.is_string_dtype))


def _column(column: pd.Series) -> pa.Array | None:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = _text(pd.Series(dtype.categories, dtype=object))
        if categories is None:
            return None
        codes = column.cat.codes.to_numpy()
        return pa.DictionaryArray.from_arrays(
            pa.array(codes, mask=codes < 0), categories).cast(pa.string())
    if pd.api.types.is_bool_dtype(dtype):
        values = pa.array(column, from_pandas=True).cast(pa.int8())
        return pa.DictionaryArray.from_arrays(values, _BOOL_TEXT).cast(pa.string())
    if pd.api.types.is_integer_dtype(dtype):
        return pa.array(column, from_pandas=True)
    if pd.api.types.is_float_dtype(dtype):  # pandas' own conversion to text (numpy's repr)
        text = column.array.astype(str) if isinstance(dtype, pd.api.extensions.ExtensionDtype) \
            else column.to_numpy().astype(str)
        return pa.array(np.asarray(text, dtype=object), type=pa.string(),
                        mask=column.isna().to_numpy())
    if pd.api.types.is_string_dtype(dtype):
        return _text(column)
    return None  # times, mixed objects, ...: pandas formats them its own way


def _text(column: pd.Series) -> pa.Array | None:
    """Text cells (``str`` only; NA: null) that need no quotes, else None."""
    if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):
        return None
    values = pa.array(np.asarray(column, dtype=object), type=pa.string(), from_pandas=True)
    if pc.any(pc.match_substring_regex(values, _NEEDS_QUOTES)).as_py():
        return None
    return values
