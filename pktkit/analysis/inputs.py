"""Which capture files to read, and where each was captured: node and interface names.

Nodes and interfaces of a capture file, first rule that applies:

1. ``nodes={path: name}`` (``--node NAME=CAPTURE``);
2. ``capture-set.json`` beside the file (written by ``pktkit generate``; an operator can write
   one for their own captures): ``{"files": [{"file", "node", "interfaces": [{"name",
   "ifindex"}]}]}``. It also names the interfaces: SLL2 interface indexes of a ``tcpdump -i
   any`` file, and the one interface of a per-interface pcap file (which records none);
3. the file name's stem is the node (each file its own node; when two files share a name,
   their paths below the common folder name them apart, as they do the ``capture`` column).

:func:`read_table` reads them into one packet table with a ``node`` column and the names
applied. :func:`metadata_beside` finds the ``kubectl.json`` and ``docker.json`` in the
captures' folders (read as ``--k8s`` / ``--docker`` files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pktkit.capture.arrow import string_array
from pktkit.capture.autoports import PortsArg
from pktkit.capture.formats import CAPTURE_SET_FILE, DOCKER_FILE, KUBECTL_FILE
from pktkit.capture.table import read_packets
from pktkit.errors import CaptureError, UsageError

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


@dataclass(frozen=True)
class CaptureInput:
    """One capture file and where it was captured."""

    path: Path
    node: str
    label: str  # the ``capture`` value: the file name, unless two files share it
    interfaces: dict[int, str] = field(default_factory=dict)  # ifindex → name (manifest)
    interface: str | None = None  # the file's only interface, when the manifest says so


def _capture_files(folder: Path) -> list[Path]:
    files = [p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]
    listed = [f.get("file") for f in _manifest(folder).get("files", []) if isinstance(f, dict)]
    files.sort(key=lambda p: listed.index(p.name) if p.name in listed else len(listed))
    return files


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


def resolve_inputs(
    captures: Iterable[str | os.PathLike[str]],
    nodes: Mapping[str | os.PathLike[str], str] | None = None,
) -> list[CaptureInput]:
    """Capture files (folders: their capture files) with their node and interface names.
    Files named only in ``nodes`` are analyzed too. Raises CaptureError for a missing file."""
    node_of = {Path(path).resolve(): name for path, name in (nodes or {}).items()}
    paths: list[Path] = []
    for item in [*captures, *(nodes or {})]:
        path = Path(item)
        if path.is_dir():
            found = _capture_files(path)
            if not found:
                raise CaptureError(f"{path}: no capture files (*.pcap, *.pcapng) in this "
                                   "folder")
            paths.extend(found)
        elif path.exists():  # a file, or a pipe (tcpdump -w - | ...; <(...))
            paths.append(path)
        else:
            raise CaptureError(f"{path}: no such capture file or folder")
    # one input per file, however it was named; a symlink keeps its own name and folder (the
    # capture-set.json beside the link describes it), the target's folder is the fallback
    given: dict[Path, Path] = {}
    for path in paths:
        given.setdefault(path.resolve(), path.absolute())
    if not given:
        raise UsageError("no capture given")
    unique = list(given.values())
    inputs = []
    for (target, path), label in zip(given.items(), _labels(unique), strict=True):
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


def _labels(paths: Sequence[Path]) -> list[str]:
    """The ``capture`` value of each file: its name, or (names clash) its path below the
    common folder, so that every file has its own."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(common).as_posix() for p in paths]


def read_table(inputs: Sequence[CaptureInput], vxlan_ports: PortsArg = ()) -> pd.DataFrame:
    """One packet table for all files, with ``node``, unique ``capture`` labels and the
    manifest's interface names; a cut capture's warning is passed on. ``vxlan_ports``: port
    numbers, or ``"auto"`` (see :func:`pktkit.read_packets`)."""
    ports = vxlan_ports if isinstance(vxlan_ports, str) else tuple(vxlan_ports)
    packets = read_packets([i.path for i in inputs], vxlan_ports=ports)
    frames = [int(s["frames"]) for s in packets.attrs.get("read_stats", [])]
    if len(frames) != len(inputs) or sum(frames) != len(packets):
        raise CaptureError("the capture reader's frame counts do not add up; report this")
    file_of = np.repeat(np.arange(len(inputs), dtype=np.int32), frames)
    if any(i.label != i.path.name for i in inputs):
        packets["capture"] = _strings(file_of, [i.label for i in inputs])
    packets.insert(packets.columns.get_loc("interface"), "node",
                   _strings(file_of, [i.node for i in inputs]))
    _name_interfaces(packets, inputs, file_of)
    return packets


def _strings(codes: np.ndarray, labels: Sequence[str]) -> pd.arrays.ArrowStringArray:
    """A string column from int32 codes (-1: NA) into ``labels``, as the packet table's
    string columns are built (Arrow strings, no Python object per row)."""
    return pd.arrays.ArrowStringArray(pa.chunked_array(
        [string_array(codes, pa.array(list(labels), pa.large_string()))], pa.large_string()))


def _name_interfaces(packets: pd.DataFrame, inputs: Sequence[CaptureInput],
                     file_of: np.ndarray) -> None:
    """Manifest names for SLL2 interface indexes and for files that record no interface:
    decided once per distinct (file, ifindex, interface) and applied through codes."""
    if not any(i.interfaces for i in inputs):
        return
    codes, names = pd.factorize(packets["interface"], use_na_sentinel=True)
    ifindex = packets["ifindex"].to_numpy(dtype=np.int64, na_value=-1)
    # one int64 per row for the (file, ifindex, interface) triple: hashing it costs a few
    # arrays of n, where np.unique(axis=1) over the stacked triple costs many
    key = (file_of.astype(np.int64) * (int(ifindex.max(initial=0)) + 2) + ifindex + 1) \
        * (len(names) + 1) + codes + 1
    del ifindex
    combo, distinct = pd.factorize(key, size_hint=256)
    del key
    rows = _first_rows(combo)
    labels = [str(x) for x in names]
    renamed = np.empty(len(distinct), np.int32)
    for j, row in enumerate(rows.tolist()):
        item, code = inputs[int(file_of[row])], int(codes[row])
        value = packets["ifindex"].iat[row]
        index = int(value) if pd.notna(value) else -1  # -1: no ifindex
        name = labels[code] if code >= 0 else None
        better = item.interfaces.get(index) if index >= 0 else item.interface
        if better is not None and (name is None or name == str(index)):
            name = better
        if name is not None and name not in labels:
            labels.append(name)
        renamed[j] = -1 if name is None else labels.index(name)
    packets["interface"] = _strings(renamed[combo], labels)


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """The first row of each code of ``pd.factorize`` (codes numbered in order of first
    appearance: a row that raises the running maximum is a code's first)."""
    running = np.maximum.accumulate(codes)
    return np.flatnonzero(np.diff(running, prepend=-1) > 0)
