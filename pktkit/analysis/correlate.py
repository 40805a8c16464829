"""Sightings of one packet across capture points: ``packet_id``, hops, clock offsets, latency.

Input is the packet table (:func:`pktkit.capture.table.read_packets`) with a ``node`` column added
(:mod:`pktkit.analysis.pipeline` fills it from ``--node``, ``capture-set.json`` or the file names) and a
``capture`` name that is unique per file.

Matching
--------
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

Time tells look-alikes apart (two tenants' identical datagrams whose IP ids collide, a DNS
retry with IP id 0): consecutive sightings of one packet are close. The *gap limit* after a
slot is GAP_FACTOR times the median gap from that slot to the next sighting of the same
signature (at least MIN_GAP_LIMIT_NS, at most ``window_ns``); a slot that is mostly the last
of its packets (a pod's veth on delivery) uses the median over all slots. A longer gap starts
another packet. The limits are learnt from the data, so an uncorrected clock offset between
two nodes is not mistaken for look-alikes.

1. **Clocks.** Per node (one clock), the units of a signature that occupy distinct slots with
   no gap beyond the limits are one node-local sighting group. A signature with one such
   group on each of two nodes is a packet crossing between them; TTL (the sender's copies have
   a TTL at least the receiver's) and, when captured, the directions (the sender's last copy
   goes ``out``, the receiver's first comes ``in``) say which way. The one-way delays bound the
   offset from both sides, as NTP does: with ``min_ab`` the smallest ``first_b - last_a`` over
   packets a → b (raw clocks) and ``min_ba`` likewise, ``offset_b - offset_a = (min_ab -
   min_ba) / 2 ± (min_ab + min_ba) / 2`` (the true offset is inside whenever the delays are
   positive). Samples farther than ``window_ns`` from their direction's median are dropped
   first (a wrong match must not set a minimum). Each node's offset against the reference
   node (the first node) follows the chain of pairs with the smallest summed bound.
   The correction applied (``clock_correction``): ``"auto"`` (default) subtracts the
   estimate only when it is significant, i.e. the interval excludes 0 — when the data cannot
   tell the clocks apart, the midpoint is noise (half the asymmetry of the two minimum delays)
   and shifting by it would only add that error to synchronized clocks; ``"always"`` subtracts
   every estimate; ``"never"`` none.
2. **Packets.** Units are grouped by signature and ordered on the reference clock (capture time
   minus the node's applied offset), cut at gaps beyond the limits. A group whose units occupy
   distinct slots is one packet. Any other group (a retransmission or repeat the signature
   does not tell apart, e.g. IPv6 without an IP id) is split greedily: each unit joins an open
   packet (gap within the limit, slot not yet used) — preferring one whose last slot is known
   to lead to this one (learnt from the unambiguous groups) with the most typical delay, else
   the oldest (links are queues); a hop no unambiguous packet took must be within
   MIN_GAP_LIMIT_NS — or starts a new one. A retransmitted IPv4 segment has a new IP id and so
   another signature; an IPv6 one is seen again at the slots it already used.
3. **Fragments.** Fragment units are grouped by (version, protocol, IP id, addresses); such a
   packet joins the unfragmented packet of the same key whose last sighting precedes its first
   within that sighting's gap limit (the copy before the fragmenting VTEP).
4. **Hops.** A packet's units in reference-clock order (ties: capture order, frame) are its
   hops 0, 1, ...; the fragments of one datagram at one point share a hop.

Known limits: a payload cut by the snaplen before ``PAYLOAD_HASH_BYTES`` changes the UDP/ICMP
signature; fragments of an *outer* (tunnel) packet beyond the first are not tied to the inner
packet; ICMP errors quote the header as NAT left it, so their copies before and after a NAT
differ; frames that are not IP, have no timestamp or a decode error are packets of their own.

Tables
------
``hops`` — one row per sighting (fragments of one datagram at one point: one row, the first)

==============  ========  ===============================================================
column          dtype     meaning
==============  ========  ===============================================================
packet_id       Int64     the packet (as in the packet table)
hop             Int64     0-based position along its path
capture, frame  category, the sighting (its first frame)
                Int64
node            category  capture point: node,
interface       category  interface (NA when neither the file nor ``capture-set.json`` says)
direction       category  in / out as captured (NA for per-interface pcap files)
ts_ns           Int64     time on the reference node's clock (capture time − node offset)
delay_ns        Int64     since the previous hop (clock-corrected across nodes); NA for hop 0
from_node       category  the previous hop's node and interface; NA for hop 0
from_interface  category
==============  ========  ===============================================================

``clock_offsets`` — one row per node

==============  ========  ===============================================================
node            string    the node
reference_node  string    the node whose clock is the reference (offset 0, bound 0)
offset_ns       Int64     node clock − reference clock; NA when no packet crossed between
                          them both ways (then no correction is applied)
bound_ns        Int64     the true offset lies within offset_ns ± bound_ns
samples         Int64     packets whose crossing gave the estimate (both directions)
applied_ns      Int64     the correction subtracted from the node's timestamps (see
                          ``clock_correction``): offset_ns, or 0
==============  ========  ===============================================================

``latency`` — one row per (metric, scope), delays in ns

=======  ======  =====================================================================
metric   string  ``hop``: between consecutive sightings on one node, scope
                 "node/if → node/if"; ``node_pair``: from the last sighting on one node
                 to the first on the next, one way, clock-corrected, scope "a → b";
                 ``nat``: from the last sighting before an address/port rewrite to the
                 first after it, scope "node/if → node/if (src|dst|src+dst rewritten)";
                 ``handshake_rtt``: SYN to the ACK completing the handshake, per TCP flow
                 as seen at one capture point, scope "node/if"
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
(a retransmitted SYN does not inflate the RTT).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.capture.frame import empty_frame, typed_frame
from pktkit.errors import UsageError

DEFAULT_WINDOW_NS = 1_000_000_000  # longest gap between two sightings of one packet
# A gap after a slot longer than GAP_FACTOR × that slot's median gap to the next sighting (and
# than MIN_GAP_LIMIT_NS) is no hop but two packets that happen to look alike.
GAP_FACTOR = 100
MIN_GAP_LIMIT_NS = 1_000_000
NO_VALUE = np.int64(-1)  # integer columns: NA
# Initial hash-table size when factorizing values known to be few (slots, categories): by
# default pandas sizes the table for every row being distinct.
_FEW_VALUES = 1024

# Columns the correlation reads, beyond capture/frame/ts_ns/node/interface/direction.
MATCH_COLUMNS = ("ip_version", "proto", "ip_id", "ttl", "tcp_flags", "tcp_seq", "tcp_ack",
                 "icmp_type", "icmp_code", "icmp_id", "icmp_seq", "l4_payload_len",
                 "payload_hash", "frag_offset", "more_fragments")

HOPS_SCHEMA: dict[str, str] = {
    "packet_id": "Int64", "hop": "Int64", "capture": "category", "frame": "Int64",
    "node": "category", "interface": "category", "direction": "category", "ts_ns": "Int64",
    "delay_ns": "Int64", "from_node": "category", "from_interface": "category",
}
CLOCK_SCHEMA: dict[str, str] = {
    "node": "string", "reference_node": "string", "offset_ns": "Int64", "bound_ns": "Int64",
    "samples": "Int64", "applied_ns": "Int64",
}
CLOCK_CORRECTIONS = ("auto", "always", "never")
LATENCY_SCHEMA: dict[str, str] = {
    "metric": "string", "scope": "string", "count": "Int64", "min_ns": "Int64",
    "p50_ns": "Int64", "p90_ns": "Int64", "p99_ns": "Int64", "max_ns": "Int64",
}
HANDSHAKES_SCHEMA: dict[str, str] = {
    "capture": "string", "node": "string", "interface": "string", "flow_id": "Int64",
    "src": "string", "sport": "Int64", "dst": "string", "dport": "Int64",
    "syn_ts_ns": "Int64", "synack_ts_ns": "Int64", "ack_ts_ns": "Int64", "rtt_ns": "Int64",
}
LATENCY_METRICS = ("hop", "node_pair", "nat", "handshake_rtt")
PERCENTILES = (("p50_ns", 50), ("p90_ns", 90), ("p99_ns", 99))

_TCP, _UDP = 6, 17
_ICMP_REQUESTS = ((1, 8), (58, 128))  # (proto, type) of echo requests: the id is the source's
_KIND_PACKET, _KIND_DATAGRAM = 1, 2  # signature kinds: whole packet, fragmented datagram
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


# -- column helpers ------------------------------------------------------------------------


def _ints(packets: pd.DataFrame, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A nullable integer/boolean column (at ``rows``; default: all) as int64 with -1 for NA
    (absent column: all NA). May share memory with the table: not to be modified."""
    size = len(packets) if rows is None else len(rows)
    if name not in packets:
        return np.full(size, NO_VALUE)
    column = packets[name].array
    if isinstance(column, pd.Categorical):
        codes = column.codes if rows is None else column.codes[rows]
        return codes.astype(np.int64)
    if rows is not None:
        column = column.take(rows)  # the rows before widening: no int64 copy of the column
    return column.to_numpy(dtype=np.int64, na_value=-1)


