"""pktkit.report.tables: the tables against truth.json, for every reference capture folder.

Overhead statistics, fragment counts and per-flow volumes are recomputed here from
truth.json with plain Python; inner IP sizes are checked against the independent parser of
tests/oracle.py.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

import pandas as pd
import pytest
from oracle import iter_layers, read_capture
from test_plot import CAPTURES, packets, truth, truth_nat_flows

import pktkit
import pktkit.report as report
from pktkit.capture.read import CaptureCutWarning
from pktkit.capture.table import read_packets
from pktkit.report import digest, health
from pktkit.report import flow_table as flows_module
from pktkit.report import overlay_costs as overlays_module
from pktkit.report import sizes as sizes_module
from pktkit.report.labels import clock_model_text

FOLDERS = sorted(p.name for p in CAPTURES.iterdir() if (p / "truth.json").is_file())
OVERLAY_FOLDERS = [f for f in FOLDERS if truth(f)["params"].get("underlay_mtu")]
# bytes of encapsulation per packet, as the issue states them
EXPECTED_OVERHEAD = {"vxlan-overlay": 50, "vxlan-overlay-any": 50, "vxlan-overlay-v6": 70,
                     "geneve-overlay": 58, "nvgre": 42, "ipip": 20}


def key(encap: str, vni: int | None) -> tuple[str, int | None]:
    return encap, vni


def table_keys(df: pd.DataFrame) -> list[tuple[str, int | None]]:
    return [key(e, None if pd.isna(v) else int(v))
            for e, v in zip(df["encap"], df["vni"], strict=True)]


def truth_by_overlay(folder: str) -> dict[tuple[str, int | None], list[dict]]:
    groups: dict[tuple[str, int | None], list[dict]] = defaultdict(list)
    for entry in truth(folder)["packets"]:
        groups[key(entry["encap"], entry["vni"])].append(entry)
    return groups


def link_header_bytes(folder: str, capture: str) -> int:
    """The capture's link header, from the file itself: SLL2 20, raw IP 0, Ethernet 14."""
    if truth(folder)["params"]["linktype"] == "sll2":
        return 20
    return {101: 0}.get(read_capture(CAPTURES / folder / capture)[0].linktype, 14)


def original_sizes(folder: str) -> dict[int, int]:
    """Each packet_id's IP size before any fragmentation (its largest unfragmented sighting)."""
    sizes: dict[int, int] = {}
    for e in truth(folder)["packets"]:
        if e["fragment"] == "none":
            size = e["wire_len"] - link_header_bytes(folder, e["capture"]) - e["overhead_bytes"]
            sizes[e["packet_id"]] = max(size, sizes.get(e["packet_id"], 0))
    return sizes


# -- overhead ------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_overhead_statistics_equal_truth(folder: str) -> None:
    table = report.overhead(packets(folder))
    expected = {k: [e["overhead_bytes"] for e in v] for k, v in truth_by_overlay(folder).items()}
    assert sorted(table_keys(table), key=str) == sorted(expected, key=str)
    for row_key, row in zip(table_keys(table), table.itertuples(index=False), strict=True):
        values = expected[row_key]
        assert row.packets == len(values)
        assert (row.overhead_mean, row.overhead_min, row.overhead_max) == (
            mean(values), min(values), max(values)), row_key
        assert row.overhead_bytes == sum(values)
        wire = sum(e["wire_len"] for e in truth_by_overlay(folder)[row_key])
        assert row.wire_bytes == wire
        assert row.overhead_share == pytest.approx(sum(values) / wire)
    if folder in EXPECTED_OVERHEAD:  # the figures, literally
        tunnelled = table[table["encap"] != "none"]
        assert set(tunnelled["overhead_mean"]) == {EXPECTED_OVERHEAD[folder]}
        assert set(tunnelled["inner_mtu"]) == {1500 - EXPECTED_OVERHEAD[folder]}
    assert table["encap"].iloc[-1] == "none"  # the untunnelled baseline comes last


