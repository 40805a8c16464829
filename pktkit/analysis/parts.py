"""Correlation in parts: :func:`~pktkit.analysis.correlate.correlate`'s steps on partitions of
whole packets, in rounds of survey → merge → settle, then assign.

A *part* is a set of packet-table rows holding every row of each packet it touches (the rows
of a partition by :func:`~pktkit.analysis.sightings.partition_keys`, or the whole table). The
global steps of the correlation (gap limits, the clock models, the known transitions) reduce
what every part holds; everything else is per part. Each global step needs the one before it,
and an exact median two passes (:mod:`~pktkit.analysis.medians`), so a part is surveyed in
seven rounds, each settled (in one process) before the next:

=====  ===========================================  =========================================
round  each part surveys                            settled into
=====  ===========================================  =========================================
1, 2   gaps between each (node, signature)'s units  the node-local gap limits (per slot)
       on the node clocks: counts per bucket, then
       the values of the middle buckets (per slot)
3      crossings of node-local groups cut at those  owners, orientation, pair fits, the chain:
       limits; evidence of address ownership        the clock models and ``clock_offsets``
4, 5   gaps between each signature's units on the   the path gap limits (per slot)
       reference clock (likewise)
6, 7   steps of the tight groups cut at those       the known transitions (median delays)
       limits (likewise, per transition)
=====  ===========================================  =========================================

then :func:`assign` numbers each part's packets and hops with the settled models:
partition-local packet ids 0..k-1 (a global numbering adds an offset per part), ``hop``,
``ts_ref_ns`` and the part's ``hops`` rows. :func:`correlate` runs the same rounds on one
part: the whole table. A caller across processes::

    scope = Scope.of_captures([(capture, node), ...], node_order, window_ns)
    parts = [Part(rows, scope) for rows in partitions]          # on the workers, kept
    settled = None
    while settled is None or not settled.ready:
        surveys = [survey(part, settled) for part in parts]     # on the workers
        settled = settle(Survey.merge(surveys), previous=settled)   # on the client
    found = [assign(part, settled) for part in parts]            # on the workers

What crosses a process boundary (all picklable): :class:`Scope` (node names and capture
order, known before the run), :class:`Survey` and :class:`Settled`. Their sizes: the median
rounds hold counts per slot or transition and bucket (128 buckets per octave), then the
values of two buckets per slot or transition: bounded by slots, transitions and what a bucket
can hold, not by frames. The crossings' round holds
:class:`~pktkit.analysis.crossings.CrossingGroups`: per group of crossings (node pair, way
when known, the wire addresses of the open ones) a count, the exact sum of the times and the
bounding points of the lower hulls (what the pair fit's linear program reads exactly), and per
node pair a bottom-k sample by signature hash (2 × :data:`~pktkit.analysis.clockfit.
SAMPLE_SIZE` crossings, 44 bytes each) for the fit's statistics: bounded by pairs and groups,
not by crossings, and merged exactly, so the clock models do not depend on the split (see
:mod:`~pktkit.analysis.clockfit`). The ownership evidence is a count per (node, address). A
:class:`Part` (the part's rows and units) is built once and kept for every round (it pickles,
so a worker may spill it).

Slots are told apart by what they are (capture, interface, direction, TTL), so every part
numbers them alike once the first round is settled; nodes by :attr:`Scope.node_names`,
captures by :attr:`Scope.captures` (the tie-breaker of equal times is the capture's place in
the table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pktkit.analysis.clocks import (
    CLOCK_CORRECTIONS,
    NodeClock,
    PairMapper,
    applied,
    chain,
    clock_table,
    fit_pairs,
    on_reference_clock,
)
from pktkit.analysis.crossings import (
    CrossingGroups,
    crossings,
    emitted,
    node_groups,
    node_keys,
    node_order,
)
from pktkit.analysis.grouping import (
    ALL_SLOTS,
    DEFAULT_WINDOW_NS,
    PathModel,
    gap_values,
    limits_of,
    step_values,
    transitions_of,
)
from pktkit.analysis.hops import hops_table, number_hops
from pktkit.analysis.medians import (
    Counts,
    Selection,
    coarse_counts,
    fine_counts,
    medians,
    select,
)
from pktkit.analysis.ownership import orient_by_owner, orient_groups, owners
from pktkit.analysis.packets import number_packets, signature_order
from pktkit.analysis.rows import int_column, string_codes
from pktkit.analysis.sightings import Units, find_units
from pktkit.errors import UsageError

SlotId = tuple[str, str, str, int]  # capture, interface, direction ("" for NA), TTL (-1)
_EVIDENCE_COLUMNS = ["node", "address", "count"]


@dataclass(frozen=True)
class Scope:
    """What every part must agree on before the first survey: the node names (codes: their
    place here; the first is the reference clock), the captures in the table's order (the
    tie-breaker of equal times) and the window."""

    node_names: tuple[str, ...]
    captures: tuple[str, ...]
    window_ns: int = DEFAULT_WINDOW_NS

    @classmethod
    def of(cls, packets: pd.DataFrame, node_order: Sequence[str] = (),
           window_ns: int = DEFAULT_WINDOW_NS) -> Scope:
        """The scope of a whole table: ``node_order`` first, then the nodes and captures in
        order of first appearance."""
        return cls(tuple(string_codes(packets["node"], node_order)[1]),
                   tuple(string_codes(packets["capture"])[1]), window_ns)

    @classmethod
    def of_captures(cls, captures: Sequence[tuple[str, str]], node_order: Sequence[str] = (),
                    window_ns: int = DEFAULT_WINDOW_NS) -> Scope:
        """The scope of a table of ``captures`` ((capture, node) in the table's order, as
        :func:`~pktkit.analysis.inputs.read_table` reads them), without the table: the same
        as :meth:`of` gives for it."""
        seen = list(dict.fromkeys(node for _, node in captures))
        nodes = [n for n in node_order if n in seen] + [n for n in seen if n not in node_order]
        return cls(tuple(nodes), tuple(dict.fromkeys(c for c, _ in captures)), window_ns)


def _codes_in(values: pd.Series, names: Sequence[str], what: str) -> np.ndarray:
    """Per row, the place of its label in ``names`` (-1: NA)."""
    codes, labels = string_codes(values)
    index = {name: i for i, name in enumerate(names)}
    unknown = [label for label in labels if label not in index]
    if unknown:
        raise UsageError(f"correlation in parts: {what} {unknown[0]!r} is not in the scope "
                         f"(give every {what} of the run to Scope)")
    return np.append(np.array([index[label] for label in labels], np.int64), -1)[codes]


class Part:
    """One part of whole packets, its units formed (:func:`find_units`) and kept for the
    rounds; it stays in the process that made it. ``packets``: the part's rows with the
    columns :func:`~pktkit.analysis.correlate.correlate` needs. Its rows are worked on in
    the table's order (by capture, then frame); ``in_order``: they are in it already (the
    whole table's own order is taken as it is)."""

    def __init__(self, packets: pd.DataFrame, scope: Scope, *, in_order: bool = False) -> None:
        self.scope = scope
        self.positions: np.ndarray | None = None  # the sorted rows' places in ``packets``
        if not in_order and len(packets):
            capture = _codes_in(packets["capture"], scope.captures, "capture")
            order = np.lexsort((int_column(packets, "frame"), capture))
            if (order != np.arange(len(order))).any():
                self.positions = order
                packets = packets.take(order).reset_index(drop=True)
        self.packets = packets
        self.node = _codes_in(packets["node"], scope.node_names, "node").astype(np.int32)
        self.units: Units = find_units(packets, self.node, scope.window_ns)
        first = self.units.first_row
        self.ucap = _codes_in(packets["capture"], scope.captures, "capture")[first]
        self.uframe = int_column(packets, "frame", first)
        dtype = packets["direction"].dtype if "direction" in packets else None
        directions = list(dtype.categories) if isinstance(dtype, pd.CategoricalDtype) else []
        self.out_code = directions.index("out") if "out" in directions else -2  # -2: never
        self.in_code = directions.index("in") if "in" in directions else -2
        self.slot_ids = _slot_ids(packets, self.units)
        self.renumbered = False  # slots numbered as the settled ones
        self.uts: np.ndarray | None = None  # unit times on the reference clock (round 3 on)
        self.order: np.ndarray | None = None  # their signature order

    def number_slots(self, settled: Settled) -> None:
        """The units' slots numbered as every part's (after round 1)."""
        if self.renumbered:
            return
        index = {slot: i for i, slot in enumerate(settled.slots)}
        remap = np.array([index[slot] for slot in self.slot_ids], np.int32)
        self.units.slot = remap[self.units.slot] if len(remap) else self.units.slot
        self.units.slots = len(settled.slots)
        self.slot_ids = list(settled.slots)
        self.renumbered = True

    def on_reference_clock(self, settled: Settled) -> None:
        """The units' times on the reference clock, and their signature order (round 3 on)."""
        if self.uts is None:
            self.uts = on_reference_clock(self.units.ts.copy(), self.units.node, settled.used)
            self.order = signature_order(self.units, self.uts, self.ucap, self.uframe)


