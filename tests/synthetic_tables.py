"""Minimal packet tables for ``correlate()``, row by row: what the generated scenarios do not
stage (IPv6 repeats, look-alikes, fragments across NAT, pieces of tunnel packets)."""

from __future__ import annotations

from typing import Any

import pandas as pd

# columns a row may give beyond the defaults (a tunnelled copy's), with their dtypes
_OPTIONAL = {"outer_src": "string", "outer_dst": "string", "outer_ip_id": "Int64",
             "encap": "category", "vni": "Int64", "fragment": "boolean"}


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A minimal packet table for correlate(): defaults for every column it reads; the
    optional tunnel columns (``_OPTIONAL``) when some row gives one, ``fragment`` then derived
    where a row leaves it out (some header a fragment: here, the innermost)."""
    defaults = {"capture": "c.pcap", "node": "n", "interface": "eth0", "direction": None,
                "ip_version": 6, "proto": 17, "ip_id": None, "ttl": 64, "tcp_flags": None,
                "tcp_seq": None, "tcp_ack": None, "icmp_type": None, "icmp_code": None,
                "icmp_id": None, "icmp_seq": None, "l4_payload_len": 40, "payload_hash": 7,
                "frag_offset": 0, "more_fragments": False, "src": "fd00::1", "dst": "fd00::2",
                "sport": 1000, "dport": 53, "error": None}
    optional = {name for row in rows for name in row if name in _OPTIONAL}
    if optional:
        defaults |= {name: None for name in _OPTIONAL}
        defaults["encap"] = "none"
    frame = pd.DataFrame([{**defaults, **r} for r in rows])
    frame["frame"] = frame.groupby("capture").cumcount() + 1
    for name in ("ip_version", "proto", "ip_id", "ttl", "tcp_flags", "tcp_seq", "tcp_ack",
                 "icmp_type", "icmp_code", "icmp_id", "icmp_seq", "l4_payload_len",
                 "payload_hash", "frag_offset", "sport", "dport", "ts_ns", "frame"):
        frame[name] = frame[name].astype("Int64")
    frame["more_fragments"] = frame["more_fragments"].astype("boolean")
    frame["direction"] = pd.Categorical(frame["direction"], categories=["in", "out", "other"])
    for name in ("capture", "node", "interface", "src", "dst", "error"):
        frame[name] = frame[name].astype("string")
    if optional:
        innermost = (frame["frag_offset"] > 0) | frame["more_fragments"]
        frame["fragment"] = frame["fragment"].astype("boolean").fillna(innermost)
        for name, dtype in _OPTIONAL.items():
            frame[name] = frame[name].astype(dtype)
    return frame
