"""Overlay networks between two nodes: VXLAN (Flannel style, two tenants; IPv4 or IPv6
underlay), Geneve, NVGRE and Calico-style IP-in-IP.

Topology: ``node-a`` and ``node-b`` share one underlay segment on their ``eth0``. A tenant's
subnet is stretched over both nodes: its pods hang on a bridge (``cni0``) that holds the
tenant's gateway address (.1 of the subnet, on both nodes), and each node routes the remote
pods' addresses into the tenant's tunnel device. A pod-to-pod packet is seen on the sending node
at the pod's veth (in), the bridge (in), the tunnel device (out: the inner frame between the two
tunnel devices' MACs, TTL already decremented by the node's routing) and ``eth0`` (out,
encapsulated); on the receiving node at ``eth0`` (in), the tunnel device (in, decapsulated), the
bridge (out, TTL decremented again) and the pod's veth (out).

Calico (``ipip``) has no bridge: each pod's host-side veth ``cali…`` answers for the pod's
gateway 169.254.1.1 with ee:ee:ee:ee:ee:ee, and ``tunl0`` carries bare IP packets.

Pods use the tunnel device's MTU (the underlay MTU minus the tunnel overhead), so full TCP
segments fill the underlay exactly (outer frame 1514 on a 1500 underlay). Each tenant also has
a pod set up with the underlay's MTU instead: its datagrams (DF clear) exceed the tunnel MTU and
are fragmented by the sending node on the way into the tunnel device; each fragment is then
encapsulated on its own.

Flows cycle through HTTP on port 80, HTTP on 8080, DNS, ping and the oversized UDP datagrams
(syslog on 514); with two tenants they alternate between the tenants.

``geneve-overlay`` (OVN-Kubernetes) and ``ipip`` (Calico) are Kubernetes clusters: their pods
(``client``, ``web`` and ``legacy-client``, the pod with the underlay's MTU) and nodes are
written to ``kubectl.json``. VXLAN's two tenants share pod addresses, which one cluster cannot,
and NVGRE is no Kubernetes CNI's: those have no metadata.

With ``--nodes N`` (:mod:`pktkit.craft.nodes`) the underlay segment holds N nodes, every node
has each tenant's three pods (client, server, misconfigured client), and each flow runs from a
pod on one node to the server pod on another, the pair drawn at random (seeded); each pair of
nodes has its own VTEP pair and outer IP ID counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import struct
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pktkit.capture.write import Interface
from pktkit.craft import params as P
from pktkit.craft.engine import EPOCH_NS, FlowSpec, Hop, Path, Scenario
from pktkit.craft.flight import ETH_HEADER
from pktkit.craft.inventory import KubeCluster, KubeNode, KubePod
from pktkit.craft.kernel import (
    LINUX_EPHEMERAL,
    Decap,
    Fragment,
    GeneveEncap,
    IpipEncap,
    NvgreEncap,
    Route,
    Transform,
    VxlanEncap,
)
from pktkit.craft.names import local_mac
from pktkit.craft.nodes import NodePairs, node_mac, node_name, nth_address, nth_subnet
from pktkit.craft.scenarios.routed import HOUR_NS, cluster_listed_ns, system_pods
from pktkit.craft.traffic import (
    Emission,
    Endpoint,
    dns_exchange,
    http_request,
    http_response,
    ping,
    tcp_session,
    udp_datagrams,
    varied_size,
)
from pktkit.errors import UsageError

KINDS = ("http", "http-alt", "dns", "ping", "oversized")  # the flow cycle
POD_VETHS = ("veth-pod1", "veth-pod2", "veth-pod3")  # client (node-a), server, 1500-MTU client
CALICO_GATEWAY_MAC = "ee:ee:ee:ee:ee:ee"  # every cali* veth's MAC; it proxy-ARPs 169.254.1.1
UDP_VXLAN_HEADERS = 8 + 8
GRE_KEYED_HEADER = 8
# OVN's Geneve option (class 0x0102 "Open Virtual Networking", type 0x80, 4 bytes: the logical
# ingress and egress port keys), what OVS puts on genev_sys_6081's packets.
OVN_OPTION = (0x0102, 0x80, struct.pack("!HH", 1, 2))
LAN_RTT_MS = 0.3  # pod-to-pod round trip across the overlay (TCP timestamp clock)


# -- parameter checks ---------------------------------------------------------------------------


def _check_family(version: int) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        address = P.check_ip(name, value)
        if ipaddress.ip_address(address).version != version:
            raise UsageError(f"{name}={value!r}: this scenario's underlay is IPv{version}; "
                             f"give an IPv{version} address")
        return address
    return check


check_ipv4, check_ipv6 = _check_family(4), _check_family(6)


def check_mtu(name: str, value: Any) -> int:
    return P.check_range(name, value, 1280, 9216, "link MTU")


def check_flow_id(name: str, value: Any) -> int:
    return P.check_range(name, value, 0, 0xFF, "FlowID (8 bits)")


def check_pod_cidr(name: str, value: Any) -> str:
    """An IPv4 subnet with room for the gateway and three pods (.1 to .4): /29 or wider."""
    cidr = P.check_cidr(name, value)
    network = ipaddress.ip_network(cidr)
    if network.version != 4 or network.prefixlen > 29:
        raise UsageError(f"{name}={value!r}: give an IPv4 pod subnet of /29 or wider "
                         "(the gateway and three pods need .1 to .4)")
    return cidr


@dataclass(frozen=True)
class UnderlayParams:
    node_a_ip: str = P.field("192.168.10.1", check_ipv4, "node-a's underlay address (eth0)")
    node_b_ip: str = P.field("192.168.10.2", check_ipv4, "node-b's underlay address (eth0)")
    underlay_mtu: int = P.field(1500, check_mtu,
                                "eth0 MTU; pods get it minus the tunnel overhead")
    underlay_latency_us: int = P.field(80, P.check_positive,
                                       "one-way delay eth0 <-> eth0 between the nodes, µs")


@dataclass(frozen=True)
class VxlanParams(UnderlayParams):
    tenant_a_cidr: str = P.field("10.0.0.0/24", check_pod_cidr, "tenant A's pod subnet")
    tenant_b_cidr: str = P.field("10.0.0.0/24", check_pod_cidr,
                                 "tenant B's pod subnet (overlaps A's by default)")
    vni_a: int = P.field(1, P.check_vni, "tenant A's VNI (flannel.1)")
    vni_b: int = P.field(2, P.check_vni, "tenant B's VNI (vxlan-b)")
    port_a: int = P.field(8472, P.check_port, "tenant A's VXLAN UDP port (Linux/Flannel)")
    port_b: int = P.field(4789, P.check_port, "tenant B's VXLAN UDP port (IANA)")


@dataclass(frozen=True)
class VxlanV6Params(VxlanParams):
    node_a_ip: str = P.field("fd00:10::1", check_ipv6, "node-a's underlay address (eth0)")
    node_b_ip: str = P.field("fd00:10::2", check_ipv6, "node-b's underlay address (eth0)")


@dataclass(frozen=True)
class GeneveParams(UnderlayParams):
    pod_cidr: str = P.field("10.0.0.0/24", check_pod_cidr, "the pods' subnet")
    vni: int = P.field(100, P.check_vni, "Geneve VNI")
    geneve_port: int = P.field(6081, P.check_port, "Geneve UDP port (IANA 6081)")


@dataclass(frozen=True)
class NvgreParams(UnderlayParams):
    pod_cidr: str = P.field("10.0.0.0/24", check_pod_cidr, "the pods' subnet")
    vsid: int = P.field(5001, P.check_vni, "NVGRE virtual subnet ID (24 bits)")
    flow_id: int = P.field(0x2A, check_flow_id, "NVGRE FlowID (low 8 bits of the GRE key)")


@dataclass(frozen=True)
class IpipParams(UnderlayParams):
    block_a: str = P.field("10.48.29.64/26", check_pod_cidr,
                           "node-a's Calico IPAM block (tunl0 takes its first address)")
    block_b: str = P.field("10.48.115.128/26", check_pod_cidr, "node-b's Calico IPAM block")


# -- topology -----------------------------------------------------------------------------------


def calico_veth_name(workload: str) -> str:
    """Calico's host-side veth: ``cali`` and 11 hex digits of the SHA-1 of the workload."""
    return "cali" + hashlib.sha1(workload.encode()).hexdigest()[:11]


