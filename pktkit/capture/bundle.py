"""Node bundles: what ``pktkit collect`` writes and ``pktkit analyze`` reads, declared once.

A bundle is one node's captures with the node's state around them, as a folder or a
``.tar.gz`` of that folder::

    bundle.json           node, times, every command with its exit status, tool versions,
                          tcpdump's captured/dropped counts (:class:`BundleInfo`)
    <node>-any.pcap       tcpdump -i any: Linux cooked v2 (SLL2), nanosecond timestamps
    <node>-<iface>.pcap   one per interface named with --interface: the device's link type
    start/, end/          the snapshots at the start and the end of the capture, one file per
                          command (:data:`SNAPSHOT_FILES`: conntrack.txt, ip-link.json, ...)
    kubectl.json, docker.json   optional metadata a user adds (:data:`METADATA_FILES`)

:func:`read_bundle_folder` describes a bundle folder as a :class:`Bundle`: its node, its
captures with the interface each holds, the node's devices (:mod:`pktkit.capture.netinfo`),
its conntrack dumps and metadata files. :mod:`pktkit.capture.retina` describes Microsoft
Retina's capture bundle as the same record; :mod:`pktkit.capture.unpack` opens either, as a
folder or a tarball.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pktkit.capture.netinfo import NodeLinks, read_node_links
from pktkit.errors import CaptureError

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "pktkit-bundle"
FORMAT_VERSION = 1
PHASES = ("start", "end")  # the snapshot folders, in time order
ANY = "any"  # the interface of the ``tcpdump -i any`` capture

# snapshot name (the collector's command) → its file inside start/ and end/
SNAPSHOT_FILES: dict[str, str] = {
    "conntrack": "conntrack.txt",  # conntrack -L -o extended
    "ip-link": "ip-link.json",  # ip -j -d link
    "ip-addr": "ip-addr.json",  # ip -j addr
    "ip-route": "ip-route.json",  # ip -j route
    "ip-neigh": "ip-neigh.json",  # ip -j neigh
    "iptables-nat": "iptables-nat.txt",  # iptables-save -t nat
    "iptables-filter": "iptables-filter.txt",
    "iptables-mangle": "iptables-mangle.txt",
    "bridge-fdb": "bridge-fdb.json",  # bridge -j fdb
    "hostname": "hostname.txt",
    "chronyc": "clock-chronyc.txt",  # chronyc tracking
    "timedatectl": "clock-timedatectl.txt",  # timedatectl show (when chronyc is not there)
    "adjtimex": "clock-adjtimex.json",  # the kernel's clock state, adjtimex(2)
}
# Files a user may add to a bundle for the analysis (pods, services, containers by name).
METADATA_FILES = ("kubectl.json", "docker.json")


def capture_file_name(node: str, interface: str) -> str:
    """``<node>-<interface>.pcap``, with characters a file name should not hold replaced."""
    def stem(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"

    return f"{stem(node)}-{stem(interface)}.pcap"


# -- bundle.json ------------------------------------------------------------------------------


@dataclass
class CommandRecord:
    """One tool run by the collector: what ran, where, how it ended, where its output went.

    Why every run is recorded: a bundle is evidence from a node someone else may own; an empty
    conntrack dump means something different when ``conntrack`` was missing, failed, or
    printed nothing, and the reader of the bundle must be able to tell."""

    name: str  # the snapshot name (SNAPSHOT_FILES) or the tool's, e.g. "conntrack"
    phase: str  # "start", "end", "version"
    argv: list[str]
    netns: str | None  # the network namespace it ran in (None: the collector's own)
    exit_status: int | None  # None: not run (missing tool) or timed out
    started_ns: int
    ended_ns: int
    output: str | None  # bundle-relative path of what it printed on stdout
    stderr: str = ""
    missing: bool = False
    error: str | None = None  # why it did not run or finish (missing tool, timeout, OSError)


@dataclass
class CaptureRecord:
    """One capture file of the bundle: tcpdump's command, how it ended, what it counted."""

    file: str
    interface: str  # "any", or the device of a per-interface capture
    linktype: str  # LINUX_SLL2 for any; the device's own otherwise (EN10MB for Ethernet)
    argv: list[str]
    started_ns: int = 0
    ended_ns: int = 0
    exit_status: int | None = None
    packets_captured: int | None = None
    packets_received: int | None = None  # by the filter
    packets_dropped: int | None = None  # by the kernel: the ring was full
    packets_dropped_by_interface: int | None = None
    stderr: list[str] = field(default_factory=list)


