"""The overlay scenarios (vxlan-overlay, vxlan-overlay-v6, geneve-overlay, nvgre, ipip).

Every expected figure comes from the RFCs (791/8200 IP, 768 UDP, 793 TCP, 1071 checksums,
7348 VXLAN, 8926 Geneve, 2890/7637 NVGRE, 2003 IP-in-IP), from how Linux sets the fields it owns,
and from the scenario parameters; every capture is parsed from its bytes by tests/oracle.py or by
struct here, never by pktkit's own code.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from oracle import (
    CHECKSUM_PREFS,
    Layer,
    Record,
    checksum_ok,
    read_capture,
    tshark_fields,
    tshark_path,
    tshark_problems,
    walk,
)

from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.truth import load_truth
from pktkit.errors import UsageError

UNDERLAY_MTU = 1500
POD_TTL = 64  # Linux's default TTL, set by every pod
EPHEMERAL = range(32768, 60999 + 1)  # ip_local_port_range: VXLAN/Geneve source ports too
ETH, IPV4, IPV6, UDP, VXLAN, GENEVE_BASE, GRE_WITH_KEY = 14, 20, 40, 8, 8, 8, 8
SYSLOG_PORT = 514


@dataclass(frozen=True)
class Case:
    """What the RFCs and Linux say a scenario's frames must look like."""

    name: str
    flows: int
    overhead: int  # bytes over the inner Ethernet frame (IPIP: over the inner IP packet),
    #                Geneve options excluded (they are read from each header)
    outer_ttl: int | None  # None: inherited from the inner packet (ipip's tunl0)
    outer_df: int | None  # None: inherited from the inner packet
    chains: tuple[tuple[str, ...], ...]  # node/interface regexes of each tenant's forward path
    tunnels: tuple[str, ...]  # the tunnel devices (see the inner frame)


def bridged(veth_a: str, bridge: str, tunnel: str, veth_b: str) -> tuple[str, ...]:
    b, t = re.escape(bridge), re.escape(tunnel)
    return (f"node-a/{veth_a}", f"node-a/{b}", f"node-a/{t}", "node-a/eth0", "node-b/eth0",
            f"node-b/{t}", f"node-b/{b}", f"node-b/{veth_b}")


VXLAN_CHAINS = (bridged("veth-pod[13]", "cni0", "flannel.1", "veth-pod2"),
                bridged("veth-b[13]", "cni-b", "vxlan-b", "veth-b2"))
SINGLE = bridged("veth-pod[13]", "cni0", "{tunnel}", "veth-pod2")
CALI = "cali[0-9a-f]{11}"
CASES = {
    case.name: case for case in (
        Case("vxlan-overlay", 10, ETH + IPV4 + UDP + VXLAN, 64, 0, VXLAN_CHAINS,
             ("flannel.1", "vxlan-b")),
        Case("vxlan-overlay-v6", 10, ETH + IPV6 + UDP + VXLAN, 64, None, VXLAN_CHAINS,
             ("flannel.1", "vxlan-b")),
        Case("geneve-overlay", 5, ETH + IPV4 + UDP + GENEVE_BASE, 64, 0,
             (bridged("veth-pod[13]", "cni0", "genev_sys_6081", "veth-pod2"),),
             ("genev_sys_6081",)),
        # A gretap device: iproute2 turns path-MTU discovery on, hence DF on the outer header.
        Case("nvgre", 5, ETH + IPV4 + GRE_WITH_KEY, 64, 1,
             (bridged("veth-pod[13]", "cni0", "nvgre0", "veth-pod2"),), ("nvgre0",)),
        # tunl0 with every parameter zero: ip_tunnel_xmit copies TTL and DF from the inner packet.
        Case("ipip", 5, IPV4, None, None,
             ((f"node-a/{CALI}", "node-a/tunl0", "node-a/eth0", "node-b/eth0", "node-b/tunl0",
               f"node-b/{CALI}"),), ("tunl0",)),
    )
}
NAMES = list(CASES)


# -- reading a generated run --------------------------------------------------------------------


