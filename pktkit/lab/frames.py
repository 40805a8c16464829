"""Every captured frame of a lab run, read back and labelled: node, interface, direction, flow,
and the signature that ties its sightings into one packet.

Why read the captures back (the generator never does): in the lab the kernel, not our code,
decides what is sent, rewritten, fragmented, encapsulated or answered with an ICMP error; the
captures are the only record of it. What we know independently is what the traffic agents
sent: every payload byte carries a marker (:mod:`pktkit.lab.marker`) naming its flow and
message, so a frame's flow is read from its own bytes, even an IP fragment's or an outer
fragment's. Frames without payload (TCP handshake, ACKs, FIN) take the flow of their tuple as
seen at that point, learnt from the marked frames (per tenant context: two tenants may share
a tuple), and a fragment without a whole marker takes its datagram's. ``pktkit.capture``'s
reader and decoder do the parsing (the tests check the truth against tshark's reading of the
same bytes).

A *signature* is what stays the same along a packet's path and differs between packets of a
flow: for TCP (seq, ack, flags, payload length, IP id); for a marked datagram (direction,
message), shared by all its fragments wherever they were cut; for an echo (type, sequence); for
an ICMP error (type, code, its IP id).

Directions are the capture's: SLL2's packet type (0-2 ``in``, 4 ``out``, 3 ``other``: a frame a
bridge port received for another host). A per-interface capture records none: a frame takes
its ``-i any`` copy's (see :func:`resolve_directions`).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pktkit.capture.decode import DecodedPacket, Decoder
from pktkit.capture.formats import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, PKTTYPE_DIRECTION
from pktkit.capture.read import read_frames
from pktkit.lab import marker

ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMP_ECHO_TYPES = frozenset({0, 8})
COPY_WINDOW_NS = 50_000  # the same frame in two captures of one node: this close in time


@dataclass(frozen=True)
class CaptureFile:
    """One capture file of the run and where it was taken."""

    file: str  # name in the output folder
    path: Path
    node: str
    interface: str  # "any" (SLL2, every device) or the one device of the file
    ifnames: dict[int, str]  # the node's ifindex -> device name
    macs: dict[str, str]  # the node's device name -> MAC


@dataclass(frozen=True)
class Fragmented:
    """The outermost fragmented IPv4 header of a frame."""

    key: tuple[str, str, int, int]  # src, dst, proto, IP id
    offset: int  # bytes
    more: bool

    @property
    def position(self) -> str:
        return "non-first" if self.offset else "first"


@dataclass
class Frame:
    """One captured frame with its labels (``flow`` 0 and ``sig`` None: not yet known)."""

    order: int  # the capture's position in the capture set
    capture: str
    frame: int
    ts_ns: int
    wire_len: int
    node: str
    interface: str
    direction: str
    decoded: DecodedPacket
    body_hash: int  # of the bytes after the link header (ties a frame seen twice on a device)
    src_mac: str | None
    dst_mac: str | None
    token: marker.Token | None
    fragmented: Fragmented | None
    context: str = ""
    flow: int = 0
    sig: tuple[Any, ...] | None = None

    @property
    def point(self) -> tuple[str, str, str, int | None]:
        """Where it was seen: a packet passes a point once (TTL: nodeport's eth0 twice)."""
        return (self.capture, self.interface, self.direction, self.decoded.ttl)

    def tuple5(self) -> tuple[int, str, int, str, int] | None:
        d = self.decoded
        if d.proto is None or d.src is None or d.dst is None:
            return None
        if d.proto == 1 and d.icmp_id is not None:
            return (1, d.src, d.icmp_id, d.dst, d.icmp_id)
        if d.sport is None or d.dport is None:
            return None
        return (d.proto, d.src, d.sport, d.dst, d.dport)


def _ipv4_header(data: bytes, offset: int) -> tuple[str, str, int, int, int, bool] | None:
    """(src, dst, proto, id, fragment offset in bytes, MF) of the IPv4 header at ``offset``."""
    if offset < 0 or len(data) < offset + 20 or data[offset] >> 4 != 4:
        return None
    ident, flags = struct.unpack_from("!HH", data, offset + 4)
    src = str(ipaddress.IPv4Address(data[offset + 12 : offset + 16]))
    dst = str(ipaddress.IPv4Address(data[offset + 16 : offset + 20]))
    return src, dst, data[offset + 9], ident, (flags & 0x1FFF) * 8, bool(flags & 0x2000)


def _fragmented(data: bytes, d: DecodedPacket) -> Fragmented | None:
    """The outer header when it is fragmented (the first IPv4 header in the frame), else the
    innermost one."""
    outer = _ipv4_header(data, d.l3_offset) if d.l3_offset is not None else None
    if outer is not None and (outer[4] or outer[5]):
        src, dst, proto, ident, offset, more = outer
        # (a non-first outer fragment decodes as a bare IP fragment: no tunnel header in it;
        # its flow and signature come from the first piece's, see label)
        return Fragmented((src, dst, proto, ident), offset, more)
    if d.ipv4_fragment and d.src is not None and d.dst is not None:
        ident = d.ip_id if d.ip_id is not None else -1
        return Fragmented((d.src, d.dst, d.proto or 0, ident), d.frag_offset or 0,
                          bool(d.more_fragments))
    return None


def _macs(data: bytes, linktype: int) -> tuple[str | None, str | None]:
    """(source, destination) MAC of an Ethernet frame; SLL2 records the source only."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 12:
        return data[6:12].hex(":"), data[0:6].hex(":")
    if linktype == LINKTYPE_LINUX_SLL2 and len(data) >= 18 and data[11] == 6:
        return data[12:18].hex(":"), None
    return None, None


def read_capture(capture: CaptureFile, order: int, decoder: Decoder) -> Iterator[Frame]:
    """The frames of one capture file, decoded, with node, interface and (SLL2) direction."""
    for raw in read_frames(capture.path):
        d = decoder.decode(raw.data, raw.linktype, raw.wire_len)
        if capture.interface == "any":
            interface = capture.ifnames.get(d.ifindex or -1, f"ifindex{d.ifindex}")
            direction = PKTTYPE_DIRECTION.get(-1 if d.pkttype is None else d.pkttype, "")
        else:
            interface, direction = capture.interface, ""  # resolved by resolve_directions
        start = d.l3_offset if d.l3_offset is not None else d.link_header_len
        token = marker.find(raw.data, start)
        yield Frame(order, capture.file, raw.frame, raw.ts_ns or 0, raw.wire_len, capture.node,
                    interface, direction, d, hash(raw.data[start:]),
                    *_macs(raw.data, raw.linktype), token, _fragmented(raw.data, d))


def resolve_directions(frames: list[Frame], captures: list[CaptureFile]) -> None:
    """A per-interface capture has no direction: take it from the ``-i any`` copy of the same
    frame (same node, device and bytes, nearest time within :data:`COPY_WINDOW_NS`), else from
    the MACs (our own source: out; our own or a group destination: in; else other).

    Why not the same timestamp: for frames a node sends, both captures carry one timestamp
    (one clone, stamped once); for frames it receives, each packet socket stamps on delivery,
    and the per-interface copy was measured 0 to 3 µs later than the ``-i any`` one."""
    copies: dict[tuple[str, str, int], list[tuple[int, str]]] = {}
    for f in frames:
        if f.direction:
            copies.setdefault((f.node, f.interface, f.body_hash), []).append((f.ts_ns,
                                                                                f.direction))
    macs = {(c.node, name): mac for c in captures for name, mac in c.macs.items()}
    for f in frames:
        if f.direction:
            continue
        near = [(abs(ts - f.ts_ns), direction) for ts, direction in
                copies.get((f.node, f.interface, f.body_hash), [])]
        best = min(near, default=None)
        if best is not None and best[0] <= COPY_WINDOW_NS:
            f.direction = best[1]
        else:
            mac = macs.get((f.node, f.interface))
            group = f.dst_mac is not None and int(f.dst_mac[:2], 16) & 1
            f.direction = ("out" if f.src_mac and f.src_mac == mac else
                           "in" if f.dst_mac == mac or group else "other")
