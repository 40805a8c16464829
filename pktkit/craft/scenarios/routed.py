"""Flat routed pod networking (flannel host-gw, Calico BGP without a tunnel): no NAT, no overlay.

Two nodes on one L2 segment; each has a bridge ``cni0`` holding its pods' veths and a route to
the other node's pod CIDR via the other node's address. A packet from a pod on ``node-a`` to one
on ``node-b`` is seen on the source pod's veth (in), ``cni0`` (in), ``node-a``'s ``eth0`` (out,
TTL-1: node A routed it), ``node-b``'s ``eth0`` (in), ``cni0`` (out, TTL-2: node B routed it)
and the destination pod's veth (out). Addresses and ports never change along the way.

Host-side veth names are ``veth`` plus eight hex digits, as the CNI bridge plugin makes them;
pod MACs are ``0a:58`` plus the low four bytes of the pod address, as that plugin derives them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from pktkit.capture.write import Interface
from pktkit.craft import params as P
from pktkit.craft.engine import FlowSpec, Hop, Path, Scenario
from pktkit.craft.kernel import Route, Transform
from pktkit.craft.traffic import (
    Emission,
    Endpoint,
    dns_exchange,
    http_request,
    http_response,
    ping,
    tcp_session,
    varied_size,
)
from pktkit.errors import UsageError

LAN_RTT_MS = 0.4  # node to node round trip on the cluster LAN (the TCP timestamp clock)
EPHEMERAL = (32768, 60999)  # net.ipv4.ip_local_port_range


def pod_mac(ip: str) -> str:
    """The CNI bridge plugin's pod MAC: 0a:58 followed by the low four bytes of the address."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed[-4:])