def _slot_ids(packets: pd.DataFrame, units: Units) -> list[SlotId]:
    """What each slot code of ``units`` stands for."""
    _, first = np.unique(units.slot, return_index=True)
    rows = units.first_row[first]

    def labels(name: str) -> list[str]:
        if name not in packets:
            return [""] * len(rows)
        return [str(x) for x in packets[name].take(rows).astype("string").fillna("")]

    return list(zip(labels("capture"), labels("interface"), labels("direction"),
                    int_column(packets, "ttl", rows).tolist(), strict=True))


# The rounds: what each part surveys (see the module docstring)
NODE_GAPS, NODE_GAPS_EXACT, CROSSINGS, PATH_GAPS, PATH_GAPS_EXACT, STEPS, STEPS_EXACT = range(1, 8)
ROUNDS = STEPS_EXACT  # surveys before assign


@dataclass
class Survey:
    """What one part (or several, merged) found in one round; see the module docstring.

    ``slots``: what the slot codes stand for (round 1: the part's own; later: the settled
    ones). Median rounds: ``counts`` (:class:`~pktkit.analysis.medians.Counts`, groups: slot
    codes and ALL_SLOTS for gaps, transition codes ``slot * len(slots) + next`` for steps),
    and, for gaps, ``units`` per slot. Round 3: ``crossings`` (reduced per group and node
    pair, :class:`~pktkit.analysis.crossings.CrossingGroups`, sender codes into
    ``addresses``) and ``evidence`` (node, address code, count)."""

    round: int
    scope: Scope
    slots: list[SlotId]
    counts: Counts | None = None
    units: np.ndarray | None = None
    crossings: CrossingGroups | None = None
    evidence: pd.DataFrame | None = None
    addresses: list[str] = field(default_factory=list)

    @staticmethod
    def merge(surveys: Iterable[Survey]) -> Survey:
        """One survey of everything ``surveys`` (of one round) found."""
        surveys = list(surveys)
        if not surveys:
            raise ValueError("Survey.merge: no surveys")
        first = surveys[0]
        if any(s.round != first.round or s.scope != first.scope for s in surveys):
            raise ValueError("Survey.merge: surveys of different rounds or scopes")
        slots = list(dict.fromkeys(slot for s in surveys for slot in s.slots))
        index = {slot: i for i, slot in enumerate(slots)}
        remaps = [np.array([index[slot] for slot in s.slots], np.int64) for s in surveys]
        if first.round != NODE_GAPS and any(s.slots != slots for s in surveys):
            raise ValueError("Survey.merge: parts numbering the slots differently")
        merged = Survey(first.round, first.scope, slots)
        if first.units is not None:
            merged.units = np.zeros(len(slots), np.int64)
            for s, remap in zip(surveys, remaps, strict=True):
                assert s.units is not None
                np.add.at(merged.units, remap, s.units[:len(remap)])
        if first.counts is not None:
            counts = []
            for s, remap in zip(surveys, remaps, strict=True):
                assert s.counts is not None
                group = s.counts.group
                if first.round == NODE_GAPS:  # the part's own slot codes to the merged ones
                    mine = group != ALL_SLOTS
                    group = np.where(mine, remap[np.where(mine, group, 0)], ALL_SLOTS) \
                        if len(remap) else group
                counts.append(Counts(group, s.counts.key, s.counts.count))
            merged.counts = Counts.merge(counts)
        if first.crossings is not None:
            _merge_crossings(merged, surveys)
        return merged


