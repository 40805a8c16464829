"""NAT flows from captures (pktkit.analysis.nat) against truth.json, and conntrack dumps.

The packets table is a stand-in, independent of pktkit.analysis.correlate: read_packets on the
generated captures, plus ``packet_id``/``hop``/``node``/``interface``/``direction`` joined from
truth.json by (capture, frame), plus the ICMP echo identifier parsed from the bytes by the
independent oracle parser.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import oracle
import pandas as pd
import pytest

import pktkit
from pktkit.analysis.conntrack import conntrack_arg, parse_conntrack, read_conntrack
from pktkit.analysis.nat import NAT_FLOWS_COLUMNS, nat_flows
from pktkit.capture.table import read_packets
from pktkit.errors import ConntrackFormatError, PktkitError, UsageError

TUPLE = ["proto", "orig_src", "orig_sport", "orig_dst", "orig_dport",
         "xlat_src", "xlat_sport", "xlat_dst", "xlat_dport"]
NAT_SCENARIOS = ["docker-snat", "docker-portmap", "k8s-nodeport", "k8s-clusterip"]


# --- the stand-in for pktkit.analysis.correlate -----------------------------------------------


@functools.cache
def generated(name: str, seed: int, root: Path) -> Path:
    out = root / f"{name}-{seed}"
    pktkit.generate(pktkit.make_scenario(name, seed=seed, flows=12), out)
    return out


def packets_with_truth(folder: Path, captures: Iterable[str] | None = None
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """read_packets + what correlate will add (from truth.json) + icmp_id from the bytes."""
    truth = pktkit.load_truth(folder)
    names = list(captures) if captures is not None else truth["captures"]
    df = read_packets([folder / n for n in names])
    labels = pd.DataFrame(truth["packets"]).set_index(["capture", "frame"])
    keys = pd.MultiIndex.from_arrays([df["capture"].astype(object), df["frame"].astype(int)])
    labels = labels.reindex(keys)
    for column in ("packet_id", "hop", "nat_flow_id"):
        df[column] = labels[column].astype("Int64").to_numpy()
    for column in ("node", "interface", "direction"):
        df[column] = pd.array(labels[column].to_numpy(), dtype="string")
    ids = {}
    for name in names:
        for frame, (_, layers) in enumerate(oracle.iter_layers(folder / name), start=1):
            icmp = [layer for layer in layers if layer.name in ("icmp", "icmpv6")]
            if icmp:
                ids[(name, frame)] = icmp[-1].fields["id"]
    df["icmp_id"] = pd.array([ids.get(k) for k in zip(df["capture"], df["frame"].astype(int),
                                                        strict=True)], dtype="UInt16")
    return df, truth


def found(flows: pd.DataFrame) -> set[tuple]:
    return {tuple(r) for r in flows[["kind", *TUPLE]].astype(object).itertuples(index=False)}


def expected(truth: dict[str, Any]) -> set[tuple]:
    return {tuple(f[c] for c in ["kind", *TUPLE]) for f in truth["nat_flows"]}


def assert_same_partition(got: pd.Series, want: pd.Series) -> None:
    """Same NA rows, and a one-to-one map between the two numberings elsewhere."""
    assert (got.isna() == want.isna()).all()
    pairs = pd.DataFrame({"got": got, "want": want}).dropna()
    assert pairs.groupby("got")["want"].nunique().le(1).all()
    assert pairs.groupby("want")["got"].nunique().le(1).all()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nat")


@pytest.fixture(scope="module")
def snat(root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    return packets_with_truth(generated("docker-snat", 1, root))


# --- NAT flows against the truth -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("scenario", NAT_SCENARIOS)
def test_nat_flows_equal_the_truth(root: Path, scenario: str, seed: int) -> None:
    packets, truth = packets_with_truth(generated(scenario, seed, root))
    flows, per_packet, disagreements = nat_flows(packets)
    assert len(truth["nat_flows"]) == 12
    # precision and recall 100%, kinds and tuples exact
    assert found(flows) == expected(truth)
    assert len(flows) == len(truth["nat_flows"])
    assert list(flows.columns[:16]) == NAT_FLOWS_COLUMNS
    assert flows["nat_flow_id"].tolist() == list(range(1, len(flows) + 1))
    assert flows["first_ts_ns"].is_monotonic_increasing
    assert flows["conntrack"].isna().all() and disagreements.empty
    assert_same_partition(per_packet, packets["nat_flow_id"])
    # packets, bytes and times, from the truth's labels with our ids mapped onto truth's
    labels = pd.DataFrame(truth["packets"])
    mapping = pd.DataFrame({"ours": per_packet, "truth": packets["nat_flow_id"]}).dropna()
    to_truth = dict(zip(mapping["ours"], mapping["truth"], strict=False))
    for flow in flows.itertuples():
        mine = labels[labels["nat_flow_id"] == to_truth[flow.nat_flow_id]]
        first = mine[mine["hop"] == mine.groupby("packet_id")["hop"].transform("min")]
        assert flow.packets == mine["packet_id"].nunique()
        assert flow.bytes == first["wire_len"].sum()
        assert (flow.first_ts_ns, flow.last_ts_ns) == (mine["ts_ns"].min(), mine["ts_ns"].max())
    nodes = {"docker-snat": "host", "docker-portmap": "host"}.get(scenario, "node-a")
    assert set(flows["node"]) == {nodes}


@pytest.mark.parametrize("scenario", ["flat-routed", "flat-routed-v6", "vxlan-overlay"])
def test_scenarios_without_nat_have_no_nat_flows(root: Path, scenario: str) -> None:
    packets, truth = packets_with_truth(generated(scenario, 1, root))
    flows, per_packet, _ = nat_flows(packets)
    assert truth["nat_flows"] == [] and flows.empty
    assert per_packet.isna().all() and per_packet.index.equals(packets.index)


def test_two_containers_with_one_source_port_are_two_flows(snat: tuple) -> None:
    """docker-snat makes both containers use one source port (TCP) and one ICMP echo id
    toward one server: masquerade keeps the first and rewrites the second."""
    packets, _ = snat
    flows, per_packet, _ = nat_flows(packets)
    for proto in (6, 1):
        same = flows[flows["proto"] == proto].groupby(["orig_sport", "orig_dst"])
        pairs = [g for _, g in same if len(g) == 2]
        assert pairs, f"no colliding pair for proto {proto}"
        for pair in pairs:
            assert set(pair["orig_src"]) == {"172.17.0.2", "172.17.0.3"}
            assert pair["xlat_src"].nunique() == 1  # both leave with the host's address
            assert pair["xlat_sport"].nunique() == 2  # ... on two ports (ids)
            kept = pair[pair["xlat_sport"] == pair["orig_sport"]]
            assert kept["orig_src"].tolist() == ["172.17.0.2"]  # the first keeps its port
            if proto == 1:  # the identifier is both "ports"
                assert (pair["xlat_sport"] == pair["xlat_dport"]).all()
                assert set(pair["kind"]) == {"snat"}
            # every sighting of either, on veth, docker0 and eth0, both ways, is told apart
            for flow in pair.itertuples():
                rows = packets[per_packet == flow.nat_flow_id]
                container = "veth-c1" if flow.orig_src == "172.17.0.2" else "veth-c2"
                assert set(rows["interface"]) == {container, "docker0", "eth0"}
                on_eth0 = rows[rows["interface"] == "eth0"]
                ports = on_eth0["sport"].where(on_eth0["src"] == flow.xlat_src,
                                               on_eth0["dport"])
                ids = on_eth0["icmp_id"] if proto == 1 else ports
                assert set(ids) == {flow.xlat_sport}
    assert_same_partition(per_packet, packets["nat_flow_id"])


def test_one_side_of_the_nat_captured_shows_no_nat_flow(root: Path) -> None:
    packets, _ = packets_with_truth(generated("docker-snat", 1, root), ["host-eth0.pcap"])
    flows, per_packet, _ = nat_flows(packets)
    assert flows.empty and per_packet.isna().all()
    # node-a's eth0 alone sees a NodePort request before and after translation
    packets, truth = packets_with_truth(generated("k8s-nodeport", 1, root),
                                        ["node-a-eth0.pcap"])
    flows, per_packet, _ = nat_flows(packets)
    assert found(flows) == expected(truth)
    assert_same_partition(per_packet, packets["nat_flow_id"])


def test_a_packet_seen_at_one_point_joins_its_flow_by_tuple(snat: tuple) -> None:
    packets, _ = snat
    # keep only the eth0 sighting of the first flow's SYN+ACK and the veth sighting of its
    # last packet: neither shows a translation any more
    first = packets[packets["nat_flow_id"] == 1]
    synack = first.loc[first["tcp_flags"] == 0x12, "packet_id"].iloc[0]
    last = first["packet_id"].max()
    drop = ((packets["packet_id"] == synack) & (packets["interface"] != "eth0")) | (
        (packets["packet_id"] == last) & ~packets["interface"].str.startswith("veth"))
    assert drop.sum() == 4  # two sightings of each
    cut = packets[~drop]
    flows, per_packet, _ = nat_flows(cut)
    assert found(flows) == found(nat_flows(packets).flows)
    assert_same_partition(per_packet, cut["nat_flow_id"])


def test_originator_is_found_from_replies_alone(snat: tuple) -> None:
    """Without the originator's packets: SYN+ACK, echo reply and a DNS answer (well-known
    source port) still say which side opened the connection."""
    packets, truth = snat
    replies = packets[packets["src"].isin(["203.0.113.10", "198.51.100.53"])]
    assert found(nat_flows(replies).flows) == expected(truth)


def test_a_translation_between_two_captured_nodes_has_no_node(snat: tuple) -> None:
    """As if eth0 were another device's (a NAT gateway that was not captured)."""
    packets, truth = snat
    moved = packets.assign(node=packets["node"].mask(packets["interface"] == "eth0", "gw"))
    flows, per_packet, _ = nat_flows(moved)
    assert found(flows) == expected(truth) and flows["node"].isna().all()
    assert_same_partition(per_packet, packets["nat_flow_id"])


