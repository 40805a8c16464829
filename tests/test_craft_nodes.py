"""``pktkit generate SCENARIO --nodes N``: N nodes, pods on each, flows between random pairs,
each node its own clock; every frame true to truth.json, and the analyzer reading the truth
back on 4- and 8-node sets with a real-world underlay (queues, loss, reordering, duplicates)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import test_craft_overlay as overlay_checks
from craft_checks import Generated, assert_generic, generated
from test_craft_overlay import CASES, load_run
from truth_checks import assert_delays_within_bounds, assert_same_partition, joined

import pktkit
from pktkit.analysis.pipeline import analyze
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.nodes import MAX_NODES, NodePairs, node_clocks, node_name
from pktkit.craft.scenarios import SCENARIOS

MANY = ("vxlan-overlay", "vxlan-overlay-v6", "geneve-overlay", "nvgre", "ipip", "flat-routed",
        "flat-routed-v6")
IMPAIRED = ("queue=20ms", "loss=0.01", "reorder=0.005", "duplicate=0.002")


def node_index(name: str) -> int:
    assert name.startswith("node-")
    return int(name[5:]) - 1


def expected_node_ip(gen: Generated, node: str) -> str:
    """node-01 has node_a_ip, each next node the next address (the documented numbering)."""
    return str(ipaddress.ip_address(gen.params["node_a_ip"]) + node_index(node))


def packets_of(gen: Generated) -> pd.DataFrame:
    return pd.DataFrame(gen.truth["packets"])


def assert_overlay_frames_true(name: str, out: Path) -> None:
    """The overlay scenarios' per-frame checks (tests/test_craft_overlay.py: truth entries
    against the bytes, checksums, TTLs and the outer header, TCP continuity, the path of every
    packet), with the two nodes of its paths any two of the N."""
    case = CASES[name]
    any_node = r"node-\d\d/"
    case = dataclasses.replace(case, chains=tuple(
        tuple(p.replace("node-a/", any_node).replace("node-b/", any_node) for p in chain)
        for chain in case.chains))
    case_run = (case, load_run(out))
    overlay_checks.test_every_frame_agrees_with_its_truth_entry(case_run)
    overlay_checks.test_every_checksum_is_valid(case_run)
    overlay_checks.test_ttl_falls_by_one_per_routing_node_and_the_outer_header_is_linuxs(
        case_run)
    overlay_checks.test_tcp_sequence_and_acknowledgement_numbers_are_continuous(case_run)
    overlay_checks.test_each_packet_is_seen_along_its_path_in_order_and_in_time(case_run)


@pytest.mark.parametrize("name", MANY)
def test_every_frame_is_true_on_three_nodes(tmp_path: Path, name: str) -> None:
    """The checks of the scenario's family (flat: checksums, bytes against truth.json, time
    order, paths hop by hop, TCP continuity, one router MAC per capture point; overlays: the
    same read through the tunnels), on three nodes; each packet is seen on two nodes, all of
    its sightings on its sender's before any on the receiver's, and where it crosses the
    underlay encapsulated, the outer addresses are those two nodes'."""
    gen = generated(tmp_path, name, nodes=3, flows=15, seed=2)
    if name in CASES:
        assert_overlay_frames_true(name, gen.out)
    else:  # a pod no flow chose leaves an empty capture, which has no router MAC to check
        assert_generic(dataclasses.replace(gen, frames={
            capture: frames for capture, frames in gen.frames.items() if frames}))
    rows = packets_of(gen)
    assert sorted(set(rows["node"])) == ["node-01", "node-02", "node-03"]
    for _, sightings in rows.sort_values("hop").groupby("packet_id"):
        nodes = list(dict.fromkeys(sightings["node"]))
        assert len(nodes) == 2, nodes  # in order of the path: sender, then receiver
        assert sightings["node"].tolist() == sorted(sightings["node"], key=nodes.index)
        outer = sightings[sightings["outer_src"].notna()]
        if len(outer):
            assert set(outer["outer_src"]) == {expected_node_ip(gen, nodes[0])}
            assert set(outer["outer_dst"]) == {expected_node_ip(gen, nodes[1])}


