"""Sightings → packet_id, hops, clock offsets and latency (pktkit.analysis.correlate via
pktkit.analyze) against truth.json: the same partition of every frame, the same hop numbers,
hop delays equal to the truth, the clock offset inside its bound. Plus the cases truth does not
stage: IPv6 repeats, look-alike packets, fragments."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from synthetic_tables import table
from truth_checks import (
    assert_delays_within_bounds,
    assert_models_hold_the_truth,
    assert_same_partition,
    joined,
)

import pktkit
from pktkit.analysis import correlate, hops, latency
from pktkit.analysis.inputs import read_table, resolve_inputs
from pktkit.analysis.pipeline import Analysis, analyze
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS

SCENARIO_NAMES = sorted(SCENARIOS)
# (seed, linktype, format, clock offset (s) and drift (ppm) of the second node)
VARIANTS = [(1, "ether", "pcap", 0.0, 0.0), (2, "sll2", "pcapng", 0.25, 0.0),
            (3, "sll2", "pcap", -0.8, -35.0)]


@functools.cache
def generated(root: Path, name: str, seed: int, linktype: str, fmt: str,
              offset: float, drift: float = 0.0) -> Path:
    scenario = make_scenario(name, seed=seed, clock_offset_s=offset, clock_drift_ppm=drift)
    out = root / f"{name}-{seed}-{linktype}-{fmt}-{offset}-{drift}"
    generate(scenario, out, fmt=fmt, linktype=linktype)
    return out


@functools.cache
def analysed(folder: Path) -> tuple[Analysis, dict[str, Any], pd.DataFrame]:
    """The analysis, the truth, and the packets joined with their truth (suffix _t)."""
    found = analyze(folder)
    truth = pktkit.load_truth(folder)
    return found, truth, joined(found, truth)


def offsets_of(found: Analysis) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in found.clock_offsets.to_dict("records")}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("correlate")


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"s{v[0]}-{v[1]}-{v[2]}-{v[3]}")
@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_packet_ids_hops_and_delays_equal_the_truth(root: Path, name: str,
                                                    variant: tuple) -> None:
    seed, linktype, fmt, offset, drift = variant
    if name.startswith("docker"):
        offset = drift = 0.0  # one node: no second clock to shift
    found, truth, both = analysed(generated(root, name, seed, linktype, fmt, offset, drift))
    assert_same_partition(both["packet_id"], both["packet_id_t"])
    assert (both["hop"] == both["hop_t"]).all()
    clocks = offsets_of(found)
    assert set(clocks) == set(both["node"].unique())
    for row in clocks.values():
        if row["node"] == row["reference_node"]:
            assert (row["offset_ns"], row["bound_ns"]) == (0, 0)
        else:  # a shifted clock is corrected, equal ones are left alone
            assert (row["applied_ns"] != 0) == bool(offset), row
    assert_models_hold_the_truth(found, truth)
    delays = assert_delays_within_bounds(found, truth, both)
    if not offset:  # equal clocks: every delay is the truth's
        assert (delays["delay_ns"] == delays["true_ns"]).all()


def test_a_retransmitted_segment_stays_two_packets(root: Path) -> None:
    found, _, _joined = analysed(generated(root, "docker-snat", 1, "ether", "pcap", 0.0))
    packets = found.packets
    data = packets[(packets["capture"] == "host-veth-c1.pcap") & (packets["l4_payload_len"] > 0)
                   & (packets["proto"] == 6)]
    repeated = data[data.duplicated(["tcp_seq", "tcp_ack", "l4_payload_len"], keep=False)]
    assert len(repeated) == 2  # the request lost on the WAN, and its retransmission
    assert repeated["packet_id"].nunique() == 2
    assert repeated["ip_id"].nunique() == 2
    # each is one packet through veth, docker0 and eth0
    for packet_id in repeated["packet_id"]:
        path = found.hops[found.hops["packet_id"] == packet_id]
        assert list(path["interface"]) == ["veth-c1", "docker0", "eth0"]


def test_nat_before_and_after_on_one_interface(root: Path) -> None:
    """k8s-nodeport: node-a's eth0 pcap (no direction) holds each request in, then out
    NATed with TTL - 1: one packet, two hops, and a NAT delay."""
    found, _, joined = analysed(generated(root, "k8s-nodeport", 1, "ether", "pcap", 0.0))
    eth0 = joined[joined["capture"] == "node-a-eth0.pcap"]
    twice = eth0.groupby("packet_id").size()
    assert (twice == 2).sum() >= len(twice) // 2
    nat = found.latency[found.latency["metric"] == "nat"]
    assert list(nat["scope"]) == ["node-a/eth0 → node-a/eth0 (src+dst rewritten)"]
    assert int(nat["count"].iloc[0]) == (twice == 2).sum()


def test_latency_table(root: Path) -> None:
    found, _, joined = analysed(generated(root, "vxlan-overlay", 2, "sll2", "pcapng", 0.25))
    delays = found.latency
    assert list(delays.columns) == list(latency.LATENCY_SCHEMA)
    assert set(delays["metric"]) == {"hop", "node_pair", "handshake_rtt"}
    hop = delays[delays["metric"] == "hop"].set_index("scope")
    assert "node-a/veth-pod1 → node-a/cni0" in hop.index
    assert "node-a/flannel.1 → node-a/eth0" in hop.index
    pairs = delays[delays["metric"] == "node_pair"]
    assert set(pairs["scope"]) == {"node-a → node-b", "node-b → node-a"}
    ordered = delays[["min_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"]].to_numpy(np.int64)
    assert (np.diff(ordered, axis=1) >= 0).all()
    assert (delays["count"] > 0).all()
    # hop delays of one scope, against the truth
    row = hop.loc["node-a/veth-pod1 → node-a/cni0"]
    sightings = joined[joined["interface"].isin(["veth-pod1", "cni0"])
                       & (joined["node"] == "node-a")]
    at = {name: sightings[sightings["interface"] == name][["packet_id", "true_ts_ns"]]
          for name in ("veth-pod1", "cni0")}
    both = at["veth-pod1"].merge(at["cni0"], on="packet_id", suffixes=("_veth", "_bridge"))
    delays = (both["true_ts_ns_bridge"] - both["true_ts_ns_veth"]).to_numpy(np.int64)
    delays = delays[delays > 0]  # pod → bridge (the other way is the reverse hop)
    assert int(row["count"]) == len(delays)
    assert (int(row["min_ns"]), int(row["max_ns"])) == (delays.min(), delays.max())
    assert int(row["p50_ns"]) == round(np.percentile(delays, 50))


def test_handshake_rtt_per_capture_point(root: Path) -> None:
    found, truth, _joined = analysed(generated(root, "flat-routed", 1, "ether", "pcap", 0.0))
    shakes = found.handshakes
    assert list(shakes.columns) == [*latency.HANDSHAKES_SCHEMA, "src_name", "dst_name"]
    tcp_flows = {p["flow_id"] for p in truth["packets"] if p["proto"] == 6}
    points = {(p["capture"], p["flow_id"]) for p in truth["packets"] if p["proto"] == 6}
    assert len(shakes) == len(points)
    labels = pd.DataFrame(truth["packets"]).set_index(["capture", "frame"])
    packets = found.packets.set_index(["capture", "frame"])
    for row in shakes.itertuples():
        at = packets[(packets.index.get_level_values(0) == row.capture)
                     & (packets["flow_id"] == row.flow_id)]
        flags = at["tcp_flags"]
        syn = at[(flags & 0x12) == 0x02].index[0]
        synack = at[(flags & 0x12) == 0x12].index[0]
        ack = at[(flags & 0x17) == 0x10].index[0]  # the first pure ACK: the handshake's
        true = labels.loc[[syn, synack, ack], "true_ts_ns"].to_numpy()
        assert row.rtt_ns == true[2] - true[0] and row.syn_ts_ns < row.synack_ts_ns
    rtt = found.latency[found.latency["metric"] == "handshake_rtt"]
    assert int(rtt["count"].sum()) == len(shakes) and len(tcp_flows) > 0


def test_a_single_node_needs_no_correction(root: Path) -> None:
    found, _, _ = analysed(generated(root, "docker-portmap", 1, "sll2", "pcapng", 0.0))
    assert found.clock_offsets.to_dict("records") == [
        {"node": "host", "reference_node": "host", "offset_ns": 0, "drift_ppm": 0.0,
         "at_ns": None, "bound_ns": 0, "samples": 0, "applied_ns": 0}]
    assert (found.packets["ts_ref_ns"] == found.packets["ts_ns"]).all()
    assert found.latency[found.latency["metric"] == "node_pair"].empty


@pytest.mark.parametrize("policy", ["always", "never"])
def test_clock_correction_policies(root: Path, policy: str) -> None:
    """``always`` applies the model (offset and drift) to every timestamp of the node, also
    where auto would not (equal clocks); ``never`` none."""
    for offset, drift in ((0.25, 40.0), (0.0, 0.0)):
        folder = generated(root, "flat-routed", 2, "sll2", "pcapng", offset, drift)
        found = analyze(folder, clock_correction=policy)
        row = offsets_of(found)["node-b"]
        assert row["applied_ns"] == (row["offset_ns"] if policy == "always" else 0)
        node_b = found.packets["node"] == "node-b"
        raw = found.packets["ts_ns"][node_b].to_numpy(np.int64)
        ref = found.packets["ts_ref_ns"][node_b].to_numpy(np.int64)
        if policy == "never":
            assert (raw == ref).all()
            continue
        model = row["offset_ns"] + row["drift_ppm"] * 1e-6 * (ref - row["at_ns"])
        assert np.abs(raw - ref - model).max() <= 2  # ns: rounding of the stored model
    with pytest.raises(pktkit.UsageError, match="clock correction"):
        analyze(folder, clock_correction="sometimes")


# -- synthetic tables: what the generated scenarios do not stage --------------------------------


def test_identical_ipv6_datagrams_are_split_by_the_points_they_repeat() -> None:
    """No IP id in IPv6: a repeat (DNS retry) has the same signature; it is another packet
    because it is seen again where the first one was, in order (first in, first out)."""
    t0 = 10**18
    rows = []
    for start in (0, 5_000_000_000, 5_000_002_000):  # the second and third interleave
        rows += [{"ts_ns": t0 + start, "interface": "veth"},
                 {"ts_ns": t0 + start + 3_000, "interface": "cni0"},
                 {"ts_ns": t0 + start + 12_000, "interface": "eth0"}]
    rows.sort(key=lambda r: r["ts_ns"])
    found = correlate.correlate(table(rows))
    ids = pd.Series(found.packet_id)
    assert list(ids) == [0, 0, 0, 1, 2, 1, 2, 1, 2]
    assert list(found.hop) == [0, 1, 2, 0, 0, 1, 1, 2, 2]


def test_look_alike_packets_far_apart_on_other_paths_stay_apart() -> None:
    """Same content, same addresses, distinct capture points (two tenants of one overlay),
    0.4 s apart: not one packet that took 0.4 s for a hop."""
    t0 = 10**18
    rows = []
    for packet in range(50):  # ordinary traffic teaches the typical hop delays
        base = t0 + packet * 1_000_000
        rows += [{"ts_ns": base, "interface": "veth-a", "payload_hash": packet},
                 {"ts_ns": base + 3_000, "interface": "cni-a", "payload_hash": packet}]
    rows += [{"ts_ns": t0 + 10**8, "interface": "veth-a", "payload_hash": 999},
             {"ts_ns": t0 + 10**8 + 3_000, "interface": "cni-a", "payload_hash": 999},
             {"ts_ns": t0 + 5 * 10**8, "interface": "veth-b", "payload_hash": 999},
             {"ts_ns": t0 + 5 * 10**8 + 3_000, "interface": "cni-b", "payload_hash": 999}]
    found = correlate.correlate(table(rows))
    last = pd.Series(found.packet_id[-4:])
    assert last.iloc[0] == last.iloc[1] != last.iloc[2] == last.iloc[3]


def test_frames_that_match_nothing_are_packets_of_their_own() -> None:
    rows = [{"ts_ns": 10**18, "src": None, "dst": None, "ip_version": None},
            {"ts_ns": 10**18 + 1, "src": None, "dst": None, "ip_version": None},
            {"ts_ns": 10**18 + 2, "error": "truncated"}]
    found = correlate.correlate(table(rows))
    assert sorted(found.packet_id) == [0, 1, 2] and set(found.hop) == {0}


def test_empty_table_gives_empty_typed_tables() -> None:
    found = correlate.correlate(table([{"ts_ns": 1}]).iloc[:0])
    assert len(found.packet_id) == 0
    assert list(found.hops.columns) == list(hops.HOPS_SCHEMA) and found.hops.empty
    assert found.clock_offsets.empty
    delays = latency.latency(table([{"ts_ns": 1}]).iloc[:0], found.hops, found.hop_rows)
    assert list(delays.columns) == list(latency.LATENCY_SCHEMA) and delays.empty


def test_missing_columns_are_a_usage_error() -> None:
    with pytest.raises(pktkit.UsageError, match="tcp_seq"):
        correlate.correlate(table([{"ts_ns": 1}]).drop(columns=["tcp_seq"]))


def test_the_packet_table_is_left_as_it_was(root: Path) -> None:
    """correlate(), handshakes() and latency() read the table (some columns without a
    copy) and must not write to it, clock corrections included."""
    folder = generated(root, "flat-routed", 2, "sll2", "pcapng", 0.25)
    inputs = resolve_inputs([folder])
    packets = read_table(inputs)
    before = packets.copy(deep=True)
    found = correlate.correlate(packets, node_order=[i.node for i in inputs],
                                clock_correction="always")
    assert (found.clock_offsets["applied_ns"] != 0).any()
    latency.latency(packets, found.hops, found.hop_rows, latency.handshakes(packets))
    pd.testing.assert_frame_equal(packets, before)
