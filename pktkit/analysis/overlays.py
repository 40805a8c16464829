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

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_TUNNEL,
    Rows,
    group_key,
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
    encap, names = Rows(packets).encap_codes()
    carriers = np.flatnonzero(tunnel_rows(encap, names))
    carrier = np.full(int(packet_id.max(initial=-1)) + 1, n, np.int64)
    np.minimum.at(carrier, packet_id[carriers], carriers)
    return (carrier[packet_id] if n else np.zeros(0, np.int64)), encap, names


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
    """``flow_id`` per row: one per conversation per overlay (see the module docstring)."""
    (src, dst), _ = shared_codes(packets["src"], packets["dst"])  # one code per address
    has = (src >= 0) & (dst >= 0)
    rows = np.flatnonzero(has)
    if not len(rows):
        return pd.arrays.IntegerArray(np.zeros(len(packets), np.int64), ~has)
    at = rows.copy()  # where each row's conversation is read: a tunnel packet's piece, its
    piece, carrier = _outer_pieces(packets, packet_id, rows)  # first tunnelled copy's
    at[piece] = carrier
    # an endpoint as one integer: the address code and the port (+1, so that NA is 0)
    side_a = (src[at].astype(np.int64) << 17) | (int_column(packets, "sport", at) + 1)
    side_b = (dst[at].astype(np.int64) << 17) | (int_column(packets, "dport", at) + 1)
    del src, dst
    overlay = (overlay_encap.codes[rows].astype(np.int64) << 32) \
        | (overlay_vni.to_numpy(np.int64, na_value=-1)[rows] & 0xFFFFFFFF)
    key = row_digest([overlay, int_column(packets, "proto", at),
                      np.minimum(side_a, side_b), np.maximum(side_a, side_b)])
    del side_a, side_b
    key_code, keys = pd.factorize(key)
    del key
    component = _joined(key_code, packet_id[rows], len(keys))
    number, _ = group_key(component[key_code])  # in order of first appearance
    flow = np.zeros(len(packets), np.int64)
    flow[rows] = number
    return pd.arrays.IntegerArray(flow, ~has)


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
