"""NAT flows found in captures, and conntrack dumps to confirm them.

A node that translates a connection (SNAT/masquerade, DNAT for a port mapping, ClusterIP or
NodePort, or both at once) shows it to the captures only one way: the same logical packet has one
5-tuple where it enters the node and another where it leaves. :func:`nat_flows` therefore needs
the packets table with ``packet_id`` and ``hop`` (the sightings of one packet and their order
along its path, as :mod:`pktkit.correlate` adds them) and, where several nodes are captured,
``node``.

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
:func:`parse_conntrack` reads ``conntrack -L`` output (``tcp      6 431999 ESTABLISHED src=...``),
``conntrack -L -o extended`` and ``/proc/net/nf_conntrack`` (both ``ipv4     2 tcp      6 ...``),
as libnetfilter_conntrack's ``__snprintf_conntrack_default`` and the kernel's ``ct_seq_show``
print them: the original tuple, ``[UNREPLIED]``, the reply tuple, flags, ``mark=``, ``zone=``,
``use=``, accounting ``packets= bytes=`` per tuple, ``-o id``/``-o ktimestamp`` extras, event
prefixes (``[NEW]``), IPv6 in the kernel's uncompressed ``%pI6`` form. The dump's translated
tuple, in the originator's direction, is (reply dst, reply dport, reply src, reply sport).

A NAT flow whose original tuple has an entry (on its node, or in a dump not named after a node)
is ``confirmed`` when the entry's translated tuple equals the captured one, else
``contradicted``; with no entry it is ``absent`` (a dump is a snapshot: connections that ended
before it are not in it). :attr:`NatFlows.disagreements` lists each contradiction, and each
dump entry that is translated while the captures show that tuple crossing the node untranslated.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from pktkit.errors import UsageError
from pktkit.table import empty_frame

Tuple5 = tuple[int, str, int, str, int]  # proto, src, sport, dst, dport
Pair = tuple[Tuple5, Tuple5]  # (pre-NAT, post-NAT) tuple of one packet

ICMP_PROTOS = (1, 58)
_ECHO_REQUEST = {1: 8, 58: 128}
_ECHO_REPLY = {1: 0, 58: 129}
_NO_NODE = -1  # node code of a translation between two nodes

NAT_FLOWS_COLUMNS = [
    "nat_flow_id", "kind", "proto",
    "orig_src", "orig_sport", "orig_dst", "orig_dport",
    "xlat_src", "xlat_sport", "xlat_dst", "xlat_dport",
    "packets", "bytes", "first_ts_ns", "last_ts_ns", "conntrack",
]
CONNTRACK_STATUS = pd.CategoricalDtype(["confirmed", "contradicted", "absent"])
_TUPLE_DTYPES = {"proto": "UInt8", "src": "string", "sport": "UInt16", "dst": "string",
                 "dport": "UInt16"}
_SIDES = {f"{side}_{k}": v for side in ("orig", "xlat") for k, v in _TUPLE_DTYPES.items()
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


class ConntrackFormatError(UsageError):
    """A conntrack dump that is none of the formats :func:`parse_conntrack` reads."""


ConntrackSource = str | os.PathLike[str]
ConntrackArg = ConntrackSource | Mapping[str | None, ConntrackSource] | pd.DataFrame | None


# --- NAT flows from the packets table -----------------------------------------------------------


def reverse(t: Tuple5) -> Tuple5:
    """The tuple of the other direction."""
    return (t[0], t[3], t[4], t[1], t[2])


def nat_kind(orig: Tuple5, xlat: Tuple5) -> str | None:
    """``snat``, ``dnat``, ``snat+dnat``, or None when nothing changed."""
    snat = orig[1:3] != xlat[1:3]
    # ICMP's "dport" is the identifier again: only a new address makes it DNAT.
    dst = slice(3, 4) if orig[0] in ICMP_PROTOS else slice(3, 5)
    dnat = orig[dst] != xlat[dst]
    return "snat+dnat" if snat and dnat else "snat" if snat else "dnat" if dnat else None


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
                         "(run pktkit.correlate first)")
    dumps = None if conntrack is None else read_conntrack(conntrack)
    t = _Sightings(packets)
    conns = _connections(t)
    row_conn = _assign(t, conns)
    flows, conn_to_id = _flow_table(t, conns, row_conn)
    ids = np.where(row_conn >= 0, conn_to_id[np.maximum(row_conn, 0)], -1)
    per_packet = pd.Series(ids, index=packets.index, dtype="Int64", name="nat_flow_id")
    per_packet = per_packet.mask(ids < 0)
    if dumps is None:
        return NatFlows(flows, per_packet, _empty(DISAGREEMENTS_SCHEMA))
    _check_dump_nodes(dumps, t.node_names)
    status, disagreements = _compare(flows, dumps, t, row_conn)
    flows["conntrack"] = pd.Categorical(status, dtype=CONNTRACK_STATUS)
    return NatFlows(flows, per_packet, disagreements)


class _Sightings:
    """The packets table reduced to what finding translations needs, as numpy arrays."""

    def __init__(self, packets: pd.DataFrame) -> None:
        n = len(packets)
        proto = packets["proto"].astype("Int64")
        sport = packets["sport"].astype("Int64")
        dport = packets["dport"].astype("Int64")
        icmp_type = _column(packets, "icmp_type", "Int64")
        pnum = proto.to_numpy(dtype=np.int64, na_value=0)
        itype = icmp_type.to_numpy(dtype=np.int64, na_value=-1)
        request = np.zeros(n, bool)
        reply = np.zeros(n, bool)
        for number in ICMP_PROTOS:
            request |= (pnum == number) & (itype == _ECHO_REQUEST[number])
            reply |= (pnum == number) & (itype == _ECHO_REPLY[number])
        if "icmp_id" in packets.columns:
            echo = request | reply
            icmp_id = packets["icmp_id"].astype("Int64")
            sport = sport.mask(echo, icmp_id)
            dport = dport.mask(echo, icmp_id)
        # .array: positions, not index labels (the packets' index may repeat labels)
        frame = pd.DataFrame({"proto": proto.array, "src": packets["src"].astype("string").array,
                              "sport": sport.array, "dst": packets["dst"].astype("string").array,
                              "dport": dport.array})
        full = frame.notna().all(axis=1).to_numpy(bool)
        self.code = np.full(n, -1, dtype=np.int64)
        self.tuples: list[Tuple5] = []
        if full.any():
            codes, uniques = pd.MultiIndex.from_frame(frame[full]).factorize()
            self.code[full] = codes
            self.tuples = [(int(p), s, int(sp), d, int(dp)) for p, s, sp, d, dp in uniques]
        self.code_of = {tup: i for i, tup in enumerate(self.tuples)}
        pid = packets["packet_id"].astype("Int64").to_numpy(dtype=np.int64, na_value=-1)
        # A row without packet_id is a packet of its own: give it an id no real one has.
        lone = pid < 0
        self.pid = np.where(lone, -1 - np.arange(n), pid)
        self.hop = packets["hop"].astype("Int64").to_numpy(dtype=np.int64, na_value=0)
        node = (packets["node"].astype("string") if "node" in packets.columns
                else pd.Series(pd.NA, index=packets.index, dtype="string"))
        node_codes, names = pd.factorize(node.fillna(""))
        self.node = node_codes.astype(np.int64)
        self.node_names: list[str | None] = [name or None for name in names]
        self.ts = _column(packets, "ts_ns", "Int64").to_numpy(dtype=np.int64, na_value=-1)
        self.wire_len = _column(packets, "wire_len", "Int64").to_numpy(dtype=np.int64,
                                                                       na_value=0)
        flags = _column(packets, "tcp_flags", "Int64").to_numpy(dtype=np.int64, na_value=0)
        tcp = pnum == 6
        # Who opened the connection: SYN without ACK or echo request; SYN+ACK or echo reply
        # are the responder's.
        self.opener = (tcp & ((flags & 0x12) == 0x02)) | request
        self.answer = (tcp & ((flags & 0x12) == 0x12)) | reply
        # Sightings with a tuple, in path order: packet, hop, then time.
        rows = np.flatnonzero(full)
        order = np.lexsort((self.ts[rows], self.hop[rows], self.pid[rows]))
        self.rows = rows[order]


def _column(packets: pd.DataFrame, name: str, dtype: str) -> pd.Series:
    if name in packets.columns:
        return packets[name].astype(dtype)
    return pd.Series(pd.NA, index=packets.index, dtype=dtype)


class _Connections(NamedTuple):
    orig: list[Tuple5]
    xlat: list[Tuple5]
    node: list[int]  # node code, _NO_NODE between nodes
    # per translation event: row (pre-NAT sighting), connection
    event_row: np.ndarray
    event_conn: np.ndarray


def _connections(t: _Sightings) -> _Connections:
    """Translations (steps 2-4 of the module docstring) grouped into connections."""
    rows = t.rows
    if not len(rows):
        return _Connections([], [], [], rows, np.zeros(0, np.int64))
    pid, node, code = t.pid[rows], t.node[rows], t.code[rows]
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
    pre_i, post_i, ev_node = pre_i[path_order], post_i[path_order], ev_node[path_order]
    ev_pre, ev_post = code[pre_i], code[post_i]
    ev_rows = rows[pre_i]
    if not len(ev_rows):
        return _Connections([], [], [], ev_rows, np.zeros(0, np.int64))
    # One Python step per distinct (node, pre, post), not per packet.
    events = pd.DataFrame({"node": ev_node, "pre": ev_pre, "post": ev_post,
                           "ts": t.ts[ev_rows], "opener": t.opener[ev_rows],
                           "answer": t.answer[ev_rows]})
    grouped = events.groupby(["node", "pre", "post"], sort=False)
    pairs = grouped.agg(ts=("ts", "min"), opener=("opener", "any"), answer=("answer", "any"))
    pair_index = grouped.ngroup().to_numpy()
    by_key: dict[tuple[int, Pair], list[int]] = {}
    observed: list[Pair] = []
    for i, (n, pre, post) in enumerate(pairs.index):
        p, q = t.tuples[pre], t.tuples[post]
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


def _assign(t: _Sightings, conns: _Connections) -> np.ndarray:
    """Connection index of every row of the packets table (-1: not translated)."""
    n = len(t.pid)
    packet_conn: dict[int, int] = {}
    # A translated packet: its first translation (events are in path order per packet).
    for row, conn in zip(t.pid[conns.event_row].tolist(), conns.event_conn.tolist(),
                         strict=True):
        packet_conn.setdefault(row, conn)
    # A packet seen at one point only: through its tuple, one of the connection's four.
    code_conn = np.full(len(t.tuples) + 1, -1, np.int64)  # last slot: rows without a tuple
    for conn, (o, x) in enumerate(zip(conns.orig, conns.xlat, strict=True)):
        for tup in (o, x, reverse(x), reverse(o)):
            code = t.code_of.get(tup)
            if code is not None and code_conn[code] < 0:
                code_conn[code] = conn
    by_tuple = code_conn[t.code[t.rows]]
    hit = by_tuple >= 0
    for pid, conn in zip(t.pid[t.rows][hit].tolist(), by_tuple[hit].tolist(), strict=True):
        packet_conn.setdefault(pid, conn)
    if not packet_conn:
        return np.full(n, -1, np.int64)
    keys = np.fromiter(packet_conn.keys(), np.int64, len(packet_conn))
    values = np.fromiter(packet_conn.values(), np.int64, len(packet_conn))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    where = np.clip(np.searchsorted(keys, t.pid), 0, len(keys) - 1)
    return np.where(keys[where] == t.pid, values[where], -1)


def _flow_table(t: _Sightings, conns: _Connections,
                row_conn: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The nat_flows table and the map connection index → nat_flow_id."""
    k = len(conns.orig)
    if k == 0:
        return _empty(NAT_FLOWS_SCHEMA), np.zeros(1, np.int64)
    mine = row_conn >= 0
    ts = pd.Series(t.ts[mine], dtype="Int64")
    rows = pd.DataFrame({"conn": row_conn[mine], "pid": t.pid[mine], "hop": t.hop[mine],
                         "ts": ts.mask(ts < 0), "wire_len": t.wire_len[mine]})
    # Bytes: each packet once, as it was at its first sighting (all its fragments there).
    first_hop = rows.groupby("pid")["hop"].transform("min")
    per = rows.groupby("conn").agg(packets=("pid", "nunique"), first=("ts", "min"),
                                   last=("ts", "max"))
    per["bytes"] = rows[rows["hop"] == first_hop].groupby("conn")["wire_len"].sum()
    per = per.reindex(range(k))
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
    return _frame(data, NAT_FLOWS_SCHEMA), conn_to_id