def _merge_crossings(merged: Survey, surveys: list[Survey]) -> None:
    """Round 3's crossings and evidence, their addresses coded alike."""
    addresses = list(dict.fromkeys(a for s in surveys for a in s.addresses))
    where = {a: i for i, a in enumerate(addresses)}
    found, evidence = [], []
    for s in surveys:
        assert s.crossings is not None and s.evidence is not None
        remap = np.array([where[a] for a in s.addresses], np.int64)
        found.append(s.crossings.recoded(remap))
        e = s.evidence.copy()
        e["address"] = np.append(remap, -1)[e["address"].to_numpy()]
        evidence.append(e)
    merged.addresses = addresses
    merged.crossings = CrossingGroups.merge(found)
    both = pd.concat(evidence, ignore_index=True)
    merged.evidence = both.groupby(["node", "address"], as_index=False)["count"].sum()


@dataclass
class Settled:
    """What the rounds settled so far (``round``: the last one); :func:`assign` needs all
    :data:`ROUNDS`. Small: per slot, per transition and per node."""

    round: int
    scope: Scope
    slots: list[SlotId]
    clock_correction: str = "auto"
    selection: Selection | None = None  # after a first median pass: the buckets to count
    units: np.ndarray | None = None  # ... and, for gaps, the units per slot
    node_limits: np.ndarray | None = None  # gap limit per slot, node clocks
    clocks: list[NodeClock | None] = field(default_factory=list)  # per node
    used: list[NodeClock | None] = field(default_factory=list)  # the models applied
    clock_offsets: pd.DataFrame | None = None
    path_limits: np.ndarray | None = None  # gap limit per slot, reference clock
    transitions: dict[tuple[int, int], float] | None = None

    @property
    def ready(self) -> bool:
        """Whether :func:`assign` can run."""
        return self.round >= ROUNDS

    @property
    def paths(self) -> PathModel:
        assert self.path_limits is not None and self.transitions is not None
        return PathModel(self.path_limits, self.transitions, len(self.slots))


