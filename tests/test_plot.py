"""pktkit.report.plot: every plot returns a Figure with the expected artists, on real data and
empty.

The correlation tables (hops, latency, NAT flows) come from truth.json here, shaped like
pktkit.analysis.correlate's contract, until that module exists.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pktkit.capture.table import read_packets
from pktkit.report import plot
from pktkit.report.tables import build_tables

matplotlib.use("agg")

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


# -- stand-ins for pktkit.analysis.correlate's tables, from truth.json -----------------------------


@cache
def truth(folder: str) -> dict:
    return json.loads((CAPTURES / folder / "truth.json").read_text())


@cache
def packets(folder: str) -> pd.DataFrame:
    return read_packets([CAPTURES / folder / name for name in truth(folder)["captures"]])


def truth_hops(folder: str) -> pd.DataFrame:
    """One row per sighting (first fragment only), delay since the previous sighting on the
    reference clock, as the correlation's hops table."""
    rows = pd.DataFrame(truth(folder)["packets"])
    rows = rows.sort_values(["packet_id", "hop", "true_ts_ns"]).drop_duplicates(
        ["packet_id", "hop"])
    previous = rows.groupby("packet_id")
    rows["delay_ns"] = previous["true_ts_ns"].diff().astype("Int64")
    rows["from_node"] = previous["node"].shift()
    rows["from_interface"] = previous["interface"].shift()
    return rows[["packet_id", "hop", "capture", "frame", "node", "interface", "direction",
                 "ts_ns", "delay_ns", "from_node", "from_interface"]].reset_index(drop=True)


def truth_latency(hops: pd.DataFrame) -> pd.DataFrame:
    """The latency table's hop and node_pair rows from a hops table."""
    moved = hops.dropna(subset=["delay_ns"])
    scopes = {
        "hop": moved["from_node"] + "/" + moved["from_interface"] + " → " + moved["node"]
        + "/" + moved["interface"],
        "node_pair": (moved["from_node"] + " → " + moved["node"]).where(
            moved["from_node"] != moved["node"]),
    }
    parts = []
    for metric, scope in scopes.items():
        delays = moved["delay_ns"].astype("float64").groupby(scope)
        parts.append(pd.DataFrame({
            "metric": metric, "count": delays.size(), "min_ns": delays.min(),
            "p50_ns": delays.quantile(0.5), "p90_ns": delays.quantile(0.9),
            "p99_ns": delays.quantile(0.99), "max_ns": delays.max(),
        }).rename_axis("scope").reset_index())
    return pd.concat(parts, ignore_index=True)


def truth_nat_flows(folder: str) -> pd.DataFrame:
    """truth's nat_flows with packets, bytes and time span, as the correlation's table."""
    flows = pd.DataFrame(truth(folder)["nat_flows"])
    if flows.empty:
        return flows
    frames = pd.DataFrame(truth(folder)["packets"]).dropna(subset=["nat_flow_id"])
    per_flow = frames.groupby(frames["nat_flow_id"].astype(int)).agg(
        packets=("frame", "size"), bytes=("wire_len", "sum"), first_ts_ns=("ts_ns", "min"),
        last_ts_ns=("ts_ns", "max"))
    return flows.join(per_flow, on="nat_flow_id").assign(conntrack=None)


# -- the plots ----------------------------------------------------------------------------


def labels(fig: Figure) -> list[str]:
    return [line.get_label() for line in fig.axes[0].get_lines()]


def says_no_data(fig: Figure) -> bool:
    return any(text.get_text().startswith("no data") for text in fig.axes[0].texts)


def test_latency_cdf_per_hop_and_node_pair_from_hops() -> None:
    hops = truth_hops("vxlan-overlay")
    fig = plot.latency_cdf(hops, by="hop", max_lines=50)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "delay (µs)" and "≤" in ax.get_ylabel()
    assert "node-a/eth0 → node-b/eth0" in " ".join(labels(fig))
    for line in ax.get_lines():  # every curve is a CDF: ends at 1
        assert line.get_ydata()[-1] == pytest.approx(1.0)
    pairs = plot.latency_cdf(hops, by="node_pair")
    assert sorted(label.split(",")[0] for label in labels(pairs)) == [
        "node-a → node-b", "node-b → node-a"]


def test_latency_cdf_from_the_latency_table_and_limits() -> None:
    latency = truth_latency(truth_hops("vxlan-overlay"))
    fig = plot.latency_cdf(latency, by="node_pair")
    assert all(label.endswith(tuple("0123456789")) and "(percentiles)" in label
               for label in labels(fig))
    assert len(plot.latency_cdf(latency, by="hop", max_lines=3).axes[0].get_lines()) == 3
    with pytest.raises(ValueError, match="node_pair"):
        plot.latency_cdf(latency, by="pod")


def test_overhead_share_bars_per_encapsulation() -> None:
    overhead = build_tables(packets("vxlan-overlay"))["overhead"]
    fig = plot.overhead_share(overhead)
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == [name for name, _ in plot.SHARE_PARTS]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vxlan vni 1", "vxlan vni 2",
                                                            "untunnelled"]
    encap_bars = ax.containers[0]
    assert encap_bars[0].get_width() == pytest.approx(float(overhead["overhead_share"][0]) * 100)
    assert any("50 B/packet" in t.get_text() for t in ax.texts)
    # the three parts fill each bar
    for i in range(3):
        assert sum(c[i].get_width() for c in ax.containers) == pytest.approx(100)