@pytest.mark.parametrize("folder", OVERLAY_FOLDERS)
def test_oversized_datagrams_and_fragments_equal_truth(folder: str) -> None:
    mtu = truth(folder)["params"]["underlay_mtu"]
    table = report.overhead(packets(folder), underlay_mtu=mtu)
    sizes = original_sizes(folder)
    for row_key, row in zip(table_keys(table), table.itertuples(index=False), strict=True):
        entries = truth_by_overlay(folder)[row_key]
        assert row.fragments == sum(e["fragment"] != "none" for e in entries), row_key
        oversized = {(e["capture"], e["packet_id"]) for e in entries
                     if sizes[e["packet_id"]] > mtu - e["overhead_bytes"]}
        assert row.oversized == len(oversized), row_key
        assert row.frag_needed == 0 and row.gso_frames == 0
        if row_key[0] != "none":  # every overlay scenario has one oversized flow
            assert row.oversized > 0 and row.headroom >= 0


def test_vxlan_oversized_flow_exceeds_the_mtu() -> None:
    folder = "vxlan-overlay"
    table = report.overhead(packets(folder))
    vni = {int(v): row for v, row in zip(table["vni"], table.itertuples(index=False),
                                         strict=True) if not pd.isna(v)}
    for row in vni.values():  # 3 datagrams of 1500 bytes, seen on both nodes' eth0
        assert (row.oversized, row.fragments, row.inner_mtu, row.max_inner_len,
                row.headroom) == (6, 12, 1450, 1450, 0)
    # the flows: the oversized UDP flow of each tenant, at every capture point it crosses
    flows = report.flows(packets(folder))
    sizes = original_sizes(folder)
    oversized_flows = {e["flow_id"] for e in truth(folder)["packets"]
                       if sizes[e["packet_id"]] > 1450}
    expected = {(e["capture"], e["sport"]) for e in truth(folder)["packets"]
                if e["flow_id"] in oversized_flows and e["sport"] is not None}
    flagged = flows[flows["exceeds_mtu"] & flows["a_port"].notna()]
    assert {(c, int(p)) for c, p in zip(flagged["capture"], flagged["a_port"],
                                        strict=True)} == expected
    assert set(flagged["max_ip_len"]) == {1500} and set(flagged["path_mtu"]) == {1450}
    assert set(flagged["overlay_encap"]) == {"vxlan"} and set(flagged["overlay_vni"]) == {1, 2}
    assert not flows[flows["a_port"].notna() & ~flows["exceeds_mtu"]]["max_ip_len"].gt(
        1450).any()
    problems = report.summary(report.build_tables(packets(folder)))["problems"]
    assert [p["problem"] for p in problems[:2]] == ["flow-exceeds-mtu"] * 2
    assert "udp 10.0.0.4:" in problems[0]["where"] and "1500 bytes > path MTU 1450" in \
        problems[0]["detail"]


def test_repeated_ip_ids_start_new_datagrams() -> None:
    """Three runs of the scenario, 10 s apart, reuse every IP id: still 1500-byte datagrams."""
    one = packets("vxlan-overlay")
    runs = pd.concat([one.assign(ts_ns=one["ts_ns"] + i * 10**10) for i in range(3)],
                     ignore_index=True)
    table = report.overhead(runs)
    assert table["oversized"].tolist()[:2] == [18, 18]
    assert set(report.flows(runs)["max_ip_len"]) <= {1450, 1500} | set(
        report.flows(one)["max_ip_len"])
    sizes = sizes_module.packet_sizes(runs)
    assert sizes["datagram_len"].max() == 1500
    assert sizes.loc[runs["fragment"], "datagram"].nunique() == 3 * sizes_module.packet_sizes(
        one).loc[one["fragment"], "datagram"].nunique()


