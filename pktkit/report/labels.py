"""Labels for people: an overlay, a 5-tuple, a NAT translation, a clock model as text;
columns as strings."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    distinct_rows,
)
from pktkit.capture.headers import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP


def text_column(series: pd.Series) -> pd.Series:
    """A category/string column as the nullable string dtype (NA stays NA)."""
    return series.astype("string")


def joined(texts: set[str], separator: str = ", ") -> str | None:
    """Distinct texts, sorted, joined (None when there are none)."""
    return separator.join(sorted(texts)) or None


def distinct_text(rows: Rows, name: str, groups: np.ndarray, count: int) -> list[set[str]]:
    """Per group, the distinct non-NA values of column ``name`` as text (``str`` of each)."""
    at = distinct_rows(groups, rows.codes(name))
    found: list[set[str]] = [set() for _ in range(count)]
    for group, value in zip(groups[at].tolist(), rows.take(name, at).tolist(), strict=True):
        found[group].add(str(value))
    return found


def key_text(codes: np.ndarray, names: list[str]) -> pd.arrays.StringArray:
    return pd.array([names[code] for code in codes.tolist()], dtype="string")


def plain(value: Any) -> Any:
    """A pandas/numpy scalar as a JSON-ready Python value (NA → None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def overlay_label(encap: Any, vni: Any) -> str:
    """"vxlan vni 1", "ipip", "untunnelled": an encapsulation and its VNI for labels."""
    if str(encap) == NO_TUNNEL:
        return "untunnelled"
    return str(encap) + ("" if plain(vni) is None else f" vni {int(vni)}")


def tuple_text(proto: Any, a: Any, a_port: Any, b: Any, b_port: Any) -> str:
    """"tcp 10.0.0.2:80 → 10.0.0.3:5000" (IPv6 addresses with a port in brackets)."""
    names = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp",
             IPPROTO_ICMPV6: "icmpv6"}
    proto = plain(proto)

    def end(addr: Any, port: Any) -> str:
        port = plain(port)
        addr = str(addr)
        if port is None:
            return addr
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    return f"{names.get(proto, f'proto {proto}')} {end(a, a_port)} → {end(b, b_port)}"


def nat_tuple(row: Mapping[str, Any], side: str) -> str:
    """A NAT flow's ``orig`` or ``xlat`` tuple as text; for ICMP the "ports" are the echo
    identifier, so they are written as such."""
    if plain(row["proto"]) in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        text = tuple_text(row["proto"], row[f"{side}_src"], None, row[f"{side}_dst"], None)
        return f"{text} id {plain(row[f'{side}_sport'])}"
    return tuple_text(row["proto"], row[f"{side}_src"], row[f"{side}_sport"],
                      row[f"{side}_dst"], row[f"{side}_dport"])


def clock_model_text(row: Mapping[str, Any]) -> str:
    """A ``clock_offsets`` row in words: "node-b: +300.000 ms at 10:00:00, +80.0 ppm, ± 4 µs"
    (the offset at ``at_ns``, UTC; the drift; the bound), or why there is no model."""
    node = row["node"]
    if row["node"] == row["reference_node"]:
        return f"{node}: the reference clock"
    offset, bound = plain(row.get("offset_ns")), plain(row.get("bound_ns"))
    if offset is None or bound is None:
        return f"{node}: no estimate (no packet crossed to and from {row['reference_node']})"
    at = plain(row.get("at_ns"))
    when = "" if at is None else datetime.datetime.fromtimestamp(
        at / 1e9, datetime.UTC).strftime(" at %H:%M:%S")
    drift = plain(row.get("drift_ppm")) or 0.0
    within = f"{bound / 1000:.0f} µs" if bound >= 1000 else f"{bound} ns"
    return f"{node}: {offset / 1e6:+.3f} ms{when}, {drift:+.1f} ppm, ± {within}"
