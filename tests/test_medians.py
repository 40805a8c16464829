"""Exact medians in two mergeable passes (pktkit.analysis.medians): equal to numpy's and
pandas' medians of the same values, however the values are split into parts, and bounded in
size: the counts stop growing once the buckets fill, whatever the number of values."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pktkit.analysis.medians import (
    SUB_BUCKETS,
    Counts,
    _one_key,
    bucket_of,
    coarse_counts,
    exact_medians,
    fine_counts,
    medians,
    select,
)


def test_buckets_rise_with_the_value_and_hold_a_fraction_of_it() -> None:
    rng = np.random.default_rng(0)
    values = np.unique(np.r_[np.arange(-5000, 5000), rng.integers(-2**62, 2**62, 50_000),
                             2 ** np.arange(63) - 1, 2 ** np.arange(62), -(2 ** np.arange(62))])
    buckets = bucket_of(values)
    assert (np.diff(buckets) >= 0).all()
    assert np.array_equal(bucket_of(np.arange(2 * SUB_BUCKETS)), np.arange(2 * SUB_BUCKETS))
    # a bucket spans at most 1/SUB_BUCKETS of its values
    start = rng.integers(1, 2**60, 10_000)
    assert (bucket_of(start + start // SUB_BUCKETS + 1) > bucket_of(start)).all()


@pytest.mark.parametrize("seed", range(6))
def test_medians_of_parts_equal_the_medians_of_the_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    group = rng.integers(-1, 6, n)
    values = (rng.exponential(10 ** rng.integers(1, 9), n).astype(np.int64) if seed % 2 else
              rng.integers(-50, 50, n) * 1000)  # whole µs: many ties
    want = pd.Series(values).groupby(group).median()
    groups, got = exact_medians(group, values)
    assert np.array_equal(groups, want.index.to_numpy())
    assert np.array_equal(got, want.to_numpy())  # bit for bit: the same float64 mean
    part = rng.integers(0, 5, n)
    coarse = Counts.merge(coarse_counts(group[part == i], values[part == i]) for i in range(5))
    selection = select(coarse)
    fine = Counts.merge(fine_counts(group[part == i], values[part == i], selection)
                        for i in range(5))
    assert np.array_equal(medians(fine, selection), got)
    assert exact_medians(np.zeros(n, np.int64), values)[1][0] == np.median(values)


def test_the_counts_do_not_grow_with_the_values() -> None:
    """Twenty groups of heavy-tailed ns delays: four times the values, about the same counts
    (the coarse ones fill their buckets; the fine ones hold at most the values of two buckets
    per group)."""
    rng = np.random.default_rng(1)
    sizes = []
    for n in (10**6, 4 * 10**6):
        group = rng.integers(0, 20, n)
        values = (rng.pareto(2.5, n) * 30_000 * (1 + group)).astype(np.int64) + 2_000
        coarse = coarse_counts(group, values)
        selection = select(coarse)
        fine = fine_counts(group, values, selection)
        # the bound of the fine pass: two buckets per group, a bucket at most 1/SUB_BUCKETS of
        # its values wide
        widest = 2 * (selection.group.size * (values.max() // SUB_BUCKETS + 1))
        assert len(fine.count) <= widest
        sizes.append(len(pickle.dumps(coarse)) + len(pickle.dumps(fine)))
        assert np.array_equal(medians(fine, selection),
                              pd.Series(values).groupby(group).median().to_numpy())
    assert sizes[1] < 1.3 * sizes[0], sizes


@pytest.mark.parametrize("spread", ["narrow", "wide", "full"])
def test_counts_are_the_distinct_pairs_sorted_by_group_then_key(spread: str) -> None:
    """Counts.of sorts the pairs as one int64 where they fit (narrow, wide: up to the last
    bit), as two keys where not (full: keys over all of int64): the same rows either way,
    as numpy's unique of the stacked pairs gives them."""
    rng = np.random.default_rng(7)
    n = 20_000
    high = {"narrow": 300, "wide": (2**63 - 1) // 16, "full": 2**63 - 1}[spread]
    group = rng.integers(-3, 5, n)
    key = rng.integers(-high, high, n, dtype=np.int64)
    key[rng.random(n) < 0.5] = key[0]  # many repeats
    if spread == "wide":  # 8 groups × a span just under 2**63 / 8
        key[:2] = [-high, high - 1]
    assert (_one_key(group, key) is None) == (spread == "full")
    pairs, want = np.unique(np.c_[group, key], axis=0, return_counts=True)
    got = Counts.of(group, key)
    assert np.array_equal(got.group, pairs[:, 0]) and np.array_equal(got.key, pairs[:, 1])
    assert np.array_equal(got.count, want)
    weighted = Counts.of(group, key, np.full(n, 3))
    assert np.array_equal(weighted.count, 3 * want)