def test_without_icmp_id_echo_is_not_followed(snat: tuple) -> None:
    packets, truth = snat
    flows, per_packet, _ = nat_flows(packets.drop(columns="icmp_id"))
    assert found(flows) == {f for f in expected(truth) if f[1] != 1}
    assert per_packet[packets["proto"] == 1].isna().all()


def test_missing_correlate_columns_is_a_usage_error(snat: tuple) -> None:
    with pytest.raises(UsageError, match="packet_id, hop"):
        nat_flows(snat[0].drop(columns=["packet_id", "hop"]))


# --- conntrack dumps: parsing --------------------------------------------------------------------

# Layouts as conntrack-tools (libnetfilter_conntrack's snprintf_default.c) and the kernel
# (nf_conntrack_standalone.c ct_seq_show) print them; conntrack(8) shows the same examples.
PLAIN = """\
tcp      6 431999 ESTABLISHED src=172.17.0.2 dst=203.0.113.10 sport=44235 dport=80 \
src=203.0.113.10 dst=192.168.1.10 sport=80 dport=44235 [ASSURED] mark=0 use=1
udp      17 28 src=172.17.0.3 dst=198.51.100.53 sport=40624 dport=53 [UNREPLIED] \
src=198.51.100.53 dst=192.168.1.10 sport=53 dport=40624 mark=0 use=1
icmp     1 29 src=172.17.0.3 dst=203.0.113.10 type=8 code=0 id=53758 \
src=203.0.113.10 dst=192.168.1.10 type=0 code=0 id=6035 mark=0 use=1 id=3735928559
conntrack v1.4.6 (conntrack-tools): 3 flow entries have been shown.
"""
EXTENDED = """\
ipv4     2 tcp      6 86399 ESTABLISHED src=198.51.100.23 dst=192.168.50.11 sport=41587 \
dport=30080 src=10.244.1.7 dst=192.168.50.11 sport=80 dport=52716 [ASSURED] mark=0 zone=7 use=2
ipv4     2 udp      17 29 src=10.244.0.5 dst=10.96.0.10 sport=40889 dport=53 \
src=10.244.1.3 dst=10.244.0.5 sport=53 dport=40889 mark=16384 use=1
"""
PROC = """\
ipv6     10 icmpv6   58 29 src=fd00:0010:0244:0000:0000:0000:0000:0005 \
dst=fd00:0010:0244:0001:0000:0000:0000:0007 type=128 code=0 id=4242 packets=1 bytes=104 \
src=fd00:0010:0244:0001:0000:0000:0000:0007 dst=fd00:0010:0244:0000:0000:0000:0000:0005 \
type=129 code=0 id=4242 packets=1 bytes=104 mark=0 zone=0 use=2
ipv4     2 tcp      6 117 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1234 dport=80 \
packets=1 bytes=60 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1234 packets=0 \
bytes=0 mark=0 secctx=system_u:object_r:unlabeled_t:s0 zone-orig=1 delta-time=4 use=2
ipv4     2 gre      47 179 src=10.0.0.1 dst=10.0.0.2 srckey=0x0 dstkey=0x0 \
src=10.0.0.2 dst=10.0.0.1 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=2
"""


