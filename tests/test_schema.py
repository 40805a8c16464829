"""pktkit.capture.schema: the packet table declared once; every other form of it derives from
the declaration and agrees with it."""

from __future__ import annotations

import pandas as pd

from pktkit.capture.arrow import arrow_schema
from pktkit.capture.frame import SCHEMA
from pktkit.capture.schema import COLUMNS, INT_COLUMNS, PACKET_COLUMNS


def test_every_column_is_declared_once_with_its_meaning() -> None:
    names = [c.name for c in PACKET_COLUMNS]
    assert len(names) == len(set(names)) == len(COLUMNS)
    assert all(len(c.doc) > 10 for c in PACKET_COLUMNS)


def test_pandas_and_arrow_schemas_derive_from_the_declaration() -> None:
    assert list(SCHEMA) == list(COLUMNS) == arrow_schema().names
    for column in PACKET_COLUMNS:
        dtype = pd.Series([], dtype=SCHEMA[column.name]).dtype
        if column.kind == "int":
            assert str(dtype) == column.pandas_dtype  # e.g. uint32 → UInt32
            assert pd.api.types.is_integer_dtype(dtype) and column.name in INT_COLUMNS
        elif column.kind == "category":
            assert isinstance(dtype, pd.CategoricalDtype)
            if column.categories is not None:
                assert tuple(dtype.categories) == column.categories
        else:
            assert str(dtype) == {"bool": "boolean", "string": "string"}[column.kind]
