"""What every lab scenario has: parameters, a seeded plan, and the way to the outside world.

The outside world (servers and clients "on the Internet") is a ``wan`` namespace behind a
``gw`` router plugged into the underlay switch. The generator models the routers between the
node and the server as a TTL step (``Transit(wan_hops - 1)``); the lab's router takes the same
step with iptables' TTL target on the way in from either side, and its own forwarding takes
the last one, so TTLs on the node's eth0 are the generator's.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pktkit.craft import params as P
from pktkit.lab.netns import Namespace
from pktkit.lab.plan import Flow, Setup
from pktkit.lab.topology import Topology

WAN_LINK = ("100.64.0.1/30", "100.64.0.2/30")  # gw eth1 <-> wan eth0


class LabScenario(ABC):
    """A scenario of the generator, staged with namespaces; subclasses build it."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    default_flows: ClassVar[int]

    def __init__(self, params: Any, seed: int, flows: int | None = None) -> None:
        self.params = params
        self.seed = seed
        self.flow_count = self.default_flows if flows is None else flows
        self.rng = random.Random(f"pktkit-lab:{self.name}:{seed}")

    def describe(self) -> dict[str, Any]:
        return {**P.describe(self.params), "flows": self.flow_count}

    @abstractmethod
    def build(self, topo: Topology) -> Setup:
        """Create the namespaces and devices, load the rules; return what to run."""

    def cycle(self, kinds: tuple[str, ...]) -> list[tuple[int, str]]:
        """(flow_id, kind) for ``flow_count`` flows cycling through ``kinds``."""
        return [(i + 1, kinds[i % len(kinds)]) for i in range(self.flow_count)]


@dataclass(frozen=True)
class Wan:
    gw: Namespace
    wan: Namespace


def add_wan(topo: Topology, *, gw_ip: str, gw_mac: str, prefix_len: int,
            remote_nets: tuple[str, ...], remote_hosts: tuple[str, ...],
            wan_hops: int) -> Wan:
    """``gw`` on the underlay (``gw_ip``, ``gw_mac``) routing ``remote_nets`` to ``wan``, which
    owns ``remote_hosts`` (on its loopback). TTL minus ``wan_hops - 1`` entering ``gw``."""
    gw = topo.namespace("gw", forwarding=True)
    wan = topo.namespace("wan")
    topo.uplink(gw, mac=gw_mac, cidr=f"{gw_ip}/{prefix_len}")
    topo.point_to_point(gw, "eth1", WAN_LINK[0], wan, "eth0", WAN_LINK[1])
    for net in remote_nets:
        gw.ip("route", "add", net, "via", WAN_LINK[1].split("/")[0])
    wan.ip("route", "add", "default", "via", WAN_LINK[0].split("/")[0])
    for host in remote_hosts:
        wan.ip("addr", "add", f"{host}/32", "dev", "lo")
    if wan_hops > 1:
        gw.iptables("*mangle\n"
                    f"-A PREROUTING -i eth0 -j TTL --ttl-dec {wan_hops - 1}\n"
                    f"-A PREROUTING -i eth1 -j TTL --ttl-dec {wan_hops - 1}\n"
                    "COMMIT\n")
    return Wan(gw, wan)


def flow(flow_id: int, kind: str, label: str, client: str, src: str, sport: int, dst: str,
         dport: int, request: int, response: int, **extra: Any) -> Flow:
    """A :class:`Flow`, positional in the order scenarios think of it."""
    return Flow(flow_id, kind, label, client, src, sport, dst, dport, request,  # type: ignore[arg-type]
                response, **extra)
