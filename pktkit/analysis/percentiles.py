"""Exact percentiles of samples spread over partitions: two passes over histograms.

Each partition holds some samples of each (metric, scope) group. The percentiles are exact,
the same numbers as ``np.percentile`` (method ``linear``) of all the samples together, found
in two passes without bringing the samples to one place:

1. :func:`count_samples` (per partition): per group its count, minimum, maximum and first
   sample (``order``), and a histogram of its values in fixed bins (the buckets of
   :func:`pktkit.analysis.medians.bucket_of`, the correlation's medians' too: SUB_BUCKETS
   per octave, so a bin spans at most 1/SUB_BUCKETS of its values' magnitude, one integer
   below 2 × SUB_BUCKETS; the same in every partition and ordered like their values). Its
   size: groups × occupied bins, not samples.
2. :func:`wanted_bins` (client): the merged counts (:func:`merge_counts`); for each
   percentile, the ranks it needs (the two order statistics around its position) and the bin
   holding each rank (:func:`locate_ranks`, which takes any ranks: a CDF's).
3. :func:`values_in_bins` (per partition): each wanted bin's distinct values with their
   counts. Its size: at most the samples in those bins, and at most the distinct integers a
   bin spans (1 + value/SUB_BUCKETS); in practice a few values each (µs timestamps).
4. :func:`percentile_table` (client): each rank's value (:func:`rank_values`: the bin's
   values in order, counted from the samples below the bin), interpolated as numpy
   interpolates.

With one partition this is the single-process computation; :func:`pktkit.analysis.latency
.latency` runs it so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.medians import bucket_of

GROUP = ["metric", "key"]  # a group: its metric and its key (the scope, unless told)


@dataclass
class Sampled:
    """One metric's samples in one partition: per sample its scope (``group`` codes into
    ``labels``; ``keys`` tell apart groups whose labels are alike), value (int64) and
    ``order`` (its place in the whole input: groups are listed in order of their first
    sample)."""

    metric: str
    group: np.ndarray
    labels: Sequence[str]
    values: np.ndarray
    order: np.ndarray
    keys: Sequence[str] | None = None  # per code, what tells groups apart (default: labels)


@dataclass
class SampleCounts:
    """Pass 1 of one partition: ``groups`` (metric, scope, count, min, max, first) and
    ``bins`` (metric, scope, bin, count)."""

    groups: pd.DataFrame
    bins: pd.DataFrame


@dataclass
class WantedBins:
    """The merged pass 1: ``groups`` (metric, scope, count, min, max, first; in order of
    first sample) and ``ranks`` (metric, scope, rank, bin, below: the samples of the group in
    lower bins)."""

    groups: pd.DataFrame
    ranks: pd.DataFrame


def _frame(sampled: Sampled, columns: dict[str, np.ndarray], scope: bool = False
           ) -> pd.DataFrame:
    """Rows of a partial: the group's metric and key (and its scope label), then
    ``columns``."""
    labels = np.asarray(list(sampled.labels), dtype=object)
    keys = labels if sampled.keys is None else np.asarray(list(sampled.keys), dtype=object)
    group = columns.pop("group")
    return pd.DataFrame({"metric": sampled.metric, "key": keys[group],
                         **({"scope": labels[group]} if scope else {}), **columns})


def count_samples(samples: Iterable[Sampled]) -> SampleCounts:
    """Pass 1 over one partition's samples (module docstring)."""
    groups, bins = [], []
    for s in samples:
        if not len(s.values):
            continue
        frame = pd.DataFrame({"group": s.group, "value": s.values, "order": s.order,
                              "bin": bucket_of(s.values)})
        per = frame.groupby("group", sort=True).agg(
            count=("value", "size"), min=("value", "min"), max=("value", "max"),
            first=("order", "min"))
        groups.append(_frame(s, {"group": per.index.to_numpy(), **{
            c: per[c].to_numpy(np.int64) for c in per}}, scope=True))
        hist = frame.groupby(["group", "bin"], sort=True).size()
        bins.append(_frame(s, {"group": hist.index.get_level_values(0).to_numpy(),
                               "bin": hist.index.get_level_values(1).to_numpy(),
                               "count": hist.to_numpy(np.int64)}))
    empty_groups = pd.DataFrame({c: [] for c in [*GROUP, "scope", "count", "min", "max",
                                                  "first"]})
    empty_bins = pd.DataFrame({c: [] for c in [*GROUP, "bin", "count"]})
    return SampleCounts(pd.concat(groups, ignore_index=True) if groups else empty_groups,
                        pd.concat(bins, ignore_index=True) if bins else empty_bins)


