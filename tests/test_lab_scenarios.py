"""What each lab scenario must show, read from its truth and checked against the captures
(tshark): the cases the scenarios exist for (collisions, translations, tunnels,
fragmentation). Skipped without root and network namespaces."""

from __future__ import annotations

import collections
from typing import Any

from lab_checks import LabOutput, tshark


def by_flow(run: Any, flow_id: int) -> list[dict[str, Any]]:
    return [e for e in run.truth["packets"] if e["flow_id"] == flow_id]


def test_docker_snat_collisions(lab_run: Any) -> None:
    """Two containers on one source port (TCP) and one echo identifier: masquerade keeps the
    first, moves the second (random port from 1024..65535, any 16-bit identifier)."""
    run = lab_run("docker-snat")
    flows = {f["flow_id"]: f for f in run.lab["flows"]}
    nat = {(n["orig_src"], n["orig_sport"], n["proto"]): n for n in run.truth["nat_flows"]}
    http1, http2 = (nat[(flows[i]["src"], flows[i]["sport"], 6)] for i in (1, 2))
    assert http1["orig_sport"] == http2["orig_sport"] == http1["xlat_sport"]
    assert http2["xlat_sport"] != http2["orig_sport"] and 1024 <= http2["xlat_sport"] <= 65535
    ping1, ping2 = (nat[(flows[i]["src"], flows[i]["sport"], 1)] for i in (4, 5))
    assert ping1["xlat_sport"] == ping1["orig_sport"]
    assert ping2["xlat_sport"] != ping2["orig_sport"] == ping1["orig_sport"]
    # On eth0 the second container's SYN leaves from the translated port.
    rows = tshark(run.path("host-eth0.pcap"), ["tcp.srcport", "tcp.flags.syn", "tcp.flags.ack"])
    syn_ports = {int(r["tcp.srcport"][0]) for r in rows
                 if r["tcp.flags.syn"] == ["1"] and r["tcp.flags.ack"] == ["0"]}
    assert {http1["xlat_sport"], http2["xlat_sport"]} <= syn_ports


def test_docker_snat_oversized_datagram_is_reassembled_on_docker0(lab_run: Any) -> None:
    """conntrack (br_netfilter) reassembles the container's fragments before docker0's tap;
    eth0 carries them re-fragmented, masqueraded, with the original IP id."""
    run = lab_run("docker-snat")
    frames = [e for e in by_flow(run, 7) if e["dport"] == 514 or e["fragment"] != "none"]
    forward = [e for e in frames if e["src"] in ("172.17.0.2", "192.168.1.10")]
    on = collections.defaultdict(list)
    for e in forward:
        if e["capture"] == "host-any.pcap":
            on[e["interface"]].append(e)
    assert [e["fragment"] for e in on["veth-c1"]] == ["first", "non-first"]
    assert [e["fragment"] for e in on["docker0"]] == ["none"]
    assert on["docker0"][0]["wire_len"] > 1500 + 20
    assert [e["fragment"] for e in on["eth0"]] == ["first", "non-first"]
    assert {e["src"] for e in on["eth0"]} == {"192.168.1.10"}


def test_docker_portmap_dnat_visible_from_docker0(lab_run: Any) -> None:
    run = lab_run("docker-portmap")
    kinds = collections.Counter(n["kind"] for n in run.truth["nat_flows"])
    assert kinds == {"dnat": 5}
    for flow in run.truth["nat_flows"]:
        seen = {(e["interface"], e["dst"], e["dport"]) for e in run.truth["packets"]
                if e["nat_flow_id"] == flow["nat_flow_id"] and e["src"] == flow["orig_src"]
                and e["capture"] == "host-any.pcap" and e["fragment"] != "non-first"}
        assert ("eth0", flow["orig_dst"], flow["orig_dport"]) in seen
        assert ("docker0", flow["xlat_dst"], flow["xlat_dport"]) in seen


