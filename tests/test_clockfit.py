"""pktkit.analysis.clockfit: one node pair's clock from crossings both ways, against clocks
whose offset and drift we set. Exact recovery without noise, the causality bound for any
positive delays, the reported bound and the drift on floored, queued delays, the error against
the number of crossings, wrong matches, one direction, a short burst."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from pktkit.analysis import clockfit as cf

E = 1_768_471_200_000_000_000  # the epoch of the readings
US = 1000
Delays = Callable[[np.random.Generator, int], np.ndarray]


class Clock:
    """Reads ``t + offset + drift (t − E)`` at true time t. True times relative to E as floats,
    readings as int64 ns (float64 cannot hold 1.7e18 to the nanosecond)."""

    def __init__(self, offset_ns: float = 0.0, drift: float = 0.0) -> None:
        self.offset, self.drift = offset_ns, drift

    def read_rel(self, t_rel: np.ndarray) -> np.ndarray:
        return t_rel + self.offset + self.drift * t_rel

    def read(self, t_rel: np.ndarray, resolution: int = 1) -> np.ndarray:
        reading = np.floor(self.read_rel(np.asarray(t_rel, dtype=np.float64)) / resolution)
        return E + reading.astype(np.int64) * resolution

    def true_rel(self, reading: np.ndarray) -> np.ndarray:
        rel = (np.asarray(reading, dtype=np.int64) - E).astype(np.float64)
        return (rel - self.offset) / (1 + self.drift)


def floored(floor_us: float = 70, excess_us: float = 10, queued: float = 0.0) -> Delays:
    """A link: a hard floor, an exponential excess, and a share of packets queued for a
    heavy-tailed time (Pareto 1.2 from 100 µs, up to 20 ms)."""
    def draw(rng: np.random.Generator, k: int) -> np.ndarray:
        delay = floor_us * US + rng.exponential(excess_us * US, k)
        wait = np.minimum(100 * US * (1 + rng.pareto(1.2, k)), 20_000 * US)
        return delay + np.where(rng.random(k) < queued, wait, 0.0)
    return draw


def crossings(rng: np.random.Generator, a: Clock, b: Clock, n: int, span_ns: float,
              delay: Delays, resolution: int = 1, bursts: int = 0) -> tuple[np.ndarray, ...]:
    """n packets each way (uniform over the span, or in ``bursts`` of back-to-back packets):
    (a → b sends on a's clock, their arrivals on b's, b → a sends on b's, arrivals on a's)."""
    def times() -> np.ndarray:
        if not bursts:
            return np.sort(rng.uniform(0, span_ns, n))
        starts = np.sort(rng.uniform(0, span_ns, bursts))
        return np.sort(starts[rng.integers(0, bursts, n)] + rng.uniform(0, 5e6, n))
    t1, t2 = times(), times()
    d1, d2 = delay(rng, n), delay(rng, n)
    return (a.read(t1, resolution), b.read(t1 + d1, resolution), b.read(t2, resolution),
            a.read(t2 + d2, resolution)), d1, d2


def theta(a: Clock, b: Clock, x_a: np.ndarray) -> np.ndarray:
    """b − a at a-clock readings x_a."""
    t = a.true_rel(x_a)
    return b.read_rel(t) - a.read_rel(t)


def true_drift_ppm(a: Clock, b: Clock) -> float:
    return ((1 + b.drift) / (1 + a.drift) - 1) * 1e6


# -- exact recovery -----------------------------------------------------------------------------


def test_noiseless_symmetric_delays_are_recovered_exactly() -> None:
    rng = np.random.default_rng(1)
    a, b = Clock(), Clock(300e6, 80e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 200, 10e9, lambda r, k: np.full(k, 50e3))
    fit = cf.fit_pair(fs, fr, bs, br)
    assert fit is not None
    xs = np.r_[fs, br]
    assert np.abs(fit.offset_at(xs) - theta(a, b, xs)).max() < 2.0  # ns (rounding)
    assert abs(fit.drift_ppm - 80.0) < 1e-3
    # the only uncertainty left is the round trip: half of it, 50 µs
    assert fit.bound_ns == pytest.approx(50e3, abs=10)


def test_zero_delays_pin_the_line() -> None:
    a, b = Clock(), Clock(-2.5e6, -37e-6)
    t = np.linspace(0, 5e9, 50)
    x, y = a.read(t), b.read(t)
    fit = cf.fit_pair(x, y, y, x)
    assert fit is not None and abs(fit.drift_ppm + 37.0) < 1e-3
    assert np.abs(fit.offset_at(x) - theta(a, b, x)).max() < 2.0
    assert fit.bound_ns < 5.0  # ns: the readings' resolution over the span


# -- bounds -------------------------------------------------------------------------------------


def test_the_causality_bound_holds_for_any_positive_delays() -> None:
    """The feasible polygon contains the truth whatever the (positive) delays: skewed,
    heavy-tailed, asymmetric, few samples, any offset and drift within the prior."""
    rng = np.random.default_rng(7)
    for _ in range(120):
        a = Clock(rng.uniform(-1e9, 1e9), rng.uniform(-200e-6, 200e-6))
        b = Clock(rng.uniform(-1e9, 1e9), rng.uniform(-200e-6, 200e-6))
        n = int(rng.integers(2, 300))
        span = float(rng.choice([1e6, 1e8, 1e9, 3e10]))
        scales = rng.uniform(1e3, 3e5, 2)
        kind = int(rng.integers(3))

        def delay(r: np.random.Generator, k: int, kind: int = kind,
                  scales: np.ndarray = scales) -> np.ndarray:
            s = float(r.choice(scales))
            if kind == 0:
                return s * r.exponential(1.0, k)
            if kind == 1:
                return s * (1 + r.pareto(1.1, k))
            return s * np.maximum(0.05, 1 + 0.3 * r.standard_normal(k))

        (fs, fr, bs, br), _, _ = crossings(rng, a, b, n, span, delay)
        fit = cf.fit_pair(fs, fr, bs, br, bound_mode="guaranteed", isolation=False)
        assert fit is not None and fit.guaranteed
        xs = np.r_[fs, br]
        err = np.abs(fit.offset_at(xs) - theta(a, b, xs))
        assert (err <= fit.bound_at(xs) + 2.0).all()
        assert fit.drift_lo_ppm - 1e-6 <= true_drift_ppm(a, b) <= fit.drift_hi_ppm + 1e-6


def test_reported_bound_and_drift_on_floored_queued_links() -> None:
    """What pktkit captures look like: 10 s, traffic in bursts, delays with a floor and an
    exponential excess, 10 % of packets queued up to 20 ms, µs timestamps. The reported bound
    covers the truth at every crossing, is within half the smallest round trip + 5 µs from
    30 crossings a way, and the drift is within 2 ppm."""
    worst_drift = 0.0
    for seed in range(40):
        rng = np.random.default_rng([11, seed])
        a, b = Clock(), Clock(300e6, 80e-6)
        n = int(rng.integers(30, 300))
        (fs, fr, bs, br), d1, d2 = crossings(rng, a, b, n, 10e9, floored(queued=0.1), US,
                                             bursts=int(rng.integers(4, 12)))
        fit = cf.fit_pair(fs, fr, bs, br)
        assert fit is not None
        xs = np.r_[fs, br]
        err = np.abs(fit.offset_at(xs) - theta(a, b, xs))
        assert (err <= fit.bound_at(xs) + 1.0).all(), seed
        assert fit.bound_ns <= (d1.min() + d2.min()) / 2 + 5 * US, seed
        worst_drift = max(worst_drift, abs(fit.drift_ppm - 80.0))
    assert worst_drift <= 2.0


def test_the_drift_interval_covers_the_truth() -> None:
    """The drift's 99.9 % interval (3.29 σ) holds the truth in every one of 60 draws."""
    for seed in range(60):
        rng = np.random.default_rng([12, seed])
        a, b = Clock(), Clock(-0.1e9, -45e-6)
        (fs, fr, bs, br), _, _ = crossings(rng, a, b, int(rng.integers(10, 100)), 10e9,
                                           floored(queued=0.1), US,
                                           bursts=int(rng.integers(3, 10)))
        fit = cf.fit_pair(fs, fr, bs, br)
        assert fit is not None
        assert abs(fit.drift_ppm + 45.0) <= 3.29 * fit.drift_sigma_ppm, seed


