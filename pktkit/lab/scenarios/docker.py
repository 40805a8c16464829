"""``docker-snat`` and ``docker-portmap`` with the real kernel: docker0, two containers,
MASQUERADE and port-map DNAT in the ``host`` namespace, as Docker writes them.

Topology (namespaces): ``host`` (the node: eth0 on the underlay switch, docker0 with veth-c1
and veth-c2), ``c1``/``c2`` (containers, eth0), ``gw`` (eth0's default gateway) and ``wan``
(the web server, the DNS resolver and, for port-map, the external clients). Addresses, MACs
and device names are the generator's (``pktkit.craft.scenarios.docker``).

docker-snat: the generator's six-flow cycle (HTTP from both containers on one source port,
DNS from each, ping from both with one identifier) plus a UDP datagram above the MTU with DF
clear. docker-portmap: external clients to published ports (HTTP), and an oversized datagram
to a published UDP port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pktkit.craft import params as P
from pktkit.craft.names import docker_mac
from pktkit.lab.plan import Flow, Ports, Server, Setup
from pktkit.lab.scenarios.base import LabScenario, add_wan, flow
from pktkit.lab.topology import Member, Topology

ETH0_MAC = "52:54:00:12:34:56"
GATEWAY_MAC = "52:54:00:aa:bb:01"
DOCKER0_MAC = "02:42:5e:1a:7c:03"
SYSLOG = 514


@dataclass(frozen=True)
class DockerLabParams:
    bridge_cidr: str = P.field("172.17.0.0/16", P.check_cidr, "docker0 network")
    host_ip: str = P.field("192.168.1.10", P.check_ip, "host address on eth0 (masquerade source)")
    gateway_ip: str = P.field("192.168.1.1", P.check_ip, "eth0's default gateway")
    server_ip: str = P.field("203.0.113.10", P.check_ip, "external web server")
    dns_ip: str = P.field("198.51.100.53", P.check_ip, "external DNS resolver")
    server_port: int = P.field(80, P.check_port, "web server port")
    host_port: int = P.field(8080, P.check_port, "published port of c1 (c2: host_port + 1)")
    container_port: int = P.field(80, P.check_port, "container port behind the published one")
    wan_hops: int = P.field(9, P.check_positive, "routers between the host and the server")
    oversized: int = P.field(2000, P.check_positive, "UDP payload bytes of the oversized flow")


class _DockerLab(LabScenario):
    Params = DockerLabParams

    def containers(self) -> tuple[str, str]:
        net = ipaddress.ip_network(self.params.bridge_cidr)
        return str(net.network_address + 2), str(net.network_address + 3)

    def build_host(self, topo: Topology, clients: tuple[str, ...]) -> Setup:
        """Switch, host, containers, gateway and far side; Docker's nat rules on the host."""
        p: DockerLabParams = self.params
        net = ipaddress.ip_network(p.bridge_cidr)
        bridge_ip = str(net.network_address + 1)
        lan = ipaddress.ip_network(f"{p.host_ip}/24", strict=False)
        topo.switch()
        host = topo.namespace("host", forwarding=True)
        port = topo.uplink(host, mac=ETH0_MAC, cidr=f"{p.host_ip}/{lan.prefixlen}")
        topo.bridge(host, "docker0", mac=DOCKER0_MAC, cidr=f"{bridge_ip}/{net.prefixlen}")
        docker0 = topo.segment("docker0")
        docker0.add(Member(host, "docker0", bridge_ip, DOCKER0_MAC))
        pods = {}
        for short, ip in zip(("c1", "c2"), self.containers(), strict=True):
            pods[short] = topo.pod(host, short, host_veth=f"veth-{short}", bridge="docker0",
                                   segment=docker0, mac=docker_mac(ip),
                                   cidr=f"{ip}/{net.prefixlen}", gateway=bridge_ip)
        wan = add_wan(topo, gw_ip=p.gateway_ip, gw_mac=GATEWAY_MAC, prefix_len=lan.prefixlen,
                      remote_nets=("203.0.113.0/24", "198.51.100.0/24"),
                      remote_hosts=(p.server_ip, p.dns_ip, *clients), wan_hops=p.wan_hops)
        host.ip("route", "add", "default", "via", p.gateway_ip)
        host.iptables(self.nat_rules())
        topo.resolve()
        return Setup(nodes={"host": host}, agents={"c1": pods["c1"], "c2": pods["c2"],
                                                   "wan": wan.wan},
                     servers=[], flows=[], switch_ports={"host": port}, impair_node="host")

    def nat_rules(self) -> str:
        """Docker's nat table (docker 24, iptables backend) for docker0 and the port maps."""
        p: DockerLabParams = self.params
        lines = [
            "*nat", ":DOCKER - [0:0]",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
            f"-A POSTROUTING -s {p.bridge_cidr} ! -o docker0 -j MASQUERADE",
            "-A DOCKER -i docker0 -j RETURN",
            *self.port_maps(),
            "COMMIT", "",
        ]
        return "\n".join(lines)

    def port_maps(self) -> list[str]:
        return []


