"""The summary of a report: headline counts, the problems found, the slowest hops, as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
)
from pktkit.capture.headers import IPPROTO_TCP, IPPROTO_UDP
from pktkit.report.health import CAPTURES_SCHEMA
from pktkit.report.labels import (
    clock_model_text,
    nat_tuple,
    overlay_label,
    plain,
    tuple_text,
)
from pktkit.report.overlay_costs import (
    OVERHEAD_SCHEMA,
    OVERLAYS_SCHEMA,
)


def _records(df: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return [{c: plain(v) for c, v in zip(columns, row, strict=True)}
            for row in df[columns].itertuples(index=False, name=None)]


# Most serious first: unreadable data, then MTU trouble, then its symptoms. Decode error
# reasons (not listed) rank first.
PROBLEM_RANK = {"capture-cut": 0, "flow-exceeds-mtu": 1, "oversized": 2, "frag-needed": 3,
                "fragments": 4, "bad-checksum": 5, "snaplen-cut": 6, "gso-frames": 7}


def _problems(tables: Mapping[str, pd.DataFrame], limit: int) -> list[dict[str, Any]]:
    """What went wrong, most frequent first: one dict per problem with a one-line detail.
    MTU findings and fragments are counted once per conversation (``flow_id``, across every
    capture that saw it) and named by the overlay carrying it."""
    found: list[dict[str, Any]] = []
    cost = tables.get("overhead")
    if cost is not None:
        for row in cost.itertuples(index=False):
            where = overlay_label(row.encap, row.vni)
            if row.frag_needed:
                found.append({"problem": "frag-needed", "where": where,
                              "count": int(row.frag_needed),
                              "detail": f"{row.frag_needed} ICMP fragmentation needed / "
                                        "packet too big"})
            if row.gso_frames:
                found.append({"problem": "gso-frames", "where": where,
                              "count": int(row.gso_frames),
                              "detail": f"{row.gso_frames} TCP frames above the underlay MTU "
                                        f"{row.underlay_mtu}: offload super-frames captured "
                                        "on a host, or a larger MTU than assumed"})
    flow_table = tables.get("flows")
    if flow_table is not None and len(flow_table):
        found += _conversation_problems(flow_table)
    error_table = tables.get("errors")
    if error_table is not None:
        for reason, group in error_table.groupby("reason", sort=False):
            count = int(group["packets"].fillna(0).sum()) or len(group)
            found.append({"problem": str(reason), "where": ", ".join(group["capture"]),
                          "count": count, "detail": f"{count} × {reason}"})
    checksum_table = tables.get("checksums")
    if checksum_table is not None:
        for row in checksum_table[checksum_table["bad"] > 0].itertuples(index=False):
            where = row.capture if pd.isna(row.interface) else f"{row.capture} ({row.interface})"
            found.append({"problem": "bad-checksum", "where": where, "count": int(row.bad),
                          "detail": f"{row.bad} of {row.checked} frames with a bad IPv4, TCP, "
                                    "UDP or ICMP checksum (still decoded and counted)"})
    found.sort(key=lambda p: (PROBLEM_RANK.get(p["problem"], 0), -p["count"]))
    return found[:limit]


def _conversation_problems(flow_table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per overlay, the conversations whose datagrams exceed its MTU (``oversized``) and
    those that were fragmented (``fragments``); per such conversation, ``flow-exceeds-mtu``.
    A conversation is one ``flow_id``; its overlay, the one its packets ride."""
    found: list[dict[str, Any]] = []
    flows = flow_table.assign(overlay=[overlay_label(e, v) for e, v in zip(
        flow_table["overlay_encap"].fillna(NO_TUNNEL), flow_table["overlay_vni"],
        strict=True)])
    # a flow of non-first fragments only is the tail of datagrams its ported flow reports
    # (without the correlation, which gives the fragments their conversation's flow_id)
    tail = (flows["a_port"].isna() & flows["fragments"].eq(flows["packets"])
            & flows["proto"].isin([IPPROTO_TCP, IPPROTO_UDP]))
    flows = flows[~tail]
    conversations = flows.groupby("flow_id", sort=False).agg(
        overlay=("overlay", "first"), exceeds=("exceeds_mtu", "any"),
        largest=("max_ip_len", "max"), mtu=("path_mtu", "min"),
        fragments=("fragments", "max"), captures=("capture", "nunique"))
    def counted(group: pd.DataFrame) -> str:
        return f"{len(group)} conversation{'s' * (len(group) > 1)}"

    for overlay, group in conversations.groupby("overlay", sort=False):
        for problem, chosen, detail in (
            ("oversized", group[group["exceeds"]],
             lambda g: f"{counted(g)} with datagrams larger than the inner MTU "
                       f"{int(g['mtu'].min())} (up to {int(g['largest'].max())} bytes)"),
            ("fragments", group[group["fragments"] > 0],
             lambda g: f"IP fragments in {counted(g)} (up to {int(g['fragments'].max())} "
                       "fragments in one capture)"),
        ):
            if len(chosen):
                found.append({"problem": problem, "where": overlay, "count": len(chosen),
                              "detail": detail(chosen)})
    too_big = flows[flows["exceeds_mtu"].fillna(False)]
    if not len(too_big):
        return found
    # one aggregate per conversation, not a loop over groups: on a 32-node overlay whose
    # underlay MTU splits packets, thousands of conversations exceed it (seconds per run)
    by_flow = too_big.groupby("flow_id", sort=False)
    firsts = by_flow.head(1)  # (each conversation's first row, in the groups' order)
    sizes = by_flow.agg(count=("capture", "size"), largest=("max_ip_len", "max"),
                        mtu=("path_mtu", "min"), captures=("capture", "nunique"))
    for first, count, largest, mtu, captures in zip(
            firsts.to_dict("records"), sizes["count"], sizes["largest"], sizes["mtu"],
            sizes["captures"], strict=True):
        key = [first[c] for c in ("proto", "a_addr", "a_port", "b_addr", "b_port")]
        found.append({
            "problem": "flow-exceeds-mtu",
            "where": named_where(first, f"{tuple_text(*key)} ({first['overlay']})"),
            "count": int(count),
            "detail": f"datagrams of {int(largest)} bytes > path MTU {int(mtu)}, seen in "
                      f"{int(captures)} capture{'s' * (int(captures) != 1)}",
        })
    return found


