"""``pktkit analyze``: captures → packet table + correlation + NAT flows + report folder.

:func:`analyze` reads every capture into one packet table (:func:`pktkit.capture.table.read_packets`),
names each file's node and interfaces, correlates the sightings (:mod:`pktkit.analysis.correlate`),
finds NAT flows (:mod:`pktkit.analysis.nat`) and measures latency; :func:`write_analysis` writes the
result and the report (:mod:`pktkit.report.tables`, :mod:`pktkit.report.plot`, :mod:`pktkit.report.render`).

Nodes and interfaces of a capture file, first rule that applies:

1. ``nodes={path: name}`` (``--node NAME=CAPTURE``);
2. ``capture-set.json`` beside the file (written by ``pktkit generate``; an operator can write
   one for their own captures): ``{"files": [{"file", "node", "interfaces": [{"name",
   "ifindex"}]}]}``. It also names the interfaces: SLL2 interface indexes of a ``tcpdump -i
   any`` file, and the one interface of a per-interface pcap file (which records none);
3. the file name's stem is the node (each file its own node; when two files share a name,
   their paths below the common folder name them apart, as they do the ``capture`` column).

The packet table gains ``node`` (string), ``packet_id``, ``hop``, ``nat_flow_id`` (Int64) and
``ts_ref_ns`` (Int64: the capture time on the reference node's clock); see
:mod:`pktkit.analysis.correlate` for ``packet_id``/``hop`` and the hops, latency, clock_offsets and
handshakes tables, and :mod:`pktkit.analysis.nat` for ``nat_flows`` (one row per translated connection:
the tuple as the originator sent it and after translation, packets, bytes, time span, the
conntrack dump's verdict, the translating node) and ``nat_disagreements`` (captures against
conntrack dumps; empty without a dump).

Output folder (:func:`write_analysis`): ``packets.parquet``; every report table as CSV and
Parquet (captures, overlays, overhead, flows, nat_flows, latency, clock_offsets, hops,
handshakes, errors); the plots as PNG; ``summary.json``, ``summary.md`` and ``index.html``.
Everything is first written into a hidden temp folder beside the target and moved in when
complete, so a failure leaves nothing half-written. :func:`write_collection` does the same for
several analyses, one subfolder each, plus an index page.
"""

from __future__ import annotations

import ctypes
import functools
import html
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from pktkit.analysis import correlate as _correlate
from pktkit.errors import CaptureError, OutputError, UsageError

CAPTURE_SET = "capture-set.json"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
STAGES = ("read", "correlate", "nat", "latency")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim), else None; looked up on first use,
    not at import."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


@dataclass(frozen=True)
class CaptureInput:
    """One capture file and where it was captured."""

    path: Path
    node: str
    label: str  # the ``capture`` value: the file name, unless two files share it
    interfaces: dict[int, str] = field(default_factory=dict)  # ifindex → name (manifest)
    interface: str | None = None  # the file's only interface, when the manifest says so