def test_underlay_mtu_parameter_and_per_encap_rows() -> None:
    jumbo = report.overhead(packets("vxlan-overlay"), underlay_mtu=9000)
    assert set(jumbo["oversized"]) == {0} and set(jumbo["inner_mtu"]) == {8950, 9000}
    per_encap = report.overhead(packets("vxlan-overlay"), by_vni=False)
    assert per_encap["encap"].tolist() == ["vxlan", "none"] and per_encap["vni"].isna().all()
    assert per_encap["packets"].tolist() == [144, 420] and per_encap["oversized"][0] == 12


@pytest.mark.parametrize("folder", ["ipip", "vxlan-overlay-any", "vxlan-overlay-v6", "nvgre",
                                    "geneve-overlay", "docker-snat"])
def test_inner_ip_length_equals_the_oracle(folder: str) -> None:
    expected = []
    for name in truth(folder)["captures"]:
        for _, layers in iter_layers(CAPTURES / folder / name):
            ips = [layer for layer in layers if layer.name in ("ipv4", "ipv6")]
            expected.append(ips[-1].fields["len"] if ips else None)
    got = sizes_module.packet_sizes(packets(folder))["ip_len"]
    assert [None if pd.isna(v) else int(v) for v in got] == expected


def test_gso_super_frames_are_counted_apart() -> None:
    frame = packets("flat-routed").iloc[[4]].copy()  # a full-size TCP segment
    # as GSO/GRO hands it to tcpdump: one frame, its IP length the aggregate's
    frame["wire_len"] = frame["wire_len"].astype("UInt32") + 30000
    frame["ip_len"] = frame["ip_len"].astype("UInt32") + 30000
    table = report.overhead(frame)
    assert (table["gso_frames"][0], table["oversized"][0]) == (1, 0)
    assert pd.isna(table["max_inner_len"][0])


# -- overlays and flows --------------------------------------------------------------------


def test_overlays_of_the_vxlan_scenario() -> None:
    table = report.overlays(packets("vxlan-overlay"))
    assert table_keys(table) == [("vxlan", 1), ("vxlan", 2)]
    assert table["outer_dports"].tolist() == ["8472", "4789"]
    assert table["vteps"].tolist() == ["192.168.10.1 ↔ 192.168.10.2"] * 2
    assert table["vtep_pairs"].tolist() == [1, 1] and table["captures"].tolist() == [2, 2]
    groups = truth_by_overlay("vxlan-overlay")
    assert table["packets"].tolist() == [len(groups["vxlan", v]) for v in (1, 2)]
    assert table["bytes"].tolist() == [sum(e["wire_len"] for e in groups["vxlan", v])
                                       for v in (1, 2)]
    assert report.overlays(packets("flat-routed")).empty


def truth_flows(folder: str) -> Counter:
    """Per (capture, encap, vni, proto, side a, side b): frames and bytes each way, side a
    being the sender of the conversation's first frame in that capture."""
    first_sender: dict[tuple, tuple] = {}
    volume: Counter = Counter()
    for e in truth(folder)["packets"]:
        src, dst = (e["src"], e["sport"]), (e["dst"], e["dport"])
        conversation = (e["capture"], e["encap"], e["vni"], e["proto"],
                        tuple(sorted((src, dst), key=str)))
        a = first_sender.setdefault(conversation, src)
        b = dst if src == a else src
        way = "ab" if src == a else "ba"
        flow = (e["capture"], e["encap"], e["vni"], e["proto"], *a, *b)
        volume[(*flow, f"packets_{way}")] += 1
        volume[(*flow, f"bytes_{way}")] += e["wire_len"]
    return volume


@pytest.mark.parametrize("folder", ["vxlan-overlay", "vxlan-overlay-any", "docker-snat",
                                    "flat-routed-v6", "ipip", "k8s-nodeport"])
