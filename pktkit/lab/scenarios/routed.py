"""``flat-routed`` and ``k8s-nodeport`` with the real kernel: two nodes on the underlay switch,
each with cni0 and its pods, pod CIDRs routed via the other node (host-gw), no tunnel.

Addresses, MACs and device names are the generator's (``pktkit.craft.scenarios.routed`` and
``k8s``): node-a 192.168.50.11, node-b .12, pods in 10.244.0.0/24 and 10.244.1.0/24, pod MACs
0a:58:..., host-side veths ``veth`` + 8 hex digits.

k8s-nodeport: kube-proxy's iptables chains on node-a (KUBE-SERVICES → KUBE-NODEPORTS →
KUBE-EXT → KUBE-MARK-MASQ + KUBE-SVC → KUBE-SEP DNAT; KUBE-POSTROUTING MASQUERADE
--random-fully for marked packets): nodePort 30080 to the web pod on node-b (DNAT and SNAT),
30514/udp to it as well (an oversized datagram), and 30081 with externalTrafficPolicy Local
to a pod on node-a (DNAT only, the client's address kept).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pktkit.craft import params as P
from pktkit.craft.names import pod_mac, veth_name
from pktkit.lab.netns import Namespace
from pktkit.lab.plan import Flow, Ports, Server, Setup
from pktkit.lab.scenarios.base import LabScenario, add_wan, flow
from pktkit.lab.topology import Member, Topology

NODE_MACS = {"node-a": "52:54:00:6b:0a:11", "node-b": "52:54:00:6b:0a:12"}
CNI0_MACS = {"node-a": "9e:31:c4:5d:0a:01", "node-b": "9e:31:c4:5d:0b:01"}
LAN_GATEWAY_MAC = "52:54:00:6b:0a:01"
SYSLOG = 514


@dataclass(frozen=True)
class ClusterLabParams:
    node_a_ip: str = P.field("192.168.50.11", P.check_ip, "node-a's address on eth0")
    node_b_ip: str = P.field("192.168.50.12", P.check_ip, "node-b's address on eth0")
    pod_cidr_a: str = P.field("10.244.0.0/24", P.check_cidr, "pod CIDR of node-a (cni0)")
    pod_cidr_b: str = P.field("10.244.1.0/24", P.check_cidr, "pod CIDR of node-b (cni0)")
    web_port: int = P.field(80, P.check_port, "HTTP port of the web pod on node-b")
    oversized: int = P.field(2000, P.check_positive, "UDP payload bytes of the oversized flow")


@dataclass(frozen=True)
class NodePortLabParams(ClusterLabParams):
    node_port: int = P.field(30080, P.check_port, "nodePort of the web Service (Cluster)")
    local_node_port: int = P.field(30081, P.check_port,
                                   "nodePort of a Local-policy Service with a pod on node-a")
    udp_node_port: int = P.field(30514, P.check_port, "UDP nodePort to the web pod (syslog)")
    client_ip: str = P.field("198.51.100.23", P.check_ip, "external client")
    wan_hops: int = P.field(8, P.check_positive, "routers between the client and node-a")


class _Cluster(LabScenario):
    """Two nodes with cni0, routed pod CIDRs, and pods placed by :meth:`add_pod`."""

    def build_nodes(self, topo: Topology) -> dict[str, Namespace]:
        p: ClusterLabParams = self.params
        topo.switch()
        self.cni = {}
        self.ports = {}
        nodes = {}
        for name, ip, cidr in (("node-a", p.node_a_ip, p.pod_cidr_a),
                               ("node-b", p.node_b_ip, p.pod_cidr_b)):
            ns = topo.namespace(name, forwarding=True)
            self.ports[name] = topo.uplink(ns, mac=NODE_MACS[name], cidr=f"{ip}/24")
            net = ipaddress.ip_network(cidr)
            gateway = str(net.network_address + 1)
            topo.bridge(ns, "cni0", mac=CNI0_MACS[name], cidr=f"{gateway}/{net.prefixlen}")
            segment = topo.segment(f"{name}/cni0")
            segment.add(Member(ns, "cni0", gateway, CNI0_MACS[name]))
            self.cni[name] = (segment, net, gateway)
            nodes[name] = ns
        nodes["node-a"].ip("route", "add", p.pod_cidr_b, "via", p.node_b_ip)
        nodes["node-b"].ip("route", "add", p.pod_cidr_a, "via", p.node_a_ip)
        return nodes

    def add_pod(self, topo: Topology, node: Namespace, name: str, host: int) -> tuple[str, str]:
        """Pod ``name`` at host number ``host`` of ``node``'s CIDR; returns (short, ip)."""
        segment, net, gateway = self.cni[node.short]
        ip = str(net.network_address + host)
        short = f"{node.short[-1]}-{name}"
        topo.pod(node, short, host_veth=veth_name(f"default/{name}"), bridge="cni0",
                 segment=segment, mac=pod_mac(ip), cidr=f"{ip}/{net.prefixlen}",
                 gateway=gateway)
        return short, ip


