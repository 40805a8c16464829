"""Attribution through every sighting: each packet's overlay, and one flow per conversation.

A decapsulated copy (a pod's veth, the bridge, the tunnel device) carries no VNI of its own,
so two tenants with identical inner addresses look alike there. The correlation ties it to
the packet's other sightings (``packet_id``), among them the encapsulated copy on the
underlay: its tunnel is the overlay of every sighting of the packet. So is it of a non-first
piece of a fragmented tunnel packet (no tunnel header of its own: the correlation ties it to
its first piece, :mod:`~pktkit.analysis.fragments`); its own header is the outer one, so its
conversation is its packet's (the tunnelled copy's inner endpoints), not the VTEPs'.

Columns the packet table gains (or, for ``flow_id``, changes) in :func:`pktkit.analyze`:

==============  ========  ================================================================
overlay_encap   category  the tunnel chain of the packet's encapsulated copy (its first
                          tunnelled sighting), on every sighting of it; ``none`` for a
                          packet never seen tunnelled. ``encap`` stays the frame's own
overlay_vni     UInt32    that copy's VNI / VSID / key (NA: none); ``vni`` stays the
                          frame's own
flow_id         Int64     one id per conversation per overlay, across all its sightings and
                          files: the key (overlay_encap, overlay_vni, protocol, both
                          endpoints sorted) of each sighting, and keys that one packet shows
                          on either side of a NAT joined; numbered in order of first
                          appearance. NA where src/dst are NA
==============  ========  ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    int_column,
    row_digest,
    shared_codes,
    tunnel_rows,
)


def _carrier_rows(packets: pd.DataFrame, packet_id: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per row, its packet's first tunnelled row (``len(packets)``: none); the ``encap``
    codes and names."""
    n = len(packets)
    packet_id = dense_ids(packet_id)
    encap, names = Rows(packets).encap_codes()
    carriers = np.flatnonzero(tunnel_rows(encap, names))
    carrier = np.full(int(packet_id.max(initial=-1)) + 1, n, np.int64)
    np.minimum.at(carrier, packet_id[carriers], carriers)
    return (carrier[packet_id] if n else np.zeros(0, np.int64)), encap, names


def dense_ids(packet_id: np.ndarray) -> np.ndarray:
    """Packet ids as they are when dense (one table's: 0 .. n), else numbered 0, 1, ... in
    their order (a partition's, from a global numbering): arrays indexed by them stay the
    partition's size."""
    if len(packet_id) and packet_id.min() >= 0 and packet_id.max() >= 2 * len(packet_id):
        return np.unique(packet_id, return_inverse=True)[1].astype(np.int64)
    return packet_id


def overlay_columns(packets: pd.DataFrame,
                    packet_id: np.ndarray) -> tuple[pd.Categorical, pd.arrays.IntegerArray]:
    """``overlay_encap`` and ``overlay_vni`` per row (see the module docstring)."""
    n = len(packets)
    row, encap, names = _carrier_rows(packets, packet_id)
    carried = row < n
    none = names.index(NO_TUNNEL) if NO_TUNNEL in names else len(names)
    labels = names if NO_TUNNEL in names else [*names, NO_TUNNEL]
    code = np.full(n, none, np.int64)
    code[carried] = encap[row[carried]]
    vni = int_column(packets, "vni")
    overlay_vni = np.full(n, -1, np.int64)
    overlay_vni[carried] = vni[row[carried]]
    return (pd.Categorical.from_codes(code, categories=labels),
            pd.arrays.IntegerArray(np.maximum(overlay_vni, 0).astype(np.uint32),
                                   overlay_vni < 0))


def conversation_ids(packets: pd.DataFrame, packet_id: np.ndarray,
                     overlay_encap: pd.Categorical,
                     overlay_vni: pd.arrays.IntegerArray) -> pd.arrays.IntegerArray:
    """``flow_id`` per row: one per conversation per overlay (see the module docstring); the
    map, merge and apply below on one partition."""
    keys = conversation_keys(packets, packet_id, overlay_encap, overlay_vni,
                             order=np.arange(len(packets)))
    return apply_conversations(keys, merge_conversations([keys.partial]))


