"""The correlation on a Dask cluster: per-file partition keys, a shuffle, rounds, assign.

The packet rows are in packet datasets (:mod:`pktkit.capture.dataset`); nothing per row passes
through the client until the end (see below):

1. **keys** — one task per capture collects its IPv4 fragments' ids (four columns read);
   the client writes them, every capture's together, into the scratch folder; then one task
   per capture reads its rows back, adds ``node``, its partition key
   (:func:`pktkit.analysis.sightings.partition_keys`: every row that can belong to one packet
   shares it; computed on one capture file's rows, where its units live, and keyed by the IP
   id only where some fragment has that id) and its row number in the table (``_row``: the
   captures in order, each in frame order);
2. **shuffle** — ``dask.dataframe``'s shuffle on the key (method ``p2p``: through the
   workers' disks, in bounded memory) into P partitions of whole packets;
3. **rounds** — each partition becomes a :class:`~pktkit.analysis.parts.Part` that stays on
   its worker; each round every part is surveyed (small :class:`~pktkit.analysis.parts.Survey`
   objects), the client merges and settles them (:func:`~pktkit.analysis.parts.settle`) and
   the next round gets the settled state;
4. **assign** — :mod:`pktkit.scale.tables`: each part numbers its packets and hops on its
   worker and stays there for the tables.

:func:`settled_parts` runs steps 1-3: the parts (futures) and the last round's settled
state; nothing per row reaches the client.
"""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pktkit.analysis.clockfit import PairFit
from pktkit.analysis.clocks import PairMapper, PairWays
from pktkit.analysis.parts import Part, Scope, Settled, Survey, settle
from pktkit.analysis.parts import survey as survey_part
from pktkit.analysis.sightings import fragmented_ids, partition_keys
from pktkit.capture.dataset import read_capture, read_capture_columns, read_manifest
from pktkit.capture.frame import SCHEMA
from pktkit.capture.reasons import error_categories
from pktkit.scale import sizes  # noqa: F401 (Dask counts a part's memory)
from pktkit.scale.shared import given_once

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


def capture_fragments(capture: TableCapture) -> np.ndarray:
    """Task: the (version, protocol, id) keys of one capture's IPv4 fragments
    (:func:`~pktkit.analysis.sightings.fragmented_ids`), from the four columns they need."""
    return fragmented_ids(read_capture_columns(capture.dataset, capture.entry,
                                              ["fragment", "ip_version", "proto", "ip_id"]))


def keyed_rows(capture: TableCapture, window_ns: int, fragmented: str | None = None
               ) -> pd.DataFrame:
    """Task: one capture's rows with ``node``, their partition keys and table rows
    (``fragmented``: a ``.npy`` file of every capture's fragment ids, see
    :func:`~pktkit.analysis.sightings.partition_keys`)."""
    rows = read_capture(capture.dataset, capture.entry)
    rows.insert(rows.columns.get_loc("interface"), "node",
                pd.array([str(capture.entry["node"])] * len(rows), dtype="string"))
    ids = np.load(fragmented) if fragmented is not None else None
    rows[KEY] = partition_keys(rows, window_ns, fragmented=ids).astype(np.uint64)
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


# rows of a part by default: a part and its working copies stay well under a worker's 1.5 GB
# (at 10.9M frames, 500,000-row parts had 1.5 GB workers killed in several steps; with
# 250,000 rows the run completed, workers peaking at 1.2-1.3 GB)
ROWS_PER_PARTITION = 250_000


def working_copy(part: Part) -> Part:
    """A copy of ``part`` that a task may complete (slot codes, reference clock's times): the
    object a worker holds is never changed, for Dask may pickle it while a task runs, to spill
    it to disk or send it to another worker. Changed in place, a part spilled between two of
    a round's assignments came back half done (seen at 10.9M frames with 1.5GB workers:
    reference times without their order). Shallow: the rows and arrays are shared, and
    replaced, never written into."""
    copied = copy.copy(part)
    copied.units = copy.copy(part.units)
    return copied


def survey(part: Part, settled: Settled | None) -> Survey:
    """Task: the part's survey of the next round, worked out on a :func:`working_copy`. What
    a round completes (the slots numbered as every part's, the reference clock's times and
    their order) is made again by each later round, from ``settled``: ~0.2 s per million
    units, and the parts stay what :func:`make_part` made, which is also what Dask makes
    again when a worker holding them dies."""
    return survey_part(working_copy(part), settled)