@dataclass
class Seen:
    """One frame of one capture file, its truth entry and its decoded headers."""

    entry: dict[str, Any]
    record: Record
    layers: list[Layer]

    @property
    def label(self) -> str:
        return f"{self.entry['node']}/{self.entry['interface']}"

    @property
    def ips(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.name in ("ipv4", "ipv6")]

    @property
    def inner(self) -> Layer:
        return self.ips[-1]

    @property
    def outer(self) -> Layer:
        return self.ips[0]

    def first(self, name: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.name == name), None)


@dataclass
class Run:
    out: Path
    truth: dict[str, Any]
    captures: dict[str, list[Seen]]  # file name -> frames in file order

    @property
    def frames(self) -> Iterator[Seen]:
        for seen in self.captures.values():
            yield from seen

    def at(self, regex: str) -> list[Seen]:
        return [s for s in self.frames if re.fullmatch(regex, s.label)]

    def by_packet(self) -> dict[int, list[Seen]]:
        groups: dict[int, list[Seen]] = defaultdict(list)
        for seen in self.frames:
            groups[seen.entry["packet_id"]].append(seen)
        return groups


def load_run(out: Path) -> Run:
    truth = load_truth(out)
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in truth["packets"]:
        entries[entry["capture"]].append(entry)
    captures = {}
    for name in truth["captures"]:
        records = read_capture(out / name)
        mine = sorted(entries[name], key=lambda e: e["frame"])
        assert [e["frame"] for e in mine] == list(range(1, len(records) + 1)), name
        captures[name] = [Seen(e, r, walk(r.data, r.linktype)) for e, r in zip(mine, records,
                                                                                 strict=True)]
    return Run(out, truth, captures)