def survey(part: Part, settled: Settled | None = None) -> Survey:
    """What ``part`` contributes to the next round (the first: ``settled`` None)."""
    units = part.units
    if settled is None:  # the node-local gaps, first pass (the part's own slot codes)
        slots = len(part.slot_ids)
        count, group, gaps = gap_values(node_keys(units), units.slot, units.ts,
                                        node_order(units), slots)
        return Survey(NODE_GAPS, part.scope, list(part.slot_ids),
                      counts=coarse_counts(group, gaps), units=count)
    if settled.ready:
        raise ValueError("survey: every round is settled already; assign")
    part.number_slots(settled)
    now, slots = settled.round + 1, list(settled.slots)
    if now == NODE_GAPS_EXACT:
        assert settled.selection is not None
        _, group, gaps = gap_values(node_keys(units), units.slot, units.ts, node_order(units),
                                    len(slots))
        return Survey(now, part.scope, slots, counts=fine_counts(group, gaps,
                                                                 settled.selection))
    if now == CROSSINGS:
        groups = node_groups(units, part.packets, part.scope.window_ns, settled.node_limits)
        found = CrossingGroups.of(crossings(groups, units, part.out_code, part.in_code))
        evidence = emitted(groups, units, part.packets, part.out_code)
        return Survey(now, part.scope, slots, crossings=found,
                      evidence=evidence[_EVIDENCE_COLUMNS], addresses=list(units.addresses))
    part.on_reference_clock(settled)
    uts, order = part.uts, part.order
    assert uts is not None and order is not None
    if now in (PATH_GAPS, PATH_GAPS_EXACT):
        count, group, gaps = gap_values(units.sig, units.slot, uts, order, len(slots))
        if now == PATH_GAPS:
            return Survey(now, part.scope, slots, counts=coarse_counts(group, gaps),
                          units=count)
        assert settled.selection is not None
        return Survey(now, part.scope, slots, counts=fine_counts(group, gaps,
                                                                 settled.selection))
    assert settled.path_limits is not None
    code, delay = step_values(units.sig, units.slot, uts, order, len(slots),
                              settled.path_limits)
    if now == STEPS:
        return Survey(now, part.scope, slots, counts=coarse_counts(code, delay))
    assert settled.selection is not None
    return Survey(now, part.scope, slots, counts=fine_counts(code, delay, settled.selection))


