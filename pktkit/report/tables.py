"""Every report table at once, from the packet table (or from an analysis).

Each table is computed by its own module: :mod:`~pktkit.report.overlay_costs` (``overlays``,
``overhead``), :mod:`~pktkit.report.flow_table`, :mod:`~pktkit.report.health` (``errors``,
``captures``, ``checksums``); the summary by :mod:`~pktkit.report.digest`. Every function
takes the packet table (:func:`pktkit.read_packets`) and returns a DataFrame with the nullable
dtypes its module lists (``<NA>`` means "not applicable"). Empty input gives empty, typed
tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.identities import IdentityMap
from pktkit.analysis.naming import NAT_NAMES, add_names
from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
from pktkit.analysis.pipeline import Analysis
from pktkit.report.flow_table import (
    FlowsPartial,
    flows_partial,
    flows_table,
    merged_flows_partial,
    split_flows_partial,
)
from pktkit.report.health import (
    CAPTURE_KEYS,
    CAPTURE_KINDS,
    CHECKSUM_KEYS,
    CHECKSUM_KINDS,
    ERROR_KEYS,
    ERROR_KINDS,
    captures_partial,
    captures_table,
    checksums_partial,
    checksums_table,
    errors_partial,
    errors_table,
)
from pktkit.report.overlay_costs import (
    OVERHEAD_KINDS,
    OVERLAY_KEYS,
    OVERLAY_KINDS,
    overhead_keys,
    overhead_partial,
    overhead_table,
    overlays_partial,
    overlays_table,
)
from pktkit.report.partials import merge
from pktkit.report.sizes import DEFAULT_UNDERLAY_MTU


@dataclass
class ReportPartial:
    """One partition's part of the report's tables (each module's partial)."""

    captures: pd.DataFrame
    overlays: pd.DataFrame
    overhead: pd.DataFrame
    flows: FlowsPartial
    errors: pd.DataFrame
    checksums: pd.DataFrame


def report_partial(packets: pd.DataFrame, *, underlay_mtu: int | None = None,
                   order: np.ndarray | None = None) -> ReportPartial:
    """The report tables' partials of one partition of whole packets (``order``: each row's
    place in the whole table; default: the partition's index)."""
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    return ReportPartial(
        captures=captures_partial(packets, order=order),
        overlays=overlays_partial(packets, order=order),
        overhead=overhead_partial(packets, underlay_mtu=mtu, order=order),
        flows=flows_partial(packets, underlay_mtu=mtu, order=order),
        errors=errors_partial(packets, order=order),
        checksums=checksums_partial(packets, order=order))


def merged_partial(partials: Sequence[ReportPartial]) -> ReportPartial:
    """Several partitions' partials as one partial: :func:`report_tables` of it is
    :func:`report_tables` of them (a merge in steps: on a cluster, by the workers)."""
    def merged(tables: list[pd.DataFrame], keys: list[str], kinds: dict[str, str]
               ) -> pd.DataFrame:
        return merge(tables, keys, kinds, as_partial=True)

    overhead = [p.overhead for p in partials]
    return ReportPartial(
        captures=merged([p.captures for p in partials], CAPTURE_KEYS, CAPTURE_KINDS),
        overlays=merged([p.overlays for p in partials], OVERLAY_KEYS, OVERLAY_KINDS),
        overhead=merged(overhead, overhead_keys(overhead), OVERHEAD_KINDS),
        flows=merged_flows_partial([p.flows for p in partials]),
        errors=merged([p.errors for p in partials], ERROR_KEYS, ERROR_KINDS),
        checksums=merged([p.checksums for p in partials], CHECKSUM_KEYS, CHECKSUM_KINDS))


def split_partial(partial: ReportPartial, buckets: int) -> list[ReportPartial]:
    """The partial in ``buckets`` that merge apart (:func:`merged_partial` of bucket k of
    every partition's partial): its flows by (capture, flow_id), the only part that grows
    with the input; the rest, a row per capture, overlay or error reason, in the first."""
    def first_only(table: pd.DataFrame, bucket: int) -> pd.DataFrame:
        return table if bucket == 0 else table.iloc[:0]

    return [ReportPartial(captures=first_only(partial.captures, b),
                          overlays=first_only(partial.overlays, b),
                          overhead=first_only(partial.overhead, b), flows=flows,
                          errors=first_only(partial.errors, b),
                          checksums=first_only(partial.checksums, b))
            for b, flows in enumerate(split_flows_partial(partial.flows, buckets))]


def report_tables(
    partials: Sequence[ReportPartial],
    *,
    read_stats: Sequence[dict[str, Any]] = (),
    payload_estimated: bool = False,
    underlay_mtu: int | None = None,
    nat_flows: pd.DataFrame | None = None,
    hops: pd.DataFrame | None = None,
    latency: pd.DataFrame | None = None,
    clock_offsets: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every report table, in page order (as :func:`build_tables`), from every partition's
    partial: ``read_stats`` the captures' (``packets.attrs["read_stats"]``),
    ``payload_estimated`` whether the packet table lacks ``l4_payload_len``."""
    mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else int(underlay_mtu)
    stats = list(read_stats)
    tables: dict[str, pd.DataFrame] = {
        "captures": captures_table([p.captures for p in partials], stats),
        "overlays": overlays_table([p.overlays for p in partials]),
        "overhead": overhead_table([p.overhead for p in partials], underlay_mtu=mtu,
                                   payload_estimated=payload_estimated),
        "flows": flows_table([p.flows for p in partials], nat_flows, underlay_mtu=mtu),
    }
    given = {"nat_flows": nat_flows, "latency": latency, "clock_offsets": clock_offsets,
             "hops": hops}
    tables.update({name: table for name, table in given.items() if table is not None})
    tables["errors"] = errors_table([p.errors for p in partials], stats)
    tables["checksums"] = checksums_table([p.checksums for p in partials])
    return tables


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
    errors and checksums last: :func:`report_tables` of the whole table as one partition."""
    partial = report_partial(packets, underlay_mtu=underlay_mtu, order=np.arange(len(packets)))
    return report_tables([partial], read_stats=packets.attrs.get("read_stats", []),
                         payload_estimated="l4_payload_len" not in packets,
                         underlay_mtu=underlay_mtu, nat_flows=nat_flows, hops=hops,
                         latency=latency, clock_offsets=clock_offsets)


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
    return named_tables(tables, names, analysis.handshakes,
                        analysis.nat_disagreements if analysis.conntrack_given else None,
                        analysis.identities)


def named_tables(tables: dict[str, pd.DataFrame], names: IdentityMap,
                 handshakes: pd.DataFrame, disagreements: pd.DataFrame | None,
                 identities: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """:func:`report_tables`' tables as the report shows them (:func:`analysis_tables`):
    the flows' and overlays' addresses named, the handshakes, the NAT disagreements (given a
    conntrack dump; None: none given) and the identities added, errors and checksums last."""
    add_names(tables["flows"], names, (("a_addr", "a_port"), ("b_addr", "b_port")),
              "first_ts_ns", after=True)
    tables["overlays"]["vtep_names"] = vtep_names(tables["overlays"], names)
    errors, checksum_table = tables.pop("errors"), tables.pop("checksums")
    tables["handshakes"] = handshakes
    if disagreements is not None:
        disagreements = disagreements.copy()
        add_names(disagreements, names, NAT_NAMES, None, after=True)
        tables["nat_disagreements"] = disagreements
    if identities is not None and len(identities):
        tables["identities"] = identities
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