def named_where(first: Mapping[str, Any], where: str) -> str:
    """A conversation's names first, its tuple beside ("pod:a → pod:b (udp 10.0.0.4:5 →
    10.0.0.3:514)"), when the flows table has names that are not the addresses (``first``:
    the conversation's first row)."""
    if not {"a_name", "b_name"} <= set(first.keys()):
        return where
    if (str(first["a_name"]), str(first["b_name"])) == (str(first["a_addr"]),
                                                       str(first["b_addr"])):
        return where
    return f"{first['a_name']} → {first['b_name']} ({where})"


def _translation(row: pd.Series) -> dict[str, Any]:
    """A NAT flow for the summary: who to whom (when named), the tuples, the packets."""
    found: dict[str, Any] = {"nat_flow_id": plain(row["nat_flow_id"]),
                             "kind": plain(row.get("kind"))}
    if "service" in row and plain(row["service"]) is not None:
        found["service"] = plain(row["service"])
    for side in ("orig", "xlat"):
        key = "original" if side == "orig" else "translated"
        found[key] = nat_tuple(row, side)
        if f"{side}_src_name" in row:
            found[f"{key}_name"] = f"{row[f'{side}_src_name']} → {row[f'{side}_dst_name']}"
    found["packets"] = plain(row.get("packets"))
    return found


