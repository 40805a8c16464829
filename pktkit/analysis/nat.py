"""NAT flows found in captures, and conntrack dumps to confirm them.

A node that translates a connection (SNAT/masquerade, DNAT for a port mapping, ClusterIP or
NodePort, or both at once) shows it to the captures only one way: the same logical packet has one
5-tuple where it enters the node and another where it leaves. :func:`nat_flows` therefore needs
the packets table with ``packet_id`` and ``hop`` (the sightings of one packet and their order
along its path, as :mod:`pktkit.analysis.correlate` adds them) and, where several nodes are
captured, ``node``.

Algorithm
---------
1. Every sighting with a full 5-tuple gets a tuple: ``(proto, src, sport, dst, dport)``, where
   an ICMP/ICMPv6 echo request or reply carries its identifier (column ``icmp_id``) as both
   ports, as conntrack keys it. Sightings without one (non-first fragments, ICMP errors, other
   protocols, no ``icmp_id`` column) take no part in finding translations.
2. The sightings of each packet, in hop order, are cut into runs on one node. A run whose first
   and last tuples differ is a translation on that node (pre-NAT tuple → post-NAT tuple);
   consecutive runs on two nodes whose tuples differ show a translation between them, by a
   device that was not captured (``node`` NA).
3. A conntrack entry with original tuple O and translated tuple X rewrites the originator's
   packets O → X and the replies reverse(X) → reverse(O). Translations are grouped into
   connections by that pair (and the node), so both directions fall into one connection and two
   containers that use the same source port toward one server stay two connections (their
   pre-NAT tuples differ by the container address).
4. The originator direction is the one that carries a TCP SYN without ACK or an ICMP echo
   request; failing that, the opposite of a SYN+ACK or echo reply; failing that (UDP), the
   direction of the earliest translated packet. ``orig_*`` is the tuple the originator sent,
   ``xlat_*`` that tuple after translation; ``kind`` says what changed: the source (address or
   port; for ICMP the identifier) → ``snat``, the destination (address or port; for ICMP the
   address) → ``dnat``, both → ``snat+dnat``.
5. Every sighting of a packet that was translated gets its connection's ``nat_flow_id``;
   packets of the connection seen at one point only (so with no translation of their own) get it
   through their tuple, which is one of the connection's four (O, X, reverse X, reverse O).
   Fragments and other sightings without ports follow their ``packet_id``.

Only what the captures show: if only one side of a NAT is captured (e.g. just the host's
``eth0``), no packet is seen both before and after translation and no NAT flow is reported. A
connection translated by two nodes in turn is two NAT flows; its packets carry the id of the one
they meet first. A tuple that a later connection re-uses within the captures joins the earlier
NAT flow.

``nat_flows`` table (one row per NAT flow, ``nat_flow_id`` 1-based in order of ``first_ts_ns``)
==============  ========  ======================================================================
column          dtype     meaning
==============  ========  ======================================================================
nat_flow_id     Int64     1, 2, 3, ... in order of first_ts_ns (ties: by orig tuple)
kind            string    ``snat``, ``dnat`` or ``snat+dnat``
proto           UInt8     IP protocol (6, 17, 1, 58)
orig_src,       string,   the tuple as the originator sent it; ports of ICMP carry the echo
orig_sport,     UInt16    identifier (both the same)
orig_dst,
orig_dport
xlat_src, ...   as orig   the same direction after translation
packets         Int64     distinct packets (packet_ids) of the flow, both directions, all
                          capture points counted once
bytes           Int64     their ``wire_len`` at their first sighting (fragments summed)
first_ts_ns,    Int64     earliest / latest sighting of the flow, on the capturing nodes' own
last_ts_ns                clocks (not corrected for clock offsets)
conntrack       category  ``confirmed``, ``contradicted``, ``absent``; NA when no dump is given
node            string    the node that translates (NA: between two captured nodes)
==============  ========  ======================================================================

``NAT_FLOWS_COLUMNS`` lists the first 16 columns, those of ``nat_flows.csv``.

Conntrack dumps
---------------
Dumps are read by :mod:`pktkit.analysis.conntrack`. A NAT flow whose original tuple has an
entry (on its node, or in a dump not named after a node) is ``confirmed`` when the entry's
translated tuple equals the captured one, else ``contradicted``; with no entry it is
``absent`` (a dump is a snapshot: connections that ended before it are not in it).
:attr:`NatFlows.disagreements` lists each contradiction, and each dump entry that is
translated while the captures show that tuple crossing the node untranslated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd

from pktkit.analysis.conntrack import ConntrackArg, read_conntrack
from pktkit.analysis.tuple_keys import TupleKeys, as_strings, chunks, int_values, tuple_ints
from pktkit.analysis.tuples import TUPLE_DTYPES, Pair, Tuple5, nat_kind, reverse
from pktkit.capture.frame import empty_frame, frame_from_columns
from pktkit.errors import UsageError

_NO_NODE = -1  # node code of a translation between two nodes

NAT_FLOWS_COLUMNS = [
    "nat_flow_id", "kind", "proto",
    "orig_src", "orig_sport", "orig_dst", "orig_dport",
    "xlat_src", "xlat_sport", "xlat_dst", "xlat_dport",
    "packets", "bytes", "first_ts_ns", "last_ts_ns", "conntrack",
]
CONNTRACK_STATUS = pd.CategoricalDtype(["confirmed", "contradicted", "absent"])
_SIDES = {f"{side}_{k}": v for side in ("orig", "xlat") for k, v in TUPLE_DTYPES.items()
          if k != "proto"}
NAT_FLOWS_SCHEMA: dict[str, str | pd.CategoricalDtype] = {
    "nat_flow_id": "Int64",
    "kind": "string",
    "proto": "UInt8",
    **_SIDES,
    "packets": "Int64",
    "bytes": "Int64",
    "first_ts_ns": "Int64",
    "last_ts_ns": "Int64",
    "conntrack": CONNTRACK_STATUS,
    "node": "string",
}

# One row per disagreement between a dump and the captures (see :class:`NatFlows`).
DISAGREEMENT_REASONS = (
    "dump translates it otherwise",  # same original tuple, another translated tuple
    "dump shows it untranslated",  # same original tuple, the entry is not NATed
    "captures show it untranslated",  # a NATed entry whose tuple crossed the node unchanged
)
DISAGREEMENTS_SCHEMA: dict[str, str | pd.CategoricalDtype] = {
    "node": "string",
    "nat_flow_id": "Int64",
    "reason": pd.CategoricalDtype(list(DISAGREEMENT_REASONS)),
    "proto": "UInt8",
    **_SIDES,
    **{f"ct_{k}": v for k, v in _SIDES.items() if k.startswith("xlat_")},
    "ct_file": "string",
    "ct_line": "Int64",
}


class NatFlows(NamedTuple):
    """What :func:`nat_flows` returns.

    ``flows``: the nat_flows table (module docstring). ``packet_nat_flow_id``: Int64 Series
    aligned to the packets' index, each sighting's ``nat_flow_id`` (NA: not translated).
    ``disagreements``: ``DISAGREEMENTS_SCHEMA`` rows, one per contradicted flow and dump entry
    (``nat_flow_id``, the captured ``xlat_*`` and the dump's ``ct_xlat_*``, ``ct_file`` and
    ``ct_line`` of the entry), and one per NATed dump entry whose original tuple the captures
    show crossing its node untranslated (``nat_flow_id`` and ``xlat_*`` NA); empty without a
    dump.
    """

    flows: pd.DataFrame
    packet_nat_flow_id: pd.Series
    disagreements: pd.DataFrame


# --- NAT flows from the packets table -----------------------------------------------------------


def nat_flows(packets: pd.DataFrame, *, conntrack: ConntrackArg = None) -> NatFlows:
    """Find the NAT flows of a packets table with ``packet_id`` and ``hop``.

    Columns used: ``packet_id``, ``hop``, ``node`` (optional: one node), ``src``, ``dst``,
    ``proto``, ``sport``, ``dport``, ``icmp_type``, ``icmp_id`` (optional: without it ICMP
    echo is not followed), ``tcp_flags``, ``ts_ns``, ``wire_len``. ``conntrack``: a dump's
    path, a mapping ``{node name or None: path}`` (None: a dump that may hold any node's
    entries), or a table from :func:`read_conntrack`. See the module docstring.
    """
    missing = [c for c in ("packet_id", "hop", "src", "dst", "proto", "sport", "dport")
               if c not in packets.columns]
    if missing:
        raise UsageError(f"nat_flows: the packets table lacks {', '.join(missing)} "
                         "(run pktkit.analysis.correlate first)")
    dumps = None if conntrack is None else read_conntrack(conntrack)
    t = _Sightings(packets)
    conns = _connections(t)
    assigned = _assign(t, conns)
    flows, conn_to_id = _flow_table(t, conns, assigned)
    disagreements = empty_frame(DISAGREEMENTS_SCHEMA)
    if dumps is not None:
        _check_dump_nodes(dumps, t.all_node_names())
        status, disagreements = _compare(flows, dumps, t, assigned)
        flows["conntrack"] = pd.Categorical(status, dtype=CONNTRACK_STATUS)
    packet_numbers = t.packet
    del t  # its tuple keys: gone before the per-row result is made
    per_packet = _per_row_ids(packet_numbers, assigned, conn_to_id, packets.index)
    return NatFlows(flows, per_packet, disagreements)


def _packet_numbers(column: pd.Series) -> tuple[np.ndarray, int]:
    """Each row's packet_id as 0, 1, ... in packet_id order (-1: none), and how many there are.

    A row without packet_id (or a negative one) is a packet of its own. The numbers are int32
    (half the memory) unless the table is too long for that."""
    values, n = column.array, len(column)
    number = np.full(n, -1, np.int32 if n < 2**31 - 1 else np.int64)
    low, high = np.iinfo(np.int64).max, -1
    for rows in chunks(n):
        pid = int_values(values[rows], -1)
        pid = pid[pid >= 0]
        if len(pid):
            low, high = min(low, int(pid.min())), max(high, int(pid.max()))
    if high < 0:
        return number, 0
    # Dense ids, as correlate numbers them: an offset will do; else the rank among them all.
    distinct = None
    if high - low >= 2 * n:
        distinct = np.unique(np.concatenate([int_values(values[rows], -1) for rows in chunks(n)]))
        distinct = distinct[distinct >= 0]
    for rows in chunks(n):
        pid = int_values(values[rows], -1)
        found = pid >= 0
        part = number[rows]  # a view: filled in place
        part[found] = (pid[found] - low if distinct is None
                       else np.searchsorted(distinct, pid[found]))
    return number, high - low + 1 if distinct is None else len(distinct)


def _changing_packet_rows(key: np.ndarray, packet: np.ndarray, count: int) -> np.ndarray:
    """The rows with a tuple of the packets seen with more than one tuple (ascending): only
    these can show a translation."""
    if count == 0:
        return np.zeros(0, np.int64)
    seen = np.full(count, -1, np.int64)  # one of each packet's tuple keys, whichever
    for rows in chunks(len(key)):
        p, k = packet[rows], key[rows]
        ok = (p >= 0) & (k >= 0)
        seen[p[ok]] = k[ok]
    changing = np.zeros(count, bool)
    for rows in chunks(len(key)):
        p, k = packet[rows], key[rows]
        ok = (p >= 0) & (k >= 0)
        p, k = p[ok], k[ok]
        changing[p[k != seen[p]]] = True
    found = []
    for rows in chunks(len(key)):
        p = packet[rows]
        ok = (p >= 0) & (key[rows] >= 0)
        found.append(rows.start + np.flatnonzero(ok & changing[np.maximum(p, 0)]))
    return np.concatenate(found) if found else np.zeros(0, np.int64)


class _Sightings:
    """What finding translations needs from the packets table, as numpy arrays.

    Every row gets a packet number and a tuple key, the only per-row state; the other columns are
    read just for the rows that need them, the rows of packets seen with two tuples or more."""

    def __init__(self, packets: pd.DataFrame) -> None:
        self.packets = packets
        self.n = len(packets)
        self.keys = TupleKeys(packets)
        self.key = self.keys.key
        self.packet, self.packet_count = _packet_numbers(packets["packet_id"])
        rows = _changing_packet_rows(self.key, self.packet, self.packet_count)
        # Sightings with a tuple of those packets in path order: packet, hop, then time.
        order = np.lexsort((self.ints_at("ts_ns", rows, -1), self.ints_at("hop", rows, 0),
                            self.packet[rows]))
        self.rows = rows[order]
        self.node, self.node_names = self.nodes_at(self.rows)  # node aligned to self.rows

    def ints_at(self, name: str, rows: np.ndarray, na_value: int) -> np.ndarray:
        if name not in self.packets.columns:
            return np.full(len(rows), na_value, np.int64)
        return int_values(self.packets[name].array[rows], na_value)

    def nodes_at(self, rows: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Node codes of some rows and the names of the codes (None: NA or empty)."""
        if "node" not in self.packets.columns:
            return np.zeros(len(rows), np.int64), [None]
        codes, names = pd.factorize(as_strings(self.packets["node"].array[rows]).fillna(""))
        return codes.astype(np.int64), [name or None for name in names]

    def all_node_names(self) -> list[str | None]:
        if "node" not in self.packets.columns:
            return []
        return [name or None for name in as_strings(self.packets["node"].array.unique()).dropna()]

    def tuples_at(self, rows: np.ndarray) -> list[Tuple5]:
        proto, sport, dport, _, _ = tuple_ints(self.packets, rows)
        # One str object per distinct address, not one per row.
        address: dict[str, str] = {}
        src, dst = ([address.setdefault(a, a) for a in as_strings(self.packets[c].array[rows])
                     .tolist()] for c in ("src", "dst"))
        return list(zip(proto.tolist(), src, sport.tolist(), dst, dport.tolist(), strict=True))

    def opener_answer_at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Who opened the connection: SYN without ACK or echo request; SYN+ACK or echo reply
        are the responder's."""
        proto, _, _, request, reply = tuple_ints(self.packets, rows)
        flags = self.ints_at("tcp_flags", rows, 0)
        tcp = proto == 6
        return ((tcp & ((flags & 0x12) == 0x02)) | request,
                (tcp & ((flags & 0x12) == 0x12)) | reply)


