"""Sighting units and their signatures: what a packet keeps along its path, as integers.

A packet keeps, along its path, what no forwarding step rewrites: the innermost IP header's
version, protocol and (IPv4) identification, TCP sequence/acknowledgment numbers, flags and
payload length, the ICMP type, code and echo sequence, and the first bytes of the innermost
payload (``payload_hash``). MACs, TTL, checksums, NAT-rewritten addresses and ports (and the
ICMP echo identifier), outer tunnel headers are left out, so the decapsulated copy on a pod's
veth, the VXLAN copy on ``eth0`` and the post-NAT copy all get the same *signature*. TCP
leaves the payload hash out: sequence numbers already say which bytes a segment carries, and a
snaplen that cuts some sightings' payload then does not split the packet.

Each sighting is a *unit*: one frame, or all fragments of one datagram at one capture point
(same slot, addresses, protocol and IP id, a repeated offset or a gap starting the next one).
A unit's *slot* is (capture, interface, direction, TTL): a packet is seen at most once per
slot. TTL belongs to the slot because a per-interface pcap has no direction, and a node that
NATs a packet out of the interface it came in by (k8s NodePort) shows it twice in one file:
in, then out with TTL - 1.

A *duplicate* record (the same frame recorded twice at one point: a mirror port, a capture on
a bond and its slave) is the same bytes in the same slot within DUPLICATE_GAP_NS of the first
record: it joins the first record's unit. An IPv4 packet with an id is never sent twice (a
resent one gets a new id); IPv6 bytes (and IPv4 id 0) may be, so there the repeat must also be
seen fewer times at another capture point of the node (or no other point of the node saw
that piece of it). A retransmission is never that close (TCP's timers and a resolver's retries take
milliseconds at least, and a fast retransmit waits for three duplicate ACKs to come back), and
an application that sends the same datagram twice in a row is seen twice everywhere.

A unit's *sender* is the address the packet has on the wire between hosts: the outer source
of a tunnelled copy, else its source (:mod:`~pktkit.analysis.ownership` says which node owns
it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    FEW_VALUES,
    NO_VALUE,
    int_column,
    row_digest,
    run_starts,
    shared_codes,
    string_codes,
)

# Columns the correlation reads, beyond capture/frame/ts_ns/node/interface/direction.
MATCH_COLUMNS = ("ip_version", "proto", "ip_id", "ttl", "tcp_flags", "tcp_seq", "tcp_ack",
                 "icmp_type", "icmp_code", "icmp_id", "icmp_seq", "l4_payload_len",
                 "payload_hash", "frag_offset", "more_fragments")
_TCP = 6
_KIND_PACKET, _KIND_DATAGRAM = 1, 2  # signature kinds: whole packet, fragmented datagram
DUPLICATE_GAP_NS = 10_000  # a second record of the same frame at one point, this close
NEIGHBOUR_NS = 1_000_000  # where a node's other points see a packet around one sighting
# What a copy of a frame repeats beyond its signature and slot (its bytes, as far as the table
# tells them)
_COPY_COLUMNS = ("frag_offset", "more_fragments", "payload_hash", "wire_len", "vni",
                 "outer_sport", "outer_dport")


@dataclass
class Units:
    """One row per sighting unit (a frame, or the fragments of a datagram at one point)."""

    of_row: np.ndarray  # unit index of every packet-table row (int64)
    row: np.ndarray  # the unit's representative row (first fragment when present; int64)
    first_row: np.ndarray  # its earliest row (int64)
    ts: np.ndarray  # capture time of its earliest frame (node clock; then, in correlate(),
    # moved to the reference clock in place)
    node: np.ndarray  # node code (int32)
    slot: np.ndarray  # dense code of (capture, interface, direction, TTL) (int32)
    slots: int  # how many codes
    sig: np.ndarray  # signature digest; -1 for units that match nothing (singletons)
    datagram: np.ndarray  # (version, proto, ip id, addresses) digest of IPv4/fragments, else -1
    fragmented: np.ndarray  # bool: a fragment unit
    sender: np.ndarray  # code of the wire source address in ``addresses`` (int32; -1: none)
    tunnelled: np.ndarray  # bool: the representative frame is tunnelled
    addresses: list[str]  # the sender codes' addresses
    duplicates: int = 0  # rows folded into another record's unit


def find_units(packets: pd.DataFrame, node: np.ndarray, window_ns: int) -> Units:
    # Columns of the whole table are read one or a few at a time and dropped once folded
    # into the digests: this is the widest part of the correlation.
    n = len(packets)
    ts = int_column(packets, "ts_ns")
    version, proto, ip_id = (int_column(packets, c) for c in ("ip_version", "proto", "ip_id"))
    src, _ = string_codes(packets["src"])
    dst, _ = string_codes(packets["dst"])
    matchable = (src >= 0) & (ts != NO_VALUE) & (version > 0)
    if "error" in packets:
        matchable &= packets["error"].isna().to_numpy()
    has_datagram = matchable & (ip_id != NO_VALUE)
    frag_offset = int_column(packets, "frag_offset")
    fragment = matchable & ((frag_offset > 0) | (int_column(packets, "more_fragments") == 1))
    datagram = row_digest([np.full(n, _KIND_DATAGRAM), version, proto, ip_id, src, dst])
    del src, dst

    # TCP leaves the payload hash out: sequence numbers say which bytes it carries
    sig = row_digest(itertools.chain(
        [np.full(n, _KIND_PACKET), version, proto, ip_id],
        (int_column(packets, c) for c in ("tcp_seq", "tcp_ack", "tcp_flags", "icmp_type",
                                     "icmp_code", "icmp_seq", "l4_payload_len")),
        (np.where(proto == _TCP, 0, int_column(packets, "payload_hash")) for _ in (0,))))
    del version, proto, ip_id
    # a fragment's signature is its datagram; rows that match nothing: NO_VALUE
    np.copyto(sig, NO_VALUE, where=~matchable)
    np.copyto(sig, datagram, where=fragment)
    np.copyto(datagram, NO_VALUE, where=~has_datagram)
    del matchable, has_datagram
    slot = row_digest(point_words(packets, "direction", "ttl"), n)
    original = _duplicate_of(packets, slot, sig, ts, node)
    duplicate = original != np.arange(n)
    fragment &= ~duplicate

    # Fragments: one unit per datagram per slot; a repeated offset or a gap starts the next.
    unit_of = np.arange(n, dtype=np.int64)
    fragment_rows = np.flatnonzero(fragment)
    if len(fragment_rows):
        frame = packets["frame"].array.take(fragment_rows).to_numpy()
        order = fragment_rows[np.lexsort((frame, ts[fragment_rows], sig[fragment_rows],
                                          slot[fragment_rows]))]
        keys = (slot[order], sig[order])
        new = run_starts(*keys)
        head, offsets, last_ts = -1, set(), 0
        for i, (row, is_new) in enumerate(zip(order.tolist(), new.tolist(), strict=True)):
            offset, t = int(frag_offset[row]), int(ts[row])
            if is_new or offset in offsets or t - last_ts > window_ns:
                head, offsets = order[i], set()
            offsets.add(offset)
            last_ts = t
            unit_of[row] = head
        del frame, order, keys, new
    unit_of[duplicate] = unit_of[original[duplicate]]  # a duplicate's unit: the original's
    del original
    # Units numbered in row order: a unit's head (its earliest row, sorted by time above)
    # is the one row that is its own unit.
    is_head = (unit_of == np.arange(n)) & ~duplicate
    first_row = np.flatnonzero(is_head)
    of_row = (np.cumsum(is_head) - 1)[unit_of]
    del is_head, unit_of
    # The representative row: the unit's lowest row with fragment offset 0 (the first
    # fragment), else its lowest row. A unit of several rows is all fragments; any other is
    # one row, its own representative.
    rep = first_row.copy()
    if len(fragment_rows):
        unit = of_row[fragment_rows]
        best = fragment_rows[np.lexsort((frag_offset[fragment_rows] > 0, unit))]
        lowest = run_starts(of_row[best])
        rep[of_row[best[lowest]]] = best[lowest]
        del unit, best, lowest
    del frag_offset, fragment_rows
    # per unit from here on; each per-row array is dropped once taken
    ts, sig, fragment = ts[first_row], sig[first_row], fragment[first_row]
    datagram = datagram[rep]
    # dense slot codes (any numbering will do: slots are only told apart)
    slot_code, slot_digests = pd.factorize(slot[first_row], size_hint=FEW_VALUES)
    sender, tunnelled, addresses = wire_sources(packets, rep)
    return Units(
        of_row=of_row, row=rep, first_row=first_row, ts=ts, node=node[first_row],
        slot=slot_code.astype(np.int32), slots=len(slot_digests), sig=sig,
        datagram=datagram, fragmented=fragment, sender=sender, tunnelled=tunnelled,
        addresses=addresses, duplicates=int(duplicate.sum()),
    )


def _duplicate_of(packets: pd.DataFrame, slot: np.ndarray, sig: np.ndarray,
                  ts: np.ndarray, node: np.ndarray) -> np.ndarray:
    """Per row, the row it duplicates (itself when none): the first record of a run of the
    same frame in the same slot, each within DUPLICATE_GAP_NS of the one before, when the
    frame is IPv4 with an id (never sent twice) or the node's other points saw it fewer times
    (:func:`_seen_fewer`)."""
    n = len(sig)
    original = np.arange(n, dtype=np.int64)
    candidates = np.flatnonzero(sig != NO_VALUE)
    if len(candidates) < 2:
        return original
    slot, ts = slot[candidates], ts[candidates]  # per candidate from here on
    piece = row_digest([sig[candidates], int_column(packets, "frag_offset", candidates)])
    copy = row_digest(itertools.chain(
        [slot, piece], (int_column(packets, name, candidates) for name in _COPY_COLUMNS)))
    order = np.lexsort((candidates, ts, copy))
    copy = copy[order]
    same = (copy[1:] == copy[:-1]) & (np.diff(ts[order]) <= DUPLICATE_GAP_NS)
    del copy
    if not same.any():
        return original
    # each run's first record, carried along the run
    start = np.ones(len(order), bool)
    start[1:] = ~same
    head = order[np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))]
    run = np.cumsum(start) - 1
    copies = np.bincount(run)  # per run, its length
    repeated = copies[run] > 1
    order, head, run = order[repeated], head[repeated], run[repeated]
    # an IPv4 header with an id repeats only in a copy of the frame (a resent packet gets a
    # new id); IPv6 and IPv4 id 0 (unconnected UDP) need the other points' word
    ip_id = int_column(packets, "ip_id", candidates[head])
    numbered = (int_column(packets, "ip_version", candidates[head]) == 4) & (ip_id > 0)
    # the others, one decision per run (a run's records share its head)
    runs, first, of_run = np.unique(run[~numbered], return_index=True, return_inverse=True)
    others = np.flatnonzero(~numbered)
    numbered[others] = _seen_fewer(piece, slot, node[candidates], ts, head[others][first],
                                   copies[runs])[of_run]
    original[candidates[order[numbered]]] = candidates[head[numbered]]
    return original


def _seen_fewer(piece: np.ndarray, slot: np.ndarray, node: np.ndarray, ts: np.ndarray,
                head: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """For runs of ``copies`` records at one slot (``head``: each run's first record;
    positions into the per-candidate arrays), whether another slot of the same node saw that
    piece of the packet fewer times around it (within NEIGHBOUR_NS): a packet sent that many
    times would be seen that many times at every point of the node it passed. When none of
    the node's other slots saw it there, nothing tells a repeat from a copy, and a repeat that
    close is the rarer."""
    key = row_digest([piece, node])
    at = np.flatnonzero(np.isin(key, key[head]))
    at = at[np.lexsort((ts[at], key[at]))]
    sorted_key, sorted_ts = key[at], ts[at]
    fewer = np.ones(len(head), bool)
    # the runs are few (duplicate records are): each looks at its neighbourhood in turn
    for i, h in enumerate(head.tolist()):
        lo = np.searchsorted(sorted_key, key[h], "left")
        hi = np.searchsorted(sorted_key, key[h], "right")
        times = sorted_ts[lo:hi]
        near = at[lo + np.searchsorted(times, ts[h] - NEIGHBOUR_NS, "left"):
                  lo + np.searchsorted(times, ts[h] + NEIGHBOUR_NS, "right")]
        others = slot[near][slot[near] != slot[h]]
        if len(others):
            fewer[i] = np.unique(others, return_counts=True)[1].min() < copies[i]
    return fewer


def wire_sources(packets: pd.DataFrame, rows: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """At ``rows``: the code of the address each frame has on the wire between hosts (the
    outer source when tunnelled, else the source; -1: none), whether it is tunnelled, and the
    addresses the codes stand for."""
    if "outer_src" not in packets:
        (inner,), addresses = shared_codes(packets["src"])
        return inner[rows], np.zeros(len(rows), bool), addresses
    (outer, inner), addresses = shared_codes(packets["outer_src"], packets["src"])
    outer_at, inner_at = outer[rows], inner[rows]
    tunnelled = outer_at >= 0
    return np.where(tunnelled, outer_at, inner_at).astype(np.int32), tunnelled, addresses


def point_words(packets: pd.DataFrame, *more: str) -> Iterator[np.ndarray]:
    """For :func:`row_digest`, one at a time: the columns of a capture point (capture,
    interface), then the integer columns ``more``."""
    yield string_codes(packets["capture"])[0]
    yield string_codes(packets["interface"])[0]
    for name in more:
        yield int_column(packets, name)
