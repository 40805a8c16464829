"""Column batches: captures → the packet table's columns, many frames per numpy operation.

The reference path (:mod:`~pktkit.capture.read` → :class:`~pktkit.capture.decode.Decoder`,
one Python object per frame) costs ~16 µs a packet; :class:`BatchDecoder` decodes a raw batch
(:mod:`~pktkit.capture.batches`) with the vectorized layers (:mod:`~pktkit.capture.vectorized`),
sends every row those leave to the reference decoder, and returns a :class:`ColumnBatch`: the
table's columns unboxed (~1 µs a packet end to end, Parquet included; see ``make bench``).

Addresses stay integers to the end; only distinct ones are formatted, once per run. Flow ids
come from :class:`~pktkit.capture.flows.FlowIds`, which persists across batches and files, so
ids are numbered in order of first appearance exactly as the reference engine numbers them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from pktkit.capture.arrow import arrow_strings
from pktkit.capture.batches import DEFAULT_BATCH, DIRECTION_CODE, RawBatch, raw_batches
from pktkit.capture.decode import DecodedPacket, Decoder
from pktkit.capture.flows import FlowIds, HashIndex
from pktkit.capture.read import ReadStats
from pktkit.capture.reasons import ERROR_REASONS
from pktkit.capture.schema import ADDRESS_COLUMNS, CATEGORY_COLUMNS, INT_COLUMNS
from pktkit.capture.vectorized import ALL, Frames, payload_hashes, port_kinds
from pktkit.dpkt import VXLAN

DecodeEngine = Literal["fast", "reference"]  # which decoder builds the table

# the match fields (see DecodedPacket): copied from the reference decoder for fallback rows
MATCH_FIELDS = ("ip_len", "frag_offset", "tcp_seq", "tcp_ack", "icmp_id", "icmp_seq",
                "l4_payload_len", "payload_hash")
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6

Column = tuple[np.ndarray, np.ndarray | None]  # values, NA mask (None: no NA)
Strings = tuple[np.ndarray, pa.Array]  # int32 codes (-1: NA) into an Arrow string dictionary


@dataclass(slots=True)
class ColumnBatch:
    """One batch of table rows, unboxed.

    ``ints``/``bools``: values and NA masks in the table's dtypes; ``strings``: codes into a
    dictionary of distinct strings (only those were ever boxed); ``categories``: codes (-1 for
    NA) into the categories of :data:`CATEGORY_COLUMNS` (``encap``: into ``encap_names``,
    ``error``: into ``error_names``, the reasons followed by named unsupported payloads).
    """

    n: int
    ints: dict[str, Column]
    bools: dict[str, Column]
    strings: dict[str, Strings]
    categories: dict[str, np.ndarray]
    encap_names: list[str]
    error_names: list[str]

    def names(self, column: str) -> tuple[str, ...] | list[str]:
        """The names a category column's codes point into."""
        if column == "encap":
            return self.encap_names
        if column == "error":
            return self.error_names
        return CATEGORY_COLUMNS[column] or ()


def _masked(values: np.ndarray, dtype: type[np.integer]) -> Column:
    mask = values < 0
    return values.astype(dtype), (mask if mask.any() else None)


def _v6_text(hi: int, lo: int) -> str:
    return socket.inet_ntop(_AF_INET6, hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))


def _v4_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _address_numbers(text: str | None) -> tuple[int, int, int]:
    """A decoder's address string → (family, high, low): the inverse of the formatting."""
    if text is None:
        return 0, 0, 0
    if ":" in text:
        packed = socket.inet_pton(_AF_INET6, text)
        return 6, int.from_bytes(packed[:8], "big"), int.from_bytes(packed[8:], "big")
    return 4, 0, int.from_bytes(socket.inet_pton(_AF_INET, text), "big")


