"""k8s-nodeport and k8s-clusterip: kube-proxy's NAT on node-a, routed pod network, no tunnel.

Expected values follow from the Service definition in the parameters: a NodePort connection
(client, cport) -> (node-a, nodePort) is DNATed to a pod of node-b's CIDR on targetPort and
masqueraded to node-a's address with a random port (``--random-fully``); a ClusterIP
connection is DNATed only. TTLs: the client's routers, then one per node that routes.
"""

from __future__ import annotations

import ipaddress
import itertools
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
    pod_to_pod_steps,
    scenario_fixture,
    tcp_payload,
    veth_captures,
)

from pktkit.craft.generation import make_scenario
from pktkit.errors import UsageError

EPHEMERAL = range(32768, 61000)  # Linux's default ip_local_port_range
A_ETH0, B_ETH0, B_CNI0 = "node-a-eth0.pcap", "node-b-eth0.pcap", "node-b-cni0.pcap"
A_CNI0 = "node-a-cni0.pcap"


nodeport = scenario_fixture("k8s-nodeport", 6)
clusterip = scenario_fixture("k8s-clusterip", 6)


def node_cidrs(gen: Generated) -> dict[str, str]:
    return {"node-a": gen.params["pod_cidr_a"], "node-b": gen.params["pod_cidr_b"]}


