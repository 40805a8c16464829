"""The correlation on a Dask cluster: per-file partition keys, a shuffle, rounds, assign.

The packet rows are in packet datasets (:mod:`pktkit.capture.dataset`); nothing per row passes
through the client until the end (see below):

1. **keys** — one task per capture reads its rows back, adds ``node``, its partition key
   (:func:`pktkit.analysis.sightings.partition_keys`: every row that can belong to one packet
   shares it; computed on one capture file's rows, where its units live) and its row number
   in the table (``_row``: the captures in order, each in frame order);
2. **shuffle** — ``dask.dataframe``'s shuffle on the key (method ``p2p``: through the
   workers' disks, in bounded memory) into P partitions of whole packets;
3. **rounds** — each partition becomes a :class:`~pktkit.analysis.parts.Part` that stays on
   its worker; each round every part is surveyed (small :class:`~pktkit.analysis.parts.Survey`
   objects), the client merges and settles them (:func:`~pktkit.analysis.parts.settle`) and
   the next round gets the settled state;
4. **assign** — each part numbers its packets (0..k-1) and hops, and puts its rows on the
   reference clock; the client numbers the packets as one process does (in order of first
   sighting, from the hops' first rows: one row per packet).

What the client receives in the end is the :class:`~pktkit.analysis.correlate.Correlation`
of the whole table (per-row arrays, in the table's row order): the single-process pipeline's
next stages (overlays, NAT flows, latency, names) take it from there. They move to partitions
with the tables' partials; until then the client holds the table, as one process does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pktkit.analysis.correlate import Correlation
from pktkit.analysis.parts import Part, PartCorrelation, Scope, Settled, Survey, assign, settle
from pktkit.analysis.parts import survey as survey_part
from pktkit.analysis.sightings import partition_keys
from pktkit.capture.dataset import read_capture, read_manifest
from pktkit.capture.frame import SCHEMA
from pktkit.capture.reasons import error_categories

if TYPE_CHECKING:
    from distributed import Client, Future

KEY, ROW = "_key", "_row"  # the partition key and the row's place in the table
OPEN_VOCABULARIES = ("encap", "error")  # categories differ by capture: strings in the shuffle


@dataclass(frozen=True)
class TableCapture:
    """One capture of the table: the dataset holding it, its manifest record, and its first
    row in the table."""

    dataset: str
    entry: dict[str, Any]
    first_row: int


def table_captures(datasets: Sequence[str | os.PathLike[str]]) -> list[TableCapture]:
    """The captures of ``datasets`` in the table's order (as analyze reads them)."""
    found, at = [], 0
    for dataset in datasets:
        for entry in read_manifest(dataset)["captures"]:
            found.append(TableCapture(str(Path(dataset).absolute()), entry, at))
            at += int(entry["frames"])
    return found


def keyed_rows(capture: TableCapture, window_ns: int) -> pd.DataFrame:
    """Task: one capture's rows with ``node``, their partition keys and table rows."""
    rows = read_capture(capture.dataset, capture.entry)
    rows.insert(rows.columns.get_loc("interface"), "node",
                pd.array([str(capture.entry["node"])] * len(rows), dtype="string"))
    rows[KEY] = partition_keys(rows, window_ns).astype(np.uint64)
    rows[ROW] = np.arange(capture.first_row, capture.first_row + len(rows), dtype=np.int64)
    for name in OPEN_VOCABULARIES:
        rows[name] = rows[name].astype("string")
    return rows


def _meta() -> pd.DataFrame:
    """The keyed rows' empty frame (dask's ``meta``)."""
    dtypes: dict[str, Any] = {}
    for name, dtype in SCHEMA.items():
        if name == "interface":
            dtypes["node"] = "string"
        dtypes[name] = "string" if name in OPEN_VOCABULARIES else dtype
    dtypes[KEY], dtypes[ROW] = "uint64", "int64"
    return pd.DataFrame({name: pd.Series([], dtype=d) for name, d in dtypes.items()})


def make_part(rows: pd.DataFrame, scope: Scope) -> Part:
    """Task: a shuffled partition as a :class:`Part` (its categories as a table's)."""
    rows = rows.reset_index(drop=True)
    for name in OPEN_VOCABULARIES:
        seen = [str(v) for v in rows[name].dropna().unique()]
        wanted = sorted(seen) if name == "encap" else error_categories(seen)
        rows[name] = rows[name].astype(pd.CategoricalDtype(wanted))
    return Part(rows, scope)


def survey(part: Part, settled: Settled | None) -> Survey:
    """Task: the part's survey of the next round (the part keeps what it worked out)."""
    return survey_part(part, settled)


def assigned(part: Part, settled: Settled) -> tuple[np.ndarray, PartCorrelation]:
    """Task: the part's rows in the table and what :func:`assign` gives them."""
    return part.packets[ROW].to_numpy(np.int64), assign(part, settled)


