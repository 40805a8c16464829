"""Which capture files to read, and where each was captured: node and interface names.

What a path given to the analysis may be:

- a capture file;
- a folder of capture files (with ``capture-set.json`` beside them, when someone wrote one);
- a node bundle (:mod:`pktkit.capture.bundle`): a ``pktkit collect`` folder or ``.tar.gz``,
  or Microsoft Retina's capture tarball (or the folder it unpacks to). A bundle brings its node
  name, its captures, the node's devices (interface names of ``-i any`` captures, the one
  interface and the directions of per-interface captures), the node's own addresses, its
  conntrack dumps and any metadata files (``kubectl.json``, ``docker.json``);
- a folder of bundles (a folder holding no capture file: its bundle folders and tarballs, e.g.
  one ``pktkit lab`` run, or the bundles copied off every node of a cluster);
- a packet dataset (``pktkit packets CAPTURE... -o DIR/``, :mod:`pktkit.capture.dataset`):
  its captures, already decoded, with the nodes and labels it was written with (its rows are
  read back, not decoded again: ``vxlan_ports`` does not apply to them).

Nodes and interfaces of a capture file, first rule that applies:

1. ``nodes={path: name}`` (``--node NAME=CAPTURE``; for a bundle, ``NAME=BUNDLE``);
2. the bundle it comes from (its node, and its ``ip link``: index → name);
3. ``capture-set.json`` beside the file (written by ``pktkit generate``; an operator can write
   one for their own captures): ``{"files": [{"file", "node", "interfaces": [{"name",
   "ifindex"}]}]}``. It also names the interfaces: SLL2 interface indexes of a ``tcpdump -i
   any`` file, and the one interface of a per-interface pcap file (which records none);
4. the file name's stem is the node (each file its own node; when two files share a name,
   their paths below the common folder name them apart, as they do the ``capture`` column).

:func:`opened_inputs` opens them for the length of a ``with`` block (bundle tarballs are
unpacked into a temporary folder); :func:`read_table` reads them into one packet table with a
``node`` column, the names applied and the directions of per-interface captures filled in.
:func:`metadata_beside` finds the ``kubectl.json`` and ``docker.json`` in the captures'
folders (read as ``--k8s`` / ``--docker`` files).

A symlinked capture is described by the ``capture-set.json`` beside the link (the target's
folder is the fallback) and keeps the link's name; a file named twice is read once; a pipe
(``tcpdump -w - | ...``, ``<(...)``) is a capture file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pktkit.analysis.directions import fill_directions
from pktkit.capture.arrow import string_array
from pktkit.capture.autoports import PortsArg
from pktkit.capture.bundle import ANY, Bundle
from pktkit.capture.dataset import is_dataset, read_capture, read_manifest
from pktkit.capture.formats import CAPTURE_SET_FILE, DOCKER_FILE, KUBECTL_FILE
from pktkit.capture.frame import ReadStatsList
from pktkit.capture.netinfo import NodeLinks
from pktkit.capture.reasons import error_categories
from pktkit.capture.table import read_packets
from pktkit.capture.unpack import is_bundle_folder, is_tarball, open_bundles
from pktkit.errors import CaptureError, UsageError

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


@dataclass(frozen=True)
class CaptureInput:
    """One capture file and where it was captured."""

    path: Path  # where it is read (a bundle tarball's: its unpacked copy, removed after)
    node: str
    label: str  # the ``capture`` value: the file name, unless two files share it
    interfaces: dict[int, str] = field(default_factory=dict)  # ifindex → name
    interface: str | None = None  # the file's only interface, when known
    links: NodeLinks | None = None  # the node's devices, when a bundle says
    source: Path | None = None  # the bundle it came from
    dataset: Path | None = None  # the packet dataset holding its rows (``path``: its folder)


@dataclass
class Inputs:
    """Everything the given paths hold for the analysis (see the module docstring)."""

    captures: list[CaptureInput]
    conntrack: list[tuple[str, Path, str]] = field(default_factory=list)  # node, dump, name
    node_addresses: dict[str, list[str]] = field(default_factory=dict)  # from bundles
    metadata: dict[str, dict[str, Path]] = field(default_factory=dict)  # node → name → file
    notes: list[str] = field(default_factory=list)  # what a bundle lacked, for the user


def _capture_files(folder: Path) -> list[Path]:
    files = [p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]
    listed = [f.get("file") for f in _manifest(folder).get("files", []) if isinstance(f, dict)]
    files.sort(key=lambda p: listed.index(p.name) if p.name in listed else len(listed))
    return files


def _bundles_in(folder: Path) -> list[Path]:
    """The bundle folders and tarballs inside ``folder`` (a folder of bundles)."""
    return [p for p in sorted(folder.iterdir())
            if is_bundle_folder(p) or (p.is_file() and is_tarball(p))]


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / CAPTURE_SET_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable capture-set.json ({exc}); fix or remove "
                         "it") from None
    if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
        raise UsageError(f"{path}: expected {{\"files\": [...]}}; fix or remove it")
    return data


def _items(captures: Iterable[str | os.PathLike[str]],
           nodes: Mapping[str | os.PathLike[str], str]) -> list[tuple[str, Path]]:
    """Each given path as ("bundle", path) or ("capture", file), folders expanded."""
    items: list[tuple[str, Path]] = []
    for item in [*captures, *nodes]:
        path = Path(item)
        if path.is_dir() and is_dataset(path):
            items.append(("dataset", path))
        elif is_bundle_folder(path) or (path.is_file() and is_tarball(path)):
            items.append(("bundle", path))
        elif path.is_dir():
            found = _capture_files(path)
            inner = [] if found else _bundles_in(path)
            if not found and not inner:
                raise CaptureError(f"{path}: no capture files (*.pcap, *.pcapng) and no "
                                   "bundles in this folder")
            items += [("capture", p) for p in found] + [("bundle", p) for p in inner]
        elif path.exists():  # a file, or a pipe (tcpdump -w - | ...; <(...))
            items.append(("capture", path))
        else:
            raise CaptureError(f"{path}: no such capture file or folder (give captures, "
                               "folders of them, or bundles)")
    # one item per file however it was named, under the name it was given (a symlink keeps
    # its own name and folder)
    unique: dict[Path, tuple[str, Path]] = {}
    for kind, p in items:
        unique.setdefault(p.resolve(), (kind, p.absolute()))
    return list(unique.values())


def resolve_inputs(
    captures: Iterable[str | os.PathLike[str]],
    nodes: Mapping[str | os.PathLike[str], str] | None = None,
) -> list[CaptureInput]:
    """Capture files (folders: their capture files) with their node and interface names, for
    paths that hold no bundle tarball (:func:`opened_inputs` opens those). Files named only in
    ``nodes`` are analyzed too. Raises CaptureError for a missing file."""
    items = _items(captures, nodes or {})
    if any(kind == "bundle" and not p.is_dir() for kind, p in items):
        raise UsageError("a bundle tarball is read by opened_inputs(), which unpacks it")
    with opened_inputs(captures, nodes) as found:
        return found.captures


def check_inputs(captures: Iterable[str | os.PathLike[str]],
                 nodes: Mapping[str | os.PathLike[str], str] | None = None) -> None:
    """Fail early (before any work) for a path that does not exist or holds nothing to read;
    tarballs are only opened by the analysis itself."""
    if not _items(captures, nodes or {}):
        raise UsageError("no capture given")


@contextlib.contextmanager
def opened_inputs(
    captures: Iterable[str | os.PathLike[str]],
    nodes: Mapping[str | os.PathLike[str], str] | None = None,
) -> Iterator[Inputs]:
    """The captures of the given paths (files, folders, bundles) with their nodes and names,
    and what their bundles add, for the length of the block (see the module docstring)."""
    node_of = {Path(path).resolve(): name for path, name in (nodes or {}).items()}
    items = _items(captures, nodes or {})
    if not items:
        raise UsageError("no capture given")
    with contextlib.ExitStack() as stack:
        entries: list[tuple[Path, Bundle | None, str | None]] = []  # file, bundle, interface
        datasets: list[tuple[int, list[CaptureInput]]] = []  # (captures before it, its own)
        found = Inputs([])
        for kind, path in items:
            if kind == "dataset":
                datasets.append((len({p.resolve() for p, _, _ in entries}),
                                 _dataset_inputs(path)))
                continue
            if kind == "capture":
                entries.append((path, None, None))
                continue
            bundles = stack.enter_context(open_bundles(path))
            named = node_of.get(path.resolve())
            if named is not None and len(bundles) > 1:
                raise UsageError(f"--node {named}={path}: this tarball holds "
                                 f"{len(bundles)} bundles; name each bundle's node instead")
            for bundle in bundles:
                node = named or bundle.node
                _add_bundle(found, bundle, node)
                entries += [(c.path, bundle, c.interface) for c in bundle.captures]
                node_of.update({c.path.resolve(): node for c in bundle.captures})
        found.captures = _capture_inputs(entries, node_of)
        for at, own in reversed(datasets):  # in the order the paths were given
            found.captures[at:at] = own
        if not found.captures:
            raise UsageError("no capture given")
        yield found


def _dataset_inputs(folder: Path) -> list[CaptureInput]:
    """The captures of a packet dataset, in its table's order."""
    return [CaptureInput((folder / entry["parts"][0]).parent if entry["parts"] else folder,
                         str(entry["node"]), str(entry["capture"]), dataset=folder.absolute())
            for entry in read_manifest(folder)["captures"]]