def test_flow_volumes_each_way_equal_truth(folder: str) -> None:
    table = report.flows(packets(folder))
    got: Counter = Counter()
    for row in table.itertuples(index=False):
        flow = (row.capture, row.encap, None if pd.isna(row.vni) else int(row.vni),
                int(row.proto), row.a_addr, None if pd.isna(row.a_port) else int(row.a_port),
                row.b_addr, None if pd.isna(row.b_port) else int(row.b_port))
        for column in ("packets_ab", "bytes_ab", "packets_ba", "bytes_ba"):
            if getattr(row, column):
                got[(*flow, column)] = int(getattr(row, column))
        assert row.packets == row.packets_ab + row.packets_ba
        assert row.bytes == row.bytes_ab + row.bytes_ba
    assert got == truth_flows(folder)


def test_flow_timing_and_throughput() -> None:
    table = report.flows(packets("docker-snat"))
    tcp = table[(table["proto"] == 6) & (table["capture"] == "host-eth0.pcap")].iloc[0]
    assert tcp["duration_ns"] == tcp["last_ts_ns"] - tcp["first_ts_ns"] > 0
    assert tcp["throughput_bps"] == pytest.approx(tcp["bytes"] * 8e9 / tcp["duration_ns"])
    single = table[table["packets"] == 1]
    assert single.empty or single["throughput_bps"].isna().all()


def test_nat_flows_are_matched_on_either_tuple() -> None:
    nat = truth_nat_flows("docker-snat")
    table = report.flows(packets("docker-snat"), nat)
    frames = pd.DataFrame(truth("docker-snat")["packets"])
    ported = table[table["a_port"].notna()]
    for row in ported.itertuples(index=False):
        a_to_b = ((frames["src"] == row.a_addr) & (frames["sport"] == row.a_port)
                  & (frames["dst"] == row.b_addr) & (frames["dport"] == row.b_port))
        b_to_a = ((frames["src"] == row.b_addr) & (frames["sport"] == row.b_port)
                  & (frames["dst"] == row.a_addr) & (frames["dport"] == row.a_port))
        expected = frames[(frames["capture"] == row.capture) & (frames["proto"] == row.proto)
                          & (a_to_b | b_to_a)]["nat_flow_id"]
        assert set(expected) == {row.nat_flow_id}
    # ICMP: the packet table has no echo id, so the two SNATed pings share one flow on eth0
    icmp = table[(table["proto"] == 1)]
    assert icmp.set_index("capture")["nat_flow_id"].isna().to_dict()["host-eth0.pcap"]
    assert icmp[icmp["capture"] != "host-eth0.pcap"]["nat_flow_id"].notna().all()
    assert report.flows(packets("docker-snat"))["nat_flow_id"].isna().all()


def test_correlation_columns_are_used_when_the_table_has_them() -> None:
    """packet_id links untunnelled fragment flows to their VNI; nat_flow_id labels ICMP."""
    folder = "vxlan-overlay"
    labels = pd.DataFrame(truth(folder)["packets"])[["capture", "frame", "packet_id",
                                                      "nat_flow_id"]]
    plain = packets(folder)
    labelled = plain.merge(labels.astype({"frame": "UInt32"}), on=["capture", "frame"],
                           how="left", validate="one_to_one")
    before, after = report.flows(plain), report.flows(labelled)
    # non-first fragments have no ports: by 5-tuple their VNI is ambiguous (both tenants)
    tails = before["a_port"].isna() & before["encap"].eq("none") & (before["proto"] == 17)
    assert before[tails]["overlay_vni"].isna().all()
    tails = after["a_port"].isna() & after["encap"].eq("none") & (after["proto"] == 17)
    assert after[tails]["overlay_vni"].notna().all() and after[tails]["exceeds_mtu"].all()

    snat = packets("docker-snat").merge(
        pd.DataFrame(truth("docker-snat")["packets"])[["capture", "frame", "nat_flow_id"]]
        .astype({"frame": "UInt32"}), on=["capture", "frame"], how="left")
    icmp = report.flows(snat)
    icmp = icmp[(icmp["proto"] == 1) & (icmp["capture"] == "host-veth-c2.pcap")]
    assert icmp["nat_flow_id"].tolist() == [5]