def _codes(values: pd.Series, order: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """Factorize strings: (int32 codes with -1 for NA, the labels in order of first
    appearance); ``order`` labels first. A categorical column is factorized by its codes
    (its labels as strings), without building a string per row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # the category codes in order of first appearance; NA (code -1) stays -1
        seen, present = pd.factorize(values.array.codes, size_hint=_FEW_VALUES)
        valid = present >= 0
        rank = np.where(valid, np.cumsum(valid) - 1, -1)
        codes = rank[seen]
        labels = [str(x) for x in values.array.categories[present[valid]]]
    else:
        codes, labels = pd.factorize(values.astype("string"), use_na_sentinel=True)
        labels = [str(x) for x in labels]
    if order:
        ranked = [x for x in order if x in labels] + [x for x in labels if x not in order]
        remap = np.array([ranked.index(x) for x in labels] + [-1], np.int32)
        return remap[codes], ranked
    return codes.astype(np.int32), labels


def _digest(words: Iterable[np.ndarray], n: int | None = None) -> np.ndarray:
    """A 64-bit digest per row of integer columns (splitmix64 finalizer, chained; narrower
    integers count as their int64 value). ``words`` may be a generator (then ``n`` rows):
    only one column is alive at a time."""
    words = iter(words)
    first = next(words)
    h = np.full(len(first) if n is None else n, 0x9E3779B97F4A7C15, np.uint64)
    for word in itertools.chain([first], words):
        # an int64 column's bits as they are (no copy); a narrower one sign-extended
        h ^= word.view(np.uint64) if word.dtype == np.int64 else word.astype(np.uint64)
        h ^= h >> np.uint64(30)
        h *= _M1
        h ^= h >> np.uint64(27)
        h *= _M2
        h ^= h >> np.uint64(31)
    return h.view(np.int64)


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Boolean: row i starts a new run of equal keys (rows already sorted by them)."""
    n = len(keys[0])
    start = np.zeros(n, bool)
    if n:
        start[0] = True
        for key in keys:
            start[1:] |= key[1:] != key[:-1]
    return start


def _run_ids(start: np.ndarray) -> np.ndarray:
    ids = np.cumsum(start)
    ids -= 1
    return ids


# -- units -----------------------------------------------------------------------------------


@dataclass
class _Units:
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


def _units(packets: pd.DataFrame, node: np.ndarray, window_ns: int) -> _Units:
    # Columns of the whole table are read one or a few at a time and dropped once folded
    # into the digests: this is the widest part of the correlation.
    n = len(packets)
    ts = _ints(packets, "ts_ns")
    version, proto, ip_id = (_ints(packets, c) for c in ("ip_version", "proto", "ip_id"))
    src, _ = _codes(packets["src"])
    dst, _ = _codes(packets["dst"])
    matchable = (src >= 0) & (ts != NO_VALUE) & (version > 0)
    if "error" in packets:
        matchable &= packets["error"].isna().to_numpy()
    has_datagram = matchable & (ip_id != NO_VALUE)
    frag_offset = _ints(packets, "frag_offset")
    fragment = matchable & ((frag_offset > 0) | (_ints(packets, "more_fragments") == 1))
    datagram = _digest([np.full(n, _KIND_DATAGRAM), version, proto, ip_id, src, dst])
    del src, dst

    # TCP leaves the payload hash out: sequence numbers say which bytes it carries
    sig = _digest(itertools.chain(
        [np.full(n, _KIND_PACKET), version, proto, ip_id],
        (_ints(packets, c) for c in ("tcp_seq", "tcp_ack", "tcp_flags", "icmp_type",
                                     "icmp_code", "icmp_seq", "l4_payload_len")),
        (np.where(proto == _TCP, 0, _ints(packets, "payload_hash")) for _ in (0,))))
    del version, proto, ip_id
    # a fragment's signature is its datagram; rows that match nothing: NO_VALUE
    np.copyto(sig, NO_VALUE, where=~matchable)
    np.copyto(sig, datagram, where=fragment)
    np.copyto(datagram, NO_VALUE, where=~has_datagram)
    del matchable, has_datagram
    slot = _digest(_point_words(packets, "direction", "ttl"), n)

    # Fragments: one unit per datagram per slot; a repeated offset or a gap starts the next.
    unit_of = np.arange(n, dtype=np.int64)
    fragment_rows = np.flatnonzero(fragment)
    if len(fragment_rows):
        frame = packets["frame"].array.take(fragment_rows).to_numpy()
        order = fragment_rows[np.lexsort((frame, ts[fragment_rows], sig[fragment_rows],
                                          slot[fragment_rows]))]
        keys = (slot[order], sig[order])
        new = _starts(*keys)
        head, offsets, last_ts = -1, set(), 0
        for i, (row, is_new) in enumerate(zip(order.tolist(), new.tolist(), strict=True)):
            offset, t = int(frag_offset[row]), int(ts[row])
            if is_new or offset in offsets or t - last_ts > window_ns:
                head, offsets = order[i], set()
            offsets.add(offset)
            last_ts = t
            unit_of[row] = head
        del frame, order, keys, new
    # Units numbered in row order: a unit's head (its earliest row, sorted by time above)
    # is the one row that is its own unit.
    is_head = unit_of == np.arange(n)
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
        lowest = _starts(of_row[best])
        rep[of_row[best[lowest]]] = best[lowest]
        del unit, best, lowest
    del frag_offset, fragment_rows
    # per unit from here on; each per-row array is dropped once taken
    ts, sig, fragment = ts[first_row], sig[first_row], fragment[first_row]
    datagram = datagram[rep]
    # dense slot codes (any numbering will do: slots are only told apart)
    slot_code, slot_digests = pd.factorize(slot[first_row], size_hint=_FEW_VALUES)
    return _Units(
        of_row=of_row, row=rep, first_row=first_row, ts=ts, node=node[first_row],
        slot=slot_code.astype(np.int32), slots=len(slot_digests), sig=sig,
        datagram=datagram, fragmented=fragment,
    )


def _point_words(packets: pd.DataFrame, *more: str) -> Iterator[np.ndarray]:
    """For :func:`_digest`, one at a time: the columns of a capture point (capture,
    interface), then the integer columns ``more``."""
    yield _codes(packets["capture"])[0]
    yield _codes(packets["interface"])[0]
    for name in more:
        yield _ints(packets, name)


# -- clocks ----------------------------------------------------------------------------------


def _gap_limits(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                slots: int, window_ns: int) -> np.ndarray:
    """The longest plausible gap after each slot (see GAP_FACTOR), from the consecutive
    sightings of equal ``key`` in ``order`` (sorted by key, then time); capped by the window.
    A slot that is mostly the last of its packets (a pod's veth on delivery) has only
    look-alikes after it: it uses the median over all slots."""
    k = key[order]
    same = k[1:] == k[:-1]
    del k
    limits = np.full(slots, window_ns, np.int64)
    if not same.any():
        return limits
    s, t = slot[order], ts[order]
    gaps = (t[1:] - t[:-1])[same]
    del t
    gap_slot = s[:-1][same]
    followed = np.bincount(gap_slot, minlength=slots) * 2 >= np.bincount(s, minlength=slots)
    del s
    index, medians = _medians(gaps, gap_slot, slots)
    typical = np.full(slots, float(np.median(gaps)))
    keep = followed[index]
    typical[index[keep]] = medians[keep]
    return np.clip(GAP_FACTOR * typical, MIN_GAP_LIMIT_NS, window_ns).astype(np.int64)


def _medians(values: np.ndarray, code: np.ndarray, codes: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes present (ascending) and the median of ``values`` per code, computed as
    pandas does (in float64, the mean of the two middle values) without its hash tables."""
    ordered = values[np.lexsort((values, code))]
    counts = np.bincount(code, minlength=codes)
    present = np.flatnonzero(counts)
    counts = counts[present]
    starts = np.cumsum(counts) - counts
    lower = ordered[starts + (counts - 1) // 2].astype(np.float64)
    upper = ordered[starts + counts // 2].astype(np.float64)
    return present, (lower + upper) / 2


def _clean_groups(key: np.ndarray, slot: np.ndarray, ts: np.ndarray, order: np.ndarray,
                  limits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units in ``order`` (sorted by key, then time) → (group id per position, group start
    positions, clean flag per group). A group is a run of equal key with no gap beyond the
    previous slot's limit; clean when its units occupy distinct slots."""
    s = slot[order]
    start = _starts(key[order])
    gaps = np.diff(ts[order])
    start[1:] |= gaps > limits[s[:-1]]
    del gaps
    group = _run_ids(start)
    starts = np.flatnonzero(start)
    del start
    # group is sorted already: ordering by (group, slot) only reorders the slots
    distinct = _starts(group, s[np.lexsort((s, group))])
    slots = np.bincount(group, weights=distinct, minlength=len(starts))
    sizes = np.diff(np.append(starts, len(order)))
    return group, starts, slots == sizes


def _node_groups(units: _Units, packets: pd.DataFrame, window_ns: int) -> pd.DataFrame:
    """One row per clean node-local sighting group: node, sig, first/last ts, TTL range,
    directions of the first and last sighting."""
    if (units.sig == NO_VALUE).all():
        return pd.DataFrame(columns=["node", "sig", "first", "last", "ttl_min", "ttl_max",
                                     "dir_first", "dir_last"], dtype=np.int64)
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((units.ts, units.sig, units.node))
    order = order[units.sig[order] != NO_VALUE]
    key = _digest([units.node, units.sig])
    limits = _gap_limits(key, units.slot, units.ts, order, units.slots, window_ns)
    starts, clean = _clean_groups(key, units.slot, units.ts, order, limits)[1:]
    del key
    group_ttl = _ints(packets, "ttl", units.row[order])
    lo, hi = np.minimum.reduceat(group_ttl, starts), np.maximum.reduceat(group_ttl, starts)
    del group_ttl
    first, last = order[starts], order[np.append(starts[1:], len(order)) - 1]
    first, last, lo, hi = first[clean], last[clean], lo[clean], hi[clean]
    node, sig = units.node[first], units.sig[first]
    # a signature seen twice on a node (cleanly each time) matches nothing reliably; the
    # groups are in (node, signature) order, so such twins are neighbours
    new = _starts(node, sig)
    alone = new & np.append(new[1:], True)
    first, last = first[alone], last[alone]
    return pd.DataFrame({
        "node": node[alone], "sig": sig[alone],
        "first": units.ts[first], "last": units.ts[last], "ttl_min": lo[alone],
        "ttl_max": hi[alone], "dir_first": _ints(packets, "direction", units.row[first]),
        "dir_last": _ints(packets, "direction", units.row[last]),
    }, copy=False)


def _crossings(groups: pd.DataFrame, out_code: int, in_code: int) -> pd.DataFrame:
    """Pairs of node-local groups of one signature on two nodes, oriented a → b, with the
    raw-clock delay ``first_b - last_a``."""
    # Only signatures and row numbers are joined: the pairs can be many.
    rows = pd.DataFrame({"sig": groups["sig"].to_numpy(), "row": np.arange(len(groups))})
    pairs = rows.merge(rows, on="sig", suffixes=("_a", "_b"))
    a, b = pairs["row_a"].to_numpy(), pairs["row_b"].to_numpy()
    del pairs
    node = groups["node"].to_numpy()
    other_node = node[a] != node[b]
    a, b = a[other_node], b[other_node]
    ttl_min, ttl_max = groups["ttl_min"].to_numpy(), groups["ttl_max"].to_numpy()
    dir_first, dir_last = groups["dir_first"].to_numpy(), groups["dir_last"].to_numpy()
    # directions, where captured: the sender's last copy leaves, the receiver's first arrives
    leaves = (dir_last < 0) | (dir_last == out_code)
    arrives = (dir_first < 0) | (dir_first == in_code)
    forward = (ttl_min[a] >= ttl_max[b]) & leaves[a] & arrives[b]
    backward = (ttl_min[b] >= ttl_max[a]) & leaves[b] & arrives[a]
    # each unordered pair appears twice (a, b) and (b, a): keep the unambiguous forward one
    keep = forward & ~backward
    a, b = a[keep], b[keep]
    return pd.DataFrame({"a": node[a], "b": node[b],
                         "delay": groups["first"].to_numpy()[b] - groups["last"].to_numpy()[a]})


def _pair_estimates(crossings: pd.DataFrame, window_ns: int) -> dict[tuple[int, int], tuple]:
    """NTP-style (offset_b - offset_a, bound, samples) per node pair a < b with traffic both
    ways."""
    out: dict[tuple[int, int], tuple] = {}
    if crossings.empty:
        return out
    robust = []
    for _, group in crossings.groupby(["a", "b"], sort=False):
        median = group["delay"].median()
        robust.append(group[(group["delay"] - median).abs() <= window_ns])
    crossings = pd.concat(robust)
    minima = crossings.groupby(["a", "b"])["delay"].agg(["min", "size"])
    for (a, b), row in minima.iterrows():
        if a > b or (b, a) not in minima.index:
            continue
        back = minima.loc[(b, a)]
        min_ab, min_ba = int(row["min"]), int(back["min"])
        bound = (min_ab + min_ba) / 2
        if bound < 0:  # the two directions contradict each other: no estimate
            continue
        out[(a, b)] = ((min_ab - min_ba) / 2, bound, int(row["size"]) + int(back["size"]))
    return out


def _offsets(estimates: dict[tuple[int, int], tuple], nodes: int,
             reference: int) -> list[tuple[float, float, int] | None]:
    """Each node's (offset, bound, samples) against the reference: the chain of pairwise
    estimates with the smallest summed bound (Dijkstra)."""
    edges: dict[int, list[tuple[int, float, float, int]]] = {i: [] for i in range(nodes)}
    for (a, b), (offset, bound, samples) in estimates.items():
        edges[a].append((b, offset, bound, samples))
        edges[b].append((a, -offset, bound, samples))
    best: list[tuple[float, float, int] | None] = [None] * nodes
    best[reference] = (0.0, 0.0, 0)
    heap = [(0.0, reference, 0.0, 0)]
    done: set[int] = set()
    while heap:
        bound, node, offset, samples = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        best[node] = (offset, bound, samples)
        for other, step, step_bound, step_samples in edges[node]:
            if other not in done:
                heapq.heappush(heap, (bound + step_bound, other, offset + step,
                                      samples + step_samples))
    return best


def _applied(found: tuple[float, float, int] | None, policy: str) -> int:
    """The correction to subtract from a node's timestamps (see ``clock_correction``)."""
    if found is None or policy == "never":
        return 0
    offset, bound, _ = found
    return round(offset) if policy == "always" or abs(offset) > bound else 0


# -- packets ---------------------------------------------------------------------------------


def _transitions(units: _Units, order: np.ndarray, group: np.ndarray,
                 clean: np.ndarray, ts: np.ndarray) -> dict[tuple[int, int], float]:
    """Median delay per (slot, next slot) over the unambiguous packets."""
    same = (group[1:] == group[:-1]) & clean[group[1:]]
    if not same.any():
        return {}
    prev, nxt = order[:-1][same], order[1:][same]
    frame = pd.DataFrame({"a": units.slot[prev], "b": units.slot[nxt],
                          "gap": ts[nxt] - ts[prev]})
    medians = frame.groupby(["a", "b"])["gap"].median()
    return {(int(a), int(b)): float(v) for (a, b), v in medians.items()}


def _split_group(slot: list[int], ts: list[int], transitions: dict[tuple[int, int], float],
                 limits: list[int]) -> list[int]:
    """Greedy split of one ambiguous signature group (its units' slots and times, in time
    order): a packet number per unit, starting at 0."""
    open_: list[tuple[int, set[int], int, int]] = []  # (last ts, slots, last slot, number)
    best_score: tuple[int, float, int] | None
    numbers: list[int] = []
    for s, t in zip(slot, ts, strict=True):
        best, best_score = -1, None
        for i, (last_ts, slots, last_slot, number) in enumerate(open_):
            gap = t - last_ts
            typical = transitions.get((last_slot, s))
            # a hop no unambiguous packet took must at least be quick
            limit = limits[last_slot] if typical is not None else MIN_GAP_LIMIT_NS
            if gap > limit or s in slots:
                continue
            # the most typical delay for this hop; else first in, first out (links are queues)
            score = (0, abs(gap - typical), number) if typical is not None else (1, 0, number)
            if best_score is None or score < best_score:
                best, best_score = i, score
        if best < 0:
            open_.append((t, {s}, s, len(open_)))
            numbers.append(len(open_) - 1)
        else:
            _, slots, _, number = open_[best]
            slots.add(s)
            open_[best] = (t, slots, s, number)
            numbers.append(number)
    return numbers


@dataclass
class Correlation:
    """What :func:`correlate` found: per packet-table row, and the tables."""

    packet_id: np.ndarray  # int64 per row
    hop: np.ndarray  # int64 per row
    ts_ref_ns: np.ndarray  # int64 per row: capture time on the reference clock (-1: none)
    hops: pd.DataFrame
    hop_rows: np.ndarray  # per hops row: the representative packet-table row
    clock_offsets: pd.DataFrame


def correlate(
    packets: pd.DataFrame,
    *,
    node_order: Sequence[str] = (),
    window_ns: int = DEFAULT_WINDOW_NS,
    clock_correction: str = "auto",
) -> Correlation:
    """Give every row a ``packet_id`` shared by all sightings of one packet and a ``hop``;
    estimate the nodes' clock offsets (see the module docstring). ``packets`` needs the
    columns of the packet table including :data:`MATCH_COLUMNS`, plus ``node``;
    ``node_order[0]`` (else the first node seen) is the reference clock."""
    missing = [c for c in ("capture", "frame", "ts_ns", "node", "interface", "src", "dst",
                           *MATCH_COLUMNS) if c not in packets]
    if missing:
        raise UsageError(f"correlate: the packet table lacks {', '.join(missing)} (read it "
                         "with pktkit.read_packets and add node)")
    if clock_correction not in CLOCK_CORRECTIONS:
        raise UsageError(f"clock correction {clock_correction!r}: choose one of "
                         f"{', '.join(CLOCK_CORRECTIONS)}")
    n = len(packets)
    node, node_names = _codes(packets["node"], node_order)
    units = _units(packets, node, window_ns)
    dtype = packets["direction"].dtype if "direction" in packets else None
    directions = list(dtype.categories) if isinstance(dtype, pd.CategoricalDtype) else []
    out_code = directions.index("out") if "out" in directions else -2  # -2: never matches
    in_code = directions.index("in") if "in" in directions else -2

    # 1. clocks
    groups = _node_groups(units, packets, window_ns)
    estimates = _pair_estimates(_crossings(groups, out_code, in_code), window_ns)
    del groups
    reference = 0
    found = _offsets(estimates, len(node_names), reference) if node_names else []
    applied = [_applied(f, clock_correction) for f in found]
    offsets = np.array(applied or [0], np.int64)
    clock_offsets = typed_frame(pd.DataFrame({
        "node": node_names,
        "reference_node": [node_names[reference]] * len(node_names),
        "offset_ns": [pd.NA if f is None else round(f[0]) for f in found],
        "bound_ns": [pd.NA if f is None else int(np.ceil(f[1])) for f in found],
        "samples": [pd.NA if f is None else f[2] for f in found],
        "applied_ns": applied,
    }), CLOCK_SCHEMA) if node_names else empty_frame(CLOCK_SCHEMA)

    # 2. packets: signature groups on the reference clock
    m = len(units.row)
    uts = _on_reference_clock(units.ts, units.node, offsets)  # units.ts from here on too
    ucap = _codes(packets["capture"])[0][units.first_row]
    uframe = _ints(packets, "frame", units.first_row)
    # all units sorted, then the matched ones kept: no copies of the sort keys
    order = np.lexsort((uframe, ucap, uts, units.sig))
    order = order[units.sig[order] != NO_VALUE]
    limits = _gap_limits(units.sig, units.slot, uts, order, units.slots, window_ns)
    group, starts, clean = _clean_groups(units.sig, units.slot, uts, order, limits)
    packet_of = np.full(m, NO_VALUE)
    packet_of[order] = group
    next_id = len(starts)
    if not clean.all():
        transitions = _transitions(units, order, group, clean, uts)
        # only the ambiguous groups' units as Python lists, group after group
        ambiguous = ~clean[group]
        positions, group_list = order[ambiguous], group[ambiguous].tolist()
        slot_list, ts_list = units.slot[positions].tolist(), uts[positions].tolist()
        limit_list = limits.tolist()
        bounds = [*np.flatnonzero(_starts(group[ambiguous])).tolist(), len(positions)]
        new_ids: list[int] = []
        for a, b in itertools.pairwise(bounds):
            g = group_list[a]
            numbers = _split_group(slot_list[a:b], ts_list[a:b], transitions, limit_list)
            new_ids.extend(g if number == 0 else next_id + number - 1 for number in numbers)
            next_id += max(numbers)
        packet_of[positions] = new_ids
        del transitions, ambiguous, positions, group_list, slot_list, ts_list, new_ids
    del order, group, starts, clean
    singles = np.flatnonzero(packet_of == NO_VALUE)
    packet_of[singles] = next_id + np.arange(len(singles))
    del singles

    # 3. fragments join the unfragmented packet just before them
    packet_of = _join_fragments(units, packet_of, uts, limits)
    of_row, unit_rows, first_row = units.of_row, units.row, units.first_row
    del units  # the rest of it is no longer needed

    # 4. hops; packet ids renumbered in order of first sighting
    key_ts = np.where(uts == NO_VALUE, np.iinfo(np.int64).max, uts)
    by_time = np.lexsort((uframe, ucap, key_ts, packet_of))
    first = _starts(packet_of[by_time])
    hop_sorted = np.arange(m) - np.maximum.accumulate(np.where(first, np.arange(m), 0))
    unit_hop = np.empty(m, np.int64)
    unit_hop[by_time] = hop_sorted
    del hop_sorted
    firsts = by_time[first]
    del first
    rank = np.empty(len(firsts), np.int64)
    rank[np.lexsort((uframe[firsts], ucap[firsts], key_ts[firsts]))] = np.arange(len(firsts))
    del ucap, uframe, key_ts
    renumber = np.empty(int(packet_of.max()) + 1 if m else 0, np.int64)
    renumber[packet_of[firsts]] = rank
    unit_packet = renumber[packet_of] if m else packet_of
    del firsts, rank, renumber, packet_of

    packet_id = unit_packet[of_row] if n else np.zeros(0, np.int64)
    hop = unit_hop[of_row] if n else np.zeros(0, np.int64)
    del of_row
    # (packet, hop) order: by_time is in hop order within each packet already
    order = by_time[np.argsort(unit_packet[by_time], kind="stable")]
    del by_time
    hop_rows = unit_rows[order]
    del unit_rows
    # each array is taken in hops order, then its unit-order original dropped
    rows = first_row[order]
    del first_row
    unit_packet = unit_packet[order]
    unit_hop = unit_hop[order]
    uts = uts[order]
    del order
    hops = _hops_table(packets, rows, unit_packet, unit_hop, uts)
    del rows, unit_packet, unit_hop, uts
    # a copy: _ints may hand out the table's own buffer
    ts_ref = _on_reference_clock(_ints(packets, "ts_ns").copy(), node, offsets)
    return Correlation(packet_id=packet_id, hop=hop, ts_ref_ns=ts_ref, hops=hops,
                       hop_rows=hop_rows, clock_offsets=clock_offsets)


def _on_reference_clock(ts: np.ndarray, node: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``ts`` (capture times on the nodes' clocks; NO_VALUE: none) minus each node's applied
    offset, in place (returned)."""
    if offsets.any():
        ts -= np.where(ts == NO_VALUE, 0, offsets[np.maximum(node, 0)])
    return ts


def _join_fragments(units: _Units, packet_of: np.ndarray, uts: np.ndarray,
                    limits: np.ndarray) -> np.ndarray:
    """Fragment packets join the unfragmented packet of the same datagram key whose last
    sighting precedes their first, within the gap limit of that sighting's slot."""
    if not units.fragmented.any():
        return packet_of
    # The sightings with a datagram key and a time, in time order. Quicksort, as ever: the
    # order of equal times decides a packet's last key and slot, so it must not change.
    timed = np.flatnonzero((units.datagram != NO_VALUE) & (uts != NO_VALUE))
    if not len(timed):
        return packet_of
    timed = timed[np.argsort(uts[timed], kind="quicksort")]
    # grouped by packet (ascending), each packet's sightings still in that order
    by_packet = np.argsort(packet_of[timed], kind="stable")
    timed = timed[by_packet]
    del by_packet
    packet = packet_of[timed]
    starts = np.flatnonzero(_starts(packet))
    first, last = timed[starts], timed[np.append(starts[1:], len(timed)) - 1]
    fragments = np.add.reduceat(units.fragmented[timed], starts, dtype=np.int64)
    sizes = np.diff(np.append(starts, len(timed)))
    per_packet = pd.DataFrame({"packet": packet[starts], "first": uts[first],
                               "last": uts[last], "key": units.datagram[last],
                               "slot": units.slot[last]})
    del timed, packet
    frags = per_packet[fragments == sizes].sort_values("first")
    whole = per_packet[fragments == 0].sort_values("last")
    if frags.empty or whole.empty:
        return packet_of
    joined = pd.merge_asof(frags, whole[["packet", "last", "key", "slot"]], left_on="first",
                           right_on="last", by="key", direction="backward",
                           tolerance=int(limits.max()), suffixes=("", "_whole"))
    joined = joined.dropna(subset=["packet_whole"])
    gap = joined["first"] - joined["last_whole"]
    joined = joined[gap <= limits[joined["slot_whole"].to_numpy(np.int64)]]
    remap = np.arange(int(packet_of.max()) + 1)
    remap[joined["packet"].to_numpy(np.int64)] = joined["packet_whole"].to_numpy(np.int64)
    return remap[packet_of]


def _category(packets: pd.DataFrame, name: str, rows: np.ndarray) -> pd.Categorical:
    """Column ``name`` at ``rows`` as a categorical (few distinct values, many rows)."""
    if name not in packets:
        return pd.Categorical.from_codes(np.full(len(rows), -1), categories=[])
    codes, labels = _codes(packets[name])
    return pd.Categorical.from_codes(codes[rows], categories=labels)


def _previous(values: pd.Categorical, first: np.ndarray) -> pd.Categorical:
    """Each row's previous row's value; NA on the ``first`` rows (and row 0)."""
    codes = np.concatenate([[-1], values.codes[:-1]])
    codes[first] = -1
    return pd.Categorical.from_codes(codes, dtype=values.dtype)


def _hops_table(packets: pd.DataFrame, rows: np.ndarray, packet: np.ndarray,
                hop: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    """The hops table from the units in (packet, hop) order: ``rows`` their first frames.
    The int64 arrays become the table's columns, not copied (``ts`` gets 0 where NA)."""
    if not len(rows):
        return empty_frame(HOPS_SCHEMA)
    first = hop == 0
    no_ts = ts == NO_VALUE
    delay = np.zeros(len(ts), np.int64)
    delay[1:] = ts[1:] - ts[:-1]
    delay_na = first | no_ts | np.roll(no_ts, 1)
    ts[no_ts] = 0
    node = _category(packets, "node", rows)
    interface = _category(packets, "interface", rows)
    # every column built in its schema dtype, so the frame takes them as they are
    return pd.DataFrame({
        "packet_id": pd.arrays.IntegerArray(packet, np.zeros(len(rows), bool)),
        "hop": pd.arrays.IntegerArray(hop, np.zeros(len(rows), bool)),
        "capture": _category(packets, "capture", rows),
        "frame": packets["frame"].array.take(rows).astype(HOPS_SCHEMA["frame"]),
        "node": node,
        "interface": interface,
        "direction": _category(packets, "direction", rows),
        "ts_ns": pd.arrays.IntegerArray(ts, no_ts),
        "delay_ns": pd.arrays.IntegerArray(delay, delay_na),
        "from_node": _previous(node, first),
        "from_interface": _previous(interface, first),
    }, copy=False)


# -- latency ---------------------------------------------------------------------------------


def _stats(metric: str, group: np.ndarray, labels: Sequence[str],
           values: np.ndarray) -> pd.DataFrame:
    """count, min, percentiles and max of ``values`` per ``group`` code (scope
    ``labels[code]``), scopes in order of their first sample."""
    rows = []
    _, in_order_seen = pd.factorize(group, size_hint=_FEW_VALUES)  # the codes, as they come
    for code in in_order_seen.tolist():
        v = values[group == code]
        q = np.percentile(v, [p for _, p in PERCENTILES])
        rows.append({"metric": metric, "scope": labels[code], "count": len(v),
                     "min_ns": int(v.min()),
                     **{col: round(x) for (col, _), x in zip(PERCENTILES, q, strict=True)},
                     "max_ns": int(v.max())})
    return pd.DataFrame(rows, columns=list(LATENCY_SCHEMA))


def _pairs(a: np.ndarray, b: np.ndarray, names: Sequence[str], template: str,
           extra: Sequence[str] = ("",), c: np.ndarray | None = None,
           ) -> tuple[np.ndarray, list[str]]:
    """Group codes of (a, b[, c]) samples and their scope labels, e.g. "A → B"."""
    combos, group = _combinations(a, b) if c is None else _combinations(a, b, c)
    labels = [template.format(a=names[combo[0]], b=names[combo[1]],
                              c=extra[combo[2] if c is not None else 0]) for combo in combos]
    return group, labels


def _combinations(*codes: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct rows of small integer ``codes`` columns (each ≥ -1) in sorted order, and
    each row's number among them. A row is one int64 key (mixed radix, which sorts like the
    row), so few keys are hashed and sorted instead of the stacked rows."""
    radices = [int(column.max()) + 2 if len(column) else 1 for column in codes]
    key = np.zeros(len(codes[0]), np.int64)
    for column, radix in zip(codes, radices, strict=True):
        key *= radix
        key += column
        key += 1
    numbers, keys = pd.factorize(key, size_hint=_FEW_VALUES)
    del key
    order = np.argsort(keys)
    rank = np.empty(len(keys), np.intp)
    rank[order] = np.arange(len(keys))
    combos = []
    for k in keys[order].tolist():  # the key's digits, back to codes
        digits = []
        for radix in reversed(radices):
            k, digit = divmod(k, radix)
            digits.append(digit - 1)
        combos.append(tuple(reversed(digits)))
    return combos, rank[numbers]


def _rewrites(packets: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Per hop row: whether its source side (address, port or ICMP echo id of a request)
    differs from the previous row's, likewise its destination side, and whether it carries
    them (not a bare non-first fragment)."""
    proto, icmp_type = _ints(packets, "proto", rows), _ints(packets, "icmp_type", rows)
    request = np.zeros(len(rows), bool)
    for p, t in _ICMP_REQUESTS:
        request |= (proto == p) & (icmp_type == t)
    del proto, icmp_type
    ident = _ints(packets, "icmp_id", rows)
    # addresses: codes of the whole column, taken (cheaper than taking the strings)
    src_changed = _changed(_digest([_codes(packets["src"])[0][rows],
                                    _ints(packets, "sport", rows),
                                    np.where(request, ident, NO_VALUE)]))
    dst_changed = _changed(_digest([_codes(packets["dst"])[0][rows],
                                    _ints(packets, "dport", rows),
                                    np.where(request, NO_VALUE, ident)]))
    whole = _ints(packets, "frag_offset", rows) <= 0
    return src_changed, dst_changed, whole


def _changed(values: np.ndarray) -> np.ndarray:
    """Boolean: the row differs from the previous one (row 0: False)."""
    changed = np.zeros(len(values), bool)
    changed[1:] = values[1:] != values[:-1]
    return changed


def _points(hops: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """A code per hops row for its capture point "node/interface" (the capture file when
    the interface is unknown)."""
    node, interface, capture = (hops[name].array.codes for name in ("node", "interface",
                                                                     "capture"))
    combos, point = _combinations(node, interface, capture)
    nodes, interfaces = list(hops["node"].cat.categories), list(hops["interface"].cat.categories)
    captures = list(hops["capture"].cat.categories)
    labels = [f"{nodes[n] if n >= 0 else '?'}/{interfaces[i] if i >= 0 else captures[c]}"
              for n, i, c in combos]
    return point, labels


def latency(packets: pd.DataFrame, hops: pd.DataFrame, hop_rows: np.ndarray,
            handshakes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The latency table (see the module docstring) from the hops (``hop_rows``: each hop's
    representative packet-table row) and the handshakes."""
    parts = []
    if len(hops):
        # first, while little else is alive: where addresses or ports were rewritten
        src_changed, dst_changed, whole = _rewrites(packets, hop_rows)
        point, points = _points(hops)
        before = np.roll(point, 1)
        before[0] = 0
        delay = hops["delay_ns"].to_numpy(dtype=np.int64, na_value=0)
        later = hops["delay_ns"].notna().to_numpy()
        node = hops["node"].array.codes
        from_node = np.roll(node, 1)
        from_node[0] = -1
        same = later & (node == from_node)
        group, labels = _pairs(before[same], point[same], points, "{a} → {b}")
        parts.append(_stats("hop", group, labels, delay[same]))
        cross = later & ~same
        group, labels = _pairs(from_node[cross], node[cross],
                               list(hops["node"].cat.categories), "{a} → {b}")
        parts.append(_stats("node_pair", group, labels, delay[cross]))
        nat = later & (src_changed | dst_changed)
        nat[1:] &= whole[1:] & whole[:-1]
        what = np.where(src_changed & dst_changed, 2, np.where(src_changed, 0, 1))
        group, labels = _pairs(before[nat], point[nat], points, "{a} → {b} ({c} rewritten)",
                               ("src", "dst", "src+dst"), what[nat])
        parts.append(_stats("nat", group, labels, delay[nat]))
    if handshakes is not None and len(handshakes):
        scope = (handshakes["node"].astype("string") + "/"
                 + handshakes["interface"].astype("string").fillna(
                     handshakes["capture"].astype("string")))
        codes, labels = pd.factorize(scope)
        parts.append(_stats("handshake_rtt", codes, list(labels),
                            handshakes["rtt_ns"].to_numpy(np.int64)))
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_frame(LATENCY_SCHEMA)
    return typed_frame(pd.concat(parts, ignore_index=True), LATENCY_SCHEMA)


def handshakes(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per TCP handshake per capture point (see the module docstring)."""
    flags = _ints(packets, "tcp_flags")
    ok = (flags >= 0) & (_ints(packets, "tcp_seq") >= 0) & (_ints(packets, "ts_ns") != NO_VALUE)
    if "error" in packets:
        ok &= packets["error"].isna().to_numpy()
    syn = np.flatnonzero(ok & ((flags & 0x16) == 0x02))
    synack = np.flatnonzero(ok & ((flags & 0x16) == 0x12))
    if not len(syn) or not len(synack):
        return empty_frame(HANDSHAKES_SCHEMA)
    ack_rows = np.flatnonzero(ok & ((flags & 0x17) == 0x10))
    del flags, ok
    point = _digest(_point_words(packets, "flow_id"), len(packets))  # a flow at a point
    ack_rows = ack_rows[np.isin(point[ack_rows], point[synack])]
    syn_point, synack_point, ack_point = point[syn], point[synack], point[ack_rows]
    del point

    # from here on only the rows of the SYNs, SYN-ACKs and ACKs are read
    def column(name: str, rows: np.ndarray) -> np.ndarray:
        return _ints(packets, name, rows)

    wrap = 1 << 32
    syns = pd.DataFrame({"point": syn_point, "isn": column("tcp_seq", syn),
                         "syn_ts_ns": column("ts_ns", syn), "row": syn})
    synacks = pd.DataFrame({"point": synack_point,
                            "isn": (column("tcp_ack", synack) - 1) % wrap,
                            "synack_seq": column("tcp_seq", synack),
                            "synack_ts_ns": column("ts_ns", synack)})
    key = ["point", "isn"]
    synacks = synacks.sort_values("synack_ts_ns", kind="stable").drop_duplicates(key)
    found = syns.merge(synacks, on=key)
    found = found[found["syn_ts_ns"] <= found["synack_ts_ns"]]
    found = found.sort_values("syn_ts_ns", kind="stable").drop_duplicates(key, keep="last")
    # Only the ACKs that may complete one of these handshakes (their digests match; the
    # merge decides): the others are many and are left out before it.
    ack_isn = (column("tcp_seq", ack_rows) - 1) % wrap
    ack_synack_seq = (column("tcp_ack", ack_rows) - 1) % wrap
    wanted = np.isin(_digest([ack_point, ack_isn, ack_synack_seq]),
                     _digest([found[name].to_numpy() for name in (*key, "synack_seq")]))
    acks = pd.DataFrame({"point": ack_point[wanted], "isn": ack_isn[wanted],
                         "synack_seq": ack_synack_seq[wanted],
                         "ack_ts_ns": column("ts_ns", ack_rows[wanted])})
    del ack_point, ack_isn, ack_synack_seq, wanted
    found = found.merge(acks, on=[*key, "synack_seq"])
    found = found[found["ack_ts_ns"] >= found["synack_ts_ns"]]
    found = found.sort_values("ack_ts_ns", kind="stable").drop_duplicates(key)
    found = found.sort_values(["syn_ts_ns", "row"], kind="stable").reset_index(drop=True)
    rows = found["row"].to_numpy()
    table = packets[["capture", "node", "interface", "flow_id", "src", "sport", "dst",
                     "dport"]].iloc[rows].reset_index(drop=True)
    for name in ("syn_ts_ns", "synack_ts_ns", "ack_ts_ns"):
        table[name] = found[name].to_numpy()
    table["rtt_ns"] = table["ack_ts_ns"] - table["syn_ts_ns"]
    return typed_frame(table, HANDSHAKES_SCHEMA)
