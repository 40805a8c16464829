"""pktkit.analysis.nat: nat_flows on a small hand-made packets table (test_nat_flows.py checks
it against generated captures and conntrack dumps)."""

from __future__ import annotations

import pandas as pd
import pytest

from pktkit.analysis import nat, tuple_keys

# --- pktkit.analysis.nat.nat_flows on a small hand-made packets table -------------------------

A, X = ("172.17.0.2", 40000), ("192.168.1.10", 40000)  # a container and its masquerade
SERVER = ("203.0.113.10", 80)


def packets_table() -> pd.DataFrame:
    """One TCP connection SNATed by node "host" (both directions seen before and after, and one
    packet seen once), one UDP packet that crosses the host untranslated, and an SNATed ICMP
    echo request whose ports are 0, not NA (its identifier stands for them)."""
    rows = [  # packet_id, hop, (src, sport), (dst, dport), proto, tcp_flags, ts_ns, icmp type
        (10, 0, A, SERVER, 6, 0x02, 100, None), (10, 1, X, SERVER, 6, 0x02, 110, None),
        (11, 0, SERVER, X, 6, 0x12, 200, None), (11, 1, SERVER, A, 6, 0x12, 210, None),
        (12, 0, A, SERVER, 6, 0x10, 300, None),
        (13, 0, ("10.0.0.1", 5353), ("10.0.0.2", 53), 17, None, 400, None),
        (13, 1, ("10.0.0.1", 5353), ("10.0.0.2", 53), 17, None, 410, None),
        (14, 0, (A[0], 0), (SERVER[0], 0), 1, None, 500, 8),
        (14, 1, (X[0], 0), (SERVER[0], 0), 1, None, 510, 8),
    ]
    return pd.DataFrame({
        "packet_id": pd.array([r[0] for r in rows], dtype="Int64"),
        "hop": pd.array([r[1] for r in rows], dtype="Int64"),
        "node": pd.array(["host"] * len(rows), dtype="string"),
        "src": pd.array([r[2][0] for r in rows], dtype="string"),
        "sport": pd.array([r[2][1] for r in rows], dtype="UInt16"),
        "dst": pd.array([r[3][0] for r in rows], dtype="string"),
        "dport": pd.array([r[3][1] for r in rows], dtype="UInt16"),
        "proto": pd.array([r[4] for r in rows], dtype="UInt8"),
        "tcp_flags": pd.array([r[5] for r in rows], dtype="UInt16"),
        "icmp_type": pd.array([r[7] for r in rows], dtype="UInt8"),
        "icmp_id": pd.array([None if r[7] is None else 7 for r in rows], dtype="UInt16"),
        "ts_ns": pd.array([r[6] for r in rows], dtype="Int64"),
        "wire_len": pd.array([60] * len(rows), dtype="UInt32"),
    })


def assert_same_result(got: nat.NatFlows, want: nat.NatFlows) -> None:
    pd.testing.assert_frame_equal(got.flows, want.flows)
    pd.testing.assert_series_equal(got.packet_nat_flow_id, want.packet_nat_flow_id)
    pd.testing.assert_frame_equal(got.disagreements, want.disagreements)


def test_nat_flows_of_a_small_table() -> None:
    flows, per_row, _ = nat.nat_flows(packets_table())
    assert flows[["kind", "proto", "orig_src", "orig_sport", "xlat_src", "xlat_sport",
                  "packets", "bytes", "first_ts_ns", "last_ts_ns", "node"]].values.tolist() == [
        ["snat", 6, *A, *X, 3, 180, 100, 300, "host"],
        ["snat", 1, A[0], 7, X[0], 7, 1, 60, 500, 510, "host"]]
    assert per_row.tolist() == [1, 1, 1, 1, 1, pd.NA, pd.NA, 2, 2]


@pytest.mark.parametrize("port_dtype", ["UInt16", "Int64"])
def test_nat_flows_leaves_the_packets_table_as_it_was(port_dtype: str) -> None:
    # Int64 ports without NA: their int64 values could be the column's own buffer, and echo
    # ports are overwritten with the identifier
    packets = packets_table().astype({"sport": port_dtype, "dport": port_dtype})
    before = packets.copy(deep=True)
    nat.nat_flows(packets)
    pd.testing.assert_frame_equal(packets, before)


def test_sparse_or_missing_packet_ids_give_the_same_flows() -> None:
    packets = packets_table()
    want = nat.nat_flows(packets)
    sparse = packets.assign(packet_id=packets["packet_id"] * 10**12)
    assert_same_result(nat.nat_flows(sparse), want)
    # a row without packet_id is a packet of its own: the one seen once still joins by tuple
    lone = packets.assign(packet_id=packets["packet_id"].mask(packets["packet_id"] == 12))
    assert_same_result(nat.nat_flows(lone), want)


def test_tuple_keys_renumbered_before_they_overflow_give_the_same_flows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    packets = packets_table()
    want = nat.nat_flows(packets)
    monkeypatch.setattr(tuple_keys, "KEY_LIMIT", 2)  # both address digits renumber the keys first
    assert all(r is not None for r in tuple_keys.TupleKeys(packets).renumbered[3:])
    assert_same_result(nat.nat_flows(packets), want)