def _frame(data: Mapping[str, Iterable], schema: Mapping[str, str | pd.CategoricalDtype]
           ) -> pd.DataFrame:
    """Columns of Python lists (None for NA) or arrays, in the schema's dtypes."""
    out = {}
    for name, dtype in schema.items():
        values = data[name]
        if isinstance(values, pd.Series | np.ndarray):
            out[name] = pd.Series(np.asarray(values) if isinstance(values, np.ndarray)
                                  else values.to_numpy(), dtype=dtype)
        else:
            out[name] = pd.Series(list(values), dtype=dtype)
    return pd.DataFrame(out)


_empty = empty_frame


# --- conntrack dumps ----------------------------------------------------------------------------

_ACCEPTED = ("accepted: `conntrack -L` output (with or without `-o extended`) or a copy of "
             "/proc/net/nf_conntrack")
_FLAG = re.compile(r"\[([^\]]*)\]")
# conntrack-tools prints this summary on stderr; a dump taken with 2>&1 holds it.
_SUMMARY = re.compile(r"^conntrack v[\d.]+ \(conntrack-tools\):")
_STATE = re.compile(r"^[A-Z][A-Z_0-9]*$")
_L3 = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
_PORT_PROTOS = (6, 17, 33, 132, 136)  # tcp, udp, dccp, sctp, udplite: sport= dport=

