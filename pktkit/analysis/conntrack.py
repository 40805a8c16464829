"""Conntrack dumps: ``conntrack -L``, ``-o extended`` and ``/proc/net/nf_conntrack`` as a table.

:func:`parse_conntrack` reads ``conntrack -L`` output (``tcp      6 431999 ESTABLISHED src=...``),
``conntrack -L -o extended`` and ``/proc/net/nf_conntrack`` (both ``ipv4     2 tcp      6 ...``),
as libnetfilter_conntrack's ``__snprintf_conntrack_default`` and the kernel's ``ct_seq_show``
print them: the original tuple, ``[UNREPLIED]``, the reply tuple, flags, ``mark=``, ``zone=``,
``use=``, accounting ``packets= bytes=`` per tuple, ``-o id``/``-o ktimestamp`` extras, event
prefixes (``[NEW]``), IPv6 in the kernel's uncompressed ``%pI6`` form. The dump's translated
tuple, in the originator's direction, is (reply dst, reply dport, reply src, reply sport).
A dump in no known format is a :class:`~pktkit.errors.ConntrackFormatError` naming file and
line.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pktkit.analysis.tuples import ICMP_PROTOS, TUPLE_DTYPES, nat_kind
from pktkit.capture.frame import empty_frame, frame_from_columns
from pktkit.errors import ConntrackFormatError, UsageError

ConntrackSource = str | os.PathLike[str]
ConntrackArg = ConntrackSource | Mapping[str | None, ConntrackSource] | pd.DataFrame | None

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
       for k, v in TUPLE_DTYPES.items() if k != "proto"},
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


def parse_conntrack(source: ConntrackSource, *, node: str | None = None,
                    name: str | None = None) -> pd.DataFrame:
    """Read one conntrack dump into a table, one row per entry (``CONNTRACK_SCHEMA``).

    Columns: ``node``, ``file``, ``line``; ``l3``, ``proto``, ``timeout_s``, ``state``;
    ``orig_src/sport/dst/dport`` (the first tuple), ``reply_*`` (the second), ``xlat_*`` =
    (reply dst, reply dport, reply src, reply sport), the original direction after
    translation; ``kind`` (NA when not translated); for ICMP both ports carry the tuple's echo
    identifier and ``icmp_type`` is the original tuple's type; ``unreplied``, ``assured``;
    accounting ``orig_packets``, ``orig_bytes``, ``reply_packets``, ``reply_bytes``; ``mark``,
    ``zone``, ``use`` (NA when not printed). Addresses are in inet_ntop's form.

    ``source``: a path, or the dump's text itself (a ``str`` holding a newline or ``src=``);
    ``name``: how messages and the ``file`` column call it (default: the path). Raises
    :class:`ConntrackFormatError` naming the file and line for anything else than the formats
    of the module docstring, and :class:`UsageError` for a file that cannot be read.
    """
    if isinstance(source, str) and ("\n" in source or "src=" in source):
        name, text = name or "<text>", source
    else:
        name, text = name or str(source), _read_text(Path(source))
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
    columns = {c: [r.get(c) for r in records] for c in CONNTRACK_SCHEMA}
    return frame_from_columns(columns, CONNTRACK_SCHEMA)


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
        return empty_frame(CONNTRACK_SCHEMA)
    items = dumps.items() if isinstance(dumps, Mapping) else [(None, dumps)]
    frames = [parse_conntrack(path, node=name) for name, path in items]
    return pd.concat(frames, ignore_index=True) if frames else empty_frame(CONNTRACK_SCHEMA)
