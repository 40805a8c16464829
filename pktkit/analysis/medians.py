"""Exact medians of many groups of integers, from partitions, in two small mergeable passes.

A median needs the middle values themselves, which no summary of bounded size holds. Two
passes do with little: the first counts each group's values per *bucket* (a log scale with
SUB_BUCKETS per octave, so a bucket spans at most 1/SUB_BUCKETS of its values: at 10 ms, 10 µs),
and tells which buckets hold the group's two middle values (:func:`select`); the second counts
the exact values in just those buckets (:func:`fine_counts`). Both are :class:`Counts`: sparse
(group, key, count) rows, merged by adding, bounded by the buckets and by the values a bucket
can hold, never by how many values there are. The median is the mean of the two middle values
in float64, as numpy's and pandas' are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pktkit.analysis.rows import run_starts

SUB_BITS = 7
SUB_BUCKETS = 1 << SUB_BITS  # buckets per octave; values below this have a bucket each


def bucket_of(values: np.ndarray) -> np.ndarray:
    """The bucket of each int64 value: increasing with the value; exact below 2 × SUB_BUCKETS,
    then SUB_BUCKETS per octave (a value's top SUB_BITS + 1 bits). Negative values mirror the
    positive ones below zero."""
    v = np.asarray(values, np.int64)
    magnitude = np.where(v < 0, -(v + 1), v)  # -1 → 0, -2 → 1, ...: no overflow
    # the octave: the bits beyond the top SUB_BITS + 1. frexp gives the bit length of values
    # below 2**53 exactly; above, rounding may give one too many, taken back here.
    exponent = np.maximum(np.frexp(magnitude.astype(np.float64))[1].astype(np.int64)
                          - (SUB_BITS + 1), 0)
    exponent -= (exponent > 0) & ((magnitude >> exponent) < SUB_BUCKETS)
    bucket = np.where(exponent == 0, magnitude,
                      exponent * SUB_BUCKETS + (magnitude >> exponent))
    return np.where(v < 0, -1 - bucket, bucket)


@dataclass
class Counts:
    """Sparse counts: (group, key, count) rows sorted by group, then key; one row per
    distinct (group, key)."""

    group: np.ndarray  # int64
    key: np.ndarray  # int64: a bucket, or a value
    count: np.ndarray  # int64

    @classmethod
    def of(cls, group: np.ndarray, key: np.ndarray,
           weight: np.ndarray | None = None) -> Counts:
        """The counts of (group, key) pairs, each ``weight`` times (default once)."""
        group, key = np.asarray(group, np.int64), np.asarray(key, np.int64)
        if len(group) and weight is None:
            combined = _one_key(group, key)
            if combined is not None:  # (sorting one key: ~10x faster than lexsort's two)
                pairs, lowest, span = combined
                pairs.sort()
                start = np.flatnonzero(run_starts(pairs))
                counts = np.diff(np.append(start, len(pairs)))
                g, k = np.divmod(pairs[start], span)
                return cls(g + lowest[0], k + lowest[1], counts)
        order = np.lexsort((key, group))
        g, k = group[order], key[order]
        start = np.flatnonzero(run_starts(g, k))
        w = np.ones(len(order), np.int64) if weight is None else \
            np.asarray(weight, np.int64)[order]
        counts = np.add.reduceat(w, start) if len(start) else np.zeros(0, np.int64)
        return cls(g[start], k[start], counts)

    @classmethod
    def merge(cls, parts: Iterable[Counts]) -> Counts:
        parts = list(parts)
        if not parts:
            return cls.of(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cls.of(np.concatenate([p.group for p in parts]),
                      np.concatenate([p.key for p in parts]),
                      np.concatenate([p.count for p in parts]))

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """The groups present (ascending) and how many values each has."""
        start = np.flatnonzero(run_starts(self.group))
        return self.group[start], np.add.reduceat(self.count, start) if len(start) else \
            np.zeros(0, np.int64)


def _one_key(group: np.ndarray, key: np.ndarray,
             ) -> tuple[np.ndarray, tuple[int, int], int] | None:
    """(group, key) pairs as one int64 each that sorts as the pairs do: ``(group − lowest
    group) × span + (key − lowest key)``, with the two lowest values and the span of the
    keys; None when the product would not fit in int64 (keys spread over most of it)."""
    low_group, low_key = int(group.min()), int(key.min())
    span = int(key.max()) - low_key + 1
    if (int(group.max()) - low_group + 1) * span > np.iinfo(np.int64).max:
        return None
    pairs = group - np.int64(low_group)
    pairs *= np.int64(span)
    pairs += key - np.int64(low_key)  # (each term fits, and so does their sum)
    return pairs, (low_group, low_key), span


@dataclass
class Selection:
    """Per group (ascending): the buckets holding its two middle values (ranks ``(n - 1) //
    2`` and ``n // 2``) and their ranks within those buckets."""

    group: np.ndarray
    size: np.ndarray  # values in the group
    lo_bucket: np.ndarray
    hi_bucket: np.ndarray
    lo_rank: np.ndarray
    hi_rank: np.ndarray

    def take(self, group: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Which (group, value) pairs lie in their group's selected buckets."""
        if not len(self.group):
            return np.zeros(len(group), bool)
        at = np.minimum(np.searchsorted(self.group, group), len(self.group) - 1)
        bucket = bucket_of(values)
        return (self.group[at] == group) & ((bucket == self.lo_bucket[at])
                                            | (bucket == self.hi_bucket[at]))


def coarse_counts(group: np.ndarray, values: np.ndarray) -> Counts:
    """The first pass: each group's values counted per bucket."""
    return Counts.of(group, bucket_of(values))


def select(coarse: Counts) -> Selection:
    """The buckets of each group's two middle values, from the merged first pass."""
    groups, sizes = coarse.totals()
    cum = np.cumsum(coarse.count)
    before = cum[np.searchsorted(coarse.group, groups)] - coarse.count[
        np.searchsorted(coarse.group, groups)] if len(groups) else np.zeros(0, np.int64)
    out = []
    for rank in ((sizes - 1) // 2, sizes // 2):
        at = np.searchsorted(cum, before + rank, "right")  # the bucket holding that rank
        out += [coarse.key[at], before + rank - (cum[at] - coarse.count[at])]
    return Selection(groups, sizes, out[0], out[2], out[1], out[3])


def fine_counts(group: np.ndarray, values: np.ndarray, selection: Selection) -> Counts:
    """The second pass: the exact values in each group's selected buckets."""
    keep = selection.take(group, values)
    return Counts.of(group[keep], values[keep])


def medians(fine: Counts, selection: Selection) -> np.ndarray:
    """Per group of ``selection``, the median (float64) from the merged second pass."""
    out = np.zeros(len(selection.group), np.float64)
    bucket = bucket_of(fine.key)
    start = np.searchsorted(fine.group, selection.group, "left")
    end = np.searchsorted(fine.group, selection.group, "right")
    for i in range(len(selection.group)):
        keys, counts, buckets = (x[start[i]:end[i]] for x in (fine.key, fine.count, bucket))
        middle = []
        for chosen, rank in ((selection.lo_bucket[i], selection.lo_rank[i]),
                             (selection.hi_bucket[i], selection.hi_rank[i])):
            inside = buckets == chosen
            cum = np.cumsum(counts[inside])
            middle.append(float(keys[inside][np.searchsorted(cum, rank, "right")]))
        out[i] = (middle[0] + middle[1]) / 2
    return out


def exact_medians(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both passes on values at hand: the groups present (ascending) and their medians."""
    selection = select(coarse_counts(group, values))
    return selection.group, medians(fine_counts(group, values, selection), selection)
