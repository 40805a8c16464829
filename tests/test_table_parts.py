"""pktkit.analysis.table_parts: the tables after correlation from partitions of whole packets
(map, merge, apply) equal the single-process analysis's, and the partials stay small.

Each reference scenario is analysed in one process; its rows are then split by a hash of
``packet_id`` into K partitions (every sighting of a packet in one, as the Dask shuffle
leaves them), the columns and tables under test are dropped and computed again in parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pktkit
from pktkit.analysis.latency import latency_bins, latency_samples
from pktkit.analysis.naming import HANDSHAKE_NAMES, add_names
from pktkit.analysis.overlays import conversation_keys, overlay_columns
from pktkit.analysis.percentiles import count_samples, values_in_bins
from pktkit.analysis.pipeline import Analysis
from pktkit.analysis.rows import row_digest
from pktkit.analysis.table_parts import (
    PacketPart,
    add_overlays_and_flows,
    handshakes_in_parts,
    latency_in_parts,
)

IMPAIR = ["queue=5ms", "loss=0.02", "reorder=0.02", "duplicate=0.02"]
SCENARIOS = {  # name: (scenario, flows, impaired)
    "docker-snat": ("docker-snat", None, False),
    "docker-portmap": ("docker-portmap", None, False),
    "k8s-nodeport": ("k8s-nodeport", None, False),
    "vxlan-overlay": ("vxlan-overlay", None, False),  # two tenants sharing pod addresses
    "vxlan-overlay-impaired": ("vxlan-overlay", 30, True),
    "k8s-nodeport-impaired": ("k8s-nodeport", 30, True),
}
COMPUTED = ["overlay_encap", "overlay_vni"]


def _generate(tmp: Path, scenario: str, flows: int | None, impaired: bool) -> Path:
    from pktkit.craft.generation import generate, make_scenario

    out = tmp / f"{scenario}-{flows}-{impaired}"
    if not out.exists():
        made = make_scenario(scenario, seed=3, flows=flows,
                             impairments=IMPAIR if impaired else (),
                             clock_offset_s=0.003 if impaired else 0.0,
                             clock_drift_ppm=30.0 if impaired else 0.0)
        generate(made, out)
    return out


@pytest.fixture(scope="module")
def analyses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Analysis]:
    tmp = tmp_path_factory.mktemp("scenarios")
    return {name: pktkit.analyze(_generate(tmp, *spec)) for name, spec in SCENARIOS.items()}


def _hop_rows(packets: pd.DataFrame, hops: pd.DataFrame) -> np.ndarray:
    """Each hops row's row among ``packets`` (its first frame at its capture)."""
    at = pd.MultiIndex.from_arrays([packets["capture"].astype(str),
                                    packets["frame"].astype("int64")])
    wanted = pd.MultiIndex.from_arrays([hops["capture"].astype(str),
                                        hops["frame"].astype("int64")])
    rows = at.get_indexer(wanted)
    assert (rows >= 0).all()
    return rows