@dataclass(frozen=True)
class Node:
    name: str
    ip: str  # underlay address on eth0
    mac: str
    eth0: Interface


@dataclass(frozen=True)
class Pod:
    """One pod and the host devices between it and the tunnel on its node."""

    ip: str
    mac: str
    mtu: int
    node: Node
    veth: Interface
    gateway_mac: str  # the pod's next hop: its bridge, or Calico's ee:ee:ee:ee:ee:ee veth
    bridge: Interface | None  # None: the veth is routed directly (Calico)
    tunnel: Interface
    tunnel_mac: str | None  # None: a raw-IP tunnel device (tunl0)


@dataclass(frozen=True)
class Tenant:
    """A tenant's pods by node (two nodes: the clients on node-a, the server on node-b; N
    nodes: one of each on every node) and its tunnel's encapsulation by (from, to) node."""

    name: str
    clients: dict[str, Pod]
    servers: dict[str, Pod]
    misconfigured: dict[str, Pod]  # clients with the underlay's MTU
    encaps: dict[tuple[str, str], Transform]


EncapFactory = Callable[[Node, Node, int], Transform]  # (from, to, IP ID seed) -> VTEP


class _Overlay(Scenario):
    """Two nodes, one or more tenants, and the paths between a tenant's pods across the tunnel.

    Subclasses give the tunnel's header bytes (between the outer IP header and the inner
    frame) and build their tenants with :meth:`bridged_tenant` or by hand."""

    Params: ClassVar[type] = UnderlayParams
    many_nodes = True
    default_flows = 5
    default_duration_s = Scenario.MULTI_NODE_DURATION_S
    tunnel_header_bytes: ClassVar[int]
    l2_tunnel: ClassVar[bool] = True  # the tunnel carries an Ethernet frame (not IPIP)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p: UnderlayParams = self.params
        if p.node_a_ip == p.node_b_ip:
            raise UsageError(f"node_a_ip and node_b_ip are both {p.node_a_ip}; "
                             "give the two nodes different addresses")
        self._devices: dict[str, dict[str, Interface]] = {}
        self._next_ifindex: dict[str, int] = {}
        self._idents: dict[tuple[str, str, int], int] = {}  # the nodes' outer IP ID counters
        if self.node_count is None:
            named = (("node-a", p.node_a_ip, "52:54:00:0a:00:01"),
                     ("node-b", p.node_b_ip, "52:54:00:0a:00:02"))
        else:
            named = tuple((node_name(i, self.node_count),
                           nth_address("node_a_ip", p.node_a_ip, i), node_mac(0x0A, i))
                          for i in range(self.node_count))
        self.nodes = tuple(Node(name, ip, mac, self.device(name, "eth0"))
                           for name, ip, mac in named)
        self.pairs = NodePairs(len(self.nodes), f"{self.name}:{self.seed}")
        self.tenants = self.build_tenants()

    # Devices and tenants.

    def device(self, node: str, name: str, *, link: Literal["ether", "raw"] = "ether",
               veth: bool = False, bridge_port: bool = False) -> Interface:
        """The node's device ``name``, created on first use with the next ifindex. A veth pair
        takes two, and the host's end the higher: ``ip link add A type veth peer name B``
        registers the peer B first (its end is then moved into the pod's namespace)."""
        devices = self._devices.setdefault(node, {})
        if name not in devices:
            ifindex = self._next_ifindex.get(node, 2)  # 1 is lo
            self._next_ifindex[node] = ifindex + (2 if veth else 1)
            devices[name] = Interface(node, name, ifindex + (1 if veth else 0), link,
                                      bridge_port)
        return devices[name]

    @property
    def overhead(self) -> int:
        """Bytes the tunnel adds to the inner IP packet: the tunnel device's MTU is the
        underlay's minus this."""
        outer_ip = 40 if ipaddress.ip_address(self.nodes[0].ip).version == 6 else 20
        return outer_ip + self.tunnel_header_bytes + (ETH_HEADER if self.l2_tunnel else 0)

    @property
    def pod_mtu(self) -> int:
        return self.params.underlay_mtu - self.overhead

    def encaps(self, tenant: str, factory: EncapFactory) -> dict[tuple[str, str], Transform]:
        """One VTEP per (sending, receiving) node; the outer IP IDs of each pair of nodes come
        from the sender's counter for that peer."""
        seed = random.Random(f"{self.name}:{self.seed}:{tenant}").getrandbits(32)
        return {(src.name, dst.name): factory(src, dst, seed)
                for src in self.nodes for dst in self.nodes if src is not dst}

    def tenant_pods(self, name: str, pod: Callable[[Node, int, int], Pod], spacing: int,
                    encaps: dict[tuple[str, str], Transform]) -> Tenant:
        """The tenant's pods, each made by ``pod(node, role, number)`` (role 0 client, 1
        server, 2 misconfigured; ``number``: the node's index × ``spacing``, 0 for two
        nodes): two nodes, the clients on node-a and the server on node-b; N nodes, all three
        on every node, in node order."""
        if self.node_count is None:
            a, b = self.nodes
            client, server, wide = pod(a, 0, 0), pod(b, 1, 0), pod(a, 2, 0)
            return Tenant(name, {a.name: client}, {b.name: server}, {a.name: wide}, encaps)
        made = [(node, [pod(node, role, i * spacing) for role in range(3)])
                for i, node in enumerate(self.nodes)]
        return Tenant(name, *({node.name: pods[role] for node, pods in made}
                              for role in range(3)), encaps)

    def bridged_tenant(self, name: str, cidr: str, bridge: str, tunnel: str,
                       veths: tuple[str, str, str], factory: EncapFactory) -> Tenant:
        """A tenant whose pods sit on a bridge holding the gateway .1 on each node, routed into
        the tunnel device ``tunnel``: two nodes, .2 and .4 on node-a, .3 on node-b; N nodes,
        node i's client, server and misconfigured pod at .(2+3i), .(3+3i), .(4+3i)."""
        net = ipaddress.ip_network(cidr)
        if self.node_count is not None and net.num_addresses - 2 < 1 + 3 * self.node_count:
            raise UsageError(f"pod subnet {cidr} of {name}: no room for the gateway and "
                             f"{3 * self.node_count} pods of {self.node_count} nodes; give a "
                             "wider subnet (--set) or fewer --nodes")

        def pod(node: Node, host: int, veth: str, mtu: int) -> Pod:
            ip = str(net.network_address + host)
            br, tun = self.device(node.name, bridge), self.device(node.name, tunnel)
            return Pod(ip, local_mac(f"{node.name}/{name}/pod/{ip}"), mtu, node,
                       self.device(node.name, veth, veth=True, bridge_port=True),
                       local_mac(br.label), br, tun,
                       local_mac(tun.label))

        hosts = (2, 3, 4)
        mtus = (self.pod_mtu, self.pod_mtu, self.params.underlay_mtu)
        return self.tenant_pods(
            name, lambda node, role, number: pod(node, hosts[role] + number, veths[role],
                                                 mtus[role]),
            3, self.encaps(name, factory))

    @abstractmethod
    def build_tenants(self) -> list[Tenant]:
        """The tenants, their pods and VTEPs (devices are created as they are named)."""

    def underlay(self, src: Node, dst: Node, seed: int) -> dict[str, Any]:
        """The outer Ethernet and IP of a VTEP on ``src`` sending to ``dst`` (one segment)."""
        return {"src_mac": src.mac, "dst_mac": dst.mac, "src_ip": src.ip, "dst_ip": dst.ip,
                "ttl": 64, "rng_seed": seed, "idents": self._idents}

    def interfaces(self) -> list[Interface]:
        return [iface for node in self.nodes for iface in self._devices[node.name].values()]

    # Paths and conversations.

    def leg(self, tenant: Tenant, src: Pod, dst: Pod) -> Path:
        """``src`` to ``dst``: routed into the tunnel (fragmented to its MTU), encapsulated,
        across the underlay, decapsulated and routed to the destination pod."""
        latency = self.params.underlay_latency_us
        hops = [Hop(src.veth, "in", 4)]
        if src.bridge is not None:
            hops.append(Hop(src.bridge, "in", 3))
        hops += [
            Hop(src.tunnel, "out", 12, (Route(src.tunnel_mac, dst.tunnel_mac),
                                        Fragment(self.pod_mtu))),
            Hop(src.node.eth0, "out", 6, (tenant.encaps[src.node.name, dst.node.name],)),
            Hop(dst.node.eth0, "in", latency, wire=True),
            Hop(dst.tunnel, "in", 10, (Decap(),)),
        ]
        deliver = Route(dst.gateway_mac, dst.mac)
        if dst.bridge is not None:
            hops += [Hop(dst.bridge, "out", 8, (deliver,)), Hop(dst.veth, "out", 3)]
        else:
            hops.append(Hop(dst.veth, "out", 8, (deliver,)))
        return Path(src.mac, src.gateway_mac, tuple(hops), final_latency_us=5)

    def ends(self) -> tuple[str, str]:
        """The next flow's (sending, answering) node: node-a and node-b, or a random pair."""
        if self.node_count is None:
            return self.nodes[0].name, self.nodes[1].name
        src, dst = self.pairs.draw()
        return self.nodes[src].name, self.nodes[dst].name

    def conversation(self, index: int, tenant: Tenant, src: str,
                     dst: str) -> tuple[Pod, Pod, list[Emission]]:
        """Flow ``index``'s sender (on node ``src``), the tenant's server pod on node ``dst``,
        and what the sender says to it."""
        rng, server = self.rng, tenant.servers[dst]
        client = tenant.clients[src]
        kind = KINDS[index % len(KINDS)]
        ephemeral = rng.randint(*LINUX_EPHEMERAL)
        if kind in ("http", "http-alt"):
            sender = client
            port = 80 if kind == "http" else 8080
            host = server.ip if port == 80 else f"{server.ip}:{port}"
            return sender, server, tcp_session(
                Endpoint(sender.ip, ephemeral), Endpoint(server.ip, port),
                http_request(host, f"/{tenant.name}/{index}"),
                http_response(varied_size(3000, 40, index, cycle=64)),
                rng, mss=min(sender.mtu, server.mtu) - 40, rtt_ms=LAN_RTT_MS)
        if kind == "dns":
            return client, server, dns_exchange(
                Endpoint(client.ip, ephemeral), Endpoint(server.ip, 53),
                f"web-{index}.{tenant.name}.svc.cluster.local.", server.ip, rng)
        if kind == "ping":
            return client, server, ping(Endpoint(client.ip, 0), Endpoint(server.ip, 0),
                                        rng.randint(1, 0xFFFF), 2, rng)
        sender = tenant.misconfigured[src]  # IP packets of the full underlay MTU, DF clear
        return sender, server, udp_datagrams(Endpoint(sender.ip, ephemeral),
                                             Endpoint(server.ip, 514), [sender.mtu - 28] * 3,
                                             rng)

    # The cluster as kubectl shows it (Kubernetes CNIs only).

    kube_cni: ClassVar[str | None] = None  # "ovn", "calico": written to kubectl.json

    def node_annotations(self, node: Node) -> dict[str, str]:
        """What the CNI writes on its Node objects."""
        return {}

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> KubeCluster | None:
        if self.kube_cni is None:
            return None
        nodes = tuple(KubeNode(n.name, n.ip, None, self.node_annotations(n))
                      for n in self.nodes)
        tenant = self.tenants[0]
        roles = ((tenant.clients, "client", ()),
                 (tenant.servers, "web", (("http", 80, "TCP"), ("http-alt", 8080, "TCP"),
                                          ("dns", 53, "UDP"), ("syslog", 514, "UDP"))),
                 (tenant.misconfigured, "legacy-client", ()))
        listed = [(pod, workload, ports, replica) for pods, workload, ports in roles
                  for replica, pod in enumerate(pods.values())]
        pods = [KubePod("default", "Deployment", workload, pod.node.name, pod.ip,
                        EPOCH_NS - 30 * HOUR_NS + 11 * 10**9 * index, ports, replica=replica)
                for index, (pod, workload, ports, replica) in enumerate(listed)]
        return KubeCluster(nodes, (*system_pods(nodes), *pods), (), cluster_listed_ns(self))

    def flows(self) -> Iterator[FlowSpec]:
        for index in range(self.flow_count):
            tenant = self.tenants[index % len(self.tenants)]
            sender, server, emissions = self.conversation(index, tenant, *self.ends())
            yield FlowSpec(index + 1, self.start_ns(index), self.leg(tenant, sender, server),
                           self.leg(tenant, server, sender), emissions)