def veth_name(pod: str) -> str:
    """Host side of a pod's veth pair: ``veth`` and eight hex digits (15-character limit)."""
    return "veth" + hashlib.sha1(pod.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    mac: str
    eth0: Interface
    cni0: Interface
    cni0_mac: str


@dataclass(frozen=True)
class Pod:
    name: str
    ip: str
    node: Node
    veth: Interface

    @property
    def mac(self) -> str:
        return pod_mac(self.ip)


@dataclass(frozen=True)
class ClusterParams:
    """Two nodes and their pod CIDRs; every cluster scenario of this family starts from these."""

    node_a_ip: str = P.field("192.168.50.11", P.check_ip, "node-a's address on eth0")
    node_b_ip: str = P.field("192.168.50.12", P.check_ip, "node-b's address on eth0")
    pod_cidr_a: str = P.field("10.244.0.0/24", P.check_cidr, "pod CIDR of node-a (cni0)")
    pod_cidr_b: str = P.field("10.244.1.0/24", P.check_cidr, "pod CIDR of node-b (cni0)")
    link_latency_us: int = P.field(40, P.check_positive, "one-way wire delay node <-> node, µs")


def check_one_family(params: object, names: tuple[str, ...]) -> None:
    """The named address/CIDR parameters must all be IPv4 or all IPv6."""
    values = {name: str(getattr(params, name)) for name in names}
    if len({ipaddress.ip_network(v, strict=False).version for v in values.values()}) > 1:
        given = ", ".join(f"{k}={v}" for k, v in values.items())
        raise UsageError(f"{given}: IPv4 and IPv6 mixed; give them all in one family")


def check_cluster(p: ClusterParams, addresses: tuple[str, ...]) -> None:
    """Cross-field checks: one address family (for ``addresses`` and the cluster's own),
    disjoint CIDRs with room for the pods, node addresses outside them."""
    check_one_family(p, ("node_a_ip", "node_b_ip", "pod_cidr_a", "pod_cidr_b", *addresses))
    nets = [ipaddress.ip_network(p.pod_cidr_a), ipaddress.ip_network(p.pod_cidr_b)]
    nodes = [ipaddress.ip_address(p.node_a_ip), ipaddress.ip_address(p.node_b_ip)]
    if nets[0].overlaps(nets[1]):
        raise UsageError(f"pod_cidr_a={p.pod_cidr_a} overlaps pod_cidr_b={p.pod_cidr_b}; "
                         "give each node its own pod CIDR")
    for name, net in (("pod_cidr_a", nets[0]), ("pod_cidr_b", nets[1])):
        if net.num_addresses < 16:
            raise UsageError(f"{name}={net} is too small for the pods; give a /28 or larger")
    if nodes[0] == nodes[1] or any(a in n for a in nodes for n in nets):
        raise UsageError(f"node_a_ip={p.node_a_ip}, node_b_ip={p.node_b_ip}: give two distinct "
                         "node addresses outside the pod CIDRs")


class TwoNodeCluster(Scenario):
    """Nodes ``node-a`` and ``node-b``, their bridges, and the routed paths between pods."""

    Params = ClusterParams
    default_duration_s = Scenario.MULTI_NODE_DURATION_S
    address_params: ClassVar[tuple[str, ...]] = ()  # more addresses in the cluster's family

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        p: ClusterParams = self.params
        check_cluster(p, self.address_params)
        self.node_a = Node("node-a", p.node_a_ip, "52:54:00:6b:0a:11",
                           Interface("node-a", "eth0", 2), Interface("node-a", "cni0", 4),
                           "9e:31:c4:5d:0a:01")
        self.node_b = Node("node-b", p.node_b_ip, "52:54:00:6b:0a:12",
                           Interface("node-b", "eth0", 2), Interface("node-b", "cni0", 4),
                           "9e:31:c4:5d:0b:01")
        self.link_latency_us = p.link_latency_us

    def pod(self, node: Node, name: str, host: int, ifindex: int) -> Pod:
        """Pod ``name`` at host number ``host`` of ``node``'s pod CIDR (.1 is cni0)."""
        p: ClusterParams = self.params
        cidr = p.pod_cidr_a if node is self.node_a else p.pod_cidr_b
        ip = str(ipaddress.ip_network(cidr).network_address + host)
        return Pod(name, ip, node, Interface(node.name, veth_name(f"default/{name}"), ifindex))

    def egress(self, pod: Pod, next_hop_mac: str, at_bridge: tuple[Transform, ...] = ()
               ) -> tuple[Hop, ...]:
        """From ``pod`` out of its node's eth0 (routed: TTL-1) toward ``next_hop_mac``.

        ``at_bridge``: netfilter work in PREROUTING, which br_netfilter runs as the frame enters
        the bridge, so ``cni0`` already shows its result (kube-proxy's DNAT)."""
        node = pod.node
        return (
            Hop(pod.veth, "in", 4),
            Hop(node.cni0, "in", 3, at_bridge),
            Hop(node.eth0, "out", 15, (Route(node.mac, next_hop_mac),)),
        )

    def arrive(self, node: Node) -> Hop:
        """Across the LAN onto ``node``'s eth0 (no router in between: the same frame)."""
        return Hop(node.eth0, "in", self.link_latency_us, wire=True)

    def deliver(self, pod: Pod, before_route: tuple[Transform, ...] = ()) -> tuple[Hop, ...]:
        """From ``pod``'s node's eth0 through ``cni0`` (routed: TTL-1) to the pod.

        ``before_route``: POSTROUTING work on the way out to cni0 (reverse DNAT)."""
        node = pod.node
        return (
            self.arrive(node),
            Hop(node.cni0, "out", 12, (*before_route, Route(node.cni0_mac, pod.mac))),
            Hop(pod.veth, "out", 3),
        )

    def pod_to_pod(self, src: Pod, dst: Pod) -> Path:
        """One direction between pods on the two nodes, no translation."""
        return Path(src.mac, src.node.cni0_mac, (*self.egress(src, dst.node.mac),
                                                 *self.deliver(dst)), final_latency_us=5)


@dataclass(frozen=True)
class RoutedParams(ClusterParams):
    web_port: int = P.field(80, P.check_port, "HTTP port of the web pod on node-b")


@dataclass(frozen=True)
class RoutedV6Params(RoutedParams):
    node_a_ip: str = P.field("2001:db8:50::11", P.check_ip, "node-a's address on eth0")
    node_b_ip: str = P.field("2001:db8:50::12", P.check_ip, "node-b's address on eth0")
    pod_cidr_a: str = P.field("fd00:10:244::/64", P.check_cidr, "pod CIDR of node-a (cni0)")
    pod_cidr_b: str = P.field("fd00:10:244:1::/64", P.check_cidr, "pod CIDR of node-b (cni0)")


class FlatRouted(TwoNodeCluster):
    name = "flat-routed"
    description = ("Pod to pod across two nodes by plain routing (host-gw/BGP, no NAT, no "
                   "tunnel): HTTP, DNS and ping, TTL-1 per node")
    Params = RoutedParams
    default_flows = 6

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.client = self.pod(self.node_a, "client", 5, 6)
        self.dns = self.pod(self.node_b, "dns", 3, 5)
        self.web = self.pod(self.node_b, "web", 7, 7)

    def interfaces(self) -> list[Interface]:
        a, b = self.node_a, self.node_b
        return [self.client.veth, a.cni0, a.eth0, b.eth0, b.cni0, self.web.veth, self.dns.veth]

    def conversation(self, index: int) -> tuple[Pod, list[Emission]]:
        """Flow ``index``: HTTP to the web pod, a DNS lookup, a ping, in turn."""
        p: RoutedParams = self.params
        rng = self.rng
        me = Endpoint(self.client.ip, rng.randint(*EPHEMERAL))
        kind = index % 3
        if kind == 0:
            web = Endpoint(self.web.ip, p.web_port)
            mss = 1460 if ":" not in me.ip else 1440  # MTU 1500 minus the IP and TCP headers
            request = http_request(f"web.default.svc.cluster.local:{p.web_port}", f"/item/{index}")
            response = http_response(varied_size(900, 700, index))
            return self.web, tcp_session(me, web, request, response, rng, mss=mss,
                                         rtt_ms=LAN_RTT_MS)
        if kind == 1:
            return self.dns, dns_exchange(me, Endpoint(self.dns.ip, 53),
                                          f"web{index}.default.svc.cluster.local.", self.web.ip,
                                          rng)
        return self.web, ping(Endpoint(self.client.ip, 0), Endpoint(self.web.ip, 0),
                              rng.randint(1, 0xFFFF), 2, rng)

    def flows(self) -> Iterator[FlowSpec]:
        for index in range(self.flow_count):
            server, emissions = self.conversation(index)
            yield FlowSpec(index + 1, self.start_ns(index), self.pod_to_pod(self.client, server),
                           self.pod_to_pod(server, self.client), emissions)


class FlatRoutedV6(FlatRouted):
    name = "flat-routed-v6"
    description = ("flat-routed over IPv6: pods in fd00:10:244::/56 routed between two nodes, "
                   "hop limit -1 per node, TCP, DNS (AAAA) and ICMPv6 echo")
    Params = RoutedV6Params
