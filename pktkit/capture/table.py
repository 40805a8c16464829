"""The per-packet table: captures → one typed pandas row per frame, plus writing and a summary.

Columns (``SCHEMA`` holds the dtypes; nullable dtypes, so "not applicable" is ``<NA>``):

==============  ===========  ==============================================================
column          dtype        meaning
==============  ===========  ==============================================================
capture         string       file name of the capture (no folder)
frame           UInt32       1-based frame number in its file (tshark's frame.number)
ts_ns           Int64        capture time, ns since the epoch (NA: pcapng simple packet)
interface       string       ``ifnames[ifindex]`` for an SLL2 frame whose ifindex is mapped,
                             else the pcapng ``if_name``, else the SLL2 ifindex as text,
                             else NA
interface_id    UInt32       pcapng interface number (across sections; NA in pcap)
ifindex         UInt32       interface index from the Linux cooked v2 (SLL2) header
direction       category     in / out / other: SLL/SLL2 packet type (0-2 in, 4 out,
                             3 otherhost), else pcapng epb_flags; NA when unknown
linktype        UInt16       LINKTYPE_* of the frame
wire_len        UInt32       original frame length
cap_len         UInt32       captured length (< wire_len: cut by the snaplen)
encap           category     tunnels decoded, outermost first, joined by "/": vxlan,
                             vxlan-gpe, geneve, nvgre (GRE key + 0x6558), gre, erspan,
                             ipip (4in4, 6in4, 4in6, 6in6); "none" without tunnel
vni             UInt32       of the innermost tunnel that has one: VXLAN/Geneve VNI,
                             NVGRE VSID (key >> 8), or the key of plain GRE/ERSPAN
outer_src/dst   string       outermost IP header's addresses; NA unless tunnelled
outer_sport/    UInt16       that header's UDP ports (VXLAN, Geneve); NA for GRE/IP-in-IP
  outer_dport                and when not tunnelled
ethertype       UInt16       ethertype of the innermost frame (2054 = ARP); NA for LLC
ip_version      UInt8        4 or 6 for the innermost IP packet
src, dst        string       innermost IP packet's addresses. NA when the innermost frame is
                             not IP (ARP, STP, a tunnel carrying non-IP such as a GRE
                             keepalive): then the outer IP header is in outer_*, not here
proto           UInt8        innermost IP packet's upper-layer protocol number (after IPv6
                             extension headers)
sport, dport    UInt16       TCP/UDP ports of that packet; NA for other protocols (ICMP echo
                             identifiers are not ports), for non-first fragments, and when
                             the capture cut the header before them
ttl             UInt8        innermost IPv4 TTL / IPv6 hop limit
ip_id           UInt32       innermost IPv4 identification / IPv6 fragment identification
fragment        boolean      some IPv4/IPv6 header in the frame is a fragment
tcp_flags       UInt16       9 TCP flag bits (0x002 SYN, 0x010 ACK, ...)
icmp_type/code  UInt8        ICMP / ICMPv6 type and code of the innermost packet
ip_len          UInt32       innermost IP packet's length field (IPv4 total length, IPv6 40 +
                             payload length; the captured bytes when the field is 0)
frag_offset     UInt16       innermost IP header's fragment offset in bytes (0: whole
                             packet or first fragment)
more_fragments  boolean      innermost IP header's MF flag
tcp_seq/ack     UInt32       TCP sequence and acknowledgment numbers
icmp_id/seq     UInt16       ICMP/ICMPv6 echo request/reply identifier and sequence number
l4_payload_len  UInt32       innermost payload bytes in the frame by the length fields (not
                             the captured bytes): after the TCP header, the UDP header, the
                             8-byte ICMP header; the whole IP payload of other protocols and
                             of a non-first fragment
payload_hash    UInt32       CRC-32 (zlib) of the first min(64, l4_payload_len) of those
                             bytes (``decode.PAYLOAD_HASH_BYTES``); NA when the capture cut
                             them off. With IP id, TCP sequence numbers and ICMP echo
                             sequence: what survives NAT, TTL and tunnels, for matching the
                             sightings of one packet (:mod:`pktkit.analysis.correlate`)
overhead_bytes  UInt32       wire bytes the encapsulation adds in front of the innermost
                             frame: from the outermost network header to the innermost
                             tunnel's payload, plus, when that payload is an Ethernet frame
                             (VXLAN, Geneve 0x6558, NVGRE, ERSPAN), the outer link header as
                             it was on the wire (Ethernet 14 + VLAN tags; in an SLL/SLL2
                             capture of an Ethernet device, 14). A bare IP payload (IP-in-IP,
                             GRE 0x0800, Geneve 0x0800) does not count the outer link header.
                             Tunnel headers count whole (Geneve options, GRE key/sequence,
                             ERSPAN). 0 without tunnel. VXLAN/IPv4 14+20+8+8 = 50, VXLAN/IPv6
                             70, Geneve with one 8-byte option 58, NVGRE 42, IPIP 20
flow_id         Int64        bidirectional flow number, 0-based in order of first appearance
                             in the table (see below); NA when src/dst are NA
error           category     NA, or why decoding stopped short (``decode.ERROR_REASONS``)
==============  ===========  ==============================================================

Flows: the key is (encap, vni, proto, {(src, sport), (dst, dport)}) with the two endpoints
sorted, so both directions of a connection share an id, while the same 5-tuple on another
VNI or another tunnel chain is another flow. The key has neither the capture nor the
interface: the same connection seen at two capture points gets one id (group by
``["capture", "flow_id"]`` to split them). Non-first IP fragments carry no ports and so form
their own (src, dst, proto) flow; ICMP flows have no ports.

Non-first fragments of a tunnelled packet hold no tunnel header: their row shows the outer
IP packet (encap "none", e.g. proto 47), as tshark does without reassembly.

Two engines build this same table: the default decodes batches of frames with numpy
(:mod:`pktkit.capture.columns`, ~1 µs a packet), ``engine="reference"`` one frame at a time with
:mod:`pktkit.capture.decode` (~16 µs). :func:`write_packets` streams captures into a CSV or Parquet
file batch by batch, in flat memory (``pktkit packets -o``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pktkit.capture import columns as _columns
from pktkit.capture.columns import (
    DIRECTIONS,
    BatchDecoder,
    ColumnBatch,
    Engine,
    string_array,
    warn_if_cut,
)
from pktkit.capture.decode import ERROR_REASONS, DecodedPacket, Decoder
from pktkit.capture.read import CaptureReader, RawFrame, ReadStats
from pktkit.errors import UsageError

TABLE_SUFFIXES = _columns.TABLE_SUFFIXES

SCHEMA: dict[str, str | pd.CategoricalDtype] = {
    "capture": "string",
    "frame": "UInt32",
    "ts_ns": "Int64",
    "interface": "string",
    "interface_id": "UInt32",
    "ifindex": "UInt32",
    "direction": pd.CategoricalDtype(list(DIRECTIONS)),
    "linktype": "UInt16",
    "wire_len": "UInt32",
    "cap_len": "UInt32",
    "encap": "category",
    "vni": "UInt32",
    "outer_src": "string",
    "outer_dst": "string",
    "outer_sport": "UInt16",
    "outer_dport": "UInt16",
    "ethertype": "UInt16",
    "ip_version": "UInt8",
    "src": "string",
    "dst": "string",
    "proto": "UInt8",
    "sport": "UInt16",
    "dport": "UInt16",
    "ttl": "UInt8",
    "ip_id": "UInt32",
    "fragment": "boolean",
    "tcp_flags": "UInt16",
    "icmp_type": "UInt8",
    "icmp_code": "UInt8",
    "ip_len": "UInt32",
    "frag_offset": "UInt16",
    "more_fragments": "boolean",
    "tcp_seq": "UInt32",
    "tcp_ack": "UInt32",
    "icmp_id": "UInt16",
    "icmp_seq": "UInt16",
    "l4_payload_len": "UInt32",
    "payload_hash": "UInt32",
    "overhead_bytes": "UInt32",
    "flow_id": "Int64",
    "error": pd.CategoricalDtype(list(ERROR_REASONS)),
}

FlowKey = tuple[str, int | None, int | None, tuple[str, int], tuple[str, int]]


class _FlowNumbering:
    """Bidirectional flow ids in order of first appearance."""

    def __init__(self) -> None:
        self._ids: dict[FlowKey, int] = {}

    def id_of(self, p: DecodedPacket, encap: str, vni: int | None) -> int | None:
        if p.src is None or p.dst is None:
            return None
        # -1 stands for "no port" so that the endpoints sort without None comparisons
        a = (p.src, -1 if p.sport is None else p.sport)
        b = (p.dst, -1 if p.dport is None else p.dport)
        key: FlowKey = (encap, vni, p.proto, *sorted((a, b)))  # type: ignore[assignment]
        return self._ids.setdefault(key, len(self._ids))


def _interface(raw: RawFrame, p: DecodedPacket, ifnames: Mapping[int, str] | None) -> str | None:
    if p.ifindex is not None and ifnames and p.ifindex in ifnames:
        return ifnames[p.ifindex]
    if raw.interface is not None:
        return raw.interface
    return None if p.ifindex is None else str(p.ifindex)


def _row(
    raw: RawFrame, p: DecodedPacket, flows: _FlowNumbering, ifnames: Mapping[int, str] | None
) -> tuple:
    encap, vni = p.encap, p.vni
    return (
        raw.capture, raw.frame, raw.ts_ns, _interface(raw, p, ifnames), raw.interface_id,
        p.ifindex, p.direction or raw.direction, raw.linktype, raw.wire_len, raw.cap_len,
        encap, vni, p.outer_src, p.outer_dst, p.outer_sport, p.outer_dport,
        p.ethertype, p.ip_version, p.src, p.dst, p.proto, p.sport, p.dport,
        p.ttl, p.ip_id, p.fragment, p.tcp_flags, p.icmp_type, p.icmp_code,
        p.ip_len, p.frag_offset, p.more_fragments, p.tcp_seq, p.tcp_ack, p.icmp_id,
        p.icmp_seq, p.l4_payload_len, p.payload_hash,
        p.overhead_bytes, flows.id_of(p, encap, vni), p.error,
    )


PathArg = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def _path_list(paths: PathArg) -> list[str | os.PathLike[str]]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def empty_frame(schema: Mapping[str, object]) -> pd.DataFrame:
    """A table with no rows but every column of ``schema`` with its dtype (so that concat,
    merge and CSV/Parquet output of an empty result keep the documented schema)."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in schema.items()})