class AddressTexts:
    """Distinct addresses → their text, numbered once for the whole run."""

    def __init__(self) -> None:
        self.v4 = HashIndex()
        self.v6: dict[tuple[int, int], int] = {}
        self.texts: list[str] = []
        self._arrow = arrow_strings([])

    def v4_codes(self, values: np.ndarray) -> np.ndarray:
        codes = self.v4.lookup(values)
        missing = codes < 0
        if missing.any():
            new = np.unique(values[missing])
            ids = np.arange(len(self.texts), len(self.texts) + len(new))
            self.texts.extend(_v4_text(v) for v in new.tolist())
            self.v4.add(new, ids)
            codes[missing] = self.v4.lookup(values[missing])
        return codes

    def v6_codes(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        pairs = np.stack([hi, lo], axis=1)
        distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
        ids = []
        for pair in map(tuple, distinct.tolist()):
            if pair not in self.v6:
                self.v6[pair] = len(self.texts)
                self.texts.append(_v6_text(*pair))
            ids.append(self.v6[pair])
        return np.array(ids, np.int64)[inverse.ravel()]

    def dictionary(self) -> pa.Array:
        if len(self._arrow) < len(self.texts):  # append the new texts only
            added = arrow_strings(self.texts[len(self._arrow):])
            self._arrow = pa.concat_arrays([self._arrow, added])
        return self._arrow


@dataclass(slots=True)
class _Started:
    """A batch through the layers and the reference decoder, its columns still to make; the
    encap and error names as they were then (the names only grow)."""

    raw: RawBatch
    f: Frames
    fragment: np.ndarray
    error: np.ndarray
    encap_names: list[str]
    error_names: list[str]
    ifnames: Mapping[int, str]  # this capture's SLL2 interface names


class BatchDecoder:
    """Decodes captures into :class:`ColumnBatch` es; flow ids persist across batches and files.

    ``vxlan_ports`` as for :func:`pktkit.capture.table.read_packets` (port numbers;
    ``geneve_ports`` likewise for Geneve); ``ifnames`` names the SLL2 interface indexes of
    every capture whose :meth:`batches` gets none. After a
    file's batches are consumed, ``stats[-1]`` is its :class:`ReadStats`.
    """

    def __init__(
        self, vxlan_ports: Iterable[int] = (), ifnames: Mapping[int, str] | None = None,
        batch_size: int = DEFAULT_BATCH, *, geneve_ports: Iterable[int] = (),
    ) -> None:
        self.decoder = Decoder(vxlan_ports, geneve_ports=geneve_ports)
        tunnels = self.decoder.udp_tunnels
        # other tunnels (by destination port; Teredo's by either): the reference decoder's
        self._ports = port_kinds(
            [p for p, c in tunnels.items() if c is VXLAN],
            [p for p, c in tunnels.items() if c is not VXLAN],
            [p for p, c in tunnels.items() if getattr(c, "match_source_port", False)])
        self.ifnames = dict(ifnames or {})
        self.batch_size = batch_size
        self.stats: list[ReadStats] = []
        self.encap_names = ["none", "vxlan"]  # encap code → name; grows with fallback rows
        self._encap_codes = {name: code for code, name in enumerate(self.encap_names)}
        self.error_names = list(ERROR_REASONS)  # error code → name; grows likewise
        self._error_codes = {name: code for code, name in enumerate(self.error_names)}
        self._flows = FlowIds()
        self._texts = AddressTexts()

    def batches(self, path: str | Path, ifnames: Mapping[int, str] | None = None,
                span: tuple[int, int | None] | None = None) -> Iterator[ColumnBatch]:
        """The batches of one capture; raises ``CaptureError`` at once if it is not one.
        ``ifnames``: this capture's interface names (default: the decoder's); ``span``: a
        pcap file's records from ``start`` to ``end`` only (:func:`raw_batches`)."""
        stats, raws = raw_batches(path, self.batch_size, span)
        self.stats.append(stats)
        names = self.ifnames if ifnames is None else dict(ifnames)
        return self._pipelined(raws, names)

    def _pipelined(self, raws: Iterator[RawBatch],
                   ifnames: Mapping[int, str]) -> Iterator[ColumnBatch]:
        """Batch k's checksum sums, payload hashes and columns (flow ids, addresses: numpy
        over its bytes and rows, much of it without the GIL) are made in a second thread
        while this one walks batch k + 1 and runs its layers. One worker: batches are
        finished in order, so flow ids and address codes are numbered as in one thread."""
        with ThreadPoolExecutor(1, thread_name_prefix="pktkit-columns") as pool:
            waiting: Future[ColumnBatch] | None = None
            for raw in raws:
                started = pool.submit(self._finish, self._start(raw, ifnames))
                if waiting is not None:
                    yield waiting.result()
                waiting = started
            if waiting is not None:
                yield waiting.result()

    def flow_keys(self) -> np.ndarray:
        """The flow keys numbered so far, row = flow id (see :meth:`FlowIds.key_table`)."""
        return self._flows.key_table()

    def decode(self, raw: RawBatch, ifnames: Mapping[int, str] | None = None) -> ColumnBatch:
        """One batch, in this thread."""
        return self._finish(self._start(raw, self.ifnames if ifnames is None else ifnames))

    def _start(self, raw: RawBatch, ifnames: Mapping[int, str]) -> _Started:
        """The vectorized layers, and the reference decoder for every row they leave."""
        n = len(raw)
        f = Frames(raw, self._ports)
        f.decode(raw)
        fragment = f.fragment
        error = np.full(n, -1, np.int32)
        for i in np.flatnonzero(~f.fast).tolist():
            p = self.decoder.decode(raw.frame_bytes(i), int(raw.linktype[i]), int(raw.wire_len[i]))
            self._fill(f, i, p)
            fragment[i] = p.fragment
            if p.error is not None:
                error[i] = self._error_codes.setdefault(p.error, len(self._error_codes))
                if error[i] == len(self.error_names):
                    self.error_names.append(p.error)
        return _Started(raw, f, fragment, error, list(self.encap_names), list(self.error_names),
                        ifnames)

    def _finish(self, started: _Started) -> ColumnBatch:
        """The fast rows' L4 checksums and payload hashes, then the columns."""
        raw, f = started.raw, started.f
        f.finish_checksums()
        payload_hashes(raw, f)
        return self._columns(raw, f, started)

    def _fill(self, f: Frames, i: int, p: DecodedPacket) -> None:
        """Overwrite row ``i`` with the reference decoder's result."""
        for name, value in (
            ("ifindex", p.ifindex), ("ethertype", p.ethertype), ("ip_version", p.ip_version),
            ("proto", p.proto), ("sport", p.sport), ("dport", p.dport), ("ttl", p.ttl),
            ("ip_id", p.ip_id), ("tcp_flags", p.tcp_flags), ("icmp_type", p.icmp_type),
            ("icmp_code", p.icmp_code), ("vni", p.vni), ("outer_sport", p.outer_sport),
            ("outer_dport", p.outer_dport), ("outer_ip_id", p.outer_ip_id),
            *((name, getattr(p, name)) for name in MATCH_FIELDS),
        ):
            getattr(f, name)[i] = -1 if value is None else value
        f.more_fragments[i] = -1 if p.more_fragments is None else p.more_fragments
        f.checksum[i] = p.checksum
        f.pktdir[i] = -1 if p.direction is None else DIRECTION_CODE[p.direction]
        f.overhead[i] = p.overhead_bytes
        encap = p.encap
        f.encap[i] = self._encap_codes.setdefault(encap, len(self._encap_codes))
        if f.encap[i] == len(self.encap_names):
            self.encap_names.append(encap)
        for name, text in (("outer_src", p.outer_src), ("outer_dst", p.outer_dst),
                           ("src", p.src), ("dst", p.dst)):
            fam, hi, lo = _address_numbers(text)
            arrays = f.addr[name]
            arrays[0][i], arrays[1][i], arrays[2][i] = fam, hi, lo

    def _columns(self, raw: RawBatch, f: Frames, started: _Started) -> ColumnBatch:
        n = len(raw)
        ints: dict[str, Column] = {
            "frame": (np.arange(raw.first_frame, raw.first_frame + n, dtype=np.uint32), None),
            "ts_ns": (raw.ts_ns, raw.ts_missing),
            "interface_id": (_masked(raw.interface_id, np.uint32) if raw.interface_id is not None
                             else (np.zeros(n, np.uint32), np.ones(n, bool))),
            "linktype": (raw.linktype.astype(np.uint16), None),
            "wire_len": (raw.wire_len.astype(np.uint32), None),
            "cap_len": (raw.cap_len.astype(np.uint32), None),
            "overhead_bytes": (f.overhead.astype(np.uint32), None),
            "flow_id": _masked(self._flow_ids(f), np.int64),
        }
        for name in ("ifindex", "vni", "outer_sport", "outer_dport", "outer_ip_id", "ethertype",
                     "ip_version", "proto", "sport", "dport", "ttl", "ip_id", "tcp_flags",
                     "icmp_type", "icmp_code", *MATCH_FIELDS):
            ints[name] = _masked(getattr(f, name), INT_COLUMNS[name])
        more = f.more_fragments < 0
        bools = {"fragment": (started.fragment, None),
                 "more_fragments": (f.more_fragments == 1, more if more.any() else None)}
        direction = f.pktdir.astype(np.int8)
        if raw.direction is not None:
            direction = np.where(direction >= 0, direction, raw.direction)
        strings = self._addresses(f)
        strings["capture"] = (np.zeros(n, np.int32), arrow_strings([raw.capture]))
        strings["interface"] = self._interfaces(raw, f, started.ifnames)
        return ColumnBatch(
            n, ints, bools, strings,
            {"direction": direction, "encap": f.encap.astype(np.int32),
             "checksum": f.checksum, "error": started.error},
            started.encap_names, started.error_names,
        )

    def _addresses(self, f: Frames) -> dict[str, Strings]:
        """Codes into one dictionary of addresses shared by the four address columns."""
        out: dict[str, Strings] = {}
        for name in ADDRESS_COLUMNS:
            fam, hi, lo = f.addr[name]
            codes = np.full(len(fam), -1, np.int32)
            v4 = fam == 4
            codes[v4] = self._texts.v4_codes(lo[v4])
            v6 = fam == 6
            if v6.any():
                codes[v6] = self._texts.v6_codes(hi[v6], lo[v6])
            out[name] = (codes, self._texts.dictionary())
        return out

    def _interfaces(self, raw: RawBatch, f: Frames, ifnames: Mapping[int, str]) -> Strings:
        """``ifnames[ifindex]``, else the pcapng interface name, else the ifindex as text."""
        n = len(raw)
        named = raw.interface_code if raw.interface_code is not None else np.full(n, -1, np.int32)
        if (f.ifindex < 0).all() and (named < 0).all():
            return np.full(n, -1, np.int32), arrow_strings([])
        # (ifindex + 1: 33 bits) and (name code + 1: < 2**31) in one uint64 key
        keys = ((f.ifindex + 1).astype(np.uint64) << np.uint64(31)) | (
            (named + 1).astype(np.uint64))
        distinct, inverse = np.unique(keys, return_inverse=True)
        names = raw.interface_names or []
        index: dict[str, int] = {}
        mapping = np.full(len(distinct), -1, np.int32)
        for j, key in enumerate(distinct.tolist()):
            ifindex, code = (key >> 31) - 1, (key & 0x7FFFFFFF) - 1
            if ifindex >= 0 and ifindex in ifnames:
                text: str | None = ifnames[ifindex]
            elif code >= 0:
                text = names[code]
            else:
                text = None if ifindex < 0 else str(ifindex)
            if text is not None:
                mapping[j] = index.setdefault(text, len(index))
        return mapping[inverse.ravel()], arrow_strings(list(index))

    def _flow_ids(self, f: Frames) -> np.ndarray:
        """Flow ids in order of first appearance (see :mod:`pktkit.capture.table`), -1 for none.

        The key holds what the reference key holds, as integers: both endpoints (address
        family, address, port + 1, so that 0 stands for "no port") in a fixed order, the
        innermost tunnel's VNI + 1, the encapsulation chain and the protocol + 1."""
        sf, sh, sl = f.addr["src"]
        df, dh, dl = f.addr["dst"]
        flow = np.full(len(sf), -1, np.int64)
        rows = np.flatnonzero((sf != 0) & (df != 0))
        if not len(rows):
            return flow
        if len(rows) == len(sf):  # every row: no gathers
            rows = ALL  # type: ignore[assignment]
        sh, sl, dh, dl = sh[rows], sl[rows], dh[rows], dl[rows]
        sp = (f.sport[rows] + 1).astype(np.uint64)
        dp = (f.dport[rows] + 1).astype(np.uint64)
        # both directions of a connection: sort the two endpoints (any fixed order will do)
        swap = (dh < sh) | ((dh == sh) & ((dl < sl) | ((dl == sl) & (dp < sp))))
        words = [
            np.where(swap, dh, sh), np.where(swap, dl, sl), np.where(swap, sh, dh),
            np.where(swap, sl, dl),
            # ports, and the family that keeps ::a.b.c.d apart from a.b.c.d
            (np.where(swap, dp, sp) << np.uint64(32)) | (np.where(swap, sp, dp) << np.uint64(8))
            | sf[rows].astype(np.uint64),
            (f.vni[rows] + 1).astype(np.uint64),
            (f.encap[rows].astype(np.uint64) << np.uint64(16))
            | (f.proto[rows] + 1).astype(np.uint64),
        ]
        flow[rows] = self._flows.ids(words)
        return flow
