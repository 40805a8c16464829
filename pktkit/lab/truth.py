"""``truth.json`` of a lab run, in the generator's schema (:mod:`pktkit.craft.truth`), from the
captures and the kernel's conntrack dumps.

Packets: the sightings of one (flow, signature), in time order, split where a capture point
would be passed twice or the gap exceeds :data:`GAP_NS` (a SYN-ACK resent with IP id 0 is a
new packet). Hops: the packet's capture points in order of their first sighting (the
fragments of a datagram at one point share a hop; the ``-i any`` copy and the per-interface
copy of an eth0 frame are two points, ordered as ``capture-set.json`` lists the files, as
pktkit analyze orders ties). All nodes share one kernel clock: ``true_ts_ns == ts_ns``.

NAT flows: the conntrack entries with a translation, from each node's end-of-capture dump
(``conntrack -L -o extended``, read by :mod:`pktkit.lab.conntrack`), each tied to the
flow whose sightings include its original tuple; numbered in the order of their flows' first
frames. A flow's frames all carry its NAT flow id (pre- and post-translation).

A piece of a fragmented *outer* (VXLAN) packet, which the generator never produces, is
described as the schema describes every frame, by what it holds itself: ``fragment``
first/non-first for the outer packet (the innermost IP header a non-first piece has); a
non-first piece, with no tunnel header of its own, has ``encap`` "none", no ``vni``, the outer
addresses as ``src``/``dst`` (protocol UDP, no ports) and no overhead, as tshark shows it. Its
packet's are ``packet_id``, ``hop`` (its first piece's), ``flow_id`` and ``overlay_encap`` /
``overlay_vni``: the VNI of the packet it is a piece of.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pktkit.capture.decode import Decoder
from pktkit.craft.truth import TRUTH_FILE, NatFlowTruth, PacketTruth, TruthWriter
from pktkit.lab.conntrack import nat_entries
from pktkit.lab.frames import CaptureFile, Frame, read_capture, resolve_directions
from pktkit.lab.label import label_frames

GAP_NS = 1_000_000_000


@dataclass
class TruthStats:
    frames: int
    packets: int
    nat_flows: int
    unlabelled: int
    unmatched_conntrack: int  # translated entries no flow of the captures explains


def read_all(captures: list[CaptureFile]) -> list[Frame]:
    decoder = Decoder()
    frames = [f for order, c in enumerate(captures) for f in read_capture(c, order, decoder)]
    resolve_directions(frames, captures)
    return frames


def assign_packets(frames: list[Frame]) -> dict[int, list[Frame]]:
    """packet_id -> its sightings in time order; packets numbered by first sighting."""
    groups: dict[tuple[int, tuple[object, ...] | None], list[Frame]] = defaultdict(list)
    for f in sorted(frames, key=lambda f: (f.ts_ns, f.order, f.frame)):
        groups[(f.flow, f.sig)].append(f)
    packets: list[list[Frame]] = []
    for sightings in groups.values():
        current: list[Frame] = []
        used: set[tuple[object, ...]] = set()
        for f in sightings:
            slot = (*f.point, f.fragmented.offset if f.fragmented else -1)
            if current and (slot in used or f.ts_ns - current[-1].ts_ns > GAP_NS):
                packets.append(current)
                current, used = [], set()
            current.append(f)
            used.add(slot)
        packets.append(current)
    packets.sort(key=lambda p: (p[0].ts_ns, p[0].order, p[0].frame))
    return {number: p for number, p in enumerate(packets, start=1)}


def hops(sightings: list[Frame]) -> dict[int, int]:
    """id(frame) -> hop: points numbered in order of first sighting; the fragments of one
    datagram at one device and direction share the point of the first seen (a tunnel packet's
    first piece has the inner packet's TTL, its other pieces the outer header's)."""
    points: dict[tuple[object, ...], int] = {}
    datagram_points: dict[tuple[object, ...], tuple[object, ...]] = {}
    result = {}
    for f in sightings:
        point = f.point
        if f.fragmented is not None:
            point = datagram_points.setdefault(
                (f.capture, f.interface, f.direction, f.fragmented.key), point)
        result[id(f)] = points.setdefault(point, len(points))
    return result


def nat_flows(frames: list[Frame], dumps: Mapping[str, Path]
              ) -> tuple[list[NatFlowTruth], dict[int, int], int]:
    """(NAT flows, flow -> nat_flow_id, count of translated entries matching no flow)."""
    seen: dict[tuple[int, str, int, str, int], int] = {}
    first: dict[int, tuple[int, int, int]] = {}
    for f in frames:
        t = f.tuple5()
        if f.flow and t is not None:
            seen.setdefault(t, f.flow)
        if f.flow:
            first[f.flow] = min(first.get(f.flow, (f.ts_ns, f.order, f.frame)),
                                (f.ts_ns, f.order, f.frame))
    entries = []
    unmatched = 0
    for path in dumps.values():
        for entry in nat_entries(path):
            orig = (entry.proto, entry.orig[0], entry.orig[1], entry.orig[2], entry.orig[3])
            flow = seen.get(orig)
            if flow is None:
                unmatched += 1
                continue
            entries.append((first[flow], flow, entry))
    entries.sort(key=lambda e: e[0])
    truths, by_flow = [], {}
    for number, (_, flow, entry) in enumerate(entries, start=1):
        by_flow[flow] = number
        truths.append(NatFlowTruth(number, entry.kind, entry.proto, *entry.orig, *entry.xlat))
    return truths, by_flow, unmatched


def _entry(f: Frame, packet_id: int, hop: int, nat_flow_id: int | None,
           overlay: tuple[str, int | None]) -> PacketTruth:
    d = f.decoded
    fragment = f.fragmented.position if f.fragmented is not None else "none"
    no_ports = d.proto not in (6, 17) or fragment == "non-first"
    overlay_encap, overlay_vni = overlay
    return PacketTruth(
        f.capture, f.frame, f.ts_ns, f.ts_ns, f.node, f.interface, f.direction, packet_id, hop,
        f.flow, nat_flow_id, d.encap, d.vni, overlay_encap, overlay_vni, d.overhead_bytes,
        f.wire_len, d.outer_src, d.outer_dst, d.outer_sport, d.outer_dport, d.src or "",
        d.dst or "", d.proto or 0, None if no_ports else d.sport,
        None if no_ports else d.dport, fragment)


def _overlay(sightings: list[Frame]) -> tuple[str, int | None]:
    """The overlay of a packet (every sighting carries it, the decapsulated copies too): the
    tunnel of its encapsulated copy; ("none", None) when it never was in one."""
    for f in sightings:
        if f.decoded.tunnels:
            return f.decoded.encap, f.decoded.vni
    return "none", None


def build_truth(out_dir: Path, captures: list[CaptureFile], dumps: Mapping[str, Path], *,
                scenario: str, seed: int, params: dict[str, Any],
                iface_context: Mapping[tuple[str, str], str],
                vni_context: Mapping[int, str]) -> TruthStats:
    """Read the captures, label them, write ``out_dir/truth.json``."""
    frames = read_all(captures)
    unlabelled = label_frames(frames, iface_context, vni_context)
    packets = assign_packets(frames)
    flows, nat_of_flow, unmatched = nat_flows(frames, dumps)
    entries = []
    for packet_id, sightings in packets.items():
        hop_of = hops(sightings)
        overlay = _overlay(sightings)
        for f in sightings:
            entries.append(_entry(f, packet_id, hop_of[id(f)], nat_of_flow.get(f.flow),
                                  overlay))
    entries.sort(key=lambda e: (e.ts_ns, [c.file for c in captures].index(e.capture), e.frame))
    writer = TruthWriter(out_dir / TRUTH_FILE, scenario, seed, params)
    try:
        for entry in entries:
            writer.add_packet(entry)
        # every lab node runs on the machine's one clock
        nodes = dict.fromkeys(c.node for c in captures)
        writer.commit([c.file for c in captures], flows,
                      clocks={node: {"offset_ns": 0, "drift_ppm": 0.0, "at_ns": 0}
                              for node in nodes})
    except BaseException:
        writer.abort()
        raise
    return TruthStats(len(frames), len(packets), len(flows), unlabelled, unmatched)
