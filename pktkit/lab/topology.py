"""Building blocks of a lab topology: namespaces, the underlay switch, bridges, pods, VXLAN.

Why static neighbours and static fdb entries everywhere (:class:`Segment`): the captures must
hold only the scenario's traffic, every frame labelled. ARP requests, and unknown-unicast
frames flooded by a bridge to every port (a copy on another pod's veth), would be frames that
belong to no flow. Every device on a shared link knows every other's MAC from the start
(``nud permanent``), and every bridge knows which port each MAC is behind (``master static``).
IPv6 is off in every namespace (no router solicitations, no MLD), and bridges do no multicast
snooping (a snooping bridge joins 224.0.0.106 and sends IGMPv3 reports into the capture).

Every command runs inside a lab namespace (``ip -n``, ``bridge -n``, ``ip netns exec``); a veth
is created in one lab namespace with its peer sent straight into another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pktkit.craft.names import local_mac
from pktkit.lab.netns import Namespace, Registry, run

SWITCH = "sw"
SWITCH_BRIDGE = "br0"
NS_DEFAULTS: dict[str, str | int] = {
    "net.ipv6.conf.all.disable_ipv6": 1,
    "net.ipv6.conf.default.disable_ipv6": 1,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
}






@dataclass(frozen=True)
class Member:
    """One device on a shared link: its namespace, name, address and MAC, and, when the link is
    a bridge, the bridge port its frames enter by (namespace, device)."""

    ns: Namespace
    dev: str
    ip: str | None
    mac: str
    port: tuple[Namespace, str] | None = None


@dataclass
class Segment:
    """An L2 link (a bridge and its ports, or a veth pair): the devices that reach each other
    directly. :meth:`Topology.resolve` gives them permanent neighbours and static fdb entries."""

    name: str
    members: list[Member] = field(default_factory=list)

    def add(self, member: Member) -> Member:
        self.members.append(member)
        return member


class Topology:
    """The namespaces of one lab run and the commands that wire them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.namespaces: dict[str, Namespace] = {}
        self.segments: list[Segment] = []
        self.lan = self.segment("underlay")

    # -- namespaces ------------------------------------------------------------------------

    def namespace(self, short: str, *, forwarding: bool = False) -> Namespace:
        """A new namespace: loopback up, IPv6 off, rp_filter off, forwarding if a router."""
        ns = self.registry.namespace(short)
        settings = dict(NS_DEFAULTS)
        if forwarding:
            settings["net.ipv4.ip_forward"] = 1
        ns.sysctl(settings)
        self.namespaces[short] = ns
        return ns

    def segment(self, name: str) -> Segment:
        seg = Segment(name)
        self.segments.append(seg)
        return seg

    # -- devices ---------------------------------------------------------------------------

    def switch(self) -> Namespace:
        """The underlay switch: a namespace with bridge br0, no STP, and bridged IPv4 passed to
        iptables when br_netfilter exists (the loss impairment filters on it)."""
        sw = self.namespace(SWITCH)
        sw.ip("link", "add", SWITCH_BRIDGE, "type", "bridge", "stp_state", "0",
              "mcast_snooping", "0")
        sw.ip("link", "set", SWITCH_BRIDGE, "up")
        return sw

    def uplink(self, node: Namespace, *, mac: str, cidr: str, ifname: str = "eth0",
               mtu: int = 1500) -> str:
        """``node``'s ``ifname`` (a veth) plugged into the switch; returns the switch port."""
        sw = self.namespaces[SWITCH]
        port = f"p-{node.short}"[:15]
        node.ip("link", "add", ifname, "address", mac, "mtu", str(mtu), "type", "veth",
                "peer", "name", port, "address", local_mac(f"{SWITCH}/{port}"), "mtu",
                str(mtu), "netns", sw.name)
        sw.ip("link", "set", port, "master", SWITCH_BRIDGE, "up")
        node.ip("addr", "add", cidr, "dev", ifname)
        node.ip("link", "set", ifname, "up")
        self.lan.add(Member(node, ifname, cidr.split("/")[0], mac, (sw, port)))
        return port

    def bridge(self, ns: Namespace, name: str, *, mac: str, cidr: str | None = None,
               mtu: int | None = None) -> None:
        ns.ip("link", "add", name, "address", mac, "type", "bridge", "stp_state", "0",
              "mcast_snooping", "0")
        if mtu is not None:
            ns.ip("link", "set", name, "mtu", str(mtu))
        if cidr is not None:
            ns.ip("addr", "add", cidr, "dev", name)
        ns.ip("link", "set", name, "up")

    def point_to_point(self, a: Namespace, a_dev: str, a_cidr: str, b: Namespace, b_dev: str,
                       b_cidr: str) -> None:
        """A veth pair between two namespaces (a router's link to the far side)."""
        a_mac, b_mac = local_mac(f"{a.short}/{a_dev}"), local_mac(f"{b.short}/{b_dev}")
        a.ip("link", "add", a_dev, "address", a_mac, "type", "veth", "peer", "name", b_dev,
             "address", b_mac, "netns", b.name)
        for ns, dev, cidr in ((a, a_dev, a_cidr), (b, b_dev, b_cidr)):
            ns.ip("addr", "add", cidr, "dev", dev)
            ns.ip("link", "set", dev, "up")
        seg = self.segment(f"{a.short}-{b.short}")
        seg.add(Member(a, a_dev, a_cidr.split("/")[0], a_mac))
        seg.add(Member(b, b_dev, b_cidr.split("/")[0], b_mac))

    def pod(self, node: Namespace, short: str, *, host_veth: str, bridge: str, segment: Segment,
            mac: str, cidr: str, gateway: str | None, mtu: int = 1500) -> Namespace:
        """A pod/container namespace whose ``eth0`` is a veth to ``node``'s ``bridge``.

        Made as Docker (libnetwork) makes it: both ends in the node, then the pod's end moved
        into the pod and renamed eth0. The pair takes two interface indexes in the node (the
        peer is registered first), so host-side veths get every other index (5, 7, ...), as in
        a real node and in the generator's captures."""
        pod = self.namespace(short)
        temp = f"tmp{len(self.namespaces)}"
        node.ip("link", "add", host_veth, "address", local_mac(f"{node.short}/{host_veth}"),
                "mtu", str(mtu), "type", "veth", "peer", "name", temp, "address", mac, "mtu",
                str(mtu))
        node.ip("link", "set", temp, "netns", pod.name)
        pod.ip("link", "set", temp, "name", "eth0")
        node.ip("link", "set", host_veth, "master", bridge, "up")
        pod.ip("addr", "add", cidr, "dev", "eth0")
        pod.ip("link", "set", "eth0", "up")
        if gateway is not None:
            pod.ip("route", "add", "default", "via", gateway)
        segment.add(Member(pod, "eth0", cidr.split("/")[0], mac, (node, host_veth)))
        return pod

    def vxlan(self, ns: Namespace, name: str, *, vni: int, port: int, local: str, mac: str,
              mtu: int, master: str | None = None, dev: str | None = "eth0") -> None:
        """A VXLAN device without learning (every remote MAC is given), bound to ``dev``.

        With ``dev`` the kernel clamps the MTU to ``dev``'s minus 50 (measured: 1500 asked,
        1450 set); ``dev=None`` (the route picks the underlay device) keeps a larger MTU, the
        misconfiguration a scenario may want."""
        bind = ["dev", dev] if dev else []
        ns.ip("link", "add", name, "address", mac, "mtu", str(mtu), "type", "vxlan", "id",
              str(vni), "dstport", str(port), "local", local, *bind, "nolearning")
        if master is not None:
            ns.ip("link", "set", name, "master", master)
        ns.ip("link", "set", name, "up")

    def disable_gso(self) -> None:
        """``gso_max_segs 1`` on every device of every namespace: TCP then sends MSS-sized
        segments (no super-frames above the MTU on veth, bridges and VXLAN, as on a wire)."""
        for ns in self.namespaces.values():
            links = json.loads(ns.exec(["ip", "-j", "link"]).stdout or "[]")
            for link in links:
                ns.ip("link", "set", "dev", link["ifname"], "gso_max_segs", "1")

    # -- forwarding state ------------------------------------------------------------------

    @staticmethod
    def neigh(ns: Namespace, ip: str, mac: str, dev: str) -> None:
        ns.ip("neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent")

    @staticmethod
    def fdb(ns: Namespace, mac: str, dev: str, *, remote: str | None = None) -> None:
        """A bridge's static entry (``mac`` behind port ``dev``), or with ``remote`` the VXLAN
        device's own entry (frames to ``mac`` go to VTEP ``remote``)."""
        tail = ["dst", remote, "self", "permanent"] if remote else ["master", "static"]
        run(["bridge", "-n", ns.name, "fdb", "replace", mac, "dev", dev, *tail])

    def resolve(self) -> None:
        """Permanent neighbours between the members of every segment, and static fdb entries
        for every member's MAC on its bridge port."""
        for seg in self.segments:
            for member in seg.members:
                if member.port is not None:
                    self.fdb(member.port[0], member.mac, member.port[1])
                for other in seg.members:
                    if other is not member and other.ip and member.ip and \
                            other.ns is not member.ns:
                        self.neigh(member.ns, other.ip, other.mac, member.dev)
