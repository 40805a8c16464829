"""Checks of an analysis against the truth.json of the generated captures it read: the packet
partition, hops, delays against the true times, the clock models against the true clocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.pipeline import Analysis

US = 1000


def joined(found: Analysis, truth: dict[str, Any]) -> pd.DataFrame:
    """The packet table joined with its truth (truth's columns suffixed ``_t`` on clashes);
    the truth of the files analyzed only."""
    labels = pd.DataFrame(truth["packets"])
    labels = labels[labels["capture"].isin(found.packets["capture"].astype(str).unique())]
    ours = found.packets[["capture", "frame", "packet_id", "hop", "node", "flow_id",
                          "overlay_encap", "overlay_vni"]].astype(
        {"capture": object, "frame": "int64", "packet_id": "int64", "hop": "int64",
         "overlay_encap": object})
    both = ours.merge(labels, on=["capture", "frame"], suffixes=("", "_t"),
                      validate="one_to_one")
    assert len(both) == len(found.packets) == len(labels)
    return both


def assert_same_partition(got: pd.Series, want: pd.Series) -> None:
    pairs = pd.DataFrame({"got": got.to_numpy(), "want": want.to_numpy()}).drop_duplicates()
    assert pairs["got"].is_unique, "two true packets merged into one packet_id"
    assert pairs["want"].is_unique, "one true packet split into several packet_ids"


def hop_delays(found: Analysis, both: pd.DataFrame) -> pd.DataFrame:
    """Each hop after the first with its reported delay (``delay_ns``), the true one
    (``true_ns``, from the true times of the two sightings) and whether it crosses nodes."""
    hops = found.hops.astype({"capture": object, "frame": "int64"}).merge(
        both[["capture", "frame", "true_ts_ns"]], on=["capture", "frame"])
    hops = hops.sort_values(["packet_id", "hop"], ignore_index=True)
    true = hops["true_ts_ns"].to_numpy(np.int64)
    later = hops["delay_ns"].notna().to_numpy()
    previous = np.r_[0, true[:-1]]
    out = hops[later].copy()
    out["true_ns"] = (true - previous)[later]
    out["delay_ns"] = out["delay_ns"].astype("int64")
    out["cross"] = out["node"].astype(str) != out["from_node"].astype(str)
    return out


def true_offset_ns(truth: dict[str, Any], node: str, reference: str,
                   t_ns: np.ndarray) -> np.ndarray:
    """node clock − reference clock at true times ``t_ns``."""
    def reading(name: str) -> np.ndarray:
        clock = truth["clocks"][name]
        return clock["offset_ns"] + clock["drift_ppm"] * 1e-6 * (t_ns - clock["at_ns"])
    return reading(node) - reading(reference)


def clock_rows(found: Analysis) -> dict[str, dict[str, Any]]:
    return {row["node"]: row for row in found.clock_offsets.to_dict("records")}


def assert_delays_within_bounds(found: Analysis, truth: dict[str, Any],
                                both: pd.DataFrame) -> pd.DataFrame:
    """Every delay within one node equals the truth within the timestamps' resolution (one
    clock; a drifting one, its readings truncated to µs, may tick once more between two of
    them); every delay between nodes within the nodes' bounds of it. Returns the delays
    (:func:`hop_delays`)."""
    delays = hop_delays(found, both)
    error = (delays["delay_ns"] - delays["true_ns"]).abs()
    local = ~delays["cross"]
    assert (error[local] <= US).all(), delays[local & (error > US)].head()
    bound = {node: row["bound_ns"] for node, row in clock_rows(found).items()}
    allowed = (delays["node"].astype(str).map(bound).astype("int64")
               + delays["from_node"].astype(str).map(bound).astype("int64"))
    cross = delays["cross"]
    # the timestamps' resolution besides the models: µs files truncate each reading
    assert (error[cross] <= allowed[cross] + US).all(), delays[cross & (error > allowed + US)]
    return delays


def assert_models_hold_the_truth(found: Analysis, truth: dict[str, Any]) -> None:
    """Each node's model lies within its bound of the true clock difference over the span
    of the crossings (checked at the true times of the node's sightings of packets that
    crossed to or from the reference node), and its drift within 2 ppm of the truth."""
    rows = clock_rows(found)
    labels = pd.DataFrame(truth["packets"])
    for node, row in rows.items():
        if node == row["reference_node"] or pd.isna(row["offset_ns"]):
            continue
        ends = labels[labels["node"].isin([node, row["reference_node"]])]
        crossed = ends.groupby("packet_id")["node"].nunique() == 2
        at = labels["packet_id"].isin(crossed.index[crossed]) & (labels["node"] == node)
        t = labels.loc[at, "true_ts_ns"].to_numpy(np.int64)
        want = true_offset_ns(truth, node, row["reference_node"], t)
        got = row["offset_ns"] + row["drift_ppm"] * 1e-6 * (t - row["at_ns"])
        # the bound holds over the crossings' span; every sighting lies within it here
        assert np.abs(got - want).max() <= row["bound_ns"] + US
        true_drift = truth["clocks"][node]["drift_ppm"] - \
            truth["clocks"][row["reference_node"]]["drift_ppm"]
        assert abs(row["drift_ppm"] - true_drift) <= 2.0, (node, row["drift_ppm"], true_drift)