def test_flat_routed_ttl_minus_one_per_node(lab_run: Any) -> None:
    run = lab_run("flat-routed")
    rows = tshark(run.path("node-a-any.pcap"), ["sll.ifindex", "ip.ttl", "ip.src"])
    names = run.ifnames("node-a")
    ttls = collections.defaultdict(set)
    for row in rows:
        if row["ip.src"] == ["10.244.0.5"]:
            ttls[names[int(row["sll.ifindex"][0])]].add(int(row["ip.ttl"][0]))
    assert ttls["cni0"] == {64} and ttls["eth0"] == {63}
    rows = tshark(run.path("node-b-any.pcap"), ["sll.ifindex", "ip.ttl", "ip.src"])
    names = run.ifnames("node-b")
    assert {int(r["ip.ttl"][0]) for r in rows if r["ip.src"] == ["10.244.0.5"]
            and names[int(r["sll.ifindex"][0])] == "cni0"} == {62}


def test_vxlan_overlay_vnis_ports_and_identical_tenants(lab_run: Any) -> None:
    """VNI 1 on 8472, VNIs 1000 and 2000 on 4789; the two tenants carry identical inner
    5-tuples, told apart by the VNI; every frame on eth0 is a piece of a VXLAN packet, and all
    but the non-first pieces of a fragmented one hold its VXLAN header."""
    run = lab_run("vxlan-overlay")
    eth0 = [e for e in run.truth["packets"] if e["interface"] == "eth0"]
    assert all(e["overlay_encap"] == "vxlan" for e in eth0)
    assert all(e["encap"] == "vxlan" or e["fragment"] == "non-first" for e in eth0)
    ports = {(e["vni"], e["outer_dport"]) for e in eth0 if e["outer_dport"] is not None}
    assert ports == {(1, 8472), (1000, 4789), (2000, 4789)}
    tuples = collections.defaultdict(set)
    for e in eth0:
        if e["sport"] is not None:
            tuples[(e["proto"], e["src"], e["sport"], e["dst"], e["dport"])].add(e["vni"])
    assert any(vnis == {1000, 2000} for vnis in tuples.values())
    rows = tshark(run.path("node-a-eth0.pcap"), ["vxlan.vni", "udp.dstport"])
    assert {(int(r["vxlan.vni"][0]), int(r["udp.dstport"][0])) for r in rows
            if r["vxlan.vni"]} == ports


def test_vxlan_overlay_fragments_inner_or_outer(lab_run: Any) -> None:
    """flannel (pod MTU 1500 on a 1450 tunnel, routed): the node fragments the inner packet
    before encapsulation. Tenant 2000 (VXLAN device MTU 1500): the whole inner packet is
    encapsulated and the *outer* packet is fragmented; node-b reassembles it."""
    run = lab_run("vxlan-overlay")
    flows = {f["flow_id"]: f for f in run.lab["flows"]}
    flannel = next(i for i, f in flows.items() if f["label"] == "oversized"
                   and f["context"] == "flannel")
    t2000 = next(i for i, f in flows.items() if f["label"] == "oversized"
                 and f["context"] == "t2000")
    f1 = [e for e in by_flow(run, flannel) if e["capture"] == "node-a-any.pcap"
          and e["src"] == "10.0.0.4"]
    assert {e["fragment"] for e in f1 if e["interface"] == "veth-pod3"} == {"none"}
    assert {e["fragment"] for e in f1 if e["interface"] == "flannel.1"} == {"first",
                                                                            "non-first"}
    f2 = by_flow(run, t2000)
    a_eth0 = [e for e in f2 if e["capture"] == "node-a-any.pcap" and e["interface"] == "eth0"
              and e["direction"] == "out"]
    firsts = [e for e in a_eth0 if e["fragment"] == "first"]
    pieces = [e for e in a_eth0 if e["fragment"] == "non-first"]
    assert firsts and all(e["encap"] == "vxlan" and e["vni"] == 2000 and e["src"] == "10.0.0.2"
                          for e in firsts)
    # the other pieces: no tunnel header, the outer IP header is theirs; the packet's VNI
    outer = {(e["outer_src"], e["outer_dst"]) for e in firsts}
    assert pieces and all(e["encap"] == "none" and e["vni"] is None
                          and (e["src"], e["dst"]) in outer and e["overlay_vni"] == 2000
                          for e in pieces)
    assert {e["packet_id"] for e in pieces} == {e["packet_id"] for e in firsts}
    assert {e["fragment"] for e in f2 if e["src"] == "10.0.0.2"
            and e["interface"] in ("vxlan2000", "veth2000-2")} == {"none"}
    rows = tshark(run.path("node-a-eth0.pcap"), ["ip.flags.mf", "ip.frag_offset", "vxlan.vni"])
    assert any(r["ip.flags.mf"][:1] == ["1"] and r["vxlan.vni"] == ["2000"] for r in rows)


