"""Each row's connection tuple as one int64 key, for the NAT passes over millions of rows.

``(proto, src, sport, dst, dport)`` becomes a mixed-radix number: protocol and ports as their
offset from the lowest value present, addresses as their index among the column's distinct
ones (found by pyarrow, no Python str per row). Keys stay below 2**62; when they would not, the
digits are renumbered densely (:attr:`TupleKeys.renumbered`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.extensions import ExtensionArray

from pktkit.analysis.tuples import ICMP_PROTOS, Tuple5

ECHO_REQUEST = {1: 8, 58: 128}
ECHO_REPLY = {1: 0, 58: 129}
# The passes over every row of the packets table go this many rows at a time, so that their
# temporaries stay small next to the table: the only per-row state is each row's tuple key and
# packet number.
CHUNK = 1 << 16


KEY_LIMIT = 1 << 62  # tuple keys stay below this (int64)


def chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK):
        yield slice(start, min(start + CHUNK, n))


def int_values(values: ExtensionArray, na_value: int) -> np.ndarray:
    """int64 numpy values, na_value for NA (through Int64, as any column, when not integer).

    Always a new array, never a view of the table's: callers change it in place."""
    if not pd.api.types.is_integer_dtype(values.dtype):
        values = values.astype("Int64")
    return values.to_numpy(dtype=np.int64, na_value=na_value, copy=True)


