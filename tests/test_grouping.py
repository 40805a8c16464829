"""pktkit.analysis.grouping: the per-slot median behind the gap limits equals pandas' groupby
median, computed without its hash tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pktkit.analysis.grouping import group_medians


def test_group_medians_match_pandas() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        values = rng.integers(0, 10**12, n)
        code = rng.integers(0, 7, n)
        present, medians = group_medians(values, code, 7)
        want = pd.Series(values).groupby(code).median()
        assert np.array_equal(present, want.index.to_numpy())
        assert np.array_equal(medians, want.to_numpy())