@dataclass
class ConversationKeys:
    """The conversations of one partition of whole packets (the map).

    ``partial`` crosses to the client: one row per distinct key of the partition
    (``CONVERSATION_KEY`` columns), its ``group`` (keys the partition's packets join, through
    a NAT: one group) and ``first`` (the smallest row-order key of its rows: the partition's
    index). Its size is the partition's distinct conversations, not its rows. ``key_code``
    (per row, −1: no address) and ``has`` stay with the partition for :func:`apply_conversations`.
    """

    partial: pd.DataFrame
    key_code: np.ndarray
    has: np.ndarray


CONVERSATION_KEY = ["overlay_encap", "overlay_vni", "proto", "a_addr", "a_port", "b_addr",
                    "b_port"]


def conversation_keys(packets: pd.DataFrame, packet_id: np.ndarray,
                      overlay_encap: pd.Categorical,
                      overlay_vni: pd.arrays.IntegerArray, *,
                      order: np.ndarray | None = None) -> ConversationKeys:
    """The conversation key of each row of a partition of whole packets, and its partial.
    ``order``: each row's place in the whole table (default: the partition's index, which
    keeps the single table's row numbers); conversations are numbered in that order."""
    packet_id = dense_ids(packet_id)
    (src, dst), addresses = shared_codes(packets["src"], packets["dst"])
    has = (src >= 0) & (dst >= 0)
    rows = np.flatnonzero(has)
    key_code = np.full(len(packets), -1, np.int64)
    if not len(rows):
        return ConversationKeys(pd.DataFrame({**{c: [] for c in CONVERSATION_KEY},
                                              "group": [], "first": []}), key_code, has)
    at = rows.copy()  # where each row's conversation is read: a tunnel packet's piece, its
    piece, carrier = _outer_pieces(packets, packet_id, rows)  # first tunnelled copy's
    at[piece] = carrier
    # an endpoint as one integer: the address code and the port (+1, so that NA is 0)
    side_a = (src[at].astype(np.int64) << 17) | (int_column(packets, "sport", at) + 1)
    side_b = (dst[at].astype(np.int64) << 17) | (int_column(packets, "dport", at) + 1)
    del src, dst
    vni = overlay_vni.to_numpy(np.int64, na_value=-1)[rows]
    overlay = (overlay_encap.codes[rows].astype(np.int64) << 32) | (vni & 0xFFFFFFFF)
    proto = int_column(packets, "proto", at)
    low, high = np.minimum(side_a, side_b), np.maximum(side_a, side_b)
    del side_a, side_b
    key = row_digest([overlay, proto, low, high])
    code, keys = pd.factorize(key)
    del key
    key_code[rows] = code
    group = _joined(code, packet_id[rows], len(keys))
    # per key: its first row (the row-order key of the partition's index is the smallest)
    order = (packets.index.to_numpy(np.int64) if order is None else order)[rows]
    first = np.full(len(keys), np.iinfo(np.int64).max)
    np.minimum.at(first, code, order)
    one = np.full(len(keys), len(rows), np.int64)  # a row of each key, to read it from
    np.minimum.at(one, code, np.arange(len(rows)))
    names = np.array(addresses, dtype=object)
    encaps = np.array(overlay_encap.categories, dtype=object)
    ends = [(names[side >> 17], (side & 0x1FFFF) - 1) for side in (low[one], high[one])]
    # the ends in text order: the same key in every partition, whatever its address codes
    (a_addr, a_port), (b_addr, b_port) = ends
    swap = (a_addr > b_addr) | ((a_addr == b_addr) & (a_port > b_port))
    a_addr, b_addr = np.where(swap, b_addr, a_addr), np.where(swap, a_addr, b_addr)
    a_port, b_port = np.where(swap, b_port, a_port), np.where(swap, a_port, b_port)
    partial = pd.DataFrame({"overlay_encap": encaps[overlay_encap.codes[rows][one]],
                            "overlay_vni": vni[one], "proto": proto[one],
                            "a_addr": a_addr, "a_port": a_port, "b_addr": b_addr,
                            "b_port": b_port, "group": group, "first": first})
    return ConversationKeys(partial, key_code, has)