def in_cidr(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


@pytest.mark.parametrize("name", ["nodeport", "clusterip"])
def test_generic_invariants_and_tshark(name: str, request: pytest.FixtureRequest) -> None:
    gen: Generated = request.getfixturevalue(name)
    assert_generic(gen)
    assert_no_tshark_problems(gen)


# --- NodePort --------------------------------------------------------------------------------


def test_nodeport_ledger_is_the_service_rule(nodeport: Generated) -> None:
    p = nodeport.params
    (backend,) = veth_captures(nodeport, node_cidrs(nodeport))
    flows = list(nodeport.nat_flows().values())
    assert len(flows) == p["flows"]
    for flow in flows:
        assert flow["kind"] == "snat+dnat" and flow["proto"] == 6
        assert (flow["orig_src"], flow["orig_dst"], flow["orig_dport"]) == \
            (p["client_ip"], p["node_a_ip"], p["node_port"])
        assert flow["orig_sport"] in EPHEMERAL
        assert (flow["xlat_src"], flow["xlat_dst"], flow["xlat_dport"]) == \
            (p["node_a_ip"], backend, p["target_port"])
        assert in_cidr(backend, p["pod_cidr_b"])
        assert 1024 <= flow["xlat_sport"] <= 65535
    # --random-fully: a fresh port for every connection, whatever the client chose.
    assert len({f["xlat_sport"] for f in flows}) == len(flows)
    assert any(f["xlat_sport"] != f["orig_sport"] for f in flows)


def test_nodeport_translation_is_seen_where_netfilter_does_it(nodeport: Generated) -> None:
    b_veth = next(c for c in nodeport.frames if "-veth" in c)
    assert_nat_views(nodeport, {
        (A_ETH0, "in"): {"orig-fwd", "xlat-rev"},  # before PREROUTING's DNAT / de-SNAT
        (A_ETH0, "out"): {"xlat-fwd", "orig-rev"},  # after POSTROUTING
        (B_ETH0, "in"): {"xlat-fwd"}, (B_ETH0, "out"): {"xlat-rev"},
        (B_CNI0, "out"): {"xlat-fwd"}, (B_CNI0, "in"): {"xlat-rev"},
        (b_veth, "out"): {"xlat-fwd"}, (b_veth, "other"): {"xlat-rev"},
    })


def test_nodeport_paths_and_ttl(nodeport: Generated) -> None:
    wan = nodeport.params["wan_hops"]
    (b_veth,) = veth_captures(nodeport, node_cidrs(nodeport)).values()
    routes: dict[str, list[Step]] = {
        "fwd": [(A_ETH0, "in", wan), (A_ETH0, "out", wan + 1), (B_ETH0, "in", wan + 1),
                (B_CNI0, "out", wan + 2), (b_veth, "out", wan + 2)],
        "rev": [(b_veth, "other", 0), (B_CNI0, "in", 0), (B_ETH0, "out", 1), (A_ETH0, "in", 1),
                (A_ETH0, "out", 2)],
    }
    assert_path_and_ttl(nodeport, lambda first, side: routes[side])
    assert_wire_keeps_bytes(nodeport, [(A_ETH0, B_ETH0), (B_ETH0, A_ETH0), (b_veth, B_CNI0),
                                       (B_CNI0, b_veth)])


def test_nodeport_node_a_forwards_each_packet_back_out_of_eth0(nodeport: Generated) -> None:
    """Seen twice on node-a's eth0: the second copy has new MACs (node-a's toward the next
    hop), one less TTL, and the same IP ID, TCP sequence and payload."""
    twice = 0
    for sightings in nodeport.by_packet().values():
        at_a = [s for s in sightings if s.capture == A_ETH0]
        assert [s.direction for s in at_a] == ["in", "out"]
        first, second = at_a
        assert second.eth.fields["src"] == first.eth.fields["dst"]
        assert second.eth.fields["dst"] != first.eth.fields["src"]
        assert second.ttl == first.ttl - 1
        assert second.ip.fields["id"] == first.ip.fields["id"]
        assert second.layer("tcp").fields["seq"] == first.layer("tcp").fields["seq"]
        assert tcp_payload(second) == tcp_payload(first)
        assert second.record.ts_ns > first.record.ts_ns
        twice += 1
    assert twice == len(nodeport.by_packet())


@pytest.mark.parametrize(
    ("name", "overrides", "words"),
    [
        ("k8s-nodeport", {"node_port": "70000"}, ["node_port", "1..65535"]),
        ("k8s-nodeport", {"client_ip": "2001:db8::7"}, ["client_ip", "IPv4 and IPv6"]),
        ("k8s-clusterip", {"dns_service_ip": "fd00::a"}, ["dns_service_ip", "IPv4 and IPv6"]),
        ("k8s-clusterip", {"pod_cidr_a": "10.244.1.0/24"}, ["pod_cidr_a", "overlaps"]),
    ],
)
def test_bad_parameters_are_refused(name: str, overrides: dict[str, str],
                                    words: list[str]) -> None:
    with pytest.raises(UsageError) as error:
        make_scenario(name, overrides=overrides)
    assert all(word in str(error.value) for word in words)


# --- ClusterIP -------------------------------------------------------------------------------


def backend_of(gen: Generated, first: Frame) -> str:
    return gen.nat_flows()[first.truth["nat_flow_id"]]["xlat_dst"]


def test_clusterip_ledger_is_dnat_to_the_service_backends(clusterip: Generated) -> None:
    p = clusterip.params
    client = veth_captures(clusterip, {"node-a": p["pod_cidr_a"], "node-b": p["pod_cidr_b"]})
    (client_ip,) = [ip for ip in client if in_cidr(ip, p["pod_cidr_a"])]
    services = {(p["service_ip"], p["service_port"]): p["target_port"],
                (p["dns_service_ip"], 53): 53}
    seen: set[tuple[str, int]] = set()
    backends: dict[tuple[str, int], set[str]] = {}
    for flow in clusterip.nat_flows().values():
        vip = (flow["orig_dst"], flow["orig_dport"])
        seen.add(vip)
        assert flow["kind"] == "dnat"
        assert flow["proto"] == (6 if vip[0] == p["service_ip"] else 17)
        assert (flow["orig_src"], flow["xlat_src"]) == (client_ip, client_ip)
        assert flow["orig_sport"] == flow["xlat_sport"] and flow["orig_sport"] in EPHEMERAL
        assert flow["xlat_dport"] == services[vip]
        assert in_cidr(flow["xlat_dst"], p["pod_cidr_b"]) and flow["xlat_dst"] in client
        backends.setdefault(vip, set()).add(flow["xlat_dst"])
    assert seen == set(services)
    assert all(len(b) == 1 for b in backends.values())
    assert backends[(p["service_ip"], p["service_port"])] != backends[(p["dns_service_ip"], 53)]


def test_clusterip_dnat_is_seen_from_cni0_on(clusterip: Generated) -> None:
    """br_netfilter runs PREROUTING as the frame enters cni0: only the client's veth shows
    the VIP going out; replies get the VIP back in POSTROUTING toward cni0."""
    p = clusterip.params
    veths = veth_captures(clusterip, node_cidrs(clusterip))
    expected: dict[tuple[str, str], set[str]] = {}
    for ip, veth in veths.items():
        if in_cidr(ip, p["pod_cidr_a"]):
            expected |= {(veth, "other"): {"orig-fwd"}, (veth, "out"): {"orig-rev"}}
        else:
            expected |= {(veth, "out"): {"xlat-fwd"}, (veth, "other"): {"xlat-rev"}}
    expected |= {(A_CNI0, "in"): {"xlat-fwd"}, (A_CNI0, "out"): {"orig-rev"}}
    for capture, direction in itertools.product((A_ETH0, B_ETH0, B_CNI0), ("in", "out")):
        expected[(capture, direction)] = {"xlat-fwd", "xlat-rev"}
    assert_nat_views(clusterip, expected)


def test_clusterip_paths_and_ttl(clusterip: Generated) -> None:
    veths = veth_captures(clusterip, node_cidrs(clusterip))
    (client,) = [v for ip, v in veths.items() if in_cidr(ip, clusterip.params["pod_cidr_a"])]

    def route(first: Frame, side: str) -> list[Step]:
        backend = veths[backend_of(clusterip, first)]
        return pod_to_pod_steps(clusterip, client, backend) if side == "fwd" else \
            pod_to_pod_steps(clusterip, backend, client)

    assert_path_and_ttl(clusterip, route)
    assert_wire_keeps_bytes(clusterip, [(A_ETH0, B_ETH0), (B_ETH0, A_ETH0)])


def test_clusterip_flows_alternate_web_and_dns(clusterip: Generated) -> None:
    p: dict[str, Any] = clusterip.params
    vips = [(f["orig_dst"], f["orig_dport"]) for f in clusterip.truth["nat_flows"]]
    web, dns = (p["service_ip"], p["service_port"]), (p["dns_service_ip"], 53)
    assert vips == [web, dns] * (p["flows"] // 2)
