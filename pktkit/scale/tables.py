"""The tables after the correlation on a Dask cluster: map on the workers, merge on the client.

After :func:`~pktkit.analysis.parts.assign` every part of whole packets stays on its worker
as a :class:`Held` (a :class:`~pktkit.analysis.table_parts.PacketPart` and what one step keeps
for the next). Each step is a task per part whose result stays on the worker; only each
step's small partial (``Held.out``: bounded by conversations, NAT connections, handshakes,
scopes and histogram bins, never by rows) is gathered, merged on the client and broadcast
back (:mod:`pktkit.analysis.table_parts` lists the partials):

1. ``numbered`` — packet ids: each part's own 0..k-1 plus the offset of the parts before it
   (from the parts' packet counts); then ``overlay_encap``/``overlay_vni`` and the
   conversation keys;
2. ``flows`` — ``flow_id`` from the merged conversations; the NAT translations seen;
3. ``counted`` — the rows' NAT connections counted;
4. ``named`` — ``nat_flow_id`` from the NAT flow table, names from the broadcast identity
   map, the handshakes' SYNs and SYN-ACKs;
5. ``acked`` — the handshakes' ACKs; then the report's partials, in buckets by flow that
   the workers exchange through files and merge (:func:`merged_reports`: the client gets
   each flow once, not once per part);
6. ``sampled`` — latency samples and the hops' delays per CDF scope (pass 1: their
   histograms), the hops' categories;
7. ``binned`` — pass 2 (the values in the wanted bins: latency percentiles, the CDF plots'
   ranks), the throughput plot's bins;
8. ``written`` — each worker writes its part's packet rows into the output's ``packets/``
   folder (hive style ``node=…/capture=…/part-NNNNN-0.parquet``, as a packet dataset) and its
   hops rows into a scratch folder; the client joins those into ``hops.parquet`` and
   ``hops.csv`` a batch at a time (:func:`concat_parts`: in packet id order, as the parts'
   offsets number them) and keeps their first rows for the page.

Packet ids are numbered otherwise than one process numbers them (per part, with offsets);
everything else is the same. The client never holds a part's rows: only partials, the
parts' counts and the hops' first rows.
"""

from __future__ import annotations

import copy
import pickle
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from dask.sizeof import sizeof

from pktkit.analysis.identities import IdentityMap
from pktkit.analysis.latency import (
    ACK_COLUMNS,
    handshake_acks,
    handshake_openings,
    handshake_samples,
    handshake_table,
    latency_bins,
    latency_samples,
    latency_table,
    pending_handshakes,
)
from pktkit.analysis.naming import name_packets
from pktkit.analysis.nat import (
    apply_nat_flow_ids,
    count_connections,
    dump_tuples,
    merge_translations,
    nat_flow_table,
    observe_translations,
)
from pktkit.analysis.overlays import apply_conversations, conversation_keys, merge_conversations
from pktkit.analysis.parts import Part, Settled, assign
from pktkit.analysis.percentiles import count_samples, merge_counts, values_in_bins
from pktkit.analysis.table_parts import PacketPart
from pktkit.capture.csv_text import write_csv
from pktkit.capture.reasons import error_categories
from pktkit.files import atomic_path
from pktkit.report.tables import ReportPartial, merged_partial, report_partial, split_partial
from pktkit.scale.correlate import working_copy
from pktkit.scale.shared import given_once
from pktkit.scale.sizes import attribute_bytes

if TYPE_CHECKING:
    from distributed import Client, Future

OPEN_VOCABULARIES = ("encap", "error")  # categories differ by part: the table's are the union
PACKETS_FOLDER = "packets"  # the cluster run's packet table: a partitioned dataset
PARTITION_COLUMNS = ("node", "capture")  # its hive folders
CDF_SCOPES = ("hop", "node_pair")  # the latency CDF plots of the hops
CDF_LINES = 10  # their busiest scopes shown (latency_cdf's max_lines)
HEAD_ROWS = 20  # the hops rows the page shows (page.HTML_ROWS)
BATCH_ROWS = 65_536  # rows per batch when the hops parts are joined into one Parquet file


@dataclass
class Held:
    """One part of whole packets on its worker: the part, what a map step keeps for its
    apply (per row: stays on the worker) and the step's small result for the client."""

    part: PacketPart
    index: int
    kept: Any = None
    out: Any = None


sizeof.register(Held)(attribute_bytes)