# -- error against the number of crossings ------------------------------------------------------


def test_error_falls_with_the_number_of_crossings() -> None:
    """10 s of µs timestamps, 30 → 30,000 crossings each way on a floored, queued link: the
    median drift error falls with every tenfold more crossings (0.09, 0.03, 0.02, 0.01 ppm:
    fast while the floor is found, then as the timestamps' µs resolution allows), the bound
    falls towards half the smallest round trip (here 70 µs)."""
    ns = [30, 300, 3000, 30000]
    drift, bound = [], []
    for n in ns:
        errors, bounds = [], []
        for seed in range(20 if n <= 3000 else 6):
            rng = np.random.default_rng([n, seed])
            a, b = Clock(), Clock(300e6, 80e-6)
            (fs, fr, bs, br), _, _ = crossings(rng, a, b, n, 10e9, floored(queued=0.1), US)
            fit = cf.fit_pair(fs, fr, bs, br)
            assert fit is not None
            errors.append(abs(fit.drift_ppm - 80.0))
            bounds.append(fit.bound_ns)
        drift.append(float(np.median(errors)))
        bound.append(float(np.median(bounds)))
    slope = np.polyfit(np.log(ns), np.log(np.maximum(drift, 1e-4)), 1)[0]
    assert slope < -0.25, (drift, slope)
    assert all(x > 1.4 * y for x, y in itertools.pairwise(drift)), drift
    assert drift[0] < 0.2 and drift[-1] < 0.02, drift  # ppm
    assert all(x >= y for x, y in itertools.pairwise(bound)), bound
    assert bound[-1] < 71 * US, bound