class _Connections(NamedTuple):
    orig: list[Tuple5]
    xlat: list[Tuple5]
    node: list[int]  # node code, _NO_NODE between nodes
    # per translation event: row (pre-NAT sighting), connection
    event_row: np.ndarray
    event_conn: np.ndarray


class _Events(NamedTuple):
    """Translation events in path order (a packet's first translation first)."""

    pre_row: np.ndarray  # the sighting before the translation
    post_row: np.ndarray  # the sighting after it
    pre: np.ndarray  # their tuple keys
    post: np.ndarray
    node: np.ndarray  # node code of the translating node, _NO_NODE between nodes


def _translation_events(t: _Sightings) -> _Events:
    """Step 2 of the module docstring."""
    rows = t.rows
    if not len(rows):
        none = np.zeros(0, np.int64)
        return _Events(none, none, none, none, none)
    pid, node, code = t.packet[rows], t.node, t.key[rows]
    new_packet = np.ones(len(rows), bool)
    new_packet[1:] = pid[1:] != pid[:-1]
    new_run = new_packet.copy()
    new_run[1:] |= node[1:] != node[:-1]
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(rows)) - 1
    # Inside a node: the run's first tuple against its last.
    inside = code[starts] != code[ends]
    # Between two nodes: the last tuple on one against the first on the next.
    between = np.flatnonzero(new_run & ~new_packet)
    between = between[code[between] != code[between - 1]]
    pre_i = np.concatenate([starts[inside], between - 1])
    post_i = np.concatenate([ends[inside], between])
    ev_node = np.concatenate([node[starts[inside]], np.full(len(between), _NO_NODE)])
    path_order = np.argsort(pre_i, kind="stable")  # a packet's first translation first
    pre_i, post_i = pre_i[path_order], post_i[path_order]
    return _Events(rows[pre_i], rows[post_i], code[pre_i], code[post_i], ev_node[path_order])


