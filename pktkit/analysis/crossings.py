"""Packets crossing between nodes: one sighting group per node, and which way each went.

Per node (one clock), the units of a signature close in time (no gap beyond the learnt
limits, :mod:`~pktkit.analysis.grouping`: inside a node no link's queue holds a packet) with
each slot once are one *node-local group*. A signature with exactly one such group on each of
two nodes crossed between them. Which way, first rule that tells:

1. TTL: the sender's copies have a TTL at least the receiver's, and not the other way round;
2. capture direction, where recorded: the sender's last copy goes out, the receiver's first
   comes in;
3. address ownership (:mod:`~pktkit.analysis.ownership`): the copy on the wire carries the
   sender's address (decided later, over all crossings: see :func:`undecided`).

This is per-signature work: a partition of the units holding all sightings of its signatures
gives its own crossings, and reduces them (:class:`CrossingGroups`: per group of crossings
that go one way together, what the clock fit reads exactly, and per node pair a bottom-k
sample); the reductions of all partitions merge exactly, and the clock fit
(:mod:`~pktkit.analysis.clocks`) reads the merged one.

``crossings`` — one row per crossing (a DataFrame)

============  ======  ===================================================================
a, b          int32   the two nodes (codes), a < b
way           int8    1: a → b, -1: b → a, 0: not yet known
sig           int64   the signature (crossings are in (a, sig, b) order)
a_first,      int64   the group on a: first and last capture time (a's clock)
a_last
b_first,      int64   the group on b (b's clock)
b_last
a_sender,     int32   wire address (:attr:`Units.sender`) of a's copy nearest the wire when
b_sender              a sent it (its last), and of b's likewise; -1 none
a_receiver,   int32   ... and of the copy nearest the wire when it received it (its first)
b_receiver
============  ======  ===================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis import clockfit
from pktkit.analysis.clockfit import OneWay
from pktkit.analysis.grouping import tight_groups
from pktkit.analysis.rows import NO_VALUE, int_column, row_digest, run_starts
from pktkit.analysis.sightings import Units

CROSSING_COLUMNS = ("a", "b", "way", "sig", "a_first", "a_last", "b_first", "b_last", "a_sender",
                    "b_sender", "a_receiver", "b_receiver")
# what a crossing's group is: its node pair, its way as far as known, its wire addresses (all
# crossings of a group go the same way: ownership and causality orient whole groups)
GROUP_COLUMNS = ["a", "b", "way", "a_sender", "b_sender", "a_receiver", "b_receiver"]
ADDRESS_COLUMNS = GROUP_COLUMNS[3:]
ANY_ADDRESS = -2  # the addresses of an oriented crossing's group: not needed
SAMPLE_COLUMNS = ["a_first", "a_last", "b_first", "b_last"]


def node_order(units: Units) -> np.ndarray:
    """The matched units sorted by node, signature and time (of ties: unit order): the order
    node-local groups are cut in."""
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((units.ts, units.sig, units.node))
    return order[units.sig[order] != NO_VALUE]


def node_keys(units: Units) -> np.ndarray:
    """Per unit, the key of its node-local groups: (node, signature)."""
    return row_digest([units.node, units.sig])


def node_groups(units: Units, packets: pd.DataFrame, window_ns: int,
                limits: np.ndarray | None = None) -> pd.DataFrame:
    """One row per clean node-local sighting group that is its signature's only one on its
    node: node, sig, first/last time and unit, TTL range, directions of the first and last
    sighting. ``limits``: the gap limit per slot (default: learnt from ``units``, as
    :func:`~pktkit.analysis.grouping.gap_limits` of :func:`node_keys` in :func:`node_order`;
    a partition gets those of every partition)."""
    columns = ["node", "sig", "first", "last", "first_unit", "last_unit", "ttl_min",
               "ttl_max", "dir_first", "dir_last"]
    if (units.sig == NO_VALUE).all():
        return pd.DataFrame(columns=columns, dtype=np.int64)
    order = node_order(units)
    key = node_keys(units)
    starts, clean = tight_groups(key, units.slot, units.ts, order, units.slots, window_ns,
                                 limits)[1:]
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
        "first": units.ts[first], "last": units.ts[last], "first_unit": first,
        "last_unit": last, "ttl_min": lo[alone], "ttl_max": hi[alone],
        "dir_first": int_column(packets, "direction", units.row[first]),
        "dir_last": int_column(packets, "direction", units.row[last]),
    }, copy=False)


def crossings(groups: pd.DataFrame, units: Units, out_code: int, in_code: int) -> pd.DataFrame:
    """Pairs of node-local groups of one signature on two nodes (see the module docstring),
    oriented where TTL or the capture direction tells."""
    # Only signatures and row numbers are joined: the pairs can be many.
    rows = pd.DataFrame({"sig": groups["sig"].to_numpy(), "row": np.arange(len(groups))})
    pairs = rows.merge(rows, on="sig", suffixes=("_a", "_b"))
    a, b = pairs["row_a"].to_numpy(), pairs["row_b"].to_numpy()
    del pairs
    node = groups["node"].to_numpy()
    keep = node[a] < node[b]  # each unordered pair once
    a, b = a[keep], b[keep]
    ttl_min, ttl_max = groups["ttl_min"].to_numpy(), groups["ttl_max"].to_numpy()
    dir_first, dir_last = groups["dir_first"].to_numpy(), groups["dir_last"].to_numpy()
    # directions, where captured: the sender's last copy leaves, the receiver's first arrives
    leaves = (dir_last < 0) | (dir_last == out_code)
    arrives = (dir_first < 0) | (dir_first == in_code)
    forward = (ttl_min[a] >= ttl_max[b]) & leaves[a] & arrives[b]
    backward = (ttl_min[b] >= ttl_max[a]) & leaves[b] & arrives[a]
    way = np.where(forward & ~backward, 1, np.where(backward & ~forward, -1, 0)).astype(np.int8)
    first, last = groups["first"].to_numpy(), groups["last"].to_numpy()
    first_unit, last_unit = groups["first_unit"].to_numpy(), groups["last_unit"].to_numpy()
    return pd.DataFrame({
        "a": node[a].astype(np.int32), "b": node[b].astype(np.int32), "way": way,
        "sig": groups["sig"].to_numpy()[a],
        "a_first": first[a], "a_last": last[a], "b_first": first[b], "b_last": last[b],
        "a_sender": units.sender[last_unit[a]], "b_sender": units.sender[last_unit[b]],
        "a_receiver": units.sender[first_unit[a]], "b_receiver": units.sender[first_unit[b]],
    }, copy=False)


def emitted(groups: pd.DataFrame, units: Units, packets: pd.DataFrame,
            out_code: int) -> pd.DataFrame:
    """Evidence of address ownership in one partition: (node, address) of every tunnelled
    copy a node sent, seen as such: captured going ``out``, or the last of a node-local group
    that starts untunnelled (the node encapsulated it). One row per (node, address), with
    ``count``."""
    direction = int_column(packets, "direction", units.row)
    out = np.flatnonzero(units.tunnelled & (direction == out_code) & (units.sender >= 0))
    del direction
    first, last = groups["first_unit"].to_numpy(), groups["last_unit"].to_numpy()
    encapsulated = last[~units.tunnelled[first] & units.tunnelled[last]
                        & (units.sender[last] >= 0)]
    found = pd.DataFrame({"node": units.node[np.r_[out, encapsulated]],
                          "address": units.sender[np.r_[out, encapsulated]]})
    return found.value_counts().rename("count").reset_index()


def undecided(found: pd.DataFrame) -> np.ndarray:
    """Which crossings TTL and capture direction left open."""
    return (found["way"] == 0).to_numpy()


def group_codes(found: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The groups of ``found`` (one row each, :data:`GROUP_COLUMNS` as int64, sorted by them)
    and each crossing's group. The addresses tell the open crossings' groups apart only:
    those of the oriented are :data:`ANY_ADDRESS` (one group per pair and way)."""
    keys = found[GROUP_COLUMNS].astype(np.int64)
    oriented = keys["way"].to_numpy() != 0
    for name in ADDRESS_COLUMNS:
        keys[name] = np.where(oriented, ANY_ADDRESS, keys[name].to_numpy())
    order = np.lexsort([keys[c].to_numpy() for c in reversed(GROUP_COLUMNS)])
    sorted_keys = keys.take(order)
    new = np.ones(len(order), bool)
    if len(order):
        new[1:] = (sorted_keys.to_numpy()[1:] != sorted_keys.to_numpy()[:-1]).any(axis=1)
    code = np.empty(len(order), np.int64)
    code[order] = np.cumsum(new) - 1
    return sorted_keys[new].reset_index(drop=True), code


