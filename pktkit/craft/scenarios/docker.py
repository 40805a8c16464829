"""Docker's default bridge network: ``docker0``, one veth per container, iptables NAT.

Capture points of the host (the host-side ends of the veth pairs, the bridge, the uplink):
``veth-c1``, ``veth-c2``, ``docker0``, ``eth0``. Outbound traffic is masqueraded on ``eth0``
(POSTROUTING), so ``veth-*`` and ``docker0`` show the container's own address and ``eth0`` the
host's. Port mapping (``ports: "8080:80"``) is a DNAT in PREROUTING, visible from ``docker0`` on.

The containers were started with ``docker run`` on the default bridge: ``app`` and ``worker``
(docker-snat), ``web1`` published on ``host_port`` and ``web2`` on ``host_port_2``
(docker-portmap: one host port belongs to one container). ``docker.json`` is their
``docker inspect``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pktkit.capture.write import Interface
from pktkit.craft import params as P
from pktkit.craft.engine import EPOCH_NS, FlowSpec, Hop, Path, Scenario
from pktkit.craft.inventory import DockerContainer, DockerHost
from pktkit.craft.kernel import Nat, NatReply, Route, Transit
from pktkit.craft.names import docker_mac
from pktkit.craft.nat import Conntrack
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


@dataclass(frozen=True)
class DockerParams:
    bridge_cidr: str = P.field("172.17.0.0/16", P.check_cidr, "docker0 network")
    host_ip: str = P.field("192.168.1.10", P.check_ip, "host address on eth0 (masquerade source)")
    gateway_ip: str = P.field("192.168.1.1", P.check_ip, "eth0's default gateway")
    server_ip: str = P.field("203.0.113.10", P.check_ip, "external web server")
    dns_ip: str = P.field("198.51.100.53", P.check_ip, "external DNS resolver")
    server_port: int = P.field(80, P.check_port, "web server port")
    host_port: int = P.field(8080, P.check_port,
                             "first container's published host port (-p HOST:CONTAINER)")
    host_port_2: int = P.field(8081, P.check_port, "second container's published host port")
    container_port: int = P.field(80, P.check_port, "container port behind the published one")
    wan_hops: int = P.field(9, P.check_positive, "routers between the host and the server")
    wan_latency_us: int = P.field(4000, P.check_positive, "one-way delay host <-> server, µs")


class _DockerHost(Scenario):
    """The host, its two containers and the paths between them and the outside world."""

    Params = DockerParams
    default_flows = 6

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        p: DockerParams = self.params
        bridge = ipaddress.ip_network(p.bridge_cidr)
        self.bridge_ip = str(bridge.network_address + 1)
        self.containers = [str(bridge.network_address + 2), str(bridge.network_address + 3)]
        self.eth0 = Interface("host", "eth0", 2)
        self.docker0 = Interface("host", "docker0", 3)
        self.veths = [Interface("host", "veth-c1", 5, bridge_port=True),  # docker0's ports
                      Interface("host", "veth-c2", 7, bridge_port=True)]
        self.eth0_mac = "52:54:00:12:34:56"
        self.gateway_mac = "52:54:00:aa:bb:01"
        self.remote_mac = "00:1c:73:00:00:99"  # the server's own NIC, far away
        self.docker0_mac = "02:42:5e:1a:7c:03"
        self.ct: Conntrack = self.conntrack()

    def interfaces(self) -> list[Interface]:
        return [*self.veths, self.docker0, self.eth0]

    def conntracks(self) -> list[Conntrack]:
        return [self.ct]

    container_names: tuple[str, str] = ("app", "worker")
    images: tuple[str, str] = ("registry.example/shop/app:2.3", "registry.example/shop/worker:2.3")

    def published(self, index: int) -> tuple[tuple[int, str, int], ...]:
        """Container ``index``'s ``-p`` mappings (none here)."""
        return ()

    def inventory(self, spans: Mapping[int, tuple[int, int]]) -> DockerHost:
        """The two containers (running since an hour before the capture) and docker0."""
        p: DockerParams = self.params
        containers = tuple(
            DockerContainer(name, address, image,
                            EPOCH_NS - 3600 * 10**9 + 2_418_263_527 * index + 604_117_250,
                            self.published(index))
            for index, (name, address, image) in enumerate(zip(
                self.container_names, self.containers, self.images, strict=True)))
        return DockerHost(p.bridge_cidr, self.bridge_ip, self.docker0.name, containers,
                          p.host_ip)

    def outbound(self, index: int) -> tuple[Path, Path]:
        """Container ``index`` to the outside (masqueraded) and the replies back."""
        p: DockerParams = self.params
        cmac, veth = docker_mac(self.containers[index]), self.veths[index]
        forward = Path(cmac, self.docker0_mac, (
            Hop(veth, "in", 4),
            Hop(self.docker0, "in", 3),
            Hop(self.eth0, "out", 15, (Route(self.eth0_mac, self.gateway_mac),
                                       Nat(self.ct, snat_to=p.host_ip))),
        ), final_latency_us=p.wan_latency_us, final_wire=True)
        reverse = Path(self.remote_mac, "00:1c:73:00:00:01", (
            Hop(self.eth0, "in", p.wan_latency_us, (Transit(p.wan_hops - 1),
                                                    Route(self.gateway_mac, self.eth0_mac)),
                wire=True),
            Hop(self.docker0, "out", 12, (NatReply(), Route(self.docker0_mac, cmac))),
            Hop(veth, "out", 3),
        ), final_latency_us=5)
        return forward, reverse

    def inbound(self, index: int) -> tuple[Path, Path]:
        """The outside to container ``index`` through the published port, and the replies."""
        p: DockerParams = self.params
        cmac, veth = docker_mac(self.containers[index]), self.veths[index]
        forward = Path(self.remote_mac, "00:1c:73:00:00:01", (
            Hop(self.eth0, "in", p.wan_latency_us, (Transit(p.wan_hops - 1),
                                                    Route(self.gateway_mac, self.eth0_mac)),
                wire=True),
            Hop(self.docker0, "out", 14, (
                Nat(self.ct, dnat_to=(self.containers[index], p.container_port)),
                Route(self.docker0_mac, cmac))),
            Hop(veth, "out", 3),
        ), final_latency_us=5)
        reverse = Path(cmac, self.docker0_mac, (
            Hop(veth, "in", 4),
            Hop(self.docker0, "in", 3),
            Hop(self.eth0, "out", 15, (Route(self.eth0_mac, self.gateway_mac), NatReply())),
        ), final_latency_us=p.wan_latency_us, final_wire=True)
        return forward, reverse


