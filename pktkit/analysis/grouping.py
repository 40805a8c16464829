"""Sightings of one signature grouped into packets by time: the window, the paths, clean groups.

A packet's sightings are one packet whenever nothing else shares their signature within the
*window* (``window_ns``, default 1 s) and each capture point (slot) sees it once: however long a
queue held it. Two things still cut such a run:

- a gap beyond the window: whatever came that much later is another packet;
- a step no unambiguous packet takes (an unknown *transition* between two slots) that is
  longer than the slot's *gap limit*: two look-alikes on other paths (two tenants' identical
  datagrams whose IP ids collide, a DNS retry with IP id 0), not one packet that crossed
  between unrelated capture points.

The gap limit after a slot is GAP_FACTOR times the median gap from that slot to the next
sighting of the same signature (at least MIN_GAP_LIMIT_NS, at most ``window_ns``); a slot that
is mostly the last of its packets (a pod's veth on delivery) uses the median over all slots.
The known transitions (:class:`PathModel`) are those of the *tight* groups: runs with no gap
beyond the limits and every slot once, with the median delay of their steps. The medians are
exact, taken in two mergeable passes (:mod:`~pktkit.analysis.medians`), so that parts of a
capture (:mod:`~pktkit.analysis.parts`) find the limits and transitions of the whole. Both
are learnt from the data, so an uncorrected clock offset between two nodes is not mistaken
for look-alikes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pktkit.analysis.medians import exact_medians
from pktkit.analysis.rows import run_ids, run_starts

DEFAULT_WINDOW_NS = 1_000_000_000  # longest gap between two sightings of one packet
# A gap after a slot longer than GAP_FACTOR × that slot's median gap to the next sighting (and
# than MIN_GAP_LIMIT_NS) is no hop but two packets that happen to look alike.
GAP_FACTOR = 100
MIN_GAP_LIMIT_NS = 1_000_000
SMALL_GROUP = 8  # units in a group checked for a repeated slot without sorting


ALL_SLOTS = -1  # the group of every slot's gaps, beside each slot's own


def gap_values(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
               slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The units of each slot in ``order`` (sorted by key, then time), and the gaps between
    consecutive sightings of equal ``key``: (the slot each gap follows, the gap), grouped for
    :func:`~pktkit.analysis.medians.exact_medians` (each gap twice: its slot's and
    ALL_SLOTS')."""
    k = key[order]
    same = k[1:] == k[:-1]
    del k
    s = slot[order]
    units = np.bincount(s, minlength=slots).astype(np.int64)
    t = ts[order]
    gaps = (t[1:] - t[:-1])[same]
    del t
    gap_slot = s[:-1][same].astype(np.int64)
    return units, np.r_[gap_slot, np.full(len(gaps), ALL_SLOTS)], np.r_[gaps, gaps]


def limits_of(units: np.ndarray, groups: np.ndarray, sizes: np.ndarray, medians: np.ndarray,
              slots: int, window_ns: int) -> np.ndarray:
    """The longest plausible gap after each slot (see GAP_FACTOR), capped by the window:
    from the units per slot and, per group of gaps (a slot, or ALL_SLOTS; ascending), how
    many there are and their median. A slot that is mostly the last of its packets (a pod's
    veth on delivery) has only look-alikes after it: it uses the median over all slots."""
    limits = np.full(slots, window_ns, np.int64)
    if not len(groups):
        return limits
    own = groups != ALL_SLOTS
    index = groups[own]
    gapped = np.zeros(slots, np.int64)
    gapped[index] = sizes[own]
    followed = gapped * 2 >= units[:slots]
    typical = np.full(slots, float(medians[~own][0]))
    keep = followed[index]
    typical[index[keep]] = medians[own][keep]
    return np.clip(GAP_FACTOR * typical, MIN_GAP_LIMIT_NS, window_ns).astype(np.int64)


def gap_limits(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
               slots: int, window_ns: int) -> np.ndarray:
    """The longest plausible gap after each slot (see GAP_FACTOR), from the consecutive
    sightings of equal ``key`` in ``order`` (sorted by key, then time); capped by the window
    (:func:`limits_of` of :func:`gap_values`)."""
    units, group, gaps = gap_values(key, slot, ts, order, slots)
    groups, middle = exact_medians(group, gaps)
    sizes = np.bincount(np.searchsorted(groups, group), minlength=len(groups))
    return limits_of(units, groups, sizes, middle, slots, window_ns)