def _next(held: Held, out: Any, kept: Any = None) -> Held:
    """The next step's holder (a shallow copy: a step run again starts from its input; the
    steps add columns to shallow copies of its tables, which pandas' copy-on-write keeps
    apart from the input's without copying the other columns)."""
    step = copy.copy(held)
    step.out, step.kept = out, kept
    return step


def packet_part(part: Part, settled: Settled, index: int, drop: Sequence[str],
                row: str) -> Held:
    """Task: the part's rows numbered by :func:`assign` (ids 0..k-1 of its own), indexed by
    their place in the whole table; ``out``: its packet count."""
    part = working_copy(part)  # (assign completes the part's state: not the held object)
    found = assign(part, settled)
    packets = part.packets
    if part.positions is not None:  # assign answers per row as the part was given
        packets = packets.take(np.argsort(part.positions, kind="stable"))
    packets = packets.set_index(pd.Index(packets[row].to_numpy(np.int64)))
    packets = packets.drop(columns=[c for c in drop if c in packets])
    packets["packet_id"] = pd.array(found.packet_id, dtype="Int64")
    packets["hop"] = pd.array(found.hop, dtype="Int64")
    packets["ts_ref_ns"] = pd.arrays.IntegerArray(found.ts_ref_ns, found.ts_ref_ns < 0)
    count = int(found.packet_id.max()) + 1 if len(found.packet_id) else 0
    seen = {name: sorted(str(v) for v in packets[name].dropna().unique())
            for name in OPEN_VOCABULARIES}
    return Held(PacketPart(packets, found.hops, found.hop_rows), index,
                out=(count, seen, len(packets)))


def numbered(held: Held, offset: int) -> Held:
    """Task: global packet ids (the part's plus ``offset``), the overlay columns and the
    conversation keys (``out``: their partial)."""
    part = held.part
    packets = part.packets.copy(deep=False)
    packets["packet_id"] = packets["packet_id"] + offset
    hops = part.hops.copy(deep=False)
    hops["packet_id"] = hops["packet_id"] + offset
    from pktkit.analysis.overlays import overlay_columns

    packet_id = packets["packet_id"].to_numpy(np.int64, na_value=-1)
    encap, vni = overlay_columns(packets, packet_id)
    keys = conversation_keys(packets, packet_id, encap, vni)
    packets.insert(packets.columns.get_loc("vni") + 1, "overlay_encap", encap)
    packets.insert(packets.columns.get_loc("overlay_encap") + 1, "overlay_vni", vni)
    step = _next(held, keys.partial, keys)
    step.part = PacketPart(packets, hops, part.hop_rows)
    return step


def flows(held: Held, conversations: pd.DataFrame) -> Held:
    """Task: ``flow_id`` per conversation; the NAT translations seen (``out``)."""
    packets = held.part.packets.copy(deep=False)
    packets["flow_id"] = apply_conversations(held.kept, conversations)
    seen = observe_translations(packets)
    step = _next(held, seen.partial, seen)
    step.part = PacketPart(packets, held.part.hops, held.part.hop_rows)
    return step


def counted(held: Held, connections: Any, check: Any) -> Held:
    """Task: each row's NAT connection counted (``out``: the partial)."""
    found = count_connections(held.kept, connections, check)
    return _next(held, found.partial, found)


def named(held: Held, table: Any, names: IdentityMap) -> Held:
    """Task: ``nat_flow_id``, the names, the handshakes' openings (``out``)."""
    packets = held.part.packets.copy(deep=False)
    packets["nat_flow_id"] = apply_nat_flow_ids(held.kept, table)
    name_packets(packets, names)
    step = _next(held, handshake_openings(packets))
    step.part = PacketPart(packets, held.part.hops, held.part.hop_rows)
    return step


def acked(held: Held, pending: pd.DataFrame) -> Held:
    """Task: the handshakes' completing ACKs in this part (``out``)."""
    return _next(held, handshake_acks(held.part.packets, pending))


def sampled(held: Held, nat_flows: pd.DataFrame) -> Held:
    """Task: the latency samples and the hops' delays per CDF scope (kept); ``out``: their
    counts (pass 1) and the hops' categories."""
    from pktkit.report.plot import cdf_samples  # (matplotlib: on the workers only)

    part = held.part
    samples = latency_samples(part.packets, part.hops, part.hop_rows, nat_flows)
    delays = ({by: cdf_samples(part.hops, by) for by in CDF_SCOPES}
              if "delay_ns" in part.hops else {})
    vocabulary = {name: [str(c) for c in part.hops[name].cat.categories]
                  for name in part.hops.columns
                  if isinstance(part.hops[name].dtype, pd.CategoricalDtype)}
    return _next(held, (count_samples(samples),
                        {by: count_samples(d) for by, d in delays.items()}, vocabulary),
                 (samples, delays))