# -- wrong matches ------------------------------------------------------------------------------


def test_gross_wrong_matches_are_rejected() -> None:
    rng = np.random.default_rng(3)
    a, b = Clock(), Clock(300e6, 80e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 1000, 10e9, floored())
    clean = cf.fit_pair(fs, fr, bs, br)
    bad_f, bad_b = rng.choice(1000, 20, replace=False), rng.choice(1000, 20, replace=False)
    fr2, br2 = fr.copy(), br.copy()
    fr2[bad_f] += rng.choice([-1, 1], 20) * rng.integers(200 * US, 20_000 * US, 20)
    br2[bad_b] += rng.choice([-1, 1], 20) * rng.integers(200 * US, 20_000 * US, 20)
    fit = cf.fit_pair(fs, fr2, bs, br2)
    assert clean is not None and fit is not None
    assert fit.rejected_fwd >= 5 and fit.rejected_back >= 5  # the negative ones at least
    assert abs(fit.drift_ppm - clean.drift_ppm) < 0.5
    good_f = np.setdiff1d(np.arange(1000), bad_f)
    good_b = np.setdiff1d(np.arange(1000), bad_b)
    xs = np.r_[fs[good_f], br[good_b]]
    assert (np.abs(fit.offset_at(xs) - theta(a, b, xs)) <= fit.bound_at(xs)).all()


def test_a_contradiction_is_repaired_by_rejection() -> None:
    """One wrong match 5 ms early on the receiver: without rejection no line fits."""
    rng = np.random.default_rng(4)
    a, b = Clock(), Clock(-40e6, 20e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 100, 2e9, floored())
    fr[50] -= 5_000 * US
    assert cf.feasible_polygon(fs, fr, bs, br)[0] is None
    fit = cf.fit_pair(fs, fr, bs, br, isolation=False)  # the infeasibility step alone
    assert fit is not None and fit.rejected_fwd >= 1
    keep = np.r_[0:50, 51:100]
    xs = np.r_[fs[keep], br]
    assert (np.abs(fit.offset_at(xs) - theta(a, b, xs)) <= fit.bound_at(xs)).all()


# -- degenerate input ---------------------------------------------------------------------------


def test_one_direction_only_is_no_estimate() -> None:
    rng = np.random.default_rng(5)
    (fs, fr, bs, br), _, _ = crossings(rng, Clock(), Clock(1e6), 50, 1e9, floored())
    empty = np.zeros(0, dtype=np.int64)
    assert cf.fit_pair(fs, fr, empty, empty) is None
    assert cf.fit_pair(empty, empty, bs, br) is None


def test_a_short_burst_is_an_offset_with_the_drift_in_its_bound() -> None:
    rng = np.random.default_rng(6)
    a, b = Clock(), Clock(300e6, 80e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 6, 2e6, floored())  # 6 a way in 2 ms
    fit = cf.fit_pair(fs, fr, bs, br)
    assert fit is not None and not fit.drift_resolved and fit.drift_ppm == 0.0
    xs = np.r_[fs, br]
    assert (np.abs(fit.offset_at(xs) - theta(a, b, xs)) <= fit.bound_at(xs)).all()
    # outside the span the bound grows with the drift prior: 1 s later, by >= 500 µs - width
    assert fit.bound_at(np.array([fit.span_ns[1] + 10**9]))[0] > 400 * US


