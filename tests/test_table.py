"""The per-packet table: schema, column semantics, flow ids, writing and the summary."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import pandas as pd
import pytest
from test_decode import eth, geneve, gre, icmp_echo, inner_frame, ipv4, tcp, udp, vxlan
from test_read import ng_epb, ng_idb, ng_shb, pcap_bytes

from pktkit.capture.frame import SCHEMA, typed_frame
from pktkit.capture.output import write_packets, write_table
from pktkit.capture.read import CaptureCutWarning
from pktkit.capture.schema import COLUMNS, PACKET_COLUMNS
from pktkit.capture.table import read_packets, summarize
from pktkit.errors import CaptureError, OutputError, UsageError

REQUIRED = [
    "capture", "frame", "ts_ns", "interface", "direction", "wire_len", "cap_len", "encap", "vni",
    "outer_src", "outer_dst", "outer_sport", "outer_dport", "src", "dst", "proto", "sport",
    "dport", "overhead_bytes", "flow_id", "error",
]
T0 = 1_767_000_000_000_000_000


def tcp_packet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return ipv4(src, dst, 6, tcp(sport, dport))


def in_vxlan(packet: bytes, vni: int) -> bytes:
    return eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(50000, 4789, vxlan(vni, eth(packet)))))


def dtype_matches(actual: object, expected: object) -> bool:
    if expected == "category":  # open vocabulary: any categories
        return isinstance(actual, pd.CategoricalDtype)
    return actual == pd.api.types.pandas_dtype(expected)


@pytest.fixture
def overlay_capture(tmp_path: Path) -> Path:
    """Frames whose flow ids are known: directions, VNIs, encap chains, ICMP, ARP."""
    a, b = ("172.16.0.1", "172.16.0.2")
    frames = [
        in_vxlan(tcp_packet(a, b, 1111, 80), 10),  # flow 0
        in_vxlan(tcp_packet(b, a, 80, 1111), 10),  # flow 0 (reverse direction)
        in_vxlan(tcp_packet(a, b, 1111, 80), 11),  # flow 1: same 5-tuple, other VNI
        eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 6081, geneve(10, 0x6558,
                                                               eth(tcp_packet(a, b, 1111, 80)))))),
        eth(tcp_packet(a, b, 1111, 80)),  # flow 3: not tunnelled
        eth(ipv4(a, b, 1, icmp_echo())),  # flow 4: ICMP, no ports
        eth(ipv4(b, a, 1, icmp_echo(icmp_type=0))),  # flow 4 (reply)
        eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, 0x0806),  # ARP: no flow
        eth(ipv4("10.0.0.1", "10.0.0.2", 47, gre(0x6558, inner_frame(), key=(7 << 8) | 3))),
    ]
    path = tmp_path / "overlay.pcap"
    path.write_bytes(pcap_bytes([(T0 + i * 1000, f) for i, f in enumerate(frames)], nanos=True))
    return path


def test_schema_is_exact_and_documented(overlay_capture: Path) -> None:
    df = read_packets(overlay_capture)
    assert list(df.columns) == list(SCHEMA)
    assert set(REQUIRED) <= set(df.columns)
    for name, dtype in SCHEMA.items():
        assert dtype_matches(df[name].dtype, dtype), name
    empty = read_packets([])
    assert list(empty.columns) == list(SCHEMA) and len(empty) == 0
    assert all(dtype_matches(empty[n].dtype, t) for n, t in SCHEMA.items())
    for column in PACKET_COLUMNS:  # declared once, each with its meaning
        assert column.doc and SCHEMA[column.name] is not None, column.name
    assert tuple(SCHEMA) == COLUMNS == tuple(c.name for c in PACKET_COLUMNS)


def test_columns_of_tunnelled_and_plain_packets(overlay_capture: Path) -> None:
    df = read_packets(overlay_capture)
    first = df.iloc[0]
    assert (first.capture, first.frame, first.ts_ns) == ("overlay.pcap", 1, T0)
    assert (first.encap, first.vni, first.overhead_bytes) == ("vxlan", 10, 50)
    assert (first.outer_src, first.outer_dst, first.outer_sport, first.outer_dport) == (
        "10.0.0.1", "10.0.0.2", 50000, 4789)
    assert (first.src, first.dst, first.proto, first.sport, first.dport) == (
        "172.16.0.1", "172.16.0.2", 6, 1111, 80)
    plain = df.iloc[4]
    assert (plain.encap, plain.overhead_bytes) == ("none", 0)
    assert plain[["vni", "outer_src", "outer_sport"]].isna().all()
    icmp = df.iloc[5]
    assert pd.isna(icmp.sport) and pd.isna(icmp.dport) and icmp.icmp_type == 8
    arp = df.iloc[7]
    assert (arp.ethertype, pd.isna(arp.src), pd.isna(arp.flow_id)) == (0x0806, True, True)
    nvgre = df.iloc[8]
    assert (nvgre.encap, nvgre.vni, nvgre.overhead_bytes) == ("nvgre", 7, 42)
    assert df.error.isna().all()
    assert list(df.frame) == list(range(1, 10))


def test_flow_ids_bidirectional_and_split_by_vni_and_encap(overlay_capture: Path) -> None:
    flows = read_packets(overlay_capture)["flow_id"].tolist()
    assert flows[:7] == [0, 0, 1, 2, 3, 4, 4]
    assert pd.isna(flows[7]) and flows[8] == 5


def test_flow_ids_run_across_captures_in_order(overlay_capture: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pcap"
    other.write_bytes(pcap_bytes([(T0, eth(tcp_packet("172.16.0.2", "172.16.0.1", 80, 1111))),
                                  (T0, eth(tcp_packet("9.9.9.9", "8.8.8.8", 1, 2)))]))
    df = read_packets([overlay_capture, other])
    assert df.capture.unique().tolist() == ["overlay.pcap", "other.pcap"]
    assert df.flow_id.tolist()[-2:] == [3, 6]  # the plain flow again (reversed), then a new one


def test_interface_direction_and_ifnames(tmp_path: Path) -> None:
    def sll2(ifindex: int, pkttype: int) -> bytes:
        return struct.pack("!HHIHBB8s", 0x0800, 0, ifindex, 1, pkttype, 6, b"") + tcp_packet(
            "10.1.1.1", "10.1.1.2", 5, 6)
    sll2_path = tmp_path / "sll2.pcap"
    sll2_path.write_bytes(pcap_bytes([(T0, sll2(3, 4)), (T0, sll2(26, 0)), (T0, sll2(9, 3))],
                                     linktype=276))
    ng_path = tmp_path / "ng.pcapng"
    ng_path.write_bytes(ng_shb() + ng_idb(1, "eth0", 9) + ng_idb(1) + ng_epb(0, T0, inner_frame(),
                        flags=2) + ng_epb(1, T0 // 1000, inner_frame()))
    df = read_packets([sll2_path, ng_path], ifnames={3: "veth1", 26: "cni0"})
    assert df.interface.tolist()[:3] == ["veth1", "cni0", "9"]
    assert df.ifindex.tolist()[:3] == [3, 26, 9]
    assert df.direction.tolist()[:3] == ["out", "in", "other"]
    assert df.interface.tolist()[3] == "eth0" and pd.isna(df.interface.tolist()[4])
    assert df.interface_id.tolist()[3:] == [0, 1]
    assert df.direction.tolist()[3] == "out" and pd.isna(df.direction.tolist()[4])
    assert df.ts_ns.tolist()[3:] == [T0, T0]



@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_ifnames_per_capture(tmp_path: Path, engine: str) -> None:
    """Every node numbers its own devices: index 3 is eth0 on one node and cni0 on the other.
    One map per capture names each file's indexes; a pcapng interface block's name ("any", as
    tcpdump -i any writes it) gives way to the map."""
    def sll2(ifindex: int) -> bytes:
        return struct.pack("!HHIHBB8s", 0x0800, 0, ifindex, 1, 0, 6, b"") + tcp_packet(
            "10.1.1.1", "10.1.1.2", 5, 6)

    a, b = tmp_path / "a.pcap", tmp_path / "b.pcapng"
    a.write_bytes(pcap_bytes([(T0, sll2(3)), (T0, sll2(4))], linktype=276))
    b.write_bytes(ng_shb() + ng_idb(276, "any", 9) + ng_epb(0, T0, sll2(3)) + ng_epb(0, T0,
                                                                                  sll2(7)))
    df = read_packets([a, b], ifnames=[{3: "eth0", 4: "flannel.1"}, {3: "cni0"}], engine=engine)
    assert df.interface.tolist() == ["eth0", "flannel.1", "cni0", "any"]
    df = read_packets([a, b], ifnames=[None, {3: "cni0"}], engine=engine)
    assert df.interface.tolist() == ["3", "4", "cni0", "any"]
    with pytest.raises(UsageError, match="1 interface maps for 2 captures"):
        read_packets([a, b], ifnames=[{3: "eth0"}], engine=engine)
    out = tmp_path / "t.csv"
    write_packets([a, b], out, ifnames=[{4: "flannel.1"}, {7: "veth7"}])
    assert pd.read_csv(out).interface.tolist() == ["3", "flannel.1", "any", "veth7"]

def test_extra_vxlan_ports(tmp_path: Path) -> None:
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 5555, vxlan(42, inner_frame()))))
    path = tmp_path / "p.pcap"
    path.write_bytes(pcap_bytes([(T0, frame)]))
    assert read_packets(path).encap.tolist() == ["none"]
    assert read_packets(path, vxlan_ports=[5555]).vni.tolist() == [42]


def test_unknown_linktype_rows_and_cut_capture(tmp_path: Path) -> None:
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(pcap_bytes([(T0, b"\x00" * 30)] * 2, linktype=147))
    content = pcap_bytes([(T0, inner_frame())] * 3)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(content[:-5])
    with pytest.warns(CaptureCutWarning, match="cut.pcap"):
        df = read_packets([odd, cut])
    assert df.error.tolist()[:2] == ["unknown-linktype"] * 2
    assert len(df) == 4 and df.error[2:].isna().all()
    stats = df.attrs["read_stats"]
    assert stats[0]["stopped_at"] is None and stats[1]["frames"] == 2
    assert stats[1]["stopped_at"] == len(content) - len(inner_frame()) - 16
    text = summarize(df)
    assert "unknown-linktype x2" in text and "warning: cut.pcap" in text


def test_read_stats_are_shared_by_the_tables_copies(overlay_capture: Path) -> None:
    """pandas deep-copies ``attrs`` at every column access and slice: the read_stats (one
    dict per capture) are handed on, not copied, and still read as the list of dicts they
    are (equal to one, JSON as one)."""
    import copy
    import json

    df = read_packets([overlay_capture, overlay_capture])
    stats = df.attrs["read_stats"]
    assert df["ts_ns"].attrs["read_stats"] is stats and df.iloc[:1].attrs["read_stats"] is stats
    assert copy.deepcopy(df.attrs)["read_stats"] is stats
    plain = [dict(s) for s in stats]
    assert stats == plain and json.loads(json.dumps(stats)) == plain
    assert [s["frames"] for s in stats] == [len(df) // 2] * 2


def test_non_capture_raises(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("hello")
    with pytest.raises(CaptureError, match=r"x\.txt"):
        read_packets([path])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_table_round_trip(overlay_capture: Path, tmp_path: Path, suffix: str) -> None:
    df = read_packets(overlay_capture)
    out = write_table(df, tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["overlay.pcap", f"out{suffix}"])
    back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(back.columns) == list(SCHEMA) and len(back) == len(df)
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(back, df, check_like=False)
    else:
        assert back.vni.tolist()[:3] == [10, 10, 11] and back.src[0] == "172.16.0.1"


def test_parquet_in_row_groups_reads_back_as_pandas_own_file(
    overlay_capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table longer than a row group is written a row group at a time: the same DataFrame
    (categories, strings, attrs) comes back as from pandas' to_parquet."""
    import pyarrow.parquet as pq

    from pktkit.capture import output

    df = read_packets([overlay_capture] * 3)
    df["encap"] = df["encap"].cat.add_categories(["unused"])  # kept as pandas keeps it
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 4)
    ours = write_table(df, tmp_path / "ours.parquet")
    df.to_parquet(tmp_path / "pandas.parquet", index=False)
    assert pq.ParquetFile(ours).num_row_groups == 7
    back, expected = pd.read_parquet(ours), pd.read_parquet(tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(back, expected)
    assert back.attrs == expected.attrs and back.attrs["read_stats"]
    assert pq.read_schema(ours).metadata == pq.read_schema(tmp_path / "pandas.parquet").metadata
    # the encodings: integer columns byte-stream-split, every other one with dictionary pages
    # (but booleans: Parquet has none for them)
    group = pq.ParquetFile(ours).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: set(group.column(i).encodings)
                 for i in range(group.num_columns)}
    integers = [name for name in df if pd.api.types.is_integer_dtype(df[name].dtype)]
    assert integers and all("BYTE_STREAM_SPLIT" in encodings[name] for name in integers)
    plain = {name: encodings[name] for name in df
             if name not in integers and not pd.api.types.is_bool_dtype(df[name].dtype)
             and "RLE_DICTIONARY" not in encodings[name]}
    assert not plain