def report_buckets(held: Held, underlay_mtu: int, buckets: int, folder: str
                   ) -> list[tuple[str, int, int]]:
    """Task: the part's report partial in ``buckets`` by flow
    (:func:`~pktkit.report.tables.split_partial`), pickled one after another into
    ``folder/part-I.pkl``; each bucket's place in it (path, offset, length), in bucket
    order. One file per part: a file per bucket would be 2P² files (39 million at 4,400
    parts)."""
    partial = report_partial(held.part.packets, underlay_mtu=underlay_mtu,
                             order=held.part.packets.index.to_numpy(np.int64))
    target = Path(folder) / f"part-{held.index:05d}.pkl"
    target.parent.mkdir(parents=True, exist_ok=True)
    places, at = [], 0
    # (written then renamed: a task run again after its worker died replaces it whole)
    with atomic_path(target, "the report's buckets") as staged, staged.open("wb") as out:
        for piece in split_partial(partial, buckets):
            data = pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(data)
            places.append((str(target), at, len(data)))
            at += len(data)
    return places


def merged_bucket(splits: Sequence[Sequence[tuple[str, int, int]]], bucket: int
                  ) -> ReportPartial:
    """Task: bucket ``bucket`` of every part's split (:func:`report_buckets`) merged
    (:func:`~pktkit.report.tables.merged_partial`). The files stay until every bucket is
    merged (:func:`merged_reports` removes them): a task run again reads them again."""
    pieces = []
    for places in splits:
        path, offset, length = places[bucket]
        with open(path, "rb") as found:
            found.seek(offset)
            pieces.append(pickle.loads(found.read(length)))
    return merged_partial(pieces)


def merged_reports(client: Client, held: list[Future], underlay_mtu: int, folder: Path
                   ) -> list[ReportPartial]:
    """The parts' report partials merged by the workers, a bucket of flows per task: each
    part's partial has a row for nearly every flow (a flow's packets fall in every part),
    so the client, which gathered them whole, held the flows once per part (parts × flows:
    both grow with the input); now it gets each flow once. Two buckets per part keep a
    merge's inputs about half a part's partial. The buckets go from the parts to the merges
    through a file per part in ``folder`` (a scratch folder every worker sees), as a
    shuffle goes through the workers' disks: held by the workers as 2P results of each part
    (one task per bucket taking it from the part's split), they had both 1.5GB workers
    killed in this step at 10.9M frames (44 parts), in every run that reached it."""
    run = secrets.token_hex(4)
    count = 2 * len(held)
    splits = [client.submit(report_buckets, h, underlay_mtu, count, str(folder / run),
                            pure=False, key=f"pktkit-report-split-{run}-{i}")
              for i, h in enumerate(held)]
    merged = [client.submit(merged_bucket, splits, bucket, pure=False,
                            key=f"pktkit-report-merged-{run}-{bucket}")
              for bucket in range(count)]
    try:
        return client.gather(merged)
    finally:
        shutil.rmtree(folder / run, ignore_errors=True)


def binned(held: Held, wanted: Any, window: tuple[int, int] | None,
           cdf_wanted: Mapping[str, Any]) -> Held:
    """Task: latency pass 2, the hops' CDF values at the wanted ranks and the throughput
    plot's bins (``out``)."""
    from pktkit.report.plot import throughput_partial  # (matplotlib: on the workers only)

    packets = held.part.packets
    samples, delays = held.kept
    bins = (throughput_partial(packets, window[0], window[1],
                               order=packets.index.to_numpy(np.int64))
            if window is not None else None)
    curves = {by: values_in_bins(delays[by], wanted_by)
              for by, wanted_by in cdf_wanted.items() if by in delays}
    return _next(held, (values_in_bins(samples, wanted), bins, curves))


