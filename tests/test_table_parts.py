"""pktkit.analysis.table_parts: the tables after correlation from partitions of whole packets
(map, merge, apply) equal the single-process analysis's, and the partials stay small.

Each reference scenario is analysed in one process; its rows are then split by a hash of
``packet_id`` into K partitions (every sighting of a packet in one, as the Dask shuffle
leaves them), the columns and tables under test are dropped and computed again in parts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_nat_flows import dump, entry

import pktkit
from pktkit.analysis.conntrack import read_conntrack
from pktkit.analysis.latency import latency_bins, latency_samples
from pktkit.analysis.naming import HANDSHAKE_NAMES, add_names, name_packets
from pktkit.analysis.nat import (
    NAT_FLOWS_COLUMNS,
    count_connections,
    merge_translations,
    nat_flows,
    observe_translations,
)
from pktkit.analysis.overlays import conversation_keys, overlay_columns
from pktkit.analysis.percentiles import count_samples, merge_counts, values_in_bins
from pktkit.analysis.pipeline import Analysis
from pktkit.analysis.rows import row_digest
from pktkit.analysis.table_parts import (
    PacketPart,
    add_overlays_and_flows,
    handshakes_in_parts,
    latency_in_parts,
    nat_in_parts,
)
from pktkit.report.digest import summary
from pktkit.report.plot import (
    CDF_POINTS,
    cdf_curves,
    cdf_ranks,
    cdf_samples,
    latency_cdf,
    throughput,
    throughput_partial,
    throughput_window,
)
from pktkit.report.tables import (
    build_tables,
    merged_partial,
    report_partial,
    report_tables,
    split_partial,
)

REPO = Path(__file__).resolve().parent.parent
IMPAIR = ["queue=5ms", "loss=0.02", "reorder=0.02", "duplicate=0.02"]
SCENARIOS = {  # name: (scenario, flows, impaired)
    "docker-snat": ("docker-snat", None, False),
    "docker-portmap": ("docker-portmap", None, False),
    "flat-routed": ("flat-routed", None, False),  # no NAT: a dump it contradicts
    "k8s-nodeport": ("k8s-nodeport", None, False),
    "vxlan-overlay": ("vxlan-overlay", None, False),  # two tenants sharing pod addresses
    "vxlan-overlay-impaired": ("vxlan-overlay", 30, True),
    "k8s-nodeport-impaired": ("k8s-nodeport", 30, True),
}
COMPUTED = ["overlay_encap", "overlay_vni", "nat_flow_id", "src_name", "dst_name",
            "outer_src_name", "outer_dst_name"]
NAMES = ["src_name", "dst_name", "outer_src_name", "outer_dst_name"]


def _generate(tmp: Path, scenario: str, flows: int | None, impaired: bool) -> Path:
    from pktkit.craft.generation import generate, make_scenario

    out = tmp / f"{scenario}-{flows}-{impaired}"
    if not out.exists():
        made = make_scenario(scenario, seed=3, flows=flows,
                             impairments=IMPAIR if impaired else (),
                             clock_offset_s=0.003 if impaired else 0.0,
                             clock_drift_ppm=30.0 if impaired else 0.0)
        generate(made, out)
    return out


@pytest.fixture(scope="module")
def analyses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Analysis]:
    tmp = tmp_path_factory.mktemp("scenarios")
    return {name: pktkit.analyze(_generate(tmp, *spec)) for name, spec in SCENARIOS.items()}


def _hop_rows(packets: pd.DataFrame, hops: pd.DataFrame) -> np.ndarray:
    """Each hops row's row among ``packets`` (its first frame at its capture)."""
    at = pd.MultiIndex.from_arrays([packets["capture"].astype(str),
                                    packets["frame"].astype("int64")])
    wanted = pd.MultiIndex.from_arrays([hops["capture"].astype(str),
                                        hops["frame"].astype("int64")])
    rows = at.get_indexer(wanted)
    assert (rows >= 0).all()
    return rows