class DockerSnatLab(_DockerLab):
    name = "docker-snat"
    description = ("docker0, two containers masqueraded to the Internet (HTTP, DNS, ping) "
                   "colliding on one source port and one ICMP id, plus a UDP datagram above "
                   "the MTU")
    default_flows = 7

    def build(self, topo: Topology) -> Setup:
        p: DockerLabParams = self.params
        setup = self.build_host(topo, ())
        setup.servers = [Server("wan", "tcp", p.server_ip, p.server_port),
                         Server("wan", "udp", p.dns_ip, 53),
                         Server("wan", "udp", p.server_ip, SYSLOG)]
        setup.flows = self.plan()
        setup.notes = [
            "WAN: one router (gw) whose TTL target takes wan_hops - 1, as the generator's "
            "Transit; the request the generator loses on the WAN (flow 1) is not lost here",
            "flow 7 (UDP above the MTU, DF clear) has no counterpart in the generator",
        ]
        return setup

    def plan(self) -> list[Flow]:
        """The generator's cycle: kinds 0/1 HTTP from c1 then c2 on one source port (the
        second must be moved by masquerade), 2/5 DNS, 3/4 ping from c1 then c2 with one
        identifier (the second is rewritten), then the oversized datagram."""
        p: DockerLabParams = self.params
        ports = Ports(self.rng)
        c = dict(zip(("c1", "c2"), self.containers(), strict=True))
        shared_port, shared_id = ports.port(), ports.icmp_id()
        flows = []
        for flow_id, kind in self.cycle(("http1", "http2", "dns1", "ping1", "ping2", "dns2",
                                         "oversized")):
            if kind.startswith("http"):
                who = "c1" if kind == "http1" else "c2"
                if kind == "http1" and flow_id > 1:
                    shared_port = ports.port()
                flows.append(flow(flow_id, "tcp", "http", who, c[who], shared_port, p.server_ip,
                                  p.server_port, 120, 2400 + 300 * (who == "c2")))
            elif kind.startswith("dns"):
                who = "c1" if kind == "dns1" else "c2"
                flows.append(flow(flow_id, "udp", "dns", who, c[who], ports.port(), p.dns_ip,
                                  53, 48, 96))
            elif kind.startswith("ping"):
                who = "c1" if kind == "ping1" else "c2"
                if kind == "ping1" and flow_id > 4:
                    shared_id = ports.icmp_id()
                flows.append(flow(flow_id, "ping", "ping", who, c[who], shared_id, p.server_ip,
                                  0, 56, 0, count=2))
            else:
                flows.append(flow(flow_id, "udp", "oversized", "c1", c["c1"], ports.port(),
                                  p.server_ip, SYSLOG, p.oversized, 64, df=False))
        return flows


class DockerPortmapLab(_DockerLab):
    name = "docker-portmap"
    description = ('External clients to containers through published ports ("8080:80" to c1, '
                   '"8081:80" to c2, "8514:514/udp" to c2 with a datagram above the MTU)')
    default_flows = 5

    def clients(self) -> tuple[str, ...]:
        return tuple(f"198.51.100.{20 + i % 200}" for i in range(self.flow_count))

    def port_maps(self) -> list[str]:
        p: DockerLabParams = self.params
        c1, c2 = self.containers()
        return [
            f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport {p.host_port} -j DNAT "
            f"--to-destination {c1}:{p.container_port}",
            f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport {p.host_port + 1} -j DNAT "
            f"--to-destination {c2}:{p.container_port}",
            f"-A DOCKER ! -i docker0 -p udp -m udp --dport 8514 -j DNAT "
            f"--to-destination {c2}:{SYSLOG}",
        ]

    def build(self, topo: Topology) -> Setup:
        p: DockerLabParams = self.params
        setup = self.build_host(topo, self.clients())
        c1, c2 = self.containers()
        setup.servers = [Server("c1", "tcp", c1, p.container_port),
                         Server("c2", "tcp", c2, p.container_port),
                         Server("c2", "udp", c2, SYSLOG)]
        setup.flows = self.plan()
        setup.notes = [
            "c2 is published on host_port + 1 (a host port maps to one container in Docker; "
            "the generator maps one host port to both containers)",
            "the oversized UDP flow to 8514/udp has no counterpart in the generator",
        ]
        return setup

    def plan(self) -> list[Flow]:
        p: DockerLabParams = self.params
        ports = Ports(self.rng)
        flows = []
        for (flow_id, kind), client in zip(self.cycle(("http", "http", "http", "http",
                                                        "oversized")), self.clients(),
                                           strict=True):
            if kind == "http":
                published = p.host_port + (flow_id - 1) % 2
                flows.append(flow(flow_id, "tcp", "http", "wan", client, ports.port(),
                                  p.host_ip, published, 120, 1800 + 100 * flow_id))
            else:
                flows.append(flow(flow_id, "udp", "oversized", "wan", client, ports.port(),
                                  p.host_ip, 8514, p.oversized, 64, df=False))
        return flows
