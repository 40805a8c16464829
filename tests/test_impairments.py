"""Issue 10's acceptance on generated captures of a real-world underlay: queues that hold packets
for milliseconds, loss with TCP retransmissions, reordering, duplicate records, and a second
node whose clock is 0.3 s ahead and 80 ppm fast. Every multi-node scenario, seeds 1–3, link
types and formats varied by seed, against truth.json; the same with equal clocks; two tenants
on identical inner addresses."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from truth_checks import (
    US,
    assert_delays_within_bounds,
    assert_models_hold_the_truth,
    assert_same_partition,
    clock_rows,
    hop_delays,
    joined,
)

import pktkit
from pktkit.analysis.latency import PERCENTILES
from pktkit.analysis.pipeline import Analysis, analyze
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS
from pktkit.report.digest import summary
from pktkit.report.tables import analysis_tables

IMPAIRED = ("queue=20ms", "loss=0.01", "reorder=0.005", "duplicate=0.002")
MULTI_NODE = sorted(name for name, cls in SCENARIOS.items()
                    if len(make_scenario(name).node_names()) > 1)
FORMATS = {1: ("ether", "pcap"), 2: ("sll2", "pcapng"), 3: ("ether", "pcapng")}  # by seed


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("impaired")


@functools.cache
def impaired(root: Path, name: str, seed: int, offset: float = 0.3, drift: float = 80.0,
             flows: int | None = None) -> tuple[Analysis, dict[str, Any], pd.DataFrame]:
    linktype, fmt = FORMATS[seed]
    out = root / f"{name}-{seed}-{offset}-{drift}-{flows}"
    generate(make_scenario(name, seed=seed, flows=flows, clock_offset_s=offset,
                           clock_drift_ppm=drift, impairments=IMPAIRED),
             out, fmt=fmt, linktype=linktype)
    found, truth = analyze(out), pktkit.load_truth(out)
    return found, truth, joined(found, truth)


def crossings_each_way(truth: dict[str, Any]) -> dict[tuple[str, str], np.ndarray]:
    """The true one-way delays between the nodes (last sighting on the sender to the first on
    the receiver), per (sender, receiver)."""
    rows = pd.DataFrame(truth["packets"])
    rows = rows[~rows["duplicate"]]
    ends = rows.groupby(["packet_id", "node"])["true_ts_ns"].agg(["min", "max"]).reset_index()
    out: dict[tuple[str, str], list[int]] = {}
    for _, packet in ends.groupby("packet_id"):
        if len(packet) == 2:
            first, second = packet.sort_values("min").to_dict("records")
            out.setdefault((first["node"], second["node"]), []).append(
                second["min"] - first["max"])
    return {pair: np.array(values, np.int64) for pair, values in out.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", MULTI_NODE)
def test_impaired_captures_are_read_as_the_truth(root: Path, name: str, seed: int) -> None:
    """The packet_id partition and hops equal the truth's; every delay within a node is the
    truth's, every cross-node delay within the reported bound of it; the clock model holds the
    true clock within its bound and the drift within 2 ppm."""
    found, truth, both = impaired(root, name, seed)
    assert_same_partition(both["packet_id"], both["packet_id_t"])
    assert (both["hop"] == both["hop_t"]).all()
    assert_models_hold_the_truth(found, truth)
    assert_delays_within_bounds(found, truth, both)
    assert_bound_within_half_round_trip(found, truth)


def assert_bound_within_half_round_trip(found: Analysis, truth: dict[str, Any]) -> None:
    """Wherever at least 30 packets crossed each way between the two nodes, the clock model's
    bound is no wider than half the smallest true round trip plus 5 µs, and the drift within
    2 ppm of the truth's 80 ppm."""
    delays = crossings_each_way(truth)
    if len(delays) != 2 or any(len(d) < 30 for d in delays.values()):
        return
    round_trip = sum(int(d.min()) for d in delays.values())
    model = next(row for row in clock_rows(found).values()
                 if row["node"] != row["reference_node"])
    assert model["bound_ns"] <= round_trip / 2 + 5 * US, (model, round_trip)
    assert abs(model["drift_ppm"] - 80.0) <= 2.0


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", MULTI_NODE)
def test_the_bound_is_half_the_smallest_round_trip_where_enough_packets_crossed(
        root: Path, name: str, seed: int) -> None:
    """With at least 30 packets each way (four times the scenario's flows: the default ones
    give fewer), the bound is no wider than half the smallest true round trip between the two
    nodes plus 5 µs."""
    flows = SCENARIOS[name].default_flows * 4
    found, truth, _ = impaired(root, name, seed, flows=flows)
    delays = crossings_each_way(truth)
    assert len(delays) == 2 and all(len(d) >= 30 for d in delays.values())
    assert_bound_within_half_round_trip(found, truth)


HEAVY = ("queue=20ms", "loss=0.1", "reorder=0.1", "duplicate=0.05")


@pytest.mark.parametrize("name", ["vxlan-overlay-v6", "flat-routed-v6", "k8s-nodeport",
                                  "ipip"])
