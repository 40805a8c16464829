"""Sightings into packets: signature groups on the reference clock, ambiguous ones split.

Units are grouped by signature and ordered on the reference clock (capture time after the
node's clock model), cut at the window and at unknown transitions beyond the gap limits
(:mod:`~pktkit.analysis.grouping`). A group whose units occupy distinct slots is one packet,
however long it took. Any other group (a retransmission or repeat the signature does not tell
apart, e.g. IPv6 without an IP id; a duplicate record is already folded into its original's
unit) is split greedily in time order: each unit joins an open packet that has not been seen
at its slot — preferring one whose last slot is known to lead to this one (any gap within the
window) with the most typical delay, else the one waiting longest at its last slot (links are
queues), whose step must then be quick (MIN_GAP_LIMIT_NS): a hop no unambiguous packet took —
or starts a new one. A retransmitted IPv4 segment has a new IP id and so another signature; an
IPv6 one is seen again at the slots it already used.

The split is near-linear in the group's size: open packets are kept per last slot, in time
order, so a unit finds its best candidate by bisection, and packets idle for longer than the
window are closed. 200 concatenated copies of one capture (every signature 200 times, at the
same instants) are split in one pass.

A unit of fragments holding its whole datagram has the signature of the packet it was cut
from (:mod:`~pktkit.analysis.fragments`): it groups with the whole copies and with the other
points' fragments like any packet, across NAT too. A packet made only of units missing pieces
(a fragment lost on the way: the receiver never has the whole datagram) has their datagram
key (version, protocol, IP id, addresses) as signature; it joins the packet of that key whose
last sighting precedes its first within that sighting's gap limit (the sender's copies).
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np
import pandas as pd

from pktkit.analysis.grouping import MIN_GAP_LIMIT_NS, PathModel, clean_groups, learn_paths
from pktkit.analysis.rows import NO_VALUE, run_starts
from pktkit.analysis.sightings import Units


class _OpenPackets:
    """The packets of one ambiguous group still open, by last slot: per slot two lists in
    time order (the packet's last time there, the packet), appended to as units come."""

    def __init__(self, window_ns: int) -> None:
        self.window = window_ns
        self.times: dict[int, list[int]] = {}
        self.packets: dict[int, list[int]] = {}
        self.seen: list[set[int]] = []  # per packet, the slots it was seen at

    def close_idle(self, now: int) -> None:
        """Forget the packets idle for longer than the window: nothing may join them."""
        for last_slot, times in self.times.items():
            k = bisect.bisect_left(times, now - self.window)
            if k:
                del times[:k]
                del self.packets[last_slot][:k]

    def nearest(self, last_slot: int, target: int, slot: int) -> int:
        """Index (in ``last_slot``'s lists) of the packet last seen nearest ``target`` that was
        not seen at ``slot``, the earlier on a tie; -1: none."""
        times, packets = self.times[last_slot], self.packets[last_slot]
        right = bisect.bisect_left(times, target)
        left = right - 1
        while left >= 0 or right < len(times):
            take_left = right >= len(times) or (
                left >= 0 and target - times[left] <= times[right] - target)
            index = left if take_left else right
            if slot not in self.seen[packets[index]]:
                return index
            if take_left:
                left -= 1
            else:
                right += 1
        return -1

    def first_since(self, last_slot: int, since: int, slot: int) -> int:
        """Index of the first packet last seen at or after ``since`` that was not seen at
        ``slot``; -1: none."""
        times, packets = self.times[last_slot], self.packets[last_slot]
        for index in range(bisect.bisect_left(times, since), len(times)):
            if slot not in self.seen[packets[index]]:
                return index
        return -1

    def take(self, last_slot: int, index: int) -> int:
        """Remove and return the packet at ``index`` of ``last_slot``'s lists."""
        del self.times[last_slot][index]
        return self.packets[last_slot].pop(index)

    def add(self, packet: int, slot: int, ts: int) -> None:
        self.times.setdefault(slot, []).append(ts)
        self.packets.setdefault(slot, []).append(packet)
        self.seen[packet].add(slot)

    def new(self) -> int:
        self.seen.append(set())
        return len(self.seen) - 1


def split_group(slot: list[int], ts: list[int], paths: PathModel, window_ns: int) -> list[int]:
    """Greedy split of one ambiguous signature group (its units' slots and times, in time
    order): a packet number per unit, starting at 0 (see the module docstring)."""
    transitions = paths.transitions
    open_ = _OpenPackets(window_ns)
    numbers: list[int] = []
    for s, t in zip(slot, ts, strict=True):
        open_.close_idle(t)
        best: tuple[float, ...] | None = None
        where = (-1, -1)
        for last_slot, times in open_.times.items():
            if not times or last_slot == s:  # those packets were seen here already
                continue
            typical = transitions.get((last_slot, s))
            if typical is not None:  # the most typical delay for this hop
                index = open_.nearest(last_slot, t - round(typical), s)
                score = (0, abs(t - times[index] - typical), times[index]) if index >= 0 \
                    else None
            else:  # a hop no unambiguous packet took must be quick; first in, first out
                index = open_.first_since(last_slot, t - MIN_GAP_LIMIT_NS, s)
                score = (1, times[index], 0) if index >= 0 else None
            if score is not None and (best is None or score < best):
                best, where = score, (last_slot, index)
        packet = open_.take(*where) if best is not None else open_.new()
        open_.add(packet, s, t)
        numbers.append(packet)
    return numbers


def signature_order(units: Units, uts: np.ndarray, ucap: np.ndarray,
                    uframe: np.ndarray) -> np.ndarray:
    """The matched units sorted by signature, then reference-clock time (ties: capture code,
    frame): the order packets are cut in."""
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((uframe, ucap, uts, units.sig))
    return order[units.sig[order] != NO_VALUE]


def number_packets(units: Units, uts: np.ndarray, ucap: np.ndarray, uframe: np.ndarray,
                   window_ns: int, paths: PathModel | None = None,
                   order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A packet number per unit (units that match nothing: one each), and the gap limit of
    each slot. ``uts``: the units' times on the reference clock; ``ucap``/``uframe``: their
    capture code and frame, the tie-breakers. ``paths``: the path model (default: learnt from
    ``units``; a partition gets the one of every partition); ``order``: the
    :func:`signature_order`, when at hand."""
    m = len(units.row)
    if order is None:
        order = signature_order(units, uts, ucap, uframe)
    if paths is None:
        paths = learn_paths(units.sig, units.slot, uts, order, units.slots, window_ns)
    group, starts, clean = clean_groups(units.sig, units.slot, uts, order, paths, window_ns)
    packet_of = np.full(m, NO_VALUE)
    packet_of[order] = group
    next_id = len(starts)
    if not clean.all():
        # only the ambiguous groups' units as Python lists, group after group
        ambiguous = ~clean[group]
        positions, group_list = order[ambiguous], group[ambiguous].tolist()
        slot_list, ts_list = units.slot[positions].tolist(), uts[positions].tolist()
        bounds = [*np.flatnonzero(run_starts(group[ambiguous])).tolist(), len(positions)]
        new_ids: list[int] = []
        for a, b in itertools.pairwise(bounds):
            g = group_list[a]
            numbers = split_group(slot_list[a:b], ts_list[a:b], paths, window_ns)
            new_ids.extend(g if number == 0 else next_id + number - 1 for number in numbers)
            next_id += max(numbers)
        packet_of[positions] = new_ids
        del ambiguous, positions, group_list, slot_list, ts_list, new_ids
    del order, group, starts, clean
    singles = np.flatnonzero(packet_of == NO_VALUE)
    packet_of[singles] = next_id + np.arange(len(singles))
    return join_fragments(units, packet_of, uts, paths.limits), paths.limits


def join_fragments(units: Units, packet_of: np.ndarray, uts: np.ndarray,
                    limits: np.ndarray) -> np.ndarray:
    """Packets of partial fragment units join the packet without one of the same datagram
    key whose last sighting precedes their first, within the gap limit of that sighting's
    slot."""
    if not units.partial.any():
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
    partial = np.add.reduceat(units.partial[timed], starts, dtype=np.int64)
    sizes = np.diff(np.append(starts, len(timed)))
    per_packet = pd.DataFrame({"packet": packet[starts], "first": uts[first],
                               "last": uts[last], "key": units.datagram[last],
                               "slot": units.slot[last]})
    del timed, packet
    frags = per_packet[partial == sizes].sort_values("first")
    whole = per_packet[partial == 0].sort_values("last")
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
