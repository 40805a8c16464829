"""The Ethernet addresses of every frame of a capture, as integers, in one pass over the file.

Why apart from the packet table: the table keeps no MAC column (what correlates sightings
survives routing, and MACs do not), but a per-interface Ethernet capture records no direction,
and the source and destination MACs, held against the device's own and its bridge's forwarding
entries (:mod:`pktkit.analysis.directions`), are what tells a frame sent from one received.
"""

from __future__ import annotations

import os

import numpy as np

from pktkit.capture.batches import raw_batches
from pktkit.capture.formats import LINKTYPE_ETHERNET

NO_MAC = np.uint64(1 << 48)  # not an Ethernet frame (or cut before its addresses)
_WEIGHTS = (np.uint64(1) << (np.uint64(8) * np.arange(5, -1, -1, dtype=np.uint64)))


def mac_number(text: str) -> int:
    """``aa:bb:cc:dd:ee:ff`` as the integer :func:`ethernet_addresses` gives."""
    return int(text.replace(":", ""), 16)


def ethernet_addresses(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(destination, source) MAC of each frame, in frame order, as uint64 (:data:`NO_MAC`
    for frames that are not Ethernet or hold fewer than 12 bytes)."""
    dst_parts, src_parts = [], []
    _, batches = raw_batches(path)
    for raw in batches:
        n = len(raw)
        dst = np.full(n, NO_MAC, np.uint64)
        src = np.full(n, NO_MAC, np.uint64)
        rows = np.flatnonzero((raw.linktype == LINKTYPE_ETHERNET) & (raw.cap_len >= 12))
        if len(rows):  # every frame has HEAD readable bytes from its start on (RawBatch)
            head = raw.buf[raw.start[rows, None] + np.arange(12)].astype(np.uint64)
            dst[rows] = head[:, :6] @ _WEIGHTS
            src[rows] = head[:, 6:] @ _WEIGHTS
        dst_parts.append(dst)
        src_parts.append(src)
    if not dst_parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    return np.concatenate(dst_parts), np.concatenate(src_parts)