def summary(
    tables: Mapping[str, pd.DataFrame], *, problems: int = 10, nat_flows: int = 10
) -> dict[str, Any]:
    """A JSON-ready dict of the tables: counts, overlays with their overhead, NAT (the
    ``nat_flows`` busiest translations), latency, clock offsets, and the top ``problems``
    (most serious first)."""
    out: dict[str, Any] = {}
    capture_table = tables.get("captures", pd.DataFrame(columns=list(CAPTURES_SCHEMA)))
    flow_table = tables.get("flows")
    nat_table = tables.get("nat_flows")
    error_table = tables.get("errors")
    cost = tables.get("overhead", pd.DataFrame(columns=list(OVERHEAD_SCHEMA)))
    first_ts = plain(capture_table["first_ts_ns"].min()) if len(capture_table) else None
    last_ts = plain(capture_table["last_ts_ns"].max()) if len(capture_table) else None
    out["counts"] = {
        "captures": len(capture_table),
        "packets": int(capture_table["packets"].sum()),
        "bytes": int(capture_table["bytes"].sum()),
        "flows": 0 if flow_table is None else int(flow_table["flow_id"].nunique()),
        "overlays": int(cost["encap"].ne(NO_TUNNEL).sum()),
        "nat_flows": None if nat_table is None else len(nat_table),
        "errors": 0 if error_table is None else int(error_table["packets"].fillna(1).sum()),
    }
    out["time"] = {"first_ts_ns": first_ts, "last_ts_ns": last_ts,
                   "duration_s": None if first_ts is None else (last_ts - first_ts) / 1e9}
    out["underlay_mtu"] = plain(cost["underlay_mtu"].iloc[0]) if len(cost) else None
    overlay_table = tables.get("overlays", pd.DataFrame(columns=list(OVERLAYS_SCHEMA)))
    cost_columns = ["overhead_mean", "overhead_min", "overhead_max", "overhead_share",
                    "payload_efficiency", "inner_mtu", "max_inner_len", "headroom",
                    "oversized", "fragments", "frag_needed"]
    merged = overlay_table.merge(cost[["encap", "vni", *cost_columns]], on=["encap", "vni"],
                                 how="left")
    named = ["vtep_names"] if "vtep_names" in merged else []
    out["overlays"] = _records(merged, ["encap", "vni", "packets", "bytes", "flows",
                                        "vtep_pairs", "vteps", *named, "outer_dports",
                                        *cost_columns])
    if nat_table is not None:
        kinds = nat_table["kind"].value_counts() if "kind" in nat_table else pd.Series()
        busiest = (nat_table.sort_values("packets", ascending=False, kind="stable")
                   if "packets" in nat_table else nat_table).head(nat_flows)
        out["nat"] = {
            "flows": len(nat_table), "by_kind": {str(k): int(v) for k, v in kinds.items()},
            "translations": [_translation(row) for _, row in busiest.iterrows()],
        }
    latency = tables.get("latency")
    if latency is not None and len(latency):
        # ties by scope: the table's own order follows packet ids, which a run in parts
        # numbers otherwise
        slowest = latency.sort_values(["p50_ns", "scope"], ascending=[False, True],
                                      na_position="last", kind="stable")
        out["latency"] = {
            str(metric): _records(group.head(5), ["scope", "count", "p50_ns", "p99_ns",
                                                  "max_ns"])
            for metric, group in slowest.groupby("metric", sort=False)
        }
    offsets = tables.get("clock_offsets")
    if offsets is not None and len(offsets):
        # the model in words (its time too), then the numbers
        texts = [clock_model_text(row) for row in offsets.to_dict("records")]
        out["clock_offsets"] = [
            {"model": text, **row} for text, row in zip(texts, _records(offsets, [
                c for c in ("node", "reference_node", "offset_ns", "drift_ppm", "bound_ns",
                            "samples") if c in offsets]), strict=True)]
    out["problems"] = _problems(tables, problems)
    if cost.attrs.get("payload_estimated"):
        out["notes"] = ["payload_efficiency is an upper bound: the packet table has no "
                        "l4_payload_len, so TCP options are not subtracted"]
    return out