def tuple_ints(packets: pd.DataFrame, rows: slice | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """proto, sport, dport of some rows (-1: NA), an ICMP echo's identifier as both ports; and
    which rows are echo requests and replies.

    Protocol numbers, ports and identifiers are unsigned (the table's SCHEMA), so -1 is free."""
    proto = int_values(packets["proto"].array[rows], -1)
    sport = int_values(packets["sport"].array[rows], -1)
    dport = int_values(packets["dport"].array[rows], -1)
    icmp_type = (int_values(packets["icmp_type"].array[rows], -1) if "icmp_type" in packets.columns
                 else np.full(len(proto), -1, np.int64))
    request = np.zeros(len(proto), bool)
    reply = np.zeros(len(proto), bool)
    for number in ICMP_PROTOS:
        icmp = proto == number
        request |= icmp & (icmp_type == ECHO_REQUEST[number])
        reply |= icmp & (icmp_type == ECHO_REPLY[number])
    if "icmp_id" in packets.columns:
        echo = request | reply
        identifier = int_values(packets["icmp_id"].array[rows], -1)[echo]
        sport[echo] = identifier
        dport[echo] = identifier
    return proto, sport, dport, request, reply


def as_strings(values: ExtensionArray) -> ExtensionArray:
    """Some values as a pandas string array (addresses and node names are compared as text)."""
    return values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")


class _IntDigit:
    """Protocol number or port as a digit of a tuple key: its offset from the lowest value."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.radix = high - low + 1

    def digits(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The digits of some rows' values (from :func:`tuple_ints`, -1: NA) and which are
        missing."""
        missing = values < 0
        return np.where(missing, 0, values - self.low), missing

    def digits_of(self, values: list[object]) -> np.ndarray:
        """The digits of some values, -1 for those no row has (None, out of range)."""
        digits = np.array([v if isinstance(v, int | np.integer) else -1 for v in values],
                          np.int64)
        offset = digits - self.low
        return np.where((digits < 0) | (offset < 0) | (offset >= self.radix), -1, offset)


class _AddressDigit:
    """src or dst as a digit of a tuple key: the address's index among the column's distinct
    ones, found by pyarrow (no Python str per row)."""

    def __init__(self, column: pd.Series) -> None:
        self.values = column.array
        distinct: dict[str, None] = {}
        for rows in chunks(len(self.values)):
            distinct |= dict.fromkeys(pc.unique(pa.array(as_strings(self.values[rows])))
                                      .drop_null().to_pylist())
        self.index = {address: i for i, address in enumerate(distinct)}
        self.value_set = pa.array(list(distinct), type=pa.large_string())
        self.radix = max(len(distinct), 1)

    def digits(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        found = pc.index_in(pa.array(as_strings(self.values[rows])), value_set=self.value_set)
        missing = found.is_null().to_numpy(zero_copy_only=False)
        return found.fill_null(0).to_numpy(), missing

    def digits_of(self, values: list[object]) -> np.ndarray:
        """The digits of some values, -1 for those no row has."""
        return np.array([self.index.get(v, -1) if isinstance(v, str) else -1 for v in values],
                        np.int64)


def _value_range(packets: pd.DataFrame, names: Iterable[str]) -> tuple[int, int]:
    """Lowest and highest value of some integer columns (0, 0 when all are NA or absent)."""
    lows, highs = [], []
    for name in names:
        if name in packets.columns and packets[name].notna().any():
            lows.append(int(packets[name].min()))
            highs.append(int(packets[name].max()))
    return (min(lows), max(highs)) if lows else (0, 0)


class TupleKeys:
    """Each row's tuple ``(proto, src, sport, dst, dport)`` as one int64 key (-1: no tuple).

    A key is a mixed-radix number with one digit per field (``_IntDigit``, ``_AddressDigit``),
    so equal tuples have equal keys and no Python object is made per row. Should the next digit
    overflow int64, the keys so far are first renumbered densely (pd.factorize)."""

    # Tuple5 position of each digit, most significant first
    _POSITIONS = (0, 2, 4, 1, 3)

    def __init__(self, packets: pd.DataFrame) -> None:
        n = len(packets)
        proto_low, proto_high = _value_range(packets, ["proto"])
        port_low, port_high = _value_range(packets, ["sport", "dport", "icmp_id"])
        numbers = [_IntDigit(proto_low, proto_high), _IntDigit(port_low, port_high),
                   _IntDigit(port_low, port_high)]
        addresses = [_AddressDigit(packets["src"]), _AddressDigit(packets["dst"])]
        self._digits: list[_IntDigit | _AddressDigit] = [*numbers, *addresses]
        self.key = np.zeros(n, np.int64)
        has_tuple = np.ones(n, bool)

        def add(digit: _IntDigit | _AddressDigit, rows: slice, digits: np.ndarray,
                missing: np.ndarray) -> None:
            part = self.key[rows]  # a view: updated in place
            part *= digit.radix
            part += digits
            has_tuple[rows] &= ~missing

        # proto, sport and dport from one read of their columns per chunk; they cannot
        # overflow (at most 256 × 65,536 × 65,536 keys)
        for rows in chunks(n):
            values = tuple_ints(packets, rows)
            for digit, column in zip(numbers, values[:3], strict=True):
                add(digit, rows, *digit.digits(column))
        span = int(np.prod([digit.radix for digit in numbers], dtype=object))
        # per digit: the keys before it, when they were renumbered to make room for it
        self.renumbered: list[pd.Index | None] = [None] * len(numbers)
        for address in addresses:
            renumbered = None
            if span * address.radix > KEY_LIMIT:
                codes, uniques = pd.factorize(self.key)
                self.key = codes.astype(np.int64, copy=False)
                renumbered, span = pd.Index(uniques), len(uniques)
            for rows in chunks(n):
                add(address, rows, *address.digits(rows))
            span *= address.radix
            self.renumbered.append(renumbered)
        self.key[~has_tuple] = -1

    def keys_of(self, tuples: list[Tuple5]) -> np.ndarray:
        """The keys of some tuples, -1 for those that no row can have."""
        keys = np.zeros(len(tuples), np.int64)
        possible = np.ones(len(tuples), bool)
        for digit, renumbered, position in zip(self._digits, self.renumbered, self._POSITIONS,
                                                strict=True):
            if renumbered is not None:
                keys = renumbered.get_indexer(keys).astype(np.int64)
                possible &= keys >= 0
            digits = digit.digits_of([tup[position] for tup in tuples])
            possible &= digits >= 0
            keys = keys * digit.radix + np.maximum(digits, 0)
        return np.where(possible, keys, -1)
