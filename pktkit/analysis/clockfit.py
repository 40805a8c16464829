"""Clock offset and drift of one node pair from one-way packet crossings (numpy).

Model
-----
Each node's clock is affine in true time. For a node pair (a, b), ``theta(x)`` is b's clock
minus a's clock at the instant a's clock reads x; affine clocks make it a line,
``theta(x) = offset + drift * (x - at)``.

A packet a -> b last seen on a at ``s`` (a's clock) and first seen on b at ``r`` (b's clock)
arrived after it left. With ``phi(x) = x + theta(x)`` (a-time -> b-time, increasing) that is
``r >= phi(s)``, i.e. ``theta(s) <= r - s``: every forward sample is a point ``(s, r - s)`` the
line passes below. A packet b -> a sent at ``s'`` (b's clock), received at ``r'`` (a's) gives
``theta(r') >= s' - r'``: a point ``(r', s' - r')`` the line passes above. Both are exact:
causality and affine clocks are the only assumptions, no delay size enters. Only the lower
convex hull of the forward points and the upper hull of the backward points can bind (Moon,
Skelly and Towsley's LP constraints; the two-hull picture of Zhang, Liu and Xia).

Feasible set (the guaranteed bound)
-----------------------------------
With a prior ``|drift| <= D`` (``max_drift_ppm``, default 500: crystals are within +-100 ppm)
the lines (c, delta) consistent with every sample form a convex polygon
``{f(delta) <= c <= g(delta)}``, ``g(delta) = min_i (u_i - delta x_i)`` (concave, breakpoints
at the forward hull's edge slopes), ``f(delta) = max_j (v_j - delta x_j)`` (convex); the
drift interval is where ``g - f >= 0``. At time x the truth lies in ``[lo(x), hi(x)]``,
``hi`` the max of ``c + delta x`` over the upper chain's vertices, ``lo`` the min over the
lower chain's. For a line L, ``max(hi(x) - L(x), L(x) - lo(x))`` is convex in x, so over the
sample span it peaks at an end: that is ``hard_bound_ns``. No estimator can promise less than
half the width ``hi - lo`` anywhere; at the ends of the span that width is set by the crossings
near the ends, not by the global minima, which is why the guaranteed bound exceeds
``(min_ab + min_ba) / 2`` once the drift is unknown.

Drift estimate
--------------
Moon, Skelly and Towsley's linear program on both directions at once (``"lp"``, the default):
the common slope whose two lines, each under its direction's points, leave the least total
delay above them. It is the maximum-likelihood line for delays with a hard floor and an
exponential excess above it (what the generator stages and what links do), and queued packets
move it only through their times, never through their delays: a congestion episode that holds
every packet of a burst for milliseconds does not tilt it. For a slope the two lines' heights
are the envelopes ``g`` and ``f``, so the objective is convex and piecewise linear in the
slope, minimal at a hull edge slope. Its standard error comes from random halves of the
sample (their spread about the whole fit, over √2), never below the timestamps'
resolution over the span. With fewer than four samples a way, a Tukey-bisquare regression of
all one-way observations (common slope, one intercept per direction) stands in; without a
resolved drift, the middle of the feasible polygon. The estimate is clamped to the feasible
drift interval.

Reported bound (``bound_mode="drift-ci"``, default)
--------------------------------------------------
At the fitted slope the fixed-drift NTP interval is ``[f, g]``; c its midpoint, ``hw`` its
half-width (the old ``(min_ab + min_ba) / 2`` on drift-corrected delays). Exactly,
``error(x) - hw = Delta (x - x_j*) - d'_j*`` (and the mirror image), Delta the drift error,
j* the binding backward sample and d'_j* its true delay. So
``|error(x)| <= hw + max(0, dconf * |x - x_binding| - m)`` where ``dconf`` is the drift's 99.9 %
uncertainty (Student t over the estimate's standard error, never beyond the feasible interval)
and m a lower limit on the binding samples' one-way delay, assumed ``min_share * hw``
(default 0.5: neither direction's minimum below half the symmetric split; 0 = no assumption).
The reported ``bound_ns`` is the smaller of this and the hard bound; ``guaranteed`` says which.

Wrong matches
-------------
A wrong match with a *larger* apparent delay is harmless. One below the true line can exclude
it. Removing a genuine sample only widens the polygon (every bound stays valid), so rejection
is liberal: (1) lower-tail test: a sample more than ``sqrt(2 ln n) + 2`` robust residual scales
below its direction's robust regression line (where no sample of a light-tailed jitter reaches)
is dropped; (2) while the polygon is empty, the samples binding the least-violating line are
dropped. A wrong match that lands within the jitter's own tail is undetectable by any method
and can shrink the bound by as much as it lies below the true envelope.

What the fit reads: reductions that do not grow with the crossings
------------------------------------------------------------------
Each direction comes as a :class:`OneWay`, whose size is bounded, and which merges exactly
(one process and any partition of the crossings give the same reduction, hence the same fit):

* for the linear program and the polygon, exact: the count, the sum of the times (a Python
  int) and the *bounding points* (:func:`bounding_points`): the lower hull's vertices whose
  neighbouring edge slopes reach into the drift prior, and its two ends, in integer
  arithmetic, so the bounding points of a union are those of its parts' bounding points;
* for the statistics (the frame's medians, the robust regression of the tail test, the random
  halves behind the drift's standard error): a bottom-k sample, the crossings with the
  smallest hashes of their key (:data:`SAMPLE_SIZE` a way from :func:`fit_pair`; the
  crossings' round takes each direction's share of a per-pair sample instead,
  :class:`~pktkit.analysis.crossings.CrossingGroups`), read in key order (signature order;
  :func:`fit_pair`: the samples' places), so the random halves are the same however the
  crossings were split.

The points the fit works on are the sample and the bounding points it lacks. Where the sample
holds every crossing, that is every crossing, and the fit is the unreduced one. Beyond it, the
linear program still reads every crossing (counts, sums, hulls); the tail test fits its line
on the sample and drops the points (sample or bounding) below it; a dropped bounding point
leaves the hull of what is left among the points read, which is never narrower than the truth
(removing samples only widens the polygon): the bounds stay valid. ``samples_fwd`` counts the
crossings kept, ``rejected_fwd`` the points dropped among those read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pktkit.analysis.rows import row_digest

MAX_DRIFT_PPM = 500.0  # the prior: crystals are within ±100 ppm
_PRUNE_BINS = 4096      # time bins of the hull candidate pruning
_MAX_REJECT_ROUNDS = 60
_HALVES = 32  # random half-samples behind the linear program's standard error
# an empty polygon's envelopes may miss by this much of their scale and still count as met
_TOLERANCE = 1e-9
SAMPLE_SIZE = 8_000  # per direction: the statistics run on a bottom-k sample of this size
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64


# -- geometry ---------------------------------------------------------------------------------


def _hull_chain(xs: list, ys: list) -> list[int]:
    """Positions of the lower convex hull (monotone chain) of points sorted by x with distinct
    x; exact when the coordinates are Python ints."""
    hull: list[int] = []  # indices of the chain so far
    for k, (px, py) in enumerate(zip(xs, ys, strict=True)):
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (xs[j] - xs[i]) * (py - ys[i]) - (ys[j] - ys[i]) * (px - xs[i]) > 0:
                break
            hull.pop()
        hull.append(k)
    return hull


def _lower_hull(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lower convex hull (monotone chain) of points sorted by x with distinct x."""
    sel = np.asarray(_hull_chain(x.tolist(), y.tolist()), dtype=np.int64)
    return x[sel], y[sel], idx[sel]


