"""The lab's truth.json against an independent reading of its captures (tshark, a plain pcap
reader), and its NAT flows against the kernel's conntrack dumps (read by the analyzer's
parser, not the lab's), for every scenario. Skipped without root and network namespaces."""

from __future__ import annotations

import collections
import itertools
import os
from typing import Any

import pytest
from conftest import LAB_SCENARIOS
from lab_checks import ICMP_ERRORS, LabOutput, marker_flow, tshark

from pktkit.analysis.conntrack import parse_conntrack
from pktkit.craft.truth import PACKET_FIELDS
from pktkit.lab.netns import lab_namespaces

FIELDS = ["frame.number", "frame.len", "sll.pkttype", "sll.ifindex", "eth.src", "eth.dst",
          "ip.src", "ip.dst", "ip.proto", "ip.id", "ip.flags.mf", "ip.frag_offset",
          "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "vxlan.vni", "icmp.type"]


def outer_key(row: dict[str, list[str]]) -> tuple[str, str, str] | None:
    """(source, destination, IP id) of a frame's outermost IPv4 header when it is a fragment."""
    if not row["ip.src"] or (row["ip.flags.mf"][0] != "1" and row["ip.frag_offset"][0] == "0"):
        return None
    return (row["ip.src"][0], row["ip.dst"][0], row["ip.id"][0])


def expected_from_tshark(row: dict[str, list[str]], entry: dict[str, Any]) -> dict[str, Any]:
    """What tshark says of the fields the truth states for this frame (a non-first piece of a
    fragmented VXLAN packet: its own, as every frame's: no tunnel, the outer IP header)."""
    tunnels = len(row["vxlan.vni"])
    ips = row["ip.src"]
    error = bool(set(row["icmp.type"]) & ICMP_ERRORS)
    inner = min(tunnels, len(ips) - 1) if ips else None
    mf, off = row["ip.flags.mf"], [int(x) * 8 for x in row["ip.frag_offset"]]
    fragmented = next((i for i in range(0, (inner or 0) + 1)
                       if i < len(mf) and (mf[i] == "1" or off[i])), None)
    got: dict[str, Any] = {"wire_len": int(row["frame.len"][0]),
                           "vni": int(row["vxlan.vni"][-1]) if tunnels else None,
                           "encap": "vxlan" if tunnels else "none"}
    got["fragment"] = ("none" if fragmented is None
                       else "non-first" if off[fragmented] else "first")
    if inner is not None:
        got.update(src=ips[inner], dst=row["ip.dst"][inner], proto=int(row["ip.proto"][inner]))
        if tunnels:
            got.update(outer_src=ips[0], outer_dst=row["ip.dst"][0])
    if entry["sport"] is not None and not error:
        ports = (row["tcp.srcport"], row["tcp.dstport"]) if entry["proto"] == 6 else \
            (row["udp.srcport"][tunnels:], row["udp.dstport"][tunnels:])
        got.update(sport=int(ports[0][0]), dport=int(ports[1][0]))
    return got


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_truth_schema_and_one_entry_per_frame(lab_run: Any, scenario: str) -> None:
    run: LabOutput = lab_run(scenario)
    assert run.truth["scenario"] == scenario
    assert set(run.truth) >= {"scenario", "seed", "params", "packets", "captures", "nat_flows"}
    assert run.truth["captures"] == [f"{n}-{i}.pcap" for n in run.nodes for i in ("any", "eth0")]
    for capture in run.truth["captures"]:
        records = run.records(capture)
        entries = run.entries(capture)
        assert [e["frame"] for e in entries] == list(range(1, len(records) + 1)), capture
        assert all(tuple(e) == PACKET_FIELDS for e in entries)
        assert all(e["ts_ns"] == e["true_ts_ns"] for e in entries)  # one kernel clock
        assert [r.ts_ns for r in records] == [e["ts_ns"] for e in entries]
    mine = f"pktkit-lab-{os.getpid()}-"
    assert not [n for n in lab_namespaces() if n.startswith(mine)]  # the run left none


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_truth_fields_agree_with_tshark(lab_run: Any, scenario: str) -> None:
    run: LabOutput = lab_run(scenario)
    checked: collections.Counter[str] = collections.Counter()
    for node in run.nodes:
        names = run.ifnames(node)
        eth0_mac = next(link["address"] for link in run.links(node) if link["ifname"] == "eth0")
        for capture in (f"{node}-any.pcap", f"{node}-eth0.pcap"):
            rows = tshark(run.path(capture), FIELDS)
            entries = run.entries(capture)
            for row, entry in zip(rows, entries, strict=True):
                assert entry["node"] == node
                if row["sll.ifindex"]:
                    assert entry["interface"] == names[int(row["sll.ifindex"][0])]
                    direction = {"0": "in", "1": "in", "2": "in", "3": "other",
                                 "4": "out"}[row["sll.pkttype"][0]]
                else:
                    assert entry["interface"] == "eth0"
                    direction = ("out" if row["eth.src"][0] == eth0_mac else
                                 "in" if row["eth.dst"][0] == eth0_mac else "other")
                assert entry["direction"] == direction, (capture, entry["frame"])
                checked[f"direction {direction}"] += 1
                for key, value in expected_from_tshark(row, entry).items():
                    assert entry[key] == value, (capture, entry["frame"], key)
                    checked[key] += 1
            # Outer pieces: the packet (and hop) of the first piece with the same outer
            # addresses and IP id, and its VNI as the overlay's; no VNI of their own.
            firsts = {outer_key(r): (e, int(r["vxlan.vni"][-1]))
                      for r, e in zip(rows, entries, strict=True)
                      if r["vxlan.vni"] and outer_key(r)}
            for row, entry in zip(rows, entries, strict=True):
                if not row["vxlan.vni"] and outer_key(row) in firsts:
                    first, vni = firsts[outer_key(row)]
                    assert (entry["packet_id"], entry["hop"], entry["overlay_encap"],
                            entry["overlay_vni"], entry["vni"]) == (
                        first["packet_id"], first["hop"], "vxlan", vni, None), \
                        (capture, entry["frame"])
                    checked["outer-piece"] += 1
    assert checked["src"] and checked["wire_len"] and checked["direction out"]
    assert bool(checked["outer-piece"]) == (scenario == "vxlan-overlay")
    if scenario != "k8s-nodeport":  # pods' frames through a bridge port: packet type 3
        assert checked["direction other"]


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_flows_follow_the_payload_markers(lab_run: Any, scenario: str) -> None:
    """Every frame belongs to a flow; a frame holding a marker (except an ICMP error, which
    quotes another packet's) belongs to the marker's flow, read here from the raw bytes."""
    run: LabOutput = lab_run(scenario)
    marked = 0
    for capture in run.truth["captures"]:
        rows = tshark(run.path(capture), ["icmp.type"])
        for record, entry, row in zip(run.records(capture), run.entries(capture), rows,
                                      strict=True):
            assert entry["flow_id"] > 0, (capture, entry["frame"])
            flow = marker_flow(record.data)
            if flow is not None and not set(row["icmp.type"]) & ICMP_ERRORS:
                assert entry["flow_id"] == flow, (capture, entry["frame"])
                marked += 1
    assert marked >= len(run.truth["packets"]) / 5  # the rest: handshakes, ACKs, FINs


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_packets_are_consistent(lab_run: Any, scenario: str) -> None:
    """One flow per packet; hops 0..k in time order; no point passed twice (fragments of one
    datagram at one point share a hop); every flow of the plan completed and was seen."""
    run: LabOutput = lab_run(scenario)
    packets = collections.defaultdict(list)
    for entry in run.truth["packets"]:
        packets[entry["packet_id"]].append(entry)
    assert sorted(packets) == list(range(1, len(packets) + 1))
    for sightings in packets.values():
        assert len({s["flow_id"] for s in sightings}) == 1
        hops = sorted({s["hop"] for s in sightings})
        assert hops == list(range(len(hops)))
        first_ts = {h: min(s["ts_ns"] for s in sightings if s["hop"] == h) for h in hops}
        assert all(first_ts[a] <= first_ts[b] for a, b in itertools.pairwise(hops))
        points = collections.Counter((s["capture"], s["interface"], s["direction"], s["hop"])
                                     for s in sightings if s["fragment"] == "none")
        assert max(points.values(), default=1) == 1
    flows = run.lab["flows"]
    assert all(f["result"]["ok"] for f in flows), [f for f in flows if not f["result"]["ok"]]
    assert {f["flow_id"] for f in flows} <= {e["flow_id"] for e in run.truth["packets"]}


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_nat_flows_confirmed_by_conntrack(lab_run: Any, scenario: str) -> None:
    """Every truth NAT flow is a conntrack entry of a node (same original and translated
    tuples, read here by the analyzer's parser), every translated entry is a truth NAT flow,
    and the captures show the original tuple inside and the translated one on eth0."""
    run: LabOutput = lab_run(scenario)
    entries = set()
    for node in run.nodes:
        dump = run.out / node / "end" / "conntrack.txt"
        if not dump.stat().st_size:
            continue
        table = parse_conntrack(dump, node=node)
        for r in table[table["kind"].notna()].itertuples():
            entries.add((str(r.kind), int(r.proto), str(r.orig_src), int(r.orig_sport),
                         str(r.orig_dst), int(r.orig_dport), str(r.xlat_src),
                         int(r.xlat_sport), str(r.xlat_dst), int(r.xlat_dport)))
    truth = {(f["kind"], f["proto"], f["orig_src"], f["orig_sport"], f["orig_dst"],
              f["orig_dport"], f["xlat_src"], f["xlat_sport"], f["xlat_dst"], f["xlat_dport"])
             for f in run.truth["nat_flows"]}
    assert truth == entries
    expected = {"docker-snat": 7, "docker-portmap": 5, "k8s-nodeport": 6}.get(scenario, 0)
    assert len(truth) == expected
    seen = collections.defaultdict(set)  # (proto, src, sport, dst, dport) -> interfaces
    for e in run.truth["packets"]:
        if e["sport"] is not None:
            seen[(e["proto"], e["src"], e["sport"], e["dst"], e["dport"])].add(e["interface"])
    for flow in run.truth["nat_flows"]:
        if flow["proto"] == 1:
            continue
        orig = (flow["proto"], flow["orig_src"], flow["orig_sport"], flow["orig_dst"],
                flow["orig_dport"])
        xlat = (flow["proto"], flow["xlat_src"], flow["xlat_sport"], flow["xlat_dst"],
                flow["xlat_dport"])
        assert seen[orig] and seen[xlat], flow
        assert seen[orig] != seen[xlat] or "eth0" in seen[orig]
        members = {e["nat_flow_id"] for e in run.truth["packets"]
                   if (e["proto"], e["src"], e["sport"], e["dst"], e["dport"]) in (orig, xlat)}
        assert members == {flow["nat_flow_id"]}


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_every_capture_complete_per_tcpdump(lab_run: Any, scenario: str) -> None:
    """tcpdump's own counts (bundle.json): nothing dropped by the kernel, and as many packets
    as the file holds."""
    run: LabOutput = lab_run(scenario)
    for node in run.nodes:
        for capture in run.bundle(node)["captures"]:
            assert capture["packets_dropped"] == 0, (node, capture)
            assert capture["packets_captured"] == len(run.records(capture["file"]))
