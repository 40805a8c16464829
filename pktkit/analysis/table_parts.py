"""The tables after correlation from partitions of whole packets: map, merge, apply.

A partition (:class:`PacketPart`) holds every sighting of each packet it touches: the packet
table's rows with ``packet_id``, ``hop`` and ``ts_ref_ns`` set (its index: each row's place
in the whole table, the row-order key), its hops rows in (packet_id, hop) order and, per hops
row, its representative row among the partition's packets. Each table is a map per partition
(a small partial), a merge on the client and, where rows gain a column, an apply per
partition:

- ``overlay_encap``/``overlay_vni``: per packet, so per partition alone
  (:func:`~pktkit.analysis.overlays.overlay_columns`);
- ``flow_id``: :func:`~pktkit.analysis.overlays.conversation_keys` (map: the partition's
  conversation keys, the groups its packets join, their first row),
  :func:`~pktkit.analysis.overlays.merge_conversations`,
  :func:`~pktkit.analysis.overlays.apply_conversations`;
- ``nat_flows``, ``nat_disagreements`` and ``nat_flow_id``:
  :func:`~pktkit.analysis.nat.observe_translations` (map: each (node, pre-NAT tuple,
  post-NAT tuple) the partition's packets show, its earliest time, opener, answer and first
  place in path order), :func:`~pktkit.analysis.nat.merge_translations` (merge: the
  connections, oriented), :func:`~pktkit.analysis.nat.count_connections` (map: each row's
  connection; per connection packets, bytes, first and last time; the conntrack dumps'
  tuples its packets carried untranslated), :func:`~pktkit.analysis.nat.nat_flow_table`
  (merge: the table, numbered, and the dumps' verdicts),
  :func:`~pktkit.analysis.nat.apply_nat_flow_ids` (apply);
- names (``src_name`` ...): per row from the identity map, broadcast
  (:func:`~pktkit.analysis.naming.name_packets` on each partition);
- ``handshakes`` (a TCP handshake's SYN, SYN-ACK and ACK are three packets, so maybe three
  partitions): :func:`~pktkit.analysis.latency.handshake_openings` (map: the SYNs and
  SYN-ACKs), :func:`~pktkit.analysis.latency.pending_handshakes` (merge: each SYN and its
  SYN-ACK), :func:`~pktkit.analysis.latency.handshake_acks` (map: the earliest completing ACK
  of each), :func:`~pktkit.analysis.latency.handshake_table`;
- ``latency``: exact percentiles in two passes (:mod:`~pktkit.analysis.percentiles`):
  :func:`~pktkit.analysis.latency.latency_samples` → ``count_samples`` per partition,
  :func:`~pktkit.analysis.latency.latency_bins`, ``values_in_bins`` per partition,
  :func:`~pktkit.analysis.latency.latency_table`.

The report's tables and plots from the same partitions are in :mod:`pktkit.report.tables`
(``report_partial``, ``report_tables``) and :mod:`pktkit.report.plot` (``cdf_samples``,
``cdf_ranks``, ``cdf_curves``; ``throughput_partial``, ``throughput_window``).

:func:`pktkit.analysis.pipeline.analyze` runs the same functions on one partition (the whole
table). Every partial's size is bounded by the conversations, NAT connections, scopes and
occupied histogram bins it describes, never by its rows.

Orders: what one table numbers or lists in order of appearance takes that order from each
row's index (conversations: their first row; handshakes: the SYN's row) and from
``packet_id`` (latency scopes: their first sample's (packet_id, hop); NAT connections: their
first translation's packet_id and place along its path, which decides only ties: nat_flow_id
is numbered by first time and tuple). A run whose packet ids are numbered otherwise than one
process numbers them gets the same tables with latency scopes listed, and the rare ties
between NAT connections broken, in its own numbering's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.latency import (
    handshake_acks,
    handshake_openings,
    handshake_samples,
    handshake_table,
    latency_bins,
    latency_samples,
    latency_table,
    pending_handshakes,
)
from pktkit.analysis.nat import (
    NatFlows,
    apply_nat_flow_ids,
    count_connections,
    dump_tuples,
    merge_translations,
    nat_flow_table,
    observe_translations,
)
from pktkit.analysis.overlays import (
    apply_conversations,
    conversation_keys,
    merge_conversations,
    overlay_columns,
)
from pktkit.analysis.percentiles import count_samples, values_in_bins


@dataclass
class PacketPart:
    """One partition of whole packets (module docstring)."""

    packets: pd.DataFrame
    hops: pd.DataFrame
    hop_rows: np.ndarray


def add_overlays_and_flows(parts: Sequence[PacketPart]) -> pd.DataFrame:
    """Each partition's packets gain ``overlay_encap`` and ``overlay_vni`` after ``vni``, and
    ``flow_id`` (replaced): one conversation numbering over all partitions. Returns the
    merged conversations (their keys and ids)."""
    keys = []
    for part in parts:
        packets = part.packets
        packet_id = packets["packet_id"].to_numpy(np.int64)
        encap, vni = overlay_columns(packets, packet_id)
        keys.append(conversation_keys(packets, packet_id, encap, vni))
        for name, column in (("overlay_encap", encap), ("overlay_vni", vni)):
            if name in packets:
                packets[name] = column
            else:
                after = "vni" if name == "overlay_encap" else "overlay_encap"
                packets.insert(packets.columns.get_loc(after) + 1, name, column)
    conversations = merge_conversations([k.partial for k in keys])
    for part, k in zip(parts, keys, strict=True):
        part.packets["flow_id"] = apply_conversations(k, conversations)
    return conversations


def latency_in_parts(parts: Sequence[PacketPart], handshakes: pd.DataFrame | None,
                     nat_flows: pd.DataFrame | None) -> pd.DataFrame:
    """The latency table over all partitions, exact (two passes); ``handshakes`` and
    ``nat_flows``: the merged tables (the handshakes' samples are taken on the client)."""
    samples = [latency_samples(p.packets, p.hops, p.hop_rows, nat_flows) for p in parts]
    samples.append(handshake_samples(handshakes))
    wanted = latency_bins([count_samples(s) for s in samples])
    return latency_table(wanted, [values_in_bins(s, wanted) for s in samples])


def handshakes_in_parts(parts: Sequence[PacketPart]) -> pd.DataFrame:
    """The handshakes table over all partitions (their packets with ``flow_id``)."""
    pending = pending_handshakes([handshake_openings(p.packets) for p in parts])
    return handshake_table(pending, [handshake_acks(p.packets, pending) for p in parts])


def nat_in_parts(parts: Sequence[PacketPart], dumps: pd.DataFrame | None) -> NatFlows:
    """The NAT flows over all partitions; each partition's packets gain ``nat_flow_id``.
    ``dumps``: the conntrack dumps as one table (:func:`~pktkit.analysis.conntrack
    .read_conntrack`), or None. ``packet_nat_flow_id`` of the result is empty: the ids are
    the partitions' own column."""
    seen = [observe_translations(p.packets) for p in parts]
    connections = merge_translations([s.partial for s in seen])
    check = dump_tuples(connections, dumps)
    counted = [count_connections(s, connections, check) for s in seen]
    del seen
    table = nat_flow_table([c.partial for c in counted], connections, dumps)
    for part, c in zip(parts, counted, strict=True):
        part.packets["nat_flow_id"] = apply_nat_flow_ids(c, table)
    return NatFlows(table.flows, pd.Series([], dtype="Int64"), table.disagreements)