def test_flows_run_between_random_pairs_of_nodes(tmp_path: Path) -> None:
    """Over 60 flows on 4 nodes every node sends and answers, and most of the 12 ordered pairs
    occur; pod addresses lie in each node's pod CIDR, numbered from pod_cidr_a."""
    gen = generated(tmp_path, "flat-routed", nodes=4, flows=60)
    rows = packets_of(gen).sort_values(["packet_id", "hop"])
    opening = rows[rows["packet_id"] == rows.groupby("flow_id")["packet_id"].transform("min")]
    first, last = opening.groupby("flow_id").first(), opening.groupby("flow_id").last()
    pairs = Counter(zip(first["node"], last["node"], strict=True))
    assert all(src != dst for src, dst in pairs)
    assert {src for src, _ in pairs} == {dst for _, dst in pairs} == {
        node_name(i, 4) for i in range(4)}
    assert len(pairs) >= 9
    size = ipaddress.ip_network(gen.params["pod_cidr_a"]).num_addresses
    base = int(ipaddress.ip_network(gen.params["pod_cidr_a"]).network_address)
    for flow, node in first["node"].items():
        src = ipaddress.ip_address(first.loc[flow, "src"])
        assert (int(src) - base) // size == node_index(node), (flow, src, node)


@pytest.mark.parametrize(("name", "cni"), [("geneve-overlay", "ovn"),
                                           ("flat-routed", "flannel")])
