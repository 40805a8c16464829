"""``vxlan-overlay`` with the real kernel: Flannel-style VNI 1 on UDP 8472, and two tenants on
4789 (VNI 1000 and 2000) with identical inner addresses, between two nodes on the underlay.

flannel (the generator's tenant-a, routed): pods on ``cni0`` (gateway 10.0.0.1 on both nodes),
each node routes the remote pods' /32 into ``flannel.1`` with a permanent neighbour (the remote
flannel.1's MAC) and an fdb entry (the remote node), as flanneld writes them. TTL -1 per node.
A pod with the underlay's MTU (``veth-pod3``, 1500) sends datagrams with DF clear: the node
fragments them on the way into flannel.1 (MTU 1450), before encapsulation.

tenants 1000 and 2000 (bridged, an L2 VNI each): this kernel has no VRF, and two tenants
with one address plan cannot be routed in one namespace; so each tenant is a bridge
(``br1000``/``br2000``, no address) whose ports are the pods' veths and the tenant's VXLAN
device (``vxlan1000``/``vxlan2000``). No TTL step, pod MACs end to end. Tenant 2000 is the
latency issue's misconfigured one: ``mtu_2000`` (default 1500) on its VXLAN device and pods,
so its full-size packets do not fit the underlay once encapsulated. (Its VXLAN device is then
created without ``dev eth0``: bound to eth0 the kernel clamps the MTU to 1450.)

The switch port towards node-b is where ``--impair queue=`` and ``loss=`` act by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pktkit.craft import params as P
from pktkit.craft.names import local_mac
from pktkit.lab.netns import Namespace
from pktkit.lab.plan import Flow, Ports, Server, Setup
from pktkit.lab.scenarios.base import LabScenario, flow
from pktkit.lab.topology import Member, Segment, Topology

NODE_MACS = {"node-a": "52:54:00:0a:00:01", "node-b": "52:54:00:0a:00:02"}
VXLAN_OVERHEAD = 50
SYSLOG = 514
KINDS = ("http", "http-alt", "dns", "ping", "oversized")


def check_mtu(name: str, value: Any) -> int:
    return P.check_range(name, value, 1280, 9000, "link MTU")


@dataclass(frozen=True)
class OverlayLabParams:
    node_a_ip: str = P.field("192.168.10.1", P.check_ip, "node-a's underlay address (eth0)")
    node_b_ip: str = P.field("192.168.10.2", P.check_ip, "node-b's underlay address (eth0)")
    underlay_mtu: int = P.field(1500, check_mtu, "eth0 MTU")
    vni_flannel: int = P.field(1, P.check_vni, "flannel.1's VNI (UDP 8472)")
    vni_a: int = P.field(1000, P.check_vni, "first tenant's VNI (UDP 4789)")
    vni_b: int = P.field(2000, P.check_vni, "second tenant's VNI (UDP 4789)")
    mtu_2000: int = P.field(1500, check_mtu, "MTU of the second tenant's VXLAN device and pods "
                            "(1500 on a 1500 underlay: misconfigured; underlay - 50 is right)")


@dataclass(frozen=True)
class Pod:
    short: str  # namespace short name
    ip: str
    mac: str
    mtu: int


class VxlanOverlayLab(LabScenario):
    name = "vxlan-overlay"
    description = ("Flannel-style VXLAN (VNI 1, UDP 8472, routed) plus two bridged tenants on "
                   "UDP 4789 (VNI 1000, and VNI 2000 with MTU 1500) with identical addresses; "
                   "HTTP, DNS, ping and datagrams above the inner MTU")
    Params = OverlayLabParams
    default_flows = 15  # every kind in each of the three tenants

    def build(self, topo: Topology) -> Setup:
        p: OverlayLabParams = self.params
        topo.switch()
        nodes: dict[str, Namespace] = {}
        ports = {}
        for name, ip in (("node-a", p.node_a_ip), ("node-b", p.node_b_ip)):
            nodes[name] = topo.namespace(name, forwarding=True)
            ports[name] = topo.uplink(nodes[name], mac=NODE_MACS[name], cidr=f"{ip}/24",
                                      mtu=p.underlay_mtu)
        contexts: dict[tuple[str, str], str] = {}
        flannel = self.flannel(topo, nodes, contexts)
        tenants = {
            "t1000": self.bridged(topo, nodes, "1000", p.vni_a, p.underlay_mtu - VXLAN_OVERHEAD,
                                  contexts),
            "t2000": self.bridged(topo, nodes, "2000", p.vni_b, p.mtu_2000, contexts),
        }
        topo.resolve()
        all_pods = {**flannel, **{f"{t}-{k}": v for t, pods in tenants.items()
                                  for k, v in pods.items()}}
        servers = []
        for server in (flannel["server"], tenants["t1000"]["server"],
                       tenants["t2000"]["server"]):
            servers += [Server(server.short, "tcp", server.ip, 80),
                        Server(server.short, "tcp", server.ip, 8080),
                        Server(server.short, "udp", server.ip, 53),
                        Server(server.short, "udp", server.ip, SYSLOG)]
        return Setup(
            nodes=nodes,
            agents={pod.short: topo.namespaces[pod.short] for pod in all_pods.values()},
            servers=servers, flows=self.plan(flannel, tenants), switch_ports=ports,
            impair_node="node-b", iface_context=contexts,
            vni_context={p.vni_flannel: "flannel", p.vni_a: "t1000", p.vni_b: "t2000"},
            notes=[
                "http-alt (8080) flows upload (3 KB request, small reply); the generator's "
                "download",
                "tenants 1000/2000 are bridged L2 VNIs (no VRF in this kernel); the "
                "generator's tenant-b (VNI 2, UDP 4789) is routed like flannel",
                f"tenant 2000's VXLAN device and pods have MTU {p.mtu_2000}",
            ])

    def flannel(self, topo: Topology, nodes: dict[str, Namespace],
                contexts: dict[tuple[str, str], str]) -> dict[str, Pod]:
        """cni0 + flannel.1 on each node; client .2 and pod3 .4 on node-a, server .3 on
        node-b; each node routes the other's pods into flannel.1 (flanneld's way)."""
        p: OverlayLabParams = self.params
        inner_mtu = p.underlay_mtu - VXLAN_OVERHEAD
        vtep_mac = {n: local_mac(f"{n}/flannel.1") for n in nodes}
        segments: dict[str, Segment] = {}
        for name, ns in nodes.items():
            cni_mac = local_mac(f"{name}/cni0")
            topo.bridge(ns, "cni0", mac=cni_mac, cidr="10.0.0.1/24")
            segments[name] = topo.segment(f"{name}/cni0")
            segments[name].add(Member(ns, "cni0", "10.0.0.1", cni_mac))
            topo.vxlan(ns, "flannel.1", vni=p.vni_flannel, port=8472,
                       local=p.node_a_ip if name == "node-a" else p.node_b_ip,
                       mac=vtep_mac[name], mtu=inner_mtu)
            contexts.update({(name, "cni0"): "flannel", (name, "flannel.1"): "flannel"})
        pods = {
            "client": self._pod(topo, nodes["node-a"], "a-pod1", "veth-pod1", "cni0",
                                segments["node-a"], "10.0.0.2", "tenant-a", inner_mtu, "10.0.0.1"),
            "pod3": self._pod(topo, nodes["node-a"], "a-pod3", "veth-pod3", "cni0",
                              segments["node-a"], "10.0.0.4", "tenant-a", p.underlay_mtu,
                              "10.0.0.1"),
            "server": self._pod(topo, nodes["node-b"], "b-pod2", "veth-pod2", "cni0",
                                segments["node-b"], "10.0.0.3", "tenant-a", inner_mtu,
                                "10.0.0.1"),
        }
        for veth, node in (("veth-pod1", "node-a"), ("veth-pod3", "node-a"),
                           ("veth-pod2", "node-b")):
            contexts[(node, veth)] = "flannel"
        for name in nodes:
            nodes[name].ip("link", "set", "cni0", "mtu", str(inner_mtu))  # flannel's cni0 MTU
        remote = {"node-a": (["10.0.0.3"], "node-b", p.node_b_ip),
                  "node-b": (["10.0.0.2", "10.0.0.4"], "node-a", p.node_a_ip)}
        for name, (addresses, peer, peer_ip) in remote.items():
            ns = nodes[name]
            for address in addresses:
                ns.ip("route", "add", f"{address}/32", "dev", "flannel.1")
                topo.neigh(ns, address, vtep_mac[peer], "flannel.1")
            topo.fdb(ns, vtep_mac[peer], "flannel.1", remote=peer_ip)
        # The pods see their peers on-link (one /24): the local bridge answers for them.
        for pod, peers, node in ((pods["client"], ["10.0.0.3"], "node-a"),
                                 (pods["pod3"], ["10.0.0.3"], "node-a"),
                                 (pods["server"], ["10.0.0.2", "10.0.0.4"], "node-b")):
            for peer in peers:
                topo.neigh(topo.namespaces[pod.short], peer, local_mac(f"{node}/cni0"), "eth0")
        return pods

    def bridged(self, topo: Topology, nodes: dict[str, Namespace], tag: str, vni: int,
                mtu: int, contexts: dict[tuple[str, str], str]) -> dict[str, Pod]:
        """Tenant ``tag``: br<tag> + vxlan<tag> (UDP 4789) on each node, client 10.0.0.2 on
        node-a and server 10.0.0.3 on node-b, one L2 segment across the tunnel."""
        p: OverlayLabParams = self.params
        bridge, device, context = f"br{tag}", f"vxlan{tag}", f"t{tag}"
        segment = topo.segment(f"tenant-{tag}")
        # Bound to eth0 the kernel would clamp a too-large MTU back to the underlay's - 50.
        bind = "eth0" if mtu <= p.underlay_mtu - VXLAN_OVERHEAD else None
        for name, ns in nodes.items():
            topo.bridge(ns, bridge, mac=local_mac(f"{name}/{bridge}"))
            topo.vxlan(ns, device, vni=vni, port=4789,
                       local=p.node_a_ip if name == "node-a" else p.node_b_ip,
                       mac=local_mac(f"{name}/{device}"), mtu=mtu, master=bridge, dev=bind)
            contexts.update({(name, bridge): context, (name, device): context})
        client = self._pod(topo, nodes["node-a"], f"a-t{tag}", f"veth{tag}-1", bridge, segment,
                           "10.0.0.2", context, mtu, None)
        server = self._pod(topo, nodes["node-b"], f"b-t{tag}", f"veth{tag}-2", bridge, segment,
                           "10.0.0.3", context, mtu, None)
        contexts.update({("node-a", f"veth{tag}-1"): context, ("node-b", f"veth{tag}-2"): context})
        for pod, here, there_ip in ((client, "node-a", p.node_b_ip),
                                    (server, "node-b", p.node_a_ip)):
            other = server if pod is client else client
            topo.fdb(nodes[here], other.mac, device)  # the bridge: behind the tunnel port
            topo.fdb(nodes[here], other.mac, device, remote=there_ip)  # the VTEP: node there
        return {"client": client, "server": server}

    @staticmethod
    def _pod(topo: Topology, node: Namespace, short: str, veth: str, bridge: str,
             segment: Segment, ip: str, tenant: str, mtu: int, gateway: str | None) -> Pod:
        mac = local_mac(f"{node.short}/{tenant}/pod/{ip}")
        topo.pod(node, short, host_veth=veth, bridge=bridge, segment=segment, mac=mac,
                 cidr=f"{ip}/24", gateway=gateway, mtu=mtu)
        return Pod(short, ip, mac, mtu)

    def plan(self, flannel: dict[str, Pod], tenants: dict[str, dict[str, Pod]]) -> list[Flow]:
        """Flows cycle through the kinds, alternating flannel, t1000, t2000 (as the generator
        alternates its tenants). HTTP on 80 downloads, on 8080 uploads (the generator's
        http-alt is a second download): bulk data crosses the underlay both ways, so a rate
        limit on either switch port makes packets queue. t2000 reuses t1000's ports:
        identical inner 5-tuples that only the VNI tells apart. Oversized datagrams are
        1500-byte IP packets with DF clear, from flannel's 1500-MTU pod (the node fragments),
        t1000's client (the pod fragments) and t2000's client (encapsulated whole: the outer
        packet is fragmented)."""
        ports = Ports(self.rng)
        drawn: dict[tuple[int, str], int] = {}
        flows: list[Flow] = []
        order = ("flannel", "t1000", "t2000")
        for index in range(self.flow_count):
            kind = KINDS[(index // len(order)) % len(KINDS)]
            tenant = order[index % len(order)]
            cycle = index // (len(order) * len(KINDS))
            pods = flannel if tenant == "flannel" else tenants[tenant]
            key = (cycle, kind)
            if tenant == "t2000" and key in drawn:
                sport = drawn[key]
            else:
                sport = ports.icmp_id() if kind == "ping" else ports.port()
                if tenant == "t1000":
                    drawn[key] = sport
            client, server = pods["client"], pods["server"]
            common = {"context": tenant}
            flow_id = index + 1
            if kind == "http":  # a download: bulk from node-b to node-a
                flows.append(flow(flow_id, "tcp", kind, client.short, client.ip, sport,
                                  server.ip, 80, 150, 3000 + 40 * (index % 8), **common))
            elif kind == "http-alt":  # an upload: bulk towards node-b (the impaired port)
                flows.append(flow(flow_id, "tcp", kind, client.short, client.ip, sport,
                                  server.ip, 8080, 3000 + 40 * (index % 8), 150, **common))
            elif kind == "dns":
                flows.append(flow(flow_id, "udp", "dns", client.short, client.ip, sport,
                                  server.ip, 53, 60, 120, **common))
            elif kind == "ping":
                flows.append(flow(flow_id, "ping", "ping", client.short, client.ip, sport,
                                  server.ip, 0, 56, 0, count=2, **common))
            else:
                sender = pods.get("pod3", client)
                flows.append(flow(flow_id, "udp", "oversized", sender.short, sender.ip, sport,
                                  server.ip, SYSLOG, 1472, 64, count=2, df=False, **common))
        return flows
