"""Latency: delays per hop, node pair, NAT translation and TCP handshake, as percentiles.

``latency`` — one row per (metric, scope), delays in ns

=======  ======  =====================================================================
metric   string  ``hop``: between consecutive sightings on one node, scope
                 "node/if → node/if"; ``node_pair``: from the last sighting on one node
                 to the first on the next, one way, clock-corrected, scope "a → b";
                 ``nat``: from the last sighting before an address/port rewrite to the
                 first after it, scope "node/if → node/if (src|dst|src+dst rewritten)";
                 ``handshake_rtt``: SYN to the ACK completing the handshake, per TCP flow
                 as seen at one capture point, scope "node/if";
                 ``pod_pair``: each packet from its first sighting to its last (clock-
                 corrected), scope "sender → receiver" by name (the sender as first seen,
                 the receiver as last seen: the pods behind any NAT), when either is a pod;
                 ``service``: the same delay for the packets of NAT flows through a Service,
                 scope "service → backend" (the flow's ``service`` and ``xlat_dst_name``)
scope    string  see metric
count    Int64   samples
min_ns,  Int64   minimum, percentiles (linear interpolation, rounded), maximum
p50_ns,
p90_ns,
p99_ns,
max_ns
=======  ======  =====================================================================

``handshakes`` — one row per TCP handshake per capture point: capture, node, interface,
flow_id, src, sport, dst, dport (as the SYN was seen there), syn_ts_ns, synack_ts_ns,
ack_ts_ns (capture clock), rtt_ns (ack − syn). The SYN is the last one before the SYN-ACK
(a retransmitted SYN does not inflate the RTT). :func:`pktkit.analyze` adds ``src_name`` and
``dst_name`` (:mod:`~pktkit.analysis.naming`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.percentiles import (
    SampleCounts,
    Sampled,
    WantedBins,
    count_samples,
    percentile_table,
    values_in_bins,
    wanted_bins,
)
from pktkit.analysis.rows import (
    NO_VALUE,
    combinations,
    int_column,
    row_digest,
    string_codes,
)
from pktkit.capture.frame import empty_frame, typed_frame

LATENCY_SCHEMA: dict[str, str] = {
    "metric": "string", "scope": "string", "count": "Int64", "min_ns": "Int64",
    "p50_ns": "Int64", "p90_ns": "Int64", "p99_ns": "Int64", "max_ns": "Int64",
}
HANDSHAKES_SCHEMA: dict[str, str] = {
    "capture": "string", "node": "string", "interface": "string", "flow_id": "Int64",
    "src": "string", "sport": "Int64", "dst": "string", "dport": "Int64",
    "syn_ts_ns": "Int64", "synack_ts_ns": "Int64", "ack_ts_ns": "Int64", "rtt_ns": "Int64",
}
LATENCY_METRICS = ("hop", "node_pair", "nat", "handshake_rtt", "pod_pair", "service")
PERCENTILES = (("p50_ns", 50), ("p90_ns", 90), ("p99_ns", 99))
_HOP_BITS = 20  # a sample's order: packet_id above, hop below
_ICMP_REQUESTS = ((1, 8), (58, 128))  # (proto, type) of echo requests: the id is the source's


def _pairs(a: np.ndarray, b: np.ndarray, names: Sequence[str], template: str,
           extra: Sequence[str] = ("",), c: np.ndarray | None = None,
           keys: Sequence[str] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Group codes of (a, b[, c]) samples, their scope labels, e.g. "A → B", and their keys
    (from ``keys`` of the names when given: two points may share a label)."""
    combos, group = combinations(a, b) if c is None else combinations(a, b, c)
    labels = [template.format(a=names[combo[0]], b=names[combo[1]],
                              c=extra[combo[2] if c is not None else 0]) for combo in combos]
    if keys is None:
        return group, labels, labels
    return group, labels, ["\x1e".join((keys[combo[0]], keys[combo[1]],
                                         extra[combo[2] if c is not None else 0]))
                           for combo in combos]