def written(held: Held, folder: str, hops_folder: str,
            categories: Mapping[str, Sequence[str]],
            hop_categories: Mapping[str, Sequence[str]]
            ) -> tuple[int, int, pd.DataFrame, str]:
    """Task: the part's packet rows written into ``folder`` (one file per node and capture
    of it, hive style) and its hops rows into ``hops_folder`` (its categories the union's);
    returns the hops' row count, how many are second sightings, their first rows and the
    hops file."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    packets = held.part.packets.reset_index(drop=True)
    for name, wanted in categories.items():
        if name in packets and isinstance(packets[name].dtype, pd.CategoricalDtype):
            packets[name] = packets[name].cat.set_categories(list(wanted))
    for name in PARTITION_COLUMNS:  # (the folder names: the values as text)
        packets[name] = packets[name].astype("string")
    # one call for every (node, capture) folder of the part (a file per folder: a Python
    # loop writing them one by one cost more than the rest of the step); values in folder
    # names percent-encoded as the packet datasets' (capture.dataset); the whole folder is
    # staged, published when done
    ds.write_dataset(pa.Table.from_pandas(packets, preserve_index=False), folder,
                     format="parquet", partitioning=list(PARTITION_COLUMNS),
                     partitioning_flavor="hive", basename_template=(
                         f"part-{held.index:05d}-{{i}}.parquet"),
                     existing_data_behavior="overwrite_or_ignore", preserve_order=True)
    hops = held.part.hops.reset_index(drop=True)
    for name, wanted in hop_categories.items():
        hops[name] = hops[name].cat.set_categories(list(wanted))
    target = Path(hops_folder) / f"part-{held.index:05d}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(hops, preserve_index=False), target)
    # its CSV lines too, without the header: CSV text is the costly half of the hops files,
    # made here in parallel; the client only joins the parts' bytes
    write_csv(hops, target.with_suffix(".csv"), header=False)
    second = int((hops["hop"] == 1).sum()) if len(hops) else 0
    return len(hops), second, hops.head(HEAD_ROWS), str(target)


def concat_parts(files: Sequence[Path], parquet: Path, csv: Path) -> None:
    """The tables of ``files`` (one schema; each with its CSV lines beside it, as
    :func:`written` leaves them) as one Parquet file, a batch at a time, and one CSV file,
    the parts' lines joined under the header: never a whole part in memory."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:  # (no rows at all: one process's empty hops table)
        pd.DataFrame().to_parquet(parquet, index=False)
        pd.DataFrame().to_csv(csv, index=False)
        return
    schema = pq.read_schema(files[0])
    with pq.ParquetWriter(parquet, schema) as writer:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
                writer.write_table(pa.Table.from_batches([batch], schema=schema))
    with csv.open("wb") as joined:
        joined.write(pd.DataFrame(columns=schema.names).to_csv(index=False).encode())
        for path in files:
            with Path(path).with_suffix(".csv").open("rb") as part:
                shutil.copyfileobj(part, joined, 1 << 20)


def _step(client: Client, held: list[Future], task: Callable[..., Any], *args: Any,
          **shared: Any) -> tuple[list[Future], list[Any]]:
    """One step over every part: ``args`` one value per part, ``shared`` given to the
    cluster once for all the step's tasks (:func:`~pktkit.scale.shared.given_once`); the new
    holders (kept on the workers) and their ``out`` (gathered)."""
    given = given_once(client, shared, task.__name__) if shared else None
    run = secrets.token_hex(4)
    new = [client.submit(_with_shared, task, h, given, *(a[i] for a in args), pure=False,
                         key=f"pktkit-{task.__name__}-{run}-{i}")
           for i, h in enumerate(held)]
    outs = client.gather(client.map(_out, new, pure=False))
    return new, outs


def _with_shared(task: Callable[..., Held], held: Held, shared: dict[str, Any] | None,
                 *args: Any) -> Held:
    return task(held, *args, **(shared or {}))


def _out(held: Held) -> Any:
    return held.out


@dataclass
class ClusterTables:
    """What the client holds after the steps: every small table, the report's partials,
    the hops table's first rows and its parts' files, and the packets' count."""

    nat: Any
    handshakes: pd.DataFrame
    latency: pd.DataFrame
    hops: pd.DataFrame  # the first rows (for the page); attrs["rows"]: how many in all
    hop_files: list[Path]  # the parts' hops rows, in packet id order (concat_parts)
    second_sightings: int  # hops rows with hop 1
    report: list[Any]
    throughput: tuple[list[pd.DataFrame], int] | None
    curves: dict[str, tuple[list[Any], int]]  # the hops' latency CDFs by scope kind
    packets: int