CONNTRACK_SCHEMA: dict[str, str] = {
    "node": "string",  # the NAME of --conntrack NAME=FILE (NA: any node)
    "file": "string",
    "line": "Int64",  # 1-based line of the entry in its file
    "l3": "string",  # ipv4 / ipv6
    "proto": "UInt8",
    "timeout_s": "Int64",
    "state": "string",  # TCP/SCTP/DCCP state
    **{f"{side}_{k}": v for side in ("orig", "reply", "xlat")
       for k, v in _TUPLE_DTYPES.items() if k != "proto"},
    "kind": "string",  # snat, dnat, snat+dnat, NA: not translated
    "icmp_type": "UInt8",  # of the original tuple
    "unreplied": "boolean",
    "assured": "boolean",
    "orig_packets": "Int64",
    "orig_bytes": "Int64",
    "reply_packets": "Int64",
    "reply_bytes": "Int64",
    "mark": "Int64",
    "zone": "Int64",
    "use": "Int64",
}


def parse_conntrack(source: ConntrackSource, *, node: str | None = None) -> pd.DataFrame:
    """Read one conntrack dump into a table, one row per entry (``CONNTRACK_SCHEMA``).

    Columns: ``node``, ``file``, ``line``; ``l3``, ``proto``, ``timeout_s``, ``state``;
    ``orig_src/sport/dst/dport`` (the first tuple), ``reply_*`` (the second), ``xlat_*`` =
    (reply dst, reply dport, reply src, reply sport), the original direction after
    translation; ``kind`` (NA when not translated); for ICMP both ports carry the tuple's echo
    identifier and ``icmp_type`` is the original tuple's type; ``unreplied``, ``assured``;
    accounting ``orig_packets``, ``orig_bytes``, ``reply_packets``, ``reply_bytes``; ``mark``,
    ``zone``, ``use`` (NA when not printed). Addresses are in inet_ntop's form.

    ``source``: a path, or the dump's text itself (a ``str`` holding a newline or ``src=``).
    Raises :class:`ConntrackFormatError` naming the file and line for anything else than the
    formats of the module docstring, and :class:`UsageError` for a file that cannot be read.
    """
    if isinstance(source, str) and ("\n" in source or "src=" in source):
        name, text = "<text>", source
    else:
        name, text = str(source), _read_text(Path(source))
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or _SUMMARY.match(line):
            continue
        try:
            record = _parse_entry(line)
        except ValueError as e:
            snippet = line.strip()
            snippet = snippet if len(snippet) <= 60 else snippet[:57] + "..."
            raise ConntrackFormatError(f"conntrack dump {name} line {number}: {e} in "
                                       f"{snippet!r}; {_ACCEPTED}") from None
        records.append({"node": node, "file": name, "line": number, **record})
    return _frame({c: [r.get(c) for r in records] for c in CONNTRACK_SCHEMA}, CONNTRACK_SCHEMA)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"conntrack dump {path}: cannot read it ({e.strerror})") from None
    if b"\0" in data[:4096]:
        raise ConntrackFormatError(f"conntrack dump {path} line 1: binary data, not text; "
                                   f"{_ACCEPTED}")
    return data.decode("utf-8", errors="replace")