def test_rows_without_a_flow_are_left_out_of_flows() -> None:
    """Frames without flow_id (no IP) change no flow: not its volume, nor its datagrams."""
    for folder in ["vxlan-overlay", "docker-snat-any", "ipip"]:
        table = packets(folder)
        without = table.assign(flow_id=table["flow_id"].mask(table.index % 3 == 0))
        pd.testing.assert_frame_equal(
            report.flows(without),
            report.flows(without[without["flow_id"].notna()].reset_index(drop=True)))


def test_tables_with_na_keys_group_as_pandas_does() -> None:
    """NA encap counts as untunnelled, NA vni is a group of its own, NA capture no capture."""
    table = packets("vxlan-overlay").copy()
    table.loc[::7, "encap"] = pd.NA
    table.loc[::5, "vni"] = pd.NA
    table.loc[::11, "capture"] = pd.NA
    cost = report.overhead(table)
    assert cost["encap"].tolist()[-1] == "none" and cost["packets"].sum() == len(table)
    assert cost[cost["encap"] == "vxlan"]["vni"].isna().tolist() == [False, False, True]
    overlays = report.overlays(table)
    assert overlays["packets"].sum() == int(table["encap"].eq("vxlan").sum())
    captures = report.captures(table)
    assert captures["packets"].sum() == int(table["capture"].notna().sum())


def test_tables_leave_the_packet_table_unchanged() -> None:
    """Columns already of the dtype the report computes in (float64 here) are not written to."""
    table = packets("vxlan-overlay").copy()
    for name in ("wire_len", "l4_payload_len"):
        table[name] = table[name].astype("float64")
    table.loc[::7, "ip_version"] = pd.NA
    before = table.copy()
    sizes_module.packet_sizes(table)
    report.overhead(table)
    report.flows(table)
    pd.testing.assert_frame_equal(table, before)


# -- errors, captures, summary -------------------------------------------------------------


def pcap_record(data: bytes, orig_len: int) -> bytes:
    return struct.pack("<IIII", 1768471200, 0, len(data), orig_len) + data


def test_errors_of_a_truncated_capture(tmp_path: Path) -> None:
    records = read_capture(CAPTURES / "vxlan-overlay" / "node-a-eth0.pcap")
    full = next(r.data for r in records if len(r.data) == 1514)
    bad_ip = bytearray(records[0].data)
    bad_ip[14] = 0x43  # IPv4 header length 3 words
    body = (pcap_record(full, 1514) + pcap_record(full[:40], 1514)  # cut in the inner IP
            + pcap_record(full[:130], 1514)  # cut in the payload: headers whole
            + pcap_record(bytes(bad_ip), len(bad_ip)) + pcap_record(full[:100], 1514)[:-30])
    path = tmp_path / "cut.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + body)
    with pytest.warns(CaptureCutWarning):
        cut = read_packets(path)
    table = report.errors(cut)
    rows = {r.reason: (r.packets, r.first_frame, r.frames)
            for r in table.itertuples(index=False)}
    assert set(table["capture"]) == {"cut.pcap"}
    assert rows["truncated"] == (1, 2, "2")
    assert rows["snaplen-cut"] == (1, 3, "3")
    assert rows["bad-ip-header"] == (1, 4, "4")
    assert pd.isna(rows["capture-cut"][0]) and rows["capture-cut"][1] == 4
    assert "file ends inside a packet record" in rows["capture-cut"][2]
    captures = report.captures(cut)
    assert captures["complete"].tolist() == [False] and captures["errors"].tolist() == [2]
    assert report.errors(packets("vxlan-overlay")).empty


def test_error_frame_lists_are_cut_at_five() -> None:
    frames = packets("flat-routed").head(7).copy()
    frames["error"] = pd.Categorical(["truncated"] * 7)
    row = report.errors(frames).iloc[0]
    assert (row["packets"], row["frames"]) == (7, "1, 2, 3, 4, 5, …")


