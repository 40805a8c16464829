"""Fragments at one capture point: a datagram's pieces as one sighting unit, and what it is whole.

A datagram cut into fragments is seen at a point as several frames; the correlation counts them
as one sighting (*unit*). Three things are decided here, each on the frames of one capture file
(a slot includes its file), so this is file-local work that needs no other file's rows:

- **Units** (:func:`fragment_units`): the fragments of one datagram at one slot share the
  innermost header's version, protocol, IP id and addresses (RFC 791's reassembly key); a
  repeated offset, or a gap beyond the window, starts the next datagram of that key.
- **The datagram as one packet** (:func:`whole_datagrams`): a unit that holds its first
  fragment, its last and no gap is the packet it was cut from: the first fragment's headers
  with the payload length of all pieces. Its signature is then the one the whole packet has,
  at the points that see it whole (before the node that fragments it, or where conntrack
  reassembled it: docker0 behind a masquerade) and at the points that see it cut differently
  (conntrack refragments at the original boundaries, but another MTU cuts elsewhere); NAT,
  which rewrites the addresses, and TTL leave it alone. IPv4 keeps its id through
  reassembly; a whole IPv6 packet has no Fragment header, so an IPv6 datagram's id is left out.
  A unit missing pieces (a lost fragment, a capture that began mid-datagram) keeps its
  datagram key: Linux only forwards a datagram through NAT after reassembling it, so such a
  unit's addresses are the ones the other pieces had at its node
  (:func:`pktkit.analysis.packets.join_fragments` ties it to the packet before it).
- **Pieces of a tunnel packet** (:func:`tie_outer_pieces`): an outer (tunnel) packet too big
  for the underlay is fragmented after encapsulation; its non-first pieces carry no tunnel
  header (their row shows the outer IP header: the VTEPs' addresses, the outer IP id) and
  form a unit without a first fragment. The first piece carries the tunnel header and the
  inner packet, and its ``outer_ip_id``: the unit joins the first piece's unit at the same
  capture point (file, interface, direction: not the slot, whose TTL is the inner packet's
  for the first piece and the outer header's for the others) with the same outer addresses
  and id, nearest in time within the window (the outer
  protocol is not in the table; Linux draws IP ids per source, destination and protocol, so
  two protocols' fragmented datagrams with one id at one point within the window are the
  rare look-alike this leaves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    NO_VALUE,
    int_column,
    row_digest,
    run_starts,
    shared_codes,
    string_codes,
)

_IPV6 = 6


def fragment_units(rows: np.ndarray, slot: np.ndarray, key: np.ndarray, ts: np.ndarray,
                   frame: np.ndarray, frag_offset: np.ndarray, unit_of: np.ndarray,
                   window_ns: int) -> None:
    """Set ``unit_of`` (per table row) of the fragment ``rows`` to their unit's head: its
    earliest row. ``key``: each row's datagram key (per table row, like ``slot``, ``ts`` and
    ``frag_offset``); ``frame``: the rows' frame numbers (tie-breaker)."""
    order = rows[np.lexsort((frame, ts[rows], key[rows], slot[rows]))]
    new = run_starts(slot[order], key[order])
    head, offsets, last_ts = -1, set(), 0
    for i, (row, is_new) in enumerate(zip(order.tolist(), new.tolist(), strict=True)):
        offset, t = int(frag_offset[row]), int(ts[row])
        if is_new or offset in offsets or t - last_ts > window_ns:
            head, offsets = order[i], set()
        offsets.add(offset)
        last_ts = t
        unit_of[row] = head


@dataclass
class WholeDatagrams:
    """Fragment units that hold a whole datagram, and what that datagram shows as one packet
    (one element per such unit)."""

    head: np.ndarray  # the unit's head row
    first: np.ndarray  # its first fragment's row: the headers of the packet
    ip_id: np.ndarray  # the packet's IP id (NO_VALUE for IPv6)
    l4_payload_len: np.ndarray  # the packet's L4 payload: the first fragment's and the rest