def _candidates(x: np.ndarray, y: np.ndarray, idx: np.ndarray,
                max_drift: float) -> tuple[np.ndarray, ...]:
    """Points (sorted by x) that can minimise ``y - delta x`` for some ``|delta| <= D``: one
    point per distinct x (the lowest), and per time bin of width w only those within ``D w``
    of the bin's lowest (any other is beaten by that one for every admissible slope)."""
    n = len(x)
    if n <= 2 * _PRUNE_BINS:
        return x, y, idx
    span = x[-1] - x[0]
    width = span / _PRUNE_BINS
    b = np.minimum(((x - x[0]) / width).astype(np.int64), _PRUNE_BINS - 1)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    lowest = np.minimum.reduceat(y, starts)
    ref = np.repeat(lowest, np.diff(np.r_[starts, n]))
    ok = y <= ref + max_drift * width * 1.000001 + 1e-6
    return x[ok], y[ok], idx[ok]


@dataclass
class _Hull:
    x: np.ndarray        # vertices, increasing x
    y: np.ndarray
    idx: np.ndarray      # sample indices of the vertices
    slopes: np.ndarray   # edge slopes, increasing

    @classmethod
    def lower(cls, x: np.ndarray, y: np.ndarray, idx: np.ndarray, max_drift: float) -> _Hull:
        order = np.argsort(x, kind="stable")  # capture order: nearly sorted already
        x, y, idx = x[order], y[order], idx[order]
        starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
        if len(starts) < len(x):  # equal x: keep the lowest of each
            low = np.repeat(np.minimum.reduceat(y, starts), np.diff(np.r_[starts, len(x)]))
            first = np.flatnonzero(y == low)
            first = first[np.r_[True, x[first][1:] != x[first][:-1]]]
            x, y, idx = x[first], y[first], idx[first]
        hx, hy, hidx = _lower_hull(*_candidates(x, y, idx, max_drift))
        return cls(hx, hy, hidx, np.diff(hy) / np.diff(hx))

    def envelope(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``min_i (y_i - delta x_i)`` and the vertex attaining it."""
        k = np.searchsorted(self.slopes, delta, side="left")
        return self.y[k] - delta * self.x[k], k


@dataclass
class Polygon:
    """Feasible (c, delta) set in the centred frame: theta(x) = y0 + c + delta * (x - x0)."""

    delta: np.ndarray    # vertex slopes (increasing), both chains share them
    upper: np.ndarray    # g(delta): largest feasible c
    lower: np.ndarray    # f(delta): smallest feasible c
    prior_active: tuple[bool, bool]  # the drift prior, not the data, bounds delta low / high

    def hi(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (self.upper[None, :] + self.delta[None, :] * x.reshape(-1, 1)).max(axis=1)

    def lo(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (self.lower[None, :] + self.delta[None, :] * x.reshape(-1, 1)).min(axis=1)


def _polygon(fwd: _Hull, back_neg: _Hull, max_drift: float,
             ) -> tuple[Polygon | None, float, float, float]:
    """The feasible polygon, or (None, delta*, c*, worst violation) when it is empty."""
    bps = np.concatenate([fwd.slopes, -back_neg.slopes, [-max_drift, max_drift]])
    bps = np.unique(np.clip(bps, -max_drift, max_drift))
    g, _ = fwd.envelope(bps)
    fneg, _ = back_neg.envelope(-bps)
    f = -fneg
    h = g - f
    scale = max(1.0, float(np.abs(g).max()), float(np.abs(f).max()))
    tol = _TOLERANCE * scale
    best = int(np.argmax(h))
    if h[best] < -tol:
        return None, float(bps[best]), float((g[best] + f[best]) / 2), float(-h[best] / 2)
    ok = np.flatnonzero(h >= -tol)
    i0, i1 = int(ok[0]), int(ok[-1])

    def root(i: int, j: int) -> float:  # h(i) < 0 <= h(j), linear in between
        t = -h[i] / (h[j] - h[i])
        return float(bps[i] + t * (bps[j] - bps[i]))

    d_lo = float(bps[i0]) if i0 == 0 else root(i0 - 1, i0)
    d_hi = float(bps[i1]) if i1 == len(bps) - 1 else root(i1 + 1, i1)
    inner = bps[i0:i1 + 1]
    inner = inner[(inner > d_lo) & (inner < d_hi)]
    deltas = np.unique(np.r_[d_lo, inner, d_hi])
    g, _ = fwd.envelope(deltas)
    f = -back_neg.envelope(-deltas)[0]
    if d_lo == d_hi:
        deltas, g, f = deltas[:1], g[:1], f[:1]
    f = np.minimum(f, g)  # rounding at the tips
    poly = Polygon(deltas, g, f, (i0 == 0 and h[0] > tol, i1 == len(bps) - 1 and h[-1] > tol))
    return poly, 0.0, 0.0, 0.0


def feasible_polygon(fwd_send: ArrayLike, fwd_recv: ArrayLike, back_send: ArrayLike,
                     back_recv: ArrayLike, max_drift_ppm: float = MAX_DRIFT_PPM,
                     ) -> tuple[Polygon | None, int, int]:
    """The polygon of (offset, drift) lines consistent with all samples (no rejection), in the
    frame of :class:`PairFit` (for tests and plots); None when empty."""
    s = _Samples.of(fwd_send, fwd_recv, back_send, back_recv)
    poly, *_ = _polygon(*s.hulls(None, None, max_drift_ppm * 1e-6), max_drift_ppm * 1e-6)
    return poly, s.x0, s.y0


def envelope_gap(fwd_send: ArrayLike, fwd_recv: ArrayLike, back_send: ArrayLike,
                 back_recv: ArrayLike, max_drift_ppm: float = MAX_DRIFT_PPM) -> float:
    """By how much (ns) every line within the drift prior misses the samples: 0 when
    :func:`feasible_polygon` finds one, else the narrowest gap between the envelopes (the
    forward samples' from below, the backward ones' from above). A frame moves both
    envelopes alike, so the gap is the same in any frame; more samples only widen it."""
    s = _Samples.of(fwd_send, fwd_recv, back_send, back_recv)
    poly, _, _, worst = _polygon(*s.hulls(None, None, max_drift_ppm * 1e-6),
                                 max_drift_ppm * 1e-6)
    return 0.0 if poly is not None else 2 * worst


def tolerance_bound(send: ArrayLike, recv: ArrayLike, forward: ArrayLike,
                    max_drift_ppm: float = MAX_DRIFT_PPM) -> float:
    """The largest tolerance (ns) :func:`feasible_polygon` can apply to any subset of these
    samples (``forward``: which went a → b): its frame's origin lies within their times and
    delays, so no envelope value exceeds their delays' range plus the drift prior times their
    time range. A subset whose :func:`envelope_gap` exceeds twice this fails with every
    sample added to it."""
    send, recv = np.asarray(send, np.int64), np.asarray(recv, np.int64)
    forward = np.asarray(forward, bool)
    if not len(send):
        return _TOLERANCE
    x = np.where(forward, send, recv).astype(np.float64)
    y = np.where(forward, recv - send, send - recv).astype(np.float64)
    scale = float(y.max() - y.min()) + max_drift_ppm * 1e-6 * float(x.max() - x.min())
    return _TOLERANCE * max(1.0, scale)


def binding_rows(send: ArrayLike, recv: ArrayLike, forward: bool,
                 max_drift_ppm: float = MAX_DRIFT_PPM) -> np.ndarray:
    """The samples (indices) that can bind a line of slope within the drift prior
    (:func:`bounding_points`): for ``forward`` samples (a → b) of ``(send, recv − send)``,
    for backward ones of ``(recv, recv − send)`` (the points ``(recv, send − recv)`` bind
    from above). A feasibility test on these alone answers as on all the samples."""
    send, recv = np.asarray(send, np.int64), np.asarray(recv, np.int64)
    return bounding_points(send if forward else recv, recv - send, np.arange(len(send)),
                           max_drift_ppm)


# -- one direction, reduced ------------------------------------------------------------------


def _drift_fraction(max_drift_ppm: float) -> Fraction:
    return Fraction(max_drift_ppm) / 1_000_000


def bounding_points(x: np.ndarray, y: np.ndarray, key: np.ndarray,
                    max_drift_ppm: float = MAX_DRIFT_PPM) -> np.ndarray:
    """Indices of the points (int64 ``x``, ``y``; ``key`` breaks ties) that can bind a line
    under them with a slope within the prior: the vertices of the lower convex hull whose
    neighbouring edges' slopes reach into [-D, D], and the hull's two ends (the first and the
    last x). In exact integer arithmetic, so the points of a union are those of the union of
    its parts' points: the reduction merges exactly, however the points are split."""
    if not len(x):
        return np.zeros(0, np.int64)
    order = np.lexsort((key, y, x))
    sx = x[order]
    order = order[np.r_[True, sx[1:] != sx[:-1]]]  # of equal x the lowest (then first key)
    if len(order) > 2 * _PRUNE_BINS:
        # a point higher than its time bin's lowest by more than the prior's slope over the
        # bin never binds: dropping it (floats, with a margin) changes no bounding point
        fx = (x[order] - x[order[0]]).astype(np.float64)
        fy = (y[order] - y[order].min()).astype(np.float64)
        kept = _candidates(fx, fy, np.arange(len(order)), max_drift_ppm * 1e-6)[2]
        order = order[np.union1d(kept, [0, len(order) - 1])]
    xs, ys = x[order].tolist(), y[order].tolist()
    hull = _hull_chain(xs, ys)  # exact: the coordinates are Python ints
    drift = _drift_fraction(max_drift_ppm)
    num, den = drift.numerator, drift.denominator
    keep = []
    for v, k in enumerate(hull):
        if 0 < v < len(hull) - 1:
            i, j = hull[v - 1], hull[v + 1]
            # left edge's slope <= D and right edge's >= -D
            if ((ys[k] - ys[i]) * den > num * (xs[k] - xs[i])
                    or (ys[j] - ys[k]) * den < -num * (xs[j] - xs[k])):
                continue
        keep.append(k)
    return order[np.asarray(keep, np.int64)]


def _exact_sum(x: np.ndarray) -> int:
    """The sum of int64 values as a Python int (no overflow: in 32-bit halves)."""
    high = int((x >> np.int64(32)).sum())
    return (high << 32) + int((x & np.int64(0xFFFFFFFF)).sum())


def _bottom(key: np.ndarray, size: int) -> np.ndarray:
    """Indices of the ``size`` entries with the smallest hash of their key (then key), in key
    order: a bottom-k sample, the same of a union as of the union of its parts' samples."""
    if len(key) > size:
        keep = np.lexsort((key, row_digest([key])))[:size]
        return keep[np.argsort(key[keep], kind="stable")]
    return np.argsort(key, kind="stable")


@dataclass
class OneWay:
    """One direction's crossings of a node pair, reduced to what :func:`fit_ways` reads; its
    size does not grow with the crossings. ``forward``: a → b (the samples' a-clock time is
    the send time), else b → a (the receive time); every sample is a point (x, recv − send).

    Exact, for the linear program: ``count``, ``x_sum`` (a Python int), ``whole_us`` and the
    bounding points (:func:`bounding_points` under the prior ``max_drift_ppm``: the lower
    hull's vertices that can bind, and its ends) as ``hull_*``. For the statistics: the
    crossings with the :data:`SAMPLE_SIZE` smallest hashes of their ``key`` (a signature:
    unique in the direction), in key order: all of them up to that size. Both reductions
    merge exactly (:meth:`merge`), so any split of the crossings gives the same OneWay."""

    forward: bool
    count: int
    x_sum: int
    whole_us: bool
    max_drift_ppm: float
    hull_key: np.ndarray
    hull_send: np.ndarray
    hull_recv: np.ndarray
    key: np.ndarray
    send: np.ndarray
    recv: np.ndarray

    @classmethod
    def of(cls, send: ArrayLike, recv: ArrayLike, forward: bool, key: ArrayLike | None = None,
           max_drift_ppm: float = MAX_DRIFT_PPM, size: int | None = None) -> OneWay:
        """The reduction of the samples (int64 ns; ``key`` default: their positions), with a
        sample of ``size`` (default :data:`SAMPLE_SIZE`; 0: none, see :meth:`with_sample`)."""
        send, recv = (np.asarray(a, dtype=np.int64).ravel() for a in (send, recv))
        if len(send) != len(recv):
            raise ValueError("send and receive arrays differ in length")
        key = np.arange(len(send)) if key is None else np.asarray(key, np.int64).ravel()
        x = send if forward else recv
        whole_us = not ((send % 1000).any() or (recv % 1000).any())
        return cls._reduced(forward, len(send), _exact_sum(x), whole_us, max_drift_ppm, key,
                            send, recv, key, send, recv, size)

    @staticmethod
    def merge(ways: Iterable[OneWay], size: int | None = None) -> OneWay:
        """One reduction of all the samples ``ways`` (of one direction, disjoint) reduce
        (``size``: as in :meth:`of`)."""
        ways = list(ways)
        first = ways[0]
        if any(w.forward != first.forward or w.max_drift_ppm != first.max_drift_ppm
               for w in ways):
            raise ValueError("OneWay.merge: different directions or drift priors")

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(w, name) for w in ways])

        return OneWay._reduced(first.forward, sum(w.count for w in ways),
                               sum(w.x_sum for w in ways), all(w.whole_us for w in ways),
                               first.max_drift_ppm, cat("hull_key"), cat("hull_send"),
                               cat("hull_recv"), cat("key"), cat("send"), cat("recv"), size)

    @classmethod
    def _reduced(cls, forward: bool, count: int, x_sum: int, whole_us: bool,
                 max_drift_ppm: float, hull_key: np.ndarray, hull_send: np.ndarray,
                 hull_recv: np.ndarray, key: np.ndarray, send: np.ndarray,
                 recv: np.ndarray, size: int | None) -> OneWay:
        x = hull_send if forward else hull_recv
        h = bounding_points(x, hull_recv - hull_send, hull_key, max_drift_ppm)
        h = h[np.argsort(hull_key[h], kind="stable")]
        k = _bottom(key, SAMPLE_SIZE if size is None else size)
        return cls(forward, count, x_sum, whole_us, max_drift_ppm, hull_key[h], hull_send[h],
                   hull_recv[h], key[k], send[k], recv[k])

    def with_sample(self, key: np.ndarray, send: np.ndarray, recv: np.ndarray) -> OneWay:
        """This reduction with the sample ``key``, ``send``, ``recv`` (some of its crossings,
        chosen by the caller as deterministically), in key order."""
        order = np.argsort(key, kind="stable")
        return dataclasses.replace(self, key=key[order], send=send[order], recv=recv[order])

    @property
    def complete(self) -> bool:
        """Whether the sample holds every crossing."""
        return len(self.key) == self.count

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(send, recv, in the sample): the sample in key order, then the bounding points it
        lacks."""
        extra = ~np.isin(self.hull_key, self.key)
        return (np.r_[self.send, self.hull_send[extra]], np.r_[self.recv, self.hull_recv[extra]],
                np.r_[np.ones(len(self.key), bool), np.zeros(int(extra.sum()), bool)])


# -- samples ----------------------------------------------------------------------------------


@dataclass
class _Samples:
    x0: int                 # a-clock origin (ns), middle of the sample span
    y0: int                 # theta origin (ns)
    fx: np.ndarray          # forward: a-clock send time - x0
    fu: np.ndarray          # forward: (recv - send) - y0, the line passes below
    bx: np.ndarray          # backward: a-clock receive time - x0
    bv: np.ndarray          # backward: (send - recv) - y0, the line passes above
    resolution: float = 1.0  # of the timestamps: 1000 when all are whole µs (ns)

    # the crossings not among the points (a direction beyond its sample): how many, and
    # the sum of their times - x0 (exact, then float)
    fwd_rest: tuple[int, float] = (0, 0.0)
    back_rest: tuple[int, float] = (0, 0.0)

    @classmethod
    def of(cls, fwd_send: ArrayLike, fwd_recv: ArrayLike, back_send: ArrayLike,
           back_recv: ArrayLike) -> _Samples:
        fwd, back = OneWay.of(fwd_send, fwd_recv, True), OneWay.of(back_send, back_recv, False)
        return cls.of_ways(fwd, back)[0]

    @classmethod
    def of_ways(cls, fwd: OneWay, back: OneWay) -> tuple[_Samples, np.ndarray, np.ndarray]:
        """The points of both directions (:meth:`OneWay.points`) and which are in the
        samples; the frame's origin from the sample's medians."""
        fs, fr, fin = fwd.points()
        bs, br, bin_ = back.points()
        u = fr - fs
        v = bs - br
        lo = min(int(fs.min()), int(br.min()))
        hi = max(int(fs.max()), int(br.max()))
        x0 = lo + (hi - lo) // 2
        y0 = (int(np.median(u[fin])) + int(np.median(v[bin_]))) // 2 if fin.any() and \
            bin_.any() else 0

        def rest(way: OneWay, x: np.ndarray) -> tuple[int, float]:
            n = way.count - len(x)
            return n, float(way.x_sum - _exact_sum(x) - n * x0) if n else 0.0

        out = cls(x0, y0, (fs - x0).astype(np.float64), (u - y0).astype(np.float64),
                  (br - x0).astype(np.float64), (v - y0).astype(np.float64),
                  1000.0 if fwd.whole_us and back.whole_us else 1.0, rest(fwd, fs),
                  rest(back, br))
        return out, fin, bin_

    def hulls(self, fmask: np.ndarray | None, bmask: np.ndarray | None,
              max_drift: float) -> tuple[_Hull, _Hull]:
        fi = np.arange(len(self.fx)) if fmask is None else np.flatnonzero(fmask)
        bi = np.arange(len(self.bx)) if bmask is None else np.flatnonzero(bmask)
        fwd = _Hull.lower(self.fx[fi], self.fu[fi], fi, max_drift)
        back_neg = _Hull.lower(self.bx[bi], -self.bv[bi], bi, max_drift)
        return fwd, back_neg


# -- result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairFit:
    """b's clock against a's: ``b - a = offset_ns + drift_ppm * 1e-6 * (x - at_ns)`` at a-clock
    time x, within ``bound_ns`` over ``span_ns`` (``bound_at(x)`` anywhere).

    ``hard_bound_ns`` is what causality alone guarantees for this line (every delay positive,
    every kept sample a correct match); ``bound_ns`` is the smaller of it and the statistical
    bound (fixed-drift NTP half-width plus the drift's 99.9 % uncertainty times the lever arm);
    ``guaranteed`` tells which one it is."""

    offset_ns: float
    drift_ppm: float
    at_ns: int
    bound_ns: float
    samples_fwd: int
    samples_back: int
    span_ns: tuple[int, int]            # a-clock times of the first and last sample
    hard_bound_ns: float
    guaranteed: bool
    drift_lo_ppm: float                 # the drift interval causality allows
    drift_hi_ppm: float
    drift_sigma_ppm: float              # statistical standard error (inf: not estimable)
    drift_resolved: bool                # False: the prior, not the data, limits the drift
    rejected_fwd: int = 0
    rejected_back: int = 0
    _poly: Polygon | None = field(default=None, repr=False, compare=False)
    _x0: int = field(default=0, repr=False, compare=False)
    _y0: int = field(default=0, repr=False, compare=False)
    _stat: tuple[float, float, float, float, float] | None = field(default=None, repr=False,
                                                            compare=False)

    def offset_at(self, x_ns: ArrayLike) -> np.ndarray:
        """The model's b - a at a-clock times ``x_ns``."""
        dx = (np.asarray(x_ns, dtype=np.int64) - self.at_ns).astype(np.float64)
        return self.offset_ns + self.drift_ppm * 1e-6 * dx

    def hard_bound_at(self, x_ns: ArrayLike) -> np.ndarray:
        """What causality guarantees about |model - truth| at a-clock times ``x_ns``."""
        x = (np.atleast_1d(np.asarray(x_ns, dtype=np.int64)) - self._x0).astype(np.float64)
        line = (self.offset_ns - self._y0 + self.drift_ppm * 1e-6
                * (x - float(self.at_ns - self._x0)))
        assert self._poly is not None
        return np.maximum(self._poly.hi(x) - line, line - self._poly.lo(x))

    def bound_at(self, x_ns: ArrayLike) -> np.ndarray:
        """The reported bound at a-clock times ``x_ns`` (grows outside the span)."""
        hard = self.hard_bound_at(x_ns)
        if self._stat is None:
            return hard
        hw, dconf, xi, xj, absorbed = self._stat
        x = (np.atleast_1d(np.asarray(x_ns, dtype=np.int64)) - self._x0).astype(np.float64)
        lever = np.maximum(np.abs(x - xi), np.abs(x - xj))
        return np.minimum(hard, hw + np.maximum(0.0, dconf * lever - absorbed))


def _hard_bound(poly: Polygon, c: float, delta: float, xs: np.ndarray) -> float:
    line = c + delta * xs
    return float(np.maximum(poly.hi(xs) - line, line - poly.lo(xs)).max())


def _line_for_slope(poly: Polygon, delta: float, xf: float, xl: float) -> tuple[float, float]:
    """(c, bound): the offset minimising the largest guaranteed error over [xf, xl] at slope
    delta."""
    ends = np.array([xf, xl])
    top = (poly.upper[None, :] + (poly.delta[None, :] - delta) * ends[:, None]).max()
    bot = (poly.lower[None, :] + (poly.delta[None, :] - delta) * ends[:, None]).min()
    return float((top + bot) / 2), float((top - bot) / 2)


def _theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok]))


