"""Directions of per-interface Ethernet frames from the node's link data, case by case as the
kernel sets a received frame's packet type (PACKET_HOST for its own MAC, BROADCAST/MULTICAST
for a group address, OTHERHOST otherwise) and as a bridge forwards (its fdb)."""

from __future__ import annotations

import numpy as np

from pktkit.analysis.directions import frame_directions
from pktkit.capture.ethernet import NO_MAC, mac_number
from pktkit.capture.netinfo import Link, NodeLinks

ETH0 = Link(2, "eth0", "52:54:00:0a:00:01")
CNI0 = Link(3, "cni0", "32:03:7f:fe:b0:89", kind="bridge")
POD1_PORT = Link(6, "veth-pod1", "da:78:11:e1:a3:94", kind="veth", master="cni0")
POD3_PORT = Link(8, "veth-pod3", "aa:78:11:e1:a3:95", kind="veth", master="cni0")
TUNNEL = Link(4, "flannel.1", None, link_type="none")
POD1, POD3, STRANGER = "f6:1e:60:e6:54:06", "b2:7d:65:e9:df:eb", "02:00:00:00:00:99"
LINKS = NodeLinks((ETH0, CNI0, TUNNEL, POD1_PORT, POD3_PORT),
                  {POD1: "veth-pod1", POD3: "veth-pod3"})


def directions(device: Link, frames: list[tuple[str, str]]) -> list[str | None]:
    dst = np.array([mac_number(d) for d, _ in frames], np.uint64)
    src = np.array([mac_number(s) for _, s in frames], np.uint64)
    codes = frame_directions(dst, src, device, LINKS)
    return [None if c < 0 else ("in", "out", "other")[c] for c in codes]


def test_a_routed_device_by_its_own_mac() -> None:
    peer = "52:54:00:0a:00:02"
    assert directions(ETH0, [(peer, ETH0.mac), (ETH0.mac, peer), ("ff:ff:ff:ff:ff:ff", peer),
                             ("01:00:5e:00:00:01", peer), (STRANGER, peer)]) == \
        ["out", "in", "in", "in", "other"]


def test_a_bridge_port_by_its_forwarding_entries() -> None:
    """A pod's frame arrives on its port (for the gateway: other host); frames the bridge
    forwards to the pod (from the bridge itself or another port) leave by it; a source the
    fdb does not place cannot be told apart (NA)."""
    assert directions(POD1_PORT, [
        (CNI0.mac, POD1),  # pod 1 to its gateway: arrives on its port, not for the port's MAC
        (POD1, CNI0.mac),  # the node routes to pod 1: the bridge sends it out of the port
        (POD1, POD3),  # pod 3 to pod 1 across the bridge
        ("ff:ff:ff:ff:ff:ff", POD1),  # pod 1's broadcast
        (POD1, STRANGER),  # unknown source
    ]) == ["other", "out", "out", "in", None]


def test_no_mac_no_direction() -> None:
    dst = np.array([NO_MAC], np.uint64)
    assert frame_directions(dst, dst, TUNNEL, LINKS).tolist() == [-1]
