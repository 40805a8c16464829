"""Correlation in parts (pktkit.analysis.parts) and the partition key
(pktkit.analysis.sightings.partition_keys): generated captures with every impairment, clock
offset and drift, fragments, tunnels and NAT, split by ``partition_keys % K``, surveyed, merged,
settled and assigned part by part, give what correlate() gives on the whole table: the same
partition of the frames into packets (ids mapped one to one), hops, reference times, hops rows
and clock_offsets. The truth (truth.json) checks the keys themselves: every sighting of one
true packet has one key, computed from its own capture file's rows alone."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_clockfit import US, Clock, assert_same_way, crossings, floored, theta
from truth_checks import assert_same_partition

import pktkit
from pktkit.analysis import clockfit
from pktkit.analysis.clocks import fit_pairs
from pktkit.analysis.correlate import correlate
from pktkit.analysis.crossings import CrossingGroups
from pktkit.analysis.inputs import read_table, resolve_inputs
from pktkit.analysis.ownership import orient_groups
from pktkit.analysis.parts import (
    CROSSINGS,
    Part,
    Scope,
    Survey,
    assign,
    settle,
    survey,
)
from pktkit.analysis.sightings import fragmented_ids, partition_keys
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS

IMPAIRED = ("queue=20ms", "loss=0.01", "reorder=0.005", "duplicate=0.002")
HEAVY = ("queue=20ms", "loss=0.1", "reorder=0.1", "duplicate=0.05")
# (scenario, seed, impairments, flows × default, linktype, format): fragments and VXLAN
# (vxlan-overlay: oversized datagrams cut on their way into the tunnel), NAT (k8s-nodeport,
# docker-snat), IPv6 repeats, Geneve, IP-in-IP; every one with a second clock 0.3 s off,
# drifting 80 ppm (docker: one node)
CASES = [
    ("vxlan-overlay", 1, IMPAIRED, 1, "ether", "pcap"),
    ("vxlan-overlay-v6", 4, HEAVY, 2, "sll2", "pcapng"),
    ("k8s-nodeport", 4, HEAVY, 2, "sll2", "pcapng"),
    ("docker-snat", 2, IMPAIRED, 1, "ether", "pcap"),
    ("geneve-overlay", 3, IMPAIRED, 1, "sll2", "pcap"),
    ("ipip", 5, IMPAIRED, 1, "ether", "pcapng"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parts")


@functools.cache
def generated(root: Path, name: str, seed: int, impairments: tuple[str, ...], flows: int,
              linktype: str, fmt: str) -> Path:
    one_node = name.startswith("docker")
    out = root / f"{name}-{seed}-{flows}"
    generate(make_scenario(name, seed=seed, flows=SCENARIOS[name].default_flows * flows,
                           clock_offset_s=0.0 if one_node else 0.3,
                           clock_drift_ppm=0.0 if one_node else 80.0,
                           impairments=impairments), out, fmt=fmt, linktype=linktype)
    return out


@functools.cache
def table(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    inputs = resolve_inputs([folder])
    return read_table(inputs), list(dict.fromkeys(i.node for i in inputs))


def keys_per_file(packets: pd.DataFrame, fragmented: np.ndarray | None = None) -> np.ndarray:
    """partition_keys of each capture file's rows on their own, as a worker computes them
    (``fragmented``: every file's fragment ids, as the cluster gives them)."""
    keys = np.zeros(len(packets), np.uint64)
    capture = packets["capture"].astype(str).to_numpy()
    for name in pd.unique(capture):
        at = np.flatnonzero(capture == name)
        keys[at] = partition_keys(packets.take(at).reset_index(drop=True),
                                  fragmented=fragmented)
    return keys


@pytest.mark.parametrize("by_fragments", [False, True], ids=["by-id", "by-fragment-ids"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_every_sighting_of_a_true_packet_has_one_key(root: Path, case: tuple,
                                                     by_fragments: bool) -> None:
    """Every row of a true packet has one key, in whichever file it is: with every IPv4
    unit keyed by its id, and with only those whose id a fragment has somewhere (the ids of
    every file's fragments, as the cluster gathers them, then each file keyed alone)."""
    folder = generated(root, *case)
    packets, _ = table(folder)
    truth = pd.DataFrame(pktkit.load_truth(folder)["packets"])
    capture = packets["capture"].astype(str).to_numpy()
    fragmented = (np.unique(np.concatenate([fragmented_ids(packets.take(np.flatnonzero(
        capture == name)).reset_index(drop=True)) for name in pd.unique(capture)]))
        if by_fragments else None)
    found = keys_per_file(packets, fragmented)
    if by_fragments:  # finer than the id alone: a key of the id alone splits, never merges
        coarse = keys_per_file(packets)
        assert pd.Series(coarse).groupby(found).nunique().max() == 1
    keys = pd.DataFrame({"capture": packets["capture"].astype(str),
                         "frame": packets["frame"].astype("int64"), "key": found})
    both = keys.merge(truth[["capture", "frame", "packet_id"]], on=["capture", "frame"])
    assert len(both) == len(packets)
    per_packet = both.groupby("packet_id")["key"].nunique()
    assert (per_packet == 1).all(), per_packet[per_packet > 1]
    # and the keys spread the packets: many keys, none holding most of the rows
    assert both["key"].nunique() >= len(per_packet) // 4
    assert both["key"].value_counts().iloc[0] < len(both) // 4


def parts_of(packets: pd.DataFrame, keys: np.ndarray, k: int,
             shuffle: bool) -> list[np.ndarray]:
    """The rows of each partition ``key % k`` (in table order, or shuffled as a shuffle
    across workers leaves them)."""
    rng = np.random.default_rng(k)
    out = []
    for i in range(k):
        rows = np.flatnonzero(keys % np.uint64(k) == i)
        out.append(rng.permutation(rows) if shuffle else rows)
    return [rows for rows in out if len(rows)]


def assert_bijection(whole: np.ndarray, split: np.ndarray) -> None:
    """Each whole-table packet id is one (part, local id) and each of those one id."""
    assert_same_partition(pd.Series(split), pd.Series(whole))


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_parts_give_what_one_table_gives(root: Path, case: tuple, k: int) -> None:
    packets, node_order = table(generated(root, *case))
    whole = correlate(packets, node_order=node_order)
    captures = packets[["capture", "node"]].astype(str).drop_duplicates()
    scope = Scope.of_captures(list(captures.itertuples(index=False)), node_order)
    assert scope == Scope.of(packets, node_order)
    rows = parts_of(packets, keys_per_file(packets), k, shuffle=k == 3)
    assert len(rows) > 1
    parts = [Part(packets.take(r).reset_index(drop=True), scope) for r in rows]
    # the parts, every survey and settlement through pickle, as between processes (a worker
    # that spills its parts to disk)
    parts = [pickle.loads(pickle.dumps(part)) for part in parts]
    settled = None
    while settled is None or not settled.ready:
        surveys = [pickle.loads(pickle.dumps(survey(part, settled))) for part in parts]
        settled = pickle.loads(pickle.dumps(settle(Survey.merge(surveys), previous=settled)))
    assert settled.clock_offsets is not None
    pd.testing.assert_frame_equal(settled.clock_offsets, whole.clock_offsets)
    packet = np.full(len(packets), -1, np.int64)
    hop, ts_ref = packet.copy(), packet.copy()
    hops, hop_rows, offset = [], [], 0
    for part, r in zip(parts, rows, strict=True):
        found = assign(part, settled)
        assert set(np.unique(found.packet_id)) == set(range(found.packet_id.max() + 1))
        packet[r] = found.packet_id + offset
        hop[r], ts_ref[r] = found.hop, found.ts_ref_ns
        hops.append(found.hops.assign(packet_id=found.hops["packet_id"] + offset))
        hop_rows.append(r[found.hop_rows])
        offset += int(found.packet_id.max()) + 1
    assert_bijection(whole.packet_id, packet)
    np.testing.assert_array_equal(hop, whole.hop)
    np.testing.assert_array_equal(ts_ref, whole.ts_ref_ns)
    # the hops rows: the same sightings, each with the same columns (ids mapped)
    got = pd.concat(hops, ignore_index=True).astype(object)
    got["row"] = np.concatenate(hop_rows)
    want = whole.hops.astype(object)
    want["row"] = whole.hop_rows
    got, want = (t.sort_values("row", ignore_index=True) for t in (got, want))
    ids = dict(zip(packet, whole.packet_id, strict=True))
    got["packet_id"] = got["packet_id"].map(ids).astype(object)
    pd.testing.assert_frame_equal(got, want)


def survey_bytes(folder: Path) -> list[int]:
    """The pickled size of each round's survey of the whole table."""
    packets, node_order = table(folder)
    part = Part(packets, Scope.of(packets, node_order), in_order=True)
    sizes, settled = [], None
    while settled is None or not settled.ready:
        found = survey(part, settled)
        sizes.append(len(pickle.dumps(found)))
        settled = settle(Survey.merge([found]), previous=settled)
    return sizes


def test_merged_surveys_are_one_survey(root: Path) -> None:
    """Merging is order-free: parts merged in any order settle alike."""
    packets, node_order = table(generated(root, *CASES[0]))
    scope = Scope.of(packets, node_order)
    rows = parts_of(packets, keys_per_file(packets), 3, shuffle=False)
    parts = [Part(packets.take(r).reset_index(drop=True), scope) for r in rows]
    one = two = None
    while one is None or not one.ready:
        surveys = [survey(p, one) for p in parts]
        one = settle(Survey.merge(surveys), previous=one)
        two = settle(Survey.merge(surveys[::-1]), previous=two)
        assert one.slots == two.slots
        for name in ("node_limits", "path_limits"):
            a, b = getattr(one, name), getattr(two, name)
            assert (a is None and b is None) or np.array_equal(a, b)
        assert one.transitions == two.transitions
    assert one.clock_offsets is not None and two.clock_offsets is not None
    pd.testing.assert_frame_equal(one.clock_offsets, two.clock_offsets)


def test_survey_sizes_do_not_follow_the_frames(root: Path) -> None:
    """The median rounds' counts are bounded by slots, transitions and the buckets (and the
    values one bucket holds), not by frames: four times the flows, well under twice the bytes
    (the clocks drift: reference-clock times are whole ns)."""
    small = survey_bytes(generated(root, "vxlan-overlay", 7, IMPAIRED, 2, "ether", "pcap"))
    large = survey_bytes(generated(root, "vxlan-overlay", 7, IMPAIRED, 8, "ether", "pcap"))
    for round_, (a, b) in enumerate(zip(small, large, strict=True), 1):
        if round_ != CROSSINGS:
            assert b < 2 * a, (round_, a, b)


def test_the_crossings_survey_does_not_follow_the_frames(root: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 3 reduces the crossings per group (counts, sums, bounding points) and per node
    pair (a sample of at most 2 × SAMPLE_SIZE): past the sample size its survey stops
    growing. With SAMPLE_SIZE 32 (a pair sample of 64; these sets' one pair has 132 and 540
    crossings; at the default 8,000 the sample holds them all, nothing lost), four times the
    flows, under 1.25 times the bytes."""
    monkeypatch.setattr(clockfit, "SAMPLE_SIZE", 32)
    small = survey_bytes(generated(root, "vxlan-overlay", 7, IMPAIRED, 2, "ether", "pcap"))
    large = survey_bytes(generated(root, "vxlan-overlay", 7, IMPAIRED, 8, "ether", "pcap"))
    assert large[CROSSINGS - 1] < 1.25 * small[CROSSINGS - 1], (small, large)


def synthetic_crossings(n: int, seed: int) -> tuple[pd.DataFrame, Clock, Clock]:
    """n crossings each way between nodes 0 and 1 (b's clock 0.3 s ahead and 80 ppm fast,
    floored and queued delays, µs stamps, a minute): a third oriented (by TTL), the others
    open; a copy on the wire carries its sender's address, a's 0 or 2, b's 1 or 3, so the
    crossings fall into six groups: one per oriented way, four open ones for causality to
    orient."""
    rng = np.random.default_rng(seed)
    a, b = Clock(), Clock(300e6, 80e-6)
    (fs, fr, bs, br), _, _ = crossings(rng, a, b, n, 60e9, floored(queued=0.1), US)
    dwell = rng.integers(0, 50, (4, n)) * US  # time between a node's first and last copy
    sig = rng.permutation(2 * n).astype(np.int64) * 7919 + 12345
    known = rng.random((2, n)) < 1 / 3
    address = rng.integers(0, 2, (2, n)) * 2 + np.array([[0], [1]])
    found = pd.DataFrame({
        "a": 0, "b": 1, "way": np.r_[np.where(known[0], 1, 0), np.where(known[1], -1, 0)],
        "sig": sig, "a_first": np.r_[fs - dwell[0], br], "a_last": np.r_[fs, br + dwell[1]],
        "b_first": np.r_[fr, bs - dwell[2]], "b_last": np.r_[fr + dwell[3], bs]})
    for name in ("a_sender", "b_sender", "a_receiver", "b_receiver"):
        found[name] = np.r_[address[0], address[1]].astype(np.int32)
    found[["a", "b"]] = found[["a", "b"]].astype(np.int32)
    found["way"] = found["way"].astype(np.int8)
    return found, a, b


def clock_fits(groups: CrossingGroups) -> dict:
    """Round 3's settlement of a node pair without ownership evidence: causality orients the
    groups, then the pair fit."""
    return fit_pairs(groups.directions(orient_groups(groups)))


def test_a_pair_beyond_the_sample_fits_alike_however_split() -> None:
    """30,000 crossings each way (six groups of about 10,000; the pair's sample holds
    16,000), split into 3 and 7 parts in shuffled order, each reduced on its own and through
    pickle: merged, the same groups, reductions, sample and pair fit as the whole; every
    open group oriented as it went, and the fit holds the true clock within its bound."""
    found, a, b = synthetic_crossings(30_000, 21)
    whole = CrossingGroups.of(found)
    assert len(whole.count) == 6 and len(whole.sample) == 2 * clockfit.SAMPLE_SIZE
    fits = clock_fits(whole)
    rng = np.random.default_rng(22)
    for k in (3, 7):
        part = rng.integers(0, k, len(found))
        groups = [pickle.loads(pickle.dumps(CrossingGroups.of(
            found.take(rng.permutation(np.flatnonzero(part == i)))))) for i in range(k)]
        merged = CrossingGroups.merge(groups[::-1])
        pd.testing.assert_frame_equal(merged.keys, whole.keys)
        pd.testing.assert_frame_equal(merged.sample, whole.sample)
        for mine, theirs in zip(merged.ab + merged.ba, whole.ab + whole.ba, strict=True):
            assert (mine is None) == (theirs is None)
            if mine is not None and theirs is not None:
                assert_same_way(mine, theirs)
        assert clock_fits(merged) == fits
    way = orient_groups(whole)
    keys = whole.keys
    np.testing.assert_array_equal(way, np.where(keys["way"] != 0, keys["way"],
                                                np.where(keys["a_sender"] % 2 == 0, 1, -1)))
    assert (keys["way"] == 0).sum() == 4
    fit = fits[(0, 1)]
    assert fit.samples_fwd + fit.rejected_fwd == 30_000
    x = np.linspace(*fit.span_ns, 101).astype(np.int64)
    assert (np.abs(fit.offset_at(x) - theta(a, b, x)) <= fit.bound_at(x)).all()


def test_the_crossings_reduction_of_200k_crossings_is_bounded() -> None:
    """200,000 crossings reduce to as many bytes (pickled) as 100,000 do, within 10 %: the
    pair's sample of 16,000 (44 bytes each) and ten reductions of a few bounding points; one
    row per crossing would be 13 MB."""
    sizes = [len(pickle.dumps(CrossingGroups.of(synthetic_crossings(n, 23)[0])))
             for n in (50_000, 100_000)]
    assert sizes[1] < 1.1 * sizes[0] and sizes[1] < 16_000 * 44 * 1.1, sizes


def test_no_crossings_reduce_to_no_groups() -> None:
    """One node, or nothing matched: empty reductions merge, orient and fit to nothing."""
    found = synthetic_crossings(10, 24)[0].iloc[:0]
    merged = CrossingGroups.merge([CrossingGroups.of(found), CrossingGroups.of(found)])
    assert merged.keys.empty and merged.sample.empty and merged.ab == merged.ba == []
    assert clock_fits(merged) == {}