# two-sided 99.9 % Student t quantiles by degrees of freedom (1..30), then the normal's
_T999 = [636.6, 31.60, 12.92, 8.610, 6.869, 5.959, 5.408, 5.041, 4.781, 4.587, 4.437, 4.318,
         4.221, 4.140, 4.073, 4.015, 3.965, 3.922, 3.883, 3.850, 3.819, 3.792, 3.768, 3.745,
         3.725, 3.707, 3.690, 3.674, 3.659, 3.646]


def _lp_drift(s: _Samples, fmask: np.ndarray, bmask: np.ndarray, max_drift: float,
              whole: bool = False) -> float:
    """Moon, Skelly and Towsley's linear program on both directions at once: the common slope
    whose two lines, each under its direction's points, lie closest to them (the least total
    delay above the lines). The maximum-likelihood line for delays with a hard floor and an
    exponential excess; queued packets move it only through their times, never through their
    delays. For a slope the lines' heights are the envelopes, so the objective is convex and
    piecewise linear in the slope: its minimum is at a hull edge slope. It reads only counts,
    sums of times and the lower hulls: ``whole``, of every crossing (the points and the rest
    of the directions beyond their samples), else of the points ``fmask`` and ``bmask``."""
    fwd, back_neg = s.hulls(fmask, bmask, max_drift)
    nf, nb = int(fmask.sum()), int(bmask.sum())
    sx = float(s.fx[fmask].sum() - s.bx[bmask].sum())
    if whole:
        nf, nb = nf + s.fwd_rest[0], nb + s.back_rest[0]
        sx += s.fwd_rest[1] - s.back_rest[1]
    deltas = np.unique(np.clip(np.r_[fwd.slopes, -back_neg.slopes, 0.0], -max_drift, max_drift))
    cost = -deltas * sx - nf * fwd.envelope(deltas)[0] - nb * back_neg.envelope(-deltas)[0]
    return float(deltas[int(np.argmin(cost))])


