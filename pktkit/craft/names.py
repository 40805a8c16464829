"""How container software names and addresses its devices: MACs and host-side veth names.

Conventions of Docker, the CNI bridge plugin and the kernel, not kernel behaviour: the builders'
scenarios and the lab's (:mod:`pktkit.lab.scenarios`) both follow them, so that a generated
capture and a kernel's capture of the same scenario name the same devices and MACs.
"""

from __future__ import annotations

import hashlib
import ipaddress


def docker_mac(ip: str) -> str:
    """Docker derives a container's MAC from its IPv4 address: 02:42 + the four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def pod_mac(ip: str) -> str:
    """The CNI bridge plugin's pod MAC: 0a:58 followed by the low four bytes of the address."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed[-4:])


def veth_name(pod: str) -> str:
    """Host side of a pod's veth pair: ``veth`` and eight hex digits (15-character limit)."""
    return "veth" + hashlib.sha1(pod.encode()).hexdigest()[:8]


def local_mac(label: str) -> str:
    """A locally administered unicast MAC, fixed per device: what the kernel draws at random
    when it creates a bridge, veth or tunnel device."""
    digest = bytearray(hashlib.sha256(label.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return digest.hex(":")