class FlatRoutedLab(_Cluster):
    name = "flat-routed"
    description = ("Pod to pod across two nodes by plain routing (host-gw): HTTP, DNS, ping "
                   "and a UDP datagram above the MTU, TTL-1 per node")
    Params = ClusterLabParams
    default_flows = 7

    def build(self, topo: Topology) -> Setup:
        p: ClusterLabParams = self.params
        nodes = self.build_nodes(topo)
        client, client_ip = self.add_pod(topo, nodes["node-a"], "client", 5)
        dns, dns_ip = self.add_pod(topo, nodes["node-b"], "dns", 3)
        web, web_ip = self.add_pod(topo, nodes["node-b"], "web", 7)
        topo.resolve()
        ports = Ports(self.rng)
        flows: list[Flow] = []
        for flow_id, kind in self.cycle(("http", "dns", "ping", "http", "dns", "ping",
                                         "oversized")):
            if kind == "http":
                flows.append(flow(flow_id, "tcp", "http", client, client_ip, ports.port(),
                                  web_ip, p.web_port, 140, 900 + 350 * flow_id))
            elif kind == "dns":
                flows.append(flow(flow_id, "udp", "dns", client, client_ip, ports.port(),
                                  dns_ip, 53, 52, 100))
            elif kind == "ping":
                flows.append(flow(flow_id, "ping", "ping", client, client_ip, ports.icmp_id(),
                                  web_ip, 0, 56, 0, count=2))
            else:
                flows.append(flow(flow_id, "udp", "oversized", client, client_ip, ports.port(),
                                  web_ip, SYSLOG, p.oversized, 64, df=False))
        return Setup(
            nodes=nodes, agents={client: topo.namespaces[client], dns: topo.namespaces[dns],
                                 web: topo.namespaces[web]},
            servers=[Server(web, "tcp", web_ip, p.web_port), Server(dns, "udp", dns_ip, 53),
                     Server(web, "udp", web_ip, SYSLOG)],
            flows=flows, switch_ports=self.ports, impair_node="node-a",  # bulk goes to a
            notes=["flow 7 (UDP above the MTU, DF clear) has no counterpart in the generator"])