def test_k8s_nodeport_translations(lab_run: Any) -> None:
    """Cluster policy: DNAT to the pod on node-b and SNAT (random port) to node-a; Local
    policy: DNAT only. node-a's eth0 shows each request twice: in, then out translated with
    TTL - 1."""
    run = lab_run("k8s-nodeport")
    kinds = collections.Counter((n["kind"], n["xlat_dst"]) for n in run.truth["nat_flows"])
    assert kinds == {("snat+dnat", "10.244.1.7"): 5, ("dnat", "10.244.0.7"): 1}
    first = next(n for n in run.truth["nat_flows"] if n["proto"] == 6)
    seen = [(e["direction"], e["dst"], e["dport"]) for e in run.truth["packets"]
            if e["capture"] == "node-a-eth0.pcap" and e["nat_flow_id"] == first["nat_flow_id"]
            and e["src"] in (first["orig_src"], first["xlat_src"])
            and e["sport"] in (first["orig_sport"], first["xlat_sport"])]
    assert ("in", first["orig_dst"], first["orig_dport"]) in seen
    assert ("out", first["xlat_dst"], first["xlat_dport"]) in seen


def test_impairment_queues_and_drops_toward_the_target_node(lab_available: None,
                                                           tmp_path: Any) -> None:
    """``--impair queue=1mbit,loss=10`` (with --no-gso): tc tbf and iptables' statistic match
    on the switch port to node-a. Frames node-b sends there wait for tokens (milliseconds, where
    the lab's links take microseconds) and one in ten is dropped; the other way is untouched."""
    from pktkit.lab.run import run_lab

    result = run_lab("flat-routed", tmp_path / "imp", impair=["queue=1mbit,loss=10"], gso=False)
    run = LabOutput(result.out_dir, result)
    assert run.lab["impairment"] == [
        "tc tbf rate 1mbit on switch port p-node-a (to node-a)",
        "drop 1 in 10 frames the switch forwards to node-a (p-node-a)"]

    def crossing(sender: str, receiver: str) -> tuple[int, list[int]]:
        packets: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
        for e in run.truth["packets"]:
            if e["capture"].endswith("any.pcap") and e["interface"] == "eth0":
                packets[e["packet_id"]].append(e)
        lost, delays = 0, []
        for sightings in packets.values():
            sent = [e["ts_ns"] for e in sightings if e["node"] == sender
                    and e["direction"] == "out"]
            got = [e["ts_ns"] for e in sightings if e["node"] == receiver
                   and e["direction"] == "in"]
            if sent and not got:
                lost += 1
            elif sent:
                delays.append(got[0] - sent[0])
        return lost, delays

    lost, delays = crossing("node-b", "node-a")
    assert lost >= 1 and max(delays) > 1_000_000  # a 1500-byte frame takes 12 ms at 1 Mbit/s
    lost, delays = crossing("node-a", "node-b")
    assert lost == 0 and max(delays) < 1_000_000
