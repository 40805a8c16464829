"""Flat routed pod networking (flannel host-gw, Calico BGP without a tunnel): no NAT, no overlay.

Two nodes on one L2 segment; each has a bridge ``cni0`` holding its pods' veths and a route to
the other node's pod CIDR via the other node's address. A packet from a pod on ``node-a`` to one
on ``node-b`` is seen on the source pod's veth (in), ``cni0`` (in), ``node-a``'s ``eth0`` (out,
TTL-1: node A routed it), ``node-b``'s ``eth0`` (in), ``cni0`` (out, TTL-2: node B routed it)
and the destination pod's veth (out). Addresses and ports never change along the way.

Host-side veth names are ``veth`` plus eight hex digits, as the CNI bridge plugin makes them;
pod MACs are ``0a:58`` plus the low four bytes of the pod address, as that plugin derives them.

``flat-routed --nodes N`` (:mod:`pktkit.craft.nodes`): N nodes on the segment, numbered from
node-a's address and pod CIDR, each with a client, a DNS and a web pod; each flow runs from the
client of one node to a pod of another, the pair drawn at random (seeded).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

from pktkit.capture.write import Interface
from pktkit.craft import params as P
from pktkit.craft.engine import EPOCH_NS, FlowSpec, Hop, Path, Scenario
from pktkit.craft.inventory import KubeCluster, KubeNode, KubePod, KubeService, KubeServicePort
from pktkit.craft.kernel import Route, Transform
from pktkit.craft.names import local_mac, pod_mac, veth_name
from pktkit.craft.nodes import NodePairs, node_mac, node_name, nth_address, nth_subnet
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
HOUR_NS = 3600 * 10**9
# the cluster's Service addresses when a scenario has no parameter for them (kubeadm's defaults)
SERVICE_ADDRESSES = {4: ("10.96.0.1", "10.96.0.10", "10.96.0.100"),
                     6: ("fd00:10:96::1", "fd00:10:96::a", "fd00:10:96::64")}
DNS_PORTS = (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP"))


def kube_dns(address: str) -> KubeService:
    return KubeService("kube-system", "kube-dns", address, (
        KubeServicePort("dns", 53, 53, "UDP"), KubeServicePort("dns-tcp", 53, 53, "TCP"),
        KubeServicePort("metrics", 9153, 9153, "TCP")), app="coredns")


def api_server(address: str, node: KubeNode) -> KubeService:
    """``default/kubernetes``: selectorless, its endpoint the control-plane node's :6443."""
    return KubeService("default", "kubernetes", address,
                       (KubeServicePort("https", 443, 6443),), app=None,
                       backends=(node.address,))


def system_pods(nodes: tuple[KubeNode, ...]) -> list[KubePod]:
    """kube-proxy on every node: host network, its address the node's."""
    return [KubePod("kube-system", "DaemonSet", "kube-proxy", n.name, n.address,
                    EPOCH_NS - 40 * 24 * HOUR_NS, (("healthz", 10256, "TCP"),),
                    host_network=True, replica=i) for i, n in enumerate(nodes)]