@dataclass
class Analysis:
    """The tables of one analysis (schemas: the docstrings of this module, pktkit.analysis.correlate
    and pktkit.analysis.nat)."""

    packets: pd.DataFrame
    nat_flows: pd.DataFrame
    hops: pd.DataFrame
    latency: pd.DataFrame
    clock_offsets: pd.DataFrame
    handshakes: pd.DataFrame
    nat_disagreements: pd.DataFrame
    inputs: list[CaptureInput]
    underlay_mtu: int = 1500
    conntrack_given: bool = False

    def report_tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the report, in page order (:func:`pktkit.report.tables.build_tables`,
        nat_flows with the columns of ``nat_flows.csv``, plus handshakes and, given a
        conntrack dump, nat_disagreements)."""
        from pktkit.analysis.nat import NAT_FLOWS_COLUMNS
        from pktkit.report.tables import build_tables

        tables = build_tables(self.packets, underlay_mtu=self.underlay_mtu,
                              nat_flows=self.nat_flows[NAT_FLOWS_COLUMNS], hops=self.hops,
                              latency=self.latency, clock_offsets=self.clock_offsets)
        errors = tables.pop("errors")
        tables["handshakes"] = self.handshakes
        if self.conntrack_given:
            tables["nat_disagreements"] = self.nat_disagreements
        tables["errors"] = errors
        return tables


# -- inputs ----------------------------------------------------------------------------------


def _capture_files(folder: Path) -> list[Path]:
    files = [p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]
    listed = [f.get("file") for f in _manifest(folder).get("files", []) if isinstance(f, dict)]
    files.sort(key=lambda p: listed.index(p.name) if p.name in listed else len(listed))
    return files


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / CAPTURE_SET
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
        elif path.is_file():
            paths.append(path)
        else:
            raise CaptureError(f"{path}: no such capture file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    if not unique:
        raise UsageError("no capture given")
    inputs = []
    for path, label in zip(unique, _labels(unique), strict=True):
        entry = next((f for f in _manifest(path.parent).get("files", [])
                      if isinstance(f, dict) and f.get("file") == path.name), {})
        names = {int(i["ifindex"]): str(i["name"]) for i in entry.get("interfaces", [])
                 if "ifindex" in i and "name" in i}
        only = next(iter(names.values())) if len(names) == 1 else None
        node = node_of.get(path) or entry.get("node") or label.split(".")[0]
        inputs.append(CaptureInput(path, str(node), label, names, only))
    return inputs


def _labels(paths: Sequence[Path]) -> list[str]:
    """The ``capture`` value of each file: its name, or (names clash) its path below the
    common folder, so that every file has its own."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(common).as_posix() for p in paths]


# -- the analysis ----------------------------------------------------------------------------


def analyze(
    captures: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    nodes: Mapping[str | os.PathLike[str], str] | None = None,
    conntrack: Sequence[tuple[str | None, str | os.PathLike[str]]] | None = None,
    vxlan_ports: Iterable[int] = (),
    underlay_mtu: int = 1500,
    window_ns: int = _correlate.DEFAULT_WINDOW_NS,
    clock_correction: str = "auto",
    progress: Progress | None = None,
) -> Analysis:
    """Analyze captures (files or folders) from one or many nodes; see the module docstring.

    ``conntrack``: (node or None, file) pairs of conntrack dumps (read first: a dump in an
    unknown format fails before any capture is read), handed to :func:`pktkit.analysis.nat.nat_flows`.
    ``vxlan_ports``: more UDP ports to decode as VXLAN.
    ``clock_correction``: ``auto``, ``always`` or ``never`` (see :mod:`pktkit.analysis.correlate`).
    ``progress(stage, done, total)`` is called as the stages (:data:`STAGES`) complete.
    """
    if isinstance(captures, (str, os.PathLike)):
        captures = [captures]
    from pktkit.analysis.nat import nat_flows, read_conntrack

    inputs = resolve_inputs(captures, nodes)
    dumps = (pd.concat([read_conntrack({node: path}) for node, path in conntrack],
                       ignore_index=True) if conntrack else None)
    report = progress or (lambda stage, done, total: None)

    packets = read_table(inputs, vxlan_ports)
    _release_freed_memory()
    report("read", 1, len(STAGES))
    found = _correlate.correlate(packets, node_order=list(dict.fromkeys(i.node for i in inputs)),
                                 window_ns=window_ns, clock_correction=clock_correction)
    packets["packet_id"] = pd.array(found.packet_id, dtype="Int64")
    packets["hop"] = pd.array(found.hop, dtype="Int64")
    packets["ts_ref_ns"] = pd.arrays.IntegerArray(found.ts_ref_ns, found.ts_ref_ns < 0)
    _release_freed_memory()
    report("correlate", 2, len(STAGES))
    nat = nat_flows(packets, conntrack=dumps)
    packets["nat_flow_id"] = nat.packet_nat_flow_id
    _release_freed_memory()
    report("nat", 3, len(STAGES))
    handshakes = _correlate.handshakes(packets)
    latency = _correlate.latency(packets, found.hops, found.hop_rows, handshakes)
    _release_freed_memory()
    report("latency", 4, len(STAGES))
    return Analysis(packets=packets, nat_flows=nat.flows, hops=found.hops, latency=latency,
                    clock_offsets=found.clock_offsets, handshakes=handshakes,
                    nat_disagreements=nat.disagreements, inputs=inputs,
                    underlay_mtu=underlay_mtu, conntrack_given=dumps is not None)


