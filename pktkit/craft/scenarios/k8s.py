"""Kubernetes Services through kube-proxy (iptables mode) on a flat routed two-node cluster.

The pod network is :mod:`routed`'s (host-gw: pod CIDRs routed between the nodes, no tunnel).
kube-proxy's rules live on ``node-a``, where the traffic enters; ``node-b`` only routes.

``k8s-nodeport``: an external client connects to ``node-a:30080``. In PREROUTING kube-proxy
DNATs to a backend pod's ``targetPort`` on ``node-b``; since externalTrafficPolicy is Cluster it
also masquerades (POSTROUTING, ``--random-fully``: a random source port) to node-a's address.
One conntrack entry, kind ``snat+dnat``. ``node-a``'s ``eth0`` sees each request twice: in,
untranslated, then out, translated, TTL-1, with new MACs; ``node-b`` shows it on ``eth0``,
``cni0`` and the pod's veth. Replies are translated back on ``node-a`` and leave ``eth0`` again.

``k8s-clusterip``: a pod on ``node-a`` connects to a Service VIP (and to kube-dns's VIP). The
DNAT happens in PREROUTING, which br_netfilter runs as the frame enters the bridge: the pod's
veth shows the VIP, ``cni0`` and everything after show the backend. Kind ``dnat``; replies get
the VIP back in POSTROUTING toward ``cni0``. During the capture the web pod is evicted and its
replacement gets the same address (when the web flows leave a quiet whole second between
them): ``kubectl.json`` lists both, the evicted one still showing its old ``podIP``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from pktkit.capture.write import Interface
from pktkit.craft import params as P
from pktkit.craft.engine import FlowSpec, Hop, Path
from pktkit.craft.inventory import KubeCluster, KubePod, KubeService, KubeServicePort
from pktkit.craft.kernel import Nat, NatReply, Route, Transit
from pktkit.craft.nat import Conntrack
from pktkit.craft.scenarios.routed import (
    DNS_PORTS,
    EPHEMERAL,
    LAN_RTT_MS,
    ClusterParams,
    Pod,
    TwoNodeCluster,
    kube_dns,
)
from pktkit.craft.traffic import (
    Emission,
    Endpoint,
    dns_exchange,
    http_request,
    http_response,
    tcp_session,
    varied_size,
)

SERVICE_HOST = "web.default.svc.cluster.local"


@dataclass(frozen=True)
class ServiceParams(ClusterParams):
    service_ip: str = P.field("10.96.0.100", P.check_ip, "ClusterIP of the web Service")
    service_port: int = P.field(8080, P.check_port, "Service port (port:)")
    target_port: int = P.field(80, P.check_port, "backend pod port (targetPort:)")


@dataclass(frozen=True)
class NodePortParams(ServiceParams):
    node_port: int = P.field(30080, P.check_port, "nodePort on every node")
    client_ip: str = P.field("198.51.100.23", P.check_ip, "external client")
    wan_hops: int = P.field(8, P.check_positive, "routers between the client and node-a")
    wan_latency_us: int = P.field(3000, P.check_positive, "one-way delay client <-> node-a, µs")


@dataclass(frozen=True)
class ClusterIpParams(ServiceParams):
    dns_service_ip: str = P.field("10.96.0.10", P.check_ip, "ClusterIP of kube-dns")


class _KubeCluster(TwoNodeCluster):
    """The cluster's pods (a client on node-a, web and coredns backends on node-b) and
    node-a's conntrack table, where kube-proxy's NAT happens."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.client = self.pod(self.node_a, "client", 5, 6)
        self.coredns = self.pod(self.node_b, "coredns", 3, 6)
        self.web = self.pod(self.node_b, "web", 7, 8)
        self.ct: Conntrack = self.conntrack()
        self.backend_of: dict[int, Pod] = {}  # flow id → the pod that serves it

    def conntracks(self) -> list[Conntrack]:
        return [self.ct]

    def kube_pods(self) -> list[KubePod]:
        p: ServiceParams = self.params
        return [self.kube_pod(self.client, "default", "client"),
                self.kube_pod(self.coredns, "kube-system", "coredns", DNS_PORTS),
                self.kube_pod(self.web, "default", "web", (("http", p.target_port, "TCP"),))]

    def web_service(self, **more: object) -> KubeService:
        """``default/web``: its targetPort by name (``http``), as Deployments often do."""
        p: ServiceParams = self.params
        return KubeService("default", "web", p.service_ip, (KubeServicePort(
            "http", p.service_port, "http", **more),), app="web")  # type: ignore[arg-type]


