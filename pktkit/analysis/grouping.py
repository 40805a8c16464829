"""Sightings of one signature grouped into packets by time: the gap limits, clean groups.

Time tells look-alikes apart (two tenants' identical datagrams whose IP ids collide, a DNS
retry with IP id 0): consecutive sightings of one packet are close. The *gap limit* after a
slot is GAP_FACTOR times the median gap from that slot to the next sighting of the same
signature (at least MIN_GAP_LIMIT_NS, at most ``window_ns``); a slot that is mostly the last
of its packets (a pod's veth on delivery) uses the median over all slots. A longer gap starts
another packet. The limits are learnt from the data, so an uncorrected clock offset between
two nodes is not mistaken for look-alikes.
"""

from __future__ import annotations

import numpy as np

from pktkit.analysis.rows import run_ids, run_starts

DEFAULT_WINDOW_NS = 1_000_000_000  # longest gap between two sightings of one packet
# A gap after a slot longer than GAP_FACTOR × that slot's median gap to the next sighting (and
# than MIN_GAP_LIMIT_NS) is no hop but two packets that happen to look alike.
GAP_FACTOR = 100
MIN_GAP_LIMIT_NS = 1_000_000


def gap_limits(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                slots: int, window_ns: int) -> np.ndarray:
    """The longest plausible gap after each slot (see GAP_FACTOR), from the consecutive
    sightings of equal ``key`` in ``order`` (sorted by key, then time); capped by the window.
    A slot that is mostly the last of its packets (a pod's veth on delivery) has only
    look-alikes after it: it uses the median over all slots."""
    k = key[order]
    same = k[1:] == k[:-1]
    del k
    limits = np.full(slots, window_ns, np.int64)
    if not same.any():
        return limits
    s, t = slot[order], ts[order]
    gaps = (t[1:] - t[:-1])[same]
    del t
    gap_slot = s[:-1][same]
    followed = np.bincount(gap_slot, minlength=slots) * 2 >= np.bincount(s, minlength=slots)
    del s
    index, medians = group_medians(gaps, gap_slot, slots)
    typical = np.full(slots, float(np.median(gaps)))
    keep = followed[index]
    typical[index[keep]] = medians[keep]
    return np.clip(GAP_FACTOR * typical, MIN_GAP_LIMIT_NS, window_ns).astype(np.int64)


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


def clean_groups(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                  limits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units in ``order`` (sorted by key, then time) → (group id per position, group start
    positions, clean flag per group). A group is a run of equal key with no gap beyond the
    previous slot's limit; clean when its units occupy distinct slots."""
    s = slot[order]
    start = run_starts(key[order])
    gaps = np.diff(ts[order])
    start[1:] |= gaps > limits[s[:-1]]
    del gaps
    group = run_ids(start)
    starts = np.flatnonzero(start)
    del start
    # group is sorted already: ordering by (group, slot) only reorders the slots
    distinct = run_starts(group, s[np.lexsort((s, group))])
    slots = np.bincount(group, weights=distinct, minlength=len(starts))
    sizes = np.diff(np.append(starts, len(order)))
    return group, starts, slots == sizes
