"""pktkit.analysis.rows: the lean reads and integer groupings equal what pandas computes the slow
way (the report's and plots' figures rest on them; test_report checks the tables themselves)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    combinations,
    distinct_rows,
    group_extreme,
    group_first,
    group_nunique,
    group_rows,
    group_sum,
    tunnel_rows,
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 5_000
    vni = pd.array(rng.integers(1, 4, n), dtype="UInt32")
    vni[rng.random(n) < 0.2] = pd.NA
    return pd.DataFrame({
        "capture": pd.array(rng.choice(["a.pcap", "b.pcap", "c.pcap"], n), dtype="string"),
        "encap": pd.Categorical(rng.choice(["none", "vxlan", "geneve"], n)),
        "vni": vni,
        "wire_len": pd.array(rng.integers(60, 1515, n), dtype="UInt32"),
        "flow_id": pd.array(rng.integers(1_000_000, 1_000_050, n), dtype="Int64"),
    })


def test_group_rows_numbers_as_groupby_ngroup_does(table: pd.DataFrame) -> None:
    rows = Rows(table)
    groups, first = group_rows(rows.codes("capture"), rows.codes("vni"), rows.codes("flow_id"))
    want = table.groupby(["capture", "vni", "flow_id"], sort=False, dropna=False).ngroup()
    assert np.array_equal(groups, want.to_numpy())
    assert np.array_equal(first, np.unique(want.to_numpy(), return_index=True)[1])


def test_group_aggregates_equal_pandas(table: pd.DataFrame) -> None:
    rows = Rows(table)
    groups, first = group_rows(rows.codes("capture"))
    count = len(first)
    by = table.groupby(groups)
    wire = rows.values("wire_len", "int64", 0)
    assert np.array_equal(group_sum(groups, count, wire), by["wire_len"].sum().to_numpy())
    vni = rows.values("vni", "int64", 0)
    valid = ~rows.isna("vni")
    assert list(group_extreme(groups, count, vni, valid, largest=True)) == list(
        by["vni"].max().astype("Int64"))
    assert list(group_extreme(groups, count, vni, valid, largest=False)) == list(
        by["vni"].min().astype("Int64"))
    assert np.array_equal(group_nunique(groups, count, rows.codes("vni")),
                          by["vni"].nunique().to_numpy())
    firsts = group_first(groups, count, valid)
    assert [table["vni"].iat[r] for r in firsts] == list(by["vni"].first())
    pairs = distinct_rows(groups, rows.codes("vni"))
    assert len(pairs) == int(by["vni"].nunique().sum())


def test_rows_read_a_subset_without_copying_the_frame(table: pd.DataFrame) -> None:
    positions = np.array([4, 0, 17])
    rows = Rows(table, positions)
    assert rows.values("wire_len", "int64", -1).tolist() == table["wire_len"].iloc[
        positions].astype("int64").tolist()
    assert rows.take("capture", np.array([2])).tolist() == [table["capture"].iat[17]]
    encap, names = rows.encap_codes()
    tunnelled = tunnel_rows(encap, names)
    assert tunnelled.tolist() == (table["encap"].iloc[positions] != NO_TUNNEL).tolist()


def test_encap_na_counts_as_no_tunnel() -> None:
    packets = pd.DataFrame({"encap": pd.Categorical([None, "none", "vxlan"])})
    encap, names = Rows(packets).encap_codes()
    assert encap[0] == encap[1] != encap[2]
    assert tunnel_rows(encap, names).tolist() == [False, False, True]


def test_combinations_match_numpy_unique() -> None:
    """The distinct rows of small code columns, numbered as np.unique(axis=1) numbers them."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        columns = [rng.integers(-1, 5, n).astype(np.int8), rng.integers(-1, 40, n)]
        combos, number = combinations(*columns)
        rows, inverse = np.unique(np.stack(columns), axis=1, return_inverse=True)
        assert combos == [tuple(row) for row in rows.T.tolist()]
        assert np.array_equal(number, inverse.ravel())