Generate = Callable[..., Run]


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Generate:
    cache: dict[tuple[Any, ...], Run] = {}

    def run(name: str, flows: int | None = None, **overrides: Any) -> Run:
        key = (name, flows, tuple(sorted(overrides.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(name)
            scenario = make_scenario(name, seed=1, flows=flows,
                                     overrides={k: str(v) for k, v in overrides.items()})
            generate(scenario, out)
            cache[key] = load_run(out)
        return cache[key]

    return run


@pytest.fixture(params=NAMES)
def case_run(request: pytest.FixtureRequest, make_run: Generate) -> tuple[Case, Run]:
    case = CASES[request.param]
    return case, make_run(case.name, case.flows)


# -- what a frame says, read independently ------------------------------------------------------


def l4_ports(ip: Layer) -> tuple[int | None, int | None]:
    """TCP/UDP ports, or the ICMP echo identifier twice; None past the first fragment."""
    if ip.fields.get("frag_offset"):
        return None, None
    header = IPV6 if ip.name == "ipv6" else (ip.data[0] & 0x0F) * 4
    proto, l4 = ip.fields["proto"], ip.data[header:]
    if proto in (6, 17):
        sport, dport = struct.unpack_from("!HH", l4)
        return sport, dport
    if (proto, l4[0]) in ((1, 0), (1, 8), (58, 128), (58, 129)):
        ident = struct.unpack_from("!H", l4, 4)[0]
        return ident, ident
    return None, None


def fragment_label(ip: Layer) -> str:
    if ip.name == "ipv6" or (not ip.fields["mf"] and not ip.fields["frag_offset"]):
        return "none"
    return "non-first" if ip.fields["frag_offset"] else "first"


def encap_name(seen: Seen) -> str:
    names = [layer.name for layer in seen.layers]
    for header, encap in (("vxlan", "vxlan"), ("geneve", "geneve"), ("gre", "nvgre")):
        if header in names:
            return encap
    return "ipip" if len(seen.ips) == 2 else "none"


def vni(seen: Seen) -> int | None:
    for name in ("vxlan", "geneve"):
        layer = seen.first(name)
        if layer is not None:
            return int(layer.fields["vni"])
    gre = seen.first("gre")
    return None if gre is None else int(gre.fields["key"]) >> 8  # RFC 7637: VSID, then FlowID


def inner_payload(seen: Seen) -> bytes:
    """The tunnelled frame: the inner Ethernet frame, or the inner IP packet for IPIP."""
    eths = [layer for layer in seen.layers if layer.name == "eth"]
    return eths[-1].data if len(eths) > 1 else seen.inner.data


def added_bytes(seen: Seen) -> int:
    """What the tunnel added: over the inner frame, or (IPIP) over the inner IP packet."""
    if encap_name(seen) == "ipip":
        return len(seen.outer.data) - len(seen.inner.data)
    return len(seen.record.data) - len(inner_payload(seen))


def geneve_options(seen: Seen) -> list[tuple[int, int, bytes]]:
    """The option TLVs (class, type, data) of RFC 8926 section 3.5, checked to fill opt_len."""
    geneve = seen.first("geneve")
    assert geneve is not None
    opt_len, data, tlvs, at = int(geneve.fields["opt_len"]), geneve.data, [], 8
    while at < 8 + opt_len:
        cls, typ, length = struct.unpack_from("!HBB", data, at)
        size = (length & 0x1F) * 4
        tlvs.append((cls, typ, data[at + 4 : at + 4 + size]))
        at += 4 + size
    assert at == 8 + opt_len, "option TLVs must fill the option length exactly"
    return tlvs


def expected_overhead(case: Case, seen: Seen) -> int:
    geneve = seen.first("geneve")
    return case.overhead + (int(geneve.fields["opt_len"]) if geneve is not None else 0)


def pod_mtu(case: Case, run: Run) -> int:
    """The tunnel device's MTU: the underlay's minus the tunnel overhead (the inner Ethernet
    header counts in the overhead and the outer one does not: they cancel)."""
    sample = next(s for s in run.at("node-a/eth0"))
    return UNDERLAY_MTU - expected_overhead(case, sample)


def role(case: Case, seen: Seen) -> str:
    interface = seen.entry["interface"]
    if interface == "eth0":
        return "underlay"
    return "tunnel" if interface in case.tunnels else "pod side"


def fifth(seen: Seen) -> tuple[Any, ...]:
    """The innermost 5-tuple as truth.json states it: ports are TCP's and UDP's only."""
    ip = seen.inner
    ports = l4_ports(ip) if ip.fields["proto"] in (6, 17) else (None, None)
    return (ip.fields["src"], ip.fields["dst"], ip.fields["proto"], *ports)


# -- every scenario -----------------------------------------------------------------------------


def test_every_frame_agrees_with_its_truth_entry(case_run: tuple[Case, Run]) -> None:
    _, run = case_run
    for seen in run.frames:
        e, where = seen.entry, f"{seen.entry['capture']} frame {seen.entry['frame']}"
        assert e["wire_len"] == seen.record.orig_len == len(seen.record.data), where
        assert e["encap"] == encap_name(seen), where
        assert e["vni"] == vni(seen), where
        assert e["overhead_bytes"] == (0 if e["encap"] == "none" else added_bytes(seen)), where
        assert (e["src"], e["dst"], e["proto"], e["sport"], e["dport"]) == fifth(seen), where
        assert e["fragment"] == fragment_label(seen.inner), where
        if e["encap"] == "none":
            assert (e["outer_src"], e["outer_dst"], e["outer_sport"], e["outer_dport"]) == (
                None, None, None, None), where
            continue
        udp = seen.layers[2] if seen.layers[2].name == "udp" else None
        outer_ports = (udp.fields["sport"], udp.fields["dport"]) if udp else (None, None)
        assert (e["outer_src"], e["outer_dst"], e["outer_sport"], e["outer_dport"]) == (
            seen.outer.fields["src"], seen.outer.fields["dst"], *outer_ports), where


def test_tunnel_adds_exactly_its_rfc_overhead_to_what_the_tunnel_device_saw(
        case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    tunnel = "|".join(re.escape(t) for t in case.tunnels)
    for node in ("node-a", "node-b"):
        device: dict[int, list[Seen]] = defaultdict(list)
        for seen in run.at(f"{node}/({tunnel})"):
            device[seen.entry["packet_id"]].append(seen)
        wire: dict[int, list[Seen]] = defaultdict(list)
        for seen in run.at(f"{node}/eth0"):
            wire[seen.entry["packet_id"]].append(seen)
        assert wire and wire.keys() == device.keys()
        for packet_id, frames in wire.items():
            inside = device[packet_id]
            assert len(frames) == len(inside)  # one tunnel packet per (fragment) frame
            for outer, seen in zip(frames, inside, strict=True):
                assert added_bytes(outer) == expected_overhead(case, outer)
                assert inner_payload(outer) == seen.record.data  # the device's frame, intact
                assert len(outer.record.data) == len(seen.record.data) + (
                    expected_overhead(case, outer) + (ETH if case.name == "ipip" else 0))


def test_every_checksum_is_valid(case_run: tuple[Case, Run]) -> None:
    _, run = case_run
    for seen in run.frames:
        where = f"{seen.entry['capture']} frame {seen.entry['frame']}"
        for layer in seen.layers:
            if layer.name == "ipv4":
                assert layer.fields["header_ok"] == 1, where
            if layer.name in ("tcp", "udp", "icmp", "icmpv6"):
                assert layer.fields["checksum_ok"] == 1, where
        udp = seen.layers[2] if len(seen.layers) > 2 and seen.layers[2].name == "udp" else None
        if udp is not None and seen.entry["encap"] != "none":
            # RFC 8200 8.1: mandatory over IPv6 (udp6zerocsumtx is off); the vxlan device's
            # udp_csum is on
            if seen.outer.name == "ipv6" or seen.entry["encap"].startswith("vxlan"):
                assert udp.fields["csum"] != 0, where
            else:  # geneve leaves it zero over IPv4 (no udpcsum), as RFC 8926 allows
                assert udp.fields["csum"] == 0, where


def test_ttl_falls_by_one_per_routing_node_and_the_outer_header_is_linuxs(
        case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    for seen in run.frames:
        where = f"{seen.entry['capture']} frame {seen.entry['frame']}"
        place = role(case, seen)
        if place == "pod side":
            expected = POD_TTL if seen.entry["direction"] != "out" else POD_TTL - 2
        else:
            expected = POD_TTL - 1  # after the sending node's routing, before the receiver's
        assert seen.inner.fields["ttl"] == expected, where
        if place == "underlay":
            inner_df = seen.inner.fields.get("df")
            assert seen.outer.fields["ttl"] == (case.outer_ttl or seen.inner.fields["ttl"]), where
            if seen.outer.name == "ipv4":
                assert seen.outer.fields["df"] == (
                    inner_df if case.outer_df is None else case.outer_df), where
                assert seen.outer.fields["mf"] == seen.outer.fields["frag_offset"] == 0, where


def test_tcp_fills_the_pod_mtu_and_the_underlay_exactly(case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    mtu = pod_mtu(case, run)
    tcp = [s for s in run.frames if s.inner.fields["proto"] == 6]
    assert max(s.inner.fields["len"] for s in tcp) == mtu
    assert max(len(s.record.data) for s in run.at("node-./eth0")) == ETH + UNDERLAY_MTU
    for seen in tcp:
        layer = seen.layers[-1]
        assert layer.name == "tcp"
        if layer.fields["flags"] & 0x02:  # SYN: MSS option (kind 2) = MTU - 20 - 20
            assert layer.data[20:24] == struct.pack("!BBH", 2, 4, mtu - 40)


def test_oversized_datagrams_are_fragmented_on_the_way_into_the_tunnel(
        case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    mtu = pod_mtu(case, run)
    originals = [s for s in run.frames if s.entry["interface"] not in case.tunnels
                 and s.entry["interface"] != "eth0" and s.entry["direction"] != "out"
                 and s.entry["dport"] == SYSLOG_PORT]
    assert originals
    packets = run.by_packet()
    for original in originals:
        ip, sightings = original.inner.fields, packets[original.entry["packet_id"]]
        assert (ip["len"], ip["df"], ip["mf"], ip["frag_offset"]) == (UNDERLAY_MTU, 0, 0, 0)
        pieces = [s for s in sightings
                  if s.label.startswith("node-a/") and role(case, s) == "tunnel"]
        assert len(pieces) >= 2
        data, offset = b"", 0
        for index, piece in enumerate(pieces):
            f = piece.inner.fields
            last = index == len(pieces) - 1
            assert (f["id"], f["frag_offset"], f["mf"], f["df"]) == (ip["id"], offset,
                                                                      int(not last), 0)
            assert f["len"] <= mtu and f["header_ok"] == 1
            payload = piece.inner.data[IPV4 : f["len"]]
            assert last or len(payload) % 8 == 0
            assert piece.entry["fragment"] == ("first" if index == 0 else "non-first")
            data, offset = data + payload, offset + len(payload)
        assert IPV4 + len(data) == UNDERLAY_MTU
        assert data == original.inner.data[IPV4:UNDERLAY_MTU]
        pseudo = original.inner.data[12:20] + struct.pack("!xBH", 17, len(data))
        assert checksum_ok(pseudo + data)  # the reassembled datagram's UDP checksum
        for node, direction in (("node-a", "out"), ("node-b", "in")):
            wire = [s for s in sightings if s.label == f"{node}/eth0"]
            assert len(wire) == len(pieces)  # each fragment tunnelled on its own
            assert all(s.entry["direction"] == direction for s in wire)
        delivered = [s for s in sightings
                     if role(case, s) == "pod side" and s.entry["direction"] == "out"]
        assert delivered and all(s.inner.fields["ttl"] == POD_TTL - 2 for s in delivered)


def test_tcp_sequence_and_acknowledgement_numbers_are_continuous(
        case_run: tuple[Case, Run]) -> None:
    _, run = case_run
    for capture, frames in run.captures.items():
        next_seq: dict[tuple[Any, ...], int] = {}
        last_ack: dict[tuple[Any, ...], int] = {}
        for seen in frames:
            if seen.inner.fields["proto"] != 6:
                continue
            tcp = seen.layers[-1].fields
            me = (seen.inner.fields["src"], tcp["sport"], seen.inner.fields["dst"], tcp["dport"])
            peer = (me[2], me[3], me[0], me[1])
            syn, fin, ack = tcp["flags"] & 0x02, tcp["flags"] & 0x01, tcp["flags"] & 0x10
            if syn:
                next_seq[me] = tcp["seq"]
            assert tcp["seq"] == next_seq[me], f"{capture} frame {seen.entry['frame']}"
            next_seq[me] = (next_seq[me] + tcp["payload_len"] + bool(syn) + bool(fin)) % 2**32
            if ack:
                assert tcp["ack"] == next_seq[peer] or (
                    last_ack.get(me, tcp["ack"]) <= tcp["ack"] < next_seq[peer])
                last_ack[me] = tcp["ack"]
        for me, ack in last_ack.items():  # every byte and FIN acknowledged by the end
            assert ack == next_seq[(me[2], me[3], me[0], me[1])], capture


def test_each_packet_is_seen_along_its_path_in_order_and_in_time(
        case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    chains = [chain for forward in case.chains for chain in (forward, forward[::-1])]
    for packet_id, sightings in run.by_packet().items():
        by_hop: dict[int, list[Seen]] = defaultdict(list)
        for seen in sightings:
            by_hop[seen.entry["hop"]].append(seen)
        assert sorted(by_hop) == list(range(len(by_hop)))
        labels = [by_hop[hop][0].label for hop in sorted(by_hop)]
        assert all(len({s.label for s in by_hop[hop]}) == 1 for hop in by_hop)
        # Every capture point of the path, in order: nothing is lost on the way.
        assert any(len(labels) == len(chain) and all(
            re.fullmatch(pattern, label) for pattern, label in zip(chain, labels, strict=True))
            for chain in chains), (packet_id, labels)
        ends = [max(s.entry["true_ts_ns"] for s in by_hop[hop]) for hop in sorted(by_hop)]
        starts = [min(s.entry["true_ts_ns"] for s in by_hop[hop]) for hop in sorted(by_hop)]
        assert all(a <= b for a, b in zip(ends, starts[1:], strict=False)), packet_id


def test_flows_cycle_through_http_dns_ping_and_the_oversized_datagrams(
        case_run: tuple[Case, Run]) -> None:
    _, run = case_run
    by_vni: dict[int | None, set[tuple[int, Any]]] = defaultdict(set)
    for seen in run.at("node-a/eth0"):
        if seen.entry["fragment"] != "non-first":
            dport = "echo" if seen.entry["proto"] == 1 else seen.entry["dport"]
            by_vni[seen.entry["vni"]].add((seen.entry["proto"], dport))
    every_kind = {(6, 80), (6, 8080), (17, 53), (1, "echo"), (17, SYSLOG_PORT)}
    assert by_vni and all(every_kind <= kinds for kinds in by_vni.values())  # every tenant


def test_tshark_finds_nothing_wrong_and_reads_the_vnis_of_truth(
        case_run: tuple[Case, Run]) -> None:
    case, run = case_run
    tshark_path()
    wire = [name for name in run.captures if name.endswith("-eth0.pcap")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(tshark_problems, [run.out / name for name in run.captures]))
        rows = dict(zip(wire, pool.map(lambda name: tshark_fields(
            run.out / name, ["frame.number", "vxlan.vni", "geneve.vni", "gre.key", "ip.proto"]),
            wire), strict=True))
    assert [p for found in problems for p in found] == []
    for name, found in rows.items():
        assert len(found) == len(run.captures[name])
        for row, seen in zip(found, run.captures[name], strict=True):
            number, vxlan_vni, geneve_vni, gre_key, protos = (row + [""] * 5)[:5]
            read = [int(v, 0) for v in (vxlan_vni + "," + geneve_vni).split(",") if v]
            read += [int(k, 0) >> 8 for k in gre_key.split(",") if k]
            assert (read[-1] if read else None) == seen.entry["vni"], f"{name} frame {number}"
            if case.name == "ipip":
                assert protos.split(",")[0] == "4"


# -- per encapsulation --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vxlan-overlay", "vxlan-overlay-v6"])
def test_vxlan_header_vnis_ports_and_overlapping_tenants(make_run: Generate, name: str) -> None:
    run = make_run(name, CASES[name].flows)
    port_vni = {8472: 1, 4789: 2}  # tenant A (flannel.1) and tenant B (vxlan-b) defaults
    device_vni = {"flannel.1": 1, "vxlan-b": 2}
    tuples = set()
    for packet_id, sightings in run.by_packet().items():
        wire = [s for s in sightings if s.entry["interface"] == "eth0"]
        vnis = set()
        for seen in wire:
            udp, vxlan = seen.layers[2].fields, seen.layers[3].fields
            assert (vxlan["flags"], vxlan["reserved1"], vxlan["reserved2"]) == (0x08, 0, 0)
            assert port_vni[int(udp["dport"])] == vxlan["vni"]
            assert int(udp["sport"]) in EPHEMERAL
            vnis.add(vxlan["vni"])
            tuples.add((vxlan["vni"], seen.inner.fields["src"], seen.inner.fields["dst"]))
        devices = {s.entry["interface"] for s in sightings} & device_vni.keys()
        assert len(vnis) == 1 and {device_vni[d] for d in devices} == vnis, packet_id
    assert {(1, "10.0.0.2", "10.0.0.3"), (2, "10.0.0.2", "10.0.0.3")} <= tuples


@pytest.mark.parametrize("name", ["vxlan-overlay", "vxlan-overlay-v6", "geneve-overlay"])
def test_outer_source_port_is_a_hash_of_the_inner_flow(make_run: Generate, name: str) -> None:
    """One port per inner flow and direction, another for every other flow. Fragments are
    hashed on their addresses alone (the flow dissector does not read ports past the IP header
    of a fragment), so both tenants' oversized flows, 10.0.0.4 -> 10.0.0.3, share one."""
    run = make_run(name, CASES[name].flows)
    ports: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for seen in run.at("node-a/eth0"):
        ip = seen.inner
        key = (ip.fields["src"], ip.fields["dst"], ip.fields["proto"]) + (
            () if fragment_label(ip) != "none" else l4_ports(ip))  # ICMP echo: its identifier
        ports[key].add(int(seen.layers[2].fields["sport"]))
    assert all(len(found) == 1 for found in ports.values())
    chosen = [port for found in ports.values() for port in found]
    assert all(port in EPHEMERAL for port in chosen)
    assert len(set(chosen)) == len(chosen) > 4


def test_vxlan_over_ipv6_adds_70_bytes_with_checksummed_udp(make_run: Generate) -> None:
    run = make_run("vxlan-overlay-v6", CASES["vxlan-overlay-v6"].flows)
    for seen in run.at("node-./eth0"):
        ip6, udp = seen.layers[1], seen.layers[2]
        assert struct.unpack_from("!H", seen.record.data, 12)[0] == 0x86DD
        assert (ip6.name, ip6.fields["proto"], ip6.fields["ttl"]) == ("ipv6", 17, 64)
        assert {ip6.fields["src"], ip6.fields["dst"]} == {"fd00:10::1", "fd00:10::2"}
        assert len(seen.record.data) == len(inner_payload(seen)) + 70
        assert udp.fields["csum"] != 0 and udp.fields["checksum_ok"] == 1
        assert seen.inner.fields["len"] <= UNDERLAY_MTU - 70


def test_geneve_carries_option_tlvs_and_the_configured_vni(make_run: Generate) -> None:
    run = make_run("geneve-overlay", flows=3, vni=0xABCDE)
    for seen in run.at("node-./eth0"):
        udp, geneve = seen.layers[2].fields, seen.first("geneve")
        assert geneve is not None and int(udp["dport"]) == 6081
        assert geneve.data[0] >> 6 == 0  # version 0
        assert (geneve.fields["vni"], geneve.fields["proto"]) == (0xABCDE, 0x6558)
        options = geneve_options(seen)
        assert options and all(len(data) % 4 == 0 for _, _, data in options)
        critical = any(typ & 0x80 for _, typ, _ in options)
        assert bool(geneve.data[1] & 0x40) == critical and geneve.data[1] & 0xBF == 0
        assert len(seen.record.data) == len(inner_payload(seen)) + ETH + IPV4 + UDP + 8 + sum(
            4 + len(data) for _, _, data in options)
    tshark_path()
    rows = tshark_fields(run.out / "node-a-eth0.pcap", ["geneve.vni", "geneve.option.class"])
    assert rows and all(int(row[0], 0) == 0xABCDE and row[1] for row in rows)


@pytest.mark.parametrize(("vsid", "flow_id"), [(None, None), (0xABCDEF, 0x5A)])
def test_nvgre_key_is_vsid_and_flow_id(make_run: Generate, vsid: int | None,
                                       flow_id: int | None) -> None:
    overrides = {} if vsid is None else {"vsid": vsid, "flow_id": flow_id}
    run = make_run("nvgre", 3, **overrides)
    vsid, flow_id = (5001, 0x2A) if vsid is None else (vsid, flow_id)
    for seen in run.at("node-./eth0"):
        gre = seen.layers[2].fields
        assert seen.outer.fields["proto"] == 47
        assert (gre["flags"], gre["proto"], gre["header_len"]) == (0x2000, 0x6558, 8)
        assert gre["key"] == (vsid << 8) | flow_id
        assert len(seen.record.data) == len(inner_payload(seen)) + 42


def test_ipip_is_calico_shaped(make_run: Generate) -> None:
    run = make_run("ipip", CASES["ipip"].flows)
    for name, frames in run.captures.items():
        assert frames and {s.record.linktype for s in frames} == {
            101 if name.endswith("-tunl0.pcap") else 1}  # raw IP on tunl0
    for seen in run.at(f"node-./{CALI}"):
        eth = seen.layers[0].fields
        gateway = eth["dst"] if seen.entry["direction"] == "in" else eth["src"]
        assert gateway == "ee:ee:ee:ee:ee:ee"
    for seen in run.at("node-./eth0"):
        assert seen.outer.fields["proto"] == 4 and len(seen.ips) == 2
        assert len(seen.record.data) == ETH + IPV4 + len(seen.inner.data)
    blocks = [ipaddress.ip_network("10.48.29.64/26"), ipaddress.ip_network("10.48.115.128/26")]
    assert all(any(ipaddress.ip_address(s.entry["src"]) in block for block in blocks)
               for s in run.at("node-./tunl0"))


def test_overrides_reach_the_wire(make_run: Generate) -> None:
    run = make_run("vxlan-overlay", 2, vni_a=4096, vni_b=0xFFFFFF, tenant_b_cidr="10.1.0.0/24")
    seen = {(s.layers[2].fields["dport"], s.layers[3].fields["vni"], s.inner.fields["src"][:5])
            for s in run.at("node-a/eth0")}
    assert seen == {(8472, 4096, "10.0."), (4789, 0xFFFFFF, "10.1.")}


@pytest.mark.parametrize(("name", "key", "value", "words"), [
    ("vxlan-overlay", "vni_a", "16777216", ["vni_a", "0..16777215"]),
    ("vxlan-overlay", "port_b", "0", ["port_b", "1..65535"]),
    ("vxlan-overlay", "node_a_ip", "fd00::1", ["node_a_ip", "IPv4"]),
    ("vxlan-overlay-v6", "node_b_ip", "192.168.10.2", ["node_b_ip", "IPv6"]),
    ("vxlan-overlay", "tenant_a_cidr", "10.0.0.0/30", ["tenant_a_cidr", "/29"]),
    ("geneve-overlay", "vni", "-1", ["vni", "0..16777215"]),
    ("nvgre", "flow_id", "256", ["flow_id", "0..255"]),
    ("ipip", "underlay_mtu", "100", ["underlay_mtu", "1280..9216"]),
    ("nvgre", "pod_cidr", "10.0.0.1/24", ["pod_cidr", "CIDR"]),
    ("ipip", "node_b_ip", "192.168.10.1", ["192.168.10.1"]),
])
def test_bad_parameters_are_one_line_errors(name: str, key: str, value: str,
                                            words: list[str]) -> None:
    with pytest.raises(UsageError) as error:
        make_scenario(name, overrides={key: value})
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_default_vxlan_capture_stays_small(tmp_path: Path) -> None:
    result = generate(make_scenario("vxlan-overlay"), tmp_path)
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    # Ten flows (every kind on both tenants) within a share of the 5 MB captures/ budget.
    assert result.packets > 200 and total < 600_000
    counts = Counter(e["encap"] for e in load_truth(tmp_path)["packets"])
    assert counts["vxlan"] > 0 and counts["none"] > 0


def test_any_capture_records_each_device_direction_and_node_clock(tmp_path: Path) -> None:
    """``tcpdump -i any`` per node: SLL2 packet type and ifindex as truth says, node-b's clock
    ahead by the offset. tshark must read it cleanly with TCP reassembly off: every segment is
    in each file four times (veth, bridge, tunnel device, eth0), which tshark would otherwise
    take for retransmissions overlapping reassembled data."""
    offset_ns = 37_500_000
    generate(make_scenario("vxlan-overlay", clock_offset_s=offset_ns / 1e9), tmp_path,
             fmt="pcapng", linktype="sll2")
    truth = load_truth(tmp_path)
    assert sorted(truth["captures"]) == ["node-a-any.pcapng", "node-b-any.pcapng"]
    ifindexes: dict[tuple[str, str], set[int]] = defaultdict(set)
    for capture in truth["captures"]:
        entries = sorted((e for e in truth["packets"] if e["capture"] == capture),
                         key=lambda e: e["frame"])
        for entry, record in zip(entries, read_capture(tmp_path / capture), strict=True):
            sll = walk(record.data, record.linktype)[0]
            assert record.linktype == 276 and sll.fields["proto"] == 0x0800
            assert sll.fields["pkttype"] == {"in": 0, "other": 3, "out": 4}[entry["direction"]]
            if entry["interface"].startswith("veth"):  # a bridge's port: for another MAC
                assert entry["direction"] in ("other", "out")
            ifindexes[(entry["node"], entry["interface"])].add(int(sll.fields["ifindex"]))
            skew = offset_ns if entry["node"] == "node-b" else 0
            assert record.ts_ns == entry["ts_ns"] == entry["true_ts_ns"] + skew
    assert all(len(found) == 1 for found in ifindexes.values())
    for node in ("node-a", "node-b"):
        mine = [next(iter(v)) for (n, _), v in ifindexes.items() if n == node]
        assert len(set(mine)) == len(mine) > 4
    tshark_path()
    for capture in truth["captures"]:
        rows = tshark_fields(tmp_path / capture, ["frame.number", "_ws.expert.message"], extra=(
            *CHECKSUM_PREFS, "-o", "tcp.desegment_tcp_streams:FALSE",
            "-Y", "_ws.malformed || _ws.expert.severity >= 0x00800000"))
        assert rows == []