def _rewrites(packets: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Per hop row: whether its source side (address, port or ICMP echo id of a request)
    differs from the previous row's, likewise its destination side, and whether it carries
    them (not a bare non-first fragment)."""
    proto, icmp_type = int_column(packets, "proto", rows), int_column(packets, "icmp_type", rows)
    request = np.zeros(len(rows), bool)
    for p, t in _ICMP_REQUESTS:
        request |= (proto == p) & (icmp_type == t)
    del proto, icmp_type
    ident = int_column(packets, "icmp_id", rows)
    # addresses: codes of the whole column, taken (cheaper than taking the strings)
    src_changed = _changed(row_digest([string_codes(packets["src"])[0][rows],
                                    int_column(packets, "sport", rows),
                                    np.where(request, ident, NO_VALUE)]))
    dst_changed = _changed(row_digest([string_codes(packets["dst"])[0][rows],
                                    int_column(packets, "dport", rows),
                                    np.where(request, NO_VALUE, ident)]))
    whole = int_column(packets, "frag_offset", rows) <= 0
    return src_changed, dst_changed, whole


def _changed(values: np.ndarray) -> np.ndarray:
    """Boolean: the row differs from the previous one (row 0: False)."""
    changed = np.zeros(len(values), bool)
    changed[1:] = values[1:] != values[:-1]
    return changed


def _points(hops: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """A code per hops row for its capture point "node/interface" (the capture file when
    the interface is unknown), the labels, and keys that tell apart points whose labels are
    alike (one interface in two capture files: an any-device file and its own)."""
    node, interface, capture = (hops[name].array.codes for name in ("node", "interface",
                                                                     "capture"))
    combos, point = combinations(node, interface, capture)
    nodes, interfaces = list(hops["node"].cat.categories), list(hops["interface"].cat.categories)
    captures = list(hops["capture"].cat.categories)
    labels = [f"{nodes[n] if n >= 0 else '?'}/{interfaces[i] if i >= 0 else captures[c]}"
              for n, i, c in combos]
    keys = ["\x1f".join(names[code] if code >= 0 else "\x00"
                         for names, code in ((nodes, n), (interfaces, i), (captures, c)))
            for n, i, c in combos]
    return point, labels, keys


def latency(packets: pd.DataFrame, hops: pd.DataFrame, hop_rows: np.ndarray,
            handshakes: pd.DataFrame | None = None, nat_flows: pd.DataFrame | None = None
            ) -> pd.DataFrame:
    """The latency table (see the module docstring) from the hops (``hop_rows``: each hop's
    representative packet-table row), the handshakes and, for the ``pod_pair`` and
    ``service`` metrics, the packet table's name columns and the named NAT flows: the two
    passes of :mod:`~pktkit.analysis.percentiles` on one partition."""
    samples = [*latency_samples(packets, hops, hop_rows, nat_flows),
               *handshake_samples(handshakes)]
    wanted = latency_bins([count_samples(samples)])
    return latency_table(wanted, [values_in_bins(samples, wanted)])


def latency_samples(packets: pd.DataFrame, hops: pd.DataFrame, hop_rows: np.ndarray,
                    nat_flows: pd.DataFrame | None = None) -> list[Sampled]:
    """The samples of every metric but ``handshake_rtt`` in one partition of whole packets
    (its hops rows in (packet_id, hop) order; ``hop_rows``: their rows among the partition's
    packets). Each sample's order is its hops row's (packet_id, hop)."""
    parts: list[Sampled] = []
    if not len(hops):
        return parts
    # first, while little else is alive: where addresses or ports were rewritten
    src_changed, dst_changed, whole = _rewrites(packets, hop_rows)
    point, points, point_keys = _points(hops)
    before = np.roll(point, 1)
    before[0] = 0
    delay = hops["delay_ns"].to_numpy(dtype=np.int64, na_value=0)
    later = hops["delay_ns"].notna().to_numpy()
    order = (hops["packet_id"].to_numpy(np.int64) << _HOP_BITS) | hops["hop"].to_numpy(np.int64)
    node = hops["node"].array.codes
    from_node = np.roll(node, 1)
    from_node[0] = -1
    same = later & (node == from_node)
    group, labels, keys = _pairs(before[same], point[same], points, "{a} → {b}",
                                 keys=point_keys)
    parts.append(Sampled("hop", group, labels, delay[same], order[same], keys))
    cross = later & ~same
    group, labels, _ = _pairs(from_node[cross], node[cross],
                              list(hops["node"].cat.categories), "{a} → {b}")
    parts.append(Sampled("node_pair", group, labels, delay[cross], order[cross]))
    nat = later & (src_changed | dst_changed)
    nat[1:] &= whole[1:] & whole[:-1]
    what = np.where(src_changed & dst_changed, 2, np.where(src_changed, 0, 1))
    group, labels, keys = _pairs(before[nat], point[nat], points,
                                 "{a} → {b} ({c} rewritten)", ("src", "dst", "src+dst"),
                                 what[nat], keys=point_keys)
    parts.append(Sampled("nat", group, labels, delay[nat], order[nat], keys))
    if "src_name" in packets:
        parts += _end_to_end(packets, hops, hop_rows, nat_flows, order)
    return parts


def handshake_samples(handshakes: pd.DataFrame | None) -> list[Sampled]:
    """The ``handshake_rtt`` samples of the (merged) handshakes table, in its order."""
    if handshakes is None or not len(handshakes):
        return []
    scope = (handshakes["node"].astype("string") + "/"
             + handshakes["interface"].astype("string").fillna(
                 handshakes["capture"].astype("string")))
    codes, labels = pd.factorize(scope)
    return [Sampled("handshake_rtt", codes, list(labels),
                    handshakes["rtt_ns"].to_numpy(np.int64), np.arange(len(handshakes)))]


def latency_bins(parts: Sequence[SampleCounts]) -> WantedBins:
    """Pass 1 of the latency percentiles merged (:func:`~pktkit.analysis.percentiles
    .wanted_bins`)."""
    return wanted_bins(parts, [p for _, p in PERCENTILES])


def latency_table(wanted: WantedBins, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The latency table from pass 1 merged and every partition's pass 2: metrics in
    ``LATENCY_METRICS`` order, scopes in order of their first sample."""
    table = percentile_table(wanted, parts, PERCENTILES)
    if not len(table):
        return empty_frame(LATENCY_SCHEMA)
    rank = table["metric"].map({m: i for i, m in enumerate(LATENCY_METRICS)})
    table = table.iloc[np.argsort(rank.to_numpy(), kind="stable")]
    rows = {"metric": table["metric"], "scope": table["scope"], "count": table["count"],
            "min_ns": table["min"],
            **{col: [round(x) for x in table[col].tolist()] for col, _ in PERCENTILES},
            "max_ns": table["max"]}
    return typed_frame(pd.DataFrame({k: list(v) for k, v in rows.items()}), LATENCY_SCHEMA)


def handshakes(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per TCP handshake per capture point (see the module docstring): the two
    passes of :func:`handshake_openings`, :func:`pending_handshakes`,
    :func:`handshake_acks` and :func:`handshake_table` on one partition."""
    order = np.arange(len(packets))
    pending = pending_handshakes([handshake_openings(packets, order=order)])
    return handshake_table(pending, [handshake_acks(packets, pending)])


@dataclass
class Openings:
    """Pass 1 of the handshakes over one partition: its SYNs (with the columns of the
    handshakes table and ``row``, their place in the whole table) and its SYN-ACKs, each
    keyed by its capture point and conversation (capture, interface, flow_id) and the
    client's ISN. Its size: the partition's SYNs and SYN-ACKs, not its other packets."""

    syns: pd.DataFrame
    synacks: pd.DataFrame


_POINT = ["capture", "interface_key", "flow_key"]  # a conversation at a capture point
_KEY = [*_POINT, "isn"]
# what handshake_acks reads of the pending handshakes (a map's shared state: the rest of a
# pending row, its SYN's table columns, stays with the merge)
ACK_COLUMNS = [*_KEY, "synack_seq", "synack_ts_ns"]
_NO_INTERFACE = "\0"  # the interface key of a file that names none
_WRAP = 1 << 32


def _tcp_rows(packets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The TCP flags of every row (−1: none) and which rows can take part in a handshake
    (flags, a sequence number, a time, no error)."""
    flags = int_column(packets, "tcp_flags")
    ok = ((flags >= 0) & (int_column(packets, "tcp_seq") >= 0)
          & (int_column(packets, "ts_ns") != NO_VALUE))
    if "error" in packets:
        ok &= packets["error"].isna().to_numpy()
    return flags, ok


def _points_at(packets: pd.DataFrame, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The point key columns of some rows, as text and integers (the same in every
    partition)."""
    def text(name: str, na: str) -> np.ndarray:
        return pd.Series(packets[name].array[rows]).astype("string").to_numpy(object,
                                                                               na_value=na)

    return {"capture": text("capture", ""), "interface_key": text("interface", _NO_INTERFACE),
            "flow_key": int_column(packets, "flow_id", rows)}


def handshake_openings(packets: pd.DataFrame, *, order: np.ndarray | None = None) -> Openings:
    """Pass 1 (map): the SYNs and SYN-ACKs of one partition. ``order``: each row's place in
    the whole table (default: the partition's index)."""
    flags, ok = _tcp_rows(packets)
    syn = np.flatnonzero(ok & ((flags & 0x16) == 0x02))
    synack = np.flatnonzero(ok & ((flags & 0x16) == 0x12))
    order = packets.index.to_numpy(np.int64) if order is None else order

    def column(name: str, rows: np.ndarray) -> np.ndarray:
        return int_column(packets, name, rows)

    syns = pd.DataFrame({**_points_at(packets, syn), "isn": column("tcp_seq", syn),
                         "syn_ts_ns": column("ts_ns", syn), "row": order[syn]})
    columns = packets[["capture", "node", "interface", "flow_id", "src", "sport", "dst",
                       "dport"]].iloc[syn].reset_index(drop=True)
    syns = pd.concat([syns, columns.add_prefix("table_")], axis=1)
    synacks = pd.DataFrame({**_points_at(packets, synack),
                            "isn": (column("tcp_ack", synack) - 1) % _WRAP,
                            "synack_seq": column("tcp_seq", synack),
                            "synack_ts_ns": column("ts_ns", synack),
                            "row": order[synack]})
    return Openings(syns, synacks)


def pending_handshakes(parts: Sequence[Openings]) -> pd.DataFrame:
    """Pass 1 merged (client): per (point, ISN), the last SYN before the first SYN-ACK that
    answers it; the ACK that completes it is pass 2's to find."""
    syns = pd.concat([p.syns for p in parts], ignore_index=True)
    synacks = pd.concat([p.synacks for p in parts], ignore_index=True)
    # as one table in row order would have them
    syns = syns.sort_values("row", kind="stable")
    synacks = synacks.sort_values(["synack_ts_ns", "row"], kind="stable")
    synacks = synacks.drop_duplicates(_KEY).drop(columns="row")
    found = syns.merge(synacks, on=_KEY)
    found = found[found["syn_ts_ns"] <= found["synack_ts_ns"]]
    found = found.sort_values(["syn_ts_ns", "row"], kind="stable")
    return found.drop_duplicates(_KEY, keep="last").reset_index(drop=True)


def handshake_acks(packets: pd.DataFrame, pending: pd.DataFrame) -> pd.DataFrame:
    """Pass 2 (map): per pending handshake (its key and SYN-ACK sequence number), the
    earliest ACK of the partition that completes it (not before its SYN-ACK). Its size: at
    most the pending handshakes."""
    flags, ok = _tcp_rows(packets)
    ack_rows = np.flatnonzero(ok & ((flags & 0x17) == 0x10))
    del flags, ok
    # Only the ACKs that may complete a pending handshake (their digests match; the merge
    # decides): the others are many and are left out before any text is made.
    isn = (int_column(packets, "tcp_seq", ack_rows) - 1) % _WRAP
    synack_seq = (int_column(packets, "tcp_ack", ack_rows) - 1) % _WRAP
    wanted = np.isin(row_digest([_local_points(packets, ack_rows), isn, synack_seq]),
                     row_digest([_local_points(packets, None, pending),
                                 pending["isn"].to_numpy(np.int64),
                                 pending["synack_seq"].to_numpy(np.int64)]))
    ack_rows, isn, synack_seq = ack_rows[wanted], isn[wanted], synack_seq[wanted]
    acks = pd.DataFrame({**_points_at(packets, ack_rows), "isn": isn, "synack_seq": synack_seq,
                         "ack_ts_ns": int_column(packets, "ts_ns", ack_rows)})
    found = pending[ACK_COLUMNS].merge(acks, on=[*_KEY, "synack_seq"])
    found = found[found["ack_ts_ns"] >= found["synack_ts_ns"]]
    return found.groupby(_KEY, sort=False)["ack_ts_ns"].min().reset_index()


def _local_points(packets: pd.DataFrame, rows: np.ndarray | None,
                  pending: pd.DataFrame | None = None) -> np.ndarray:
    """A digest of the capture point and conversation of some rows of the partition, or of
    the pending handshakes (in the partition's codes; −1: a point the partition lacks):
    which of its many ACKs can complete a pending handshake, before any text is made."""
    capture, captures = string_codes(packets["capture"])
    interface, interfaces = string_codes(packets["interface"])
    if pending is None:
        return row_digest([capture[rows], interface[rows], int_column(packets, "flow_id", rows)])
    # (hashed lookups: a Python loop over the pending handshakes, once per part, was 70 %
    # of the cluster's `acked` step)
    local_capture = _local_codes(pending["capture"], captures)
    interface = pending["interface_key"]
    local_interface = np.where((interface == _NO_INTERFACE).to_numpy(bool), -1,
                               _local_codes(interface, interfaces))
    return row_digest([local_capture, local_interface, pending["flow_key"].to_numpy(np.int64)])


def _local_codes(values: pd.Series, labels: list[str]) -> np.ndarray:
    """Each value's place among ``labels`` (−2: not among them)."""
    found = pd.Index(labels, dtype=object).get_indexer(values.astype(object))
    return np.where(found >= 0, found, -2).astype(np.int32)


def handshake_table(pending: pd.DataFrame, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The handshakes table from pass 1 merged and every partition's pass 2."""
    acks = pd.concat(list(parts), ignore_index=True).groupby(_KEY, sort=False)[
        "ack_ts_ns"].min().reset_index()
    found = pending.merge(acks, on=_KEY)
    if not len(found):
        return empty_frame(HANDSHAKES_SCHEMA)
    found = found.sort_values(["syn_ts_ns", "row"], kind="stable").reset_index(drop=True)
    table = found[[c for c in found if c.startswith("table_")]]
    table = table.rename(columns=lambda c: c.removeprefix("table_"))
    for name in ("syn_ts_ns", "synack_ts_ns", "ack_ts_ns"):
        table[name] = found[name].to_numpy(np.int64)
    table["rtt_ns"] = table["ack_ts_ns"] - table["syn_ts_ns"]
    return typed_frame(table, HANDSHAKES_SCHEMA)


def _name_codes(packets: pd.DataFrame, column: str, rows: np.ndarray) -> tuple[np.ndarray,
                                                                                 list[str]]:
    codes, labels = string_codes(packets[column])
    return codes[rows], labels


def _end_to_end(packets: pd.DataFrame, hops: pd.DataFrame, hop_rows: np.ndarray,
                nat_flows: pd.DataFrame | None, order: np.ndarray) -> list[Sampled]:
    """The ``pod_pair`` and ``service`` rows: each packet's first-to-last sighting delay."""
    first = np.flatnonzero(hops["hop"].to_numpy(np.int64, na_value=-1) == 0)
    last = np.append(first[1:] - 1, len(hops) - 1)
    ts = hops["ts_ns"].to_numpy(np.int64, na_value=-1)
    keep = (last > first) & (ts[first] >= 0) & (ts[last] >= 0)
    first, last = first[keep], last[keep]
    delay = ts[last] - ts[first]
    sender, names = _name_codes(packets, "src_name", hop_rows[first])
    receiver, receivers = _name_codes(packets, "dst_name", hop_rows[last])
    # one label list for both ends
    names = names + [x for x in receivers if x not in names]
    remap = np.array([names.index(x) for x in receivers] + [-1], np.int64)
    receiver = remap[receiver]
    is_pod = np.array([x.startswith("pod:") for x in names] + [False])
    parts = []
    pod = (sender >= 0) & (receiver >= 0) & (is_pod[sender] | is_pod[receiver])
    if pod.any():
        group, labels, _ = _pairs(sender[pod], receiver[pod], names, "{a} → {b}")
        parts.append(Sampled("pod_pair", group, labels, delay[pod], order[first][pod]))
    if nat_flows is not None and len(nat_flows) and "service" in nat_flows \
            and "nat_flow_id" in packets:
        flow = int_column(packets, "nat_flow_id", hop_rows[first])
        served = nat_flows.dropna(subset=["service"])
        scope = dict(zip(served["nat_flow_id"].astype("int64"),
                         served["service"].astype(str) + " → "
                         + served["xlat_dst_name"].astype(str), strict=True))
        if scope:
            labels = list(dict.fromkeys(scope.values()))
            code_of = {flow_id: labels.index(text) for flow_id, text in scope.items()}
            lookup = np.full(int(max(flow.max(initial=0), max(code_of))) + 2, -1, np.int64)
            for flow_id, code in code_of.items():
                lookup[flow_id] = code
            group = lookup[np.where(flow >= 0, flow, -1)]
            chosen = group >= 0
            if chosen.any():
                parts.append(Sampled("service", group[chosen], labels, delay[chosen],
                                     order[first][chosen]))
    return parts
