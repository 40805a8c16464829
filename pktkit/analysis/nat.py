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

    The steps are those of a run over partitions of whole packets, on one partition:
    :func:`observe_translations` (map), :func:`merge_translations` (merge: the connections),
    :func:`count_connections` (map: rows assigned, per-connection counts, the dumps' tuples
    seen untranslated), :func:`nat_flow_table` (merge: the table, the dumps' verdicts) and
    :func:`apply_nat_flow_ids` (apply: each row's ``nat_flow_id``).
    """
    missing = [c for c in ("packet_id", "hop", "src", "dst", "proto", "sport", "dport")
               if c not in packets.columns]
    if missing:
        raise UsageError(f"nat_flows: the packets table lacks {', '.join(missing)} "
                         "(run pktkit.analysis.correlate first)")
    dumps = None if conntrack is None else read_conntrack(conntrack)
    seen = observe_translations(packets)
    connections = merge_translations([seen.partial])
    counted = count_connections(seen, connections, dump_tuples(connections, dumps))
    del seen  # its tuple keys: gone before the per-row result is made
    table = nat_flow_table([counted.partial], connections, dumps)
    return NatFlows(table.flows, apply_nat_flow_ids(counted, table), table.disagreements)


# --- in parts: partitions of whole packets -----------------------------------------------------

_BETWEEN = "\0"  # the node key of a translation between two captured nodes


class Observed(NamedTuple):
    """What one partition shows of translations (map 1). ``partial`` crosses to the client:
    one row per distinct (node, pre-NAT tuple, post-NAT tuple) of its packets — ``node``
    (name; "" unnamed; ``_BETWEEN``), ``pre``, ``post`` (tuples), ``ts`` (earliest),
    ``opener``, ``answer`` (any), ``packet_id`` and ``step`` (where its first event is in
    path order: the packet, the place among its sightings). Its size: the connections it
    sees, not its rows. ``sightings`` and ``events`` stay with the partition."""

    partial: pd.DataFrame
    sightings: _Sightings
    events: _Events


class Connections(NamedTuple):
    """The connections of all partitions (merge 1), in the order one table finds them:
    ``orig``, ``xlat`` (tuples), ``node`` (key as in :class:`Observed`) and ``of_pair``:
    (node, pre, post) → connection index. Its size: the connections' pairs."""

    orig: list[Tuple5]
    xlat: list[Tuple5]
    node: list[str]
    of_pair: dict[tuple[str, Tuple5, Tuple5], int]


class Counted(NamedTuple):
    """Map 2 of one partition. ``partial`` crosses to the client: per connection it touches
    (``conn``) its ``packets``, ``bytes``, ``first``, ``last`` (NA: none), plus
    ``untranslated`` (dump tuple → nodes it crossed unchanged) and ``nodes`` (the node names
    it holds). ``packet`` and ``assigned`` stay for :func:`apply_nat_flow_ids`."""

    partial: CountedPartial
    packet: np.ndarray
    assigned: _Assigned
    index: pd.Index


class CountedPartial(NamedTuple):
    per_connection: pd.DataFrame
    untranslated: dict[Tuple5, set[str | None]]
    nodes: list[str | None]


class NatTable(NamedTuple):
    """Merge 2: the nat_flows table, the disagreements and connection index → nat_flow_id."""

    flows: pd.DataFrame
    disagreements: pd.DataFrame
    conn_to_id: np.ndarray


def observe_translations(packets: pd.DataFrame) -> Observed:
    """Map 1 over one partition of whole packets: its translations (steps 1-2 of the
    module docstring)."""
    t = _Sightings(packets)
    events = _translation_events(t)
    columns = ["node", "pre", "post", "ts", "opener", "answer", "packet_id", "step"]
    if not len(events.pre_row):
        return Observed(pd.DataFrame({c: [] for c in columns}), t, events)
    keys, first = np.unique(np.concatenate([events.pre, events.post]), return_index=True)
    tuple_of = dict(zip(keys.tolist(),
                        t.tuples_at(np.concatenate([events.pre_row, events.post_row])[first]),
                        strict=True))
    opener, answer = t.opener_answer_at(events.pre_row)
    frame = pd.DataFrame({"node": events.node, "pre": events.pre, "post": events.post,
                          "ts": t.ints_at("ts_ns", events.pre_row, -1), "opener": opener,
                          "answer": answer,
                          "packet_id": t.ints_at("packet_id", events.pre_row, -1),
                          "step": events.step})
    # events are in path order: each pair's first event is its first row
    pairs = frame.groupby(["node", "pre", "post"], sort=False).agg(
        ts=("ts", "min"), opener=("opener", "any"), answer=("answer", "any"),
        packet_id=("packet_id", "first"), step=("step", "first")).reset_index()
    names = [_BETWEEN if n == _NO_NODE else (t.node_names[n] or "")
             for n in pairs["node"].tolist()]
    pairs["node"] = names
    pairs["pre"] = [tuple_of[k] for k in pairs["pre"].tolist()]
    pairs["post"] = [tuple_of[k] for k in pairs["post"].tolist()]
    return Observed(pairs[columns], t, events)


def merge_translations(partials: list[pd.DataFrame]) -> Connections:
    """Merge 1 (client): the pairs of every partition, grouped into connections and
    oriented (steps 3-4 of the module docstring), in the order one table would find them
    (its packets in packet_id order)."""
    merged: dict[tuple[str, Tuple5, Tuple5], list] = {}
    for partial in partials:
        for node, pre, post, ts, opener, answer, packet, step in partial.itertuples(
                index=False, name=None):
            known = merged.get((node, pre, post))
            if known is None:
                merged[(node, pre, post)] = [ts, opener, answer, (packet, step)]
            else:
                known[0] = min(known[0], ts)
                known[1], known[2] = known[1] or opener, known[2] or answer
                known[3] = min(known[3], (packet, step))
    pairs = sorted(merged.items(), key=lambda item: item[1][3])
    by_key: dict[tuple[str, Pair], list[int]] = {}
    for i, ((node, p, q), _) in enumerate(pairs):
        # A reply shows reverse(X) → reverse(O): both directions give one key.
        by_key.setdefault((node, min((p, q), (reverse(q), reverse(p)))), []).append(i)
    ts = np.array([v[0] for _, v in pairs], np.int64)
    opener = np.array([bool(v[1]) for _, v in pairs], bool)
    answer = np.array([bool(v[2]) for _, v in pairs], bool)
    found = Connections([], [], [], {})
    for (node, _), members in by_key.items():
        o, x = _orient([(pairs[i][0][1], pairs[i][0][2]) for i in members], ts[members],
                       opener[members], answer[members])
        for i in members:
            found.of_pair[pairs[i][0]] = len(found.orig)
        found.orig.append(o)
        found.xlat.append(x)
        found.node.append(node)
    return found


def count_connections(seen: Observed, connections: Connections,
                      check: list[Tuple5]) -> Counted:
    """Map 2 over one partition: each row's connection (step 5 of the module docstring),
    per connection its packets, bytes and time span, and which of the dumps' tuples
    ``check`` (:func:`dump_tuples`) its packets of no NAT flow carried unchanged across a
    node."""
    t, events = seen.sightings, seen.events
    # each event's connection: looked up once per distinct (node, pre, post) of the partition
    pair, first = _first_of_each(events)
    pre_tuple = t.tuples_at(events.pre_row[first]) if len(first) else []
    post_tuple = t.tuples_at(events.post_row[first]) if len(first) else []
    pair_conn = np.array([connections.of_pair[(
        _BETWEEN if n == _NO_NODE else (t.node_names[n] or ""), p, q)]
        for n, p, q in zip(events.node[first].tolist(), pre_tuple, post_tuple, strict=True)],
        np.int64)
    event_conn = pair_conn[pair] if len(first) else np.zeros(0, np.int64)
    conns = _Connections(connections.orig, connections.xlat,
                         [0] * len(connections.orig), events.pre_row, event_conn)
    assigned = _assign(t, conns)
    k = len(connections.orig)
    per = _per_connection(t, assigned, k) if k else pd.DataFrame(
        {c: pd.array([], "Int64") for c in ("packets", "first", "last", "bytes")})
    touched = per["packets"].notna() | per["first"].notna()
    per = per[touched.to_numpy()].assign(conn=np.flatnonzero(touched.to_numpy()))
    keys = t.keys.keys_of(check) if check else np.zeros(0, np.int64)
    tuple_of_key = {int(key): tup for key, tup in zip(keys.tolist(), check, strict=True)
                    if key >= 0}
    untranslated = {tuple_of_key[key]: nodes for key, nodes in
                    _untranslated_transits(t, assigned, set(tuple_of_key)).items()}
    return Counted(CountedPartial(per.reset_index(drop=True), untranslated,
                                  t.all_node_names()),
                   t.packet, assigned, t.packets.index)


def _first_of_each(events: _Events) -> tuple[np.ndarray, np.ndarray]:
    """Each event's (node, pre, post) pair number, and each pair's first event."""
    if not len(events.pre_row):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = pd.DataFrame({"node": events.node, "pre": events.pre, "post": events.post})
    pair = pairs.groupby(["node", "pre", "post"], sort=False).ngroup().to_numpy()
    return pair, np.unique(pair, return_index=True)[1]


def dump_tuples(connections: Connections, dumps: pd.DataFrame | None) -> list[Tuple5]:
    """The pre-NAT tuples (both directions) of the dumps' NATed entries that match no
    connection: those whose crossing untranslated map 2 looks for."""
    if dumps is None:
        return []
    return [tup for entry in _unmatched_entries(_connection_frame(connections), dumps)
            for tup in _pre_nat(entry)]


def nat_flow_table(partials: list[CountedPartial], connections: Connections,
                   dumps: pd.DataFrame | None) -> NatTable:
    """Merge 2 (client): the nat_flows table in nat_flow_id order and, given dumps, each
    flow's verdict and the disagreements."""
    k = len(connections.orig)
    per = _merged_counts([p.per_connection for p in partials], k)
    flows, conn_to_id = _flow_table(connections, per)
    disagreements = empty_frame(DISAGREEMENTS_SCHEMA)
    if dumps is not None:
        _check_dump_nodes(dumps, list(dict.fromkeys(n for p in partials for n in p.nodes)))
        untranslated: dict[Tuple5, set[str | None]] = {}
        for p in partials:
            for tup, nodes in p.untranslated.items():
                untranslated.setdefault(tup, set()).update(nodes)
        status, disagreements = _compare(flows, dumps, untranslated)
        flows["conntrack"] = pd.Categorical(status, dtype=CONNTRACK_STATUS)
    return NatTable(flows, disagreements, conn_to_id)


def apply_nat_flow_ids(counted: Counted, table: NatTable) -> pd.Series:
    """Apply (per partition): each row's ``nat_flow_id`` (NA: not translated)."""
    return _per_row_ids(counted.packet, counted.assigned, table.conn_to_id, counted.index)


def _merged_counts(parts: list[pd.DataFrame], k: int) -> pd.DataFrame:
    """Per connection: packets and bytes summed over the partitions, first and last their
    extremes (NA where no partition had any)."""
    every = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {c: pd.array([], "Int64") for c in ("packets", "first", "last", "bytes", "conn")})
    grouped = every.groupby("conn")
    merged = pd.DataFrame({"packets": grouped["packets"].sum(min_count=1),
                           "first": grouped["first"].min(), "last": grouped["last"].max(),
                           "bytes": grouped["bytes"].sum(min_count=1)})
    return merged.reindex(range(k)).astype("Int64").reset_index(drop=True)


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
    step: np.ndarray  # the pre-NAT sighting's place among its packet's sightings (path order)


def _translation_events(t: _Sightings) -> _Events:
    """Step 2 of the module docstring."""
    rows = t.rows
    if not len(rows):
        none = np.zeros(0, np.int64)
        return _Events(none, none, none, none, none, none)
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
    packet_start = np.maximum.accumulate(np.where(new_packet, np.arange(len(rows)), 0))
    return _Events(rows[pre_i], rows[post_i], code[pre_i], code[post_i], ev_node[path_order],
                   pre_i - packet_start[pre_i])


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


def _flow_table(conns: Connections, per: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The nat_flows table and the map connection index → nat_flow_id."""
    k = len(conns.orig)
    if k == 0:
        return empty_frame(NAT_FLOWS_SCHEMA), np.zeros(1, np.int64)
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
        data["node"].append(None if conns.node[c] in (_BETWEEN, "") else conns.node[c])
    per = per.iloc[order]
    data |= {"nat_flow_id": np.arange(1, k + 1), "packets": per["packets"],
             "bytes": per["bytes"], "first_ts_ns": per["first"], "last_ts_ns": per["last"],
             "conntrack": [None] * k}
    return frame_from_columns(data, NAT_FLOWS_SCHEMA), conn_to_id


def _connection_frame(conns: Connections) -> pd.DataFrame:
    """The connections' orig/xlat tuples and node, as the nat_flows table has them (for
    matching dump entries before the table is made)."""
    data: dict[str, list] = {c: [] for c in [*_ORIG, *_XLAT, "node"]}
    for o, x, node in zip(conns.orig, conns.xlat, conns.node, strict=True):
        for name, value in zip(_ORIG, o, strict=True):
            data[name].append(value)
        for name, value in zip(_XLAT, x[1:], strict=True):
            data[name].append(value)
        data["node"].append(None if node in (_BETWEEN, "") else node)
    return frame_from_columns(data, {c: NAT_FLOWS_SCHEMA[c] for c in data})


def _check_dump_nodes(dumps: pd.DataFrame, node_names: list[str | None]) -> None:
    known = {n for n in node_names if n}
    named = set(dumps["node"].dropna().unique())
    if known and named - known:
        raise UsageError(f"conntrack dump for node {sorted(named - known)[0]!r}: no capture "
                         f"of that node (nodes: {', '.join(sorted(known))})")


_ORIG = ["proto", "orig_src", "orig_sport", "orig_dst", "orig_dport"]
_XLAT = ["xlat_src", "xlat_sport", "xlat_dst", "xlat_dport"]


def _entries(dumps: pd.DataFrame) -> pd.DataFrame:
    return dumps.rename(columns={"node": "ct_node", "file": "ct_file", "line": "ct_line",
                                 **{c: f"ct_{c}" for c in _XLAT}})


def _matches(flows: pd.DataFrame, entries: pd.DataFrame) -> pd.DataFrame:
    """The dump entries with a flow's original tuple, on its node (an entry of a dump
    without a node name: any flow's), and whether they translate it as captured."""
    keyed = flows[[*_ORIG, *_XLAT, *(["nat_flow_id"] if "nat_flow_id" in flows else []),
                   "node"]]
    match = keyed.merge(entries[[*_ORIG, *(f"ct_{c}" for c in _XLAT), "ct_node", "ct_file",
                                 "ct_line", "kind"]], on=_ORIG, how="inner")
    same_node = match["ct_node"].isna() | match["node"].isna() | (
        match["ct_node"] == match["node"])
    match = match[same_node.fillna(False).to_numpy(bool)]
    agrees = np.ones(len(match), bool)
    for c in _XLAT:
        agrees &= (match[c] == match[f"ct_{c}"]).fillna(False).to_numpy(bool)
    return match.assign(agrees=agrees)


def _unmatched_entries(flows: pd.DataFrame, dumps: pd.DataFrame) -> list:
    """The NATed dump entries no flow matches (as rows of :func:`_entries`)."""
    entries = _entries(dumps)
    match = _matches(flows, entries)
    matched_lines = set(zip(match["ct_file"], match["ct_line"], strict=True))
    return [r for r in entries[entries["kind"].notna()].itertuples(index=False)
            if (r.ct_file, r.ct_line) not in matched_lines]


def _pre_nat(r: object) -> list[Tuple5]:
    """A dump entry's pre-NAT tuples of both directions."""
    orig = (int(r.proto), r.orig_src, _na(r.orig_sport), r.orig_dst, _na(r.orig_dport))
    xlat = (int(r.proto), r.ct_xlat_src, _na(r.ct_xlat_sport), r.ct_xlat_dst,
            _na(r.ct_xlat_dport))
    return [orig, reverse(xlat)]


def _compare(flows: pd.DataFrame, dumps: pd.DataFrame,
             untranslated: dict[Tuple5, set[str | None]]) -> tuple[list[str], pd.DataFrame]:
    """Each flow's conntrack status, and the disagreements table (``untranslated``: the
    dump tuples that packets of no NAT flow carried unchanged across a node, and the
    nodes)."""
    match = _matches(flows, _entries(dumps))
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
    for r in _unmatched_entries(flows, dumps):
        for tup in _pre_nat(r):
            nodes = untranslated.get(tup, set())
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