def typed_frame(df: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with exactly the schema's columns, in order and with its dtypes, on a fresh
    0..n-1 index and with no ``attrs`` (a table made from the packet table must not carry its
    read_stats); no rows: :func:`empty_frame`. A column the schema names must be there."""
    if df.empty:
        return empty_frame(schema)
    typed = df.reset_index(drop=True)[list(schema)].astype(dict(schema))
    typed.attrs = {}
    return typed


def read_packets(
    paths: PathArg,
    *,
    vxlan_ports: Iterable[int] = (),
    ifnames: Mapping[int, str] | None = None,
    engine: Engine = "fast",
) -> pd.DataFrame:
    """Read and decode captures into one table (see the module docstring for the columns).

    ``vxlan_ports`` adds UDP destination ports decoded as VXLAN (4789 and 8472 always are).
    ``ifnames`` names SLL2 interface indexes. A capture cut mid-record contributes its whole
    frames and a :class:`~pktkit.capture.read.CaptureCutWarning`; ``df.attrs["read_stats"]`` holds one
    :class:`~pktkit.capture.read.ReadStats` dict per capture. Raises ``CaptureError`` for a file that
    is not a capture.

    ``engine="fast"`` (the default) decodes batches of frames with numpy
    (:mod:`pktkit.capture.columns`); ``engine="reference"`` decodes frame by frame with
    :class:`~pktkit.capture.decode.Decoder`. Both give the same table.
    """
    if engine == "fast":
        return _read_fast(_path_list(paths), BatchDecoder(vxlan_ports, ifnames))
    if engine != "reference":
        raise UsageError(f"engine {engine!r}: choose 'fast' or 'reference'")
    decoder = Decoder(vxlan_ports)
    flows = _FlowNumbering()
    rows: list[tuple] = []
    stats: list[ReadStats] = []
    for path in _path_list(paths):
        reader = CaptureReader(path)
        decode = decoder.decode
        for raw in reader:
            rows.append(_row(raw, decode(raw.data, raw.linktype, raw.wire_len), flows, ifnames))
        stats.append(reader.stats)
        warn_if_cut(reader.stats)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SCHEMA]
    df = pd.DataFrame(
        {
            name: pd.Series(list(values), dtype=dtype)
            for (name, dtype), values in zip(SCHEMA.items(), columns, strict=True)
        }
    )
    df.attrs["read_stats"] = [asdict(s) for s in stats]
    return df


def _read_fast(paths: list[str | os.PathLike[str]], decoder: BatchDecoder) -> pd.DataFrame:
    batches: list[ColumnBatch] = []
    for path in paths:
        batches.extend(decoder.batches(path))
        warn_if_cut(decoder.stats[-1])
    if batches:
        df = batches_frame(batches)
    else:  # no rows: exactly the reference's empty table
        df = pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in SCHEMA.items()})
    df.attrs["read_stats"] = [asdict(s) for s in decoder.stats]
    return df


def batches_frame(batches: list[ColumnBatch]) -> pd.DataFrame:
    """Column batches → the table, with SCHEMA's dtypes (masked arrays built without boxing).

    Consumes the batches: each column's parts are dropped once it is built, so the batches and
    the table are never both whole in memory."""
    first = batches[0]
    is_int = {name: name in first.ints for name in SCHEMA}
    is_bool = {name: name in first.bools for name in SCHEMA}
    is_string = {name: name in first.strings for name in SCHEMA}
    data: dict[str, object] = {}
    for name, dtype in SCHEMA.items():
        if is_int[name] or is_bool[name]:
            parts = [(b.ints if is_int[name] else b.bools).pop(name) for b in batches]
            values = np.concatenate([v for v, _ in parts])
            mask = np.concatenate([np.zeros(len(v), bool) if m is None else m for v, m in parts])
            del parts
            cls = pd.arrays.BooleanArray if is_bool[name] else pd.arrays.IntegerArray
            data[name] = cls(values, mask)
        elif is_string[name]:
            chunks = [string_array(*b.strings.pop(name)) for b in batches]
            data[name] = pd.arrays.ArrowStringArray(pa.chunked_array(chunks, pa.large_string()))
        elif name == "encap":  # open vocabulary: categories sorted, as pandas infers them
            codes = np.concatenate([b.categories.pop(name) for b in batches])
            names = batches[-1].encap_names  # the names only grow, batch by batch
            used = np.unique(codes)
            categories = sorted(names[c] for c in used.tolist())
            remap = np.zeros(len(names), np.int32)
            remap[used] = [categories.index(names[c]) for c in used.tolist()]
            data[name] = pd.Categorical.from_codes(remap[codes], categories=categories)
        else:
            codes = np.concatenate([b.categories.pop(name) for b in batches])
            data[name] = pd.Categorical.from_codes(codes, dtype=dtype)
    return pd.DataFrame(data, copy=False)


def write_packets(
    paths: PathArg,
    out: str | os.PathLike[str],
    *,
    vxlan_ports: Iterable[int] = (),
    ifnames: Mapping[int, str] | None = None,
) -> list[ReadStats]:
    """Decode captures straight into a CSV or Parquet file, batch by batch, in flat memory.

    The file holds what ``write_table(read_packets(paths, ...), out)`` would write: the same
    CSV text; in Parquet the same table, in row groups of ~131k rows, except that ``encap``'s
    categories come back in order of appearance rather than sorted. Written atomically (temp
    file + rename). Returns one :class:`~pktkit.capture.read.ReadStats` per capture; a cut capture also
    warns, as in read_packets. Parquet output does not import pandas.
    """
    return _columns.write_packets(_path_list(paths), out, vxlan_ports=vxlan_ports,
                                 ifnames=ifnames)


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` as CSV or Parquet (chosen by the suffix), atomically: temp file + rename.
    Parquet is written by :func:`write_parquet`."""
    path = Path(path)
    suffix = _columns.table_suffix(path)
    with _columns.atomic_output(path) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            write_parquet(df, tmp)
    return path


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """``df.to_parquet(path, index=False)`` in flat memory: a table longer than one row group
    (:data:`pktkit.capture.columns.ROW_GROUP_ROWS` rows) is converted to Arrow and written one row
    group at a time, so its Arrow copy is never whole. The file reads back as the same
    DataFrame, dtypes, categories and ``attrs`` included, as pandas' own file does; only its
    row groups are smaller."""
    rows_per_group = _columns.ROW_GROUP_ROWS
    if len(df) <= rows_per_group:  # one row group either way: pandas' own file
        df.to_parquet(path, index=False)
        return
    import pyarrow.parquet as pq

    # the whole table's schema, with pandas' metadata, as to_parquet would write it
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    if df.attrs:
        schema = schema.with_metadata({**schema.metadata,
                                       b"PANDAS_ATTRS": json.dumps(df.attrs).encode()})
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, len(df), rows_per_group):
            part = df.iloc[start:start + rows_per_group]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


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
    for stats in df.attrs.get("read_stats", []):
        if stats.get("stopped_at") is not None:
            lines.append(f"  warning: {ReadStats(**stats).describe()}")
    return "\n".join(lines)