def test_binding_rows_give_the_polygon_all_samples_give() -> None:
    """The hull samples alone bound the lines as all samples do; read the wrong way round
    (each crossing's two sightings swapped), no line fits them."""
    rng = np.random.default_rng(8)
    a, b = Clock(), Clock(1e6, 30e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 400, 5e9, floored(queued=0.2))
    f, k = cf.binding_rows(fs, fr, True), cf.binding_rows(bs, br, False)
    assert len(f) < 40 and len(k) < 40
    whole = cf.feasible_polygon(fs, fr, bs, br)[0]
    hulls = cf.feasible_polygon(fs[f], fr[f], bs[k], br[k])[0]
    assert whole is not None and hulls is not None
    assert (whole.delta[0], whole.delta[-1]) == pytest.approx((hulls.delta[0], hulls.delta[-1]))
    assert cf.feasible_polygon(br, bs, fr, fs)[0] is None


# -- one direction, reduced ---------------------------------------------------------------------


def assert_same_way(one: cf.OneWay, other: cf.OneWay) -> None:
    for name in ("forward", "count", "x_sum", "whole_us", "max_drift_ppm"):
        assert getattr(one, name) == getattr(other, name), name
    for name in ("hull_key", "hull_send", "hull_recv", "key", "send", "recv"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name), name)


@pytest.mark.parametrize("forward", [True, False])
def test_reductions_merge_exactly_however_split(forward: bool) -> None:
    """30,000 samples (beyond the 8,000 of the sample) at a coarse resolution (ties in time,
    equal points), split into 2, 3 and 7 parts in shuffled order: the parts' reductions
    merged are the reduction of all of them (count, exact sum, bounding points, sample), and
    the fit of merged reductions is the fit of all the samples."""
    rng = np.random.default_rng(11)
    a, b = Clock(), Clock(300e6, 80e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, 30_000, 20e9, floored(queued=0.1), 10 * US)
    send, recv = (fs, fr) if forward else (bs, br)
    whole = cf.OneWay.of(send, recv, forward)
    assert whole.count == 30_000 and len(whole.key) == cf.SAMPLE_SIZE and not whole.complete
    assert whole.x_sum == sum(int(x) for x in (send if forward else recv))
    for k in (2, 3, 7):
        part = rng.integers(0, k, len(send))
        ways = [cf.OneWay.of(send[at], recv[at], forward, key=at)
                for at in (rng.permutation(np.flatnonzero(part == i)) for i in range(k))]
        assert_same_way(cf.OneWay.merge(ways[::-1]), whole)
    fits = [cf.fit_pair(fs, fr, bs, br)]
    halves = np.arange(len(fs)) % 2 == 0
    fwd = cf.OneWay.merge([cf.OneWay.of(fs[m], fr[m], True, key=np.flatnonzero(m))
                           for m in (halves, ~halves)])
    back = cf.OneWay.merge([cf.OneWay.of(bs[m], br[m], False, key=np.flatnonzero(m))
                            for m in (~halves, halves)])
    fits.append(cf.fit_ways(fwd, back))
    assert fits[0] is not None and fits[0] == fits[1]


def test_bounding_points_are_the_hull_vertices_that_can_bind() -> None:
    """Against brute force: every point lowest in y − δx for an admissible δ (a fine grid
    of δ within ±D) is kept, and every point kept is an end of the hull or lowest for some
    admissible δ (tried exactly at the slopes to every other point, where the lowest
    changes)."""
    rng = np.random.default_rng(12)
    D = cf.MAX_DRIFT_PPM * 1e-6
    for _ in range(30):
        n = int(rng.integers(3, 200))
        x = np.sort(rng.integers(0, 10**9, n))
        y = rng.integers(0, 10**5, n) + rng.choice([0, 300_000], n, p=[0.9, 0.1])
        kept = set(cf.bounding_points(x, y, np.arange(n)).tolist())
        grid = np.linspace(-D, D, 4001)
        assert set(np.argmin(y[None, :] - grid[:, None] * x[None, :], axis=1).tolist()) <= kept
        ends = {int(np.lexsort((y, x))[0]), int(np.lexsort((y, -x))[0])}
        for p in kept - ends:
            other = x != x[p]
            slopes = np.clip((y[other] - y[p]) / (x[other] - x[p]), -D, D)
            assert any(y[p] - d * x[p] <= (y - d * x).min() + 1e-6 for d in slopes), p
