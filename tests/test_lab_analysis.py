"""``pktkit analyze`` on ``pktkit lab`` output against the lab's truth, for every scenario: the
kernel, not the builders, is the reference. Skipped without root and network namespaces.

The analysis runs as a user would run it (``pktkit analyze DIR --out R``: the nodes' bundles
name nodes and interfaces, give directions, addresses and conntrack dumps); the report's
files are compared with truth.json, every frame and every packet. Two things the real kernel
does that the builders do not (docs/FIDELITY.md) have tests of their own: a fragmented datagram
that crossed NAT or was reassembled by conntrack is one packet, and a non-first piece of a
fragmented outer VXLAN packet belongs to its packet and overlay.
"""

from __future__ import annotations

import collections
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import LAB_SCENARIOS
from lab_checks import LabOutput

from pktkit import cli

FIELDS = ["node", "interface", "direction", "vni", "encap", "overlay_encap", "overlay_vni",
          "src", "dst", "proto", "sport", "dport", "overhead_bytes"]
NAT_SCENARIOS = ("docker-snat", "docker-portmap", "k8s-nodeport")
NAT_KEYS = ["kind", "proto", "orig_src", "orig_sport", "orig_dst", "orig_dport", "xlat_src",
            "xlat_sport", "xlat_dst", "xlat_dport"]


@cache
def analysis(out: Path) -> dict[str, Any]:
    """``pktkit analyze OUT --out OUT.report`` and its tables, joined with the truth."""
    report = out.with_name(out.name + ".report")
    assert cli.main(["analyze", str(out), "--out", str(report), "-q"]) == 0
    packets = pd.read_parquet(report / "packets.parquet")
    truth = pd.DataFrame(pd.read_json(out / "truth.json", typ="series")["packets"])
    packets["capture"] = packets["capture"].astype(str)
    packets["frame"] = packets["frame"].astype(int)
    merged = truth.merge(packets, on=["capture", "frame"], suffixes=("_t", "_a"))
    assert len(merged) == len(truth) == len(packets)
    return {"m": merged, "nat": pd.read_parquet(report / "nat_flows.parquet"),
            "hops": pd.read_parquet(report / "hops.parquet"),
            "clocks": pd.read_parquet(report / "clock_offsets.parquet")}


def same(a: Any, b: Any) -> bool:
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def outer_pieces(m: pd.DataFrame) -> pd.Series:
    """Non-first pieces of fragmented outer (VXLAN) packets, by the truth: no tunnel header of
    their own, and the outer addresses of a tunnelled sighting of their packet as theirs."""
    outer = set(zip(m.packet_id_t, m.outer_src_t, m.outer_dst_t, strict=True))
    return (m.fragment_t == "non-first") & (m.encap_t == "none") & pd.Series(
        [key in outer for key in zip(m.packet_id_t, m.src_t, m.dst_t, strict=True)],
        index=m.index)


def partition(m: pd.DataFrame, key: str) -> set[frozenset[tuple[str, int]]]:
    groups = collections.defaultdict(set)
    for capture, frame, packet in zip(m.capture, m.frame, m[key], strict=True):
        groups[packet].add((capture, frame))
    return {frozenset(v) for v in groups.values()}


def translated_fragments(m: pd.DataFrame) -> set[int]:
    """Truth packets of fragmented datagrams whose addresses change on their way (NAT;
    conntrack may also have reassembled them)."""
    frag = m[m.fragment_t != "none"]
    return {p for p in set(frag.packet_id_t)
            if m[m.packet_id_t == p].src_t.nunique() > 1
            or m[m.packet_id_t == p].dst_t.nunique() > 1}


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_every_frame_as_the_truth_says(lab_run: Any, scenario: str) -> None:
    """Node, interface name, direction, VNI, tunnel, the packet's overlay, addresses, ports,
    overhead, fragment: frame by frame (a non-first outer piece: its own, as tshark shows it,
    and its packet's overlay)."""
    m = analysis(lab_run(scenario).out)["m"]
    assert m.interface_a.notna().all() and not m.interface_a.str.fullmatch(r"\d+").any()
    rest = m
    for field in FIELDS:
        analyzed = rest[f"{field}_a"].astype(object)
        wrong = [(c, f, a, b) for c, f, a, b in zip(rest.capture, rest.frame,
                                                    rest[f"{field}_t"], analyzed, strict=True)
                 if not same(a, b)]
        assert not wrong, (field, wrong[:5])
    # fragment: none / first / non-first against the table's flag and offset
    assert ((rest.fragment_t != "none") == rest.fragment_a).all()
    assert ((rest.fragment_t == "non-first") == (rest.frag_offset.fillna(0) > 0)).all()
    if scenario == "vxlan-overlay":
        assert set(m.vni_a.dropna()) == {1, 1000, 2000}


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_packets_hops_and_same_clock_delays(lab_run: Any, scenario: str) -> None:
    """Every crossing is one packet (the truth's partition, every frame), with the truth's
    hops; one kernel clock: no offset estimated beyond its bound, none applied, and each hop's
    delay is the difference of the truth's timestamps."""
    found = analysis(lab_run(scenario).out)
    m = found["m"]
    rest = m
    assert partition(rest, "packet_id_t") == partition(rest, "packet_id_a")
    assert (rest.hop_t == rest.hop_a).all()
    for row in found["clocks"].itertuples():
        assert abs(row.offset_ns) <= row.bound_ns and row.applied_ns == 0
    first = rest.groupby(["packet_id_a", "hop_a"]).ts_ns_t.min().astype("Int64")
    hops = found["hops"].set_index(["packet_id", "hop"]).loc[first.index]
    expected = first - first.groupby(level=0).shift(1)  # in int64: ns since 1970 exceed 2**53
    assert hops["delay_ns"].astype("Int64").equals(expected.rename("delay_ns"))
    crossing = hops["from_node"].notna() & (hops["from_node"] != hops["node"])
    assert crossing.any() == (not scenario.startswith("docker"))  # docker: one node