# -- the scenarios ------------------------------------------------------------------------------


class VxlanOverlay(_Overlay):
    name = "vxlan-overlay"
    description = ("Flannel-style VXLAN between two nodes: two tenants with overlapping pod IPs "
                   "on VNIs 1 (UDP 8472) and 2 (UDP 4789), MTU 1450, one oversized flow")
    default_flows = 10  # two tenants, every kind of flow on each
    Params = VxlanParams
    tunnel_header_bytes = UDP_VXLAN_HEADERS

    def build_tenants(self) -> list[Tenant]:
        p: VxlanParams = self.params

        def vxlan(vni: int, port: int) -> EncapFactory:
            return lambda src, dst, seed: VxlanEncap(**self.underlay(src, dst, seed), vni=vni,
                                                     dport=port)

        return [
            self.bridged_tenant("tenant-a", p.tenant_a_cidr, "cni0", "flannel.1",
                                POD_VETHS, vxlan(p.vni_a, p.port_a)),
            self.bridged_tenant("tenant-b", p.tenant_b_cidr, "cni-b", "vxlan-b",
                                ("veth-b1", "veth-b2", "veth-b3"), vxlan(p.vni_b, p.port_b)),
        ]


class VxlanOverlayV6(VxlanOverlay):
    name = "vxlan-overlay-v6"
    description = ("vxlan-overlay over an IPv6 underlay (fd00:10::/64): 70 bytes of overhead, "
                   "pod MTU 1430, outer UDP checksums computed")
    Params = VxlanV6Params