def row(table: pd.DataFrame, i: int) -> dict[str, Any]:
    return {k: (None if pd.isna(v) else v) for k, v in table.iloc[i].items()}


def test_parse_plain_conntrack_l(tmp_path: Path) -> None:
    path = tmp_path / "ct.txt"
    path.write_text(PLAIN)
    table = parse_conntrack(path, node="host")
    assert len(table) == 3 and table["line"].tolist() == [1, 2, 3]
    tcp, udp, icmp = (row(table, i) for i in range(3))
    assert {k: tcp[k] for k in (
        "node", "file", "l3", "proto", "timeout_s", "state", "orig_src", "orig_sport",
        "orig_dst", "orig_dport", "xlat_src", "xlat_sport", "xlat_dst", "xlat_dport", "kind",
        "assured", "unreplied", "mark", "use")} == {
        "node": "host", "file": str(path), "l3": "ipv4", "proto": 6, "timeout_s": 431999,
        "state": "ESTABLISHED", "orig_src": "172.17.0.2", "orig_sport": 44235,
        "orig_dst": "203.0.113.10", "orig_dport": 80, "xlat_src": "192.168.1.10",
        "xlat_sport": 44235, "xlat_dst": "203.0.113.10", "xlat_dport": 80, "kind": "snat",
        "assured": True, "unreplied": False, "mark": 0, "use": 1}
    assert (udp["unreplied"], udp["assured"], udp["state"], udp["kind"]) == (
        True, False, None, "snat")
    # ICMP: the identifier is both "ports"; the trailing id= of -o id is conntrack's own
    assert (icmp["orig_sport"], icmp["orig_dport"], icmp["xlat_sport"], icmp["xlat_dport"],
            icmp["icmp_type"], icmp["kind"]) == (53758, 53758, 6035, 6035, 8, "snat")


