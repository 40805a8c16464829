"""``--impair``: a rate-limited (queueing) or lossy underlay switch port.

``queue=RATE`` (tc rate, e.g. ``5mbit``): a token bucket (tc tbf, one frame of burst) on the
switch port towards the target node: back-to-back packets wait for tokens, so they queue for
milliseconds (this kernel has no netem). tbf cuts GSO super-frames larger than its bucket
into segments: with ``gso`` on, the target node then sees MSS-sized segments where the
sender sent one super-frame (``--no-gso`` keeps packets whole end to end).

``loss=PERCENT``: every N-th packet the switch forwards to the target node is dropped
(iptables' statistic match in ``nth`` mode, offset by the seed: deterministic, unlike
``random`` mode). ``node=NAME`` picks the target (default: the scenario's).

Why on the switch and with br_netfilter: the switch is a bridge, and iptables sees bridged
IPv4 only through br_netfilter (``net.bridge.bridge-nf-call-iptables`` in the switch's
namespace). Where that sysctl does not exist, loss is applied instead on egress of every
other node's eth0 towards the target (iptables in those nodes; ``-d`` the target's address).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pktkit.errors import UsageError
from pktkit.lab.plan import Setup
from pktkit.lab.topology import SWITCH, Topology

_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
# tbf's bucket: one full frame. A larger bucket lets the lab's sparse traffic through without
# ever waiting (measured: 3200 bytes at 2mbit, 0 overlimits); with one frame's worth, the
# second of two back-to-back frames waits a frame time (6 ms at 2mbit for 1514 bytes).
QUEUE_BURST = 1600


@dataclass(frozen=True)
class Impairment:
    queue_rate: str | None = None
    loss_percent: float | None = None
    node: str | None = None

    def describe(self) -> dict[str, object]:
        return {"queue": self.queue_rate, "loss_percent": self.loss_percent, "node": self.node}


def parse_impair(items: Sequence[str]) -> Impairment:
    """``["queue=5mbit", "loss=2"]`` → Impairment; UsageError names a bad item."""
    values: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or key not in ("queue", "loss", "node") or not value:
                raise UsageError(f"--impair {part!r}: expected queue=RATE (e.g. queue=5mbit), "
                                 "loss=PERCENT (e.g. loss=2) or node=NAME")
            values[key] = value
    rate = values.get("queue")
    if rate is not None and not _RATE.match(rate):
        raise UsageError(f"--impair queue={rate}: give a tc rate such as 5mbit or 800kbit")
    loss = None
    if "loss" in values:
        try:
            loss = float(values["loss"].rstrip("%"))
        except ValueError:
            loss = -1.0
        if not 0 < loss <= 50:
            raise UsageError(f"--impair loss={values['loss']}: give a percentage in (0, 50]")
    return Impairment(rate, loss, values.get("node"))


def apply_impairment(topo: Topology, setup: Setup, impairment: Impairment,
                     seed: int) -> list[str]:
    """Install the impairment; returns what was done (for lab.json)."""
    if impairment.queue_rate is None and impairment.loss_percent is None:
        return []
    node = impairment.node or setup.impair_node
    if node not in setup.switch_ports:
        raise UsageError(f"--impair node={node}: no such node in this scenario; choose one of "
                         f"{', '.join(setup.switch_ports)}")
    sw, port = topo.namespaces[SWITCH], setup.switch_ports[node]
    done = []
    if impairment.queue_rate is not None:
        sw.exec(["tc", "qdisc", "add", "dev", port, "root", "tbf", "rate",
                 impairment.queue_rate, "burst", str(QUEUE_BURST), "latency", "400ms"])
        done.append(f"tc tbf rate {impairment.queue_rate} on switch port {port} (to {node})")
    if impairment.loss_percent is not None:
        every = max(2, round(100 / impairment.loss_percent))
        nth = f"-m statistic --mode nth --every {every} --packet {seed % every} -j DROP"
        if sw.has_sysctl(BRIDGE_NF):
            sw.sysctl({BRIDGE_NF: 1})
            sw.iptables(f"*filter\n-A FORWARD -m physdev --physdev-out {port} {nth}\nCOMMIT\n")
            done.append(f"drop 1 in {every} frames the switch forwards to {node} ({port})")
        else:
            target = _address(topo, setup, node)
            for name, ns in setup.nodes.items():
                if name != node:
                    ns.iptables(f"*filter\n-A OUTPUT -o eth0 -d {target} {nth}\n"
                                f"-A FORWARD -o eth0 -d {target} {nth}\nCOMMIT\n")
            done.append(f"drop 1 in {every} packets other nodes send to {node} ({target}); "
                        "no br_netfilter in the switch")
    return done


def _address(topo: Topology, setup: Setup, node: str) -> str:
    for member in topo.lan.members:
        if member.ns is setup.nodes.get(node) and member.ip:
            return member.ip
    raise UsageError(f"--impair node={node}: it has no underlay address")
