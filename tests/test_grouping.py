"""pktkit.analysis.grouping: the per-slot median behind the gap limits equals pandas' groupby
median, computed without its hash tables; groups cut at the window and at unknown steps only;
repeated slots found."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pktkit.analysis import grouping
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


def test_a_queued_packet_stays_whole_and_look_alikes_apart() -> None:
    """Slots 0 → 1 known (most packets take that step in 10 µs), 2 → 3 known too. A packet
    held 15 ms between 0 and 1 is one group; a run 0, 1, 2, 3 whose 1 → 2 step nobody takes
    is cut there when it is slower than the gap limit; a gap beyond the window always cuts."""
    key, slot, ts = [], [], []
    for packet in range(200):  # the typical traffic: tight groups teach the steps
        base = packet * 10**7
        key += [packet, packet, 10_000 + packet, 10_000 + packet]
        slot += [0, 1, 2, 3]
        ts += [base, base + 10_000, base + 50_000, base + 60_000]
    key += [7777, 7777, 8888, 8888, 8888, 8888, 9999, 9999]
    slot += [0, 1, 0, 1, 2, 3, 0, 1]
    ts += [0, 15_000_000, 0, 10_000, 400_000_000, 400_010_000, 0, 2 * 10**9]
    key, slot, ts = (np.array(a, np.int64) for a in (key, slot, ts))
    slot = slot.astype(np.int32)
    order = np.lexsort((ts, key))
    paths = grouping.learn_paths(key, slot, ts, order, 4, 10**9)
    assert set(paths.transitions) == {(0, 1), (2, 3)}
    assert paths.transitions[(0, 1)] == 10_000
    group, starts, clean = grouping.clean_groups(key, slot, ts, order, paths, 10**9)
    of = {k: set(group[np.flatnonzero(key[order] == k)].tolist()) for k in (7777, 8888, 9999)}
    assert len(of[7777]) == 1  # held 15 ms on a known step: one packet
    assert len(of[8888]) == 2  # 0.4 s on a step nobody takes: two look-alikes
    assert len(of[9999]) == 2  # 2 s: beyond the window
    assert clean.all() and len(starts) == 400 + 1 + 2 + 2


def test_a_repeated_slot_is_found_in_small_and_large_groups() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 20, 300)
    group = np.repeat(np.arange(300), sizes)
    slot = rng.integers(0, 25, len(group))
    want = pd.Series(slot).groupby(group).apply(lambda s: s.duplicated().any()).to_numpy()
    assert np.array_equal(grouping._repeats_slot(group, slot, sizes), want)


def test_gap_limits_follow_their_rule() -> None:
    """The gap limit after each slot, computed here from its definition with pandas: GAP_FACTOR
    times the median gap after the slot to the next sighting of the key (the median over all
    slots for a slot that is mostly last, or has no gap), within MIN_GAP_LIMIT_NS and the
    window; the whole window when no key is seen twice."""
    rng = np.random.default_rng(3)
    window = 10**9
    for trial in range(100):
        n = int(rng.integers(2, 600))
        slots = int(rng.integers(1, 6))
        key = rng.integers(0, max(1, n // 4), n)
        slot = rng.integers(0, slots, n).astype(np.int32)
        scale = 10 ** int(rng.integers(2, 9))
        ts = rng.integers(0, scale, n) if trial % 2 else rng.integers(0, 5, n) * scale
        order = np.lexsort((ts, key))
        k, s, t = key[order], slot[order], ts[order]
        steps = pd.DataFrame({"slot": s[:-1], "gap": t[1:] - t[:-1]})[k[1:] == k[:-1]]
        if steps.empty:
            want = np.full(slots, window)
        else:
            typical = np.full(slots, float(steps["gap"].median()))
            per_slot = steps.groupby("slot")["gap"]
            for code, median in per_slot.median().items():
                if per_slot.size()[code] * 2 >= (s == code).sum():
                    typical[code] = median
            want = np.clip(grouping.GAP_FACTOR * typical, grouping.MIN_GAP_LIMIT_NS,
                           window).astype(np.int64)
        got = grouping.gap_limits(key, slot, ts, order, slots, window)
        assert np.array_equal(got, want), trial