def split(analysis: Analysis, k: int) -> list[PacketPart]:
    """The analysis's rows in ``k`` partitions by a hash of packet_id, the columns under test
    dropped (``flow_id`` is replaced by the parts)."""
    packets = analysis.packets.drop(columns=COMPUTED)
    packets["flow_id"] = pd.array(np.full(len(packets), 7, np.int64), dtype="Int64")
    part_of = row_digest([packets["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
    hops = analysis.hops
    hop_part = row_digest([hops["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
    parts = []
    for i in range(k):
        rows = packets[part_of == i].copy()
        its_hops = hops[hop_part == i].reset_index(drop=True)
        parts.append(PacketPart(rows, its_hops, _hop_rows(rows, its_hops)))
    assert sum(len(p.packets) for p in parts) == len(packets)
    return parts


def _joined(parts: list[PacketPart]) -> pd.DataFrame:
    return pd.concat([p.packets for p in parts]).sort_index()


def _same_ids(ours: pd.Series, theirs: pd.Series) -> None:
    """Equal up to renumbering: a bijection between the two numberings, NA where NA."""
    assert ours.isna().equals(theirs.isna())
    pairs = pd.DataFrame({"a": ours, "b": theirs}).dropna().drop_duplicates()
    assert pairs["a"].is_unique and pairs["b"].is_unique


@pytest.mark.parametrize("k", [2, 3, 7])
def test_overlays_and_conversations_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    for name, analysis in analyses.items():
        parts = split(analysis, k)
        add_overlays_and_flows(parts)
        got, want = _joined(parts), analysis.packets
        for column in COMPUTED:
            pd.testing.assert_series_equal(got[column], want[column], obj=f"{name} {column}")
        _same_ids(got["flow_id"], want["flow_id"])
        # numbered by the first row of each conversation, as in one process: the same ids
        pd.testing.assert_series_equal(got["flow_id"], want["flow_id"], obj=name)
        assert list(got.columns) == list(want.columns)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_latency_in_parts_is_exact(analyses: dict[str, Analysis], k: int) -> None:
    """Every percentile equal to np.percentile over all samples (the single process), though
    no partition saw them all."""
    for name, analysis in analyses.items():
        parts = split(analysis, k)
        got = latency_in_parts(parts, analysis.handshakes, analysis.nat_flows)
        assert len(got) == len(analysis.latency) > 0, name
        pd.testing.assert_frame_equal(got, analysis.latency, obj=name)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_handshakes_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    """A handshake's SYN, SYN-ACK and ACK are three packets, mostly in three partitions: the
    table (then named on the client, as analyze() names it) equals the single process's."""
    for name, analysis in analyses.items():
        parts = split(analysis, k)
        add_overlays_and_flows(parts)
        got = handshakes_in_parts(parts)
        add_names(got, analysis.names, HANDSHAKE_NAMES, "syn_ts_ns", proto=6, after=True)
        assert len(got) > 0, name
        pd.testing.assert_frame_equal(got, analysis.handshakes, obj=name)


def test_the_impaired_scenarios_have_what_is_tested(analyses: dict[str, Analysis]) -> None:
    """The reference set exercises NAT, two tenants and every latency metric the parts
    compute (not a vacuous comparison)."""
    metrics = set().union(*(set(a.latency["metric"]) for a in analyses.values()))
    assert {"hop", "node_pair", "nat", "handshake_rtt", "pod_pair", "service"} <= metrics
    vxlan = analyses["vxlan-overlay"].packets
    assert vxlan["overlay_vni"].dropna().nunique() == 2
    assert len(analyses["docker-snat"].nat_flows) > 0


def _partial_sizes(analysis: Analysis, k: int) -> tuple[int, int, int]:
    """Rows of every partition's partials: conversations, latency pass 1, latency pass 2."""
    parts = split(analysis, k)
    conversation = latency_1 = latency_2 = 0
    samples = []
    for part in parts:
        packet_id = part.packets["packet_id"].to_numpy(np.int64)
        encap, vni = overlay_columns(part.packets, packet_id)
        conversation += len(conversation_keys(part.packets, packet_id, encap, vni).partial)
        samples.append(latency_samples(part.packets, part.hops, part.hop_rows,
                                       analysis.nat_flows))
    counts = [count_samples(s) for s in samples]
    latency_1 = sum(len(c.groups) + len(c.bins) for c in counts)
    wanted = latency_bins(counts)
    latency_2 = sum(len(values_in_bins(s, wanted)) for s in samples)
    return conversation, latency_1, latency_2


def test_partials_do_not_grow_with_frames(tmp_path: Path) -> None:
    """4× the flows (and frames) of one scenario: the conversation partial grows with the
    conversations (one row per key per partition, never per frame), the latency partials
    stay within the histogram's bins."""
    small = pktkit.analyze(_generate(tmp_path, "vxlan-overlay", 10, True))
    large = pktkit.analyze(_generate(tmp_path, "vxlan-overlay", 40, True))
    assert len(large.packets) > 3 * len(small.packets)
    for analysis in (small, large):
        conversation, _, latency_2 = _partial_sizes(analysis, 3)
        keys = analysis.packets["flow_id"].nunique() * 3 * 2  # both sides of a NAT, 3 parts
        assert conversation <= keys < len(analysis.packets)
        assert latency_2 <= 3 * len(analysis.latency) * 6  # ≤ 6 ranks per group, few values
        # pass 1: at most every bin the groups' values span (1024 per octave), per partition
        _, latency_1, _ = _partial_sizes(analysis, 3)
        spans = [np.log2(max(hi, 1) / max(lo, 1)) + 1 for lo, hi in
                 zip(analysis.latency["min_ns"], analysis.latency["max_ns"], strict=True)]
        assert latency_1 <= 3 * sum(min(1024 * s + 1, n) + 1 for s, n in
                                    zip(spans, analysis.latency["count"], strict=True))