def test_kubectl_lists_every_node_and_its_pods(tmp_path: Path, name: str, cni: str) -> None:
    """kubectl.json holds the N nodes at their addresses, kube-proxy on each, and the three
    pods every node runs at addresses its captures show; pod names are distinct."""
    out = tmp_path / name
    generate(make_scenario(name, nodes=5, flows=20), out)
    items = json.loads((out / "kubectl.json").read_text())["items"]
    nodes = {n["metadata"]["name"]: n for n in items if n["kind"] == "Node"}
    assert sorted(nodes) == [node_name(i, 5) for i in range(5)]
    params = pktkit.load_truth(out)["params"]
    for name_, node in nodes.items():
        address = next(a["address"] for a in node["status"]["addresses"]
                       if a["type"] == "InternalIP")
        assert address == str(ipaddress.ip_address(params["node_a_ip"]) + node_index(name_))
    pods = [p for p in items if p["kind"] == "Pod"]
    assert len({p["metadata"]["name"] for p in pods}) == len(pods)
    per_node = Counter(p["spec"]["nodeName"] for p in pods
                       if not p["spec"].get("hostNetwork"))
    assert per_node == dict.fromkeys(nodes, 3)
    seen = set(pd.DataFrame(pktkit.load_truth(out)["packets"])[["src", "dst"]].stack())
    pod_ips = {p["status"]["podIP"] for p in pods if not p["spec"].get("hostNetwork")}
    assert seen <= pod_ips and len(seen) >= 6  # every address in the captures is a pod's


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def files(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    for run in ("one", "two"):
        generate(make_scenario("vxlan-overlay", nodes=3, flows=12, clock_offset_s=0.2,
                               clock_drift_ppm=40, impairments=IMPAIRED), tmp_path / run)
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_each_node_but_the_first_has_its_own_clock_within_the_bounds() -> None:
    names = [node_name(i, 8) for i in range(8)]
    clocks = node_clocks(names, 0.3, 80.0, "x:1", 5)
    assert clocks["node-01"].offset_ns == 0 and clocks["node-01"].drift_ppm == 0
    others = [clocks[n] for n in names[1:]]
    assert all(abs(c.offset_ns) <= 300_000_000 and c.offset_ns % 1000 == 0 for c in others)
    assert all(abs(c.drift_ppm) <= 80 and c.at_ns == 5 for c in others)
    assert len({c.offset_ns for c in others}) == 7 and len({c.drift_ppm for c in others}) == 7
    assert node_clocks(names, 0.3, 80.0, "x:1", 5) == clocks  # seeded
    pairs = NodePairs(3, "x")
    drawn = Counter(pairs.draw() for _ in range(600))
    assert set(drawn) == {(a, b) for a in range(3) for b in range(3) if a != b}
    assert min(drawn.values()) > 60  # uniform: 100 each expected


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pktkit.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("args", "names"), [
    (["docker-snat", "--nodes", "4"], ["--nodes", "docker-snat", "fixed topology",
                                       "vxlan-overlay"]),
    (["k8s-nodeport", "--nodes", "4"], ["--nodes", "k8s-nodeport"]),
    (["vxlan-overlay", "--nodes", "1"], ["--nodes 1", f"2..{MAX_NODES}"]),
    (["vxlan-overlay", "--nodes", str(MAX_NODES + 1)], ["--nodes", f"2..{MAX_NODES}"]),
    (["vxlan-overlay", "--nodes", "8", "--set", "tenant_a_cidr=10.0.0.0/28"],
     ["10.0.0.0/28", "8 nodes", "fewer --nodes"]),
    (["flat-routed", "--nodes", "40", "--set", "node_a_ip=10.243.5.1",
      "--set", "pod_cidr_a=10.243.0.0/24", "--set", "pod_cidr_b=10.245.0.0/24"],
     ["node_a_ip=10.243.5.1", "node address 10.243.5.1 falls in a pod CIDR"]),
    (["flat-routed-v6", "--nodes", "3", "--set", "node_a_ip=" + "ffff:" * 7 + "fffe"],
     ["node_a_ip", "no room"]),
])
def test_bad_node_counts_are_one_line_errors(tmp_path: Path, args: list[str],
                                             names: list[str]) -> None:
    out = tmp_path / "out"
    result = run_cli("generate", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    assert not out.exists()


def assert_clocks_true(found: Any, truth: dict[str, Any], both: pd.DataFrame) -> None:
    """Every node has a model against node-01, its offset within its bound of the true clock
    difference at the true times of the node's own sightings of packets that crossed nodes
    (the span the crossings cover), its drift within 6 ppm of the truth: a model chained
    through other nodes adds up the errors of its links (2 ppm each for a direct fit, the
    two-node tests' figure)."""
    rows = found.clock_offsets.set_index("node")
    assert set(rows.index) == set(truth["clocks"]) and rows["offset_ns"].notna().all()
    assert set(rows["reference_node"]) == {"node-01"}
    crossed = both.groupby("packet_id_t")["node"].transform("nunique") > 1
    for node, row in rows.iterrows():
        if node == "node-01":
            continue
        mine = both[crossed & (both["node"] == node) & ~both["duplicate"]]
        t = mine["true_ts_ns"].to_numpy(np.int64)
        true, ref = truth["clocks"][node], truth["clocks"]["node-01"]
        want = (true["offset_ns"] + true["drift_ppm"] * 1e-6 * (t - true["at_ns"])
                - ref["offset_ns"] - ref["drift_ppm"] * 1e-6 * (t - ref["at_ns"]))
        got = row["offset_ns"] + row["drift_ppm"] * 1e-6 * (t - row["at_ns"])
        assert np.abs(got - want).max() <= row["bound_ns"] + 1000, node
        assert abs(row["drift_ppm"] - (true["drift_ppm"] - ref["drift_ppm"])) <= 2.0 * 3, node


@pytest.mark.parametrize(("name", "nodes", "flows"), [
    ("vxlan-overlay", 4, 160), ("flat-routed", 4, 160), ("vxlan-overlay", 8, 320),
    ("geneve-overlay", 8, 320)])
def test_the_analyzer_reads_the_truth_of_many_impaired_nodes(
        tmp_path: Path, name: str, nodes: int, flows: int) -> None:
    """Queues, 1 % loss, reordering and duplicates on every link, every node's clock off by up
    to 0.3 s and 80 ppm: the analyzer's packet partition, hops and overlay VNIs equal
    the truth's; no NAT flow found where the truth has none; every delay within a node is
    the truth's and every crossing within the nodes' bounds; every clock model holds."""
    out = tmp_path / name
    generate(make_scenario(name, nodes=nodes, flows=flows, seed=nodes, clock_offset_s=0.3,
                           clock_drift_ppm=80, impairments=IMPAIRED), out)
    found, truth = analyze(out), pktkit.load_truth(out)
    both = joined(found, truth)
    assert both["node"].nunique() == nodes
    assert_same_partition(both["packet_id"], both["packet_id_t"])
    assert (both["hop"] == both["hop_t"]).all()
    assert (both["overlay_encap"] == both["overlay_encap_t"]).all()
    vni = both["overlay_vni"].astype("Int64")
    assert (vni.fillna(-1) == both["overlay_vni_t"].astype("Int64").fillna(-1)).all()
    if name == "vxlan-overlay":
        assert set(vni.dropna()) == {1, 2}
    assert truth["nat_flows"] == [] and len(found.nat_flows) == 0
    assert_delays_within_bounds(found, truth, both)
    assert_clocks_true(found, truth, both)
    assert len(truth["lost"]) > 0 and both["duplicate"].any()  # the impairments acted


def test_many_nodes_are_a_registry_property() -> None:
    """--nodes is offered by exactly the overlay and flat-routed scenarios."""
    assert sorted(n for n, c in SCENARIOS.items() if c.many_nodes) == sorted(MANY)
