"""Durations as people write them (``20ms``, ``1.5s``, ``250us``), read into nanoseconds.

A shared leaf: the generator's ``--impair queue=DURATION`` and the analyzer's ``--window
DURATION`` read the same spelling.
"""

from __future__ import annotations

import re

from pktkit.errors import UsageError

NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|µs|ms|s)\s*")


def parse_duration(name: str, text: str) -> int:
    """``text`` (a number and a unit: ns, us or µs, ms, s) as whole nanoseconds; a
    :class:`UsageError` naming ``name`` otherwise. Zero and negative durations are refused."""
    match = _DURATION.fullmatch(str(text))
    value = float(match.group(1)) * NS_PER_UNIT[match.group(2)] if match else 0.0
    if not match or value < 1:
        raise UsageError(f"{name} {text!r}: give a positive duration with its unit, e.g. 20ms, "
                         "250us, 1.5s")
    return round(value)


def duration_text(ns: int) -> str:
    """A duration in the largest unit that keeps it readable: ``20ms``, ``1.5s``, ``250us``."""
    for unit in ("s", "ms", "us"):
        if abs(ns) >= NS_PER_UNIT[unit]:
            return f"{ns / NS_PER_UNIT[unit]:g}{unit}"
    return f"{ns}ns"
