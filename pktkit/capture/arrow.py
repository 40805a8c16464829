"""Arrow arrays and the table's Arrow schema, built without pandas.

``pktkit packets -o x.parquet`` never imports pandas (a fifth of its run time on a 1M-packet
file); the Arrow schema carries the pandas metadata that gives the table's dtypes back when
pandas reads the file.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from pktkit.capture.schema import PACKET_COLUMNS, Column

# Arrow arrays are built from their buffers (zero-copy), not with ``pa.array``: that one
# imports pandas on first use, to check its argument's type.


def arrow_array(values: np.ndarray, mask: np.ndarray | None, type_: pa.DataType) -> pa.Array:
    """A numpy array of ``type_``'s width (or bools) and its NA mask (True: NA) → Arrow."""
    n = len(values)
    data = np.ascontiguousarray(values)
    if pa.types.is_boolean(type_):
        data = np.packbits(data, bitorder="little")
    elif data.dtype.itemsize * 8 != type_.bit_width:
        raise TypeError(f"{data.dtype} values for an Arrow {type_} array")
    if mask is None or not mask.any():
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(data)], null_count=0)
    validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(data)],
                                 null_count=int(mask.sum()))


def arrow_strings(texts: list[str]) -> pa.Array:
    """Python strings → an Arrow large_string array."""
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def string_array(codes: np.ndarray, dictionary: pa.Array) -> pa.Array:
    """String codes → an Arrow string array (only the dictionary's strings were ever boxed)."""
    if not len(dictionary):
        return pa.nulls(len(codes), pa.large_string())
    return dictionary.take(arrow_array(codes, codes < 0, pa.int32()))


def _pandas_column(column: Column) -> dict[str, object]:
    """The pandas metadata pyarrow writes for a column of the table's pandas dtype."""
    name = column.name
    if column.kind == "int":
        pandas_type, numpy_type = np.dtype(column.numpy).name, column.pandas_dtype
    elif column.kind == "string":
        pandas_type, numpy_type = "object", "string"
    elif column.kind == "category":
        return {"name": name, "field_name": name, "pandas_type": "categorical",
                "numpy_type": "int8", "metadata": {
                    "num_categories": len(column.categories or ()), "ordered": False}}
    else:  # fragment, more_fragments
        pandas_type, numpy_type = "bool", "boolean"
    return {"name": name, "field_name": name, "pandas_type": pandas_type,
            "numpy_type": numpy_type, "metadata": None}


def _arrow_type(column: Column) -> pa.DataType:
    if column.kind == "int":
        return pa.from_numpy_dtype(column.numpy)
    if column.kind == "string":
        return pa.large_string()
    if column.kind == "category":  # an open vocabulary (encap, error) may outgrow int8 codes
        index = pa.int32() if column.categories is None or column.open_vocabulary else pa.int8()
        return pa.dictionary(index, pa.large_string())
    return pa.bool_()


def arrow_schema() -> pa.Schema:
    """The table's Arrow schema, with the pandas metadata that restores its dtypes."""
    metadata = {"index_columns": [], "column_indexes": [],
                "columns": [_pandas_column(c) for c in PACKET_COLUMNS], "attributes": {},
                "creator": {"library": "pyarrow", "version": pa.__version__}}
    return pa.schema([pa.field(c.name, _arrow_type(c)) for c in PACKET_COLUMNS],
                     metadata={b"pandas": json.dumps(metadata).encode()})
