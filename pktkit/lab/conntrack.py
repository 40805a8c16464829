"""The NAT entries of a ``conntrack -L [-o extended]`` dump, read by the lab for its truth.

Read here rather than with :mod:`pktkit.analysis.conntrack`: the truth must not share code with
the analyzer it judges (an entry the analyzer misreads would then also be misread in the
truth). An entry lists the original tuple, then the reply tuple (``src= dst= sport= dport=``,
for ICMP ``type= code= id=``); the connection is translated when the reply tuple is not the
original one reversed. In the originator's direction the translated tuple is (reply dst,
reply dport, reply src, reply sport). ``kind``: the source changed (address or port; for ICMP
the echo identifier) is ``snat``, the destination (address or port; for ICMP the address) is
``dnat``, as the truth's schema says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NatEntry:
    """A translated connection, as the originator sent it and after translation."""

    kind: str  # snat, dnat, snat+dnat
    proto: int
    orig: tuple[str, int, str, int]  # src, sport, dst, dport (ICMP: the echo id twice)
    xlat: tuple[str, int, str, int]


def _tuples(fields: list[str]) -> list[dict[str, str]]:
    """The key=value tuples of an entry: a new one starts at each ``src=``."""
    tuples: list[dict[str, str]] = []
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep:
            continue
        if key == "src":
            tuples.append({})
        if tuples and key not in tuples[-1]:
            tuples[-1][key] = value
    return tuples


def nat_entry(line: str) -> NatEntry | None:
    """The entry of one dump line when it is translated, else None."""
    fields = line.split()
    if fields and fields[0] in ("ipv4", "ipv6"):
        fields = fields[2:]  # -o extended: l3 name and number first
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    proto = int(fields[1])
    tuples = _tuples(fields)
    if len(tuples) < 2:
        return None
    orig, reply = tuples[0], tuples[1]

    def ports(t: dict[str, str]) -> tuple[int, int]:
        if "id" in t:
            return int(t["id"]), int(t["id"])
        return int(t.get("sport", 0)), int(t.get("dport", 0))

    osport, odport = ports(orig)
    rsport, rdport = ports(reply)
    before = (orig["src"], osport, orig["dst"], odport)
    after = (reply["dst"], rdport, reply["src"], rsport)
    snat = before[:2] != after[:2]
    # an echo's identifier is its "source port": a changed one is source NAT, not destination
    dnat = before[2] != after[2] if "id" in orig else before[2:] != after[2:]
    if not (snat or dnat):
        return None
    return NatEntry("snat+dnat" if snat and dnat else "snat" if snat else "dnat", proto,
                    before, after)


def nat_entries(path: Path) -> list[NatEntry]:
    """Every translated entry of a dump file (an empty or missing file: none)."""
    if not path.is_file():
        return []
    return [e for line in path.read_text(errors="replace").splitlines()
            if (e := nat_entry(line)) is not None]
