"""Directions of the frames of per-interface Ethernet captures, from the node's link data.

A ``tcpdump -i IFACE`` file records no direction (``tcpdump -i any``'s SLL2 header does). With
the node's ``ip link`` (the device's own MAC, whether it is a bridge port) and its bridges'
forwarding entries (which MACs are behind which port), a bundle says it frame by frame, as the
kernel decides the packet type of what a device receives:

- the source is the device's own MAC, or a MAC the bridge forwards from another of its ports
  (or the bridge's own): ``out``, the device sent it;
- else the frame arrived: ``in`` when it is addressed to the device's MAC or to a group
  (broadcast, multicast), ``other`` when it is addressed to another host (what SLL2 calls
  PACKET_OTHERHOST: a bridge port receiving a pod's frame for its gateway);
- a bridge port whose forwarding entries do not name the source: unknown (NA). On a bridge
  port the source alone cannot tell: a frame a pod sends and a frame forwarded to that pod
  both carry a MAC that is not the port's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pktkit.capture.ethernet import ethernet_addresses, mac_number
from pktkit.capture.formats import DIRECTIONS, LINKTYPE_ETHERNET
from pktkit.capture.netinfo import Link, NodeLinks

IN, OUT, OTHER = (DIRECTIONS.index(name) for name in ("in", "out", "other"))
_GROUP_BIT = np.uint64(1 << 40)  # the first octet's least significant bit: a group address


def frame_directions(dst: np.ndarray, src: np.ndarray, device: Link,
                     links: NodeLinks) -> np.ndarray:
    """Direction codes (index into DIRECTIONS, -1: unknown) of frames on ``device``."""
    if device.mac is None:
        return np.full(len(dst), -1, np.int8)
    own = np.uint64(mac_number(device.mac))
    codes = np.where(dst == own, IN, np.where((dst & _GROUP_BIT) != 0, IN, OTHER)).astype(np.int8)
    sent = src == own
    if device.master is not None:
        bridge = links.by_name(device.master)
        here = [mac_number(m) for m, port in links.fdb.items() if port == device.name]
        elsewhere = [mac_number(m) for m, port in links.fdb.items() if port != device.name]
        if bridge is not None and bridge.mac is not None:
            elsewhere.append(mac_number(bridge.mac))
        sent |= np.isin(src, np.array(elsewhere, np.uint64))
        known = sent | np.isin(src, np.array(here, np.uint64))
        codes[~known] = -1
    codes[sent] = OUT
    return codes


def fill_directions(packets: pd.DataFrame, files: Sequence[tuple[str, str, NodeLinks | None]],
                    starts: np.ndarray) -> int:
    """Set ``direction`` where it is NA, for the Ethernet frames of each per-interface capture
    whose device the node's links know. ``files``: (path, interface or "", links) per capture,
    in the table's order; ``starts``: each capture's first row (and the end). Returns how many
    rows got one."""
    column = packets["direction"]
    codes = column.cat.codes.to_numpy().copy()
    linktype = packets["linktype"].to_numpy(dtype=np.int64, na_value=-1)
    changed = 0
    for i, (path, interface, links) in enumerate(files):
        device = links.by_name(interface) if links is not None and interface else None
        rows = slice(int(starts[i]), int(starts[i + 1]))
        if device is None or not ((codes[rows] < 0) & (linktype[rows] == LINKTYPE_ETHERNET)).any():
            continue
        dst, src = ethernet_addresses(path)
        if len(dst) != starts[i + 1] - starts[i]:
            continue  # the file changed since it was read: leave it alone
        found = frame_directions(dst, src, device, links)
        wanted = (codes[rows] < 0) & (linktype[rows] == LINKTYPE_ETHERNET) & (found >= 0)
        codes[rows][wanted] = found[wanted]
        changed += int(wanted.sum())
    if changed:
        packets["direction"] = pd.Categorical.from_codes(codes, dtype=column.dtype)
    return changed