def _add_bundle(found: Inputs, bundle: Bundle, node: str) -> None:
    found.conntrack += [(node, dump, f"{bundle.source.name}:{dump.relative_to(bundle.root)}")
                        for dump in bundle.conntrack]
    if bundle.links is not None:
        known = found.node_addresses.setdefault(node, [])
        known += [a for a in bundle.links.own_addresses() if a not in known]
    found.metadata.setdefault(node, {}).update(bundle.metadata)
    found.notes += bundle.notes


def _capture_inputs(entries: list[tuple[Path, Bundle | None, str | None]],
                    node_of: Mapping[Path, str]) -> list[CaptureInput]:
    given: dict[Path, Path] = {}  # resolved → as given (a file named twice is read once)
    for path, _, _ in entries:
        given.setdefault(path.resolve(), path)
    paths = list(given.values())
    by_path = {given[path.resolve()]: (bundle, interface) for path, bundle, interface in entries}
    inputs = []
    for path, label in zip(paths, _labels(paths, by_path), strict=True):
        bundle, interface = by_path[path]
        target = path.resolve()
        if bundle is not None:
            links = bundle.links
            names = links.ifnames() if links is not None and interface == ANY else {}
            only = interface if interface and interface != ANY else None
            inputs.append(CaptureInput(path, node_of[target], label, names, only, links,
                                       bundle.source))
            continue
        entry = _manifest_entry(path) or _manifest_entry(target)
        names = {int(i["ifindex"]): str(i["name"]) for i in entry.get("interfaces", [])
                 if "ifindex" in i and "name" in i}
        only = next(iter(names.values())) if len(names) == 1 else None
        node = node_of.get(target) or entry.get("node") or label.split(".")[0]
        inputs.append(CaptureInput(path, str(node), label, names, only))
    return inputs