def test_parse_conntrack_extended_and_proc() -> None:
    table = parse_conntrack(EXTENDED)
    nodeport, dns = row(table, 0), row(table, 1)
    assert (nodeport["l3"], nodeport["kind"], nodeport["zone"]) == ("ipv4", "snat+dnat", 7)
    assert (nodeport["xlat_src"], nodeport["xlat_sport"], nodeport["xlat_dst"],
            nodeport["xlat_dport"]) == ("192.168.50.11", 52716, "10.244.1.7", 80)
    assert (dns["kind"], dns["xlat_dst"], dns["mark"], dns["file"]) == (
        "dnat", "10.244.1.3", 16384, "<text>")
    table = parse_conntrack(PROC)
    echo, syn, gre = (row(table, i) for i in range(3))
    # the kernel prints IPv6 uncompressed; the table holds inet_ntop's form, as packets do
    assert (echo["l3"], echo["proto"], echo["orig_src"], echo["orig_dst"]) == (
        "ipv6", 58, "fd00:10:244::5", "fd00:10:244:1::7")
    assert (echo["orig_sport"], echo["icmp_type"], echo["kind"]) == (4242, 128, None)
    assert (echo["orig_packets"], echo["orig_bytes"], echo["reply_packets"]) == (1, 104, 1)
    assert (syn["state"], syn["unreplied"], syn["orig_packets"], syn["reply_bytes"]) == (
        "SYN_SENT", True, 1, 0)
    assert (gre["proto"], gre["orig_sport"], gre["kind"]) == (47, None, None)


def test_parse_conntrack_event_prefix_timestamps_and_empty_dump(tmp_path: Path) -> None:
    line = ("    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 "
            "[UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 "
            "[start=Tue Jan 13 10:00:00 2026] [stop=Tue Jan 13 10:00:05 2026] use=1\n")
    assert row(parse_conntrack(line), 0)["orig_dport"] == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n")
    assert parse_conntrack(empty).empty