def test_a_tenth_lost_reordered_and_duplicated(root: Path, name: str) -> None:
    """Ten times the loss and twenty times the reordering: IPv6 retransmissions that repeat
    the lost segment's signature at the points it passed, UDP and ICMP lost with their
    answers, duplicate records every twentieth frame; still the truth's partition and hops,
    delays within the bounds."""
    out = root / f"heavy-{name}"
    generate(make_scenario(name, seed=4, flows=SCENARIOS[name].default_flows * 3,
                           clock_offset_s=0.3, clock_drift_ppm=80, impairments=HEAVY),
             out, fmt="pcapng", linktype="sll2")
    found, truth = analyze(out), pktkit.load_truth(out)
    both = joined(found, truth)
    assert len(truth["lost"]) >= 5 and both["duplicate"].sum() >= 10
    assert_same_partition(both["packet_id"], both["packet_id_t"])
    assert (both["hop"] == both["hop_t"]).all()
    assert_delays_within_bounds(found, truth, both)


def test_the_impairments_are_staged(root: Path) -> None:
    """Over the scenarios and seeds above, the truth holds what the issue asks the analysis to
    survive: crossings held by the queue for milliseconds, lost packets (TCP's resent), and
    duplicate records."""
    held = lost = resent = duplicates = 0
    longest = 0
    for name in MULTI_NODE:
        for seed in (1, 2, 3):
            _, truth, _ = impaired(root, name, seed)
            for delays in crossings_each_way(truth).values():
                held += int((delays > 1_000_000).sum())
                longest = max(longest, int(delays.max()))
            lost += len(truth["lost"])
            resent += sum(loss["retransmitted_as"] is not None for loss in truth["lost"])
            duplicates += sum(p["duplicate"] for p in truth["packets"])
    assert held >= 50 and longest > 10_000_000, (held, longest)
    assert lost >= 5 and resent >= 5 and duplicates >= 20, (lost, resent, duplicates)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", MULTI_NODE)
def test_equal_clocks_give_every_delay_and_percentile_exactly(root: Path, name: str,
                                                              seed: int) -> None:
    """Same clock on both nodes: nothing is corrected, every delay equals the truth (the
    timestamps and the true times are whole µs), however long a queue held the packet; the
    latency table's p99 and max equal the truth's, per hop and per node pair."""
    found, _, both = impaired(root, name, seed, offset=0.0, drift=0.0)
    assert_same_partition(both["packet_id"], both["packet_id_t"])
    assert (found.clock_offsets["applied_ns"] == 0).all()
    delays = hop_delays(found, both)
    assert (delays["delay_ns"] == delays["true_ns"]).all()
    scope = np.where(delays["cross"], delays["from_node"].astype(str) + " → "
                     + delays["node"].astype(str), None)
    latency = found.latency.set_index(["metric", "scope"])
    for pair, values in delays.groupby(pd.Series(scope, index=delays.index))["true_ns"]:
        row = latency.loc[("node_pair", pair)]
        want = np.percentile(values.to_numpy(np.int64), [p for _, p in PERCENTILES])
        assert row["p99_ns"] == round(want[-1]) and row["max_ns"] == values.max()
        assert row["count"] == len(values)


def test_two_tenants_on_identical_inner_addresses(root: Path) -> None:
    """vxlan-overlay with both tenants on UDP 4789 and the same pod subnet, VNI 2000 (whose
    1500-MTU pod sends oversized datagrams) and VNI 1000: every sighting's overlay_vni is the
    truth's (decapsulated copies included), the flows are the truth's conversations, and the
    MTU findings name VNI 2000 alone, once per conversation."""
    out = root / "tenants"
    generate(make_scenario("vxlan-overlay", seed=2, flows=5, clock_offset_s=0.3,
                           clock_drift_ppm=80, impairments=IMPAIRED,
                           overrides={"vni_a": "2000", "port_a": "4789", "vni_b": "1000"}),
             out, fmt="pcapng", linktype="sll2")
    found, truth = analyze(out), pktkit.load_truth(out)
    both = joined(found, truth)
    assert (both["overlay_vni"].astype("Int64") == both["overlay_vni_t"].astype("Int64")).all()
    assert (both["overlay_encap"] == both["overlay_encap_t"]).all()
    assert (both["encap"] == "none").any()  # decapsulated copies were there to label
    assert_same_partition(both["flow_id"], both["flow_id_t"])  # one id per conversation
    conversations = len({p["flow_id"] for p in truth["packets"]})
    report = summary(analysis_tables(found))
    assert report["counts"]["flows"] == conversations == 5
    mtu = [p for p in report["problems"] if p["problem"] in ("oversized", "flow-exceeds-mtu",
                                                             "fragments")]
    assert {p["problem"] for p in mtu} == {"oversized", "flow-exceeds-mtu", "fragments"}
    for problem in mtu:
        assert "vni 2000" in problem["where"] and "1000" not in problem["where"], problem
        assert "untunnelled" not in problem["where"]
    oversized = {p["flow_id"] for p in truth["packets"] if p["fragment"] != "none"}
    assert [p["count"] for p in mtu if p["problem"] == "oversized"] == [len(oversized)]