def _pair_sample(a: np.ndarray, b: np.ndarray, sig: np.ndarray, size: int) -> np.ndarray:
    """Indices of each node pair's ``size`` crossings with the smallest hash of their
    signature (then signature), in (a, b, signature) order: a bottom-k sample per pair, the
    same of a union as of the union of its parts' samples."""
    order = np.lexsort((sig, row_digest([sig]), b, a))
    starts = np.flatnonzero(run_starts(a[order], b[order]))
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[rank < size]
    return keep[np.lexsort((sig[keep], b[keep], a[keep]))]


@dataclass
class CrossingGroups:
    """The crossings reduced per group (:func:`group_codes`: node pair, way as far as known,
    and for the open ones the wire addresses) and per node pair; bounded by the groups and
    pairs, not by the crossings, and merged exactly (:meth:`merge`): any partition of the
    crossings gives the same reduction.

    Per group, what the clock fit reads exactly (:class:`~pktkit.analysis.clockfit.OneWay`
    without a sample: count, sum of times, bounding points) both ways it may have gone:
    ``ab`` as a → b samples (a's last sighting, b's first; None when known to have gone
    b → a), ``ba`` as b → a samples. Per node pair, ``sample``: its 2 × :data:`~pktkit.
    analysis.clockfit.SAMPLE_SIZE` crossings with the smallest hashes of their signatures
    (all of them up to that), with their group: once the groups are oriented, each
    direction's statistical sample (:meth:`directions`)."""

    keys: pd.DataFrame  # one row per group: GROUP_COLUMNS (int64), sorted by them
    ab: list[OneWay | None]
    ba: list[OneWay | None]
    sample: pd.DataFrame  # group (index into keys), SAMPLE_COLUMNS; by (a, b, sig)

    @classmethod
    def of(cls, found: pd.DataFrame) -> CrossingGroups:
        """The reduction of ``found`` (:func:`crossings`; without ``sig``, the crossings are
        keyed by their places)."""
        keys, code = group_codes(found)
        order = np.argsort(code, kind="stable")
        starts = np.searchsorted(code[order], np.arange(len(keys) + 1))
        sig = found["sig"].to_numpy(np.int64) if "sig" in found else np.arange(len(found))
        a_first, a_last, b_first, b_last = (found[c].to_numpy(np.int64) for c in (
            "a_first", "a_last", "b_first", "b_last"))
        ab: list[OneWay | None] = []
        ba: list[OneWay | None] = []
        for g, way in enumerate(keys["way"].to_numpy()):
            rows = order[starts[g]:starts[g + 1]]
            ab.append(None if way == -1 else OneWay.of(a_last[rows], b_first[rows], True,
                                                        sig[rows], size=0))
            ba.append(None if way == 1 else OneWay.of(b_last[rows], a_first[rows], False,
                                                       sig[rows], size=0))
        sample = pd.DataFrame({"group": code.astype(np.int32), "sig": sig, "a_first": a_first,
                               "a_last": a_last, "b_first": b_first, "b_last": b_last})
        return cls(keys, ab, ba, cls._sampled(keys, sample))

    @staticmethod
    def _sampled(keys: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
        group = sample["group"].to_numpy()
        a, b = keys["a"].to_numpy()[group], keys["b"].to_numpy()[group]
        keep = _pair_sample(a, b, sample["sig"].to_numpy(), 2 * clockfit.SAMPLE_SIZE)
        return sample.take(keep).reset_index(drop=True)

    @property
    def count(self) -> np.ndarray:
        """Crossings per group."""
        return np.array([(ab if ab is not None else ba).count  # type: ignore[union-attr]
                         for ab, ba in zip(self.ab, self.ba, strict=True)], np.int64)

    def recoded(self, remap: np.ndarray) -> CrossingGroups:
        """The groups with their address codes mapped by ``remap`` (negative codes stay);
        groups that become one are not merged yet (:meth:`merge` does)."""
        keys = self.keys.copy()
        for name in ADDRESS_COLUMNS:
            code = keys[name].to_numpy()
            keys[name] = np.where(code >= 0, remap[np.maximum(code, 0)] if len(remap) else -1,
                                  code)
        return CrossingGroups(keys, list(self.ab), list(self.ba), self.sample)

    @staticmethod
    def merge(parts: Iterable[CrossingGroups]) -> CrossingGroups:
        """One reduction of the crossings of all ``parts`` (their address codes alike)."""
        parts = list(parts)
        keys, code = group_codes(pd.concat([p.keys for p in parts], ignore_index=True))
        first = np.cumsum([0] + [len(p.keys) for p in parts])
        ab = [w for p in parts for w in p.ab]
        ba = [w for p in parts for w in p.ba]
        order = np.argsort(code, kind="stable")
        members = np.split(order, np.searchsorted(code[order], np.arange(1, len(keys)))) \
            if len(keys) else []

        def merged(ways: list[OneWay | None], at: np.ndarray) -> OneWay | None:
            found = [ways[i] for i in at if ways[i] is not None]
            return OneWay.merge(found, size=0) if found else None  # type: ignore[arg-type]

        sample = pd.concat([p.sample.assign(group=code[first[i] + p.sample["group"].to_numpy()]
                                            .astype(np.int32))
                            for i, p in enumerate(parts)], ignore_index=True)
        return CrossingGroups(keys, [merged(ab, m) for m in members],
                              [merged(ba, m) for m in members],
                              CrossingGroups._sampled(keys, sample))

    def directions(self, way: np.ndarray) -> dict[tuple[int, int], tuple[OneWay, OneWay]]:
        """Per node pair (a, b) crossed both ways, with the groups' ``way``: the a → b and the
        b → a crossings, each merged over its groups, with their share of the pair's sample
        (signature order)."""
        out: dict[tuple[int, int], tuple[OneWay, OneWay]] = {}
        a_of, b_of = self.keys["a"].to_numpy(), self.keys["b"].to_numpy()
        group = self.sample["group"].to_numpy()
        sig = self.sample["sig"].to_numpy()
        column = {c: self.sample[c].to_numpy() for c in SAMPLE_COLUMNS}
        # the groups, and the sample, are in (a, b) order: one slice of each per pair
        starts = np.flatnonzero(run_starts(a_of, b_of))
        ends = np.append(starts[1:], len(a_of))[:len(starts)]
        sample_pair = np.searchsorted(starts, group, side="right") - 1
        cuts = np.searchsorted(sample_pair, np.arange(len(starts) + 1))
        for p, (first, end) in enumerate(zip(starts, ends, strict=True)):
            at = np.arange(first, end)
            forward = [self.ab[g] for g in at if way[g] == 1]
            backward = [self.ba[g] for g in at if way[g] == -1]
            if not forward or not backward:
                continue
            rows = np.arange(cuts[p], cuts[p + 1])
            f, k = rows[way[group[rows]] == 1], rows[way[group[rows]] == -1]
            out[(int(a_of[first]), int(b_of[first]))] = (
                OneWay.merge(forward, size=0).with_sample(  # type: ignore[arg-type]
                    sig[f], column["a_last"][f], column["b_first"][f]),
                OneWay.merge(backward, size=0).with_sample(  # type: ignore[arg-type]
                    sig[k], column["b_last"][k], column["a_first"][k]))
        return out