class _SingleTenant(_Overlay):
    """One tenant: pods on ``cni0`` routed into the tunnel device ``tunnel_device``."""

    tunnel_device: ClassVar[str]

    @abstractmethod
    def vtep(self, src: Node, dst: Node, seed: int) -> Transform:
        """The encapsulation of the tunnel from ``src`` to ``dst``."""

    def build_tenants(self) -> list[Tenant]:
        return [self.bridged_tenant("default", self.params.pod_cidr, "cni0", self.tunnel_device,
                                    POD_VETHS, self.vtep)]


class GeneveOverlay(_SingleTenant):
    name = "geneve-overlay"
    description = ("Geneve (UDP 6081) between two nodes with OVN's option TLV, pod MTU 1442, "
                   "one oversized flow")
    Params = GeneveParams
    tunnel_header_bytes = 8 + 8 + 4 + len(OVN_OPTION[2])
    tunnel_device = "genev_sys_6081"  # OVS's Geneve device (collect-metadata mode)
    kube_cni = "ovn"

    def node_annotations(self, node: Node) -> dict[str, str]:
        return {"k8s.ovn.org/node-primary-ifaddr": json.dumps({"ipv4": f"{node.ip}/24"})}

    def vtep(self, src: Node, dst: Node, seed: int) -> Transform:
        p: GeneveParams = self.params
        return GeneveEncap(**self.underlay(src, dst, seed), vni=p.vni, dport=p.geneve_port,
                           options=(OVN_OPTION,))


