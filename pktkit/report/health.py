"""The captures themselves: one row per file, and the decode errors by capture and reason.

``errors`` — one row per (capture, reason)

==========  ======  ================================================================
capture     string  capture file
reason      string  a decode error (``decode.ERROR_REASONS``), ``snaplen-cut`` (frame
                    captured shorter than it was, decoded without error) or
                    ``capture-cut`` (the file ends inside a record)
packets     Int64   frames with that reason (NA for capture-cut)
first_frame Int64   first such frame (for capture-cut: the last whole frame)
frames      string  up to 5 frame numbers, ``…`` when there are more; for capture-cut
                    what the reader said
==========  ======  ================================================================

``captures`` — one row per capture file: capture, packets, bytes, first_ts_ns,
last_ts_ns, linktype, interfaces (names seen, ``, ``-joined), tunnelled, fragments, errors
(frames with a decode error), bad_checksums (frames whose ``checksum`` is bad), complete
(boolean: the file did not end mid-record).

``checksums`` — one row per (capture, interface) with a checked checksum, those with bad ones
first: capture, interface (NA: the capture names none), checked (frames with a ``checksum``
verdict), bad, offload (outgoing frames a host captured before the NIC filled their checksum
in: not corrupt), unchecked (cut by the snaplen, or fragments), ok. A bad checksum is counted,
never a reason to drop the packet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pktkit.analysis.rows import (
    Rows,
    group_extreme,
    group_first,
    group_rows,
    group_sum,
    tunnel_rows,
)
from pktkit.capture.checksums import BAD
from pktkit.capture.checksums import COLUMN_VALUES as CHECKSUM_VALUES
from pktkit.capture.frame import typed_frame
from pktkit.report.labels import (
    distinct_text,
    joined,
    text_column,
)

ERRORS_SCHEMA: dict[str, str] = {
    "capture": "string", "reason": "string", "packets": "Int64", "first_frame": "Int64",
    "frames": "string",
}


CAPTURES_SCHEMA: dict[str, str] = {
    "capture": "string", "packets": "Int64", "bytes": "Int64", "first_ts_ns": "Int64",
    "last_ts_ns": "Int64", "linktype": "UInt16", "interfaces": "string", "tunnelled": "Int64",
    "fragments": "Int64", "errors": "Int64", "bad_checksums": "Int64", "complete": "boolean",
}

CHECKSUMS_SCHEMA: dict[str, str] = {
    "capture": "string", "interface": "string", "checked": "Int64", "bad": "Int64",
    "offload": "Int64", "unchecked": "Int64", "ok": "Int64",
}


def _frame_list(frames: pd.Series, limit: int = 5) -> str:
    shown = ", ".join(str(int(f)) for f in frames.iloc[:limit])
    return shown + (", …" if len(frames) > limit else "")


def errors(packets: pd.DataFrame) -> pd.DataFrame:
    """Decode problems per (capture, reason), plus snaplen-cut frames and cut files."""
    records: list[dict[str, Any]] = []
    if len(packets):
        rows = Rows(packets)
        has_error = ~rows.isna("error")
        cap_len = rows.values("cap_len", "int64", 0)
        wire_len = rows.values("wire_len", "int64", 0)
        snaplen_cut = (~has_error & ~rows.isna("cap_len") & ~rows.isna("wire_len")
                       & (cap_len < wire_len))
        del cap_len, wire_len
        flagged_rows = np.flatnonzero(has_error | snaplen_cut)
        del has_error
        # only the flagged rows, usually few, become a frame
        flagged = pd.DataFrame({"capture": packets["capture"].array[flagged_rows],
                                "frame": packets["frame"].array[flagged_rows],
                                "reason": text_column(
                                    pd.Series(packets["error"].array[flagged_rows]))
                                .mask(snaplen_cut[flagged_rows], "snaplen-cut")})
        for (capture, why), group in flagged.groupby([text_column(flagged["capture"]), "reason"],
                                                     sort=False):
            records.append({"capture": capture, "reason": why, "packets": len(group),
                            "first_frame": int(group["frame"].iloc[0]),
                            "frames": _frame_list(group["frame"])})
    for stats in packets.attrs.get("read_stats", []):
        if stats.get("stopped_at") is not None:
            records.append({"capture": stats["capture"], "reason": "capture-cut",
                            "packets": pd.NA, "first_frame": stats.get("frames") or pd.NA,
                            "frames": f"{stats.get('reason')} at byte {stats['stopped_at']}"})
    table = pd.DataFrame.from_records(records, columns=list(ERRORS_SCHEMA))
    return typed_frame(table.sort_values(["capture", "reason"], kind="stable"), ERRORS_SCHEMA)


def captures(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per capture file: volume, time span, link type, interfaces, problems."""
    if packets.empty:
        return typed_frame(pd.DataFrame(), CAPTURES_SCHEMA)
    has_capture = packets["capture"].notna().to_numpy()
    rows = Rows(packets, None if has_capture.all() else np.flatnonzero(has_capture))
    del has_capture
    group, first = group_rows(rows.codes("capture"))
    count = len(first)
    ts, has_ts = rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")
    first_ts = group_extreme(group, count, ts, has_ts, largest=False)
    last_ts = group_extreme(group, count, ts, has_ts, largest=True)
    del ts, has_ts
    linktype_row = group_first(group, count, ~rows.isna("linktype"))
    linktype = rows.take("linktype", np.maximum(linktype_row, 0)).mask(linktype_row < 0)
    encap, names = rows.encap_codes()
    table = pd.DataFrame({
        "capture": text_column(rows.take("capture", first)),
        "packets": np.bincount(group, minlength=count),
        "bytes": group_sum(group, count, rows.values("wire_len", "int64", 0)),
        "first_ts_ns": first_ts, "last_ts_ns": last_ts, "linktype": linktype,
        "tunnelled": np.bincount(group[tunnel_rows(encap, names)], minlength=count),
        "fragments": np.bincount(group[rows.values("fragment", "bool", False)],
                                 minlength=count),
        "errors": np.bincount(group[~rows.isna("error")], minlength=count),
        "bad_checksums": np.bincount(group[_checksum(packets, rows.positions) == BAD],
                                     minlength=count),
        "interfaces": [joined(found)
                       for found in distinct_text(rows, "interface", group, count)],
    })
    cut = {s["capture"] for s in packets.attrs.get("read_stats", [])
           if s.get("stopped_at") is not None}
    table["complete"] = ~table["capture"].isin(list(cut))
    return typed_frame(table, CAPTURES_SCHEMA)


