"""A node's devices as iproute2 prints them: ``ip -j [-d] link``, ``ip -j addr``, ``bridge -j fdb``.

Why the capture layer reads them: a ``tcpdump -i any`` file (Linux cooked v2) records each
frame's interface *index* only, and a per-interface file records neither its interface nor a
direction. The node's own ``ip link`` says which index is which device (``eth0``, ``cni0``,
``veth3f9a1c2e``), its MAC and what it is (a veth and its peer, a bridge and its ports, a VXLAN
device); ``ip addr`` says which addresses the node owns; the bridge's forwarding database says
which MACs sit behind which bridge port. The collector writes these files and the analysis reads
them, both through this module.

Keys read (iproute2 ≥ 4.13 JSON; the same shape with ``-d``): ``ifindex``, ``ifname``,
``address`` (the MAC), ``link_type``, ``master`` (the bridge of a port), ``link`` (a veth peer
in the same namespace), ``link_index`` + ``link_netnsid`` (a peer in another namespace: for a
pod's host-side veth, the pod's ``eth0``), ``linkinfo.info_kind`` (``veth``, ``bridge``,
``vxlan``, ...; with ``-d``), ``linkinfo.info_data`` of a VXLAN device (``id``, ``port``,
``local``), and ``addr_info`` entries (``family``, ``local``, ``prefixlen``, ``scope``).
Everything else is ignored, so newer iproute2 versions read the same.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pktkit.errors import CaptureError

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Address:
    """One address of a device (an ``addr_info`` entry)."""

    address: str
    prefixlen: int
    scope: str  # host, link, global (site, nowhere: rare)


@dataclass(frozen=True)
class Link:
    """One network device of a node (network namespace)."""

    ifindex: int
    name: str
    mac: str | None = None  # lowercase aa:bb:cc:dd:ee:ff; None: no link-layer address
    link_type: str | None = None  # ether, loopback, none (ipip, wireguard), ...
    kind: str | None = None  # veth, bridge, vxlan, ipip, ... (``ip -d``; None: plain device)
    master: str | None = None  # the bridge this device is a port of
    peer: str | None = None  # a veth's peer, when it is in the same namespace
    peer_ifindex: int | None = None  # a veth's peer in another namespace: its ifindex there
    peer_netnsid: int | None = None  # ... and that namespace's id as seen from this one
    vni: int | None = None  # a VXLAN device's VNI
    vxlan_port: int | None = None  # ... and its UDP destination port
    addresses: tuple[Address, ...] = ()

    @property
    def label(self) -> str:
        """The device as ``ip link`` shows it: ``veth3f9a1c2e@if2``, ``ext0@eth0``, ``eth0``."""
        if self.peer:
            return f"{self.name}@{self.peer}"
        if self.peer_ifindex is not None:
            return f"{self.name}@if{self.peer_ifindex}"
        return self.name


@dataclass(frozen=True)
class NodeLinks:
    """Every device of one node, and the bridges' forwarding entries (MAC → port)."""

    links: tuple[Link, ...]
    fdb: Mapping[str, str] = field(default_factory=dict)  # MAC behind a bridge port → port

    def ifnames(self) -> dict[int, str]:
        """ifindex → device name (what an SLL2 frame's interface index means)."""
        return {link.ifindex: link.name for link in self.links}

    def by_name(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def own_addresses(self) -> list[str]:
        """The node's own addresses (every device's, in device order), without loopback and
        IPv6 link-local ones: those are every node's, and say nothing about which node sent."""
        found: dict[str, None] = {}
        for link in self.links:
            for a in link.addresses:
                ip = ipaddress.ip_address(a.address)
                if a.scope != "host" and not ip.is_loopback and not ip.is_link_local:
                    found[str(ip)] = None
        return list(found)

    def merged(self, later: NodeLinks) -> NodeLinks:
        """These devices updated by a later snapshot's: a device made during a capture is only
        in the later one, a device removed is only in this one. The kernel does not reuse an
        index while the namespace lives, so the union is one consistent map."""
        by_index = {link.ifindex: link for link in self.links}
        by_index.update({link.ifindex: link for link in later.links})
        return NodeLinks(tuple(by_index[i] for i in sorted(by_index)), {**self.fdb, **later.fdb})


def load_json_array(path: Path, what: str) -> list[dict[str, Any]]:
    """A JSON array of objects from ``path`` (an empty file: an empty array). CaptureError
    names the file when it is something else."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read {what} ({exc.strerror}); check the "
                           "bundle") from None
    return parse_json_array(text, f"{path}", what)


def parse_json_array(text: str, source: str, what: str) -> list[dict[str, Any]]:
    """The JSON array at the start of ``text`` (iproute2 prints one line; anything after it,
    e.g. a warning on stderr merged in, is ignored)."""
    start = text.find("[")
    if not text.strip():
        return []
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start if start >= 0 else 0)
    except ValueError as exc:
        raise CaptureError(f"{source}: not the JSON of {what} ({exc}); take it again with "
                           "iproute2's -j option") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CaptureError(f"{source}: not the JSON array of {what}; take it again with "
                           "iproute2's -j option")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mac(value: Any) -> str | None:
    if not isinstance(value, str) or value.count(":") != 5:
        return None
    return value.lower()


def _addresses(entries: Any) -> tuple[Address, ...]:
    found = []
    for a in entries if isinstance(entries, list) else []:
        if isinstance(a, dict) and isinstance(a.get("local"), str):
            try:
                ip = ipaddress.ip_address(a["local"])
            except ValueError:
                continue
            found.append(Address(str(ip), _int(a.get("prefixlen")) or 0, str(a.get("scope",
                                                                                  "global"))))
    return tuple(found)


def link_of(entry: Mapping[str, Any]) -> Link | None:
    """One ``ip -j link``/``addr`` object as a :class:`Link` (None: no index or name)."""
    ifindex, name = _int(entry.get("ifindex")), entry.get("ifname")
    if ifindex is None or not isinstance(name, str):
        return None
    info = entry.get("linkinfo") if isinstance(entry.get("linkinfo"), dict) else {}
    data = info.get("info_data") if isinstance(info.get("info_data"), dict) else {}
    kind = info.get("info_kind") if isinstance(info.get("info_kind"), str) else None
    peer = entry.get("link") if isinstance(entry.get("link"), str) else None
    return Link(
        ifindex, name, _mac(entry.get("address")),
        entry.get("link_type") if isinstance(entry.get("link_type"), str) else None,
        kind, entry.get("master") if isinstance(entry.get("master"), str) else None,
        peer, None if peer else _int(entry.get("link_index")),
        None if peer else _int(entry.get("link_netnsid")),
        _int(data.get("id")) if kind == "vxlan" else None,
        _int(data.get("port")) if kind == "vxlan" else None,
        _addresses(entry.get("addr_info")))


def node_links(link_entries: Iterable[Mapping[str, Any]],
               addr_entries: Iterable[Mapping[str, Any]] = (),
               fdb_entries: Iterable[Mapping[str, Any]] = ()) -> NodeLinks:
    """Devices from ``ip -j link`` objects, with the addresses of ``ip -j addr`` objects of the
    same index (``ip -j addr`` alone is enough: it has the link keys too), and the forwarding
    entries of ``bridge -j fdb`` that put a MAC behind a bridge port."""
    links: dict[int, Link] = {}
    for entry in [*addr_entries, *link_entries]:  # link's keys win; addr's addresses are kept
        link = link_of(entry)
        if link is None:
            continue
        known = links.get(link.ifindex)
        if known is not None and not link.addresses:
            link = Link(**{**link.__dict__, "addresses": known.addresses})
        links[link.ifindex] = link
    fdb = {}
    for entry in fdb_entries:
        mac, port = _mac(entry.get("mac")), entry.get("ifname")
        # A port's own MAC is a permanent entry on it; a MAC *behind* it is static or learnt.
        if mac and isinstance(port, str) and entry.get("master") and \
                entry.get("state") != "permanent":
            fdb[mac] = port
    return NodeLinks(tuple(links[i] for i in sorted(links)), fdb)


def read_node_links(link_file: Path | None, addr_file: Path | None = None,
                    fdb_file: Path | None = None) -> NodeLinks | None:
    """:func:`node_links` from files (missing ones are skipped); None when no file has any
    device."""
    def entries(path: Path | None, what: str) -> list[dict[str, Any]]:
        return load_json_array(path, what) if path is not None and path.is_file() else []

    found = node_links(entries(link_file, "ip -j link"), entries(addr_file, "ip -j addr"),
                       entries(fdb_file, "bridge -j fdb"))
    return found if found.links else None