def test_a_table_written_meanwhile_is_write_tables_file(overlay_capture: Path,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The packet table written in a second thread while the caller adds a column: the file
    holds the table as it was (the same as write_table's), and appears only when the block
    ends."""
    from pktkit.capture import output

    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 4)
    df = read_packets([overlay_capture] * 2)
    out = tmp_path / "out"
    out.mkdir()
    expected = write_table(df, out / "expected.parquet")
    with output.table_written_meanwhile(df, out / "ours.parquet"):
        df["added"] = 1
        df["src"] = "replaced"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ours.parquet"),
                                  pd.read_parquet(expected))
    assert sorted(p.name for p in out.iterdir()) == ["expected.parquet", "ours.parquet"]


def test_a_table_written_meanwhile_leaves_nothing_when_the_block_fails(
    overlay_capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's error is what the caller gets, and the write stops at its next row group
    (one row group a step here) without a file or a temporary left. The first row group is
    held until the block has failed (its stop event set), so the write cannot end first."""
    import threading
    from types import SimpleNamespace

    import pyarrow.parquet as pq

    from pktkit import files
    from pktkit.capture import output

    stops: list[threading.Event] = []

    def recorded() -> threading.Event:
        stops.append(threading.Event())
        return stops[-1]

    monkeypatch.setattr(files, "threading", SimpleNamespace(Event=recorded,
                                                            Thread=threading.Thread))
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 4)
    started, groups = threading.Event(), []
    original = pq.ParquetWriter.write_table

    def held(self, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        groups.append(len(table))
        started.set()
        assert stops[0].wait(10)
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", held)
    df = read_packets([overlay_capture] * 4)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt), output.table_written_meanwhile(df, out / "ours.parquet"):
        assert started.wait(10)
        raise KeyboardInterrupt
    assert list(out.iterdir()) == []
    assert len(groups) == 1 and len(df) > 4  # stopped after its first row group


def test_write_table_errors(overlay_capture: Path, tmp_path: Path) -> None:
    df = read_packets(overlay_capture)
    with pytest.raises(UsageError, match=r"\.json"):
        write_table(df, tmp_path / "out.json")
    with pytest.raises(OutputError, match="cannot write"):
        write_table(df, tmp_path / "missing-dir" / "out.csv")


def test_summarize(overlay_capture: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = summarize(read_packets(overlay_capture))
    assert text.splitlines()[0] == "9 packets in 1 captures, 6 flows"
    assert "overlay.pcap" in text and "vxlan 10 x2" in text and "nvgre 7 x1" in text
    assert "errors:" not in text and "warning" not in text


# -- acceptance: the decoded table equals truth.json on every reference capture ---------------

REFERENCE = Path(__file__).resolve().parent.parent / "captures"
TRUTH_COLUMNS = ["encap", "vni", "overhead_bytes", "src", "dst", "proto", "sport", "dport"]


def _reference_folders() -> list[Path]:
    return sorted(p.parent for p in REFERENCE.glob("*/truth.json"))


@pytest.mark.parametrize("folder", _reference_folders(), ids=lambda p: p.name)
def test_table_equals_truth_frame_by_frame_on_reference_captures(folder: Path) -> None:
    truth = json.loads((folder / "truth.json").read_text())
    files = [folder / name for name in truth["captures"]]
    table = read_packets(files)
    expected = pd.DataFrame(truth["packets"]).set_index(["capture", "frame"]).sort_index()
    got = table.set_index(["capture", "frame"]).sort_index()
    assert list(got.index) == list(expected.index)
    for column in TRUTH_COLUMNS:
        ours = got[column].astype(object).where(got[column].notna(), None).tolist()
        theirs = expected[column].astype(object).where(expected[column].notna(), None).tolist()
        mismatches = [(key, a, b) for key, a, b in zip(got.index, ours, theirs, strict=True)
                      if a != b]
        assert not mismatches, f"{column}: {mismatches[:5]}"
    assert got["error"].isna().all()


def test_typed_frame_gives_exactly_the_schema() -> None:
    schema = {"b": "Int64", "a": "string"}
    df = pd.DataFrame({"a": ["x", None], "c": [1, 2], "b": [7, 8]}, index=[5, 9])
    df.attrs["read_stats"] = [{"frames": 2}]
    typed = typed_frame(df, schema)
    assert list(typed.columns) == ["b", "a"]
    assert typed.dtypes.astype(str).tolist() == ["Int64", "string"]
    assert typed.index.tolist() == [0, 1] and typed.attrs == {}
    assert typed["a"].isna().tolist() == [False, True]
    assert df.attrs == {"read_stats": [{"frames": 2}]}  # the input keeps its own
    assert typed_frame(df.iloc[:0], schema).dtypes.astype(str).tolist() == ["Int64", "string"]
    with pytest.raises(KeyError):
        typed_frame(df, {"missing": "Int64"})