def test_throughput_lines_per_vni_and_capture() -> None:
    fig = plot.throughput(packets("vxlan-overlay"))
    assert sorted(labels(fig)) == sorted(f"vxlan vni {v} · node-{n}-eth0.pcap"
                                         for v in (1, 2) for n in "ab")
    ax = fig.axes[0]
    assert "throughput (" in ax.get_ylabel() and ax.get_xlabel().startswith("time since")
    assert len(plot.throughput(packets("vxlan-overlay"), max_lines=1).axes[0].get_lines()) == 1
    assert says_no_data(plot.throughput(packets("flat-routed")))


def test_nat_timeline_bars_with_both_tuples() -> None:
    nat = truth_nat_flows("docker-snat")
    fig = plot.nat_timeline(nat)
    ax = fig.axes[0]
    assert sum(len(c) for c in ax.containers) == len(nat)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "tcp 172.17.0.3:44235 → 203.0.113.10:80" in ticks
    assert "⇒ tcp 192.168.1.10:38129 → 203.0.113.10:80" in [t.get_text() for t in ax.texts]
    (moved,) = [f for f in nat.to_dict("records") if f["proto"] == 1
                and f["orig_src"] == "172.17.0.3"]  # the colliding echo: its id rewritten
    assert f"icmp 172.17.0.3 → 203.0.113.10 id {moved['orig_sport']}" in ticks
    assert f"⇒ icmp 192.168.1.10 → 203.0.113.10 id {moved['xlat_sport']}" in [
        t.get_text() for t in ax.texts]
    assert moved["orig_sport"] != moved["xlat_sport"]


@pytest.mark.parametrize("make", [
    lambda: plot.latency_cdf(None), lambda: plot.latency_cdf(truth_hops("vxlan-overlay")[:0]),
    lambda: plot.overhead_share(None), lambda: plot.throughput(None),
    lambda: plot.throughput(packets("vxlan-overlay")[:0]), lambda: plot.nat_timeline(None),
    lambda: plot.nat_timeline(truth_nat_flows("flat-routed")),
    lambda: plot.overhead_share(build_tables(packets("vxlan-overlay")[:0])["overhead"]),
], ids=["latency-none", "latency-empty", "overhead-none", "throughput-none",
        "throughput-empty", "nat-none", "nat-empty", "overhead-empty"])
def test_empty_input_gives_a_no_data_figure(make) -> None:
    fig = make()
    assert isinstance(fig, Figure) and says_no_data(fig)


def test_draws_on_a_given_axes_without_pyplot() -> None:
    fig = Figure()
    axes = fig.subplots(2, 2)
    assert plot.overhead_share(build_tables(packets("ipip"))["overhead"], axes[0, 0]) is fig
    assert plot.throughput(packets("ipip"), axes[0, 1]) is fig
    assert plot.latency_cdf(truth_hops("ipip"), axes[1, 0]) is fig
    assert plot.nat_timeline(None, axes[1, 1]) is fig
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == []  # nothing registered with pyplot


def test_build_figures_always_gives_every_plot() -> None:
    tables = build_tables(packets("flat-routed"))
    figures = plot.build_figures(tables, packets("flat-routed"))
    assert list(figures) == ["overhead_share", "throughput", "latency_hop",
                             "latency_node_pair", "nat_timeline"]
    assert all(isinstance(f, Figure) for f in figures.values())


def test_a_long_cdf_is_drawn_through_evenly_spaced_ranks() -> None:
    delays = np.sort(np.random.default_rng(7).integers(1_000, 90_000, 50_000))
    xs, ys = plot._cdf_points(delays)
    assert len(xs) <= plot.CDF_POINTS
    assert (xs[0], ys[-1], xs[-1]) == (delays[0], 1.0, delays[-1])
    # every point on the exact empirical CDF, and no step taller than 1/CDF_POINTS + 1/n
    below, at_most = (np.searchsorted(delays, xs, side=s) / len(delays) for s in ("left", "right"))
    assert ((below < ys) & (ys <= at_most)).all()
    assert np.diff(ys).max() <= 1 / plot.CDF_POINTS + 1 / len(delays)
    short = np.array([3, 5, 5, 9])
    assert [a.tolist() for a in plot._cdf_points(short)] == [[3, 5, 5, 9], [0.25, 0.5, 0.75, 1]]


@pytest.mark.parametrize("make", [
    lambda: plot.latency_cdf(truth_hops("vxlan-overlay"), by="hop"),
    lambda: plot.latency_cdf(truth_hops("vxlan-overlay"), by="node_pair"),
    lambda: plot.throughput(packets("vxlan-overlay")),
    lambda: plot.nat_timeline(truth_nat_flows("docker-portmap")),  # a short plot: 4 bars
    lambda: plot.nat_timeline(truth_nat_flows("docker-snat")),
    lambda: plot.overhead_share(build_tables(packets("vxlan-overlay"))["overhead"]),
], ids=["latency-hop", "latency-node-pair", "throughput", "nat-short", "nat", "overhead"])
def test_legends_hide_no_data(make) -> None:
    """Each legend lies outside the axes (the data), clear of the x axis's label and tick
    labels, and inside the figure."""
    fig = make()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # as savefig lays it out
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert not legend.overlaps(ax.xaxis.label.get_window_extent(renderer))
    for tick in ax.get_xticklabels():
        if tick.get_text():
            assert not legend.overlaps(tick.get_window_extent(renderer))
    whole = fig.bbox
    assert whole.x0 <= legend.x0 and legend.x1 <= whole.x1
    assert whole.y0 <= legend.y0 and legend.y1 <= whole.y1


def test_a_no_data_figure_says_so() -> None:
    assert not plot.has_data(plot.nat_timeline(None))
    assert plot.has_data(plot.nat_timeline(truth_nat_flows("docker-snat")))