@pytest.mark.parametrize("folder", ["vxlan-overlay", "docker-snat", "flat-routed"])
def test_summary_is_json_ready_and_counts(folder: str) -> None:
    nat = truth_nat_flows(folder)
    tables = report.build_tables(packets(folder), nat_flows=nat if len(nat) else None)
    summary = report.summary(tables)
    assert json.loads(json.dumps(summary)) == summary
    frames = truth(folder)["packets"]
    assert summary["counts"]["packets"] == len(frames)
    assert summary["counts"]["bytes"] == sum(e["wire_len"] for e in frames)
    assert summary["counts"]["captures"] == len(truth(folder)["captures"])
    assert [(o["encap"], o["vni"]) for o in summary["overlays"]] == sorted(
        {(e["encap"], e["vni"]) for e in frames if e["encap"] != "none"})
    if folder == "docker-snat":
        nat = summary["nat"]
        assert (nat["flows"], nat["by_kind"]) == (6, {"snat": 6})
        assert {"nat_flow_id": 2, "kind": "snat", "packets": 30,
                "original": "tcp 172.17.0.3:44235 → 203.0.113.10:80",
                "translated": "tcp 192.168.1.10:38129 → 203.0.113.10:80"} in nat["translations"]
        assert {t["translated"] for t in nat["translations"] if t["nat_flow_id"] == 5} == {
            "icmp 192.168.1.10 → 203.0.113.10 id 6035"}
    if folder == "flat-routed":
        assert summary["problems"] == [] and summary["overlays"] == []


def test_summary_lists_latency_clock_offsets_and_notes() -> None:
    latency = pd.DataFrame({"metric": ["hop", "hop", "node_pair"], "scope": ["x", "y", "a → b"],
                            "count": [3, 4, 5], "min_ns": [1, 2, 3], "p50_ns": [10, 20, 30],
                            "p90_ns": [11, 21, 31], "p99_ns": [12, 22, 32],
                            "max_ns": [13, 23, 33]})
    offsets = pd.DataFrame({"node": ["node-b"], "reference_node": ["node-a"],
                            "offset_ns": [37_500_000], "bound_ns": [40_000], "samples": [12]})
    summary = report.summary(report.build_tables(packets("vxlan-overlay"), latency=latency,
                                                 clock_offsets=offsets))
    assert [r["scope"] for r in summary["latency"]["hop"]] == ["y", "x"]  # slowest first
    assert summary["clock_offsets"][0]["offset_ns"] == 37_500_000
    # The table has l4_payload_len, so payload efficiency is exact: no caveat.
    assert not any("upper bound" in note for note in summary.get("notes", []))
    estimated = report.summary(report.build_tables(
        packets("vxlan-overlay").drop(columns=["l4_payload_len"])))
    assert "upper bound" in estimated["notes"][0]


def test_empty_table_gives_empty_typed_tables() -> None:
    empty = packets("flat-routed").iloc[:0]
    tables = report.build_tables(empty)
    schemas = {"captures": health.CAPTURES_SCHEMA, "overlays": overlays_module.OVERLAYS_SCHEMA,
               "overhead": overlays_module.OVERHEAD_SCHEMA, "flows": flows_module.FLOWS_SCHEMA,
               "errors": health.ERRORS_SCHEMA, "checksums": health.CHECKSUMS_SCHEMA}
    for name, schema in schemas.items():
        assert tables[name].empty
        assert {c: str(t) for c, t in tables[name].dtypes.items()} == {
            c: str(pd.Series([], dtype=t).dtype) for c, t in schema.items()}, name
    summary = report.summary(tables)
    assert summary["counts"]["packets"] == 0 and summary["problems"] == []
    assert json.dumps(summary)


