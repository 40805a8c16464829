"""Field-by-field facts of one scenario's captures, read the same way from a ``pktkit lab`` run
(the kernel's) and a ``pktkit generate`` run (the builders'), for tests/test_fidelity.py.

Nothing of pktkit reads the bytes here: :mod:`oracle` walks every frame; truth.json only says
which frames are one packet and where it was seen.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle import Layer, Record, read_capture, walk

Point = tuple[str, str, str]  # node, interface, direction


@dataclass
class Seen:
    """One frame: its truth entry, its bytes and their layers (outermost first)."""

    entry: dict[str, Any]
    record: Record
    layers: list[Layer]

    def first(self, name: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def last(self, name: str) -> Layer | None:
        return next((layer for layer in reversed(self.layers) if layer.name == name), None)

    @property
    def point(self) -> Point:
        return (self.entry["node"], self.entry["interface"], self.entry["direction"])

    @property
    def tunnelled(self) -> bool:
        return self.first("vxlan") is not None


class Run:
    """A folder with truth.json and the captures it names (``where(name)``: their path)."""

    def __init__(self, folder: Path, where: Callable[[str], Path]) -> None:
        self.folder = folder
        self.truth = json.loads((folder / "truth.json").read_text())
        entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in self.truth["packets"]:
            entries[entry["capture"]].append(entry)
        self.captures: dict[str, list[Seen]] = {}
        for name in self.truth["captures"]:
            mine = sorted(entries[name], key=lambda e: e["frame"])
            records = read_capture(where(name))
            self.captures[name] = [Seen(e, r, walk(r.data, r.linktype))
                                   for e, r in zip(mine, records, strict=True)]

    def frames(self, suffix: str = "") -> Iterator[Seen]:
        for name, frames in self.captures.items():
            if name.endswith(suffix):
                yield from frames

    def packets(self, suffix: str) -> dict[int, list[Seen]]:
        """packet_id → its sightings in the captures whose names end so, by hop."""
        found: dict[int, list[Seen]] = defaultdict(list)
        for seen in self.frames(suffix):
            found[seen.entry["packet_id"]].append(seen)
        return {pid: sorted(s, key=lambda x: (x.entry["hop"], x.entry["ts_ns"]))
                for pid, s in sorted(found.items())}


def tcp_flags(seen: Seen) -> int | None:
    tcp = seen.last("tcp")
    return None if tcp is None else int(tcp.fields["flags"])


def first_packet(run: Run, suffix: str, want: Callable[[Seen], bool]) -> list[Seen]:
    """The sightings of the first packet whose first sighting satisfies ``want``."""
    for sightings in run.packets(suffix).values():
        if want(sightings[0]):
            return sightings
    raise AssertionError(f"{run.folder}: no such packet")


def reply_to(run: Run, suffix: str, packet: list[Seen], flags: int) -> list[Seen]:
    """The first packet of the same flow with these TCP flags (a SYN-ACK: the answer)."""
    flow = packet[0].entry["flow_id"]
    return first_packet(run, suffix, lambda s: s.entry["flow_id"] == flow
                        and tcp_flags(s) == flags)


def path_facts(packet: list[Seen]) -> dict[Point, tuple[int, int | None, str | None, int]]:
    """Per capture point: (inner TTL, outer TTL, the source MAC the capture shows, SLL2 packet
    type); the first sighting of each point (a fragment's first piece)."""
    facts: dict[Point, tuple[int, int | None, str | None, int]] = {}
    for seen in packet:
        if seen.point in facts:
            continue
        ips = [layer for layer in seen.layers if layer.name == "ipv4"]
        sll = seen.first("sll2")
        src = sll.data[12:18].hex(":") if sll is not None else seen.layers[0].fields["src"]
        facts[seen.point] = (int(ips[-1].fields["ttl"]),
                             int(ips[0].fields["ttl"]) if seen.tunnelled else None,
                             str(src), int(sll.fields["pkttype"]) if sll is not None else -1)
    return facts