def merge_conversations(partials: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The conversations of all partitions (the merge): each distinct key
    (``CONVERSATION_KEY``) and its ``flow_id``. Keys a group of any partition joins are one
    conversation (the connected components over all partitions); conversations are numbered
    in order of their first row. Its size: the conversations' keys."""
    frames = [p.assign(part=i) for i, p in enumerate(partials) if len(p)]
    if not frames:
        return pd.DataFrame({**{c: [] for c in CONVERSATION_KEY}, "flow_id": []})
    every = pd.concat(frames, ignore_index=True)
    key = every.groupby(CONVERSATION_KEY, sort=False, dropna=False).ngroup().to_numpy()
    edge = every.groupby(["part", "group"], sort=False).ngroup().to_numpy()
    count = int(key.max()) + 1
    label = _joined(key, edge, count)
    first = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(first, label[key], every["first"].to_numpy(np.int64))
    components = np.flatnonzero(first < np.iinfo(np.int64).max)
    number = np.zeros(count, np.int64)
    number[components[np.argsort(first[components], kind="stable")]] = \
        np.arange(len(components))
    # ngroup numbers the keys in order of appearance, as drop_duplicates keeps them
    keys = every.drop_duplicates(CONVERSATION_KEY)[CONVERSATION_KEY].reset_index(drop=True)
    return keys.assign(flow_id=number[label])


def apply_conversations(keys: ConversationKeys,
                        conversations: pd.DataFrame) -> pd.arrays.IntegerArray:
    """``flow_id`` per row of the partition (the apply), from :func:`merge_conversations`."""
    flow = np.zeros(len(keys.key_code), np.int64)
    if len(keys.partial):
        found = keys.partial[CONVERSATION_KEY].merge(conversations, on=CONVERSATION_KEY,
                                                     how="left")
        per_key = found["flow_id"].to_numpy(np.int64)
        flow[keys.has] = per_key[keys.key_code[keys.has]]
    return pd.arrays.IntegerArray(flow, ~keys.has)


def _outer_pieces(packets: pd.DataFrame, packet_id: np.ndarray,
                  rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of ``rows``, which are non-first pieces of a fragmented tunnel packet (untunnelled, a
    fragment offset, the outer addresses of their packet's first tunnelled copy as their
    own), and that copy's row for each of them."""
    none = np.zeros(len(rows), bool), np.zeros(0, np.int64)
    if "outer_src" not in packets or "frag_offset" not in packets:
        return none
    carrier, _, _ = _carrier_rows(packets, packet_id)
    carrier = carrier[rows]
    candidate = (carrier < len(packets)) & (carrier != rows) \
        & (int_column(packets, "frag_offset", rows) > 0)
    if not candidate.any():
        return none
    at, of = rows[candidate], carrier[candidate]
    (src, dst, outer_src, outer_dst), _ = shared_codes(
        *(packets[name].take(index).reset_index(drop=True)
          for name, index in (("src", at), ("dst", at), ("outer_src", of), ("outer_dst", of))))
    own_outer = (src == outer_src) & (dst == outer_dst) & (src >= 0)
    piece = np.zeros(len(rows), bool)
    piece[np.flatnonzero(candidate)[own_outer]] = True
    return piece, of[own_outer]


def _joined(key: np.ndarray, packet: np.ndarray, keys: int) -> np.ndarray:
    """Per key, the smallest key it is joined to through shared packets (the connected
    components of the key–packet graph, by label propagation: a few rounds, as a NAT joins
    two keys and a chain of them is rare)."""
    label = np.arange(keys, dtype=np.int64)
    packets = int(packet.max(initial=-1)) + 1
    while True:
        per_packet = np.full(packets, keys, np.int64)
        np.minimum.at(per_packet, packet, label[key])
        joined = label.copy()
        np.minimum.at(joined, key, per_packet[packet])
        joined = joined[joined]  # jump along chains of labels
        if np.array_equal(joined, label):
            return label
        label = joined