@dataclass
class BundleInfo:
    """``bundle.json``: everything about the collection that is not a capture or a snapshot."""

    node: str
    hostname: str
    netns: str | None
    kernel: str
    started_at: str  # ISO 8601, UTC
    ended_at: str
    started_ns: int
    ended_ns: int
    capture_started_ns: int
    capture_ended_ns: int
    duration_requested_s: float | None
    stopped_by: str  # duration, signal:SIGTERM, stop (a caller's event), tcpdump-exited
    signals: list[str]
    interfaces: list[str]
    filter: str | None
    snaplen: int
    captures: list[CaptureRecord]
    tool_versions: dict[str, str | None]  # first line of each tool's banner; None: missing
    commands: list[CommandRecord]
    collector: dict[str, Any]  # pid, python, pktkit version
    format: str = BUNDLE_FORMAT
    format_version: int = FORMAT_VERSION

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": data.pop("format"), "format_version": data.pop("format_version"),
                **data}


def read_bundle_info(path: Path) -> dict[str, Any]:
    """``bundle.json`` as read (a dict: later format versions may add keys). CaptureError
    names the file when it is not a bundle's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaptureError(f"{path}: not a readable bundle.json ({exc}); collect the bundle "
                           "again") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise CaptureError(f"{path}: not a pktkit bundle.json (no \"format\": "
                           f"\"{BUNDLE_FORMAT}\"); collect the bundle with pktkit collect")
    if not isinstance(data.get("node"), str) or not isinstance(data.get("captures"), list):
        raise CaptureError(f"{path}: bundle.json has no node or captures; collect the bundle "
                           "again")
    return data


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleCapture:
    """One capture file of a bundle and the interface it holds."""

    path: Path
    interface: str  # "any" (SLL2: every device, by index) or one device's name


@dataclass(frozen=True)
class Bundle:
    """One node's bundle, opened: where its files are and what they say."""

    source: Path  # what was given: the folder, or the tarball
    root: Path  # the folder holding its files (a tarball's: unpacked, temporary)
    kind: str  # "pktkit" or "retina"
    node: str
    captures: tuple[BundleCapture, ...]
    links: NodeLinks | None  # the node's devices (None: the bundle has no link data)
    conntrack: tuple[Path, ...] = ()  # dumps, oldest first
    metadata: dict[str, Path] = field(default_factory=dict)  # METADATA_FILES present, by name
    info: dict[str, Any] = field(default_factory=dict)  # bundle.json (pktkit bundles)
    notes: tuple[str, ...] = ()  # what the reader could not do, for the user

    def snapshot(self, phase: str, name: str) -> Path | None:
        """A pktkit bundle's snapshot file (``phase`` start or end), if it is there."""
        path = self.root / phase / SNAPSHOT_FILES[name]
        return path if path.is_file() else None


def read_bundle_folder(folder: Path, source: Path | None = None) -> Bundle:
    """A pktkit bundle folder as a :class:`Bundle` (``source``: what the user gave, when it
    is not the folder itself)."""
    source = source or folder
    info = read_bundle_info(folder / BUNDLE_FILE)
    captures = []
    for record in info["captures"]:
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            continue
        path = folder / record["file"]
        if not path.is_file():
            raise CaptureError(f"{path}: listed in {source}'s bundle.json but missing; copy "
                               "the whole bundle")
        captures.append(BundleCapture(path, str(record.get("interface") or ANY)))
    links: NodeLinks | None = None
    for phase in PHASES:
        snapshot = read_node_links(*(folder / phase / SNAPSHOT_FILES[name]
                                     for name in ("ip-link", "ip-addr", "bridge-fdb")))
        if snapshot is not None:
            links = snapshot if links is None else links.merged(snapshot)
    dumps = tuple(p for p in (folder / phase / SNAPSHOT_FILES["conntrack"] for phase in PHASES)
                  if p.is_file() and p.stat().st_size)
    notes = () if links is not None else (
        f"{source}: no ip link snapshot: interfaces of the -i any capture are named by index",)
    return Bundle(source, folder, "pktkit", info["node"], tuple(captures), links, dumps,
                  _metadata(folder), info, notes)


def _metadata(folder: Path) -> dict[str, Path]:
    return {name: folder / name for name in METADATA_FILES if (folder / name).is_file()}
