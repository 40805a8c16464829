"""flat-routed and flat-routed-v6: pod to pod across two nodes by plain routing.

Expected values follow from the topology and the RFCs: each node routes once (RFC 791 TTL /
RFC 8200 hop limit minus one), nothing is translated, the wire between the nodes changes no
byte, the bridge none either; the MSS is the 1500-byte MTU minus the IP and TCP headers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from craft_checks import (
    Frame,
    Generated,
    Step,
    assert_generic,
    assert_no_tshark_problems,
    assert_path_and_ttl,
    assert_wire_keeps_bytes,
    capture_name,
    generated,
    pod_to_pod_steps,
    tcp_options,
    tcp_payload,
    veth_captures,
)

from pktkit.craft.generation import make_scenario
from pktkit.errors import UsageError

SCENARIOS = ("flat-routed", "flat-routed-v6")
FLOWS = 9  # three rounds of HTTP, DNS, ping


@pytest.fixture(scope="module", params=SCENARIOS)
def gen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generated(tmp_path_factory.mktemp("routed"), request.param, flows=FLOWS)


def node_cidrs(gen: Generated) -> dict[str, str]:
    return {"node-a": gen.params["pod_cidr_a"], "node-b": gen.params["pod_cidr_b"]}


def test_generic_invariants(gen: Generated) -> None:
    assert_generic(gen)


def test_tshark_reads_every_file_cleanly(gen: Generated) -> None:
    assert_no_tshark_problems(gen)


def test_capture_points(gen: Generated) -> None:
    veths = veth_captures(gen, node_cidrs(gen))
    assert {c for c in gen.frames if "-veth" not in c} == {
        capture_name(n, i) for n in ("node-a", "node-b") for i in ("eth0", "cni0")}
    assert sorted(gen.node_of(c) for c in veths.values()) == ["node-a", "node-b", "node-b"]


def test_each_node_routes_once_and_nothing_is_translated(gen: Generated) -> None:
    veths = veth_captures(gen, node_cidrs(gen))

    def route(first: Frame, side: str) -> list[Step]:
        src, _, dst, _ = first.tuple
        return pod_to_pod_steps(gen, veths[src], veths[dst])

    assert_path_and_ttl(gen, route)
    assert gen.truth["nat_flows"] == []
    for sightings in gen.by_packet().values():
        assert {s.tuple for s in sightings} == {sightings[0].tuple}
        assert {s.truth["nat_flow_id"] for s in sightings} == {None}


def test_wire_and_bridges_change_no_byte(gen: Generated) -> None:
    veths = veth_captures(gen, node_cidrs(gen))
    pairs = [("node-a-eth0.pcap", "node-b-eth0.pcap"), ("node-b-eth0.pcap", "node-a-eth0.pcap")]
    for veth in veths.values():
        cni0 = capture_name(gen.node_of(veth), "cni0")
        pairs += [(veth, cni0), (cni0, veth)]
    assert_wire_keeps_bytes(gen, pairs)


def test_flows_cycle_http_dns_ping_between_the_node_cidrs(gen: Generated) -> None:
    v6 = gen.truth["scenario"].endswith("-v6")
    echo = 58 if v6 else 1
    kinds = []
    for packets in gen.by_flow().values():
        first = next(iter(packets.values()))[0]
        kinds.append((first.ip.fields["proto"], first.tuple[3]))
    web_port = gen.params["web_port"]
    ping = (echo, kinds[2][1])
    assert kinds[:3] == [(6, web_port), (17, 53), ping]
    assert [k[0] for k in kinds] == [6, 17, echo] * (FLOWS // 3)
    for frame in gen.all_frames():
        assert frame.ip.name == ("ipv6" if v6 else "ipv4")


def test_mss_fits_the_mtu_and_segments_fit_the_mss(gen: Generated) -> None:
    v6 = gen.truth["scenario"].endswith("-v6")
    expected = 1500 - (40 if v6 else 20) - 20
    syns = [f for f in gen.frames["node-a-eth0.pcap"]
            if f.layer("tcp") is not None and f.layer("tcp").fields["flags"] & 0x02]
    assert syns and {struct.unpack("!H", tcp_options(f)[2])[0] for f in syns} == {expected}
    for frame in gen.all_frames():
        if frame.layer("tcp") is not None:
            assert len(tcp_payload(frame)) <= expected
            assert frame.record.orig_len <= 1514


def test_ipv6_flow_labels_are_set_per_flow_and_direction(tmp_path: Path) -> None:
    """Linux labels IPv6 flows (auto_flowlabels, RFC 6437): non-zero, one label per flow
    direction, unchanged by routers; a TCP connection's two directions differ."""
    gen = generated(tmp_path, "flat-routed-v6", flows=6)
    labels: dict[tuple[str, int | None, str, int | None], set[int]] = {}
    for frame in gen.all_frames():
        label = struct.unpack_from("!I", frame.ip.data)[0] & 0xFFFFF
        labels.setdefault(frame.tuple, set()).add(label)
    assert all(len(v) == 1 and 0 not in v for v in labels.values())
    tcp = [t for t in labels if 80 in (t[1], t[3])]
    assert tcp and all(labels[t] != labels[(t[2], t[3], t[0], t[1])] for t in tcp)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"pod_cidr_b": "fd00:10:244:1::/64"}, ["pod_cidr_b=fd00:10:244:1::/64", "IPv4 and IPv6"]),
        ({"pod_cidr_b": "10.244.0.0/16"}, ["pod_cidr_a", "overlaps"]),
        ({"pod_cidr_a": "10.244.0.0/30"}, ["pod_cidr_a", "too small"]),
        ({"node_b_ip": "10.244.1.9"}, ["node_b_ip", "outside the pod CIDRs"]),
        ({"web_port": "0"}, ["web_port", "1..65535"]),
    ],
)
def test_inconsistent_parameters_are_refused(overrides: dict[str, str], names: list[str]) -> None:
    with pytest.raises(UsageError) as error:
        make_scenario("flat-routed", overrides=overrides)
    for name in names:
        assert name in str(error.value)