@pytest.mark.parametrize("folder", ["vxlan-overlay", "nvgre"])
def test_tables_have_their_documented_dtypes(folder: str) -> None:
    tables = report.build_tables(packets(folder))
    for name, schema, module in [
            ("overlays", overlays_module.OVERLAYS_SCHEMA, overlays_module),
            ("overhead", overlays_module.OVERHEAD_SCHEMA, overlays_module),
            ("flows", flows_module.FLOWS_SCHEMA, flows_module),
            ("captures", health.CAPTURES_SCHEMA, health),
            ("checksums", health.CHECKSUMS_SCHEMA, health)]:
        assert list(tables[name].columns) == list(schema), name
        assert {c: str(t) for c, t in tables[name].dtypes.items()} == {
            c: str(pd.Series([], dtype=t).dtype) for c, t in schema.items()}, name
        assert f"``{name}``" in (module.__doc__ or ""), name


@pytest.mark.parametrize("name", ["zeek__http-qinq-0.pcap", "zeek__mixed-vlan-mpls.pcap"])
def test_sizes_come_from_the_ip_header_not_the_frame(corpus_dir: Path, tshark: str,
                                                     name: str) -> None:
    """802.1Q/QinQ tags and trailers make 1522-byte frames of 1500-byte datagrams: no offload
    super-frame here, and the largest inner packet is the largest IP length tshark reads."""
    path = corpus_dir / "payloads" / name
    lengths = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "ip.len",
                              "-E", "occurrence=l"], capture_output=True, text=True,
                             check=True).stdout.split()
    largest = max(int(x) for x in lengths if x)
    overhead = report.overhead(pktkit.read_packets(path))
    assert overhead["gso_frames"].sum() == 0
    assert overhead["max_inner_len"].max() == largest == 1500
    assert overhead["headroom"].min() == 1500 - largest


def test_real_offload_super_frames_are_counted_apart(corpus_dir: Path, tshark: str) -> None:
    """A host capture's GSO super-frame (7106 bytes of VXLAN): its inner IP length, as tshark
    reads it, exceeds the inner MTU; it is a gso_frame, not an oversized datagram."""
    path = corpus_dir / "tcpdump__gso-ipv4-vxlan-ipv4.pcap"
    inner = subprocess.run([tshark, "-r", str(path), "-d", "udp.port==4789,vxlan", "-T",
                            "fields", "-e", "ip.len", "-E", "occurrence=l", "-Y", "tcp"],
                           capture_output=True, text=True, check=True).stdout.split()
    big = sum(int(x) > 1500 - 50 for x in inner)
    overhead = report.overhead(pktkit.read_packets(path))
    assert big > 0 and overhead["gso_frames"].sum() == big
    assert overhead["oversized"].sum() == 0


def test_bad_checksums_counted_per_capture_and_interface(tmp_path: Path) -> None:
    """Two interfaces in one pcapng and a second file: bad checksums are counted where they
    were captured, offload apart, and no packet is dropped for one."""
    from test_checksums import crafted
    from test_read import ng_epb, ng_idb, ng_shb

    cases = crafted()
    good, bad = cases["tcp-good"][0], cases["tcp-payload-flipped"][0]
    offload = cases["tcp-partial"][0]
    node = tmp_path / "node-a-any.pcapng"
    node.write_bytes(ng_shb() + ng_idb(name="eth0") + ng_idb(name="veth1")
                     + b"".join(ng_epb(i, t, f) for t, (i, f) in enumerate(
                         [(0, good), (0, bad), (1, bad), (1, bad), (1, offload), (1, good)])))
    other = tmp_path / "node-b.pcapng"
    other.write_bytes(ng_shb() + ng_idb(name="eth0") + ng_epb(0, 1, good))
    table = report.build_tables(read_packets([node, other]))
    assert table["captures"].set_index("capture")["bad_checksums"].to_dict() == {
        "node-a-any.pcapng": 3, "node-b.pcapng": 0}
    checks = table["checksums"].astype(object).to_dict("records")
    assert checks == [
        {"capture": "node-a-any.pcapng", "interface": "veth1", "checked": 4, "bad": 2,
         "offload": 1, "unchecked": 0, "ok": 1},
        {"capture": "node-a-any.pcapng", "interface": "eth0", "checked": 2, "bad": 1,
         "offload": 0, "unchecked": 0, "ok": 1},
        {"capture": "node-b.pcapng", "interface": "eth0", "checked": 1, "bad": 0, "offload": 0,
         "unchecked": 0, "ok": 1}]
    problems = [p for p in report.summary(table)["problems"] if p["problem"] == "bad-checksum"]
    assert [(p["where"], p["count"]) for p in problems] == [
        ("node-a-any.pcapng (veth1)", 2), ("node-a-any.pcapng (eth0)", 1)]
    assert table["captures"]["packets"].sum() == 7  # every frame is in the table


