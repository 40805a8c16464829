"""docker-snat and docker-portmap: Docker's bridge, masquerade and published ports.

Expected values follow from Docker's iptables rules and the parameters: MASQUERADE on eth0 to
the host address, keeping the source port (ICMP: the echo identifier) unless a live entry
already uses that translated tuple; ``-p HOST:CONTAINER`` a DNAT of host_ip:HOST to a container
on docker0's network. The host routes once (TTL-1); the Internet routes ``wan_hops`` times.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

import pytest
from craft_checks import (
    Frame,
    Generated,
    Step,
    assert_generic,
    assert_nat_views,
    assert_no_tshark_problems,
    assert_path_and_ttl,
    assert_wire_keeps_bytes,
    scenario_fixture,
    tcp_payload,
    veth_captures,
)

ETH0, DOCKER0 = "host-eth0.pcap", "host-docker0.pcap"
TCP_RTO_MIN_NS = 200_000_000  # Linux's minimum retransmission timeout


snat = scenario_fixture("docker-snat", 12)
portmap = scenario_fixture("docker-portmap", 4)


def containers(gen: Generated) -> dict[str, str]:
    """Container address -> host-side veth capture, from the bytes."""
    return veth_captures(gen, {"host": gen.params["bridge_cidr"]})


def on_bridge(gen: Generated, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(gen.params["bridge_cidr"])


def container_of(gen: Generated, first: Frame) -> str:
    flow = gen.nat_flows()[first.truth["nat_flow_id"]]
    return flow["orig_src"] if on_bridge(gen, flow["orig_src"]) else flow["xlat_dst"]


def bridge_pairs(gen: Generated) -> list[tuple[str, str]]:
    return [pair for veth in containers(gen).values()
            for pair in ((veth, DOCKER0), (DOCKER0, veth))]


@pytest.mark.parametrize("name", ["snat", "portmap"])
def test_paths_and_ttl(name: str, request: pytest.FixtureRequest) -> None:
    """Inside (veth, docker0, eth0) nothing routes until the host does; from outside the
    packet has passed ``wan_hops`` routers, then the host."""
    gen: Generated = request.getfixturevalue(name)
    wan, veths = gen.params["wan_hops"], containers(gen)

    def route(first: Frame, side: str) -> list[Step]:
        veth = veths[container_of(gen, first)]
        inside = [(veth, "other", 0), (DOCKER0, "in", 0), (ETH0, "out", 1)]
        outside = [(ETH0, "in", wan), (DOCKER0, "out", wan + 1), (veth, "out", wan + 1)]
        outbound = (side == "fwd") == (name == "snat")  # masquerade: containers originate
        return inside if outbound else outside

    assert_path_and_ttl(gen, route)


@pytest.mark.parametrize("name", ["snat", "portmap"])
def test_generic_invariants_and_tshark(name: str, request: pytest.FixtureRequest) -> None:
    gen: Generated = request.getfixturevalue(name)
    assert_generic(gen)
    assert_no_tshark_problems(gen)
    assert_wire_keeps_bytes(gen, bridge_pairs(gen))
    assert len(containers(gen)) == 2


# --- docker-snat -----------------------------------------------------------------------------


def test_snat_ledger_is_masquerade_to_the_host(snat: Generated) -> None:
    p = snat.params
    flows = list(snat.nat_flows().values())
    assert len(flows) == p["flows"]
    for flow in flows:
        assert flow["kind"] == "snat"
        assert on_bridge(snat, flow["orig_src"]) and flow["xlat_src"] == p["host_ip"]
        assert flow["xlat_dst"] == flow["orig_dst"] in (p["server_ip"], p["dns_ip"])
        if flow["proto"] == 1:  # ICMP echo: the identifier stands for both ports
            assert flow["orig_sport"] == flow["orig_dport"]
            assert flow["xlat_sport"] == flow["xlat_dport"]
        else:
            assert flow["xlat_dport"] == flow["orig_dport"]
    tuples = [(f["proto"], f["xlat_src"], f["xlat_sport"], f["xlat_dst"], f["xlat_dport"])
              for f in flows]
    assert len(set(tuples)) == len(tuples), "two connections share a translated tuple"


def test_snat_collision_changes_the_second_port_only(snat: Generated) -> None:
    """Two containers with the same source port (or ICMP id) toward the same destination:
    the first keeps it, every later one is given another (nf_nat_l4proto_unique_tuple)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for flow in snat.truth["nat_flows"]:  # in creation order
        groups[(flow["proto"], flow["orig_sport"], flow["orig_dst"], flow["orig_dport"])] \
            .append(flow)
    collided = {key[0] for key, group in groups.items()
                if len({f["orig_src"] for f in group}) > 1}
    assert {1, 6} <= collided, "the scenario shows a TCP and an ICMP collision"
    for group in groups.values():
        first, *later = group
        assert first["xlat_sport"] == first["orig_sport"]
        for flow in later:
            assert flow["xlat_sport"] != flow["orig_sport"]
            low = 0 if flow["proto"] == 1 else 1024
            assert low <= flow["xlat_sport"] <= 65535