class DockerSnat(_DockerHost):
    name = "docker-snat"
    description = ("Two containers on docker0 reaching the Internet through masquerade "
                   "(TCP/HTTP, DNS, ping), with a source-port and an ICMP-id collision")

    def templates(self, index: int) -> tuple[int, list[Emission]]:
        """Flow ``index``: which container and what it says. The first six show every case."""
        p: DockerParams = self.params
        rng = self.rng
        server = Endpoint(p.server_ip, p.server_port, ttl=64)
        dns = Endpoint(p.dns_ip, 53, ttl=64)
        kind = index % 6
        container = (0, 1, 0, 0, 1, 1)[kind]
        me = self.containers[container]
        if kind in (0, 1):
            # Both containers pick the same ephemeral port toward the same server: the second
            # connection must be given another source port by masquerade.
            if kind == 0:
                self._shared_port = rng.randint(32768, 60999)
            client = Endpoint(me, self._shared_port)
            request = http_request(p.server_ip, f"/c{container + 1}/{index}")
            lose = 3 if index == 0 else None  # the first request is lost on the WAN, resent
            return container, tcp_session(client, server, request, http_response(2400 + 300 * kind),
                                          rng, mss=1460, rtt_ms=8.0, lose_request_after=lose)
        if kind in (2, 5):
            client = Endpoint(me, rng.randint(32768, 60999))
            return container, dns_exchange(client, dns, f"svc{index}.example.com.",
                                           p.server_ip, rng)
        # ping from both containers with the same identifier: the second is rewritten.
        if kind == 3:
            self._shared_icmp_id = rng.randint(1, 65535)
        return container, ping(Endpoint(me, 0), Endpoint(p.server_ip, 0), self._shared_icmp_id,
                               2, rng)

    def flows(self) -> Iterator[FlowSpec]:
        for index in range(self.flow_count):
            container, emissions = self.templates(index)
            forward, reverse = self.outbound(container)
            yield FlowSpec(index + 1, self.start_ns(index), forward, reverse, emissions)


class DockerPortmap(_DockerHost):
    name = "docker-portmap"
    description = ("External clients reaching two containers through their published ports "
                   "(-p 8080:80, -p 8081:80: DNAT on the host)")
    default_flows = 4
    container_names = ("web1", "web2")
    images = ("registry.example/shop/web:1.4", "registry.example/shop/web:1.4")

    def published(self, index: int) -> tuple[tuple[int, str, int], ...]:
        p: DockerParams = self.params
        return ((p.container_port, "TCP", (p.host_port, p.host_port_2)[index]),)

    def flows(self) -> Iterator[FlowSpec]:
        p: DockerParams = self.params
        if p.host_port == p.host_port_2:
            raise UsageError(f"host_port and host_port_2 are both {p.host_port}: a host port "
                             "is published for one container; give two ports")
        for index in range(self.flow_count):
            client = Endpoint(f"198.51.100.{20 + index % 200}", self.rng.randint(32768, 60999))
            host_port = self.published(index % 2)[0][2]
            service = Endpoint(p.host_ip, host_port, ttl=64)
            request = http_request(f"{p.host_ip}:{host_port}", f"/api/{index}")
            response = http_response(varied_size(1800, 500, index))
            emissions = tcp_session(client, service, request, response, self.rng, mss=1460,
                                    rtt_ms=8.0)
            forward, reverse = self.inbound(index % 2)
            yield FlowSpec(index + 1, self.start_ns(index), forward, reverse, emissions)