@pytest.mark.parametrize("scenario", LAB_SCENARIOS)
def test_nat_flows_as_the_truth_confirmed_by_conntrack(lab_run: Any, scenario: str) -> None:
    run: LabOutput = lab_run(scenario)
    found = analysis(run.out)
    nat = found["nat"]
    got = {tuple(r) for r in nat[NAT_KEYS].astype(object).itertuples(index=False)}
    assert got == {tuple(f[k] for k in NAT_KEYS) for f in run.truth["nat_flows"]}
    assert set(nat["conntrack"].astype(str)) <= {"confirmed"}  # every one, from the bundles
    m = found["m"]
    pairs = m[["nat_flow_id_t", "nat_flow_id_a"]].drop_duplicates()
    assert pairs.nat_flow_id_t.isna().equals(pairs.nat_flow_id_a.isna())
    ids = pairs.dropna()
    assert ids.nat_flow_id_t.is_unique and ids.nat_flow_id_a.is_unique  # one to one


@pytest.mark.parametrize("scenario", NAT_SCENARIOS)
def test_fragments_across_nat_are_one_packet(lab_run: Any, scenario: str) -> None:
    """The oversized datagram of each NAT scenario, fragmented by its sender (docker) or
    before the node (k8s-nodeport's client), with addresses the NAT rewrites: one packet,
    with the truth's hops, its translation in nat_flows; docker-snat's is also whole on
    docker0 (conntrack reassembled it) and re-fragmented on eth0."""
    found = analysis(lab_run(scenario).out)
    m = found["m"]
    packets = translated_fragments(m)
    assert packets
    for packet in packets:
        sightings = m[m.packet_id_t == packet]
        assert sightings.packet_id_a.nunique() == 1, sightings[["capture", "frame"]]
        assert (sightings.hop_t == sightings.hop_a).all()
        assert sightings.nat_flow_id_a.notna().all()
        if scenario == "docker-snat":
            assert set(sightings.loc[sightings.interface_t == "docker0", "fragment_t"]) == \
                {"none"}
            assert set(sightings.loc[sightings.interface_t == "eth0", "fragment_t"]) == \
                {"first", "non-first"}
    assert partition(m, "packet_id_t") == partition(m, "packet_id_a")


def test_outer_fragments_carry_their_vni(lab_run: Any) -> None:
    """Tenant 2000 (VXLAN device MTU 1500 on a 1500 underlay): the non-first pieces of the
    outer packet have no VNI of their own; each is tied to its packet (packet_id and hop of
    its first piece, on both nodes) and carries the packet's overlay, VXLAN 2000."""
    m = analysis(lab_run("vxlan-overlay").out)["m"]
    pieces = m[outer_pieces(m)]
    assert len(pieces) and set(pieces.node_t) == {"node-a", "node-b"}
    assert pieces.vni_t.isna().all() and pieces.vni_a.isna().all()
    assert set(pieces.overlay_vni_t) == set(pieces.overlay_vni_a) == {2000}
    assert (pieces.overlay_encap_a.astype(str) == "vxlan").all()
    packets = m[m.packet_id_t.isin(set(pieces.packet_id_t))]
    assert partition(packets, "packet_id_t") == partition(packets, "packet_id_a")
    assert (packets.hop_t == packets.hop_a).all()