def _parse_entry(line: str) -> dict[str, object]:
    """One entry's fields; ValueError says what is wrong."""
    flags = set(_FLAG.findall(line))
    tokens = _FLAG.sub(" ", line).split()
    i, l3 = 0, None
    if (len(tokens) > 3 and tokens[0] in (*_L3, "unknown") and tokens[1].isdigit()
            and not tokens[2].isdigit() and tokens[3].isdigit()):
        l3, i = tokens[0], 2  # -o extended and /proc/net/nf_conntrack
    if len(tokens) < i + 2 or not tokens[i].isalnum() or not tokens[i + 1].isdigit():
        raise ValueError("expected a protocol name and number first (e.g. 'tcp 6')")
    proto = int(tokens[i + 1])
    if proto > 255:
        raise ValueError(f"protocol number {proto} out of range")
    i += 2
    timeout = state = None
    while i < len(tokens) and "=" not in tokens[i]:
        word = tokens[i]
        if word.isdigit() and timeout is None and state is None:
            timeout = int(word)
        elif state is None and _STATE.match(word):
            state = word
        else:
            raise ValueError(f"unexpected {word!r} before the tuples")
        i += 1
    tuples: list[dict[str, str]] = [{}]
    extra: dict[str, str] = {}
    for word in tokens[i:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"unexpected {word!r}")
        current = tuples[-1]
        if key == "src" and "src" in current:
            if len(tuples) == 2:
                raise ValueError("more than two tuples")
            tuples.append({})
            current = tuples[-1]
        # ICMP's tuple id comes after type= code=; a later id= is conntrack's (-o id).
        tuple_key = key in ("src", "dst", "sport", "dport", "type", "code", "packets",
                            "bytes") or (key == "id" and "type" in current)
        if tuple_key and key not in current:
            current[key] = value
        else:
            extra[key] = value
    if len(tuples) != 2 or any("src" not in t or "dst" not in t for t in tuples):
        raise ValueError("expected two tuples (src= dst= ... src= dst= ...)")
    family = _L3.get(l3) if l3 else None
    orig, reply = (_tuple(proto, t, family) for t in tuples)
    xlat = (proto, reply[3], reply[4], reply[1], reply[2])
    record: dict[str, object] = {
        "l3": l3 or ("ipv6" if ":" in orig[1] else "ipv4"),
        "proto": proto,
        "timeout_s": timeout,
        "state": state,
        "kind": nat_kind(orig, xlat),
        "icmp_type": _int(tuples[0].get("type")),
        "unreplied": "UNREPLIED" in flags,
        "assured": "ASSURED" in flags,
        "orig_packets": _int(tuples[0].get("packets")),
        "orig_bytes": _int(tuples[0].get("bytes")),
        "reply_packets": _int(tuples[1].get("packets")),
        "reply_bytes": _int(tuples[1].get("bytes")),
        "mark": _int(extra.get("mark")),
        "zone": _int(extra.get("zone")),
        "use": _int(extra.get("use")),
    }
    for side, tup in (("orig", orig), ("reply", reply), ("xlat", xlat)):
        for name, value in zip(("src", "sport", "dst", "dport"), tup[1:], strict=True):
            record[f"{side}_{name}"] = value
    return record