def correlate_on_cluster(
    client: Client, datasets: Sequence[str | os.PathLike[str]], rows: int, *,
    node_order: Sequence[str] = (), window_ns: int, clock_correction: str = "auto",
    node_addresses: Mapping[str, Iterable[str]] | None = None,
    partitions: int | None = None, categories: Mapping[str, Sequence[str]] | None = None,
) -> Correlation:
    """The correlation of the table of ``datasets`` (``rows`` rows), on the cluster (see the
    module docstring). ``partitions``: how many (default: two per worker, at least one).
    ``categories``: the categories of the hops table's categorical columns (one process
    takes them from the whole table: its labels in order of first appearance); default:
    those of the parts, in the parts' order."""
    import dask
    import dask.dataframe as dd
    from distributed import futures_of

    captures = table_captures(datasets)
    total = sum(int(c.entry["frames"]) for c in captures)
    if total != rows:
        raise ValueError(f"correlate_on_cluster: the datasets hold {total} rows, not {rows}")
    scope = Scope.of_captures([(str(c.entry["capture"]), str(c.entry["node"]))
                               for c in captures], node_order, window_ns)
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {})) or 1
    count = partitions or max(1, 2 * workers)
    keyed = dd.from_map(keyed_rows, captures, window_ns=window_ns, meta=_meta(),
                        enforce_metadata=False)
    with dask.config.set({"dataframe.shuffle.method": "p2p"}):
        # (this client's: another client of the process may be the default one)
        shuffled = client.persist(keyed.shuffle(on=KEY, npartitions=count))
    frames: list[Future] = futures_of(shuffled)
    parts = client.map(make_part, frames, scope=scope, pure=False)
    del shuffled, frames  # (the parts hold their rows now)
    settled: Settled | None = None
    while settled is None or not settled.ready:
        state = client.scatter(settled, broadcast=True) if settled is not None else None
        surveys = client.map(survey, parts, settled=state, pure=False)
        merged = Survey.merge(client.gather(surveys))
        settled = settle(merged, clock_correction=clock_correction,
                         node_addresses=node_addresses, previous=settled)
    state = client.scatter(settled, broadcast=True)
    results = client.gather(client.map(assigned, parts, settled=state, pure=False))
    del parts
    return _whole(results, rows, settled, categories or {})


def _whole(results: Sequence[tuple[np.ndarray, PartCorrelation]], rows: int,
           settled: Settled, categories: Mapping[str, Sequence[str]]) -> Correlation:
    """The parts' assignments as one table's. Packet ids as one process numbers them: in
    order of first sighting (reference-clock time, then the capture's place in the table,
    then the frame: the hop-0 rows of the hops table); the hops in (packet, hop) order."""
    packet_id = np.full(rows, -1, np.int64)
    hop = np.full(rows, -1, np.int64)
    ts_ref = np.full(rows, -1, np.int64)
    hops, hop_rows = [], []
    offset = 0
    for row, found in results:
        ids = found.packet_id
        packet_id[row] = np.where(ids >= 0, ids + offset, -1)
        hop[row], ts_ref[row] = found.hop, found.ts_ref_ns
        part_hops = found.hops.copy()
        part_hops["packet_id"] = part_hops["packet_id"] + offset
        hops.append(part_hops)
        hop_rows.append(row[found.hop_rows])
        offset += int(ids.max()) + 1 if len(ids) else 0
    assert settled.clock_offsets is not None
    if not hops:
        return Correlation(packet_id=packet_id, hop=hop, ts_ref_ns=ts_ref,
                           hops=pd.DataFrame(), hop_rows=np.zeros(0, np.int64),
                           clock_offsets=settled.clock_offsets, clocks=settled.clocks)
    table = _concat(hops, categories)
    where = np.concatenate(hop_rows)
    # one process's numbering: by first sighting (hops.number_hops)
    first = np.flatnonzero(table["hop"].to_numpy(np.int64) == 0)
    ts = table["ts_ns"].to_numpy(np.int64, na_value=np.iinfo(np.int64).max)[first]
    capture = {label: i for i, label in enumerate(settled.scope.captures)}
    ucap = np.array([capture[str(c)] for c in table["capture"].to_numpy()[first]], np.int64)
    frame = table["frame"].to_numpy(np.int64)[first]
    renumber = np.full(offset, -1, np.int64)
    renumber[table["packet_id"].to_numpy(np.int64)[first]] = np.argsort(
        np.lexsort((frame, ucap, ts)), kind="stable")
    packet_id = np.where(packet_id >= 0, renumber[np.maximum(packet_id, 0)], -1)
    table["packet_id"] = pd.array(renumber[table["packet_id"].to_numpy(np.int64)],
                                  dtype=table["packet_id"].dtype)
    order = np.lexsort((table["hop"].to_numpy(np.int64), table["packet_id"].to_numpy(np.int64)))
    table = table.take(order).reset_index(drop=True)
    return Correlation(packet_id=packet_id, hop=hop, ts_ref_ns=ts_ref, hops=table,
                       hop_rows=where[order], clock_offsets=settled.clock_offsets,
                       clocks=settled.clocks)


def _concat(tables: list[pd.DataFrame], categories: Mapping[str, Sequence[str]]
            ) -> pd.DataFrame:
    """Tables of the parts as one: each categorical column with ``categories``' list for it,
    else the union of the parts' (in the parts' order)."""
    from pandas.api.types import union_categoricals

    first = tables[0]
    for name in first.columns:
        if not isinstance(first[name].dtype, pd.CategoricalDtype):
            continue
        wanted = list(categories.get(name) or union_categoricals(
            [t[name] for t in tables]).categories)
        for t in tables:
            t[name] = t[name].cat.set_categories(wanted)
    return pd.concat(tables, ignore_index=True)
