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
    name: str
    client: Pod  # on node-a
    server: Pod  # on node-b
    misconfigured: Pod  # on node-a, with the underlay's MTU
    encaps: dict[str, Transform]  # the tunnel's encapsulation, by sending node


EncapFactory = Callable[[Node, Node, int], Transform]  # (from, to, IP ID seed) -> VTEP


class _Overlay(Scenario):
    """Two nodes, one or more tenants, and the paths between a tenant's pods across the tunnel.

    Subclasses give the tunnel's header bytes (between the outer IP header and the inner
    frame) and build their tenants with :meth:`bridged_tenant` or by hand."""

    Params: ClassVar[type] = UnderlayParams
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
        self.nodes = tuple(
            Node(name, ip, mac, self.device(name, "eth0"))
            for name, ip, mac in (("node-a", p.node_a_ip, "52:54:00:0a:00:01"),
                                  ("node-b", p.node_b_ip, "52:54:00:0a:00:02")))
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

    def encaps(self, tenant: str, factory: EncapFactory) -> dict[str, Transform]:
        """One VTEP per sending node; each draws outer IP IDs from its own counter."""
        a, b = self.nodes
        seed = random.Random(f"{self.name}:{self.seed}:{tenant}").getrandbits(32)
        return {a.name: factory(a, b, seed), b.name: factory(b, a, seed)}

    def bridged_tenant(self, name: str, cidr: str, bridge: str, tunnel: str,
                       veths: tuple[str, str, str], factory: EncapFactory) -> Tenant:
        """A tenant whose pods (.2 and .4 on node-a, .3 on node-b) sit on a bridge holding the
        gateway .1 on each node, routed into the tunnel device ``tunnel``."""
        net = ipaddress.ip_network(cidr)

        def pod(node: Node, host: int, veth: str, mtu: int) -> Pod:
            ip = str(net.network_address + host)
            br, tun = self.device(node.name, bridge), self.device(node.name, tunnel)
            return Pod(ip, local_mac(f"{node.name}/{name}/pod/{ip}"), mtu, node,
                       self.device(node.name, veth, veth=True, bridge_port=True),
                       local_mac(br.label), br, tun,
                       local_mac(tun.label))

        a, b = self.nodes
        mtu = self.params.underlay_mtu
        return Tenant(name, pod(a, 2, veths[0], self.pod_mtu), pod(b, 3, veths[1], self.pod_mtu),
                      pod(a, 4, veths[2], mtu), self.encaps(name, factory))

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
            Hop(src.node.eth0, "out", 6, (tenant.encaps[src.node.name],)),
            Hop(dst.node.eth0, "in", latency, wire=True),
            Hop(dst.tunnel, "in", 10, (Decap(),)),
        ]
        deliver = Route(dst.gateway_mac, dst.mac)
        if dst.bridge is not None:
            hops += [Hop(dst.bridge, "out", 8, (deliver,)), Hop(dst.veth, "out", 3)]
        else:
            hops.append(Hop(dst.veth, "out", 8, (deliver,)))
        return Path(src.mac, src.gateway_mac, tuple(hops), final_latency_us=5)

    def conversation(self, index: int, tenant: Tenant) -> tuple[Pod, list[Emission]]:
        """Flow ``index``'s sender and what it says to the tenant's server pod."""
        rng, server = self.rng, tenant.server
        kind = KINDS[index % len(KINDS)]
        ephemeral = rng.randint(*LINUX_EPHEMERAL)
        if kind in ("http", "http-alt"):
            sender = tenant.client
            port = 80 if kind == "http" else 8080
            host = server.ip if port == 80 else f"{server.ip}:{port}"
            return sender, tcp_session(
                Endpoint(sender.ip, ephemeral), Endpoint(server.ip, port),
                http_request(host, f"/{tenant.name}/{index}"),
                http_response(varied_size(3000, 40, index, cycle=64)),
                rng, mss=min(sender.mtu, server.mtu) - 40, rtt_ms=LAN_RTT_MS)
        if kind == "dns":
            return tenant.client, dns_exchange(
                Endpoint(tenant.client.ip, ephemeral), Endpoint(server.ip, 53),
                f"web-{index}.{tenant.name}.svc.cluster.local.", server.ip, rng)
        if kind == "ping":
            return tenant.client, ping(Endpoint(tenant.client.ip, 0), Endpoint(server.ip, 0),
                                       rng.randint(1, 0xFFFF), 2, rng)
        sender = tenant.misconfigured  # IP packets of the full underlay MTU, DF clear
        return sender, udp_datagrams(Endpoint(sender.ip, ephemeral), Endpoint(server.ip, 514),
                                     [sender.mtu - 28] * 3, rng)

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
        pods = [KubePod("default", "Deployment", workload, pod.node.name, pod.ip,
                        EPOCH_NS - 30 * HOUR_NS + 11 * 10**9 * index, ports)
                for index, (pod, workload, ports) in enumerate((
                    (tenant.client, "client", ()),
                    (tenant.server, "web", (("http", 80, "TCP"), ("http-alt", 8080, "TCP"),
                                            ("dns", 53, "UDP"), ("syslog", 514, "UDP"))),
                    (tenant.misconfigured, "legacy-client", ())))]
        return KubeCluster(nodes, (*system_pods(nodes), *pods), (), cluster_listed_ns(self))

    def flows(self) -> Iterator[FlowSpec]:
        for index in range(self.flow_count):
            tenant = self.tenants[index % len(self.tenants)]
            sender, emissions = self.conversation(index, tenant)
            yield FlowSpec(index + 1, self.start_ns(index), self.leg(tenant, sender, tenant.server),
                           self.leg(tenant, tenant.server, sender), emissions)


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
        p: IpipParams = self.params
        block = p.block_a if node is self.nodes[0] else p.block_b
        return {"projectcalico.org/IPv4Address": f"{node.ip}/24",
                "projectcalico.org/IPv4IPIPTunnelAddr": str(
                    ipaddress.ip_network(block).network_address)}

    def build_tenants(self) -> list[Tenant]:
        p: IpipParams = self.params
        a, b = self.nodes

        def pod(node: Node, block: str, host: int, mtu: int) -> Pod:
            ip = str(ipaddress.ip_network(block).network_address + host)
            tunl0 = self.device(node.name, "tunl0", link="raw")
            veth = self.device(node.name, calico_veth_name(f"default.pod-{ip}"), veth=True)
            return Pod(ip, local_mac(f"{node.name}/pod/{ip}"), mtu, node, veth,
                       CALICO_GATEWAY_MAC, None, tunl0, None)

        return [Tenant("default", pod(a, p.block_a, 1, self.pod_mtu),
                       pod(b, p.block_b, 1, self.pod_mtu), pod(a, p.block_a, 2, p.underlay_mtu),
                       # tunl0, the ipip fallback device (every parameter zero): ip_tunnel_xmit
                       # copies TTL and DF from the inner IPv4 packet.
                       self.encaps("default", lambda src, dst, seed: IpipEncap(
                           **self.underlay(src, dst, seed), inherit=True)))]