def settle(survey: Survey, *, clock_correction: str = "auto",
           node_addresses: Mapping[str, Iterable[str]] | None = None,
           previous: Settled | None = None, pair_mapper: PairMapper = map) -> Settled:
    """The round ``survey`` (every part's, merged) completes, on top of ``previous``. The
    crossings' round uses ``clock_correction`` and ``node_addresses`` (as :func:`correlate`
    does); the node names are the scope's; its pair fits run through ``pair_mapper`` (see
    :func:`~pktkit.analysis.clocks.fit_pairs`)."""
    if clock_correction not in CLOCK_CORRECTIONS:
        raise UsageError(f"clock correction {clock_correction!r}: choose one of "
                         f"{', '.join(CLOCK_CORRECTIONS)}")
    now = 1 if previous is None else previous.round + 1
    if survey.round != now:
        raise ValueError(f"settle: a survey of round {survey.round}, expected {now}")
    counts = survey.counts
    if previous is None:
        # the slots in an order every part can reproduce: sorted by what they are
        assert counts is not None and survey.units is not None
        slots = sorted(survey.slots)
        remap = np.array([slots.index(slot) for slot in survey.slots], np.int64)
        units = np.zeros(len(slots), np.int64)
        units[remap] = survey.units[:len(remap)]
        mine = counts.group != ALL_SLOTS
        group = np.where(mine, remap[np.where(mine, counts.group, 0)], ALL_SLOTS) \
            if len(remap) else counts.group
        return Settled(now, survey.scope, slots, clock_correction,
                       selection=select(Counts.merge([Counts(group, counts.key,
                                                             counts.count)])), units=units)
    settled = Settled(**{name: getattr(previous, name) for name in (
        "scope", "slots", "clock_correction", "units", "node_limits", "clocks", "used",
        "clock_offsets", "path_limits", "transitions")}, round=now)
    slots, window = len(settled.slots), survey.scope.window_ns
    if now in (PATH_GAPS, STEPS):
        assert counts is not None
        settled.selection = select(counts)
        settled.units = survey.units
    elif now in (NODE_GAPS_EXACT, PATH_GAPS_EXACT, STEPS_EXACT):
        selection = previous.selection
        assert counts is not None and selection is not None
        middle = medians(counts, selection)
        if now == STEPS_EXACT:
            settled.transitions = transitions_of(selection.group, middle, slots)
        else:
            assert settled.units is not None
            limits = limits_of(settled.units, selection.group, selection.size, middle, slots,
                               window)
            if now == NODE_GAPS_EXACT:
                settled.node_limits = limits
            else:
                settled.path_limits = limits
        settled.selection = settled.units = None
    else:
        settled.clock_correction = clock_correction
        _settle_clocks(settled, survey, node_addresses, pair_mapper)
    return settled


