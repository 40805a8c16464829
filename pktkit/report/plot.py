"""Plots of the report tables (:mod:`pktkit.report.tables`), one function per plot.

Each function takes its table and an optional matplotlib ``Axes`` and returns the
``Figure`` it drew on. Without ``ax`` it makes a new :class:`matplotlib.figure.Figure`,
which is not registered with pyplot: no global state, no GUI backend, nothing to close, so
the functions are safe in servers, tests and notebooks alike (a notebook shows a returned
Figure as its PNG). Empty input gives a figure that says "no data" and why
(:func:`has_data` tells; the report leaves such figures out). Legends sit outside the axes,
below them, so that they hide no data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from pktkit.analysis.percentiles import (
    MergedCounts,
    Sampled,
    WantedBins,
    count_samples,
    locate_ranks,
    merge_counts,
    rank_values,
    values_in_bins,
)
from pktkit.analysis.rows import Rows, group_rows, tunnel_rows
from pktkit.report.labels import nat_tuple, overlay_label
from pktkit.report.partials import Agg, aggregate, merge

FIGSIZE = (8.0, 4.5)
SMALL = 7  # legend and annotation font size
_NO_DATA = "_pktkit_no_data"  # set on a figure that only says "no data"


def has_data(figure: Figure) -> bool:
    """Whether a plot shows something, not just "no data"."""
    return not getattr(figure, _NO_DATA, False)


def _canvas(ax: Axes | None, figsize: tuple[float, float] = FIGSIZE) -> tuple[Figure, Axes]:
    """The given axes and its figure, or a new pyplot-free figure with one axes."""
    if ax is not None:
        return ax.get_figure(root=True), ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _no_data(fig: Figure, ax: Axes, title: str, why: str) -> Figure:
    setattr(fig, _NO_DATA, True)
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", transform=ax.transAxes,
            color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def legend_below(ax: Axes, columns: int = 2) -> None:
    """The legend under the axes, below their tick labels and x label (half an inch down,
    whatever the axes' height), outside the data: constrained layout makes room for it."""
    entries = len(ax.get_legend_handles_labels()[1])
    below = ax.transAxes + ScaledTranslation(0, -0.5, ax.get_figure(root=True).dpi_scale_trans)
    ax.legend(fontsize=SMALL, loc="upper center", bbox_to_anchor=(0.5, 0.0),
              bbox_transform=below, ncols=max(1, min(columns, entries)), frameon=False)


def _legend_height(entries: int, columns: int = 2) -> float:
    """Inches a legend of ``entries`` lines below the axes needs."""
    return 0.2 * math.ceil(entries / columns)


def _finish_lines(fig: Figure, ax: Axes, title: str, shown: str, cut: bool, total: int
                  ) -> Figure:
    """Grid, legend, and a title that says when only some of the lines are drawn."""
    ax.grid(True, alpha=0.3)
    ax.set_title(title + (f" ({shown} of {total})" if cut else ""))
    legend_below(ax)
    return fig


# -- latency -------------------------------------------------------------------------------

LATENCY_SCOPES = {"hop": "hop", "node_pair": "node pair"}
PERCENTILES = [("min_ns", 0.0), ("p50_ns", 0.5), ("p90_ns", 0.9), ("p99_ns", 0.99),
               ("max_ns", 1.0)]


def _delay_scopes(data: pd.DataFrame, by: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The scopes of a hops table (or any table with scope + delay_ns) in order of first
    appearance, and for the rows with a delay: the number of each one's scope (−1: none) and
    the delay (ns). Scopes are named once per distinct (node, interface, ...) combination,
    not once per row: a hops table has a row per sighting."""
    rows = Rows(data, np.flatnonzero(~Rows(data).isna("delay_ns")))
    parts = (["scope"] if "scope" in data else ["from_node", "node"] if by == "node_pair"
             else ["from_node", "from_interface", "node", "interface"])
    combination, first = group_rows(*(rows.codes(part) for part in parts))
    texts = [rows.take(part, first).astype("string").tolist() for part in parts]
    number_of: dict[str, int] = {}  # scope → its number
    numbers = np.full(len(first), -1, dtype=np.int64)  # per combination
    for index, values in enumerate(zip(*texts, strict=True)):
        if any(value is pd.NA for value in values):  # a scope with an NA part is none
            continue
        if "scope" in data:
            scope = values[0]
        elif by == "node_pair":  # only the hops that cross from one node to another
            if values[0] == values[1]:
                continue
            scope = f"{values[0]} → {values[1]}"
        else:
            scope = f"{values[0]}/{values[1]} → {values[2]}/{values[3]}"
        numbers[index] = number_of.setdefault(scope, len(number_of))
    return list(number_of), numbers[combination], rows.values("delay_ns", "float64", np.nan)


CDF_POINTS = 4096  # a CDF drawn through this many ranks differs by < 1 pixel from all of them


def _cdf_ranks(count: int) -> np.ndarray:
    """The ranks a CDF of ``count`` sorted delays is drawn through: every sample up to
    CDF_POINTS, else CDF_POINTS evenly spaced ranks including the first and the last (a line
    of 400k steps would cost tens of MB to draw and look the same)."""
    ranks = np.arange(count)
    if count > CDF_POINTS:
        ranks = np.unique(np.linspace(0, count - 1, CDF_POINTS).round().astype(np.int64))
    return ranks


def _cdf_points(sorted_delays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of sorted delays as (x, fraction ≤ x) at :func:`_cdf_ranks`."""
    ranks = _cdf_ranks(len(sorted_delays))
    return sorted_delays[ranks], (ranks + 1) / len(sorted_delays)


Curve = tuple[str, np.ndarray, np.ndarray, int]  # label, x (ns), fraction ≤ x, samples


def cdf_samples(data: pd.DataFrame, by: str) -> list[Sampled]:
    """The delays of one partition of the hops table (or of any table with ``scope`` and
    ``delay_ns``) per scope, for :func:`cdf_ranks`; each sample's order is its hops row's
    (packet_id, hop), else its index."""
    scopes, scope_of_row, delay_ns = _delay_scopes(data, by)
    with_delay = np.flatnonzero(~Rows(data).isna("delay_ns"))
    if {"packet_id", "hop"} <= set(data):
        order = ((data["packet_id"].to_numpy(np.int64)[with_delay] << 20)
                 | data["hop"].to_numpy(np.int64)[with_delay])
    else:
        order = data.index.to_numpy(np.int64)[with_delay]
    scoped = scope_of_row >= 0
    return [Sampled(by, scope_of_row[scoped], scopes, delay_ns[scoped].astype(np.int64),
                    order[scoped])]


def cdf_ranks(counts: MergedCounts, max_lines: int) -> tuple[WantedBins, int]:
    """The ranks the ``max_lines`` busiest scopes' CDFs need (ties: the first seen), located
    in the merged histograms; and how many scopes there are."""
    groups = counts.groups
    busiest = sorted(range(len(groups)), key=lambda i: -groups["count"].iloc[i])[:max_lines]
    ranks = [pd.DataFrame({"metric": groups["metric"].iloc[i], "key": groups["key"].iloc[i],
                           "rank": _cdf_ranks(int(groups["count"].iloc[i]))}) for i in busiest]
    wanted = locate_ranks(counts, pd.concat(ranks, ignore_index=True) if ranks
                          else pd.DataFrame({"metric": [], "key": [], "rank": []}))
    wanted.groups = groups.iloc[busiest].reset_index(drop=True)
    return wanted, len(groups)


def cdf_curves(wanted: WantedBins, parts: Sequence[pd.DataFrame]) -> list[Curve]:
    """The busiest scopes' CDF curves, exact at their ranks, from every partition's pass 2
    (:func:`pktkit.analysis.percentiles.values_in_bins`)."""
    value_at = rank_values(wanted, parts)
    curves = []
    for metric, key, scope, count in zip(wanted.groups["metric"], wanted.groups["key"],
                                         wanted.groups["scope"],
                                         wanted.groups["count"].astype(int), strict=True):
        ranks = _cdf_ranks(count)
        xs = np.array([value_at[(metric, key, r)] for r in ranks.tolist()], np.float64)
        curves.append((scope, xs, (ranks + 1) / count, count))
    return curves


def latency_cdf(
    data: pd.DataFrame | None,
    ax: Axes | None = None,
    *,
    by: str = "hop",
    max_lines: int = 10,
    curves: tuple[list[Curve], int] | None = None,
) -> Figure:
    """CDF of delays per hop (``by="hop"``) or per node pair (``by="node_pair"``).

    ``data`` is the correlation's hops table (``delay_ns`` per sighting, ``from_node``,
    ``from_interface``, ``node``, ``interface``) or any table with ``scope`` and
    ``delay_ns``: one step curve per scope from every sample (exact at up to CDF_POINTS
    ranks: :func:`cdf_samples`, :func:`cdf_ranks`, :func:`cdf_curves` on one partition).
    Given the latency table (``metric``, ``scope``, ``min_ns`` … ``max_ns``) it draws each
    scope's percentiles of that metric, joined, as an approximate CDF. The ``max_lines``
    busiest scopes are shown. ``curves``: the busiest curves and the number of scopes,
    already made from partitions (then ``data`` is not read).
    """
    if by not in LATENCY_SCOPES:
        raise ValueError(f"by={by!r}: choose one of {', '.join(LATENCY_SCOPES)}")
    fig, ax = _canvas(ax, (FIGSIZE[0], FIGSIZE[1] + _legend_height(max_lines)))
    title = f"Latency CDF per {LATENCY_SCOPES[by]}"
    found: list[Curve] = []
    if curves is not None:
        found, scope_count = curves
    elif data is not None and "delay_ns" in data:
        samples = cdf_samples(data, by)
        wanted, scope_count = cdf_ranks(merge_counts([count_samples(samples)]), max_lines)
        found = cdf_curves(wanted, [values_in_bins(samples, wanted)])
        del samples
    elif data is not None and "p50_ns" in data:
        for row in data[data["metric"] == by].itertuples(index=False):
            points = [(getattr(row, col), q) for col, q in PERCENTILES]
            points = [(float(x), q) for x, q in points if not pd.isna(x)]
            if points:
                xs, ys = zip(*points, strict=True)
                found.append((f"{row.scope} (percentiles)", np.array(xs), np.array(ys),
                              int(row.count)))
        scope_count = len(found)
    else:
        scope_count = 0
    if not scope_count:
        return _no_data(fig, ax, title, f"no {LATENCY_SCOPES[by]} delays (run the correlation)")
    found.sort(key=lambda c: -c[3])
    shown = found[:max_lines]
    lowest = min(float(xs.min()) for _, xs, _, _ in shown)
    highest = max(float(xs.max()) for _, xs, _, _ in shown)
    # the scale before the lines: a line made on a linear axis keeps a second copy of its
    # steps for drawing (matplotlib's sorted-x subslicing), which the log axis never uses
    if lowest > 0 and highest / lowest > 100:  # delays spanning decades: µs veths, ms links
        ax.set_xscale("log")
    for label, xs, ys, count in shown:
        if label.endswith("(percentiles)"):
            ax.plot(xs / 1e3, ys, marker="o", markersize=3, label=f"{label}, n={count}")
        else:
            ax.step(xs / 1e3, ys, where="post", label=f"{label}, n={count}")
    ax.set_xlabel("delay (µs)")
    ax.set_ylabel("fraction of packets ≤ delay")
    ax.set_ylim(0, 1.02)
    return _finish_lines(fig, ax, title, f"the {max_lines} busiest", scope_count > max_lines,
                         scope_count)


# -- overhead ------------------------------------------------------------------------------

SHARE_PARTS = [("encapsulation headers", "tab:red"), ("inner headers", "tab:gray"),
               ("L4 payload", "tab:green")]


def overhead_share(overhead: pd.DataFrame | None, ax: Axes | None = None) -> Figure:
    """Per encapsulation (and VNI): the wire bytes split into encapsulation headers, the
    inner packet's own headers, and L4 payload (the ``overhead`` table's shares)."""
    title = "Where the wire bytes go, per encapsulation"
    rows = None if overhead is None else overhead[overhead["wire_bytes"].fillna(0) > 0]
    fig, ax = _canvas(ax, (8.0, 1.6 + 0.45 * (0 if rows is None else len(rows))))
    if rows is None or rows.empty:
        return _no_data(fig, ax, title, "no packets")
    labels = [overlay_label(e, v) for e, v in zip(rows["encap"], rows["vni"], strict=True)]
    encap = rows["overhead_share"].astype("float64").fillna(0).to_numpy() * 100
    payload = rows["payload_efficiency"].astype("float64").fillna(0).to_numpy() * 100
    parts = [encap, np.clip(100 - encap - payload, 0, None), payload]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for (name, color), widths in zip(SHARE_PARTS, parts, strict=True):
        ax.barh(y, widths, left=left, color=color, label=name, height=0.6)
        left += widths
    per_packet = rows["overhead_mean"].astype("float64").fillna(0).to_numpy()
    for i, (share, bytes_per_packet) in enumerate(zip(encap, per_packet, strict=True)):
        if share > 0:
            ax.text(101, i, f"{share:.1f}% · {bytes_per_packet:g} B/packet", va="center",
                    fontsize=SMALL)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # the table's order, top down
    ax.set_xlim(0, 125)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of wire bytes (%)")
    ax.set_title(title)
    legend_below(ax, columns=3)  # inside, it would cover the last bar
    return fig


# -- throughput ----------------------------------------------------------------------------


LINE_STYLES = ["-", "--", ":", "-."]


def _nice_bin_ns(span_ns: float, bins: int = 60) -> int:
    """A round bin width (1, 2 or 5 × 10^k ns, at least 1 µs) giving about ``bins`` bins."""
    raw = max(span_ns / bins, 1_000)
    exponent = 10 ** math.floor(math.log10(raw))
    return int(next(m * exponent for m in (1, 2, 5, 10) if m * exponent >= raw))


def _rate_axis(peak_bps: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if peak_bps >= scale:
            return scale, unit
    return 1.0, "bit/s"


THROUGHPUT_KINDS = {"bits": "sum", "overlay": "first"}


def throughput(
    packets: pd.DataFrame | None,
    ax: Axes | None = None,
    *,
    bin_ns: int | None = None,
    max_lines: int = 8,
    partials: tuple[Sequence[pd.DataFrame], int] | None = None,
) -> Figure:
    """Tunnelled throughput over time, one line per (encap, VNI) and capture.

    Lines are per capture because the same tunnelled packet is seen at several capture
    points (eth0 of both nodes): summing them would count it twice. One colour per VNI;
    its first capture a wide pale band, the others thin lines inside it. Wire bytes per bin of
    ``bin_ns`` (default: about 60 bins over the span), as bit/s; time in seconds since the
    first packet of the table. The ``max_lines`` heaviest lines are shown. ``partials``:
    every partition's :func:`throughput_partial` and the bin width they used (then
    ``packets`` is not read; :func:`throughput_window` gives the start and the width).
    """
    fig, ax = _canvas(ax, (FIGSIZE[0], FIGSIZE[1] + _legend_height(max_lines)))
    title = "Throughput per VNI over time"
    if partials is None:
        if packets is None or packets.empty:
            return _no_data(fig, ax, title, "no packets")
        start = packets["ts_ns"].min()
        encap, names = Rows(packets).encap_codes()
        tunnelled = tunnel_rows(encap, names) & packets["ts_ns"].notna().to_numpy()
        if not tunnelled.any():
            return _no_data(fig, ax, title, "no tunnelled traffic")
        last = int(packets["ts_ns"].to_numpy("int64", na_value=0)[tunnelled].max())
        width = bin_ns or _nice_bin_ns(float(last - start))
        partials = ([throughput_partial(packets, int(start), width,
                                        order=np.arange(len(packets)))], width)
    merged = merge(list(partials[0]), ["series", "bin"], THROUGHPUT_KINDS)
    width = partials[1]
    if not len(merged):
        return _no_data(fig, ax, title, "no tunnelled traffic")
    # a line per (overlay, capture); its overlay from its first row
    first_bin = merged.sort_values("order", kind="stable").drop_duplicates("series")
    overlay_of = dict(zip(first_bin["series"], first_bin["overlay"], strict=True))
    labels = sorted(overlay_of)  # as groupby orders them
    bits = merged.groupby("series", sort=True)["bits"].sum()
    heaviest = pd.Series(bits[labels].to_numpy(), index=pd.Index(labels)).sort_values(
        ascending=False)
    shown = list(heaviest.index[:max_lines])
    # bits per time bin (rows) and shown line (columns, in label order, as pivot_table has them)
    columns = sorted(shown)
    binned = np.zeros((int(merged["bin"].max()) + 1, len(columns)), dtype=np.int64)
    drawn = merged[merged["series"].isin(columns)]
    np.add.at(binned, (drawn["bin"].to_numpy(np.int64),
                       [columns.index(series) for series in drawn["series"]]),
              drawn["bits"].to_numpy(np.int64))
    rate = pd.DataFrame(binned, columns=pd.Index(columns)) * (1e9 / width)
    scale, unit = _rate_axis(float(rate.to_numpy().max()))
    seconds = rate.index.to_numpy() * width / 1e9
    # One colour per overlay. Both VTEPs see the same packets, so an overlay's lines
    # coincide: its first capture is a wide pale band, the others thin lines (solid, dashed,
    # ...) drawn inside it, so the coincidence shows instead of hiding a line.
    colours = {o: f"C{i % 10}"
               for i, o in enumerate(dict.fromkeys(overlay_of[series] for series in shown))}
    seen: dict[str, int] = {}
    for series in shown:
        nth = seen[overlay_of[series]] = seen.get(overlay_of[series], -1) + 1
        style = ({"linewidth": 4.0, "alpha": 0.35} if nth == 0 else
                 {"linewidth": 1.2, "linestyle": LINE_STYLES[(nth - 1) % len(LINE_STYLES)]})
        ax.step(seconds, rate[series] / scale, where="post", label=series,
                color=colours[overlay_of[series]], **style)
    ax.set_xlabel(f"time since the first packet (s), {width / 1e6:g} ms bins")
    ax.set_ylabel(f"throughput ({unit})")
    return _finish_lines(fig, ax, title, f"the {max_lines} heaviest",
                         len(heaviest) > max_lines, len(heaviest))


def throughput_window(tables: Mapping[str, pd.DataFrame],
                      bin_ns: int | None = None) -> tuple[int, int] | None:
    """The throughput plot's start (the first packet) and bin width from the merged report
    tables (captures' first time, overlays' last), as :func:`throughput` finds them in the
    packet table; None without tunnelled traffic."""
    captures, overlays = tables.get("captures"), tables.get("overlays")
    if captures is None or overlays is None or not len(overlays) \
            or overlays["last_ts_ns"].isna().all():
        return None
    start = int(captures["first_ts_ns"].min())
    return start, bin_ns or _nice_bin_ns(float(int(overlays["last_ts_ns"].max()) - start))


def throughput_partial(packets: pd.DataFrame, start: int, width: int, *,
                       order: np.ndarray | None = None) -> pd.DataFrame:
    """One partition's tunnelled wire bits per (line, time bin of ``width`` from ``start``),
    and each line's overlay from its first row: at most lines × bins rows."""
    order = packets.index.to_numpy(np.int64) if order is None else order
    encap, names = Rows(packets).encap_codes()
    tunnelled = np.flatnonzero(tunnel_rows(encap, names) & packets["ts_ns"].notna().to_numpy())
    rows = Rows(packets, tunnelled)
    time_bin = (rows.values("ts_ns", "int64", 0) - start) // width
    # a line per (overlay, capture): labelled once per distinct (encap, vni, capture)
    encap = encap[tunnelled]
    combination, first = group_rows(encap, rows.codes("vni"), rows.codes("capture"))
    series, overlay = [], []
    for encap_name, vni, capture in zip(
            [names[code] for code in encap[first].tolist()], rows.take("vni", first).tolist(),
            rows.take("capture", first).tolist(), strict=True):
        overlay.append(overlay_label(encap_name, vni))
        series.append(f"{overlay[-1]} · {capture}")
    labels = list(dict.fromkeys(series))
    code = np.array([labels.index(label) for label in series], np.int64)
    return aggregate(
        {"series": pd.Series(pd.Categorical.from_codes(code[combination], labels)),
         "bin": pd.Series(time_bin)}, order[tunnelled],
        {"bits": Agg("sum", rows.values("wire_len", "int64", 0) * 8),
         "overlay": Agg("first", np.array(overlay, dtype=object)[combination])})


# -- NAT -----------------------------------------------------------------------------------

NAT_COLORS = {"snat": "tab:blue", "dnat": "tab:orange", "snat+dnat": "tab:purple"}


def nat_timeline(
    nat_flows: pd.DataFrame | None, ax: Axes | None = None, *, max_flows: int = 40
) -> Figure:
    """One bar per NAT flow from its first to its last packet, labelled with the original
    tuple, the translated tuple written after the bar; colour by kind (snat, dnat, both)."""
    title = "NAT flows: original ⇒ translated tuple"
    has_time = nat_flows is not None and {"first_ts_ns", "last_ts_ns"} <= set(nat_flows)
    rows = (nat_flows.dropna(subset=["first_ts_ns", "last_ts_ns"]) if has_time
            else pd.DataFrame())
    rows = rows.sort_values("first_ts_ns").head(max_flows) if len(rows) else rows
    fig, ax = _canvas(ax, (10.0, 1.8 + 0.32 * len(rows)))
    if rows.empty:
        return _no_data(fig, ax, title, "no NAT flows")
    start = rows["first_ts_ns"].min()
    begin = (rows["first_ts_ns"] - start).astype("float64").to_numpy() / 1e9
    length = (rows["last_ts_ns"] - rows["first_ts_ns"]).astype("float64").to_numpy() / 1e9
    span = float((begin + length).max()) or 1.0
    # a one-packet flow has no length: give it a sliver so it stays visible
    length = np.maximum(length, span / 300)
    kinds = rows["kind"].astype("string").fillna("?").tolist()
    y = np.arange(len(rows))
    for kind in dict.fromkeys(kinds):
        mine = np.array([k == kind for k in kinds])
        ax.barh(y[mine], length[mine], left=begin[mine], height=0.6,
                color=NAT_COLORS.get(kind, "tab:gray"), label=kind)
    for i, (_, row) in enumerate(rows.iterrows()):
        ax.text(begin[i] + length[i] + span * 0.01, i, "⇒ " + nat_tuple(row, "xlat"),
                va="center", fontsize=SMALL)
    ax.set_yticks(y, [nat_tuple(row, "orig") for _, row in rows.iterrows()], fontsize=SMALL)
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.9)  # room for the translated tuples
    ax.set_xlabel("time since the first NAT flow (s)")
    ax.set_title(title)
    legend_below(ax, columns=3)
    return fig


# -- all of them ---------------------------------------------------------------------------


def build_figures(
    tables: Mapping[str, pd.DataFrame], packets: pd.DataFrame | None = None, *,
    throughput_partials: tuple[Sequence[pd.DataFrame], int] | None = None,
    latency_curves: Mapping[str, tuple[list[Curve], int]] | None = None,
) -> dict[str, Figure]:
    """Every plot of the report, by file stem, from :func:`pktkit.report.tables.build_tables`'s
    tables (and the packet table for throughput, or its partitions' ``throughput_partials``
    as :func:`throughput` takes them; the hops' ``latency_curves`` by ``hop`` and
    ``node_pair`` as :func:`latency_cdf` takes them, made from partitions). Missing inputs give
    "no data" figures, so the page always has the same plots."""
    delays = tables.get("hops")
    if delays is None:
        delays = tables.get("latency")
    return {
        "overhead_share": overhead_share(tables.get("overhead")),
        "throughput": throughput(packets, partials=throughput_partials),
        "latency_hop": latency_cdf(delays, by="hop", curves=(latency_curves or {}).get("hop")),
        "latency_node_pair": latency_cdf(delays, by="node_pair",
                                         curves=(latency_curves or {}).get("node_pair")),
        "nat_timeline": nat_timeline(tables.get("nat_flows")),
    }
