"""Sightings into packets: signature groups on the reference clock, ambiguous ones split.

Units are grouped by signature and ordered on the reference clock (capture time minus the
node's applied offset), cut at gaps beyond the limits (:mod:`~pktkit.analysis.grouping`). A
group whose units occupy distinct slots is one packet. Any other group (a retransmission or
repeat the signature does not tell apart, e.g. IPv6 without an IP id) is split greedily: each
unit joins an open packet (gap within the limit, slot not yet used) — preferring one whose last
slot is known to lead to this one (learnt from the unambiguous groups) with the most typical
delay, else the oldest (links are queues); a hop no unambiguous packet took must be within
MIN_GAP_LIMIT_NS — or starts a new one. A retransmitted IPv4 segment has a new IP id and so
another signature; an IPv6 one is seen again at the slots it already used.

Fragment units are grouped by (version, protocol, IP id, addresses); such a packet joins the
unfragmented packet of the same key whose last sighting precedes its first within that
sighting's gap limit (the copy before the fragmenting VTEP).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from pktkit.analysis.grouping import MIN_GAP_LIMIT_NS, clean_groups, gap_limits
from pktkit.analysis.rows import NO_VALUE, run_starts
from pktkit.analysis.sightings import Units


def typical_transitions(units: Units, order: np.ndarray, group: np.ndarray,
                 clean: np.ndarray, ts: np.ndarray) -> dict[tuple[int, int], float]:
    """Median delay per (slot, next slot) over the unambiguous packets."""
    same = (group[1:] == group[:-1]) & clean[group[1:]]
    if not same.any():
        return {}
    prev, nxt = order[:-1][same], order[1:][same]
    frame = pd.DataFrame({"a": units.slot[prev], "b": units.slot[nxt],
                          "gap": ts[nxt] - ts[prev]})
    medians = frame.groupby(["a", "b"])["gap"].median()
    return {(int(a), int(b)): float(v) for (a, b), v in medians.items()}


def split_group(slot: list[int], ts: list[int], transitions: dict[tuple[int, int], float],
                 limits: list[int]) -> list[int]:
    """Greedy split of one ambiguous signature group (its units' slots and times, in time
    order): a packet number per unit, starting at 0."""
    open_: list[tuple[int, set[int], int, int]] = []  # (last ts, slots, last slot, number)
    best_score: tuple[int, float, int] | None
    numbers: list[int] = []
    for s, t in zip(slot, ts, strict=True):
        best, best_score = -1, None
        for i, (last_ts, slots, last_slot, number) in enumerate(open_):
            gap = t - last_ts
            typical = transitions.get((last_slot, s))
            # a hop no unambiguous packet took must at least be quick
            limit = limits[last_slot] if typical is not None else MIN_GAP_LIMIT_NS
            if gap > limit or s in slots:
                continue
            # the most typical delay for this hop; else first in, first out (links are queues)
            score = (0, abs(gap - typical), number) if typical is not None else (1, 0, number)
            if best_score is None or score < best_score:
                best, best_score = i, score
        if best < 0:
            open_.append((t, {s}, s, len(open_)))
            numbers.append(len(open_) - 1)
        else:
            _, slots, _, number = open_[best]
            slots.add(s)
            open_[best] = (t, slots, s, number)
            numbers.append(number)
    return numbers


def number_packets(units: Units, uts: np.ndarray, ucap: np.ndarray, uframe: np.ndarray,
                   window_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """A packet number per unit (units that match nothing: one each), and the gap limit of
    each slot. ``uts``: the units' times on the reference clock; ``ucap``/``uframe``: their
    capture code and frame, the tie-breakers."""
    m = len(units.row)
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((uframe, ucap, uts, units.sig))
    order = order[units.sig[order] != NO_VALUE]
    limits = gap_limits(units.sig, units.slot, uts, order, units.slots, window_ns)
    group, starts, clean = clean_groups(units.sig, units.slot, uts, order, limits)
    packet_of = np.full(m, NO_VALUE)
    packet_of[order] = group
    next_id = len(starts)
    if not clean.all():
        transitions = typical_transitions(units, order, group, clean, uts)
        # only the ambiguous groups' units as Python lists, group after group
        ambiguous = ~clean[group]
        positions, group_list = order[ambiguous], group[ambiguous].tolist()
        slot_list, ts_list = units.slot[positions].tolist(), uts[positions].tolist()
        limit_list = limits.tolist()
        bounds = [*np.flatnonzero(run_starts(group[ambiguous])).tolist(), len(positions)]
        new_ids: list[int] = []
        for a, b in itertools.pairwise(bounds):
            g = group_list[a]
            numbers = split_group(slot_list[a:b], ts_list[a:b], transitions, limit_list)
            new_ids.extend(g if number == 0 else next_id + number - 1 for number in numbers)
            next_id += max(numbers)
        packet_of[positions] = new_ids
        del transitions, ambiguous, positions, group_list, slot_list, ts_list, new_ids
    del order, group, starts, clean
    singles = np.flatnonzero(packet_of == NO_VALUE)
    packet_of[singles] = next_id + np.arange(len(singles))
    return join_fragments(units, packet_of, uts, limits), limits


def join_fragments(units: Units, packet_of: np.ndarray, uts: np.ndarray,
                    limits: np.ndarray) -> np.ndarray:
    """Fragment packets join the unfragmented packet of the same datagram key whose last
    sighting precedes their first, within the gap limit of that sighting's slot."""
    if not units.fragmented.any():
        return packet_of
    # The sightings with a datagram key and a time, in time order. Quicksort, as ever: the
    # order of equal times decides a packet's last key and slot, so it must not change.
    timed = np.flatnonzero((units.datagram != NO_VALUE) & (uts != NO_VALUE))
    if not len(timed):
        return packet_of
    timed = timed[np.argsort(uts[timed], kind="quicksort")]
    # grouped by packet (ascending), each packet's sightings still in that order
    by_packet = np.argsort(packet_of[timed], kind="stable")
    timed = timed[by_packet]
    del by_packet
    packet = packet_of[timed]
    starts = np.flatnonzero(run_starts(packet))
    first, last = timed[starts], timed[np.append(starts[1:], len(timed)) - 1]
    fragments = np.add.reduceat(units.fragmented[timed], starts, dtype=np.int64)
    sizes = np.diff(np.append(starts, len(timed)))
    per_packet = pd.DataFrame({"packet": packet[starts], "first": uts[first],
                               "last": uts[last], "key": units.datagram[last],
                               "slot": units.slot[last]})
    del timed, packet
    frags = per_packet[fragments == sizes].sort_values("first")
    whole = per_packet[fragments == 0].sort_values("last")
    if frags.empty or whole.empty:
        return packet_of
    joined = pd.merge_asof(frags, whole[["packet", "last", "key", "slot"]], left_on="first",
                           right_on="last", by="key", direction="backward",
                           tolerance=int(limits.max()), suffixes=("", "_whole"))
    joined = joined.dropna(subset=["packet_whole"])
    gap = joined["first"] - joined["last_whole"]
    joined = joined[gap <= limits[joined["slot_whole"].to_numpy(np.int64)]]
    remap = np.arange(int(packet_of.max()) + 1)
    remap[joined["packet"].to_numpy(np.int64)] = joined["packet_whole"].to_numpy(np.int64)
    return remap[packet_of]
