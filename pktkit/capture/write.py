"""Capture-file writers: classic pcap and pcapng, Ethernet/raw-IP or Linux cooked v2 (SLL2).

Our own few lines rather than Scapy's writers: the bytes must be reproducible exactly (no
generation date, no host name in a pcapng section header) and one pcapng file must hold several
named interfaces. Every file is written under a temporary name and renamed when complete, so a
failure never leaves a half-written capture behind.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pktkit.capture.formats import (
    ARPHRD_ETHER,
    ARPHRD_TUNNEL,
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_SHB,
    BYTE_ORDER_MAGIC,
    DIRECTION_PKTTYPE,
    IF_NAME,
    IF_TSRESOL,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    OPT_END,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    SHB_USERAPPL,
    SNAPLEN,
    CaptureFormat,
)
from pktkit.capture.headers import ETH_IPV4, ETH_IPV6, ETHERNET
from pktkit.errors import OutputError
from pktkit.files import AtomicFile

Linktype = Literal["ether", "sll2"]
TsResolution = Literal["us", "ns"]

PCAP_MAGIC = {"us": PCAP_MAGIC_US, "ns": PCAP_MAGIC_NS}
_TICKS_PER_SECOND = {"us": 1_000_000, "ns": 1_000_000_000}


@dataclass(frozen=True)
class Interface:
    """A capture point: one network device of one node, as tcpdump would name it."""

    node: str
    name: str
    ifindex: int
    link: Literal["ether", "raw"] = "ether"  # how the device frames packets
    bridge_port: bool = False  # a bridge's port: what it receives for others is "other"

    @property
    def label(self) -> str:
        return f"{self.node}/{self.name}"


def sll2_header(frame: bytes, iface: Interface, direction: str) -> bytes:
    """Build the 20-byte Linux cooked v2 header that replaces the link header of ``frame``."""
    pkttype = DIRECTION_PKTTYPE[direction]
    if iface.link == "ether":
        ethertype = struct.unpack_from("!H", frame, ETHERNET.offset["type"])[0]
        src_mac = frame[ETHERNET.offset["src"]:ETHERNET.offset["type"]]
        return struct.pack(
            "!HHIHBB8s", ethertype, 0, iface.ifindex, ARPHRD_ETHER, pkttype, 6, src_mac
        )
    ethertype = ETH_IPV6 if frame[0] >> 4 == 6 else ETH_IPV4
    return struct.pack("!HHIHBB8s", ethertype, 0, iface.ifindex, ARPHRD_TUNNEL, pkttype, 0, b"")


def to_sll2(frame: bytes, iface: Interface, direction: str) -> bytes:
    """Re-frame a device frame as ``tcpdump -i any`` records it (link header → SLL2 header)."""
    payload = frame[ETHERNET.size:] if iface.link == "ether" else frame
    return sll2_header(frame, iface, direction) + payload


def _capture_file(path: Path) -> AtomicFile:
    return AtomicFile(path, error=lambda exc: OutputError(
        f"{path.parent}: cannot write capture files ({exc.strerror}); choose a writable --out "
        "directory"))


class PcapWriter:
    """Classic pcap: one link type per file."""

    def __init__(self, path: Path, linktype: int, ts_resolution: TsResolution = "us") -> None:
        self._file = _capture_file(path)
        self._ticks = _TICKS_PER_SECOND[ts_resolution]
        self._file.handle.write(
            struct.pack("<IHHiIII", PCAP_MAGIC[ts_resolution], 2, 4, 0, 0, SNAPLEN, linktype)
        )

    def add_interface(self, iface: Interface, linktype: int) -> int:
        return 0  # pcap has no interface table; kept for a common writer interface

    def write(self, ts_ns: int, interface_id: int, data: bytes) -> None:
        seconds, ticks = divmod(ts_ns * self._ticks // 1_000_000_000, self._ticks)
        caplen = min(len(data), SNAPLEN)
        self._file.handle.write(struct.pack("<IIII", seconds, ticks, caplen, len(data)))
        self._file.handle.write(data[:caplen])

    def commit(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.abort()


def _pcapng_option(code: int, value: bytes) -> bytes:
    padding = b"\x00" * (-len(value) % 4)
    return struct.pack("<HH", code, len(value)) + value + padding


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """pcapng: one section, one Interface Description Block per interface (with its name)."""

    def __init__(self, path: Path, ts_resolution: TsResolution = "us") -> None:
        self._file = _capture_file(path)
        self._ticks = _TICKS_PER_SECOND[ts_resolution]
        self._tsresol = 6 if ts_resolution == "us" else 9
        shb_options = _pcapng_option(SHB_USERAPPL, b"pktkit") + _pcapng_option(OPT_END, b"")
        shb = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + shb_options
        self._file.handle.write(_pcapng_block(BLOCK_SHB, shb))
        self._interfaces = 0

    def add_interface(self, iface: Interface, linktype: int) -> int:
        options = (
            _pcapng_option(IF_NAME, iface.name.encode())
            + _pcapng_option(IF_TSRESOL, bytes([self._tsresol]))
            + _pcapng_option(OPT_END, b"")
        )
        body = struct.pack("<HHI", linktype, 0, SNAPLEN) + options
        self._file.handle.write(_pcapng_block(BLOCK_IDB, body))
        self._interfaces += 1
        return self._interfaces - 1

    def write(self, ts_ns: int, interface_id: int, data: bytes) -> None:
        ticks = ts_ns * self._ticks // 1_000_000_000
        caplen = min(len(data), SNAPLEN)
        body = (
            struct.pack("<IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, caplen, len(data))
            + data[:caplen]
            + b"\x00" * (-caplen % 4)
        )
        self._file.handle.write(_pcapng_block(BLOCK_EPB, body))

    def commit(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.abort()


class CaptureSetWriter:
    """Routes each sighting to the file tcpdump would have written it to.

    ``linktype="ether"``: one file per capture point, named ``<node>-<iface>.<ext>``, holding the
    device's own framing. ``linktype="sll2"``: one file per node, ``<node>-any.<ext>``, as
    ``tcpdump -i any`` writes (in pcapng with one named interface block per device).
    """

    def __init__(
        self,
        out_dir: Path,
        interfaces: list[Interface],
        fmt: CaptureFormat = "pcap",
        linktype: Linktype = "ether",
        ts_resolution: TsResolution = "us",
    ) -> None:
        self.out_dir = out_dir
        self.fmt = fmt
        self.linktype = linktype
        self._writers: dict[str, PcapWriter | PcapngWriter] = {}
        self._route: dict[Interface, tuple[str, int]] = {}
        self._frames: dict[str, int] = {}
        try:
            for iface in interfaces:
                self._open(iface, ts_resolution)
        except BaseException:
            self.abort()
            raise

    def file_name(self, iface: Interface) -> str:
        stem = f"{iface.node}-{iface.name}" if self.linktype == "ether" else f"{iface.node}-any"
        return f"{stem}.{self.fmt}"

    def _open(self, iface: Interface, ts_resolution: TsResolution) -> None:
        name = self.file_name(iface)
        if self.linktype == "sll2":
            linktype = LINKTYPE_LINUX_SLL2
        else:
            linktype = LINKTYPE_ETHERNET if iface.link == "ether" else LINKTYPE_RAW
        if name not in self._writers:
            path = self.out_dir / name
            self._writers[name] = (
                PcapWriter(path, linktype, ts_resolution)
                if self.fmt == "pcap"
                else PcapngWriter(path, ts_resolution)
            )
            self._frames[name] = 0
        self._route[iface] = (name, self._writers[name].add_interface(iface, linktype))

    @property
    def file_names(self) -> list[str]:
        return list(self._writers)

    def manifest(self) -> dict[str, object]:
        """Where each file was captured: ``capture-set.json``, what an operator would note down
        (node, interfaces) so that ``pktkit analyze`` can group files by node and name the
        interfaces of files whose format has no names (pcap)."""
        files: dict[str, dict[str, object]] = {}
        for iface, (name, _) in self._route.items():
            entry = files.setdefault(name, {"file": name, "node": iface.node, "interfaces": []})
            entry["interfaces"].append(  # type: ignore[union-attr]
                {"name": iface.name, "ifindex": iface.ifindex})
        return {"files": list(files.values())}

    def write(
        self, ts_ns: int, iface: Interface, direction: str, frame: bytes
    ) -> tuple[str, int, int]:
        """Write one frame; return (file name, 1-based frame index, recorded length)."""
        name, interface_id = self._route[iface]
        data = to_sll2(frame, iface, direction) if self.linktype == "sll2" else frame
        self._writers[name].write(ts_ns, interface_id, data)
        self._frames[name] += 1
        return name, self._frames[name], len(data)

    def commit(self) -> None:
        for writer in self._writers.values():
            writer.commit()

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
