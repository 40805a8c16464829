"""Every report table at once, from the packet table (or from an analysis).

Each table is computed by its own module: :mod:`~pktkit.report.overlay_costs` (``overlays``,
``overhead``), :mod:`~pktkit.report.flow_table`, :mod:`~pktkit.report.health` (``errors``,
``captures``, ``checksums``); the summary by :mod:`~pktkit.report.digest`. Every function
takes the packet table (:func:`pktkit.read_packets`) and returns a DataFrame with the nullable
dtypes its module lists (``<NA>`` means "not applicable"). Empty input gives empty, typed
tables.
"""

from __future__ import annotations

import pandas as pd

from pktkit.analysis.identities import IdentityMap
from pktkit.analysis.naming import NAT_NAMES, add_names
from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
from pktkit.analysis.pipeline import Analysis
from pktkit.report.flow_table import flows
from pktkit.report.health import captures, checksums, errors
from pktkit.report.overlay_costs import (
    overhead,
    overlays,
)


def build_tables(
    packets: pd.DataFrame,
    *,
    underlay_mtu: int | None = None,
    nat_flows: pd.DataFrame | None = None,
    hops: pd.DataFrame | None = None,
    latency: pd.DataFrame | None = None,
    clock_offsets: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every report table, in page order: captures, overlays, overhead, flows, then the
    correlation's tables passed through when given (nat_flows, latency, clock_offsets, hops),
    errors and checksums last."""
    tables: dict[str, pd.DataFrame] = {
        "captures": captures(packets),
        "overlays": overlays(packets),
        "overhead": overhead(packets, underlay_mtu=underlay_mtu),
        "flows": flows(packets, nat_flows, underlay_mtu=underlay_mtu),
    }
    given = {"nat_flows": nat_flows, "latency": latency, "clock_offsets": clock_offsets,
             "hops": hops}
    tables.update({name: table for name, table in given.items() if table is not None})
    tables["errors"] = errors(packets)
    tables["checksums"] = checksums(packets)
    return tables


NAT_NAME_COLUMNS = ["orig_src_name", "orig_dst_name", "xlat_src_name", "xlat_dst_name",
                    "service"]


def analysis_tables(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """Every table of an analysis's report, in page order (:func:`build_tables`, nat_flows
    with the columns of ``nat_flows.csv``, plus handshakes, given a conntrack dump
    nat_disagreements, and the identities). The addresses of flows (``a_name``, ``b_name``),
    overlays (``vtep_names``) and nat_disagreements get their names, as those of the
    analysis's own tables have them."""
    names = analysis.names or IdentityMap()
    nat = analysis.nat_flows[[*NAT_FLOWS_COLUMNS, *(c for c in NAT_NAME_COLUMNS
                                                    if c in analysis.nat_flows)]]
    tables = build_tables(analysis.packets, underlay_mtu=analysis.underlay_mtu,
                          nat_flows=nat, hops=analysis.hops,
                          latency=analysis.latency, clock_offsets=analysis.clock_offsets)
    add_names(tables["flows"], names, (("a_addr", "a_port"), ("b_addr", "b_port")),
              "first_ts_ns", after=True)
    tables["overlays"]["vtep_names"] = vtep_names(tables["overlays"], names)
    errors, checksum_table = tables.pop("errors"), tables.pop("checksums")
    tables["handshakes"] = analysis.handshakes
    if analysis.conntrack_given:
        disagreements = analysis.nat_disagreements.copy()
        add_names(disagreements, names, NAT_NAMES, None, after=True)
        tables["nat_disagreements"] = disagreements
    if analysis.identities is not None and len(analysis.identities):
        tables["identities"] = analysis.identities
    tables["errors"], tables["checksums"] = errors, checksum_table
    return tables


VTEP_PAIRS, VTEP_ENDS = "; ", " ↔ "  # how overlay_costs joins the ``vteps`` column


def vtep_names(overlays: pd.DataFrame, names: IdentityMap) -> pd.Series:
    """The ``vteps`` column with each address named (node addresses, mostly)."""
    texts = overlays["vteps"].astype("string")
    addresses = sorted({a for text in texts.dropna() for pair in text.split(VTEP_PAIRS)
                        for a in pair.split(VTEP_ENDS)})
    named = dict(zip(addresses, names.name(addresses).astype(str), strict=True))
    return pd.Series([pd.NA if pd.isna(text) else VTEP_PAIRS.join(
        VTEP_ENDS.join(named[a] for a in pair.split(VTEP_ENDS))
        for pair in text.split(VTEP_PAIRS)) for text in texts], index=overlays.index,
        dtype="string")