def _release_freed_memory() -> None:
    """Give the memory freed by a stage's temporaries back to the system before the next.

    glibc's malloc and Arrow's pool keep freed blocks for reuse; fragmented among the tables,
    much of it cannot be reused by the next stage's larger arrays, and the process would hold
    the sum of every stage's peak. It changes no setting (unlike
    :func:`return_memory_eagerly`): only memory already freed goes back."""
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def return_memory_eagerly() -> None:
    """Process-wide allocator settings for a process that only analyzes (``pktkit analyze``):
    Arrow allocates with malloc rather than its own pool (mimalloc, which keeps freed memory),
    and glibc serves blocks of 1 MB and more (every per-packet array of a large capture) with
    mmap, returned to the system when freed instead of fragmenting the heap.

    On a 1,033,636-frame analysis this lowers the peak from ~700 to ~600 MB (the tables are
    ~325 MB) for ~1.5 s more page faults. Not done by :func:`analyze` itself: these settings
    belong to the program, not to a library call in someone's notebook."""
    pa.set_memory_pool(pa.system_memory_pool())
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def read_table(inputs: Sequence[CaptureInput], vxlan_ports: Iterable[int] = ()) -> pd.DataFrame:
    """One packet table for all files, with ``node``, unique ``capture`` labels and the
    manifest's interface names; a cut capture's warning is passed on."""
    from pktkit.capture.table import read_packets

    packets = read_packets([i.path for i in inputs], vxlan_ports=tuple(vxlan_ports))
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
    from pktkit.capture.arrow import string_array

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


# -- output ----------------------------------------------------------------------------------


def _output_error(out_dir: Path, why: str) -> OutputError:
    return OutputError(f"{out_dir}: cannot write there ({why}); choose a writable folder")


def check_output(out_dir: str | os.PathLike[str]) -> None:
    """Fail early (before any analysis, writing nothing) when ``out_dir`` cannot be made."""
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another --out")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise _output_error(Path(out_dir), f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _output_error(Path(out_dir), f"{existing} is not writable")


class _Staging:
    """A hidden temp folder beside ``out_dir`` (same file system, so moves are renames), and
    the parent folders made for it; on failure everything made is removed again."""

    def __init__(self, out_dir: Path) -> None:
        check_output(out_dir)
        self.out = out_dir
        parent = out_dir.absolute().parent
        self.made = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = parent / f".{out_dir.name}.{secrets.token_hex(6)}.partial"
            self.tmp.mkdir()
        except OSError as exc:
            self._remove_made()
            raise _output_error(out_dir, exc.strerror or str(exc)) from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._publish()
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if kind is not None:
            self._remove_made()

    def _remove_made(self) -> None:
        for folder in self.made:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def _publish(self) -> None:
        """Move the finished files into ``out`` (the whole folder renamed when new)."""
        out, tmp = self.out, self.tmp
        try:
            if not out.exists():
                os.replace(tmp, out)
                return
            for item in sorted(tmp.iterdir()):
                target = out / item.name
                if item.is_dir() and target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        except OSError as exc:
            raise _output_error(out, exc.strerror or str(exc)) from None


