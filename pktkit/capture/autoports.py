"""``vxlan_ports="auto"``: one pass over the captures finds the UDP ports carrying VXLAN/Geneve.

Every frame goes through the vectorized link, IP and UDP layers with no tunnel port at all, so
that the outermost UDP header of every packet is seen whatever its port (4789 and 8472
included); each destination port's first packets are judged by
:class:`~pktkit.capture.tunnel_ports.PortCounts` (the rules are in that module). Frames the
fast path leaves to the reference decoder (unusual stacks) are not looked at. The captures are
read twice, so they must be files, not pipes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pktkit.capture.batches import DEFAULT_BATCH, raw_batches
from pktkit.capture.headers import IPPROTO_UDP
from pktkit.capture.tunnel_ports import (
    AUTO,
    GENEVE,
    TUNNEL_PORT_NAMES,
    VXLAN,
    WINDOW,
    PortCounts,
    describe,
)
from pktkit.capture.vectorized import Frames, port_kinds
from pktkit.errors import UsageError

_NO_TUNNELS = port_kinds((), (), ())  # every UDP port plain: the payloads are judged here


@dataclass(frozen=True)
class TunnelPorts:
    """The UDP ports to decode as VXLAN and as Geneve beyond the registered ones, and, with
    ``"auto"``, every port found (registered ones included): port → kind."""

    vxlan: tuple[int, ...] = ()
    geneve: tuple[int, ...] = ()
    found: dict[int, str] | None = None

    def attrs(self) -> list[dict[str, object]]:
        """The ports found, as a table's ``attrs["tunnel_ports"]`` holds them (JSON-ready)."""
        return [{"port": port, "kind": kind} for port, kind in (self.found or {}).items()]

    def describe(self) -> str:
        return describe(self.found or {})


PortsArg = Iterable[int] | str | TunnelPorts  # port numbers, "auto", or resolved already


def find_tunnel_ports(paths: Sequence[str | os.PathLike[str]],
                      batch_size: int = DEFAULT_BATCH) -> dict[int, str]:
    """UDP destination port → "vxlan" or "geneve", judged from the packets of ``paths``."""
    counts = PortCounts()
    for path in paths:
        _, raws = raw_batches(path, batch_size)
        for raw in raws:
            f = Frames(raw, _NO_TUNNELS)
            f.decode(raw)
            rows = np.flatnonzero(f.fast & (f.proto == IPPROTO_UDP) & (f.encap == 0)
                                  & (f.payload_at >= 0))
            rows = rows[counts.wanted(f.dport[rows])]
            if not len(rows):
                continue
            at = raw.start[rows] + f.payload_at[rows]
            avail = np.maximum(np.minimum(f.l4_payload_len[rows],
                                          f.payload_end[rows] - f.payload_at[rows]), 0)
            inside = at + WINDOW <= len(raw.buf)  # (a payload at the buffer's very end: none)
            rows, at, avail = rows[inside], at[inside], avail[inside]
            win = sliding_window_view(raw.buf, WINDOW)[at]
            win = win * (np.arange(WINDOW) < avail[:, None])  # zero past the payload

            def payload(i: int, buf: np.ndarray = raw.buf, at: np.ndarray = at,
                        avail: np.ndarray = avail) -> bytes:
                return buf[at[i]:at[i] + avail[i]].tobytes()

            counts.add(f.dport[rows], win, avail, payload)
    return counts.found()


def resolve_ports(paths: Sequence[str | os.PathLike[str]], vxlan_ports: PortsArg) -> TunnelPorts:
    """``vxlan_ports`` as the readers take it: port numbers (VXLAN), or ``"auto"`` (a pass over
    ``paths`` first: the VXLAN and Geneve ports found, beyond the ports of known tunnels)."""
    if isinstance(vxlan_ports, TunnelPorts):
        return vxlan_ports
    if isinstance(vxlan_ports, str):
        if vxlan_ports != AUTO:
            raise UsageError(f"VXLAN port {vxlan_ports!r}: give port numbers or 'auto'")
        found = find_tunnel_ports(paths)
        new = {port: kind for port, kind in found.items() if port not in TUNNEL_PORT_NAMES}
        return TunnelPorts(tuple(p for p, k in new.items() if k == VXLAN),
                           tuple(p for p, k in new.items() if k == GENEVE), found)
    return TunnelPorts(tuple(int(p) for p in vxlan_ports))