def _lp_slope(s: _Samples, fmask: np.ndarray, bmask: np.ndarray, fin: np.ndarray,
              bin_: np.ndarray, max_drift: float,
              rounds: int = _HALVES) -> tuple[float, float, int] | None:
    """:func:`_lp_drift` of every crossing with its standard error from the samples
    (``fin``, ``bin_``): the spread of the fits of random halves of the samples about the
    whole fit, over √2."""
    if fmask.sum() + s.fwd_rest[0] < 4 or bmask.sum() + s.back_rest[0] < 4:
        return None
    delta = _lp_drift(s, fmask, bmask, max_drift, whole=True)
    # the halves of at most SAMPLE_SIZE a way: the spread of larger halves is below the
    # resolution floor anyway
    fmask, bmask = fmask & fin, bmask & bin_
    rng = np.random.default_rng(0)  # by place in the samples' (canonical) key order
    halves = []
    for _ in range(rounds):
        hf = fmask & (rng.random(len(fmask)) < 0.5)
        hb = bmask & (rng.random(len(bmask)) < 0.5)
        if hf.sum() >= 2 and hb.sum() >= 2:
            halves.append(_lp_drift(s, hf, hb, max_drift))
    if len(halves) < 4:
        return None
    # Halving the sample widens the error by √2 at the usual rate, by 2 at the rate a hard
    # floor allows (1/n); the √2 keeps the interval honest when the floor is blurred (by the
    # timestamps' resolution, by a floor that is not quite hard).
    spread = math.sqrt(float(np.mean((np.array(halves) - delta) ** 2)))
    return delta, spread / math.sqrt(2), len(halves) + 2


