"""Which way a crossing went when TTL and capture direction don't tell: address ownership.

A node owns the addresses it sends from on its underlay. Two ``tcpdump -i eth0`` files of a
VXLAN underlay show every packet once on each node, with the same TTL and no direction; the
outer source address still says which node sent it. Who owns an address, strongest evidence
first:

1. metadata (``node_addresses``: a node's own interface addresses, as ``ip addr`` lists them);
2. tunnelled copies a node was seen sending (:func:`pktkit.analysis.crossings.emitted`):
   captured going ``out``, or encapsulated on the node (an untunnelled copy of the packet
   came first on it). An address two nodes were seen sending from belongs to neither;
3. causality, for the crossings still open between a pair of nodes
   (:func:`orient_by_timing`): grouped by the addresses their copies carry (all of a group
   went the same way), the groups are given a way each, every combination of them considered
   (the largest :data:`_ENUMERATED`, by a pruned search; any others one at a time): only the
   ways under which some clock line (offset and drift) has every packet arrive after it left
   are possible (:func:`~pktkit.analysis.clockfit.feasible_polygon`). Had two groups gone
   the other way round, the line would have to pass above the one and below the other where
   in truth it passes below and above them; as their packets interleave in time, no line
   does. Groups already oriented by TTL, direction or ownership keep their way. A group the
   possible combinations disagree on stays open and gives no sample. The test reads only
   each group's bounding points (:class:`~pktkit.analysis.crossings.CrossingGroups`,
   :func:`orient_groups`): the polygon of all the crossings is the polygon of those.

ARP replies would also name the owner of an address, but the packet table does not carry the
ARP sender address; the metadata hook takes interface addresses instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pktkit.analysis.clockfit import OneWay, envelope_gap, feasible_polygon, tolerance_bound
from pktkit.analysis.crossings import CrossingGroups
from pktkit.analysis.rows import run_starts

_ENUMERATED = 8  # open groups of one node pair whose every combination is considered


def owners(addresses: Sequence[str], evidence: pd.DataFrame, node_names: Sequence[str],
           node_addresses: Mapping[str, Iterable[str]] | None = None) -> np.ndarray:
    """Per address code, the code of the node that owns it (-1: unknown or contested)."""
    owner = np.full(len(addresses), -1, np.int32)
    contested = np.zeros(len(addresses), bool)
    if len(evidence):
        nodes = evidence.groupby("address")["node"].nunique()
        first = evidence.groupby("address")["node"].first()
        address = first.index.to_numpy(np.int64)
        owner[address] = first.to_numpy(np.int32)
        contested[address[nodes.to_numpy() > 1]] = True
    owner[contested] = -1
    index = {a: i for i, a in enumerate(addresses)}
    for node, own in (node_addresses or {}).items():  # metadata: the strongest evidence
        if node in node_names:
            for address in own:
                if address in index:
                    owner[index[address]] = node_names.index(node)
    return owner


def orient_by_owner(found: pd.DataFrame, owner: np.ndarray) -> pd.DataFrame:
    """The crossings' ``way`` where it is open and the wire copy's address has an owner
    among the two nodes (a copy in a new frame)."""
    found = found.copy()
    open_ = found["way"].to_numpy() == 0
    if not open_.any() or not len(owner):
        return found

    def owned(sender: str, receiver: str, node: str) -> np.ndarray:
        code = found[sender].to_numpy()
        known = code >= 0
        by = np.where(known, owner[np.maximum(code, 0)], -1)
        return known & (code == found[receiver].to_numpy()) & (by == found[node].to_numpy())

    forward, backward = owned("a_sender", "b_receiver", "a"), owned("b_sender", "a_receiver", "b")
    way = found["way"].to_numpy().copy()
    way[open_ & forward & ~backward] = 1
    way[open_ & backward & ~forward] = -1
    found["way"] = way
    return found


def orient_by_timing(found: pd.DataFrame) -> pd.DataFrame:
    """The open crossings' ``way`` from causality, per node pair (see the module docstring;
    a copy in a new frame): :func:`orient_groups` of their groups."""
    found = found.copy()
    if not (found["way"] == 0).any():
        return found
    groups = CrossingGroups.of(found)
    keys = groups.keys
    # each crossing's group: its row among the groups' keys
    code = found[keys.columns.tolist()].astype(np.int64).merge(
        keys.reset_index(), how="left", on=keys.columns.tolist())["index"].to_numpy()
    found["way"] = orient_groups(groups)[code].astype(np.int8)
    return found


def orient_groups(groups: CrossingGroups, way: np.ndarray | None = None) -> np.ndarray:
    """Per group of crossings its way from causality where ``way`` (default: the groups' own)
    leaves it open, per node pair: 1, -1, or 0 when still open."""
    way = (groups.keys["way"].to_numpy() if way is None else way).astype(np.int8).copy()
    count = groups.count
    # the groups are in (a, b) order: one run per node pair
    starts = np.flatnonzero(run_starts(groups.keys["a"].to_numpy(), groups.keys["b"].to_numpy()))
    for first, end in zip(starts, np.append(starts[1:], len(way))[:len(starts)], strict=True):
        at = np.arange(first, end)
        if (way[at] == 0).any():
            decided = _split([groups.ab[g] for g in at], [groups.ba[g] for g in at], way[at],
                             count[at])
            if decided is not None:
                way[at] = decided
    return way


def _points(ways: list[OneWay | None]) -> tuple[np.ndarray, np.ndarray]:
    """The bounding points (send, recv) of some groups' samples, together."""
    found = [w for w in ways if w is not None]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([w.hull_send for w in found]), np.concatenate([w.hull_recv
                                                                          for w in found])


def _split(ab: list[OneWay | None], ba: list[OneWay | None], side: np.ndarray,
           count: np.ndarray) -> np.ndarray | None:
    """The way of every group of one node pair (``ab``, ``ba``: its samples either way;
    ``side``: its way where known), or None when causality allows no single assignment.
    Only the groups' bounding points can bind a line (:class:`OneWay`), so those are all
    the feasibility test reads.

    The largest open groups (:data:`_ENUMERATED`) take the way every possible combination of
    them gives, or stay open where two possible combinations disagree. Rather than testing
    all 2^k combinations, a depth-first search finds one possible combination, then, per
    group not yet seen both ways, one with that group the other way: the possible
    combinations' agreement is all the answer needs. A group added to a side only adds
    points, and points only shrink the polygon, so a combination whose first groups miss
    every line (by more than the test's tolerance could be for all the groups:
    :func:`~pktkit.analysis.clockfit.tolerance_bound`) is impossible whatever the rest: the
    search stops there (10.9M frames on 32 nodes: 169 s of tests before, see
    docs/SCALING.md)."""
    groups = len(side)
    fixed = side != 0
    # the largest open groups are tried both ways; any others follow one at a time
    open_ = sorted(np.flatnonzero(~fixed).tolist(), key=lambda g: -int(count[g]))
    tried, later = open_[:_ENUMERATED], open_[_ENUMERATED:]

    # the feasibility test's tolerance grows with the samples' spread: a subset is ruled out
    # only when it misses by more than any superset's tolerance
    (ab_send, ab_recv), (ba_send, ba_recv) = _points(ab), _points(ba)
    margin = 2 * tolerance_bound(np.r_[ab_send, ba_send], np.r_[ab_recv, ba_recv],
                                 np.arange(len(ab_send) + len(ba_send)) < len(ab_send))

    def possible(ways: np.ndarray, *, partial: bool = False) -> bool:
        """Whether some line fits ``ways``' groups (``partial``: groups may still be added,
        so a side without samples does not rule it out, nor a miss within ``margin``)."""
        fs, fr = _points([ab[g] for g in range(groups) if ways[g] == 1])
        bs, br = _points([ba[g] for g in range(groups) if ways[g] == -1])
        if not len(fs) or not len(bs):
            return partial
        if partial:
            return envelope_gap(fs, fr, bs, br) <= margin
        return feasible_polygon(fs, fr, bs, br)[0] is not None

    def completed(ways: np.ndarray, depth: int, prefer: np.ndarray) -> np.ndarray | None:
        """A possible combination extending ``ways`` over ``tried[depth:]`` (each group its
        ``prefer`` way first), or None."""
        if depth == len(tried):
            return ways.copy() if possible(ways) else None
        g = tried[depth]
        if ways[g]:  # given by the caller
            return completed(ways, depth + 1, prefer)
        for way in (prefer[g], -prefer[g]):
            ways[g] = way
            last = depth + 1 == len(tried)
            found = completed(ways, depth + 1, prefer) if last or possible(
                ways, partial=True) else None
            if found is not None:
                ways[g] = 0
                return found
        ways[g] = 0
        return None

    start = side.astype(np.int8).copy()
    first = completed(start.copy(), 0, np.ones(groups, np.int8))
    if first is None:
        return None
    seen = {g: {int(first[g])} for g in tried}
    for g in tried:
        if len(seen[g]) == 2:
            continue
        trial = start.copy()
        trial[g] = -first[g]
        other = completed(trial, 0, first)
        if other is not None:
            for h, ways_seen in seen.items():
                ways_seen.add(int(other[h]))
    ways = start
    for g in tried:
        ways[g] = first[g] if len(seen[g]) == 1 else 0
    for g in later:  # one at a time against what is decided
        both = []
        for way in (1, -1):
            trial = ways.copy()
            trial[g] = way
            both.append(possible(trial))
        if both[0] != both[1]:
            ways[g] = 1 if both[0] else -1
    return ways
