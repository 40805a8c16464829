"""``pktkit analyze`` as a library call: captures → packet table, correlation, NAT, latency.

:func:`analyze` reads every capture into one packet table (:mod:`~pktkit.analysis.inputs`:
nodes and interface names), correlates the sightings (:mod:`~pktkit.analysis.correlate`),
finds NAT flows (:mod:`~pktkit.analysis.nat`), names the addresses from the cluster and
container metadata (:mod:`~pktkit.analysis.metadata`, :mod:`~pktkit.analysis.identities`,
:mod:`~pktkit.analysis.naming`) and measures latency (:mod:`~pktkit.analysis.latency`).
:class:`Analysis` holds the tables; the report stage (:mod:`pktkit.report.folder`) writes them.

The packet table gains ``node`` (string), ``packet_id``, ``hop``, ``nat_flow_id`` (Int64),
``ts_ref_ns`` (Int64: the capture time on the reference node's clock, through the node's clock
model), ``overlay_encap`` (category) and ``overlay_vni`` (UInt32: the tunnel of the packet's
encapsulated copy, on every sighting of it, decapsulated ones included; ``encap`` and ``vni``
stay the frame's own), and its ``flow_id`` becomes one id per conversation per overlay across
all sightings and files (:mod:`~pktkit.analysis.overlays`). See the modules above for
``packet_id``/``hop`` and the hops, latency, clock_offsets and handshakes tables, and for
``nat_flows`` (one row per translated connection: the tuple as the originator sent it and
after translation, packets, bytes, time span, the conntrack dump's verdict, the translating
node) and ``nat_disagreements`` (captures against conntrack dumps; empty without a dump).

Every stage after the correlation runs as the map, merge and apply of a run over partitions
of whole packets, on one partition (:mod:`~pktkit.analysis.table_parts`).

Names: the packet table gains ``src_name``, ``dst_name``, ``outer_src_name`` and
``outer_dst_name``; nat_flows ``orig_src_name``, ``orig_dst_name``, ``xlat_src_name``,
``xlat_dst_name`` and ``service``; handshakes ``src_name`` and ``dst_name``; latency the
``pod_pair`` and ``service`` metrics; ``identities`` lists who holds which address. The
metadata comes from ``k8s`` and ``docker`` (paths or file objects) and from ``kubectl.json``
and ``docker.json`` beside the captures. Without metadata the name columns hold the addresses.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pktkit.analysis import correlate as _correlate
from pktkit.analysis import latency as _latency
from pktkit.analysis.conntrack import parse_conntrack, read_conntrack
from pktkit.analysis.grouping import DEFAULT_WINDOW_NS
from pktkit.analysis.identities import IdentityMap, service_backends
from pktkit.analysis.inputs import (
    CaptureInput,
    Inputs,
    metadata_beside,
    opened_inputs,
    read_table,
)
from pktkit.analysis.metadata import Metadata, Source, read_metadata
from pktkit.analysis.naming import HANDSHAKE_NAMES, add_names, name_nat_flows, name_packets
from pktkit.analysis.nat import nat_flows
from pktkit.analysis.overlays import conversation_ids, overlay_columns
from pktkit.capture.formats import DOCKER_FILE, KUBECTL_FILE
from pktkit.capture.headers import IPPROTO_TCP, MAX_MTU, MIN_MTU
from pktkit.errors import UsageError
from pktkit.progress import Progress, ProgressBar

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


@dataclass
class Analysis:
    """The tables of one analysis (schemas: the docstrings of the modules they come from)."""

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
    identities: pd.DataFrame | None = None  # who holds which address (identities module)
    names: IdentityMap | None = None  # to name the report's own tables alike
    # from bundles: each node's own addresses (those of one node only), metadata files (as
    # read: a tarball's are gone after the analysis), what a bundle lacked
    node_addresses: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- the analysis ----------------------------------------------------------------------------


def analyze(
    captures: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    nodes: Mapping[str | os.PathLike[str], str] | None = None,
    conntrack: Sequence[tuple[str | None, str | os.PathLike[str]]] | None = None,
    vxlan_ports: Iterable[int] | str = (),
    underlay_mtu: int = 1500,
    window_ns: int = DEFAULT_WINDOW_NS,
    clock_correction: str = "auto",
    k8s: Iterable[Source] = (),
    docker: Iterable[Source] = (),
    node_addresses: Mapping[str, Iterable[str]] | None = None,
    progress: Progress | bool | None = None,
    correlation: Callable[..., _correlate.Correlation] | None = None,
) -> Analysis:
    """Analyze captures (files, folders, node bundles) from one or many nodes; see the module
    docstring and :mod:`pktkit.analysis.inputs` for what a path may be.

    ``conntrack``: (node or None, file) pairs of conntrack dumps (read first: a dump in an
    unknown format fails before any capture is read), handed to
    :func:`pktkit.analysis.nat.nat_flows` with the dumps of the bundles.
    ``vxlan_ports``: more UDP ports to decode as VXLAN, or ``"auto"``: the VXLAN and Geneve
    ports found in the packets (listed in ``analysis.packets.attrs["tunnel_ports"]``).
    ``window_ns``: sightings of one signature further apart than this are other packets
    (default 1 s; within it, a packet is matched however long a queue held it).
    ``clock_correction``: ``auto``, ``always`` or ``never`` (see :mod:`pktkit.analysis.clocks`).
    ``k8s``, ``docker``: kubectl and docker inspect JSON files (paths or file objects), read
    first (a bad one fails before any capture is read) with those beside the captures.
    ``node_addresses``: each node's own addresses (``{node: [address, ...]}``, as ``ip addr``
    lists them), when known; bundles' ``ip addr`` and the nodes of ``--k8s`` metadata add
    theirs. They say which way a packet crossed where neither TTL nor capture direction
    does (:mod:`pktkit.analysis.ownership`); an address two nodes claim tells nothing.
    ``progress(stage, done, total)`` is called as the stages (:data:`STAGES`) complete;
    ``progress=True`` shows a tqdm bar (a widget in a notebook).
    ``correlation``: what correlates the table, called as
    :func:`~pktkit.analysis.correlate.correlate` is (the default); :mod:`pktkit.scale` passes
    one that runs on a Dask cluster.
    """
    if not MIN_MTU <= underlay_mtu <= MAX_MTU:
        raise UsageError(f"underlay_mtu {underlay_mtu!r}: give the node network's MTU in bytes, "
                         f"{MIN_MTU} to {MAX_MTU}")
    if isinstance(captures, (str, os.PathLike)):
        captures = [captures]
    if not isinstance(window_ns, int) or isinstance(window_ns, bool) or window_ns < 1:
        raise UsageError(f"window_ns={window_ns!r}: give a positive number of nanoseconds")
    with opened_inputs(captures, nodes) as found:
        beside_k8s, beside_docker = metadata_beside(found.captures)
        in_bundles = [files for files in found.metadata.values()]
        metadata = read_metadata(
            _unique([*k8s, *beside_k8s, *(f[KUBECTL_FILE] for f in in_bundles
                                          if KUBECTL_FILE in f)]),
            _unique([*docker, *beside_docker, *(f[DOCKER_FILE] for f in in_bundles
                                                if DOCKER_FILE in f)]))
        dumps = _dumps(conntrack or [], found)
        owned = owned_by_one(merged_addresses(
            node_addresses or {}, found.node_addresses,
            {n.name: n.addresses for n in metadata.nodes}))
        bar = ProgressBar(True, notebook=True) if progress is True else None
        report: Progress = (bar.stages() if bar  # type: ignore[assignment]
                            else (progress or _silent))
        try:
            result = _run(found.captures, dumps, metadata, vxlan_ports=vxlan_ports,
                          underlay_mtu=underlay_mtu, window_ns=window_ns,
                          clock_correction=clock_correction, node_addresses=owned,
                          report=report, correlation=correlation or _correlate.correlate)
        finally:
            if bar is not None:
                bar.close()
    result.node_addresses = owned
    result.metadata, result.notes = found.metadata, found.notes
    return result


def _dumps(given: Sequence[tuple[str | None, str | os.PathLike[str]]],
           found: Inputs) -> pd.DataFrame | None:
    """The conntrack dumps given, then those of the bundles, in one table (None: none)."""
    frames = [read_conntrack({node: path}) for node, path in given]
    frames += [parse_conntrack(path, node=node, name=name) for node, path, name in found.conntrack]
    return pd.concat(frames, ignore_index=True) if frames else None


def merged_addresses(*sources: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Each node's addresses from every source (given, bundles, metadata), each once."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for node, addresses in source.items():
            known = merged.setdefault(node, [])
            known += [a for a in addresses if a not in known]
    return merged


def owned_by_one(addresses: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each node's addresses that no other node also has (a gateway address every node's
    bridge carries says nothing about which node sent)."""
    count: dict[str, int] = {}
    for own in addresses.values():
        for address in own:
            count[address] = count.get(address, 0) + 1
    return {node: [a for a in own if count[a] == 1] for node, own in addresses.items()}