def _z_sigma(got: tuple[float, float, int]) -> float:
    """A (drift, standard error, dof) estimate's error as a normal-equivalent sigma: the
    standard error scaled by the Student t quantile at 99.9 % over the normal's."""
    _, se, dof = got
    dof -= 2
    if se == math.inf or dof < 1:
        return math.inf
    return se * (_T999[dof - 1] / 3.29 if dof <= 30 else 1.0)


def _window_medians(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per non-empty time window: mean time and median value."""
    k = len(edges) - 1
    w = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, k - 1)
    order = np.lexsort((y, w))
    ws, ys = w[order], y[order]
    counts = np.bincount(ws, None, k)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    ok = counts > 0
    lo = first[ok] + (counts[ok] - 1) // 2
    hi = first[ok] + counts[ok] // 2
    t = np.bincount(w, x, k)[ok] / counts[ok]
    return t, (ys[lo] + ys[hi]) / 2


def _initial_slope(s: _Samples, fmask: np.ndarray, bmask: np.ndarray) -> float:
    """A first drift that queueing and wrong matches cannot move: per direction, Theil-Sen
    through the medians of time windows, averaged over the directions."""
    x = np.r_[s.fx[fmask], s.bx[bmask]]
    edges = np.linspace(x.min(), x.max() + 1.0, 17)
    slopes = []
    for xs, ys in ((s.fx[fmask], s.fu[fmask]), (s.bx[bmask], s.bv[bmask])):
        t, m = _window_medians(xs, ys, edges)
        if len(t) >= 2:
            slopes.append(_theil_sen(t, m))
    return float(np.mean(slopes)) if slopes else 0.0


def _mad(r: np.ndarray) -> float:
    m = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return m if m > 0 else (float(np.abs(r).mean()) or 1.0)


def _robust_slope(s: _Samples, fmask: np.ndarray, bmask: np.ndarray, delta0: float,
                  iterations: int = 12, full: bool = False) -> Any:
    """Drift by robust regression of all one-way observations: ``u = c_f + delta x + e`` and
    ``-v = c_b - delta x + e'`` (common slope, one intercept per direction), Tukey bisquare
    weights (queueing only adds delay, so it lands in the rejected tail). Returns (drift, its
    standard error, effective dof) or None. Near the least-squares efficiency on Gaussian
    jitter, where minima are poor; on floor-plus-tail delays the envelope does better."""
    x = np.concatenate([s.fx[fmask], s.bx[bmask]])
    y = np.concatenate([s.fu[fmask], -s.bv[bmask]])
    nf = int(fmask.sum())
    sign = np.ones(len(x))
    sign[nf:] = -1.0
    grp = np.zeros(len(x), dtype=np.int64)
    grp[nf:] = 1
    if nf < 3 or len(x) - nf < 3:
        return None
    delta = delta0
    z = y - sign * delta * x
    c = np.array([np.median(z[:nf]), np.median(z[nf:])])
    w = np.ones(len(x))
    scale = 0.0
    for _ in range(iterations):
        r = y - c[grp] - sign * delta * x
        scale = _mad(r)
        t = r / (4.685 * scale)
        w = np.where(np.abs(t) < 1, (1 - t * t) ** 2, 0.0)
        sw = np.bincount(grp, w, 2)
        if (sw <= 0).any():
            return None
        xm = np.bincount(grp, w * sign * x, 2) / sw   # weighted means per direction
        ym = np.bincount(grp, w * y, 2) / sw
        xc = sign * x - xm[grp]
        yc = y - ym[grp]
        sxx = float((w * xc * xc).sum())
        if sxx <= 0:
            return None
        delta = float((w * xc * yc).sum()) / sxx
        c = ym - delta * xm
    r = y - c[grp] - sign * delta * x
    dof = float(w.sum()) - 3
    if dof < 2:
        return None
    var = float((w * r * r).sum()) / dof / sxx * 1.21  # 1.1^2: bisquare's efficiency
    out = (delta, math.sqrt(var), int(dof))
    if full:  # and the lines, per-direction residual scales for the tail test
        rf, rb = r[:nf], r[nf:]
        sf = 1.4826 * float(np.median(np.abs(rf - np.median(rf))))
        sb = 1.4826 * float(np.median(np.abs(rb - np.median(rb))))
        return out, (float(c[0]), float(c[1]), sf, sb)
    return out


def fit_pair(fwd_send: ArrayLike, fwd_recv: ArrayLike, back_send: ArrayLike,
             back_recv: ArrayLike, *, max_drift_ppm: float = MAX_DRIFT_PPM,
             drift_method: str = "auto",
             isolation: bool | float = True, bound_mode: str = "drift-ci",
             min_share: float = 0.5) -> PairFit | None:
    """Fit b's clock against a's from crossings a -> b (send on a's clock, receive on b's) and
    b -> a (send on b's, receive on a's), int64 ns: :func:`fit_ways` of their reductions
    (:class:`OneWay`, keyed by their places). None when a direction has no sample or the
    samples contradict each other beyond repair.

    ``bound_mode``: ``"guaranteed"`` reports what causality alone guarantees; ``"drift-ci"``
    the smaller of that and ``hw + max(0, dconf * lever - min_share * hw)``: hw the fixed-drift
    NTP half-width at the fitted drift, dconf the drift's 99.9 % uncertainty, lever the
    distance to the binding samples, and ``min_share * hw`` the smallest one-way delay assumed
    (each direction's minimum at least that share of half the round trip; 0: no assumption).
    ``drift_method``: ``"auto"`` (the linear program, else the robust regression when a
    direction has fewer than four samples), ``"lp"``, ``"robust"``, or ``"minimax"`` (the
    middle of the feasible polygon, no statistics)."""
    if np.size(fwd_send) == 0 or np.size(back_send) == 0:
        return None
    return fit_ways(OneWay.of(fwd_send, fwd_recv, True, max_drift_ppm=max_drift_ppm),
                    OneWay.of(back_send, back_recv, False, max_drift_ppm=max_drift_ppm),
                    max_drift_ppm=max_drift_ppm, drift_method=drift_method,
                    isolation=isolation, bound_mode=bound_mode, min_share=min_share)


def fit_ways(fwd: OneWay, back: OneWay, *, max_drift_ppm: float = MAX_DRIFT_PPM,
             drift_method: str = "auto", isolation: bool | float = True,
             bound_mode: str = "drift-ci", min_share: float = 0.5) -> PairFit | None:
    """:func:`fit_pair` of two reduced directions (``fwd`` a → b, ``back`` b → a): the
    linear program and the polygon on every crossing's bounding points, counts and sums; the
    frame, the tail test and the drift's standard error on the samples, in their key order
    (the same whatever split of the crossings was reduced and merged)."""
    if fwd.count == 0 or back.count == 0:
        return None
    if not fwd.forward or back.forward:
        raise ValueError("fit_ways: a forward and a backward reduction")
    if max_drift_ppm > min(fwd.max_drift_ppm, back.max_drift_ppm):
        raise ValueError("fit_ways: the reductions kept the bounding points of a narrower "
                         "drift prior")
    if drift_method not in ("auto", "lp", "robust", "minimax"):
        raise ValueError(f"drift_method {drift_method!r}")
    D = max_drift_ppm * 1e-6
    s, fin, bin_ = _Samples.of_ways(fwd, back)
    fmask = np.ones(len(s.fx), dtype=bool)
    bmask = np.ones(len(s.bx), dtype=bool)

    # (1) the lower tail test: a robust regression line per direction (common drift, on the
    #     samples); a point below it by more than (sqrt(2 ln n) + 2) residual scales, where
    #     no genuine sample of a light-tailed jitter reaches, is a wrong match (a harmful one
    #     sits below the true line, i.e. a whole one-way delay below its direction's bulk)
    if isolation is not False and min(fwd.count, back.count) >= 8:
        got = _robust_slope(s, fin, bin_, _initial_slope(s, fin, bin_), full=True)
        if got is not None:
            (dr, _, _), (cf_, cb_, sf, sb) = got
            kf = (math.sqrt(2 * math.log(fwd.count)) + 2) if isinstance(isolation, bool) \
                else float(isolation)
            kb = (math.sqrt(2 * math.log(back.count)) + 2) if isinstance(isolation, bool) \
                else float(isolation)
            if sf > 0:
                fmask &= s.fu - (cf_ + dr * s.fx) >= -kf * sf
            if sb > 0:
                bmask &= -s.bv - (cb_ - dr * s.bx) >= -kb * sb
    # (2) while the polygon is empty: drop the samples that bind the least-violating line
    poly: Polygon | None = None
    for _ in range(_MAX_REJECT_ROUNDS):
        if not fmask.any() or not bmask.any():
            return None
        fwd, back_neg = s.hulls(fmask, bmask, D)
        poly, d_star, c_star, worst = _polygon(fwd, back_neg, D)
        if poly is not None:
            break
        # the constraints that bind at the least-violating line: one of them is wrong (a
        # genuine one dropped with it only widens the polygon)
        vf = (c_star + d_star * s.fx) - s.fu
        vb = s.bv - (c_star + d_star * s.bx)
        cut = worst * (1 - 1e-6) - 1.0
        fmask &= ~(vf >= cut)
        bmask &= ~(vb >= cut)
    else:
        return None
    assert poly is not None

    xf = float(min(s.fx[fmask].min(), s.bx[bmask].min()))
    xl = float(max(s.fx[fmask].max(), s.bx[bmask].max()))
    ends = np.array([xf, xl])
    d_lo, d_hi = float(poly.delta[0]), float(poly.delta[-1])
    resolved = not any(poly.prior_active)
    sigma = math.inf
    if xl == xf or not resolved:
        # drift not identified by the data: offset only (drift 0 when admissible)
        delta = min(max(0.0, d_lo), d_hi)
    else:
        mids = (poly.hi(ends) + poly.lo(ends)) / 2
        delta = float((mids[1] - mids[0]) / (xl - xf))  # the minimax line's
        got = _lp_slope(s, fmask, bmask, fin, bin_, D) if drift_method in ("auto", "lp") \
            else None
        if got is None and drift_method in ("auto", "robust"):
            got = _robust_slope(s, fmask & fin, bmask & bin_, delta)
        if got is not None:
            delta = min(max(got[0], d_lo), d_hi)
            # no better than the timestamps' resolution over the span allows
            sigma = max(_z_sigma(got), s.resolution / (xl - xf))
    # guaranteed: the best offset for this slope
    c_hard, hard = _line_for_slope(poly, delta, xf, xl)
    c, bound, guaranteed, stat = c_hard, hard, True, None
    if bound_mode not in ("guaranteed", "drift-ci"):
        raise ValueError(f"bound_mode {bound_mode!r}")
    if bound_mode == "drift-ci" and sigma < math.inf:
        # fixed-drift NTP interval [f, g] at this slope, widened by the drift uncertainty
        g, kf = fwd.envelope(np.array([delta]))
        fneg, kb = back_neg.envelope(np.array([-delta]))
        f = -fneg
        hw = float(g[0] - f[0]) / 2
        c_stat = float(g[0] + f[0]) / 2
        dconf = min(3.29 * sigma, max(d_hi - delta, delta - d_lo))
        xi, xj = float(fwd.x[kf[0]]), float(back_neg.x[kb[0]])
        lever = float(np.maximum(np.abs(ends - xi), np.abs(ends - xj)).max())
        absorbed = min_share * hw
        stat_bound = min(hw + max(0.0, dconf * lever - absorbed),
                         _hard_bound(poly, c_stat, delta, ends))
        if stat_bound < hard:
            c, bound, stat = c_stat, stat_bound, (hw, dconf, xi, xj, absorbed)
            guaranteed = stat_bound >= _hard_bound(poly, c_stat, delta, ends)
    hard_of_line = _hard_bound(poly, c, delta, ends)

    # anchor: where this line's bound is smallest; of a flat stretch, its middle
    def bnd(xs: np.ndarray) -> np.ndarray:
        line = c + delta * xs
        out = np.maximum(poly.hi(xs) - line, line - poly.lo(xs))
        if stat is not None:
            lever = np.maximum(np.abs(xs - stat[2]), np.abs(xs - stat[3]))
            out = np.minimum(out, stat[0] + np.maximum(0.0, stat[1] * lever - stat[4]))
        return out

    grid = np.linspace(xf, xl, 513)
    values = bnd(grid)
    flat = np.flatnonzero(values <= values.min() + 1.0)
    a = b = float(grid[flat[len(flat) // 2]])
    at_rel = round((a + b) / 2)
    return PairFit(
        offset_ns=float(s.y0 + c + delta * at_rel), drift_ppm=delta * 1e6,
        at_ns=s.x0 + at_rel, bound_ns=float(bound),
        samples_fwd=int(fmask.sum()) + s.fwd_rest[0],
        samples_back=int(bmask.sum()) + s.back_rest[0],
        span_ns=(s.x0 + math.floor(xf), s.x0 + math.ceil(xl)),
        hard_bound_ns=hard_of_line, guaranteed=guaranteed,
        drift_lo_ppm=d_lo * 1e6, drift_hi_ppm=d_hi * 1e6, drift_sigma_ppm=sigma * 1e6,
        drift_resolved=resolved, rejected_fwd=int((~fmask).sum()),
        rejected_back=int((~bmask).sum()), _poly=poly, _x0=s.x0, _y0=s.y0, _stat=stat)