def _manifest_entry(path: Path) -> dict[str, Any]:
    """What the capture-set.json beside ``path`` says of it ({} when nothing)."""
    return next((f for f in _manifest(path.parent).get("files", [])
                 if isinstance(f, dict) and f.get("file") == path.name), {})


def metadata_beside(inputs: Sequence[CaptureInput]) -> tuple[list[Path], list[Path]]:
    """The ``kubectl.json`` and ``docker.json`` files in the captures' folders."""
    folders = list(dict.fromkeys(i.path.parent for i in inputs))
    return ([f / KUBECTL_FILE for f in folders if (f / KUBECTL_FILE).is_file()],
            [f / DOCKER_FILE for f in folders if (f / DOCKER_FILE).is_file()])


def _labels(paths: Sequence[Path],
            by_path: Mapping[Path, tuple[Bundle | None, str | None]] | None = None) -> list[str]:
    """The ``capture`` value of each file: its name, or (names clash) the bundle's name and the
    file's (a bundle file), or its path below the common folder, so that every file has its
    own."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    bundles = by_path or {}
    plain = [p for p in paths if bundles.get(p, (None, None))[0] is None]
    common = Path(os.path.commonpath([str(p.parent) for p in plain])) if plain else None
    labels = []
    for p in paths:
        bundle = bundles.get(p, (None, None))[0]
        if bundle is not None:
            labels.append(f"{bundle.source.name}/{p.relative_to(bundle.root).as_posix()}")
        else:
            labels.append(p.relative_to(common).as_posix() if common else p.name)
    return labels


def read_table(inputs: Sequence[CaptureInput], vxlan_ports: PortsArg = ()) -> pd.DataFrame:
    """One packet table for all files, with ``node``, unique ``capture`` labels, each file's
    interface names, and the directions of per-interface captures a bundle's link data tells;
    a cut capture's warning is passed on. ``vxlan_ports``: port numbers, or ``"auto"`` (see
    :func:`pktkit.read_packets`). A dataset's captures are read back from it."""
    if any(i.dataset is not None for i in inputs):
        return _read_with_datasets(inputs, vxlan_ports)
    ports = vxlan_ports if isinstance(vxlan_ports, str) else tuple(vxlan_ports)
    packets = read_packets([i.path for i in inputs], vxlan_ports=ports,
                           ifnames=[i.interfaces or None for i in inputs])
    frames = [int(s["frames"]) for s in packets.attrs.get("read_stats", [])]
    if len(frames) != len(inputs) or sum(frames) != len(packets):
        raise CaptureError("the capture reader's frame counts do not add up; report this")
    starts = np.concatenate([[0], np.cumsum(frames)]).astype(np.int64)
    file_of = np.repeat(np.arange(len(inputs), dtype=np.int32), frames)
    if any(i.label != i.path.name for i in inputs):
        packets["capture"] = _strings(file_of, [i.label for i in inputs])
    packets.insert(packets.columns.get_loc("interface"), "node",
                   _strings(file_of, [i.node for i in inputs]))
    _name_single_interfaces(packets, inputs, starts)
    fill_directions(packets, [(str(i.path), i.interface or "", i.links) for i in inputs],
                    starts)
    return packets