def group_medians(values: np.ndarray, code: np.ndarray,
                  codes: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes present (ascending) and the median of ``values`` per code, computed as
    pandas does (in float64, the mean of the two middle values) without its hash tables."""
    ordered = values[np.lexsort((values, code))]
    counts = np.bincount(code, minlength=codes)
    present = np.flatnonzero(counts)
    counts = counts[present]
    starts = np.cumsum(counts) - counts
    lower = ordered[starts + (counts - 1) // 2].astype(np.float64)
    upper = ordered[starts + counts // 2].astype(np.float64)
    return present, (lower + upper) / 2


@dataclass
class PathModel:
    """What the tight groups say about the paths: each slot's gap limit, and the transitions
    (slot → next slot) packets take with the median delay of each."""

    limits: np.ndarray  # per slot (int64 ns)
    transitions: dict[tuple[int, int], float]  # (slot, next slot) → median delay (ns)
    slots: int

    def known(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Whether each step ``before[i]`` → ``after[i]`` is a known transition."""
        keys = np.array(sorted(a * self.slots + b for a, b in self.transitions), np.int64)
        step = before.astype(np.int64) * self.slots + after
        at = np.searchsorted(keys, step)
        return (at < len(keys)) & (keys[np.minimum(at, max(0, len(keys) - 1))] == step) \
            if len(keys) else np.zeros(len(step), bool)


def step_values(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                slots: int, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The steps of units in ``order`` (sorted by key, then time) cut into tight groups at
    the gap ``limits``: every step of a clean group, as (transition code ``slot * slots +
    next slot``, delay). (All of them: a subsample taken in the order of a whole capture
    could not be taken in its partitions.)"""
    group, _, clean = _groups(key, slot, ts, order, _tight_cut(slot, ts, order, limits))
    same = (group[1:] == group[:-1]) & clean[group[1:]]
    steps = np.flatnonzero(same)
    before, after = order[:-1][steps], order[1:][steps]
    return slot[before].astype(np.int64) * slots + slot[after], ts[after] - ts[before]


def transitions_of(codes: np.ndarray, medians: np.ndarray,
                   slots: int) -> dict[tuple[int, int], float]:
    """(slot, next slot) → median delay, from the transition codes and their medians."""
    return {divmod(code, slots): median  # type: ignore[misc]
            for code, median in zip(codes.tolist(), medians.tolist(), strict=True)}


def learn_paths(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                slots: int, window_ns: int) -> PathModel:
    """The gap limits and known transitions of units in ``order`` (sorted by key, then
    time)."""
    limits = gap_limits(key, slot, ts, order, slots, window_ns)
    codes, medians = exact_medians(*step_values(key, slot, ts, order, slots, limits))
    return PathModel(limits, transitions_of(codes, medians, slots), slots)


def tight_groups(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                 slots: int, window_ns: int, limits: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`clean_groups` cut at every gap beyond the learnt limits (``limits``, when
    given), known transition or not: groups of sightings close in time (within one node,
    where no link's queue holds a packet, all of a packet's sightings are)."""
    if limits is None:
        limits = gap_limits(key, slot, ts, order, slots, window_ns)
    return _groups(key, slot, ts, order, _tight_cut(slot, ts, order, limits))


def _tight_cut(slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
               limits: np.ndarray) -> np.ndarray:
    """Per position after the first: the gap before it exceeds the previous slot's limit."""
    return np.diff(ts[order]) > limits[slot[order][:-1]]


def clean_groups(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                 paths: PathModel, window_ns: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units in ``order`` (sorted by key, then time) → (group id per position, group start
    positions, clean flag per group). A group is a run of equal key cut where the gap exceeds
    the window, or exceeds the previous slot's limit on an unknown transition; clean when its
    units occupy distinct slots."""
    s = slot[order]
    gaps = np.diff(ts[order])
    cut = gaps > window_ns
    unknown = ~paths.known(s[:-1], s[1:])
    cut |= unknown & (gaps > paths.limits[s[:-1]])
    del gaps, unknown
    return _groups(key, slot, ts, order, cut)


def _groups(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
            cut: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal key, also cut before each position where ``cut`` (one shorter than
    ``order``) holds: (group id per position, start positions, clean flag per group)."""
    s = slot[order]
    start = run_starts(key[order])
    start[1:] |= cut
    group = run_ids(start)
    starts = np.flatnonzero(start)
    del start
    sizes = np.diff(np.append(starts, len(order)))
    return group, starts, ~_repeats_slot(group, s, sizes)


def _repeats_slot(group: np.ndarray, s: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per group (positions in group order), whether a slot occurs twice in it. Groups of up
    to SMALL_GROUP units (nearly all: a packet passes a few points) compare each unit with the
    ones before it; larger ones are sorted."""
    repeated = np.zeros(len(sizes), bool)
    for back in range(1, SMALL_GROUP):
        same = (group[back:] == group[:-back]) & (s[back:] == s[:-back])
        repeated[group[back:][same]] = True
    large = np.flatnonzero(sizes > SMALL_GROUP)
    if len(large):
        at = np.flatnonzero(np.isin(group, large))
        g, slots = group[at], s[at]
        # group is sorted already: ordering by (group, slot) only reorders the slots
        order = np.lexsort((slots, g))
        twice = (g[order][1:] == g[order][:-1]) & (slots[order][1:] == slots[order][:-1])
        repeated[g[order][1:][twice]] = True
    return repeated