def _tuple(proto: int, fields: Mapping[str, str], family: int | None
           ) -> tuple[int, str, int | None, str, int | None]:
    src, dst = (_address(fields[k], family) for k in ("src", "dst"))
    if proto in ICMP_PROTOS and "id" in fields:  # the identifier is both "ports", as in truth
        ident = _port(fields["id"])
        return (proto, src, ident, dst, ident)
    if proto in _PORT_PROTOS:
        return (proto, src, _port(fields.get("sport")), dst, _port(fields.get("dport")))
    return (proto, src, None, dst, None)


def _address(text: str, family: int | None) -> str:
    # The kernel prints IPv6 uncompressed (%pI6); the packets table has inet_ntop's form.
    for fam in (family,) if family else (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(fam, socket.inet_pton(fam, text))
        except OSError:
            continue
    raise ValueError(f"bad address {text!r}")


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    value = _int(text)
    if value is None or not 0 <= value <= 65535:
        raise ValueError(f"bad port or identifier {text!r}")
    return value


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad number {text!r}") from None


def conntrack_arg(text: str) -> tuple[str | None, str]:
    """``--conntrack [NAME=]FILE`` → (node name or None, file).

    ``NAME=`` is taken off only when the whole text is not an existing file and NAME holds no
    path separator (a file name may contain ``=``)."""
    name, sep, path = text.partition("=")
    if sep and name and path and os.sep not in name and not os.path.exists(text):
        return name, path
    return None, text


def read_conntrack(dumps: ConntrackArg) -> pd.DataFrame:
    """All dumps in one ``CONNTRACK_SCHEMA`` table: a path, ``{node or None: path}``, or a
    table already read (returned as it is)."""
    if isinstance(dumps, pd.DataFrame):
        return dumps
    if dumps is None:
        return _empty(CONNTRACK_SCHEMA)
    items = dumps.items() if isinstance(dumps, Mapping) else [(None, dumps)]
    frames = [parse_conntrack(path, node=name) for name, path in items]
    return pd.concat(frames, ignore_index=True) if frames else _empty(CONNTRACK_SCHEMA)


def _check_dump_nodes(dumps: pd.DataFrame, node_names: list[str | None]) -> None:
    known = {n for n in node_names if n}
    named = set(dumps["node"].dropna().unique())
    if known and named - known:
        raise UsageError(f"conntrack dump for node {sorted(named - known)[0]!r}: no capture "
                         f"of that node (nodes: {', '.join(sorted(known))})")


_ORIG = ["proto", "orig_src", "orig_sport", "orig_dst", "orig_dport"]
_XLAT = ["xlat_src", "xlat_sport", "xlat_dst", "xlat_dport"]


def _compare(flows: pd.DataFrame, dumps: pd.DataFrame, t: _Sightings,
             row_conn: np.ndarray) -> tuple[list[str], pd.DataFrame]:
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
    untranslated = _untranslated_transits(t, row_conn)
    matched_lines = set(zip(match["ct_file"], match["ct_line"], strict=True))
    for r in entries[entries["kind"].notna()].itertuples(index=False):
        if (r.ct_file, r.ct_line) in matched_lines:
            continue
        orig = (int(r.proto), r.orig_src, _na(r.orig_sport), r.orig_dst, _na(r.orig_dport))
        xlat = (int(r.proto), r.ct_xlat_src, _na(r.ct_xlat_sport), r.ct_xlat_dst,
                _na(r.ct_xlat_dport))
        for tup in (orig, reverse(xlat)):  # the pre-NAT tuples of both directions
            code = t.code_of.get(tup)
            nodes = untranslated.get(code, set()) if code is not None else set()
            node = None if pd.isna(r.ct_node) else r.ct_node
            if nodes and (node is None or node in nodes):
                where = node if node is not None else next(iter(sorted(nodes, key=str)))
                _disagreement(rows, r, where, None, DISAGREEMENT_REASONS[2], captured=False)
                break
    return status, _frame(rows, DISAGREEMENTS_SCHEMA)


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


def _untranslated_transits(t: _Sightings, row_conn: np.ndarray) -> dict[int, set[str | None]]:
    """Tuple code → nodes a packet crossed with that tuple unchanged (two sightings or more
    on the node, in and out), for packets of no NAT flow."""
    rows = t.rows[row_conn[t.rows] < 0]
    frame = pd.DataFrame({"pid": t.pid[rows], "node": t.node[rows], "code": t.code[rows]})
    runs = frame.groupby(["pid", "node"]).agg(n=("code", "size"), codes=("code", "nunique"),
                                              code=("code", "first"))
    runs = runs[(runs["n"] >= 2) & (runs["codes"] == 1)].reset_index()
    out: dict[int, set[str | None]] = {}
    for code, node in zip(runs["code"].tolist(), runs["node"].tolist(), strict=True):
        out.setdefault(code, set()).add(t.node_names[node])
    return out
