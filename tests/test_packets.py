"""pktkit.analysis.packets: ambiguous signature groups split into packets — first in, first out
on known paths, look-alikes by the hundred (concatenated copies of one capture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import pktkit
from pktkit.analysis.grouping import PathModel
from pktkit.analysis.packets import split_group
from pktkit.analysis.pipeline import analyze
from pktkit.capture.formats import CAPTURE_SET_FILE
from pktkit.craft.generation import generate, make_scenario

PCAP_HEADER = 24  # classic pcap's global header


def paths(*steps: tuple[int, int, float], slots: int = 4) -> PathModel:
    return PathModel(np.full(slots, 1_000_000, np.int64),
                     {(a, b): delay for a, b, delay in steps}, slots)


def test_copies_at_the_same_instants_pair_up_first_in_first_out() -> None:
    """Five packets along slots 0 → 1 → 2, every copy at the same instant: five packets of
    one sighting per slot each, the k-th at each slot together."""
    slot = [0] * 5 + [1] * 5 + [2] * 5
    ts = [0] * 5 + [3_000] * 5 + [12_000] * 5
    numbers = split_group(slot, ts, paths((0, 1, 3_000), (1, 2, 9_000)), 10**9)
    assert numbers == [0, 1, 2, 3, 4] * 3


def test_a_queued_repeat_follows_its_own_path() -> None:
    """An IPv6 segment lost after slot 1 and resent 200 ms later; the resent copy waits 15 ms
    in a queue before slot 2: the second packet, not the first (whose last slot leads there
    too), takes it: its delay is the typical one's nearest."""
    slot = [0, 1, 0, 1, 2]
    ts = [0, 3_000, 200_000_000, 200_003_000, 215_003_000]
    assert split_group(slot, ts, paths((0, 1, 3_000), (1, 2, 50_000)), 10**9) == \
        [0, 0, 1, 1, 1]


def test_an_unknown_step_must_be_quick() -> None:
    """No packet is known to go from slot 2 to slot 3: a packet waiting at 2 takes a unit
    at 3 only within the minimum gap limit (1 ms)."""
    assert split_group([2, 2, 3], [0, 10, 500_000], paths(), 10**9) == [0, 1, 0]
    assert split_group([2, 2, 3], [0, 10, 5_000_000], paths(), 10**9) == [0, 1, 2]


def concatenated(source: Path, out: Path, copies: int) -> None:
    """Each pcap file of ``source`` as ``copies`` copies back to back, timestamps unchanged
    (mergecap -a of a file with itself), beside the same capture-set.json."""
    out.mkdir()
    for path in source.glob("*.pcap"):
        data = path.read_bytes()
        (out / path.name).write_bytes(data[:PCAP_HEADER] + data[PCAP_HEADER:] * copies)
    (out / CAPTURE_SET_FILE).write_bytes((source / CAPTURE_SET_FILE).read_bytes())


def test_twenty_copies_of_an_ipv6_capture_are_twenty_times_its_packets(tmp_path: Path) -> None:
    """IPv6 has no IP id: twenty identical copies of each packet at the same instants at each
    point are twenty packets (every point saw twenty), each with one sighting per point of
    its path, as the original packet had."""
    source = tmp_path / "one"
    generate(make_scenario("flat-routed-v6", seed=1), source)
    concatenated(source, tmp_path / "twenty", 20)
    found = analyze(tmp_path / "twenty")
    truth = pd.DataFrame(pktkit.load_truth(source)["packets"])
    assert found.packets["packet_id"].nunique() == 20 * truth["packet_id"].nunique()
    per_packet = found.packets.groupby("packet_id")["capture"]
    assert (per_packet.size() == per_packet.nunique()).all()  # one sighting per point
    want = truth.groupby("packet_id")["capture"].apply(frozenset).value_counts()
    got = per_packet.apply(lambda c: frozenset(c.astype(str))).value_counts()
    assert got.to_dict() == {path: 20 * count for path, count in want.to_dict().items()}


def test_copies_of_ipv4_frames_are_duplicate_records(tmp_path: Path) -> None:
    """An IPv4 packet with an id is never sent twice: identical IPv4 records at one point and
    instant are copies of one frame (what a capture on a mirror port shows), so those packets
    are the original's, each record one of its sightings. DNS over unconnected UDP sends id
    0, which does repeat: those are five packets each, as the IPv6 ones above."""
    source = tmp_path / "one"
    generate(make_scenario("flat-routed", seed=1), source)
    concatenated(source, tmp_path / "five", 5)
    found = analyze(tmp_path / "five")
    truth = pd.DataFrame(pktkit.load_truth(source)["packets"])
    # each copy's frame numbers back to the original's
    frames = found.packets.astype({"capture": str, "frame": "int64"})
    per_file = frames["capture"].map(truth.groupby("capture")["frame"].max()).astype("int64")
    frames["frame"] = (frames["frame"] - 1) % per_file + 1
    labelled = frames.merge(truth[["capture", "frame", "packet_id"]],
                            on=["capture", "frame"], suffixes=("", "_t"))
    id_zero = labelled.loc[labelled["ip_id"] == 0, "packet_id_t"].nunique()
    assert 0 < id_zero < truth["packet_id"].nunique()
    assert found.packets["packet_id"].nunique() == truth["packet_id"].nunique() + 4 * id_zero
    numbered = labelled[labelled["ip_id"] != 0]
    assert (numbered.groupby("packet_id_t")["packet_id"].nunique() == 1).all()