def _connections(t: _Sightings) -> _Connections:
    """Translations (steps 2-4 of the module docstring) grouped into connections."""
    events = _translation_events(t)
    ev_rows, ev_pre, ev_post, ev_node = events.pre_row, events.pre, events.post, events.node
    if not len(ev_rows):
        return _Connections([], [], [], ev_rows, np.zeros(0, np.int64))
    # The tuple of each key involved, read from one row that has it.
    keys, first = np.unique(np.concatenate([ev_pre, ev_post]), return_index=True)
    tuple_of = dict(zip(keys.tolist(),
                        t.tuples_at(np.concatenate([ev_rows, events.post_row])[first]),
                        strict=True))
    del events, keys, first
    opener, answer = t.opener_answer_at(ev_rows)
    # One Python step per distinct (node, pre, post), not per packet.
    events = pd.DataFrame({"node": ev_node, "pre": ev_pre, "post": ev_post,
                           "ts": t.ints_at("ts_ns", ev_rows, -1), "opener": opener,
                           "answer": answer})
    grouped = events.groupby(["node", "pre", "post"], sort=False)
    pairs = grouped.agg(ts=("ts", "min"), opener=("opener", "any"), answer=("answer", "any"))
    pair_index = grouped.ngroup().to_numpy()
    by_key: dict[tuple[int, Pair], list[int]] = {}
    observed: list[Pair] = []
    pair_keys = zip(*(pairs.index.get_level_values(level).tolist() for level in range(3)),
                    strict=True)
    for i, (n, pre, post) in enumerate(pair_keys):
        p, q = tuple_of[pre], tuple_of[post]
        observed.append((p, q))
        # A reply shows reverse(X) → reverse(O): both directions give one key.
        by_key.setdefault((n, min((p, q), (reverse(q), reverse(p)))), []).append(i)
    pair_conn = np.zeros(len(pairs), np.int64)
    orig: list[Tuple5] = []
    xlat: list[Tuple5] = []
    nodes: list[int] = []
    ts, opener, answer = (pairs[c].to_numpy() for c in ("ts", "opener", "answer"))
    for (n, _), members in by_key.items():
        o, x = _orient([observed[i] for i in members], ts[members], opener[members],
                       answer[members])
        for i in members:
            pair_conn[i] = len(orig)
        orig.append(o)
        xlat.append(x)
        nodes.append(n)
    return _Connections(orig, xlat, nodes, ev_rows, pair_conn[pair_index])