def tables_on_cluster(client: Client, parts: list[Future], settled: Settled, *,
                      drop: Sequence[str], row: str, dumps: pd.DataFrame | None,
                      names: Callable[[pd.DataFrame], IdentityMap],
                      name_tables: Callable[[Any, pd.DataFrame, IdentityMap], None],
                      underlay_mtu: int, window: Callable[[list[Any]], tuple[int, int] | None],
                      folder: Path, hops_folder: Path, buckets_folder: Path,
                      categories: Mapping[str, Sequence[str]]) -> ClusterTables:
    """The steps of the module docstring over ``parts`` (after the last round); the packet
    rows written into ``folder`` by the workers. ``names(nat_flows)``: the identity map;
    ``name_tables(nat, handshakes, names)`` names the client's tables in place;
    ``window(report_partials)``: the throughput plot's start and bin width; the parts'
    hops rows are written into ``hops_folder`` (:func:`concat_parts` joins them), the
    report's buckets pass through ``buckets_folder`` (:func:`merged_reports`)."""
    state = given_once(client, settled, "settled")
    held = [client.submit(packet_part, p, state, i, tuple(drop), row, pure=False)
            for i, p in enumerate(parts)]
    counts, seen, rows = zip(*client.gather(client.map(_out, held, pure=False)), strict=True)
    # (a part may be empty: more partitions than groups of packets; it adds nothing)
    held = [h for h, n in zip(held, rows, strict=True) if n]
    counts = [c for c, n in zip(counts, rows, strict=True) if n]
    every = {name: sorted({v for s in seen for v in s[name]}) for name in OPEN_VOCABULARIES}
    categories = {**categories, "encap": every["encap"],
                  "error": error_categories(every["error"])}
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    held, keys = _step(client, held, numbered, offsets)
    del parts
    conversations = merge_conversations(keys)
    held, seen = _step(client, held, flows, conversations=conversations)
    connections = merge_translations(seen)
    check = dump_tuples(connections, dumps)
    held, partials = _step(client, held, counted, connections=connections, check=check)
    nat = nat_flow_table(partials, connections, dumps)
    identity = names(nat.flows)
    held, openings = _step(client, held, named, table=nat, names=identity)
    pending = pending_handshakes(openings)
    held, acks = _step(client, held, acked, pending=pending[ACK_COLUMNS])
    handshakes = handshake_table(pending, acks)
    name_tables(nat, handshakes, identity)
    from pktkit.report.plot import cdf_curves, cdf_ranks  # (matplotlib: the client plots)

    reports = merged_reports(client, held, underlay_mtu, buckets_folder)
    held, found = _step(client, held, sampled, nat_flows=nat.flows)
    hs_samples = handshake_samples(handshakes)
    wanted = latency_bins([c for c, _, _ in found] + [count_samples(hs_samples)])
    plot_window = window(reports)
    cdf_wanted = {}
    for by in CDF_SCOPES:
        counted_by = [d[by] for _, d, _ in found if by in d]
        if counted_by:
            cdf_wanted[by] = cdf_ranks(merge_counts(counted_by), CDF_LINES)
    held, values = _step(client, held, binned, wanted=wanted, window=plot_window,
                         cdf_wanted={by: w for by, (w, _) in cdf_wanted.items()})
    latency = latency_table(wanted, [v for v, _, _ in values]
                            + [values_in_bins(hs_samples, wanted)])
    throughput = (([b for _, b, _ in values], plot_window[1]) if plot_window is not None
                  else None)
    curves = {by: (cdf_curves(w, [c[by] for _, _, c in values]), count)
              for by, (w, count) in cdf_wanted.items()}
    vocabulary: dict[str, list[str]] = {}
    for _, _, seen in found:
        for name, labels in seen.items():
            known = vocabulary.setdefault(name, [])
            known += [label for label in labels if label not in known]
    shape = client.gather(client.map(written, held, folder=str(folder),
                                     hops_folder=str(hops_folder),
                                     categories=dict(categories), hop_categories=vocabulary,
                                     pure=False))
    del held
    files = [Path(path) for _, _, _, path in shape]
    hops_head = (pd.concat([h for _, _, h, _ in shape], ignore_index=True).head(HEAD_ROWS)
                 if shape else pd.DataFrame())
    hops_head.attrs["rows"] = sum(n for n, _, _, _ in shape)
    return ClusterTables(nat=nat, handshakes=handshakes, latency=latency, hops=hops_head,
                         hop_files=files, second_sightings=sum(s for _, s, _, _ in shape),
                         report=reports, throughput=throughput, curves=curves,
                         packets=int(sum(counts)))
