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

from pktkit.analysis.rows import Rows, tunnel_rows
from pktkit.capture.checksums import BAD
from pktkit.capture.checksums import COLUMN_VALUES as CHECKSUM_VALUES
from pktkit.capture.frame import typed_frame
from pktkit.report.labels import (
    joined,
    text_column,
)
from pktkit.report.partials import HEAD, Agg, aggregate, merge

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


def _order(packets: pd.DataFrame, order: np.ndarray | None) -> np.ndarray:
    """Each row's place in the whole table: ``order``, else the partition's index."""
    return packets.index.to_numpy(np.int64) if order is None else order


ERROR_KINDS = {"packets": "sum", "frames": "head"}


def errors(packets: pd.DataFrame) -> pd.DataFrame:
    """Decode problems per (capture, reason), plus snaplen-cut frames and cut files: the
    partial of the whole table, merged."""
    partial = errors_partial(packets, order=np.arange(len(packets)))
    return errors_table([partial], packets.attrs.get("read_stats", []))


def errors_partial(packets: pd.DataFrame, *, order: np.ndarray | None = None) -> pd.DataFrame:
    """Per (capture, reason) of one partition: its frames and the first ``HEAD`` of them."""
    order = _order(packets, order)
    flagged_rows = np.zeros(0, np.int64)
    snaplen_cut = np.zeros(len(packets), bool)
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
    reason = text_column(pd.Series(packets["error"].array[flagged_rows])) \
        .mask(snaplen_cut[flagged_rows], "snaplen-cut")
    frames = pd.Series(packets["frame"].array[flagged_rows])
    return aggregate({"capture": text_column(pd.Series(packets["capture"].array[flagged_rows])),
                      "reason": reason}, order[flagged_rows],
                     {"packets": Agg("sum"), "frames": Agg("head", frames)})


def errors_table(partials: list[pd.DataFrame], read_stats: list[dict[str, Any]]
                 ) -> pd.DataFrame:
    """The errors table from every partition's partial and the captures' read statistics."""
    records: list[dict[str, Any]] = []
    merged = merge(partials, ERROR_KEYS, ERROR_KINDS)
    for capture, why, count, head in zip(merged["capture"], merged["reason"],
                                         merged["packets"], merged["frames"], strict=True):
        frames = pd.Series([frame for _, frame in head])
        records.append({"capture": capture, "reason": why, "packets": int(count),
                        "first_frame": int(frames.iloc[0]),
                        "frames": _frame_list(frames, limit=HEAD - 1)})  # "…": a sixth
    for stats in read_stats:
        if stats.get("stopped_at") is not None:
            records.append({"capture": stats["capture"], "reason": "capture-cut",
                            "packets": pd.NA, "first_frame": stats.get("frames") or pd.NA,
                            "frames": f"{stats.get('reason')} at byte {stats['stopped_at']}"})
    table = pd.DataFrame.from_records(records, columns=list(ERRORS_SCHEMA))
    return typed_frame(table.sort_values(["capture", "reason"], kind="stable"), ERRORS_SCHEMA)


CAPTURE_KEYS = ["capture"]  # the groups of each table's partial
ERROR_KEYS = ["capture", "reason"]
CHECKSUM_KEYS = ["capture", "interface"]
CAPTURE_KINDS = {"packets": "sum", "bytes": "sum", "first_ts_ns": "min", "last_ts_ns": "max",
                 "linktype": "first", "tunnelled": "sum", "fragments": "sum", "errors": "sum",
                 "bad_checksums": "sum", "interfaces": "distinct"}


def captures(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per capture file: volume, time span, link type, interfaces, problems (the
    partial of the whole table, merged)."""
    if packets.empty:
        return typed_frame(pd.DataFrame(), CAPTURES_SCHEMA)
    partial = captures_partial(packets, order=np.arange(len(packets)))
    return captures_table([partial], packets.attrs.get("read_stats", []))


def captures_partial(packets: pd.DataFrame, *, order: np.ndarray | None = None
                     ) -> pd.DataFrame:
    """Per capture file of one partition: its counts, time span, first link type, the
    interfaces it names."""
    order = _order(packets, order)
    has_capture = packets["capture"].notna().to_numpy()
    positions = None if has_capture.all() else np.flatnonzero(has_capture)
    rows = Rows(packets, positions)
    del has_capture
    encap, names = rows.encap_codes()
    interface = rows.codes("interface")
    return aggregate(
        {"capture": text_column(rows.take("capture", np.arange(len(interface))))},
        order if positions is None else order[positions], {
            "packets": Agg("sum"),
            "bytes": Agg("sum", rows.values("wire_len", "int64", 0)),
            "first_ts_ns": Agg("min", rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")),
            "last_ts_ns": Agg("max", rows.values("ts_ns", "int64", 0), ~rows.isna("ts_ns")),
            "linktype": Agg("first", rows.take("linktype", np.arange(len(interface))),
                            ~rows.isna("linktype")),
            "tunnelled": Agg("sum", valid=tunnel_rows(encap, names)),
            "fragments": Agg("sum", valid=rows.values("fragment", "bool", False)),
            "errors": Agg("sum", valid=~rows.isna("error")),
            "bad_checksums": Agg("sum", valid=_checksum(packets, positions) == BAD),
            "interfaces": Agg("distinct", interface,
                              text=lambda at: [str(v) for v in rows.take("interface", at)]),
        })


def captures_table(partials: list[pd.DataFrame], read_stats: list[dict[str, Any]]
                   ) -> pd.DataFrame:
    """The captures table from every partition's partial and the read statistics."""
    table = merge(partials, CAPTURE_KEYS, CAPTURE_KINDS)
    if not len(table):
        return typed_frame(pd.DataFrame(), CAPTURES_SCHEMA)
    table["interfaces"] = [joined(found) for found in table["interfaces"]]
    cut = {s["capture"] for s in read_stats if s.get("stopped_at") is not None}
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


CHECKSUM_KINDS = {"checked": "sum", **{name: "sum" for name in CHECKSUM_VALUES}}


def checksums(packets: pd.DataFrame) -> pd.DataFrame:
    """Checksum verdicts per (capture, interface): the bad ones where they were captured (the
    partial of the whole table, merged)."""
    return checksums_table([checksums_partial(packets, order=np.arange(len(packets)))])


def checksums_partial(packets: pd.DataFrame, *, order: np.ndarray | None = None
                      ) -> pd.DataFrame:
    """Per (capture, interface) of one partition: its frames with a verdict, per verdict."""
    order = _order(packets, order)
    status = _checksum_codes(packets)
    checked = np.flatnonzero(status >= 0)
    rows = Rows(packets, checked)
    status = status[checked]
    at = np.arange(len(checked))
    return aggregate({"capture": text_column(rows.take("capture", at)),
                      "interface": text_column(rows.take("interface", at))},
                     order[checked], {"checked": Agg("sum"), **{
                         name: Agg("sum", valid=status == code)
                         for code, name in enumerate(CHECKSUM_VALUES)}})


def checksums_table(partials: list[pd.DataFrame]) -> pd.DataFrame:
    """The checksums table from every partition's partial."""
    table = merge(partials, CHECKSUM_KEYS, CHECKSUM_KINDS)
    if not len(table):
        return typed_frame(pd.DataFrame(), CHECKSUMS_SCHEMA)
    table = table.sort_values(["bad", "capture"], ascending=[False, True], kind="stable")
    return typed_frame(table, CHECKSUMS_SCHEMA)