def _orient(observed: list[Pair], ts: np.ndarray, opener: np.ndarray,
            answer: np.ndarray) -> Pair:
    """(orig, xlat) of one connection from its observed (pre, post) pairs."""
    if opener.any():  # the earliest pair that carries an opener is the originator's
        i, forward = min(np.flatnonzero(opener), key=lambda j: ts[j]), True
    elif answer.any():
        i, forward = min(np.flatnonzero(answer), key=lambda j: ts[j]), False
    else:
        i = int(np.argmin(ts))
        # One direction seen, nothing says which: a well-known source port toward an
        # ephemeral one is a server's reply (a DNS answer whose query was not captured).
        pre = observed[i][0]
        forward = len(observed) > 1 or not (pre[2] < 1024 <= pre[4])
    pre, post = observed[i]
    return (pre, post) if forward else (reverse(post), reverse(pre))


class _Assigned(NamedTuple):
    """Which connection each row belongs to (-1: none), by packet and, for rows without a
    packet_id, by row."""

    packet_conn: np.ndarray  # per packet number (one slot more, never used, when none)
    lone_rows: np.ndarray  # ascending
    lone_conn: np.ndarray

    def at(self, packet_numbers: np.ndarray, rows: slice) -> np.ndarray:
        packet = packet_numbers[rows]
        conn = np.where(packet >= 0, self.packet_conn[np.maximum(packet, 0)], -1)
        lo, hi = np.searchsorted(self.lone_rows, [rows.start, rows.stop])
        conn[self.lone_rows[lo:hi] - rows.start] = self.lone_conn[lo:hi]
        return conn