def cluster_listed_ns(scenario: Scenario) -> int:
    """When kubectl ran: a minute after the last flow could have started."""
    return EPOCH_NS + scenario.duration_ns + 60 * 10**9


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    mac: str
    eth0: Interface
    cni0: Interface
    cni0_mac: str
    pod_cidr: str


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
                           "9e:31:c4:5d:0a:01", p.pod_cidr_a)
        self.node_b = Node("node-b", p.node_b_ip, "52:54:00:6b:0a:12",
                           Interface("node-b", "eth0", 2), Interface("node-b", "cni0", 4),
                           "9e:31:c4:5d:0b:01", p.pod_cidr_b)
        self.nodes = (self.node_a, self.node_b)
        self.link_latency_us = p.link_latency_us

    def numbered_nodes(self, count: int) -> tuple[Node, ...]:
        """``count`` nodes numbered from node-a's address and pod CIDR (``--nodes``)."""
        p: ClusterParams = self.params
        nodes = []
        for i in range(count):
            name = node_name(i, count)
            nodes.append(Node(name, nth_address("node_a_ip", p.node_a_ip, i), node_mac(0x6B, i),
                              Interface(name, "eth0", 2), Interface(name, "cni0", 4),
                              local_mac(f"{name}/cni0"),
                              nth_subnet("pod_cidr_a", p.pod_cidr_a, i)))
        pods = {ipaddress.ip_network(n.pod_cidr) for n in nodes}
        inside = [n.ip for n in nodes if any(ipaddress.ip_address(n.ip) in c for c in pods)]
        if inside:
            raise UsageError(f"node_a_ip={p.node_a_ip}, pod_cidr_a={p.pod_cidr_a}: with "
                             f"{count} nodes node address {inside[0]} falls in a pod CIDR; "
                             "give node addresses and pod CIDRs further apart")
        return tuple(nodes)

    def pod(self, node: Node, name: str, host: int, ifindex: int, veth_of: str = "") -> Pod:
        """Pod ``name`` at host number ``host`` of ``node``'s pod CIDR (.1 is cni0); ``ifindex``
        of its host-side veth (a pair takes two indexes, the host's end the higher), named
        after the pod (``veth_of``: another name to derive it from)."""
        ip = str(ipaddress.ip_network(node.pod_cidr).network_address + host)
        return Pod(name, ip, node, Interface(node.name, veth_name(f"default/{veth_of or name}"),
                                             ifindex, bridge_port=True))  # a port of cni0

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

    # The cluster as kubectl shows it.

    def kube_nodes(self) -> tuple[KubeNode, ...]:
        """Every node, flannel host-gw annotations, their pod CIDRs."""
        return tuple(KubeNode(node.name, node.ip, node.pod_cidr, {
            "flannel.alpha.coreos.com/backend-data": "null",
            "flannel.alpha.coreos.com/backend-type": "host-gw",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": node.ip})
            for node in self.nodes)

    def kube_pod(self, pod: Pod, namespace: str, workload: str,
                 ports: tuple[tuple[str, int, str], ...] = (), **more: object) -> KubePod:
        """A Deployment's pod as kubectl lists it; up since two days before the capture."""
        return KubePod(namespace, "Deployment", workload, pod.node.name, pod.ip,
                       EPOCH_NS - 48 * HOUR_NS + 7 * 10**9 * len(workload), ports,
                       **more)  # type: ignore[arg-type]

    def kube_cluster(self, pods: list[KubePod], services: list[KubeService]) -> KubeCluster:
        """The cluster with kube-proxy and the API server's Service added."""
        nodes = self.kube_nodes()
        version = ipaddress.ip_address(self.node_a.ip).version
        return KubeCluster(nodes, (*system_pods(nodes), *pods),
                           (api_server(SERVICE_ADDRESSES[version][0], nodes[0]), *services),
                           cluster_listed_ns(self))

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
    many_nodes = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.client = self.pod(self.node_a, "client", 5, 6)
        self.dns = self.pod(self.node_b, "dns", 3, 6)
        self.web = self.pod(self.node_b, "web", 7, 8)
        self.pods: list[tuple[Pod, Pod, Pod]] = []  # N nodes: each node's client, dns, web
        if self.node_count is not None:
            self.nodes = self.numbered_nodes(self.node_count)
            self.pods = [tuple(self.pod(node, role, host, ifindex, f"{role}@{node.name}")
                               for role, host, ifindex in (("client", 5, 6), ("dns", 3, 8),
                                                           ("web", 7, 10)))
                         for node in self.nodes]  # type: ignore[misc]
            self.pairs = NodePairs(self.node_count, f"{self.name}:{self.seed}")

    def interfaces(self) -> list[Interface]:
        if self.pods:
            return [iface for node, pods in zip(self.nodes, self.pods, strict=True)
                    for iface in (node.eth0, node.cni0, *(pod.veth for pod in pods))]
        a, b = self.node_a, self.node_b
        return [self.client.veth, a.cni0, a.eth0, b.eth0, b.cni0, self.web.veth, self.dns.veth]

    def conversation(self, index: int, client: Pod, dns: Pod,
                     web_pod: Pod) -> tuple[Pod, list[Emission]]:
        """Flow ``index`` from ``client``: HTTP to ``web_pod``, a DNS lookup of ``dns``, a
        ping of ``web_pod``, in turn."""
        p: RoutedParams = self.params
        rng = self.rng
        me = Endpoint(client.ip, rng.randint(*EPHEMERAL))
        kind = index % 3
        if kind == 0:
            web = Endpoint(web_pod.ip, p.web_port)
            mss = 1460 if ":" not in me.ip else 1440  # MTU 1500 minus the IP and TCP headers
            request = http_request(f"web.default.svc.cluster.local:{p.web_port}", f"/item/{index}")
            response = http_response(varied_size(900, 700, index))
            return web_pod, tcp_session(me, web, request, response, rng, mss=mss,
                                        rtt_ms=LAN_RTT_MS)
        if kind == 1:
            return dns, dns_exchange(me, Endpoint(dns.ip, 53),
                                     f"web{index}.default.svc.cluster.local.", web_pod.ip, rng)
        return web_pod, ping(Endpoint(client.ip, 0), Endpoint(web_pod.ip, 0),
                             rng.randint(1, 0xFFFF), 2, rng)

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> KubeCluster:
        """client, web and coredns Deployments; the kube-dns and web Services exist, though
        the client here talks to the pods directly."""
        p: RoutedParams = self.params
        _, dns_ip, web_ip = SERVICE_ADDRESSES[ipaddress.ip_address(p.node_a_ip).version]
        placed = self.pods or [(self.client, self.dns, self.web)]
        return self.kube_cluster(
            [kube_pod for replica, (client, dns, web) in enumerate(placed) for kube_pod in (
                self.kube_pod(client, "default", "client", replica=replica),
                self.kube_pod(dns, "kube-system", "coredns", DNS_PORTS, replica=replica),
                self.kube_pod(web, "default", "web", (("http", p.web_port, "TCP"),),
                              replica=replica))],
            [kube_dns(dns_ip), KubeService("default", "web", web_ip,
                                           (KubeServicePort("http", 80, "http"),), app="web")])

    def flows(self) -> Iterator[FlowSpec]:
        for index in range(self.flow_count):
            if self.pods:
                src, dst = self.pairs.draw()
                client, (_, dns, web) = self.pods[src][0], self.pods[dst]
            else:
                client, dns, web = self.client, self.dns, self.web
            server, emissions = self.conversation(index, client, dns, web)
            yield FlowSpec(index + 1, self.start_ns(index), self.pod_to_pod(client, server),
                           self.pod_to_pod(server, client), emissions)


class FlatRoutedV6(FlatRouted):
    name = "flat-routed-v6"
    description = ("flat-routed over IPv6: pods in fd00:10:244::/56 routed between two nodes, "
                   "hop limit -1 per node, TCP, DNS (AAAA) and ICMPv6 echo")
    Params = RoutedV6Params