def settled_parts(
    client: Client, datasets: Sequence[str | os.PathLike[str]], *,
    node_order: Sequence[str] = (), window_ns: int, clock_correction: str = "auto",
    node_addresses: Mapping[str, Iterable[str]] | None = None,
    partitions: int | None = None, scratch: Path | None = None,
) -> tuple[list[Future], Settled]:
    """Steps 1-3 of the module docstring over the table of ``datasets``: the parts (futures:
    they stay on the workers) and the settled state of the last round. ``partitions``: how
    many (default: two per worker, and more for a large table: one per
    :data:`ROWS_PER_PARTITION` rows, so that a part's memory does not grow with the input).
    ``scratch``: a folder every worker sees, for the fragment ids of every capture; given,
    only the units that may meet a fragment are keyed by their IP id (else every IPv4 unit:
    a key of id 0 grows with the input, see
    :func:`~pktkit.analysis.sightings.partition_keys`)."""
    import dask
    import dask.dataframe as dd
    from distributed import futures_of

    captures = table_captures(datasets)
    # (the captures with rows: one process's table has no node of an empty capture only)
    scope = Scope.of_captures([(str(c.entry["capture"]), str(c.entry["node"]))
                               for c in captures if int(c.entry["frames"])], node_order,
                              window_ns)
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {})) or 1
    rows = sum(int(c.entry["frames"]) for c in captures)
    count = partitions or max(1, 2 * workers, -(-rows // ROWS_PER_PARTITION))
    fragmented = None
    if scratch is not None:
        found = client.gather(client.map(capture_fragments, captures, pure=False))
        ids = np.unique(np.concatenate([np.zeros(0, np.int64), *found]))
        fragmented = str(Path(scratch) / f"fragment-ids-{secrets.token_hex(4)}.npy")
        np.save(fragmented, ids)
    keyed = dd.from_map(keyed_rows, captures, window_ns=window_ns, fragmented=fragmented,
                        meta=_meta(), enforce_metadata=False)
    with dask.config.set({"dataframe.shuffle.method": "p2p"}):
        # (this client's: another client of the process may be the default one)
        shuffled = client.persist(keyed.shuffle(on=KEY, npartitions=count))
    frames: list[Future] = futures_of(shuffled)
    parts = client.map(make_part, frames, scope=scope, pure=False)
    del shuffled, frames  # (the parts hold their rows now)
    settled: Settled | None = None
    pair_tasks = _pair_tasks(client, workers)
    while settled is None or not settled.ready:
        state = given_once(client, settled, "settled") if settled is not None else None
        surveys = client.map(survey, parts, settled=state, pure=False)
        merged = Survey.merge(client.gather(surveys))
        settled = settle(merged, clock_correction=clock_correction,
                         node_addresses=node_addresses, previous=settled,
                         pair_mapper=pair_tasks)
    return parts, settled


def _pair_tasks(client: Client, workers: int) -> PairMapper:
    """The clock round's pair fits as tasks (a few per worker, each of some pairs, in order):
    independent, they were the client's largest serial share (10 s of 496 pairs on 32 nodes,
    and one grows with the square of the nodes). Their samples go with the tasks, not
    scattered: a task of a killed worker is simply run again."""

    def mapped(function: Callable[[PairWays], PairFit | None],
               items: list[PairWays]) -> list[PairFit | None]:
        size = max(1, -(-len(items) // (4 * workers)))
        chunks = [items[at:at + size] for at in range(0, len(items), size)]
        tasks = client.map(fit_chunk, chunks, function=function, pure=False,
                           key=[f"pktkit-pair-fits-{secrets.token_hex(4)}-{i}"
                                for i in range(len(chunks))])
        return [fit for done in client.gather(tasks) for fit in done]

    return mapped


def fit_chunk(chunk: list[PairWays], function: Callable[[PairWays], PairFit | None],
              ) -> list[PairFit | None]:
    """Task: ``function`` of every pair of ``chunk``, in order."""
    return [function(ways) for ways in chunk]


def concat_hops(tables: list[pd.DataFrame], categories: Mapping[str, Sequence[str]]
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