def _assign(t: _Sightings, conns: _Connections) -> _Assigned:
    """The connection of every row of the packets table (step 5 of the module docstring)."""
    packet_conn = np.full(max(t.packet_count, 1), -1, np.int64)
    none = np.zeros(0, np.int64)
    if not conns.orig:
        return _Assigned(packet_conn, none, none)
    # A translated packet: its first translation (events are in path order per packet).
    translated, first = np.unique(t.packet[conns.event_row], return_index=True)
    packet_conn[translated] = conns.event_conn[first]
    # A packet seen at one point only: through its tuple, one of the connection's four (the
    # first connection that has it).
    keys = t.keys.keys_of([tup for o, x in zip(conns.orig, conns.xlat, strict=True)
                           for tup in (o, x, reverse(x), reverse(o))])
    conn_of_tuple = np.repeat(np.arange(len(conns.orig)), 4)[keys >= 0]
    known_keys, first_of_key = np.unique(keys[keys >= 0], return_index=True)
    known = pd.Index(known_keys)
    conn_of_known = conn_of_tuple[first_of_key]
    hit_rows, hit_conn = [], []
    for rows in chunks(t.n):
        at = known.get_indexer(t.key[rows])
        hit = np.flatnonzero(at >= 0)
        hit_rows.append(rows.start + hit)
        hit_conn.append(conn_of_known[at[hit]])
    rows, conn = np.concatenate(hit_rows), np.concatenate(hit_conn)
    packet = t.packet[rows]
    lone = packet < 0
    # The first hit in path order of each packet not translated itself.
    pending = ~lone & (packet_conn[np.maximum(packet, 0)] < 0)
    rows, conn, packet = rows[pending], conn[pending], packet[pending]
    order = np.lexsort((t.ints_at("ts_ns", rows, -1), t.ints_at("hop", rows, 0), packet))
    found, first = np.unique(packet[order], return_index=True)
    packet_conn[found] = conn[order[first]]
    return _Assigned(packet_conn, np.concatenate(hit_rows)[lone],
                     np.concatenate(hit_conn)[lone])