class K8sNodePortLab(_Cluster):
    name = "k8s-nodeport"
    description = ("An external client to NodePort Services on node-a: DNAT to a pod on "
                   "node-b plus SNAT (--random-fully), a Local-policy port (DNAT only), an "
                   "oversized UDP datagram, and a ping to the node")
    Params = NodePortLabParams
    default_flows = 7

    def build(self, topo: Topology) -> Setup:
        p: NodePortLabParams = self.params
        nodes = self.build_nodes(topo)
        web, web_ip = self.add_pod(topo, nodes["node-b"], "web", 7)
        local, local_ip = self.add_pod(topo, nodes["node-a"], "web-local", 7)
        wan = add_wan(topo, gw_ip="192.168.50.1", gw_mac=LAN_GATEWAY_MAC, prefix_len=24,
                      remote_nets=("198.51.100.0/24",), remote_hosts=(p.client_ip,),
                      wan_hops=p.wan_hops)
        for ns in nodes.values():
            ns.ip("route", "add", "default", "via", "192.168.50.1")
        nodes["node-a"].iptables(self.kube_proxy_rules(web_ip, local_ip))
        topo.resolve()
        return Setup(
            nodes=nodes, agents={"wan": wan.wan, web: topo.namespaces[web],
                                 local: topo.namespaces[local]},
            servers=[Server(web, "tcp", web_ip, p.web_port),
                     Server(web, "udp", web_ip, SYSLOG),
                     Server(local, "tcp", local_ip, p.web_port)],
            flows=self.plan(), switch_ports=self.ports, impair_node="node-a",
            notes=["the Local-policy port 30081, the UDP nodePort and the ping to node-a have "
                   "no counterpart in the generator (which has the 30080 flows only)"])

    def kube_proxy_rules(self, web_ip: str, local_ip: str) -> str:
        p: NodePortLabParams = self.params
        return "\n".join([
            "*nat",
            ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
            ":KUBE-MARK-MASQ - [0:0]", ":KUBE-EXT-WEB - [0:0]", ":KUBE-SVC-WEB - [0:0]",
            ":KUBE-SEP-WEB - [0:0]", ":KUBE-EXT-SYSLOG - [0:0]", ":KUBE-SEP-SYSLOG - [0:0]",
            ":KUBE-SVL-LOCAL - [0:0]", ":KUBE-SEP-LOCAL - [0:0]",
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" "
            "-j KUBE-SERVICES",
            "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" "
            "-j KUBE-POSTROUTING",
            "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
            f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {p.node_port} -j KUBE-EXT-WEB",
            f"-A KUBE-NODEPORTS -p udp -m udp --dport {p.udp_node_port} -j KUBE-EXT-SYSLOG",
            f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {p.local_node_port} -j KUBE-SVL-LOCAL",
            "-A KUBE-EXT-WEB -j KUBE-MARK-MASQ",
            "-A KUBE-EXT-WEB -j KUBE-SVC-WEB",
            "-A KUBE-SVC-WEB -j KUBE-SEP-WEB",
            f"-A KUBE-SEP-WEB -p tcp -m tcp -j DNAT --to-destination {web_ip}:{p.web_port}",
            "-A KUBE-EXT-SYSLOG -j KUBE-MARK-MASQ",
            "-A KUBE-EXT-SYSLOG -j KUBE-SEP-SYSLOG",
            f"-A KUBE-SEP-SYSLOG -p udp -m udp -j DNAT --to-destination {web_ip}:{SYSLOG}",
            "-A KUBE-SVL-LOCAL -j KUBE-SEP-LOCAL",
            f"-A KUBE-SEP-LOCAL -p tcp -m tcp -j DNAT --to-destination {local_ip}:{p.web_port}",
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
            "-A KUBE-POSTROUTING -j MASQUERADE --random-fully",
            "COMMIT", ""])

    def plan(self) -> list[Flow]:
        p: NodePortLabParams = self.params
        ports = Ports(self.rng)
        flows: list[Flow] = []
        for flow_id, kind in self.cycle(("http", "http", "http", "http", "local", "oversized",
                                         "ping")):
            if kind == "http":
                flows.append(flow(flow_id, "tcp", "http", "wan", p.client_ip, ports.port(),
                                  p.node_a_ip, p.node_port, 130, 1500 + 200 * flow_id))
            elif kind == "local":
                flows.append(flow(flow_id, "tcp", "http-local", "wan", p.client_ip,
                                  ports.port(), p.node_a_ip, p.local_node_port, 130, 1200))
            elif kind == "oversized":
                flows.append(flow(flow_id, "udp", "oversized", "wan", p.client_ip, ports.port(),
                                  p.node_a_ip, p.udp_node_port, p.oversized, 64, df=False))
            else:
                flows.append(flow(flow_id, "ping", "ping", "wan", p.client_ip, ports.icmp_id(),
                                  p.node_a_ip, 0, 56, 0, count=2))
        return flows