class Nvgre(_SingleTenant):
    name = "nvgre"
    description = ("NVGRE (GRE 0x6558, key VSID<<8|FlowID) on a gretap device between two "
                   "nodes, pod MTU 1458, one oversized flow")
    Params = NvgreParams
    tunnel_header_bytes = GRE_KEYED_HEADER
    tunnel_device = "nvgre0"

    def vtep(self, src: Node, dst: Node, seed: int) -> Transform:
        p: NvgreParams = self.params
        # iproute2's gretap turns path-MTU discovery on: the outer header carries DF.
        return NvgreEncap(**self.underlay(src, dst, seed), vsid=p.vsid, flow_id=p.flow_id,
                          df=True)


class Ipip(_Overlay):
    name = "ipip"
    description = ("Calico-style IP-in-IP: cali* veths (gateway 169.254.1.1), raw-IP tunl0, "
                   "protocol 4 on eth0, pod MTU 1480, one oversized flow")
    Params = IpipParams
    tunnel_header_bytes = 0
    l2_tunnel = False
    kube_cni = "calico"

    def node_annotations(self, node: Node) -> dict[str, str]:
        """Calico's node address and the tunl0 address (its IPAM block's first)."""
        block = self.block(self.nodes.index(node))
        return {"projectcalico.org/IPv4Address": f"{node.ip}/24",
                "projectcalico.org/IPv4IPIPTunnelAddr": str(
                    ipaddress.ip_network(block).network_address)}

    def block(self, index: int) -> str:
        """Node ``index``'s IPAM block: block_a and block_b, or the ``index``-th block of
        block_a's size from block_a (N nodes)."""
        p: IpipParams = self.params
        if self.node_count is None:
            return (p.block_a, p.block_b)[index]
        return nth_subnet("block_a", p.block_a, index)

    def build_tenants(self) -> list[Tenant]:
        p: IpipParams = self.params
        # two nodes: the client (.1) and the misconfigured pod (.2) in node-a's block, the
        # server (.1) in node-b's; N nodes: .1, .3 and .2 of every node's block
        hosts = (1, 1, 2) if self.node_count is None else (1, 3, 2)
        mtus = (self.pod_mtu, self.pod_mtu, p.underlay_mtu)

        def pod(node: Node, role: int, _: int) -> Pod:
            block = self.block(self.nodes.index(node))
            ip = str(ipaddress.ip_network(block).network_address + hosts[role])
            tunl0 = self.device(node.name, "tunl0", link="raw")
            veth = self.device(node.name, calico_veth_name(f"default.pod-{ip}"), veth=True)
            return Pod(ip, local_mac(f"{node.name}/pod/{ip}"), mtus[role], node, veth,
                       CALICO_GATEWAY_MAC, None, tunl0, None)

        # tunl0, the ipip fallback device (every parameter zero): ip_tunnel_xmit copies TTL
        # and DF from the inner IPv4 packet.
        return [self.tenant_pods("default", pod, 0, self.encaps(
            "default", lambda src, dst, seed: IpipEncap(**self.underlay(src, dst, seed),
                                                        inherit=True)))]