def _settle_clocks(settled: Settled, survey: Survey,
                   node_addresses: Mapping[str, Iterable[str]] | None,
                   pair_mapper: PairMapper) -> None:
    """Round 3: owners, the ways of the crossings' groups, the pair fits and the chain."""
    assert survey.crossings is not None and survey.evidence is not None
    node_names = list(settled.scope.node_names)
    found = survey.crossings
    owner = owners(survey.addresses, survey.evidence, node_names, node_addresses)
    way = orient_groups(found, orient_by_owner(found.keys, owner)["way"].to_numpy())
    models = chain(fit_pairs(found.directions(way), pair_mapper),
                   len(node_names)) if node_names else []
    settled.clocks = models
    settled.used = applied(models, settled.clock_correction)
    settled.clock_offsets = clock_table(node_names, models, settled.used)


def settle_all(parts: Sequence[Part], *, clock_correction: str = "auto",
               node_addresses: Mapping[str, Iterable[str]] | None = None) -> Settled:
    """Every round over ``parts`` (in one process: for tests and one table)."""
    settled: Settled | None = None
    while settled is None or not settled.ready:
        merged = Survey.merge([survey(part, settled) for part in parts])
        settled = settle(merged, clock_correction=clock_correction,
                         node_addresses=node_addresses, previous=settled)
    return settled


@dataclass
class PartCorrelation:
    """What :func:`assign` found for one part: per row of the part as given, and its hops."""

    packet_id: np.ndarray  # int64 per row: 0..k-1 within the part
    hop: np.ndarray  # int64 per row
    ts_ref_ns: np.ndarray  # int64 per row: capture time on the reference clock (-1: none)
    hops: pd.DataFrame  # the part's rows of the ``hops`` table (packet ids as above)
    hop_rows: np.ndarray  # per hops row: the representative row (place in the part as given)


def assign(part: Part, settled: Settled) -> PartCorrelation:
    """Packets, hops and reference-clock times of ``part`` with the settled models."""
    if not settled.ready:
        raise ValueError(f"assign: round {settled.round} of {ROUNDS} settled; survey on")
    part.number_slots(settled)
    part.on_reference_clock(settled)
    units, uts, packets = part.units, part.uts, part.packets
    assert uts is not None
    n = len(packets)
    packet_of, _ = number_packets(units, uts, part.ucap, part.uframe, part.scope.window_ns,
                                  settled.paths, part.order)
    hop_order = number_hops(packet_of, uts, part.ucap, part.uframe)
    del packet_of
    packet_id = hop_order.packet[units.of_row] if n else np.zeros(0, np.int64)
    hop = hop_order.hop[units.of_row] if n else np.zeros(0, np.int64)
    order = hop_order.order
    hop_rows = units.row[order]
    rows = units.first_row[order]
    unit_packet, unit_hop = hop_order.packet[order], hop_order.hop[order]
    del hop_order
    hops = hops_table(packets, rows, unit_packet, unit_hop, uts[order])
    del rows, unit_packet, unit_hop, order
    # a copy: int_column may hand out the table's own buffer
    ts_ref = on_reference_clock(int_column(packets, "ts_ns").copy(), part.node, settled.used)
    if part.positions is not None:  # back to the rows as given
        back = part.positions
        packet_id, hop, ts_ref = (_unsorted(x, back) for x in (packet_id, hop, ts_ref))
        hop_rows = back[hop_rows]
    return PartCorrelation(packet_id=packet_id, hop=hop, ts_ref_ns=ts_ref, hops=hops,
                           hop_rows=hop_rows)


def _unsorted(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[positions] = values
    return out

