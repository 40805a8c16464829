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
(same slot, addresses, protocol and IP id, a repeated offset or a gap starting the next one),
with, for a fragmented tunnel packet, its pieces that carry no tunnel header
(:mod:`~pktkit.analysis.fragments`). A unit of fragments holding the whole datagram has the
signature of the packet they were cut from (its first fragment's fields, the payload length of
all of them): the same as the whole copy's where a node saw it whole, on either side of a NAT;
one missing pieces has its datagram key (version, protocol, IP id, addresses).
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

from pktkit.analysis.fragments import fragment_units, tie_outer_pieces, whole_datagrams
from pktkit.analysis.grouping import DEFAULT_WINDOW_NS
from pktkit.analysis.rows import (
    FEW_VALUES,
    NO_VALUE,
    address_words,
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
_KIND_ID, _KIND_SINGLE = 3, 4  # partition key kinds: IPv4 (version, proto, id); a lone frame
DUPLICATE_GAP_NS = 10_000  # a second record of the same frame at one point, this close
NEIGHBOUR_NS = 1_000_000  # where a node's other points see a packet around one sighting
NEIGHBOURS = 16  # records back in a file where a duplicate's original is looked for
# What a copy of a frame repeats beyond its signature and slot (its bytes, as far as the table
# tells them)
_COPY_COLUMNS = ("more_fragments", "payload_hash", "wire_len", "outer_sport", "outer_dport")


@dataclass
class Units:
    """One row per sighting unit (a frame, or the fragments of a datagram at one point)."""

    of_row: np.ndarray  # unit index of every packet-table row (int64)
    row: np.ndarray  # the unit's representative row (first fragment when present, a tunnel
    # packet's first piece; int64)
    first_row: np.ndarray  # its earliest row (int64)
    ts: np.ndarray  # capture time of its earliest frame (node clock; then, in correlate(),
    # moved to the reference clock in place)
    node: np.ndarray  # node code (int32)
    slot: np.ndarray  # dense code of (capture, interface, direction, TTL) (int32)
    slots: int  # how many codes
    sig: np.ndarray  # signature digest; -1 for units that match nothing (singletons)
    datagram: np.ndarray  # (version, proto, ip id, addresses) digest of IPv4/fragments, else -1
    partial: np.ndarray  # bool: a fragment unit missing pieces (its signature: ``datagram``)
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
    src, src_labels = string_codes(packets["src"])
    dst, dst_labels = string_codes(packets["dst"])
    matchable = (src >= 0) & (ts != NO_VALUE) & (version > 0)
    if "error" in packets:
        matchable &= packets["error"].isna().to_numpy()
    has_datagram = matchable & (ip_id != NO_VALUE)
    frag_offset = int_column(packets, "frag_offset")
    fragment = matchable & ((frag_offset > 0) | (int_column(packets, "more_fragments") == 1))
    # the addresses as words of their own text, not codes of this table: a datagram key
    # (and the order of keys) is then the same in any partition of the rows
    datagram = row_digest([np.full(n, _KIND_DATAGRAM), version, proto, ip_id,
                           address_words(src, src_labels), address_words(dst, dst_labels)])
    del dst, dst_labels
    sig = _signatures(packets, None, version, proto, ip_id)
    del version, proto, ip_id
    # a fragment row's signature is its datagram key (its unit's: set below); rows that
    # match nothing: NO_VALUE
    np.copyto(sig, NO_VALUE, where=~matchable)
    np.copyto(sig, datagram, where=fragment)
    np.copyto(datagram, NO_VALUE, where=~has_datagram)
    del matchable, has_datagram
    slot = row_digest(point_words(packets, "direction", "ttl"), n)
    original = _duplicate_of(packets, slot, sig, frag_offset, ts, node)
    duplicate = original != np.arange(n)
    fragment &= ~duplicate

    # Fragments: one unit per datagram per slot (a repeated offset or a gap starts the next);
    # a whole datagram's unit takes the signature of the packet it was cut from (at its head,
    # whose signature the unit's is); a tunnel packet's pieces join their first piece's unit.
    unit_of = np.arange(n, dtype=np.int64)
    fragment_rows = np.flatnonzero(fragment)
    partial = fragment.copy()
    carriers = np.zeros(0, np.int64)
    if len(fragment_rows):
        fragment_units(fragment_rows, slot, sig, ts,
                       packets["frame"].array.take(fragment_rows).to_numpy(), frag_offset,
                       unit_of, window_ns)
        whole = whole_datagrams(packets, fragment_rows, unit_of[fragment_rows], frag_offset)
        sig[whole.head] = _signatures(packets, whole.first, None, None, whole.ip_id,
                                      whole.l4_payload_len)
        partial[whole.head] = False
        del whole
        carriers = tie_outer_pieces(packets, unit_of, fragment_rows, frag_offset, ts,
                                    ~duplicate, window_ns)
    unit_of[duplicate] = unit_of[original[duplicate]]  # a duplicate's unit: the original's
    del original
    # Units numbered in row order: a unit's head (its earliest row, sorted by time above)
    # is the one row that is its own unit.
    is_head = (unit_of == np.arange(n)) & ~duplicate
    first_row = np.flatnonzero(is_head)
    of_row = (np.cumsum(is_head) - 1)[unit_of]
    del is_head, unit_of
    # The representative row: the unit's lowest row with fragment offset 0 (the first
    # fragment), else its lowest row; a tunnel packet's first piece, which holds the tunnel
    # header and the inner packet, when its pieces joined it. A unit of several rows is all
    # fragments but for such a first piece; any other is one row, its own representative.
    rep = first_row.copy()
    if len(fragment_rows):
        unit = of_row[fragment_rows]
        best = fragment_rows[np.lexsort((frag_offset[fragment_rows] > 0, unit))]
        lowest = run_starts(of_row[best])
        rep[of_row[best[lowest]]] = best[lowest]
        del unit, best, lowest
        whole_first = carriers[~fragment[carriers]]  # (one inner fragment keeps its first)
        rep[of_row[whole_first]] = whole_first
    del frag_offset, fragment_rows, fragment, carriers
    # per unit from here on; each per-row array is dropped once taken
    ts, sig, partial = ts[first_row], sig[first_row], partial[first_row]
    datagram = datagram[rep]
    # dense slot codes (any numbering will do: slots are only told apart)
    slot_code, slot_digests = pd.factorize(slot[first_row], size_hint=FEW_VALUES)
    sender, tunnelled, addresses = wire_sources(packets, rep, (src, src_labels))
    del src, src_labels
    return Units(
        of_row=of_row, row=rep, first_row=first_row, ts=ts, node=node[first_row],
        slot=slot_code.astype(np.int32), slots=len(slot_digests), sig=sig,
        datagram=datagram, partial=partial, sender=sender, tunnelled=tunnelled,
        addresses=addresses, duplicates=int(duplicate.sum()),
    )


def _signatures(packets: pd.DataFrame, rows: np.ndarray | None, version: np.ndarray | None,
                proto: np.ndarray | None, ip_id: np.ndarray,
                l4_payload_len: np.ndarray | None = None) -> np.ndarray:
    """The signatures of the packets at ``rows`` (None: every row): the table's fields there,
    but ``version``, ``proto``, ``ip_id`` and ``l4_payload_len`` where given (a datagram's
    length is its fragments' together). TCP leaves the payload hash out: sequence numbers say
    which bytes it carries."""
    if version is None:
        version = int_column(packets, "ip_version", rows)
    if proto is None:
        proto = int_column(packets, "proto", rows)
    return row_digest(itertools.chain(
        [np.full(len(ip_id), _KIND_PACKET), version, proto, ip_id],
        (int_column(packets, c, rows) for c in ("tcp_seq", "tcp_ack", "tcp_flags", "icmp_type",
                                                 "icmp_code", "icmp_seq")),
        (int_column(packets, "l4_payload_len", rows) if l4_payload_len is None
         else l4_payload_len for _ in (0,)),
        (np.where(proto == _TCP, 0, int_column(packets, "payload_hash", rows)) for _ in (0,))))


def _duplicate_of(packets: pd.DataFrame, slot: np.ndarray, sig: np.ndarray,
                  frag_offset: np.ndarray, ts: np.ndarray, node: np.ndarray) -> np.ndarray:
    """Per row, the row it duplicates (itself when none): the first record of a run of the
    same frame in the same slot, each within DUPLICATE_GAP_NS of the one before, when the
    frame is IPv4 with an id (never sent twice) or the node's other points saw it fewer times
    (:func:`_seen_fewer`).

    A capture file is in time order and a copy follows its original within µs, so each
    record is compared with the NEIGHBOURS records before it in the table (its file's: the
    slot includes the file); no sort of the whole table. Files that go back in time (copies
    concatenated) are sorted by slot and time first."""
    n = len(sig)
    original = np.arange(n, dtype=np.int64)
    capture = string_codes(packets["capture"])[0]
    back = (np.diff(ts) < 0) & (capture[1:] == capture[:-1])
    order = np.lexsort((np.arange(n), ts, slot)) if back.any() else None
    del capture, back
    # records in a file's time order (the table's, or the sort's), keyed by what a copy
    # repeats (a datagram's fragments are no copies; two tenants' frames differ in their
    # VNI); rows that match nothing: a key of their own each
    key = row_digest([sig, slot, frag_offset, int_column(packets, "vni")])
    np.copyto(key, np.arange(n), where=sig == NO_VALUE)  # (a digest is almost never that)
    o_key, o_ts = (key, ts) if order is None else (key[order], ts[order])
    del key
    # each record's nearest earlier one with its key, within the gap
    matched = np.zeros(n, bool)
    earlier_parts, later_parts = [], []
    # in a file's time order, NEIGHBOURS records back are NEIGHBOURS frames back: said so,
    # the same pairs are found in any subset of the file's rows holding each key's records
    # (a partition of the table by partition_keys)
    o_frame = int_column(packets, "frame") if order is None else None
    for k in range(1, min(NEIGHBOURS, n - 1) + 1):
        same = o_key[k:] == o_key[:-k]
        same &= o_ts[k:] - o_ts[:-k] <= DUPLICATE_GAP_NS
        if o_frame is not None:
            same &= o_frame[k:] - o_frame[:-k] <= NEIGHBOURS
        same &= ~matched[k:]
        matched[k:] |= same
        at = np.flatnonzero(same)
        earlier_parts.append(at)
        later_parts.append(at + k)
    del o_key, o_ts, o_frame, matched
    if not earlier_parts or not sum(len(part) for part in earlier_parts):
        return original
    earlier, later = np.concatenate(earlier_parts), np.concatenate(later_parts)
    if order is not None:  # positions back to rows, the first record first
        earlier, later = order[earlier], order[later]
        earlier, later = np.minimum(earlier, later), np.maximum(earlier, later)
    for name in _COPY_COLUMNS:  # the same bytes, as far as the table tells
        rows = np.r_[earlier, later]
        values = int_column(packets, name, rows)
        equal = values[:len(earlier)] == values[len(earlier):]
        earlier, later = earlier[equal], later[equal]
    if not len(later):
        return original
    # each record's nearest earlier copy; runs followed back to their first record (on the
    # records in pairs only, numbered 0.. in row order)
    rows = np.unique(np.r_[earlier, later])
    earlier, later = np.searchsorted(rows, earlier), np.searchsorted(rows, later)
    order = np.lexsort((earlier, later))
    last = np.r_[later[order][1:] != later[order][:-1], True]
    parent = np.arange(len(rows))
    parent[later[order][last]] = earlier[order][last]
    head = parent[parent]
    while not np.array_equal(head, parent):
        parent, head = head, head[head]
    in_run = np.flatnonzero(head != np.arange(len(rows)))
    heads, of_run, copies = np.unique(head[in_run], return_inverse=True, return_counts=True)
    in_run, heads = rows[in_run], rows[heads]
    copies += 1  # the first record too
    # an IPv4 header with an id repeats only in a copy of the frame (a resent packet gets a
    # new id); IPv6 and IPv4 id 0 (unconnected UDP) need the other points' word
    ip_id = int_column(packets, "ip_id", heads)
    copied = (int_column(packets, "ip_version", heads) == 4) & (ip_id > 0)
    if not copied.all():
        copied[~copied] = _seen_fewer(packets, slot, sig, ts, node, heads[~copied],
                                      copies[~copied])
    taken = copied[of_run]
    original[in_run[taken]] = heads[of_run[taken]]
    return original


def _seen_fewer(packets: pd.DataFrame, slot: np.ndarray, sig: np.ndarray, ts: np.ndarray,
                node: np.ndarray, head: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """For runs of ``copies`` records at one slot (``head``: each run's first row), whether
    another slot of the same node saw that piece of the packet (its signature and fragment
    offset) fewer times around it (within NEIGHBOUR_NS): a packet sent that many times would
    be seen that many times at every point of the node it passed. When none of the node's
    other slots saw it there, nothing tells a repeat from a copy, and a repeat that close is
    the rarer."""
    at = np.flatnonzero(np.isin(sig, sig[head]))
    key = row_digest([sig[at], int_column(packets, "frag_offset", at), node[at]])
    head_key = row_digest([sig[head], int_column(packets, "frag_offset", head), node[head]])
    order = np.lexsort((ts[at], key))
    at, key = at[order], key[order]
    fewer = np.ones(len(head), bool)
    # the runs are few (duplicate records are): each looks at its neighbourhood in turn
    for i, (h, k) in enumerate(zip(head.tolist(), head_key.tolist(), strict=True)):
        lo, hi = np.searchsorted(key, k, "left"), np.searchsorted(key, k, "right")
        times = ts[at[lo:hi]]
        near = at[lo + np.searchsorted(times, ts[h] - NEIGHBOUR_NS, "left"):
                  lo + np.searchsorted(times, ts[h] + NEIGHBOUR_NS, "right")]
        others = slot[near][slot[near] != slot[h]]
        if len(others):
            fewer[i] = np.unique(others, return_counts=True)[1].min() < copies[i]
    return fewer


def wire_sources(packets: pd.DataFrame, rows: np.ndarray,
                 src: tuple[np.ndarray, list[str]] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """At ``rows``: the code of the address each frame has on the wire between hosts (the
    outer source when tunnelled, else the source; -1: none), whether it is tunnelled, and the
    addresses the codes stand for. ``src``: the source column's codes, when at hand."""
    inner_coded = src if src is not None else string_codes(packets["src"])
    if "outer_src" not in packets:
        (inner,), addresses = shared_codes(inner_coded)
        return inner[rows], np.zeros(len(rows), bool), addresses
    (outer, inner), addresses = shared_codes(packets["outer_src"], inner_coded)
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


def _id_keys(version: np.ndarray, proto: np.ndarray, ip_id: np.ndarray) -> np.ndarray:
    """The partition keys of IPv4 units by (version, protocol, IP id)."""
    return row_digest([np.full(len(version), _KIND_ID, np.int64), version.astype(np.int64),
                       proto.astype(np.int64), ip_id.astype(np.int64)])


def fragmented_ids(packets: pd.DataFrame) -> np.ndarray:
    """The (version, protocol, id) keys of the IPv4 fragments among ``packets`` (any rows:
    the keys of every capture together are what :func:`partition_keys` takes), sorted and
    distinct. A fragment row holds its innermost header's fields, as its unit's first row
    does."""
    version = int_column(packets, "ip_version")
    # (without the column, any row may be a fragment)
    fragment = packets["fragment"].to_numpy(bool, na_value=False) if "fragment" in packets \
        else np.ones(len(packets), bool)
    ip_id = int_column(packets, "ip_id")
    rows = np.flatnonzero(fragment & (version == 4) & (ip_id != NO_VALUE))
    return np.unique(_id_keys(version[rows], int_column(packets, "proto", rows), ip_id[rows]))


def partition_keys(packets: pd.DataFrame, window_ns: int = DEFAULT_WINDOW_NS, *,
                   fragmented: np.ndarray | None = None) -> np.ndarray:
    """A uint64 key per row of one capture file's rows (any whole files will do) such that
    every row that can belong to one packet has the same key, in whichever file it is: the
    rows of one unit (a datagram's fragments, a tunnel packet's pieces, a duplicate record and
    its original) share their unit's key, and a unit's key is what its signature refines. An
    IPv4 unit with an id: (version, protocol, IP id), which also holds the datagram key of a
    unit missing fragments (:func:`pktkit.analysis.packets.join_fragments` ties it to the
    packet of that key); any other unit: its signature (a partial IPv6 datagram: its datagram
    key). A frame that matches nothing (no IP, no time, a decode error) is a packet of its own:
    its key is its capture and frame. Needs the columns :func:`find_units` reads (``node``
    optional: one file is one node), and all of the file's rows: a chunk of a file alone can
    cut a unit (a fragmented tunnel packet's pieces, an IPv6 datagram's fragments) at its
    edge.

    ``fragmented``: the ids of every IPv4 fragment of the whole input
    (:func:`fragmented_ids`, of every capture). Given, only the units whose (version,
    protocol, id) a fragment has somewhere are keyed by it; any other unit is whole at every
    point, and its signature keys it. The id is 16 bits, and Linux sends many DF segments with
    id 0: at 20.8M frames 1,139,069 TCP rows shared the key (4, TCP, 0), a partition 5.5× the
    others, growing with the input.

    Known limit: an IPv6 datagram missing fragments at one point joins the packet before it
    with its datagram key, but the whole copies of that packet carry no fragment id: their
    key is their signature, so the two can land in different partitions (IPv4 keeps its id
    in every copy)."""
    n = len(packets)
    if not n:
        return np.zeros(0, np.uint64)
    node = string_codes(packets["node"])[0] if "node" in packets else np.zeros(n, np.int32)
    units = find_units(packets, node, window_ns)
    rep = units.row
    version, proto, ip_id = (int_column(packets, c, rep) for c in ("ip_version", "proto",
                                                                     "ip_id"))
    key = units.sig.copy()
    by_id = (version == 4) & (ip_id != NO_VALUE) & (key != NO_VALUE)
    id_key = _id_keys(version[by_id], proto[by_id], ip_id[by_id])
    at = np.flatnonzero(by_id)
    if fragmented is not None:  # (the others keep their signature)
        kept = np.isin(id_key, fragmented)
        at, id_key = at[kept], id_key[kept]
    key[at] = id_key
    single = np.flatnonzero(key == NO_VALUE)
    if len(single):
        capture, labels = string_codes(packets["capture"].take(rep[single]))
        key[single] = row_digest([np.full(len(single), _KIND_SINGLE),
                                  address_words(capture, labels),
                                  int_column(packets, "frame", rep[single])])
    return key[units.of_row].view(np.uint64)