def _silent(stage: str, done: int, total: int) -> None:
    """No progress to show."""


def _unique(sources: Sequence[Source]) -> list[Source]:
    """The sources without a path given twice (a file beside the captures and in --k8s)."""
    seen, kept = set(), []
    for source in sources:
        key = (Path(source).resolve() if isinstance(source, (str, os.PathLike))
               else id(source))
        if key not in seen:
            seen.add(key)
            kept.append(source)
    return kept


def _run(inputs: list[CaptureInput], dumps: pd.DataFrame | None, metadata: Metadata, *,
         vxlan_ports: Iterable[int] | str, underlay_mtu: int, window_ns: int,
         clock_correction: str, node_addresses: Mapping[str, Iterable[str]] | None,
         report: Progress, correlation: Callable[..., _correlate.Correlation]) -> Analysis:
    """The stages of :func:`analyze`, each reported when done."""
    packets = read_table(inputs, vxlan_ports)
    _release_freed_memory()
    report("read", 1, len(STAGES))
    found = correlation(packets, node_order=list(dict.fromkeys(i.node for i in inputs)),
                        window_ns=window_ns, clock_correction=clock_correction,
                        node_addresses=node_addresses)
    packets["packet_id"] = pd.array(found.packet_id, dtype="Int64")
    packets["hop"] = pd.array(found.hop, dtype="Int64")
    packets["ts_ref_ns"] = pd.arrays.IntegerArray(found.ts_ref_ns, found.ts_ref_ns < 0)
    overlay_encap, overlay_vni = overlay_columns(packets, found.packet_id)
    packets["flow_id"] = conversation_ids(packets, found.packet_id, overlay_encap, overlay_vni)
    packets.insert(packets.columns.get_loc("vni") + 1, "overlay_encap", overlay_encap)
    packets.insert(packets.columns.get_loc("overlay_encap") + 1, "overlay_vni", overlay_vni)
    del overlay_encap, overlay_vni
    _release_freed_memory()
    report("correlate", 2, len(STAGES))
    nat = nat_flows(packets, conntrack=dumps)
    packets["nat_flow_id"] = nat.packet_nat_flow_id
    _release_freed_memory()
    report("nat", 3, len(STAGES))
    names = IdentityMap.from_metadata(metadata).with_published(nat.flows)
    name_packets(packets, names)
    name_nat_flows(nat.flows, names, service_backends(metadata))
    handshakes = _latency.handshakes(packets)
    add_names(handshakes, names, HANDSHAKE_NAMES, "syn_ts_ns", proto=IPPROTO_TCP,
              after=True)
    latency = _latency.latency(packets, found.hops, found.hop_rows, handshakes, nat.flows)
    _release_freed_memory()
    report("latency", 4, len(STAGES))
    return Analysis(packets=packets, nat_flows=nat.flows, hops=found.hops, latency=latency,
                    clock_offsets=found.clock_offsets, handshakes=handshakes,
                    nat_disagreements=nat.disagreements, inputs=inputs,
                    underlay_mtu=underlay_mtu, conntrack_given=dumps is not None,
                    identities=names.table(), names=names)


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


# -- output ----------------------------------------------------------------------------------


