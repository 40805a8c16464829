"""Node clocks: each node's offset and drift against the reference node, from the crossings.

The global step of the correlation: the crossings of every signature partition, reduced
and merged per node pair (:class:`~pktkit.analysis.crossings.CrossingGroups`), are fitted per
node pair by :func:`~pktkit.analysis.clockfit.fit_ways`
(:mod:`~pktkit.analysis.clockfit`: the lower envelopes of the one-way delays both ways, the
approach of Paxson's and of Moon, Skelly and Towsley's estimators, with a bound). Each node's
clock against the reference node (the first node) follows the chain of pair fits with the
smallest summed bound; drifts and offsets compose exactly (affine maps), bounds add.

The model of a node: its clock reads ``t + offset_ns + drift_ppm × 1e-6 × (t − at_ns)`` at
reference time t. Applied to a timestamp, it gives the reference time that reading stands for.

The correction applied (``clock_correction``): ``"auto"`` (default) applies a node's model
only when it is significant: when the reference clock itself (offset 0, drift 0) lies outside
the model's bound somewhere over the crossings' span. Two synchronized clocks then keep their
timestamps exactly, rather than gaining the estimate's noise. ``"always"`` applies every
model, ``"never"`` none.

``clock_offsets`` — one row per node

==============  ========  ===============================================================
node            string    the node
reference_node  string    the node whose clock is the reference (offset 0, bound 0)
offset_ns       Int64     node clock − reference clock at ``at_ns``; NA when no packet
                          crossed between them both ways (then no correction is applied)
drift_ppm       Float64   how fast the node's clock runs against the reference's, parts per
                          million (80: 80 µs more per second)
at_ns           Int64     the reference-clock time at which ``offset_ns`` holds (where the
                          bound is smallest); NA for the reference node
bound_ns        Int64     the model lies within ± bound_ns of the truth over the crossings'
                          span (the drift's 99.9 % uncertainty included)
samples         Int64     packets whose crossing gave the estimate (both directions)
applied_ns      Int64     the model's offset at ``at_ns`` when the model was applied to the
                          node's timestamps (see ``clock_correction``), else 0
==============  ========  ===============================================================
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pktkit.analysis.clockfit import OneWay, PairFit, fit_ways
from pktkit.analysis.rows import NO_VALUE
from pktkit.capture.frame import empty_frame, typed_frame

CLOCK_SCHEMA: dict[str, str] = {
    "node": "string", "reference_node": "string", "offset_ns": "Int64",
    "drift_ppm": "Float64", "at_ns": "Int64", "bound_ns": "Int64", "samples": "Int64",
    "applied_ns": "Int64",
}
CLOCK_CORRECTIONS = ("auto", "always", "never")
_SPAN_POINTS = 257  # where a model's bound and significance are evaluated over its span


@dataclass(frozen=True)
class _Map:
    """theta(x) = value + slope (x − anchor): clock q minus clock p at p-clock time x;
    ``edges`` the pair fits (and whether inverted) whose errors add up."""

    anchor: int
    value: float
    slope: float
    edges: tuple[tuple[PairFit, bool], ...] = ()

    def at(self, x: np.ndarray) -> np.ndarray:
        dx = (np.asarray(x, dtype=np.int64) - self.anchor).astype(np.float64)
        return self.value + self.slope * dx

    def then(self, other: _Map) -> _Map:
        """p → q (self) followed by q → r (other): r − p at p-clock time."""
        # theta_pr(x) = theta_pq(x) + theta_qr(x + theta_pq(x))
        value = self.value + other.value + other.slope * (self.anchor - other.anchor
                                                          + self.value)
        return _Map(self.anchor, value, self.slope + other.slope * (1 + self.slope),
                    self.edges + other.edges)

    def inverse(self) -> _Map:
        """q − p at q-clock time y, anchored at the q-clock reading of our anchor."""
        y_anchor = self.anchor + round(self.value)
        x = self.anchor + (y_anchor - self.anchor - self.value) / (1 + self.slope)
        value = -(self.value + self.slope * (x - self.anchor))
        return _Map(y_anchor, float(value), -self.slope / (1 + self.slope), self.edges)


def _pair_map(fit: PairFit, inverted: bool) -> _Map:
    m = _Map(fit.at_ns, fit.offset_ns, fit.drift_ppm * 1e-6, ((fit, inverted),))
    return m.inverse() if inverted else m


@dataclass(frozen=True)
class NodeClock:
    """A node's clock against the reference: ``node − reference = offset_ns + drift_ppm ×
    1e-6 × (t − at_ns)`` at reference time t; ``bound_ns`` holds over ``span_ns`` (reference
    time), ``bound_at(t)`` anywhere. ``path``: the nodes from the reference."""

    node: int
    offset_ns: float
    drift_ppm: float
    at_ns: int
    bound_ns: float
    samples: int
    path: tuple[int, ...]
    span_ns: tuple[int, int]
    _map: _Map | None = field(default=None, repr=False, compare=False)

    def offset_at(self, t_ns: np.ndarray) -> np.ndarray:
        """node − reference at reference times ``t_ns``."""
        dt = (np.asarray(t_ns, dtype=np.int64) - self.at_ns).astype(np.float64)
        return self.offset_ns + self.drift_ppm * 1e-6 * dt

    def to_reference(self, raw_ns: np.ndarray) -> np.ndarray:
        """Reference-clock times of this node's raw timestamps (int64 ns)."""
        raw = np.asarray(raw_ns, dtype=np.int64)
        relative = (raw - self.at_ns).astype(np.float64) - self.offset_ns
        return self.at_ns + np.rint(relative / (1 + 1e-6 * self.drift_ppm)).astype(np.int64)

    def bound_at(self, t_ns: np.ndarray) -> np.ndarray:
        """|model − truth| at reference times ``t_ns``: the edges' bounds, each at the time
        of its own a-clock, added."""
        t = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        total = np.zeros(len(t))
        if self._map is not None:
            for fit, x in _edge_times(self._map.edges, t):
                total += fit.bound_at(x)
        return total

    def significant(self) -> bool:
        """Whether the reference clock itself (offset 0, drift 0) lies outside the bound
        somewhere over the span: the model then says something the data are sure of."""
        if not self.path[1:]:
            return False
        grid = np.linspace(*self.span_ns, _SPAN_POINTS).astype(np.int64)
        return bool((np.abs(self.offset_at(grid)) > self.bound_at(grid)).any())


