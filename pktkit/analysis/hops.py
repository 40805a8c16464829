"""Hops: a packet's sightings in order along its path, with the delay of each step.

A packet's units in reference-clock order (ties: capture order, frame) are its hops 0, 1, ...;
the fragments of one datagram at one point share a hop. Packet ids are renumbered in order of
first sighting.

``hops`` — one row per sighting (fragments of one datagram at one point: one row, the first)

==============  ========  ===============================================================
column          dtype     meaning
==============  ========  ===============================================================
packet_id       Int64     the packet (as in the packet table)
hop             Int64     0-based position along its path
capture, frame  category, the sighting (its first frame)
                Int64
node            category  capture point: node,
interface       category  interface (NA when neither the file nor ``capture-set.json`` says)
direction       category  in / out as captured (NA for per-interface pcap files)
ts_ns           Int64     time on the reference node's clock (capture time − node offset)
delay_ns        Int64     since the previous hop (clock-corrected across nodes); NA for hop 0
from_node       category  the previous hop's node and interface; NA for hop 0
from_interface  category
==============  ========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.rows import NO_VALUE, run_starts, string_codes
from pktkit.capture.frame import empty_frame

HOPS_SCHEMA: dict[str, str] = {
    "packet_id": "Int64", "hop": "Int64", "capture": "category", "frame": "Int64",
    "node": "category", "interface": "category", "direction": "category", "ts_ns": "Int64",
    "delay_ns": "Int64", "from_node": "category", "from_interface": "category",
}


@dataclass
class HopOrder:
    """Units in (packet, hop) order: ``order`` their unit numbers; per unit, its final
    ``packet`` id and ``hop``."""

    order: np.ndarray
    packet: np.ndarray
    hop: np.ndarray


def number_hops(packet_of: np.ndarray, uts: np.ndarray, ucap: np.ndarray,
                uframe: np.ndarray) -> HopOrder:
    """Hop numbers in reference-clock order (ties: capture, frame; no time: last) and packet
    ids renumbered in order of first sighting."""
    m = len(packet_of)
    key_ts = np.where(uts == NO_VALUE, np.iinfo(np.int64).max, uts)
    by_time = np.lexsort((uframe, ucap, key_ts, packet_of))
    first = run_starts(packet_of[by_time])
    hop_sorted = np.arange(m) - np.maximum.accumulate(np.where(first, np.arange(m), 0))
    unit_hop = np.empty(m, np.int64)
    unit_hop[by_time] = hop_sorted
    del hop_sorted
    firsts = by_time[first]
    del first
    rank = np.empty(len(firsts), np.int64)
    rank[np.lexsort((uframe[firsts], ucap[firsts], key_ts[firsts]))] = np.arange(len(firsts))
    del key_ts
    renumber = np.empty(int(packet_of.max()) + 1 if m else 0, np.int64)
    renumber[packet_of[firsts]] = rank
    unit_packet = renumber[packet_of] if m else packet_of
    del firsts, rank, renumber
    # (packet, hop) order: by_time is in hop order within each packet already
    order = by_time[np.argsort(unit_packet[by_time], kind="stable")]
    return HopOrder(order=order, packet=unit_packet, hop=unit_hop)


def _category(packets: pd.DataFrame, name: str, rows: np.ndarray) -> pd.Categorical:
    """Column ``name`` at ``rows`` as a categorical (few distinct values, many rows)."""
    if name not in packets:
        return pd.Categorical.from_codes(np.full(len(rows), -1), categories=[])
    codes, labels = string_codes(packets[name])
    return pd.Categorical.from_codes(codes[rows], categories=labels)


def _previous(values: pd.Categorical, first: np.ndarray) -> pd.Categorical:
    """Each row's previous row's value; NA on the ``first`` rows (and row 0)."""
    codes = np.concatenate([[-1], values.codes[:-1]])
    codes[first] = -1
    return pd.Categorical.from_codes(codes, dtype=values.dtype)


def hops_table(packets: pd.DataFrame, rows: np.ndarray, packet: np.ndarray,
                hop: np.ndarray, ts: np.ndarray) -> pd.DataFrame:
    """The hops table from the units in (packet, hop) order: ``rows`` their first frames.
    The int64 arrays become the table's columns, not copied (``ts`` gets 0 where NA)."""
    if not len(rows):
        return empty_frame(HOPS_SCHEMA)
    first = hop == 0
    no_ts = ts == NO_VALUE
    delay = np.zeros(len(ts), np.int64)
    delay[1:] = ts[1:] - ts[:-1]
    delay_na = first | no_ts | np.roll(no_ts, 1)
    ts[no_ts] = 0
    node = _category(packets, "node", rows)
    interface = _category(packets, "interface", rows)
    # every column built in its schema dtype, so the frame takes them as they are
    return pd.DataFrame({
        "packet_id": pd.arrays.IntegerArray(packet, np.zeros(len(rows), bool)),
        "hop": pd.arrays.IntegerArray(hop, np.zeros(len(rows), bool)),
        "capture": _category(packets, "capture", rows),
        "frame": packets["frame"].array.take(rows).astype(HOPS_SCHEMA["frame"]),
        "node": node,
        "interface": interface,
        "direction": _category(packets, "direction", rows),
        "ts_ns": pd.arrays.IntegerArray(ts, no_ts),
        "delay_ns": pd.arrays.IntegerArray(delay, delay_na),
        "from_node": _previous(node, first),
        "from_interface": _previous(interface, first),
    }, copy=False)