def test_a_clock_model_in_words() -> None:
    """The issue's own example, a reference node, and a node nothing crossed to."""
    base = {"reference_node": "node-a", "drift_ppm": 80.0, "bound_ns": 4_000,
            "at_ns": 1_768_471_200 * 10**9}  # 2026-01-15 10:00:00 UTC
    assert clock_model_text({**base, "node": "node-b", "offset_ns": 300_000_000}) == \
        "node-b: +300.000 ms at 10:00:00, +80.0 ppm, ± 4 µs"
    assert clock_model_text({**base, "node": "node-c", "offset_ns": -1_500, "bound_ns": 900,
                             "drift_ppm": -0.04}) == \
        "node-c: -0.002 ms at 10:00:00, -0.0 ppm, ± 900 ns"
    assert clock_model_text({**base, "node": "node-a", "offset_ns": 0}) == \
        "node-a: the reference clock"
    assert clock_model_text({**base, "node": "node-d", "offset_ns": None}).startswith(
        "node-d: no estimate")


def test_each_conversation_over_the_mtu_is_one_problem_with_its_names() -> None:
    """One ``flow-exceeds-mtu`` entry per conversation, in the order they first appear: its
    rows' count, largest datagram, smallest path MTU and captures; its names before its tuple
    when they are not its addresses (computed by hand from the rows below)."""
    flows = pd.DataFrame({
        "flow_id": [7, 3, 7, 9],
        "capture": ["node-a/eth0", "node-a/eth0", "node-b/eth0", "node-a/eth0"],
        "proto": [17, 6, 17, 17], "a_addr": ["10.0.0.4", "10.0.0.5", "10.0.0.4", "10.0.0.6"],
        "a_port": pd.array([5, 80, 5, 1], "Int64"),
        "b_addr": ["10.0.0.3", "10.0.0.7", "10.0.0.3", "10.0.0.8"],
        "b_port": pd.array([514, 8080, 514, 2], "Int64"), "overlay_encap": ["vxlan"] * 4,
        "overlay_vni": pd.array([1, 2, 1, 1], "Int64"), "exceeds_mtu": [True, True, True, False],
        "max_ip_len": [1500, 1600, 1480, 100], "path_mtu": [1450, 1450, 1400, 1450],
        "fragments": [0, 0, 0, 0], "packets": [3, 1, 3, 2],
        "a_name": ["pod:x", "10.0.0.5", "pod:x", "10.0.0.6"],
        "b_name": ["pod:y", "10.0.0.7", "pod:y", "10.0.0.8"]})
    found = [p for p in digest._conversation_problems(flows)
             if p["problem"] == "flow-exceeds-mtu"]
    assert found == [
        {"problem": "flow-exceeds-mtu",
         "where": "pod:x → pod:y (udp 10.0.0.4:5 → 10.0.0.3:514 (vxlan vni 1))", "count": 2,
         "detail": "datagrams of 1500 bytes > path MTU 1400, seen in 2 captures"},
        {"problem": "flow-exceeds-mtu", "where": "tcp 10.0.0.5:80 → 10.0.0.7:8080 (vxlan vni 2)",
         "count": 1, "detail": "datagrams of 1600 bytes > path MTU 1450, seen in 1 capture"}]
