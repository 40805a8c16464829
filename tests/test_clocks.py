"""pktkit.analysis.clocks: pair fits chained into each node's clock against the reference, the
correction applied only when significant, timestamps moved to the reference clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_clockfit import US, Clock, E, crossings, floored

from pktkit.analysis import clockfit as cf
from pktkit.analysis import clocks


def fit(rng: np.random.Generator, a: Clock, b: Clock, n: int, span: float) -> cf.PairFit:
    found = cf.fit_pair(*crossings(rng, a, b, n, span, floored(), US)[0])
    assert found is not None
    return found


@pytest.mark.parametrize("inverted", [False, True])
def test_three_nodes_chain_through_the_middle_one(inverted: bool) -> None:
    """ref — b — c with no ref — c traffic: c's model is composed through b, its bound is the
    sum, and raw timestamps map to reference time within it."""
    rng = np.random.default_rng(8)
    ref, b, c = Clock(), Clock(300e6, 80e-6), Clock(-200e6, -50e-6)
    pairs = {(0, 1): fit(rng, ref, b, 500, 20e9)}
    if inverted:  # the pair stored the other way round: its a-clock is c's
        pairs[(2, 1)] = fit(rng, c, b, 500, 20e9)
    else:
        pairs[(1, 2)] = fit(rng, b, c, 500, 20e9)
    found = clocks.chain(pairs, 3)
    assert all(clock is not None for clock in found)
    assert found[0].bound_ns == 0 and found[0].offset_ns == 0  # type: ignore[union-attr]
    assert found[2].path == (0, 1, 2)  # type: ignore[union-attr]
    assert abs(found[1].drift_ppm - 80) < 1  # type: ignore[union-attr]
    assert abs(found[2].drift_ppm + 50) < 1  # type: ignore[union-attr]
    assert found[2].bound_ns <= sum(p.bound_ns for p in pairs.values()) + 1  # type: ignore
    t = np.linspace(0.5e9, 19.5e9, 200)
    for code, clock in ((1, b), (2, c)):
        model = found[code]
        assert model is not None
        err = np.abs((model.to_reference(clock.read(t)) - E) - t)
        assert (err <= model.bound_at(E + t.astype(np.int64)) + 2).all()


def test_the_chain_takes_the_tighter_path_and_skips_missing_nodes() -> None:
    rng = np.random.default_rng(9)
    ref, b, c = Clock(), Clock(1e6, 10e-6), Clock(2e6, -10e-6)
    few = fit(rng, ref, c, 8, 1e9)
    many_rb, many_bc = fit(rng, ref, b, 3000, 30e9), fit(rng, b, c, 3000, 30e9)
    found = clocks.chain({(0, 2): few, (0, 1): many_rb, (1, 2): many_bc}, 4)
    assert found[3] is None
    through_b = many_rb.bound_ns + many_bc.bound_ns < few.bound_ns
    assert found[2].path == ((0, 1, 2) if through_b else (0, 2))  # type: ignore[union-attr]


def test_a_model_is_applied_when_the_data_are_sure_of_it() -> None:
    """auto: a 0.3 s offset is applied; equal clocks keep their timestamps (the reference
    clock itself lies within the bound); always and never do what they say."""
    rng = np.random.default_rng(10)
    ref = Clock()
    off = clocks.chain({(0, 1): fit(rng, ref, Clock(300e6, 80e-6), 100, 10e9)}, 2)
    same = clocks.chain({(0, 1): fit(rng, ref, Clock(), 100, 10e9)}, 2)
    assert off[1] is not None and off[1].significant()
    assert same[1] is not None and not same[1].significant()
    assert clocks.applied(off, "auto") == [None, off[1]]
    assert clocks.applied(same, "auto") == [None, None]
    assert clocks.applied(same, "always") == [None, same[1]]
    assert clocks.applied(off, "never") == [None, None]


def test_timestamps_move_to_the_reference_clock_in_place() -> None:
    rng = np.random.default_rng(11)
    b = Clock(300e6, 80e-6)
    model = clocks.chain({(0, 1): fit(rng, Clock(), b, 200, 10e9)}, 2)
    t = np.linspace(1e9, 9e9, 5)
    raw = np.r_[E + t.astype(np.int64), b.read(t), [-1]]
    node = np.array([0] * 5 + [1] * 5 + [1])
    moved = clocks.on_reference_clock(raw, node, model)
    assert moved is raw and moved[-1] == -1  # no timestamp stays none
    assert np.array_equal(moved[:5], E + t.astype(np.int64))
    assert np.abs(moved[5:10] - (E + t)).max() <= model[1].bound_ns  # type: ignore[union-attr]


def test_the_table_has_a_row_per_node_in_its_schema() -> None:
    rng = np.random.default_rng(12)
    found = clocks.chain({(0, 1): fit(rng, Clock(), Clock(300e6, 80e-6), 100, 10e9)}, 3)
    table = clocks.clock_table(["a", "b", "c"], found, clocks.applied(found, "auto"))
    assert {c: str(t) for c, t in table.dtypes.items()} == clocks.CLOCK_SCHEMA
    rows = table.set_index("node")
    assert rows.loc["a", "offset_ns"] == 0 and pd.isna(rows.loc["a", "at_ns"])
    assert abs(rows.loc["b", "offset_ns"] - (300e6 + 80e-6 * (rows.loc["b", "at_ns"] - E))) \
        <= rows.loc["b", "bound_ns"]
    assert abs(rows.loc["b", "drift_ppm"] - 80) < 1
    assert rows.loc["b", "applied_ns"] == rows.loc["b", "offset_ns"]
    assert rows.loc["c"][["offset_ns", "drift_ppm", "bound_ns"]].isna().all()
    assert rows.loc["c", "applied_ns"] == 0