@pytest.mark.parametrize("content, why", [
    ('<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n', "protocol name and number"),
    ("-A -t 431999 -u SEEN_REPLY,ASSURED -s 10.0.0.1 -d 10.0.0.2 -p tcp\n",
     "protocol name and number"),
    ("tcp 6 10 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2\n", "two tuples"),
    ("tcp 6 10 ESTABLISHED src=10.0.0.999 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 "
     "dst=10.0.0.1 sport=2 dport=1\n", "bad address"),
])
def test_unknown_conntrack_format_is_a_one_line_error(tmp_path: Path, content: str,
                                                     why: str) -> None:
    path = tmp_path / "dump.txt"
    path.write_text(PLAIN.splitlines()[0] + "\n" + content)
    with pytest.raises(ConntrackFormatError) as error:
        parse_conntrack(path)
    message = str(error.value)
    assert "\n" not in message and f"{path} line 2:" in message and why in message
    assert "conntrack -L" in message and "/proc/net/nf_conntrack" in message
    assert isinstance(error.value, UsageError | PktkitError) and error.value.exit_code == 2


def test_binary_or_missing_conntrack_file(tmp_path: Path, root: Path) -> None:
    pcap = generated("docker-snat", 1, root) / "host-eth0.pcap"
    with pytest.raises(ConntrackFormatError, match="binary data"):
        parse_conntrack(pcap)
    with pytest.raises(UsageError, match="cannot read"):
        parse_conntrack(tmp_path / "nope.txt")


def test_conntrack_arg(tmp_path: Path) -> None:
    assert conntrack_arg("node-a=ct/a.txt") == ("node-a", "ct/a.txt")
    assert conntrack_arg("ct/a.txt") == (None, "ct/a.txt")
    odd = tmp_path / "x=y.txt"
    odd.write_text("")
    assert conntrack_arg(str(odd)) == (None, str(odd))
    assert conntrack_arg("dir/x=y.txt") == (None, "dir/x=y.txt")


# --- conntrack dumps against the captures --------------------------------------------------------


def entry(fmt: str, flow: dict[str, Any], *, xlat: dict[str, Any] | None = None) -> str:
    """A dump line for a truth NAT flow (``xlat`` overrides the translated tuple)."""
    x = {k: flow[k] for k in ("xlat_src", "xlat_sport", "xlat_dst", "xlat_dport")} | (xlat or {})
    proto = flow["proto"]
    name = {6: "tcp", 17: "udp", 1: "icmp"}[proto]
    head = {"plain": f"{name:<8} {proto} 100 ",
            "extended": f"ipv4     2 {name:<8} {proto} 100 ",
            "proc": f"ipv4     2 {name:<8} {proto} 100 "}[fmt]
    state = "ESTABLISHED " if proto == 6 else ""
    orig = f"src={flow['orig_src']} dst={flow['orig_dst']} "
    reply = f"src={x['xlat_dst']} dst={x['xlat_src']} "
    if proto == 1:
        orig += f"type=8 code=0 id={flow['orig_sport']} "
        reply += f"type=0 code=0 id={x['xlat_sport']} "
    else:
        orig += f"sport={flow['orig_sport']} dport={flow['orig_dport']} "
        reply += f"sport={x['xlat_dport']} dport={x['xlat_sport']} "
    acct = "packets=3 bytes=180 " if fmt == "proc" else ""
    return f"{head}{state}{orig}{acct}{reply}{acct}[ASSURED] mark=0 zone=0 use=2"