def _strings(codes: np.ndarray, labels: Sequence[str]) -> pd.arrays.ArrowStringArray:
    """A string column from int32 codes (-1: NA) into ``labels``, as the packet table's
    string columns are built (Arrow strings, no Python object per row)."""
    return pd.arrays.ArrowStringArray(pa.chunked_array(
        [string_array(codes, pa.array(list(labels), pa.large_string()))], pa.large_string()))


def _name_single_interfaces(packets: pd.DataFrame, inputs: Sequence[CaptureInput],
                            starts: np.ndarray) -> None:
    """The one interface of a file that records none (a per-interface pcap), on its rows
    without an interface. (SLL2 indexes are named by the reader, per file.)"""
    single = [i for i, item in enumerate(inputs) if item.interface]
    if not single:
        return
    codes, names = pd.factorize(packets["interface"], use_na_sentinel=True)
    labels = [str(x) for x in names]
    codes = codes.astype(np.int32)
    for i in single:
        rows = codes[int(starts[i]):int(starts[i + 1])]
        name = str(inputs[i].interface)
        if name not in labels:
            labels.append(name)
        rows[rows < 0] = labels.index(name)
    packets["interface"] = _strings(codes, labels)


def _read_with_datasets(inputs: Sequence[CaptureInput], vxlan_ports: PortsArg) -> pd.DataFrame:
    """:func:`read_table` of inputs some of which are in datasets: the captures decoded
    together (runs of them), each dataset capture read back, in the inputs' order."""
    tables: list[pd.DataFrame] = []
    stats: list[dict[str, Any]] = []
    ports: list[dict[str, Any]] = []
    manifests: dict[Path, dict[str, Any]] = {}
    run: list[CaptureInput] = []

    def flush() -> None:
        if run:
            table = read_table(run, vxlan_ports)
            stats.extend(table.attrs.get("read_stats", []))
            ports.extend(table.attrs.get("tunnel_ports", []))
            tables.append(table)
            run.clear()

    for item in inputs:
        if item.dataset is None:
            run.append(item)
            continue
        flush()
        manifest = manifests.setdefault(item.dataset, read_manifest(item.dataset))
        entry = next(e for e in manifest["captures"]
                     if e["node"] == item.node and e["capture"] == item.label)
        table = read_capture(item.dataset, entry)
        table.insert(table.columns.get_loc("interface"), "node",
                     pd.array([item.node] * len(table), dtype="string"))
        stats.append(entry["read_stats"])
        ports.extend(p for p in manifest.get("tunnel_ports") or [] if p not in ports)
        tables.append(table)
    flush()
    for name in ("encap", "error"):  # open vocabularies: the union of the parts' categories
        # as text: an empty capture's categoricals have no categories, of another dtype
        categories = list(dict.fromkeys(str(c) for t in tables for c in t[name].cat.categories))
        wanted = sorted(categories) if name == "encap" else error_categories(categories)
        for t in tables:
            t[name] = t[name].cat.set_categories(wanted)
    packets = pd.concat(tables, ignore_index=True)
    packets.attrs = {"read_stats": ReadStatsList(stats)}
    if ports:
        packets.attrs["tunnel_ports"] = ports
    return packets
