"""pktkit.capture.netinfo: iproute2's JSON (as ``ip -j -d link``, ``ip -j addr`` and ``bridge -j
fdb`` print it: the objects below are copied from iproute2 6.1 output of a lab node, trimmed to
the keys read) into devices, names, MACs, bridge ports, veth peers and the node's addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pktkit.capture.netinfo import node_links, parse_json_array, read_node_links
from pktkit.errors import CaptureError

RETINA = Path(__file__).parent / "data" / "retina"

LINK = [
    {"ifindex": 1, "ifname": "lo", "link_type": "loopback", "address": "00:00:00:00:00:00"},
    {"ifindex": 2, "link_index": 3, "ifname": "eth0", "link_type": "ether",
     "address": "52:54:00:0A:00:01", "link_netnsid": 0, "linkinfo": {"info_kind": "veth"}},
    {"ifindex": 3, "ifname": "cni0", "link_type": "ether", "address": "32:03:7f:fe:b0:89",
     "linkinfo": {"info_kind": "bridge", "info_data": {"stp_state": 0}}},
    {"ifindex": 4, "ifname": "flannel.1", "link_type": "ether", "address": "62:71:f7:93:ed:d6",
     "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 1, "port": 8472,
                                                      "local": "192.168.10.1"}}},
    {"ifindex": 6, "link_index": 2, "ifname": "veth-pod1", "master": "cni0",
     "link_type": "ether", "address": "da:78:11:e1:a3:94", "link_netnsid": 1,
     "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"}},
    {"ifindex": 7, "ifname": "ext0", "link": "ext1", "link_type": "ether",
     "address": "aa:00:00:00:00:07", "linkinfo": {"info_kind": "veth"}},
]
ADDR = [
    {"ifindex": 1, "ifname": "lo", "addr_info": [
        {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifindex": 2, "ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "192.168.10.1", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "fe80::5054:ff:fe0a:1", "prefixlen": 64,
         "scope": "link"}]},
    {"ifindex": 3, "ifname": "cni0", "addr_info": [
        {"family": "inet", "local": "10.0.0.1", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "2001:db8::1", "prefixlen": 64, "scope": "global"}]},
]
FDB = [
    {"mac": "33:33:00:00:00:01", "ifname": "eth0", "flags": ["self"], "state": "permanent"},
    {"mac": "da:78:11:e1:a3:94", "ifname": "veth-pod1", "master": "cni0",
     "state": "permanent"},  # the port's own address: not behind it
    {"mac": "f6:1e:60:e6:54:06", "ifname": "veth-pod1", "master": "cni0", "state": "static"},
    {"mac": "0a:58:0a:00:00:09", "ifname": "veth-pod1", "master": "cni0"},  # learnt
    {"mac": "62:71:f7:93:ed:d7", "ifname": "flannel.1", "dst": "192.168.10.2",
     "flags": ["self"], "state": "permanent"},  # the VTEP's own table, not a bridge's
]


def test_devices_names_macs_kinds_ports_and_peers() -> None:
    links = node_links(LINK, ADDR, FDB)
    assert links.ifnames() == {1: "lo", 2: "eth0", 3: "cni0", 4: "flannel.1", 6: "veth-pod1",
                               7: "ext0"}
    eth0, pod = links.by_name("eth0"), links.by_name("veth-pod1")
    assert eth0 is not None and pod is not None
    assert eth0.mac == "52:54:00:0a:00:01"  # lower case, whatever iproute2 printed
    assert (eth0.kind, eth0.master, eth0.peer_ifindex, eth0.peer_netnsid) == ("veth", None, 3, 0)
    assert (pod.master, pod.peer_ifindex, pod.label) == ("cni0", 2, "veth-pod1@if2")
    assert links.by_name("ext0").label == "ext0@ext1"  # peer in the same namespace: its name
    flannel = links.by_name("flannel.1")
    assert (flannel.kind, flannel.vni, flannel.vxlan_port) == ("vxlan", 1, 8472)
    assert links.fdb == {"f6:1e:60:e6:54:06": "veth-pod1", "0a:58:0a:00:00:09": "veth-pod1"}


def test_own_addresses_leave_out_loopback_and_link_local() -> None:
    links = node_links(LINK, ADDR)
    assert links.own_addresses() == ["192.168.10.1", "10.0.0.1", "2001:db8::1"]
    assert [a.prefixlen for a in links.by_name("cni0").addresses] == [24, 64]


def test_addr_alone_is_enough_and_a_later_snapshot_wins() -> None:
    start = node_links(ADDR)  # ip -j addr has the link keys too
    assert start.ifnames() == {1: "lo", 2: "eth0", 3: "cni0"}
    later = node_links([{"ifindex": 3, "ifname": "cni0", "address": "32:03:7f:fe:b0:89"},
                        {"ifindex": 9, "ifname": "veth-new", "master": "cni0"}])
    merged = start.merged(later)
    assert merged.ifnames() == {1: "lo", 2: "eth0", 3: "cni0", 9: "veth-new"}
    assert merged.by_name("cni0").mac == "32:03:7f:fe:b0:89"


def test_retina_fixture_addresses() -> None:
    """The Retina fixture's ip -d -j addr show (notes: 1 lo, 2 flannel.1, 3 eth0, 4 cni0, 5/6
    pod veths with their peers at ifindex 2 of netns 1 and 2)."""
    text = (RETINA / "ip-resources.txt").read_text()
    start = text.index("/usr/sbin/ip -d -j addr show\n\n") + len("/usr/sbin/ip -d -j addr show")
    links = node_links(parse_json_array(text[start:], "fixture", "ip -d -j addr show"))
    assert links.ifnames() == {1: "lo", 2: "flannel.1", 3: "eth0", 4: "cni0",
                               5: "veth3f9a1c2e", 6: "veth7b20d4aa"}
    assert [(link.peer_ifindex, link.peer_netnsid) for link in links.links[4:]] == [(2, 1),
                                                                                   (2, 2)]
    assert "198.51.100.11" in links.own_addresses()


def test_files_and_bad_json(tmp_path: Path) -> None:
    (tmp_path / "link.json").write_text(json.dumps(LINK) + "\n")
    (tmp_path / "empty.json").write_text("")
    assert read_node_links(tmp_path / "link.json", tmp_path / "missing.json").ifnames()[3] == \
        "cni0"
    assert read_node_links(tmp_path / "empty.json") is None
    (tmp_path / "bad.json").write_text("Cannot open netlink socket: Operation not permitted\n")
    with pytest.raises(CaptureError, match=r"bad.json: not the JSON of ip -j link"):
        read_node_links(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text('{"ifindex": 1}')
    with pytest.raises(CaptureError, match="not the JSON array"):
        read_node_links(tmp_path / "obj.json")
