"""What a scenario sets up for a run: capture nodes, servers, the flows, and how to read them.

Why a plain record between the scenario builders and the rest: the traffic driver, the
collectors and the truth builder need the same few facts (which namespace is which node,
which client sends what from which port, which device belongs to which tenant), and the
builders should say them once without knowing how they are used.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pktkit.lab.netns import Namespace

EPHEMERAL = (32768, 60999)  # net.ipv4.ip_local_port_range, the kernel's default


@dataclass(frozen=True)
class Flow:
    """One conversation: ``client`` (an agent namespace) to ``dst``, from (src, sport).

    ``sport`` is the ICMP echo identifier for ``ping``. ``request``/``response`` are payload
    bytes per message; ``count`` messages (datagrams, echo requests, TCP exchanges)."""

    flow_id: int
    kind: Literal["tcp", "udp", "ping"]
    label: str  # http, dns, ping, oversized, ...: what it stands for
    client: str
    src: str
    sport: int
    dst: str
    dport: int
    request: int
    response: int
    count: int = 1
    df: bool = True  # UDP: False sends with DF clear (IP_PMTUDISC_DONT)
    context: str = ""  # the tenant, where addresses overlap
    gap_ms: float = 5.0
    timeout_s: float = 2.0

    def command(self) -> dict[str, Any]:
        """The agent's ``flow`` command."""
        fields = asdict(self)
        return {"op": "flow", "flow": fields.pop("flow_id"), **fields}


@dataclass(frozen=True)
class Server:
    agent: str  # the namespace (short name) the server runs in
    proto: Literal["tcp", "udp"]
    addr: str
    port: int


@dataclass
class Setup:
    """A built scenario: what to capture, what to run, how to label."""

    nodes: dict[str, Namespace]  # capture node name -> its namespace, in report order
    agents: dict[str, Namespace]  # short name -> namespace of every agent
    servers: list[Server]
    flows: list[Flow]
    switch_ports: dict[str, str]  # node -> its port on the underlay switch
    impair_node: str  # the node whose switch port --impair acts on by default
    capture_interfaces: tuple[str, ...] = ("eth0",)
    iface_context: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, dev)
    vni_context: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how the lab differs from the generator


class Ports:
    """Distinct ephemeral ports (and ICMP identifiers) drawn from the run's seeded RNG: no two
    flows share a tuple unless a scenario wants a collision and says so."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[int] = set()

    def port(self) -> int:
        while True:
            value = self.rng.randint(*EPHEMERAL)
            if value not in self.used:
                self.used.add(value)
                return value

    def icmp_id(self) -> int:
        while True:
            value = self.rng.randint(1, 0xFFFF)
            if value not in self.used:
                self.used.add(value)
                return value
