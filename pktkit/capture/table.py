"""The per-packet table: captures → one typed pandas row per frame, plus writing and a summary.

The columns, their dtypes and meanings are declared once, in :mod:`pktkit.capture.schema`
(``SCHEMA`` here holds their pandas dtypes).

Two engines build this same table: the default decodes batches of frames with numpy
(:mod:`~pktkit.capture.columns`, ~1 µs a packet), ``engine="reference"`` one frame at a time
with :mod:`~pktkit.capture.decode` (~16 µs). :func:`~pktkit.capture.output.write_packets`
streams captures into a CSV or Parquet file batch by batch, in flat memory (``packets -o``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import pandas as pd

from pktkit.capture.autoports import PortsArg, resolve_ports
from pktkit.capture.columns import BatchDecoder, ColumnBatch, DecodeEngine
from pktkit.capture.decode import DecodedPacket, Decoder
from pktkit.capture.flows import FlowNumbering
from pktkit.capture.frame import SCHEMA, ReadStatsList, batches_frame
from pktkit.capture.output import IfnamesArg, PathArg, ifnames_list, path_list
from pktkit.capture.read import CaptureReader, RawFrame, ReadStats, warn_if_cut
from pktkit.capture.reasons import error_categories
from pktkit.capture.tunnel_ports import describe
from pktkit.errors import UsageError


def _interface(raw: RawFrame, p: DecodedPacket, ifnames: Mapping[int, str] | None) -> str | None:
    if p.ifindex is not None and ifnames and p.ifindex in ifnames:
        return ifnames[p.ifindex]
    if raw.interface is not None:
        return raw.interface
    return None if p.ifindex is None else str(p.ifindex)


def _row(raw: RawFrame, p: DecodedPacket, flows: FlowNumbering,
         ifnames: Mapping[int, str] | None) -> dict[str, object]:
    """One frame's values by column name (every name of ``COLUMNS``)."""
    encap, vni = p.encap, p.vni
    return {
        "capture": raw.capture, "frame": raw.frame, "ts_ns": raw.ts_ns,
        "interface": _interface(raw, p, ifnames), "interface_id": raw.interface_id,
        "ifindex": p.ifindex, "direction": p.direction or raw.direction,
        "linktype": raw.linktype, "wire_len": raw.wire_len, "cap_len": raw.cap_len,
        "encap": encap, "vni": vni, "outer_src": p.outer_src, "outer_dst": p.outer_dst,
        "outer_sport": p.outer_sport, "outer_dport": p.outer_dport,
        "outer_ip_id": p.outer_ip_id, "ethertype": p.ethertype,
        "ip_version": p.ip_version, "src": p.src, "dst": p.dst, "proto": p.proto,
        "sport": p.sport, "dport": p.dport, "ttl": p.ttl, "ip_id": p.ip_id,
        "fragment": p.fragment, "tcp_flags": p.tcp_flags, "icmp_type": p.icmp_type,
        "icmp_code": p.icmp_code, "ip_len": p.ip_len, "frag_offset": p.frag_offset,
        "more_fragments": p.more_fragments, "tcp_seq": p.tcp_seq, "tcp_ack": p.tcp_ack,
        "icmp_id": p.icmp_id, "icmp_seq": p.icmp_seq, "l4_payload_len": p.l4_payload_len,
        "payload_hash": p.payload_hash, "overhead_bytes": p.overhead_bytes,
        "flow_id": flows.id_of(p, encap, vni), "checksum": p.checksum_status, "error": p.error,
    }


