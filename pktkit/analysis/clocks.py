"""Node clocks: each node's offset against the reference node, from packets crossing both ways.

Per node (one clock), the units of a signature that occupy distinct slots with no gap beyond
the limits are one node-local sighting group. A signature with one such group on each of two
nodes is a packet crossing between them; TTL (the sender's copies have a TTL at least the
receiver's) and, when captured, the directions (the sender's last copy goes ``out``, the
receiver's first comes ``in``) say which way. The one-way delays bound the offset from both
sides, as NTP does: with ``min_ab`` the smallest ``first_b - last_a`` over packets a → b (raw
clocks) and ``min_ba`` likewise, ``offset_b - offset_a = (min_ab - min_ba) / 2 ± (min_ab +
min_ba) / 2`` (the true offset is inside whenever the delays are positive). Samples farther
than ``window_ns`` from their direction's median are dropped first (a wrong match must not set
a minimum). Each node's offset against the reference node (the first node) follows the chain
of pairs with the smallest summed bound.

The correction applied (``clock_correction``): ``"auto"`` (default) subtracts the estimate only
when it is significant, i.e. the interval excludes 0 — when the data cannot tell the clocks
apart, the midpoint is noise (half the asymmetry of the two minimum delays) and shifting by it
would only add that error to synchronized clocks; ``"always"`` subtracts every estimate;
``"never"`` none.

``clock_offsets`` — one row per node

==============  ========  ===============================================================
node            string    the node
reference_node  string    the node whose clock is the reference (offset 0, bound 0)
offset_ns       Int64     node clock − reference clock; NA when no packet crossed between
                          them both ways (then no correction is applied)
bound_ns        Int64     the true offset lies within offset_ns ± bound_ns
samples         Int64     packets whose crossing gave the estimate (both directions)
applied_ns      Int64     the correction subtracted from the node's timestamps (see
                          ``clock_correction``): offset_ns, or 0
==============  ========  ===============================================================
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pktkit.analysis.grouping import clean_groups, gap_limits
from pktkit.analysis.rows import NO_VALUE, int_column, row_digest, run_starts
from pktkit.analysis.sightings import Units
from pktkit.capture.frame import empty_frame, typed_frame

CLOCK_SCHEMA: dict[str, str] = {
    "node": "string", "reference_node": "string", "offset_ns": "Int64", "bound_ns": "Int64",
    "samples": "Int64", "applied_ns": "Int64",
}
CLOCK_CORRECTIONS = ("auto", "always", "never")
Estimate = tuple[float, float, int]  # offset, bound, samples


def node_groups(units: Units, packets: pd.DataFrame, window_ns: int) -> pd.DataFrame:
    """One row per clean node-local sighting group: node, sig, first/last ts, TTL range,
    directions of the first and last sighting."""
    if (units.sig == NO_VALUE).all():
        return pd.DataFrame(columns=["node", "sig", "first", "last", "ttl_min", "ttl_max",
                                     "dir_first", "dir_last"], dtype=np.int64)
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((units.ts, units.sig, units.node))
    order = order[units.sig[order] != NO_VALUE]
    key = row_digest([units.node, units.sig])
    limits = gap_limits(key, units.slot, units.ts, order, units.slots, window_ns)
    starts, clean = clean_groups(key, units.slot, units.ts, order, limits)[1:]
    del key
    group_ttl = int_column(packets, "ttl", units.row[order])
    lo, hi = np.minimum.reduceat(group_ttl, starts), np.maximum.reduceat(group_ttl, starts)
    del group_ttl
    first, last = order[starts], order[np.append(starts[1:], len(order)) - 1]
    first, last, lo, hi = first[clean], last[clean], lo[clean], hi[clean]
    node, sig = units.node[first], units.sig[first]
    # a signature seen twice on a node (cleanly each time) matches nothing reliably; the
    # groups are in (node, signature) order, so such twins are neighbours
    new = run_starts(node, sig)
    alone = new & np.append(new[1:], True)
    first, last = first[alone], last[alone]
    return pd.DataFrame({
        "node": node[alone], "sig": sig[alone],
        "first": units.ts[first], "last": units.ts[last], "ttl_min": lo[alone],
        "ttl_max": hi[alone], "dir_first": int_column(packets, "direction", units.row[first]),
        "dir_last": int_column(packets, "direction", units.row[last]),
    }, copy=False)


def crossings(groups: pd.DataFrame, out_code: int, in_code: int) -> pd.DataFrame:
    """Pairs of node-local groups of one signature on two nodes, oriented a → b, with the
    raw-clock delay ``first_b - last_a``."""
    # Only signatures and row numbers are joined: the pairs can be many.
    rows = pd.DataFrame({"sig": groups["sig"].to_numpy(), "row": np.arange(len(groups))})
    pairs = rows.merge(rows, on="sig", suffixes=("_a", "_b"))
    a, b = pairs["row_a"].to_numpy(), pairs["row_b"].to_numpy()
    del pairs
    node = groups["node"].to_numpy()
    other_node = node[a] != node[b]
    a, b = a[other_node], b[other_node]
    ttl_min, ttl_max = groups["ttl_min"].to_numpy(), groups["ttl_max"].to_numpy()
    dir_first, dir_last = groups["dir_first"].to_numpy(), groups["dir_last"].to_numpy()
    # directions, where captured: the sender's last copy leaves, the receiver's first arrives
    leaves = (dir_last < 0) | (dir_last == out_code)
    arrives = (dir_first < 0) | (dir_first == in_code)
    forward = (ttl_min[a] >= ttl_max[b]) & leaves[a] & arrives[b]
    backward = (ttl_min[b] >= ttl_max[a]) & leaves[b] & arrives[a]
    # each unordered pair appears twice (a, b) and (b, a): keep the unambiguous forward one
    keep = forward & ~backward
    a, b = a[keep], b[keep]
    return pd.DataFrame({"a": node[a], "b": node[b],
                         "delay": groups["first"].to_numpy()[b] - groups["last"].to_numpy()[a]})


def pair_estimates(crossings: pd.DataFrame, window_ns: int) -> dict[tuple[int, int], tuple]:
    """NTP-style (offset_b - offset_a, bound, samples) per node pair a < b with traffic both
    ways."""
    out: dict[tuple[int, int], tuple] = {}
    if crossings.empty:
        return out
    robust = []
    for _, group in crossings.groupby(["a", "b"], sort=False):
        median = group["delay"].median()
        robust.append(group[(group["delay"] - median).abs() <= window_ns])
    crossings = pd.concat(robust)
    minima = crossings.groupby(["a", "b"])["delay"].agg(["min", "size"])
    for (a, b), row in minima.iterrows():
        if a > b or (b, a) not in minima.index:
            continue
        back = minima.loc[(b, a)]
        min_ab, min_ba = int(row["min"]), int(back["min"])
        bound = (min_ab + min_ba) / 2
        if bound < 0:  # the two directions contradict each other: no estimate
            continue
        out[(a, b)] = ((min_ab - min_ba) / 2, bound, int(row["size"]) + int(back["size"]))
    return out


def chain_offsets(estimates: dict[tuple[int, int], tuple], nodes: int,
             reference: int) -> list[tuple[float, float, int] | None]:
    """Each node's (offset, bound, samples) against the reference: the chain of pairwise
    estimates with the smallest summed bound (Dijkstra)."""
    edges: dict[int, list[tuple[int, float, float, int]]] = {i: [] for i in range(nodes)}
    for (a, b), (offset, bound, samples) in estimates.items():
        edges[a].append((b, offset, bound, samples))
        edges[b].append((a, -offset, bound, samples))
    best: list[tuple[float, float, int] | None] = [None] * nodes
    best[reference] = (0.0, 0.0, 0)
    heap = [(0.0, reference, 0.0, 0)]
    done: set[int] = set()
    while heap:
        bound, node, offset, samples = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        best[node] = (offset, bound, samples)
        for other, step, step_bound, step_samples in edges[node]:
            if other not in done:
                heapq.heappush(heap, (bound + step_bound, other, offset + step,
                                      samples + step_samples))
    return best


def applied_correction(found: tuple[float, float, int] | None, policy: str) -> int:
    """The correction to subtract from a node's timestamps (see ``clock_correction``)."""
    if found is None or policy == "never":
        return 0
    offset, bound, _ = found
    return round(offset) if policy == "always" or abs(offset) > bound else 0


def on_reference_clock(ts: np.ndarray, node: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``ts`` (capture times on the nodes' clocks; NO_VALUE: none) minus each node's applied
    offset, in place (returned)."""
    if offsets.any():
        ts -= np.where(ts == NO_VALUE, 0, offsets[np.maximum(node, 0)])
    return ts


def clock_table(node_names: Sequence[str], found: Sequence[Estimate | None],
                applied: Sequence[int], reference: int = 0) -> pd.DataFrame:
    """The ``clock_offsets`` table (see the module docstring)."""
    if not node_names:
        return empty_frame(CLOCK_SCHEMA)
    return typed_frame(pd.DataFrame({
        "node": list(node_names),
        "reference_node": [node_names[reference]] * len(node_names),
        "offset_ns": [pd.NA if f is None else round(f[0]) for f in found],
        "bound_ns": [pd.NA if f is None else int(np.ceil(f[1])) for f in found],
        "samples": [pd.NA if f is None else f[2] for f in found],
        "applied_ns": list(applied),
    }), CLOCK_SCHEMA)