def _write_files(analysis: Analysis, folder: Path, *, figures: bool) -> dict[str, Any]:
    from pktkit.capture.output import write_table
    from pktkit.report.render import write_report
    from pktkit.report.tables import summary

    tables = analysis.report_tables()
    result = summary(tables)
    result["correlation"] = correlation_summary(analysis)
    plots = {}
    if figures:
        from pktkit.report.plot import build_figures

        plots = build_figures(tables, analysis.packets)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_table(analysis.packets, folder / "packets.parquet")
        write_report(folder, tables, plots, result)
    finally:
        if plots:
            import matplotlib.pyplot as plt

            for figure in plots.values():
                plt.close(figure)
    return result


def correlation_summary(analysis: Analysis) -> dict[str, Any]:
    """The correlation in the summary: packets, sightings, nodes, clock offsets (with the
    correction applied)."""
    hops = analysis.hops
    return {
        "packets": int(analysis.packets["packet_id"].nunique()),
        "sightings": len(hops),
        "frames": len(analysis.packets),
        "nodes": list(dict.fromkeys(x.node for x in analysis.inputs)),
        "packets_seen_twice_or_more": int((hops["hop"] == 1).sum()),
        "clock_offsets": json.loads(analysis.clock_offsets.to_json(orient="records")),
    }


def write_analysis(
    analysis: Analysis, out_dir: str | os.PathLike[str], *, figures: bool = True
) -> dict[str, Any]:
    """Write the analysis folder (see the module docstring) atomically; returns the summary
    (:func:`pktkit.report.tables.summary` plus ``correlation``)."""
    with _Staging(Path(out_dir)) as tmp:
        return _write_files(analysis, tmp, figures=figures)


def write_collection(
    analyses: Iterable[tuple[str, Callable[[], Analysis]]],
    out_dir: str | os.PathLike[str],
    *,
    figures: bool = True,
) -> dict[str, Any]:
    """Several analyses, one subfolder each (``name``; each made when its turn comes, so only
    one is in memory), plus ``index.html``/``summary.md``/``summary.json`` listing them; all
    moved into ``out_dir`` when complete. Returns {name: summary}."""
    results: dict[str, Any] = {}
    with _Staging(Path(out_dir)) as tmp:
        for name, make in analyses:
            results[name] = _write_files(make(), tmp / name, figures=figures)
        _write_index(tmp, results)
    return results


def _write_index(folder: Path, results: Mapping[str, Any]) -> None:
    rows = []
    for name, result in results.items():
        counts, corr = result.get("counts", {}), result.get("correlation", {})
        rows.append((name, counts.get("captures", 0), counts.get("packets", 0),
                     corr.get("packets", 0), len(corr.get("nodes", [])),
                     counts.get("nat_flows") or 0, len(result.get("problems", []))))
    head = ("analysis", "captures", "frames", "packets", "nodes", "NAT flows", "problems")
    md = ["# pktkit analyses", "", "| " + " | ".join(head) + " |",
          "|" + " --- |" * len(head)]
    md += [f"| [{r[0]}]({r[0]}/index.html) | " + " | ".join(map(str, r[1:])) + " |"
           for r in rows]
    (folder / "summary.md").write_text("\n".join(md) + "\n")
    (folder / "summary.json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                         + "\n")
    cells = "".join(
        f'<tr><td><a href="{html.escape(r[0])}/index.html">{html.escape(r[0])}</a></td>'
        + "".join(f"<td>{v:,}</td>" for v in r[1:]) + "</tr>" for r in rows)
    (folder / "index.html").write_text(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pktkit "
        "analyses</title><style>body{font:14px system-ui,sans-serif;margin:24px auto;"
        "max-width:900px}table{border-collapse:collapse}td,th{border:1px solid #ddd;"
        "padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>"
        "<body><h1>pktkit analyses</h1><table><tr>"
        + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + cells
        + "</table></body></html>\n")