def split(analysis: Analysis, k: int) -> list[PacketPart]:
    """The analysis's rows in ``k`` partitions by a hash of packet_id, the columns under test
    dropped (``flow_id`` is replaced by the parts)."""
    packets = analysis.packets.drop(columns=COMPUTED)
    packets["flow_id"] = pd.array(np.full(len(packets), 7, np.int64), dtype="Int64")
    part_of = row_digest([packets["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
    hops = analysis.hops
    hop_part = row_digest([hops["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
    parts = []
    for i in range(k):
        rows = packets[part_of == i].copy()
        its_hops = hops[hop_part == i].reset_index(drop=True)
        parts.append(PacketPart(rows, its_hops, _hop_rows(rows, its_hops)))
    assert sum(len(p.packets) for p in parts) == len(packets)
    return parts


def _joined(parts: list[PacketPart]) -> pd.DataFrame:
    return pd.concat([p.packets for p in parts]).sort_index()


def _same_ids(ours: pd.Series, theirs: pd.Series) -> None:
    """Equal up to renumbering: a bijection between the two numberings, NA where NA."""
    assert ours.isna().equals(theirs.isna())
    pairs = pd.DataFrame({"a": ours, "b": theirs}).dropna().drop_duplicates()
    assert pairs["a"].is_unique and pairs["b"].is_unique


@pytest.mark.parametrize("k", [2, 7])
def test_overlays_and_conversations_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    for name, analysis in analyses.items():
        parts = split(analysis, k)
        add_overlays_and_flows(parts)
        got, want = _joined(parts), analysis.packets
        for column in ("overlay_encap", "overlay_vni"):
            pd.testing.assert_series_equal(got[column], want[column], obj=f"{name} {column}")
        _same_ids(got["flow_id"], want["flow_id"])
        # numbered by the first row of each conversation, as in one process: the same ids
        pd.testing.assert_series_equal(got["flow_id"], want["flow_id"], obj=name)


def _latency_from_parts(analysis: Analysis, k: int) -> pd.DataFrame:
    """The latency table from ``k`` partitions, after their flow ids, NAT flow ids and
    names (the merged handshakes and NAT flows named on the client: their equality is
    tested above)."""
    parts = split(analysis, k)
    add_overlays_and_flows(parts)
    nat_in_parts(parts, None)
    for part in parts:
        name_packets(part.packets, analysis.names)
    return latency_in_parts(parts, analysis.handshakes, analysis.nat_flows)


@pytest.mark.parametrize("k", [2, 7])
def test_latency_in_parts_is_exact(analyses: dict[str, Analysis], k: int) -> None:
    """Every percentile equal to np.percentile over all samples (the single process), though
    no partition saw them all."""
    for name, analysis in analyses.items():
        got = _latency_from_parts(analysis, k)
        assert len(got) == len(analysis.latency) > 0, name
        pd.testing.assert_frame_equal(got, analysis.latency, obj=name)


@pytest.mark.parametrize("k", [2, 7])
def test_handshakes_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    """A handshake's SYN, SYN-ACK and ACK are three packets, mostly in three partitions: the
    table (then named on the client, as analyze() names it) equals the single process's."""
    for name, analysis in analyses.items():
        parts = split(analysis, k)
        add_overlays_and_flows(parts)
        got = handshakes_in_parts(parts)
        add_names(got, analysis.names, HANDSHAKE_NAMES, "syn_ts_ns", proto=6, after=True)
        assert len(got) > 0, name
        pd.testing.assert_frame_equal(got, analysis.handshakes, obj=name)


def _dump(analysis: Analysis, tmp: Path) -> pd.DataFrame | None:
    """A conntrack dump of the analysis's node: every NAT flow as captured but the first
    (its translated port changed: contradicted), and a NATed entry for a TCP connection the
    captures show crossing a node untranslated."""
    flows, packets = analysis.nat_flows, analysis.packets
    on_node = packets.groupby(["packet_id", "node"], observed=True)["frame"].transform("size")
    plain = packets[(packets["proto"] == 6) & (packets["tcp_flags"] == 0x02)
                    & packets["nat_flow_id"].isna() & (on_node >= 2)]  # crossed a node
    if not len(flows) and not len(plain):
        return None
    records = [dict(zip(NAT_FLOWS_COLUMNS, r, strict=False)) for r in
               flows[NAT_FLOWS_COLUMNS].itertuples(index=False, name=None)]
    lines = [entry("plain", f, xlat={"xlat_sport": 60001} if i == 0 else None)
             for i, f in enumerate(records) if f["proto"] in (1, 6, 17)]
    if len(plain):
        syn = plain.iloc[0]
        lines.append(entry("plain", {
            "proto": 6, "orig_src": syn["src"], "orig_sport": int(syn["sport"]),
            "orig_dst": syn["dst"], "orig_dport": int(syn["dport"]), "xlat_src": "192.0.2.1",
            "xlat_sport": 40000, "xlat_dst": syn["dst"], "xlat_dport": int(syn["dport"])}))
    tmp.mkdir(parents=True, exist_ok=True)
    return read_conntrack(dump(tmp, lines))


@pytest.mark.parametrize("k", [2, 7])
def test_nat_flows_and_names_in_parts(analyses: dict[str, Analysis], k: int,
                                      tmp_path: Path) -> None:
    """nat_flows, nat_disagreements (against a dump that confirms, contradicts and is
    contradicted) and every row's nat_flow_id equal one process's; names applied per
    partition equal the single table's."""
    for name, analysis in analyses.items():
        dumps = _dump(analysis, tmp_path / name)
        one = nat_flows(analysis.packets, conntrack=dumps)
        parts = split(analysis, k)
        add_overlays_and_flows(parts)
        got = nat_in_parts(parts, dumps)
        pd.testing.assert_frame_equal(got.flows, one.flows, obj=name)
        pd.testing.assert_frame_equal(got.disagreements, one.disagreements, obj=name)
        for part in parts:
            name_packets(part.packets, analysis.names)
        joined, want = _joined(parts), analysis.packets
        pd.testing.assert_series_equal(joined["nat_flow_id"], want["nat_flow_id"], obj=name)
        for column in NAMES:  # categoricals per partition: their values equal
            pd.testing.assert_series_equal(joined[column].astype("string"),
                                           want[column].astype("string"), obj=name)
        assert list(joined.columns) == list(want.columns)
        if len(one.flows):
            assert set(one.flows["conntrack"]) >= {"confirmed", "contradicted"}, name


def test_the_impaired_scenarios_have_what_is_tested(analyses: dict[str, Analysis],
                                                    tmp_path: Path) -> None:
    """The reference set exercises NAT, two tenants and every latency metric the parts
    compute (not a vacuous comparison)."""
    metrics = set().union(*(set(a.latency["metric"]) for a in analyses.values()))
    assert {"hop", "node_pair", "nat", "handshake_rtt", "pod_pair", "service"} <= metrics
    vxlan = analyses["vxlan-overlay"].packets
    assert vxlan["overlay_vni"].dropna().nunique() == 2
    assert len(analyses["docker-snat"].nat_flows) > 0
    assert any("captures show it untranslated" in set(
        nat_flows(a.packets, conntrack=_dump(a, tmp_path / n)).disagreements["reason"])
        for n, a in analyses.items())


def _partial_sizes(analysis: Analysis, k: int) -> tuple[int, int, int]:
    """Rows of every partition's partials: conversations, latency pass 1, latency pass 2."""
    parts = split(analysis, k)
    for part in parts:
        name_packets(part.packets, analysis.names)
        part.packets["nat_flow_id"] = analysis.packets["nat_flow_id"]
    conversation = latency_1 = latency_2 = 0
    samples = []
    for part in parts:
        packet_id = part.packets["packet_id"].to_numpy(np.int64)
        encap, vni = overlay_columns(part.packets, packet_id)
        conversation += len(conversation_keys(part.packets, packet_id, encap, vni).partial)
        samples.append(latency_samples(part.packets, part.hops, part.hop_rows,
                                       analysis.nat_flows))
    counts = [count_samples(s) for s in samples]
    latency_1 = sum(len(c.groups) + len(c.bins) for c in counts)
    wanted = latency_bins(counts)
    latency_2 = sum(len(values_in_bins(s, wanted)) for s in samples)
    return conversation, latency_1, latency_2


def test_partials_do_not_grow_with_frames(tmp_path: Path) -> None:
    """4× the flows (and frames) of one scenario: the conversation partial grows with the
    conversations (one row per key per partition, never per frame), the latency partials
    stay within the histogram's bins."""
    small = pktkit.analyze(_generate(tmp_path, "vxlan-overlay", 10, True))
    large = pktkit.analyze(_generate(tmp_path, "vxlan-overlay", 40, True))
    assert len(large.packets) > 3 * len(small.packets)
    for analysis in (small, large):
        conversation, _, latency_2 = _partial_sizes(analysis, 3)
        keys = analysis.packets["flow_id"].nunique() * 3 * 2  # both sides of a NAT, 3 parts
        assert conversation <= keys < len(analysis.packets)
        assert latency_2 <= 3 * len(analysis.latency) * 6  # ≤ 6 ranks per group, few values
        # pass 1: at most every bin the groups' values span (1024 per octave), per partition
        _, latency_1, _ = _partial_sizes(analysis, 3)
        spans = [np.log2(max(hi, 1) / max(lo, 1)) + 1 for lo, hi in
                 zip(analysis.latency["min_ns"], analysis.latency["max_ns"], strict=True)]
        assert latency_1 <= 3 * sum(min(1024 * s + 1, n) + 1 for s, n in
                                    zip(spans, analysis.latency["count"], strict=True))


def test_nat_partials_are_per_connection(tmp_path: Path) -> None:
    """docker-snat with 10 and 40 flows: each partition's NAT partials hold a row per
    translation pair and per connection it touches, not per packet."""
    for flows in (10, 40):
        analysis = pktkit.analyze(_generate(tmp_path, "docker-snat", flows, False))
        parts = split(analysis, 3)
        seen = [observe_translations(p.packets) for p in parts]
        connections = merge_translations([s.partial for s in seen])
        counted = [count_connections(s, connections, []) for s in seen]
        k = len(analysis.nat_flows)
        assert len(connections.orig) == k > 0
        assert sum(len(s.partial) for s in seen) <= 3 * 2 * k < len(analysis.packets)
        assert sum(len(c.partial.per_connection) for c in counted) <= 3 * k


CORPUS_FILES = ["zeek__tcp-truncated-snaplen68.pcap", "ndpi__dns-fragmented.pcap"]


@pytest.fixture(scope="module")
def with_corpus(analyses: dict[str, Analysis]) -> dict[str, Analysis]:
    """The scenarios, plus (when the corpus is there) real captures with snaplen-cut and
    truncated frames (the errors table) and IP fragments."""
    corpus = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (corpus / "MANIFEST.tsv").is_file():
        return analyses
    return {**analyses, **{name: pktkit.analyze(corpus / name) for name in CORPUS_FILES}}


@pytest.mark.parametrize("k", [2, 7])
def test_report_tables_in_parts(with_corpus: dict[str, Analysis], k: int) -> None:
    """Every report table (captures, overlays, overhead, flows, errors, checksums) merged
    from partitions' partials equals build_tables of the whole table; so does the summary
    made from them."""
    for name, analysis in with_corpus.items():
        packets = analysis.packets
        part_of = row_digest([packets["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
        given = {"underlay_mtu": analysis.underlay_mtu, "nat_flows": analysis.nat_flows,
                 "hops": analysis.hops, "latency": analysis.latency,
                 "clock_offsets": analysis.clock_offsets}
        partials = [report_partial(packets[part_of == i], underlay_mtu=analysis.underlay_mtu)
                    for i in range(k)]
        got = report_tables(partials, read_stats=packets.attrs.get("read_stats", []),
                            payload_estimated="l4_payload_len" not in packets, **given)
        want = build_tables(packets, **given)
        assert list(got) == list(want)
        for table in want:
            pd.testing.assert_frame_equal(got[table], want[table], obj=f"{name} {table}")
            assert got[table].attrs == want[table].attrs
        assert summary(got) == summary(want)
        # merged in steps, as a cluster's workers merge them: each partial in buckets by
        # flow, a bucket of every partial merged, two of those merged again
        split = [split_partial(p, 3) for p in partials]
        buckets = [merged_partial([s[b] for s in split]) for b in range(3)]
        assert sum(len(b.flows.flows) for b in buckets) == len(want["flows"])  # apart
        assert len(want["flows"]) < 30 or all(len(b.flows.flows) for b in buckets)
        stepped = report_tables([merged_partial(buckets[:2]), buckets[2]],
                                read_stats=packets.attrs.get("read_stats", []),
                                payload_estimated="l4_payload_len" not in packets, **given)
        for table in want:
            pd.testing.assert_frame_equal(stepped[table], want[table], obj=f"{name} {table}")
    if CORPUS_FILES[0] not in with_corpus:
        return
    errors = build_tables(with_corpus[CORPUS_FILES[0]].packets)["errors"]
    assert set(errors["reason"]) >= {"snaplen-cut", "truncated"}
    assert errors["frames"].str.endswith("…").any()  # more than HEAD - 1 frames


def _cdf_in_parts(hops: pd.DataFrame, k: int, by: str) -> tuple[list, int]:
    part_of = row_digest([hops["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k \
        if "packet_id" in hops else np.arange(len(hops)) % k
    samples = [cdf_samples(hops[part_of == i], by) for i in range(k)]
    wanted, scopes = cdf_ranks(merge_counts([count_samples(s) for s in samples]), 10)
    return cdf_curves(wanted, [values_in_bins(s, wanted) for s in samples]), scopes


def _lines(figure: object) -> list:
    return [(line.get_label(), line.get_xdata().tolist(), line.get_ydata().tolist())
            for line in figure.axes[0].lines]


@pytest.mark.parametrize("k", [2, 7])
def test_latency_cdf_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    """The latency CDF figures drawn from partitions' partials have the lines of the single
    table's; with 20,000 samples a scope is drawn through CDF_POINTS ranks, each the exact
    sorted sample."""
    for analysis in analyses.values():
        for by in ("hop", "node_pair"):
            want = _lines(latency_cdf(analysis.hops, by=by))
            assert _lines(latency_cdf(None, by=by, curves=_cdf_in_parts(analysis.hops, k, by))) \
                == want
    rng = np.random.default_rng(5)
    delays = (40_000 + rng.pareto(1.5, 20_000) * 5_000).astype(np.int64)
    table = pd.DataFrame({"scope": np.where(rng.random(20_000) < 0.7, "a → b", "b → a"),
                          "delay_ns": pd.array(delays, dtype="Int64")})
    (curves, scopes) = _cdf_in_parts(table, k, "hop")
    assert scopes == 2
    for label, xs, ys, count in curves:
        mine = np.sort(delays[table["scope"] == label])
        ranks = np.unique(np.linspace(0, count - 1, CDF_POINTS).round().astype(np.int64))
        assert np.array_equal(xs, mine[ranks].astype(float)) and len(xs) <= CDF_POINTS
        assert np.array_equal(ys, (ranks + 1) / count)


@pytest.mark.parametrize("k", [2, 7])
def test_throughput_in_parts(analyses: dict[str, Analysis], k: int) -> None:
    """The throughput figure from partitions' binned bits (start and bin width from the
    merged captures and overlays tables) has the single table's lines."""
    drawn = 0
    for analysis in analyses.values():
        packets = analysis.packets
        window = throughput_window(build_tables(packets))
        want = _lines(throughput(packets))
        if window is None:
            assert want == []
            continue
        start, width = window
        part_of = row_digest([packets["packet_id"].to_numpy(np.int64)]).view(np.uint64) % k
        partials = [throughput_partial(packets[part_of == i], start, width) for i in range(k)]
        assert _lines(throughput(None, partials=(partials, width))) == want
        drawn += len(want)
    assert drawn >= 4


def test_report_partials_grow_with_groups_not_frames(tmp_path: Path) -> None:
    """vxlan-overlay with 10 and 40 flows (4× the frames): the partials of the per-capture,
    per-interface and per-overlay tables keep their size; the flows partial has a row per
    flow per capture (and per direction), never per frame."""
    sizes = []
    for flows in (10, 40):
        analysis = pktkit.analyze(_generate(tmp_path, "vxlan-overlay", flows, True))
        packets = analysis.packets
        part_of = row_digest([packets["packet_id"].to_numpy(np.int64)]).view(np.uint64) % 3
        partials = [report_partial(packets[part_of == i]) for i in range(3)]
        fixed = sum(len(p.captures) + len(p.checksums) + len(p.overhead) + len(p.overlays)
                    + len(p.errors) for p in partials)
        tables = build_tables(packets)
        # at most each partition's share of every group: captures, interfaces, overlays
        assert fixed <= 3 * sum(len(tables[name]) for name in
                                ("captures", "checksums", "overhead", "overlays", "errors"))
        flow_rows = len(tables["flows"])
        assert sum(len(p.flows.flows) for p in partials) <= 3 * flow_rows
        assert sum(len(p.flows.directions) for p in partials) <= 3 * 2 * flow_rows
        sizes.append((fixed, len(packets)))
    (small, small_frames), (large, large_frames) = sizes
    assert large_frames > 3 * small_frames and large < 1.2 * small


def test_latency_scopes_alike_stay_apart() -> None:
    """One interface in two capture files (an any-device file and the interface's own, as a
    lab bundle holds them): their hops have alike scope labels and stay separate rows, as in
    one process, when computed in parts."""
    analysis = pktkit.analyze([REPO / "captures" / "vxlan-overlay",
                               REPO / "captures" / "vxlan-overlay-any"])
    assert analysis.latency.duplicated(["metric", "scope"]).any()
    for k in (2, 3):
        pd.testing.assert_frame_equal(_latency_from_parts(analysis, k), analysis.latency)