class K8sNodePort(_KubeCluster):
    name = "k8s-nodeport"
    description = ("An external client to a NodePort Service: node-a DNATs to a pod on node-b "
                   "and masquerades (externalTrafficPolicy Cluster), routed, no tunnel")
    Params = NodePortParams
    address_params = ("service_ip", "client_ip")
    default_flows = 4

    gateway_mac = "52:54:00:6b:0a:01"  # the LAN's router, next hop toward the client
    remote_mac = "00:1c:73:00:00:99"  # the client's own NIC, far away

    def interfaces(self) -> list[Interface]:
        return [self.node_a.eth0, self.node_b.eth0, self.node_b.cni0, self.web.veth]

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> KubeCluster:
        p: NodePortParams = self.params
        return self.kube_cluster(self.kube_pods(), [
            kube_dns("10.96.0.10" if ":" not in p.service_ip else "fd00:10:96::a"),
            replace(self.web_service(node_port=p.node_port), type="NodePort")])

    def paths(self) -> tuple[Path, Path]:
        p: NodePortParams = self.params
        a, b = self.node_a, self.node_b
        kube_proxy = Nat(self.ct, snat_to=a.ip, dnat_to=(self.web.ip, p.target_port),
                         random_fully=True)
        forward = Path(self.remote_mac, "00:1c:73:00:00:01", (
            Hop(a.eth0, "in", p.wan_latency_us, (Transit(p.wan_hops - 1),
                                                 Route(self.gateway_mac, a.mac)), wire=True),
            Hop(a.eth0, "out", 15, (kube_proxy, Route(a.mac, b.mac))),
            *self.deliver(self.web),
        ), final_latency_us=5)
        reverse = Path(self.web.mac, b.cni0_mac, (
            *self.egress(self.web, a.mac),
            self.arrive(a),
            Hop(a.eth0, "out", 12, (NatReply(), Route(a.mac, self.gateway_mac))),
        ), final_latency_us=p.wan_latency_us, final_wire=True)
        return forward, reverse

    def flows(self) -> Iterator[FlowSpec]:
        p: NodePortParams = self.params
        forward, reverse = self.paths()
        rtt_ms = 2 * p.wan_latency_us / 1000
        for index in range(self.flow_count):
            client = Endpoint(p.client_ip, self.rng.randint(*EPHEMERAL))
            service = Endpoint(self.node_a.ip, p.node_port)
            request = http_request(f"{self.node_a.ip}:{p.node_port}", f"/api/{index}")
            response = http_response(varied_size(1500, 600, index))
            emissions = tcp_session(client, service, request, response, self.rng, mss=1460,
                                    rtt_ms=rtt_ms)
            yield FlowSpec(index + 1, self.start_ns(index), forward, reverse, emissions)


class K8sClusterIp(_KubeCluster):
    name = "k8s-clusterip"
    description = ("A pod on node-a to ClusterIP Services (web and kube-dns): DNAT by "
                   "kube-proxy to backends on node-b, routed, no tunnel")
    Params = ClusterIpParams
    address_params = ("service_ip", "dns_service_ip")
    default_flows = 4

    def interfaces(self) -> list[Interface]:
        a, b = self.node_a, self.node_b
        return [self.client.veth, a.cni0, a.eth0, b.eth0, b.cni0, self.web.veth,
                self.coredns.veth]

    def conversation(self, index: int) -> tuple[Pod, int, list[Emission]]:
        """Flow ``index``: the backend pod, its port, and what the client says to the VIP."""
        p: ClusterIpParams = self.params
        me = Endpoint(self.client.ip, self.rng.randint(*EPHEMERAL))
        if index % 2 == 0:
            request = http_request(f"{SERVICE_HOST}:{p.service_port}", f"/item/{index}")
            return self.web, p.target_port, tcp_session(
                me, Endpoint(p.service_ip, p.service_port), request,
                http_response(varied_size(1100, 800, index)), self.rng, mss=1460, rtt_ms=LAN_RTT_MS)
        return self.coredns, 53, dns_exchange(
            me, Endpoint(p.dns_service_ip, 53), f"{SERVICE_HOST}.", p.service_ip, self.rng)

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> KubeCluster:
        """The cluster, with the web pod evicted and replaced at the first whole second
        between two web flows (the replacement gets the same address)."""
        p: ClusterIpParams = self.params
        pods = self.kube_pods()
        web = pods[-1]
        swap = _quiet_second(sorted(spans[flow] for flow, backend in self.backend_of.items()
                                    if backend is self.web and flow in spans))
        if swap is not None:
            evicted_ns, ready_ns = swap
            pods[-1:] = [replace(web, finished_ns=evicted_ns),
                         replace(web, ready_ns=ready_ns, replica=1)]
        return self.kube_cluster(pods, [kube_dns(p.dns_service_ip), self.web_service()])

    def flows(self) -> Iterator[FlowSpec]:
        a = self.node_a
        for index in range(self.flow_count):
            backend, port, emissions = self.conversation(index)
            self.backend_of[index + 1] = backend
            kube_proxy = Nat(self.ct, dnat_to=(backend.ip, port))
            forward = Path(self.client.mac, a.cni0_mac, (
                *self.egress(self.client, backend.node.mac, at_bridge=(kube_proxy,)),
                *self.deliver(backend),
            ), final_latency_us=5)
            reverse = Path(backend.mac, backend.node.cni0_mac, (
                *self.egress(backend, a.mac),
                *self.deliver(self.client, before_route=(NatReply(),)),
            ), final_latency_us=5)
            yield FlowSpec(index + 1, self.start_ns(index), forward, reverse, emissions)


def _quiet_second(spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """(eviction, replacement ready) for a pod whose flows have these spans: evicted 20 ms
    after a flow ends, the replacement ready at the next whole second, before the next flow.
    The API's times are whole seconds: the eviction's second must be over before the
    replacement's starts, with no flow in between. None: the flows leave no such gap."""
    second = 10**9
    for (_, end), (start, _) in itertools.pairwise(spans):
        evicted = end + 20_000_000
        ready = (evicted // second + 1) * second
        if ready <= start:
            return evicted, ready
    return None