def read_packets(
    paths: PathArg,
    *,
    vxlan_ports: PortsArg = (),
    ifnames: IfnamesArg = None,
    engine: DecodeEngine = "fast",
) -> pd.DataFrame:
    """Read and decode captures into one table (columns: :mod:`pktkit.capture.schema`).

    ``vxlan_ports`` adds UDP destination ports decoded as VXLAN (4789 and 8472 always are; a
    port that belongs to another tunnel, 6081 say, is refused). ``vxlan_ports="auto"`` first
    finds the ports carrying VXLAN or Geneve in the packets themselves
    (:mod:`pktkit.capture.autoports`), decodes them so, and lists every port found in
    ``df.attrs["tunnel_ports"]`` (``[{"port": 8472, "kind": "vxlan"}, ...]``).
    ``ifnames`` names SLL2 interface indexes: one map ``{ifindex: name}`` for every capture,
    or a sequence of one map (or None) per capture, in order (every node numbers its own
    devices). A name given this way wins over a pcapng interface block's. A capture cut
    mid-record contributes its whole frames and a
    :class:`~pktkit.capture.read.CaptureCutWarning`; ``df.attrs["read_stats"]``
    holds one :class:`~pktkit.capture.read.ReadStats` dict per capture. Raises
    ``CaptureError`` for a file that is not a capture.

    ``engine="fast"`` (the default) decodes batches of frames with numpy
    (:mod:`pktkit.capture.columns`); ``engine="reference"`` decodes frame by frame with
    :class:`~pktkit.capture.decode.Decoder`. Both give the same table.
    """
    if engine not in ("fast", "reference"):
        raise UsageError(f"engine {engine!r}: choose 'fast' or 'reference'")
    files = path_list(paths)
    names = ifnames_list(ifnames, len(files))
    ports = resolve_ports(files, vxlan_ports)
    if engine == "fast":
        df = read_columnar(files, BatchDecoder(ports.vxlan, geneve_ports=ports.geneve), names)
        if ports.found is not None:
            df.attrs["tunnel_ports"] = ports.attrs()
        return df
    decoder = Decoder(ports.vxlan, geneve_ports=ports.geneve)
    flows = FlowNumbering()
    rows: list[dict[str, object]] = []
    stats: list[ReadStats] = []
    for path, file_ifnames in zip(files, names, strict=True):
        reader = CaptureReader(path)
        decode = decoder.decode
        for raw in reader:
            rows.append(_row(raw, decode(raw.data, raw.linktype, raw.wire_len), flows,
                             file_ifnames))
        stats.append(reader.stats)
        warn_if_cut(reader.stats)
    errors = [row["error"] for row in rows]
    dtypes = {**SCHEMA, "error": pd.CategoricalDtype(error_categories(errors))}
    df = pd.DataFrame({name: pd.Series([row[name] for row in rows], dtype=dtype)
                       for name, dtype in dtypes.items()})
    df.attrs["read_stats"] = ReadStatsList(asdict(s) for s in stats)
    if ports.found is not None:
        df.attrs["tunnel_ports"] = ports.attrs()
    return df


def read_columnar(paths: list[str | os.PathLike[str]], decoder: BatchDecoder,
                  ifnames: Sequence[Mapping[int, str] | None] | None = None) -> pd.DataFrame:
    """The table of ``paths`` through the fast decoder (``ifnames``: one map per path)."""
    batches: list[ColumnBatch] = []
    for path, names in zip(paths, ifnames or [None] * len(paths), strict=True):
        batches.extend(decoder.batches(path, names))
        warn_if_cut(decoder.stats[-1])
    if batches:
        df = batches_frame(batches)
    else:  # no rows: exactly the reference's empty table
        df = pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in SCHEMA.items()})
    df.attrs["read_stats"] = ReadStatsList(asdict(s) for s in decoder.stats)
    return df


def summarize(df: pd.DataFrame) -> str:
    """A short text summary for the terminal: per capture, per encapsulation/VNI, errors."""
    captures = df["capture"].astype("string")
    lines = [
        f"{len(df)} packets in {captures.nunique()} captures, "
        f"{df['flow_id'].nunique()} flows"
    ]
    width = max([len("capture"), *(len(str(c)) for c in captures.unique())])
    lines.append(f"  {'capture':<{width}}  {'packets':>8}  {'tunnelled':>9}  {'errors':>6}")
    for capture, group in df.groupby(captures, sort=False):
        tunnelled = int((group["encap"].astype("string") != "none").sum())
        errors = int(group["error"].notna().sum())
        lines.append(f"  {capture:<{width}}  {len(group):>8}  {tunnelled:>9}  {errors:>6}")
    # counted by pandas, not row by row in Python: a million-row table is common
    pairs = df[["encap", "vni"]].value_counts(dropna=False, sort=False)
    encaps = Counter({(str(encap), None if pd.isna(vni) else int(vni)): int(n)
                      for (encap, vni), n in pairs.items() if n})
    if encaps:
        lines.append("  encapsulation (vni): " + ", ".join(
            f"{e}{'' if v is None else f' {v}'} x{n}"
            for (e, v), n in sorted(encaps.items(), key=lambda kv: (-kv[1], kv[0][0]))
        ))
    reasons = df["error"].value_counts()
    reasons = reasons[reasons > 0]
    if len(reasons):
        lines.append("  errors: " + ", ".join(f"{r} x{n}" for r, n in reasons.items()))
    if "tunnel_ports" in df.attrs:
        lines.append("  " + describe({p["port"]: p["kind"] for p in df.attrs["tunnel_ports"]}))
    for stats in df.attrs.get("read_stats", []):
        if stats.get("stopped_at") is not None:
            lines.append(f"  warning: {ReadStats(**stats).describe()}")
    return "\n".join(lines)