def test_snat_translation_is_seen_on_eth0_only(snat: Generated) -> None:
    expected = {(c, d): {"orig-fwd", "orig-rev"} for c in [DOCKER0, *containers(snat).values()]
                for d in ("in", "out", "other")}  # a veth receives "other" (docker0's port)
    expected |= {(ETH0, "out"): {"xlat-fwd"}, (ETH0, "in"): {"xlat-rev"}}
    assert_nat_views(snat, expected)


def test_lost_request_is_retransmitted_after_the_rto(snat: Generated) -> None:
    """Flow 1's request is lost beyond eth0 and sent again: same sequence number and payload,
    a new IP ID (the socket's counter moved on), at least the minimum RTO later."""
    flow_1 = {s.capture for sightings in snat.by_flow()[1].values() for s in sightings}
    assert len(flow_1) == 3  # the container's veth, docker0, eth0
    for capture in flow_1:
        by_seq: dict[int, list[Frame]] = defaultdict(list)
        for frame in snat.frames[capture]:
            tcp = frame.layer("tcp")
            if tcp is not None and frame.truth["flow_id"] == 1 and tcp_payload(frame):
                by_seq[int(tcp.fields["seq"])].append(frame)
        resent = [frames for frames in by_seq.values() if len(frames) > 1]
        assert len(resent) == 1, capture
        first, again = resent[0]
        assert tcp_payload(first) == tcp_payload(again) and first.tuple == again.tuple
        assert first.ip.fields["id"] != again.ip.fields["id"]
        assert again.record.ts_ns - first.record.ts_ns >= TCP_RTO_MIN_NS
        assert first.truth["packet_id"] != again.truth["packet_id"]
    # The lost copy never reaches the server: its reply acknowledges only the resent one.


# --- docker-portmap --------------------------------------------------------------------------


def test_portmap_ledger_is_the_published_port(portmap: Generated) -> None:
    p = portmap.params
    veths = containers(portmap)
    flows = list(portmap.nat_flows().values())
    assert len(flows) == p["flows"]
    behind: dict[int, set[str]] = defaultdict(set)  # host port -> the containers behind it
    for flow in flows:
        assert flow["kind"] == "dnat" and flow["proto"] == 6
        assert flow["orig_dst"] == p["host_ip"]
        assert flow["orig_dport"] in (p["host_port"], p["host_port_2"])
        assert flow["xlat_dport"] == p["container_port"]
        assert on_bridge(portmap, flow["xlat_dst"]) and flow["xlat_dst"] in veths
        assert (flow["xlat_src"], flow["xlat_sport"]) == (flow["orig_src"], flow["orig_sport"])
        behind[flow["orig_dport"]].add(flow["xlat_dst"])
    # Docker publishes a host port for one container: two ports, two containers
    assert len(behind) == 2 and all(len(c) == 1 for c in behind.values())
    assert len(set.union(*behind.values())) == 2


def test_portmap_translation_is_seen_from_docker0_on(portmap: Generated) -> None:
    expected = {(c, d): {"xlat-fwd", "xlat-rev"}
                for c in [DOCKER0, *containers(portmap).values()]
                for d in ("in", "out", "other")}
    expected |= {(ETH0, "in"): {"orig-fwd"}, (ETH0, "out"): {"orig-rev"}}
    assert_nat_views(portmap, expected)