PairWays = tuple[OneWay, OneWay]  # a node pair's a → b and b → a crossings
# how the pair fits are run: map(fit_pair, ways) in this process; on a cluster, as tasks
PairMapper = Callable[[Callable[[PairWays], PairFit | None], list[PairWays]],
                      Iterable[PairFit | None]]


def fit_pair(ways: PairWays) -> PairFit | None:
    """One pair's fit (a task of its own on a cluster: the fits are independent)."""
    return fit_ways(*ways)


def fit_pairs(ways: Mapping[tuple[int, int], PairWays], mapper: PairMapper = map,
              ) -> dict[tuple[int, int], PairFit]:
    """One fit per node pair a < b crossed both ways (``ways``: its a → b and b → a samples,
    :meth:`pktkit.analysis.crossings.CrossingGroups.directions`), each by
    :func:`fit_pair` through ``mapper`` (the same fits whoever runs them)."""
    pairs = sorted(ways)
    fits = mapper(fit_pair, [ways[pair] for pair in pairs])
    return {pair: fit for pair, fit in zip(pairs, fits, strict=True) if fit is not None}


def chain(pairs: dict[tuple[int, int], PairFit], nodes: int,
          reference: int = 0) -> list[NodeClock | None]:
    """Each node's clock against ``reference``: the path of pair fits with the smallest
    summed bound (Dijkstra), offsets and drifts composed exactly, bounds added; None for a
    node no path reaches."""
    edges: dict[int, list[tuple[int, PairFit, bool]]] = {}
    for (a, b), fit in pairs.items():
        edges.setdefault(a, []).append((b, fit, False))
        edges.setdefault(b, []).append((a, fit, True))
    out: list[NodeClock | None] = [None] * nodes
    heap: list[tuple[float, int, int, tuple]] = [(0.0, 0, reference, ())]
    tick = 1
    while heap:
        cost, _, node, path = heapq.heappop(heap)
        if out[node] is not None:
            continue
        out[node] = _node_clock(node, reference, path)
        for other, fit, inverted in edges.get(node, []):
            if out[other] is None:
                heapq.heappush(heap, (cost + fit.bound_ns, tick, other,
                                      (*path, (node, other, fit, inverted))))
                tick += 1
    return out