def _checksum(packets: pd.DataFrame, positions: np.ndarray | None) -> np.ndarray:
    codes = _checksum_codes(packets)
    return codes if positions is None else codes[positions]


def _checksum_codes(packets: pd.DataFrame) -> np.ndarray:
    """The ``checksum`` column as codes into CHECKSUM_VALUES (-1: NA; a table without the
    column, one made before it existed: all NA)."""
    if "checksum" not in packets:
        return np.full(len(packets), -1, np.int8)
    return pd.Categorical(packets["checksum"].astype("string"),
                          categories=CHECKSUM_VALUES).codes


def checksums(packets: pd.DataFrame) -> pd.DataFrame:
    """Checksum verdicts per (capture, interface): the bad ones where they were captured."""
    status = _checksum_codes(packets)
    checked = np.flatnonzero(status >= 0)
    if not len(checked):
        return typed_frame(pd.DataFrame(), CHECKSUMS_SCHEMA)
    rows = Rows(packets, checked)
    status = status[checked]
    group, first = group_rows(rows.codes("capture"), rows.codes("interface"))
    count = len(first)
    table = pd.DataFrame({
        "capture": text_column(rows.take("capture", first)),
        "interface": text_column(rows.take("interface", first)),
        "checked": np.bincount(group, minlength=count),
        **{name: np.bincount(group[status == code], minlength=count)
           for code, name in enumerate(CHECKSUM_VALUES)},
    })
    table = table.sort_values(["bad", "capture"], ascending=[False, True], kind="stable")
    return typed_frame(table, CHECKSUMS_SCHEMA)
