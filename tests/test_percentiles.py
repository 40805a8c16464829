"""pktkit.analysis.percentiles: percentiles from partitions, in two passes, equal to
np.percentile over all samples; partials bounded by the bins, not by the samples."""

from __future__ import annotations

import numpy as np

from pktkit.analysis.medians import bucket_of
from pktkit.analysis.percentiles import (
    Sampled,
    count_samples,
    percentile_table,
    values_in_bins,
    wanted_bins,
)

PERCENTS = (("p50", 50), ("p90", 90), ("p99", 99), ("p0", 0), ("p100", 100), ("p33", 33.3))
SCOPES = ["a", "b", "c", "d"]


def _in_parts(values: np.ndarray, group: np.ndarray, k: int):
    pieces = np.array_split(np.arange(len(values)), k)
    samples = [[Sampled("m", group[i], SCOPES, values[i], i)] for i in pieces]
    wanted = wanted_bins([count_samples(s) for s in samples], [p for _, p in PERCENTS])
    return wanted, samples, percentile_table(
        wanted, [values_in_bins(s, wanted) for s in samples], PERCENTS)


def test_equal_to_numpy_on_heavy_tails_negatives_and_ties() -> None:
    rng = np.random.default_rng(7)
    for trial in range(90):  # (30 of each kind of values)
        n = int(rng.integers(1, 300))
        values = [(rng.pareto(1.2, n) * 10 ** rng.integers(1, 7)).astype(np.int64),
                  rng.integers(-5000, 5000, n), rng.integers(0, 3, n) * 1000][trial % 3]
        group = rng.integers(0, 4, n)
        _, _, table = _in_parts(values, group, int(rng.integers(1, 6)))
        assert sorted(table["scope"]) == sorted({SCOPES[g] for g in group})
        for row in table.itertuples(index=False):
            mine = values[group == SCOPES.index(row.scope)]
            want = np.percentile(mine, [p for _, p in PERCENTS])
            got = np.array([getattr(row, c) for c, _ in PERCENTS])
            assert np.array_equal(got, want), (want, got)  # bit for bit, not approximately
            assert (row.count, row.min, row.max) == (len(mine), mine.min(), mine.max())


def test_groups_in_order_of_first_sample() -> None:
    values, group = np.arange(6), np.array([2, 0, 2, 1, 0, 3])
    _, _, table = _in_parts(values, group, 3)
    assert list(table["scope"]) == ["c", "a", "b", "d"]


def test_bins_keep_the_order_of_values() -> None:
    values = np.unique(np.concatenate([np.arange(-3000, 3000), 2 ** np.arange(62),
                                       -(2 ** np.arange(62)), 10 ** np.arange(19)]))
    assert (np.diff(bucket_of(np.sort(values))) >= 0).all()  # the bins percentiles use


def test_partials_are_bounded_by_bins_not_samples() -> None:
    """Delays of one link (a floor and an exponential excess, µs timestamps): 4× the samples
    leave both passes' partials about the same size."""
    rng = np.random.default_rng(1)

    def sizes(n: int) -> tuple[int, int]:
        values = (50_000 + rng.exponential(20_000, n)).astype(np.int64) // 1000 * 1000
        wanted, samples, _ = _in_parts(values, np.zeros(n, np.int64), 2)
        first = sum(len(count_samples(s).bins) for s in samples)
        return first, sum(len(values_in_bins(s, wanted)) for s in samples)

    (small_1, small_2), (large_1, large_2) = sizes(200_000), sizes(800_000)
    assert large_1 < 1.2 * small_1
    assert max(small_2, large_2) <= 2 * len(PERCENTS) * 2 * 2  # ranks × parts × few values
    assert small_1 < 2_000  # a few hundred distinct µs values: not 200,000 samples