def _edge_times(edges: tuple[tuple[PairFit, bool], ...],
                t: np.ndarray) -> Iterator[tuple[PairFit, np.ndarray]]:
    """For each edge of a path from the reference: (its fit, the fit's a-clock time at
    reference times t)."""
    partial: _Map | None = None  # reference → this edge's source node
    for fit, inverted in edges:
        y = t if partial is None else t + np.rint(partial.at(t)).astype(np.int64)
        step = _pair_map(fit, inverted)
        yield fit, (y + np.rint(step.at(y)).astype(np.int64) if inverted else y)
        partial = step if partial is None else partial.then(step)


def _to_reference(edges: tuple[tuple[PairFit, bool], ...], clock_time: np.ndarray,
                  upto: int) -> np.ndarray:
    """Reference times of readings of the clock of the ``upto``-th node along the path."""
    if upto == 0:
        return clock_time
    m = _pair_map(*edges[0])
    for fit, inverted in edges[1:upto]:
        m = m.then(_pair_map(fit, inverted))
    return clock_time + np.rint(m.inverse().at(clock_time)).astype(np.int64)


def _node_clock(node: int, reference: int, path: tuple) -> NodeClock:
    if not path:
        return NodeClock(node, 0.0, 0.0, 0, 0.0, 0, (reference,), (0, 0), None)
    edges = tuple((fit, inverted) for _, _, fit, inverted in path)
    m = _pair_map(*edges[0])
    for fit, inverted in edges[1:]:
        m = m.then(_pair_map(fit, inverted))
    # the reference-time span every edge's samples cover
    lo, hi = -(2**62), 2**62
    for k, (fit, inverted) in enumerate(edges):
        span = np.array(fit.span_ns, dtype=np.int64)  # in the fit's a-clock
        if inverted:  # the a-clock is the edge's destination: to its source's clock
            span = span + np.rint(fit.offset_at(span)).astype(np.int64)
        span = _to_reference(edges, span, k)
        lo, hi = max(lo, int(span.min())), min(hi, int(span.max()))
    at = min(max(m.anchor, lo), hi) if lo <= hi else m.anchor
    samples = sum(fit.samples_fwd + fit.samples_back for fit, _ in edges[-1:])
    clock = NodeClock(node, float(m.at(np.array([at]))[0]), m.slope * 1e6, int(at), 0.0,
                      samples, (reference, *(p[1] for p in path)), (lo, hi), m)
    if lo <= hi:
        grid = np.linspace(lo, hi, _SPAN_POINTS).astype(np.int64)  # convex per edge
        bound = float(clock.bound_at(grid).max())
    else:
        bound = float(sum(fit.bound_ns for fit, _ in edges))
    return dataclasses.replace(clock, bound_ns=bound)


def applied(found: Sequence[NodeClock | None], policy: str) -> list[NodeClock | None]:
    """The models to apply to the nodes' timestamps (see ``clock_correction``)."""
    if policy == "never":
        return [None] * len(found)
    return [clock if clock is not None and clock.path[1:]
            and (policy == "always" or clock.significant()) else None for clock in found]


def on_reference_clock(ts: np.ndarray, node: np.ndarray,
                       models: Sequence[NodeClock | None]) -> np.ndarray:
    """``ts`` (capture times on the nodes' clocks; NO_VALUE: none) on the reference clock,
    in place (returned)."""
    for code, model in enumerate(models):
        if model is None:
            continue
        at = np.flatnonzero((node == code) & (ts != NO_VALUE))
        ts[at] = model.to_reference(ts[at])
    return ts


def clock_table(node_names: Sequence[str], found: Sequence[NodeClock | None],
                used: Sequence[NodeClock | None], reference: int = 0) -> pd.DataFrame:
    """The ``clock_offsets`` table (see the module docstring)."""
    if not node_names:
        return empty_frame(CLOCK_SCHEMA)
    is_reference = [i == reference for i in range(len(node_names))]
    return typed_frame(pd.DataFrame({
        "node": list(node_names),
        "reference_node": [node_names[reference]] * len(node_names),
        "offset_ns": [pd.NA if f is None else round(f.offset_ns) for f in found],
        "drift_ppm": [pd.NA if f is None else round(f.drift_ppm, 6) for f in found],
        "at_ns": [pd.NA if f is None or ref else f.at_ns
                  for f, ref in zip(found, is_reference, strict=True)],
        "bound_ns": [pd.NA if f is None else int(np.ceil(f.bound_ns)) for f in found],
        "samples": [pd.NA if f is None else f.samples for f in found],
        "applied_ns": [0 if u is None else round(u.offset_ns) for u in used],
    }), CLOCK_SCHEMA)
