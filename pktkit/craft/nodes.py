"""Clusters of N nodes (``pktkit generate SCENARIO --nodes N``): node names, MACs, addresses and
pod subnets numbered from a scenario's first node, each node's clock, and the random pair of
nodes each flow runs between.

Node ``i`` (from 0) is ``node-01``, ``node-02``, ...; its address is the first node's plus
``i``, its pod subnet the ``i``-th subnet of the first node's size after the first node's (so
with ``--nodes 2`` the flat scenarios' second node gets the default ``node_b`` values). The first
node keeps the reference clock; every other node's clock is off by an offset and a drift drawn
uniformly (seeded) within ±``--clock-offset`` and ±``--clock-drift``.
"""

from __future__ import annotations

import ipaddress
import random

from pktkit.craft.impair import ClockModel
from pktkit.errors import UsageError

MAX_NODES = 250  # node addresses and MACs are numbered in one byte


def check_node_count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_NODES:
        raise UsageError(f"--nodes {value!r} is out of range; give 2..{MAX_NODES} nodes")
    return value


def node_name(index: int, count: int) -> str:
    """``node-01`` ... (zero-padded to the width of ``count``, at least two digits)."""
    return f"node-{index + 1:0{max(2, len(str(count)))}d}"


def node_mac(family: int, index: int) -> str:
    """A node's eth0 MAC (QEMU's 52:54:00 prefix), ``family`` telling scenarios apart."""
    return f"52:54:00:{family:02x}:{(index + 1) >> 8:02x}:{(index + 1) & 0xFF:02x}"


def nth_address(name: str, first: str, index: int) -> str:
    """The address ``index`` after ``first`` (parameter ``name``'s value)."""
    try:
        return str(ipaddress.ip_address(first) + index)
    except (ValueError, ipaddress.AddressValueError):
        raise UsageError(f"{name}={first}: no room for {index + 1} node addresses after it; "
                         "give a lower first address or fewer --nodes") from None


def nth_subnet(name: str, first: str, index: int) -> str:
    """The ``index``-th subnet of ``first``'s size after ``first`` (parameter ``name``)."""
    net = ipaddress.ip_network(first)
    start = int(net.network_address) + index * net.num_addresses
    top = 2 ** (32 if net.version == 4 else 128)
    if start + net.num_addresses > top:
        raise UsageError(f"{name}={first}: no room for {index + 1} such subnets after it; "
                         "give a lower first subnet or fewer --nodes")
    return str(ipaddress.ip_network((start, net.prefixlen)))


def node_clocks(names: list[str], offset_s: float, drift_ppm: float, label: str,
                at_ns: int) -> dict[str, ClockModel]:
    """The first node true; each other node off by a drawn offset (whole µs, within
    ±``offset_s``) and drift (within ±``drift_ppm``), from the seed ``label``."""
    rng = random.Random(f"{label}:clocks")
    clocks = {names[0]: ClockModel(at_ns=at_ns)}
    for name in names[1:]:
        offset_us = round(rng.uniform(-1.0, 1.0) * offset_s * 1e6)
        clocks[name] = ClockModel(offset_us * 1000, rng.uniform(-1.0, 1.0) * drift_ppm, at_ns)
    return clocks


class NodePairs:
    """The (sender, receiver) node indexes of successive flows: distinct, uniformly drawn."""

    def __init__(self, count: int, label: str) -> None:
        self.count = count
        self.rng = random.Random(f"{label}:pairs")

    def draw(self) -> tuple[int, int]:
        src = self.rng.randrange(self.count)
        dst = self.rng.randrange(self.count - 1)
        return src, dst + (dst >= src)
