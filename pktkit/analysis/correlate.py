"""Sightings of one packet across capture points: ``packet_id``, hops and the nodes' clocks.

Input is the packet table (:func:`pktkit.capture.table.read_packets`) with a ``node`` column
added (:mod:`~pktkit.analysis.pipeline` fills it from ``--node``, ``capture-set.json`` or the
file names) and a ``capture`` name that is unique per file. :func:`correlate` runs the steps,
each a module of its own:

0. **Units and signatures** (:mod:`~pktkit.analysis.sightings`, per capture file): each
   sighting, or the fragments of one datagram at one point, with a tunnel packet's pieces
   that carry no tunnel header (:mod:`~pktkit.analysis.fragments`), keyed by what survives
   NAT, TTL and tunnels (a whole datagram's fragments: the packet they were cut from);
   duplicate records folded into their original.
1. **Crossings** (:mod:`~pktkit.analysis.crossings`, per signature): node-local sighting groups
   of a signature seen on two nodes, oriented by TTL, capture direction or address ownership
   (:mod:`~pktkit.analysis.ownership`).
2. **Clocks** (:mod:`~pktkit.analysis.clocks`, global): each node's offset and drift against
   the reference node, fitted to the crossings both ways, with a bound; applied to every
   timestamp.
3. **Packets** (:mod:`~pktkit.analysis.packets`, per signature): signature groups on the
   reference clock, cut at the window and at unlikely steps
   (:mod:`~pktkit.analysis.grouping`), ambiguous ones split; a datagram missing fragments
   joins the packet before it.
4. **Hops** (:mod:`~pktkit.analysis.hops`): each packet's sightings in time order.

Step 0 needs only the rows of one capture file (a slot is in one file: a datagram's fragments
and a tunnel packet's pieces there, a duplicate record and its original); steps 1 and 3 need
only the units of their signatures (plus, for 3, the clock models and the path statistics);
step 2 and the path statistics reduce what every part found. :mod:`~pktkit.analysis.parts`
runs them so, on parts of whole packets (a partition by
:func:`~pktkit.analysis.sightings.partition_keys`), in rounds of survey, merge and settle, then
assign; :func:`correlate` is those rounds on one part, the whole table.

Known limits: a payload cut by the snaplen before ``PAYLOAD_HASH_BYTES`` changes the UDP/ICMP
signature, and so does a first fragment carrying fewer payload bytes than that; a datagram
missing fragments is tied only to the packet before it with its addresses, and a tunnel
packet's pieces whose first piece was not captured are a packet of their own; ICMP errors
quote the header as NAT left it, so their copies before and after a NAT differ; frames that
are not IP, have no timestamp or a decode error are packets of their own.
Latency and handshakes, computed from the hops, are in :mod:`~pktkit.analysis.latency`;
overlays and conversations, from the packets, in :mod:`~pktkit.analysis.overlays`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.clocks import CLOCK_CORRECTIONS, NodeClock
from pktkit.analysis.grouping import DEFAULT_WINDOW_NS
from pktkit.analysis.parts import Part, Scope, assign, settle_all
from pktkit.analysis.sightings import MATCH_COLUMNS
from pktkit.errors import UsageError


@dataclass
class Correlation:
    """What :func:`correlate` found: per packet-table row, and the tables."""

    packet_id: np.ndarray  # int64 per row
    hop: np.ndarray  # int64 per row
    ts_ref_ns: np.ndarray  # int64 per row: capture time on the reference clock (-1: none)
    hops: pd.DataFrame
    hop_rows: np.ndarray  # per hops row: the representative packet-table row
    clock_offsets: pd.DataFrame
    clocks: list[NodeClock | None]  # per node (in clock_offsets' order): its model, if any


def correlate(
    packets: pd.DataFrame,
    *,
    node_order: Sequence[str] = (),
    window_ns: int = DEFAULT_WINDOW_NS,
    clock_correction: str = "auto",
    node_addresses: Mapping[str, Iterable[str]] | None = None,
) -> Correlation:
    """Give every row a ``packet_id`` shared by all sightings of one packet and a ``hop``;
    estimate the nodes' clocks (see the module docstring). ``packets`` needs the columns of
    the packet table including :data:`MATCH_COLUMNS`, plus ``node``; ``node_order[0]`` (else
    the first node seen) is the reference clock. ``node_addresses``: each node's own
    addresses, when known (:mod:`~pktkit.analysis.ownership`)."""
    missing = [c for c in ("capture", "frame", "ts_ns", "node", "interface", "src", "dst",
                           *MATCH_COLUMNS) if c not in packets]
    if missing:
        raise UsageError(f"correlate: the packet table lacks {', '.join(missing)} (read it "
                         "with pktkit.read_packets and add node)")
    if clock_correction not in CLOCK_CORRECTIONS:
        raise UsageError(f"clock correction {clock_correction!r}: choose one of "
                         f"{', '.join(CLOCK_CORRECTIONS)}")
    # one part, the whole table in its own order: the rounds of the parts (parts.py)
    scope = Scope.of(packets, node_order, window_ns)
    part = Part(packets, scope, in_order=True)
    settled = settle_all([part], clock_correction=clock_correction,
                         node_addresses=node_addresses)
    found = assign(part, settled)
    del part
    assert settled.clock_offsets is not None
    return Correlation(packet_id=found.packet_id, hop=found.hop, ts_ref_ns=found.ts_ref_ns,
                       hops=found.hops, hop_rows=found.hop_rows,
                       clock_offsets=settled.clock_offsets, clocks=settled.clocks)