def _virtual_index(count: np.ndarray, quantile: float) -> np.ndarray:
    """numpy's position of a quantile among ``count`` sorted samples (method ``linear``),
    computed as numpy computes it: (n − 1) · q."""
    return (count - 1).astype(np.float64) * np.float64(quantile)


def _ranks(count: np.ndarray, percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two ranks around a percentile's position and the weight of the upper one."""
    index = _virtual_index(count, np.true_divide(percent, 100))
    below = np.floor(index)
    gamma = index - below
    low = below.astype(np.int64)
    high = low + 1
    top = index >= count - 1
    low[top], high[top] = count[top] - 1, count[top] - 1
    return low, high, gamma


@dataclass
class MergedCounts:
    """Pass 1 of all partitions merged: ``groups`` (metric, scope, count, min, max, first;
    in order of first sample) and ``hist`` (metric, scope, bin, count, below: the group's
    samples in lower bins)."""

    groups: pd.DataFrame
    hist: pd.DataFrame


def merge_counts(parts: Sequence[SampleCounts]) -> MergedCounts:
    """Pass 1 merged (client): each group's totals and its histogram."""
    groups = pd.concat([p.groups for p in parts], ignore_index=True)
    groups = groups.groupby(GROUP, sort=False).agg(
        scope=("scope", "first"), count=("count", "sum"), min=("min", "min"), max=("max", "max"),
        first=("first", "min")).reset_index()
    groups = groups.sort_values("first", kind="stable").reset_index(drop=True)
    hist = pd.concat([p.bins for p in parts], ignore_index=True)
    hist = hist.groupby([*GROUP, "bin"], sort=True)["count"].sum().reset_index()
    hist["below"] = hist.groupby(GROUP, sort=False)["count"].cumsum() - hist["count"]
    return MergedCounts(groups, hist)


def locate_ranks(counts: MergedCounts, ranks: pd.DataFrame) -> WantedBins:
    """The bin holding each wanted rank (``ranks``: metric, scope, rank; 0-based among the
    group's samples in order)."""
    hist = counts.hist
    ranks = ranks.drop_duplicates().reset_index(drop=True)
    if not len(ranks):
        return WantedBins(counts.groups, pd.DataFrame({c: [] for c in [*GROUP, "rank", "bin",
                                                                        "below"]}))
    # one sorted key for all groups: the group's number, then the samples below the bin
    number = hist.groupby(GROUP, sort=False).ngroup().to_numpy(np.int64)
    of = hist[GROUP].drop_duplicates().reset_index(drop=True).assign(
        number=np.arange(int(number.max(initial=-1)) + 1))
    wanted_number = ranks[GROUP].merge(of, on=GROUP, how="left")["number"].to_numpy(np.int64)
    span = int(hist["below"].max()) + int(hist["count"].max()) + 1
    below = hist["below"].to_numpy(np.int64)
    # the last bin of the rank's group whose samples below it are at most the rank
    at = np.searchsorted(number * span + below,
                         wanted_number * span + ranks["rank"].to_numpy(np.int64),
                         side="right") - 1
    found = ranks.assign(bin=hist["bin"].to_numpy()[at], below=below[at])
    return WantedBins(counts.groups, found)


def wanted_bins(parts: Sequence[SampleCounts], percents: Sequence[float]) -> WantedBins:
    """Pass 1 merged (module docstring): the groups' totals and the bin of every rank the
    percentiles need."""
    counts = merge_counts(parts)
    groups = counts.groups
    count = groups["count"].to_numpy(np.int64)
    needed = [groups[GROUP].assign(rank=rank) for percent in percents
              for rank in _ranks(count, percent)[:2]]
    ranks = pd.concat(needed, ignore_index=True) if needed else \
        pd.DataFrame({c: [] for c in [*GROUP, "rank"]})
    return locate_ranks(counts, ranks)


def values_in_bins(samples: Iterable[Sampled], wanted: WantedBins) -> pd.DataFrame:
    """Pass 2 over one partition's samples: (metric, scope, bin, value, count) of every
    distinct value in a wanted bin."""
    found = []
    bins = wanted.ranks[[*GROUP, "bin"]].drop_duplicates()
    for s in samples:
        of = bins[bins["metric"] == s.metric]
        if not len(s.values) or not len(of):
            continue
        code = {key: i for i, key in enumerate(s.labels if s.keys is None else s.keys)}
        keys = [(code[key], b) for key, b in zip(of["key"], of["bin"], strict=True)
                if key in code]
        if not keys:
            continue
        frame = pd.DataFrame({"group": s.group, "bin": bucket_of(s.values),
                              "value": s.values})
        index = pd.MultiIndex.from_frame(frame[["group", "bin"]])
        frame = frame[index.isin(keys)]
        per = frame.groupby(["group", "bin", "value"], sort=True).size()
        found.append(_frame(s, {"group": per.index.get_level_values(0).to_numpy(),
                                "bin": per.index.get_level_values(1).to_numpy(),
                                "value": per.index.get_level_values(2).to_numpy(),
                                "count": per.to_numpy(np.int64)}))
    return pd.concat(found, ignore_index=True) if found else \
        pd.DataFrame({c: [] for c in [*GROUP, "bin", "value", "count"]})


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's linear interpolation of quantiles (``numpy.lib._function_base_impl._lerp``)."""
    diff_b_a = b - a
    out = np.add(a, diff_b_a * t)
    np.subtract(b, diff_b_a * (1 - t), out=out, where=t >= 0.5, casting="unsafe",
                dtype=out.dtype)
    return out


def rank_values(wanted: WantedBins, parts: Sequence[pd.DataFrame]
                ) -> dict[tuple[str, str, int], int]:
    """(metric, key, rank) → the sample at that rank, from every partition's pass 2."""
    values = pd.concat(list(parts), ignore_index=True)
    values = values.groupby([*GROUP, "bin", "value"], sort=True)["count"].sum().reset_index()
    # each value's rank range within its group: below its bin, then the bin's values in order
    values["end"] = values.groupby([*GROUP, "bin"], sort=False)["count"].cumsum()
    ranks = wanted.ranks.merge(values, on=[*GROUP, "bin"], how="left")
    ranks = ranks[ranks["rank"] < ranks["below"] + ranks["end"]]
    ranks = ranks.sort_values("end", kind="stable").drop_duplicates([*GROUP, "rank"])
    return dict(zip(zip(ranks["metric"], ranks["key"], ranks["rank"].astype(np.int64),
                        strict=True),
                    ranks["value"].astype(np.int64).tolist(), strict=True))


def percentile_table(wanted: WantedBins, parts: Sequence[pd.DataFrame],
                     percents: Sequence[tuple[str, float]]) -> pd.DataFrame:
    """Per group (in order of first sample): metric, scope, count, min, the percentiles
    (float, as ``np.percentile``; columns named by ``percents``) and max."""
    value_at = rank_values(wanted, parts)
    groups = wanted.groups
    count = groups["count"].to_numpy(np.int64)
    table = groups[["metric", "scope"]].assign(count=count,
                                               min=groups["min"].to_numpy(np.int64))
    keys = list(zip(groups["metric"], groups["key"], strict=True))
    for column, percent in percents:
        low, high, gamma = _ranks(count, percent)
        a = np.array([value_at[(*k, r)] for k, r in zip(keys, low.tolist(), strict=True)],
                     np.int64)
        b = np.array([value_at[(*k, r)] for k, r in zip(keys, high.tolist(), strict=True)],
                     np.int64)
        table[column] = _lerp(a, b, gamma) if len(keys) else np.zeros(0)
    table["max"] = groups["max"].to_numpy(np.int64)
    return table
