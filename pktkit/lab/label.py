"""Labels for read-back frames: tenant context, flow, and packet signature (see
:mod:`pktkit.lab.frames` for what they mean and why).

Order matters, each step using what the previous ones learnt: contexts (device or VNI); flows
from markers, and the tuples they were seen with; flows of unmarked frames from those tuples;
signatures; fragments without a marker from a sibling fragment of the same datagram at the
same point; anything left is a packet of its own (and counted as unlabelled).
"""

from __future__ import annotations

from collections.abc import Mapping

from pktkit.lab.frames import ICMP_ECHO_TYPES, ICMP_ERRORS, Frame

Tuple5 = tuple[int, str, int, str, int]


def _reverse(t: Tuple5) -> Tuple5:
    return (t[0], t[3], t[4], t[1], t[2])


def label_frames(frames: list[Frame], iface_context: Mapping[tuple[str, str], str],
                 vni_context: Mapping[int, str]) -> int:
    """Set ``context``, ``flow`` and ``sig`` of every frame; returns how many frames no flow
    could be found for."""
    for f in frames:
        vni = f.decoded.vni
        f.context = (vni_context.get(vni, "") if vni is not None
                     else iface_context.get((f.node, f.interface), ""))
    tuples: dict[tuple[str, Tuple5], int] = {}
    for f in frames:
        d = f.decoded
        if d.proto == 1 and d.icmp_type in ICMP_ERRORS:
            # Labelled by the marker of the packet it quotes; one packet per error sent.
            f.flow = f.token.flow if f.token else 0
            f.sig = ("icmp-error", d.icmp_type, d.icmp_code, d.ip_id)
        elif f.token is not None:
            f.flow = f.token.flow
            t = f.tuple5()
            if t is not None:
                tuples[(f.context, t)] = tuples[(f.context, _reverse(t))] = f.flow
    for f in frames:
        if not f.flow and f.sig is None:
            t = f.tuple5()
            f.flow = tuples.get((f.context, t), 0) if t is not None else 0
    for f in frames:
        if f.sig is None:
            f.sig = _signature(f)
    siblings = {(f.capture, f.interface, f.direction, f.fragmented.key): f for f in frames
                if f.fragmented is not None and f.sig is not None}
    for f in frames:
        if f.sig is None and f.fragmented is not None:
            sibling = siblings.get((f.capture, f.interface, f.direction, f.fragmented.key))
            if sibling is not None:
                f.flow, f.sig = sibling.flow, sibling.sig
    unlabelled = 0
    for f in frames:
        if f.sig is None:
            f.sig = ("frame", f.capture, f.frame)
        if not f.flow:
            unlabelled += 1
    return unlabelled


def _signature(f: Frame) -> tuple[object, ...] | None:
    d = f.decoded
    if f.token is not None and (f.fragmented is not None or d.proto == 17):
        return ("msg", f.token.direction, f.token.message)
    if d.proto == 6 and d.tcp_seq is not None and f.fragmented is None:
        return ("tcp", d.tcp_seq, d.tcp_ack, d.tcp_flags, d.l4_payload_len, d.ip_id)
    if d.proto == 1 and d.icmp_type in ICMP_ECHO_TYPES and d.icmp_seq is not None:
        return ("echo", d.icmp_type, d.icmp_seq)
    return None