def dump(tmp_path: Path, lines: Iterable[str], name: str = "ct.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.mark.parametrize("fmt", ["plain", "extended", "proc"])
def test_a_matching_dump_confirms_every_flow(snat: tuple, tmp_path: Path, fmt: str) -> None:
    packets, truth = snat
    path = dump(tmp_path, (entry(fmt, f) for f in truth["nat_flows"]))
    flows, _, disagreements = nat_flows(packets, conntrack={"host": path})
    assert flows["conntrack"].tolist() == ["confirmed"] * len(flows)
    assert disagreements.empty
    # the same dump unnamed (any node), as a bare path, and already parsed
    for arg in (path, {None: path}, read_conntrack(path)):
        assert (nat_flows(packets, conntrack=arg).flows["conntrack"] == "confirmed").all()


def test_a_contradicting_dump_is_reported_not_trusted(snat: tuple, tmp_path: Path) -> None:
    packets, truth = snat
    by_id = {f["nat_flow_id"]: f for f in truth["nat_flows"]}
    other_port, untranslated, missing = by_id[2], by_id[3], by_id[4]
    lines = [entry("plain", f) for f in truth["nat_flows"] if f not in
             (other_port, untranslated, missing)]
    lines.append(entry("plain", other_port, xlat={"xlat_sport": 60001}))
    lines.append(entry("plain", untranslated, xlat={"xlat_src": untranslated["orig_src"]}))
    path = dump(tmp_path, lines)
    flows, _, disagreements = nat_flows(packets, conntrack=path)
    # the captures' flows stand as the captures show them
    assert found(flows) == expected(truth)
    status = {(r.orig_src, r.orig_sport, r.proto): r.conntrack for r in flows.itertuples()}

    def of(flow: dict[str, Any]) -> str:
        return status[(flow["orig_src"], flow["orig_sport"], flow["proto"])]

    assert (of(other_port), of(untranslated), of(missing)) == (
        "contradicted", "contradicted", "absent")
    assert (flows["conntrack"] == "confirmed").sum() == len(flows) - 3
    assert len(disagreements) == 2
    bad = disagreements.set_index("orig_sport")
    port = bad.loc[other_port["orig_sport"]]
    assert (port["reason"], port["xlat_sport"], port["ct_xlat_sport"], port["ct_line"]) == (
        "dump translates it otherwise", other_port["xlat_sport"], 60001, len(lines) - 1)
    plain = bad.loc[untranslated["orig_sport"]]
    assert (plain["reason"], plain["ct_xlat_src"], plain["xlat_src"]) == (
        "dump shows it untranslated", untranslated["orig_src"], untranslated["xlat_src"])
    assert (plain["ct_file"], plain["node"]) == (str(path), "host")
    assert flows.loc[flows["nat_flow_id"] == plain["nat_flow_id"], "orig_src"].item() == \
        untranslated["orig_src"]


def test_a_nat_entry_the_captures_show_untranslated_is_reported(root: Path,
                                                                tmp_path: Path) -> None:
    packets, _ = packets_with_truth(generated("flat-routed", 1, root))
    tcp = packets[(packets["proto"] == 6) & (packets["tcp_flags"] == 0x02)].iloc[0]
    fake = {"proto": 6, "orig_src": tcp["src"], "orig_sport": int(tcp["sport"]),
            "orig_dst": tcp["dst"], "orig_dport": int(tcp["dport"]),
            "xlat_src": "192.0.2.1", "xlat_sport": 40000, "xlat_dst": tcp["dst"],
            "xlat_dport": int(tcp["dport"])}
    path = dump(tmp_path, [entry("extended", fake)])
    node = tcp["node"]
    flows, _, disagreements = nat_flows(packets, conntrack={node: path})
    assert flows.empty
    assert disagreements[["node", "reason", "orig_src", "ct_xlat_src"]].values.tolist() == [
        [node, "captures show it untranslated", tcp["src"], "192.0.2.1"]]
    assert disagreements["nat_flow_id"].isna().all()


def test_dumps_of_several_nodes(root: Path, tmp_path: Path) -> None:
    packets, truth = packets_with_truth(generated("k8s-nodeport", 1, root))
    a = dump(tmp_path, (entry("proc", f) for f in truth["nat_flows"]), "a.txt")
    # node-b only forwards: it tracks the already translated tuple, untranslated
    untouched = [entry("proc", {**f, "orig_src": f["xlat_src"], "orig_sport": f["xlat_sport"],
                                "orig_dst": f["xlat_dst"], "orig_dport": f["xlat_dport"]})
                 for f in truth["nat_flows"]]
    b = dump(tmp_path, untouched, "b.txt")
    flows, _, disagreements = nat_flows(packets, conntrack={"node-a": a, "node-b": b})
    assert (flows["conntrack"] == "confirmed").all() and disagreements.empty
    # node-a's entries read as node-b's do not count for node-a's flows
    flows, _, _ = nat_flows(packets, conntrack={"node-b": a})
    assert (flows["conntrack"] == "absent").all()
    with pytest.raises(UsageError, match="node 'node-c': no capture of that node"):
        nat_flows(packets, conntrack={"node-c": a})