def _per_row_ids(packet_numbers: np.ndarray, assigned: _Assigned, conn_to_id: np.ndarray,
                 index: pd.Index) -> pd.Series:
    """Each row's nat_flow_id (NA: not translated), filled chunk by chunk."""
    n = len(packet_numbers)
    ids = np.zeros(n, np.int64)
    missing = np.ones(n, bool)
    if len(assigned.lone_rows) or (assigned.packet_conn >= 0).any():
        for rows in chunks(n):
            conn = assigned.at(packet_numbers, rows)
            ids[rows] = conn_to_id[np.maximum(conn, 0)]
            missing[rows] = conn < 0
    return pd.Series(pd.arrays.IntegerArray(ids, missing), index=index, name="nat_flow_id",
                     copy=False)


def _rows_of_connections(t: _Sightings, assigned: _Assigned
                         ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunk by chunk of the table: the rows that belong to a connection, and their connection."""
    for rows in chunks(t.n):
        conn = assigned.at(t.packet, rows)
        hit = np.flatnonzero(conn >= 0)
        yield rows.start + hit, conn[hit]


def _per_connection(t: _Sightings, assigned: _Assigned, k: int) -> pd.DataFrame:
    """Per connection: ``packets`` (distinct packets), ``bytes`` (each packet's wire_len at its
    first sighting, all its fragments there), ``first`` and ``last`` ts_ns (NA: none known);
    all NA for a connection that no row kept."""
    packet_conn = assigned.packet_conn[:t.packet_count]
    # A row without packet_id is a packet of its own.
    packets = (np.bincount(packet_conn[packet_conn >= 0], minlength=k)
               + np.bincount(assigned.lone_conn, minlength=k))
    first = np.full(k, np.iinfo(np.int64).max)
    last = np.full(k, np.iinfo(np.int64).min)
    timed = np.zeros(k, bool)
    first_hop = np.full(max(t.packet_count, 1), np.iinfo(np.int64).max)  # per packet
    for rows, conn in _rows_of_connections(t, assigned):
        ts = t.ints_at("ts_ns", rows, -1)
        known = ts >= 0
        np.minimum.at(first, conn[known], ts[known])
        np.maximum.at(last, conn[known], ts[known])
        timed[conn[known]] = True
        packet = t.packet[rows]
        real = packet >= 0
        np.minimum.at(first_hop, packet[real], t.ints_at("hop", rows, 0)[real])
    sizes = np.zeros(k, np.int64)
    for rows, conn in _rows_of_connections(t, assigned):
        packet = t.packet[rows]
        at_first = (packet < 0) | (t.ints_at("hop", rows, 0) == first_hop[np.maximum(packet, 0)])
        np.add.at(sizes, conn[at_first], t.ints_at("wire_len", rows, 0)[at_first])
    kept = packets > 0
    return pd.DataFrame({"packets": pd.arrays.IntegerArray(packets, ~kept),
                         "first": pd.arrays.IntegerArray(first, ~timed),
                         "last": pd.arrays.IntegerArray(last, ~timed),
                         "bytes": pd.arrays.IntegerArray(sizes, ~kept)})


def _flow_table(t: _Sightings, conns: _Connections,
                assigned: _Assigned) -> tuple[pd.DataFrame, np.ndarray]:
    """The nat_flows table and the map connection index → nat_flow_id."""
    k = len(conns.orig)
    if k == 0:
        return empty_frame(NAT_FLOWS_SCHEMA), np.zeros(1, np.int64)
    per = _per_connection(t, assigned, k)
    missing = per["first"].isna().to_numpy()
    first = per["first"].fillna(0).to_numpy(np.int64)
    order = sorted(range(k), key=lambda c: (missing[c], first[c], conns.orig[c]))
    conn_to_id = np.zeros(k, np.int64)
    conn_to_id[order] = np.arange(1, k + 1)
    data: dict[str, list | pd.Series | np.ndarray] = {c: [] for c in NAT_FLOWS_SCHEMA}
    for c in order:
        o, x = conns.orig[c], conns.xlat[c]
        data["kind"].append(nat_kind(o, x))
        data["proto"].append(o[0])
        for side, tup in (("orig", o), ("xlat", x)):
            for name, value in zip(("src", "sport", "dst", "dport"), tup[1:], strict=True):
                data[f"{side}_{name}"].append(value)
        data["node"].append(None if conns.node[c] == _NO_NODE
                            else t.node_names[conns.node[c]])
    per = per.iloc[order]
    data |= {"nat_flow_id": np.arange(1, k + 1), "packets": per["packets"],
             "bytes": per["bytes"], "first_ts_ns": per["first"], "last_ts_ns": per["last"],
             "conntrack": [None] * k}
    return frame_from_columns(data, NAT_FLOWS_SCHEMA), conn_to_id


def _check_dump_nodes(dumps: pd.DataFrame, node_names: list[str | None]) -> None:
    known = {n for n in node_names if n}
    named = set(dumps["node"].dropna().unique())
    if known and named - known:
        raise UsageError(f"conntrack dump for node {sorted(named - known)[0]!r}: no capture "
                         f"of that node (nodes: {', '.join(sorted(known))})")


_ORIG = ["proto", "orig_src", "orig_sport", "orig_dst", "orig_dport"]
_XLAT = ["xlat_src", "xlat_sport", "xlat_dst", "xlat_dport"]


def _compare(flows: pd.DataFrame, dumps: pd.DataFrame, t: _Sightings,
             assigned: _Assigned) -> tuple[list[str], pd.DataFrame]:
    """Each flow's conntrack status, and the disagreements table."""
    entries = dumps.rename(columns={"node": "ct_node", "file": "ct_file", "line": "ct_line",
                                    **{c: f"ct_{c}" for c in _XLAT}})
    keyed = flows[[*_ORIG, *_XLAT, "nat_flow_id", "node"]]
    match = keyed.merge(entries[[*_ORIG, *(f"ct_{c}" for c in _XLAT), "ct_node", "ct_file",
                                 "ct_line", "kind"]], on=_ORIG, how="inner")
    # An entry counts for a flow on its node; a dump without a node name for any flow.
    same_node = match["ct_node"].isna() | match["node"].isna() | (
        match["ct_node"] == match["node"])
    match = match[same_node.fillna(False).to_numpy(bool)]
    agrees = np.ones(len(match), bool)
    for c in _XLAT:
        agrees &= (match[c] == match[f"ct_{c}"]).fillna(False).to_numpy(bool)
    match = match.assign(agrees=agrees)
    confirmed = set(match.loc[match["agrees"], "nat_flow_id"])
    seen = set(match["nat_flow_id"])
    status = ["confirmed" if f in confirmed else "contradicted" if f in seen else "absent"
              for f in flows["nat_flow_id"]]
    wrong = match[~match["nat_flow_id"].isin(confirmed)]
    rows: dict[str, list] = {c: [] for c in DISAGREEMENTS_SCHEMA}
    for r in wrong.itertuples(index=False):
        _disagreement(rows, r, r.node, r.nat_flow_id,
                      DISAGREEMENT_REASONS[0] if pd.notna(r.kind) else DISAGREEMENT_REASONS[1],
                      captured=True)
    # NATed entries whose original tuple the captures show crossing its node untranslated.
    matched_lines = set(zip(match["ct_file"], match["ct_line"], strict=True))
    unmatched = [r for r in entries[entries["kind"].notna()].itertuples(index=False)
                 if (r.ct_file, r.ct_line) not in matched_lines]
    pre_nat: list[Tuple5] = []  # per entry: the pre-NAT tuples of both directions
    for r in unmatched:
        orig = (int(r.proto), r.orig_src, _na(r.orig_sport), r.orig_dst, _na(r.orig_dport))
        xlat = (int(r.proto), r.ct_xlat_src, _na(r.ct_xlat_sport), r.ct_xlat_dst,
                _na(r.ct_xlat_dport))
        pre_nat += [orig, reverse(xlat)]
    pre_nat_keys = t.keys.keys_of(pre_nat).reshape(-1, 2).tolist()
    untranslated = _untranslated_transits(t, assigned, {k for keys in pre_nat_keys for k in keys})
    for r, keys in zip(unmatched, pre_nat_keys, strict=True):
        for key in keys:
            nodes = untranslated.get(key, set())
            node = None if pd.isna(r.ct_node) else r.ct_node
            if nodes and (node is None or node in nodes):
                where = node if node is not None else next(iter(sorted(nodes, key=str)))
                _disagreement(rows, r, where, None, DISAGREEMENT_REASONS[2], captured=False)
                break
    return status, frame_from_columns(rows, DISAGREEMENTS_SCHEMA)


def _na(value: object) -> int | None:
    return None if pd.isna(value) else int(value)


def _disagreement(rows: dict[str, list], r: object, node: object, flow: object, reason: str,
                  *, captured: bool) -> None:
    rows["node"].append(None if node is None or pd.isna(node) else node)
    rows["nat_flow_id"].append(flow)
    rows["reason"].append(reason)
    for c in _ORIG:
        rows[c].append(getattr(r, c))
    for c in _XLAT:
        rows[c].append(getattr(r, c) if captured else None)
        rows[f"ct_{c}"].append(getattr(r, f"ct_{c}"))
    rows["ct_file"].append(r.ct_file)
    rows["ct_line"].append(r.ct_line)


def _untranslated_transits(t: _Sightings, assigned: _Assigned,
                           keys: set[int]) -> dict[int, set[str | None]]:
    """Tuple key → nodes a packet of no NAT flow crossed with that tuple unchanged (two
    sightings or more on the node, in and out). Only packets seen with one of ``keys`` are
    looked at (the map may hold other keys too)."""
    keys = {key for key in keys if key >= 0}
    if not keys or t.packet_count == 0:
        return {}
    wanted = pd.Index(np.fromiter(keys, np.int64, len(keys)))
    touched = np.zeros(t.packet_count, bool)
    for rows in chunks(t.n):
        packet = t.packet[rows]
        touched[packet[(wanted.get_indexer(t.key[rows]) >= 0) & (packet >= 0)]] = True
    touched &= assigned.packet_conn[:t.packet_count] < 0
    found = []
    for rows in chunks(t.n):
        packet = t.packet[rows]
        ok = (packet >= 0) & (t.key[rows] >= 0)
        found.append(rows.start + np.flatnonzero(ok & touched[np.maximum(packet, 0)]))
    rows = np.concatenate(found)
    node, node_names = t.nodes_at(rows)
    frame = pd.DataFrame({"pid": t.packet[rows], "node": node, "code": t.key[rows]})
    runs = frame.groupby(["pid", "node"]).agg(n=("code", "size"), codes=("code", "nunique"),
                                              code=("code", "first"))
    runs = runs[(runs["n"] >= 2) & (runs["codes"] == 1)].reset_index()
    out: dict[int, set[str | None]] = {}
    for code, node in zip(runs["code"].tolist(), runs["node"].tolist(), strict=True):
        out.setdefault(code, set()).add(node_names[node])
    return out