def whole_datagrams(packets: pd.DataFrame, rows: np.ndarray, head: np.ndarray,
                    frag_offset: np.ndarray) -> WholeDatagrams:
    """Of the fragment ``rows`` (``head``: each one's unit), the units holding a whole
    datagram: the first fragment (offset 0), the last (MF clear), and the others without a gap
    (their payloads sum to the span from the lowest non-zero offset to the end)."""
    heads, unit = np.unique(head, return_inverse=True)
    k = len(heads)
    offset = frag_offset[rows]
    length = int_column(packets, "l4_payload_len", rows)
    more = int_column(packets, "more_fragments", rows)
    first = np.flatnonzero(offset == 0)
    rest = np.flatnonzero(offset > 0)
    first_row = np.full(k, -1, np.int64)
    first_row[unit[first]] = rows[first]  # one offset 0 per unit (a repeat starts the next)
    last_seen = np.zeros(k, bool)
    last_seen[unit[more == 0]] = True
    unknown = np.zeros(k, bool)  # a piece without a length: nothing to add up
    unknown[unit[length < 0]] = True
    payload = np.zeros(k, np.int64)
    np.add.at(payload, unit[rest], length[rest])
    end = np.full(k, -1, np.int64)
    np.maximum.at(end, unit[rest], offset[rest] + length[rest])
    start = np.full(k, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(start, unit[rest], offset[rest])
    whole = (first_row >= 0) & last_seen & ~unknown & (payload == end - start)
    at = first_row[whole]
    ip_id = int_column(packets, "ip_id", at).copy()
    ip_id[int_column(packets, "ip_version", at) == _IPV6] = NO_VALUE
    return WholeDatagrams(head=heads[whole], first=at, ip_id=ip_id,
                          l4_payload_len=int_column(packets, "l4_payload_len", at)
                          + payload[whole])


def tie_outer_pieces(packets: pd.DataFrame, unit_of: np.ndarray, rows: np.ndarray,
                     frag_offset: np.ndarray, ts: np.ndarray, usable: np.ndarray,
                     window_ns: int) -> np.ndarray:
    """Move the fragment units without a first fragment (``rows``: the fragment rows,
    ``unit_of`` their heads) that are pieces of a tunnel packet into their first piece's unit
    (see the module docstring); ``usable``: rows that may be a first piece (not a duplicate
    record). Returns the first pieces that took pieces in (rows, ascending)."""
    none = np.zeros(0, np.int64)
    if "outer_ip_id" not in packets or not len(rows):
        return none
    head = unit_of[rows]
    headless = np.setdiff1d(head, head[frag_offset[rows] == 0])
    outer_id = int_column(packets, "outer_ip_id")
    carrying = usable & (outer_id != NO_VALUE)
    if "fragment" in packets:  # the first piece: some header of it is a fragment
        carrying &= int_column(packets, "fragment") == 1
    carriers = np.flatnonzero(carrying)
    if not len(headless) or not len(carriers):
        return none
    take = lambda name, at: packets[name].take(at).reset_index(drop=True)  # noqa: E731
    both = np.r_[headless, carriers]
    point = row_digest([string_codes(take("capture", both))[0],
                        string_codes(take("interface", both))[0],
                        int_column(packets, "direction", both)])
    (src, dst, outer_src, outer_dst), _ = shared_codes(
        take("src", headless), take("dst", headless), take("outer_src", carriers),
        take("outer_dst", carriers))
    pieces = pd.DataFrame({
        "ts": ts[headless], "head": headless,
        "key": row_digest([point[:len(headless)], src, dst,
                           int_column(packets, "ip_id", headless)])})
    firsts = pd.DataFrame({
        "ts": ts[carriers], "carrier": carriers,
        "key": row_digest([point[len(headless):], outer_src, outer_dst, outer_id[carriers]])})
    tied = pd.merge_asof(pieces.sort_values("ts"), firsts.sort_values("ts"), on="ts",
                         by="key", direction="nearest", tolerance=window_ns)
    tied = tied.dropna(subset=["carrier"])
    if tied.empty:
        return none
    moved = tied["head"].to_numpy(np.int64)
    carrier = tied["carrier"].to_numpy(np.int64)
    order = np.argsort(moved)
    moved, carrier = moved[order], carrier[order]
    at = np.searchsorted(moved, head)
    hit = (at < len(moved)) & (moved[np.minimum(at, len(moved) - 1)] == head)
    unit_of[rows[hit]] = unit_of[carrier[at[hit]]]
    return np.unique(carrier)
