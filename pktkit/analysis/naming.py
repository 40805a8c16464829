"""Name columns beside the address columns of a table, from an :class:`IdentityMap`.

Each address column ``X`` gets ``X_name``, ``a_addr`` gets ``a_name`` (the packet table:
``src_name``, ``dst_name`` for the innermost header, ``outer_src_name``, ``outer_dst_name``;
nat_flows: ``orig_src_name``, ``orig_dst_name``, ``xlat_src_name``, ``xlat_dst_name``;
handshakes: ``src_name``, ``dst_name``), looked up with the port beside it, the row's
protocol and its time. Without metadata the names are the addresses. Name columns are
categoricals: a million rows share a few names.

nat_flows also gains ``service``: the Service whose address the originator connected to (the
original destination), or, when that address is not a Service's (a node address missing from
the metadata), the one Service whose backend the connection was translated to; NA when the
flow is no Service's (masquerade, Docker).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pktkit.analysis.identities import IdentityMap
from pktkit.analysis.metadata import normal_address
from pktkit.analysis.rows import int_column
from pktkit.capture.headers import IPPROTO_UDP

PACKET_NAMES = (("src", "sport"), ("dst", "dport"), ("outer_src", "outer_sport"),
                ("outer_dst", "outer_dport"))
NAT_NAMES = (("orig_src", "orig_sport"), ("orig_dst", "orig_dport"),
             ("xlat_src", "xlat_sport"), ("xlat_dst", "xlat_dport"))
HANDSHAKE_NAMES = (("src", "sport"), ("dst", "dport"))


def name_column(address: str) -> str:
    """The name column of an address column: ``src`` → ``src_name``, ``a_addr`` → ``a_name``."""
    return address.removesuffix("_addr") + "_name"


def add_names(table: pd.DataFrame, identities: IdentityMap,
              columns: Sequence[tuple[str, str | None]], time: str | None,
              proto: str | int | None = "proto", after: bool = False) -> None:
    """Add ``<address>_name`` for each (address column, port column) in place: right before
    its address column, or (``after``) at the end of the table. ``time``: the column of each
    row's time (ns); ``proto``: the column of its IP protocol, or the protocol of every row."""
    times = int_column(table, time) if time else None
    protos = (np.full(len(table), proto, np.int64) if isinstance(proto, int)
              else int_column(table, proto) if proto else None)
    for address, port in columns:
        if address not in table:
            continue
        names = identities.name(table[address], int_column(table, port) if port else None,
                                protos, times)
        column = name_column(address)
        if column in table or after:
            table[column] = names
        else:
            table.insert(table.columns.get_loc(address), column, names)


def name_packets(packets: pd.DataFrame, identities: IdentityMap) -> None:
    """``src_name``, ``dst_name``, ``outer_src_name``, ``outer_dst_name`` at the end of the
    packet table (its columns stay in the order ``pktkit packets`` writes them)."""
    time = "ts_ref_ns" if "ts_ref_ns" in packets else "ts_ns"  # one clock for every node
    add_names(packets, identities, PACKET_NAMES[:2], time, after=True)
    # the outer ports are UDP's (VXLAN, Geneve); GRE and IP-in-IP have none
    add_names(packets, identities, PACKET_NAMES[2:], time, proto=IPPROTO_UDP, after=True)


def name_nat_flows(flows: pd.DataFrame, identities: IdentityMap,
                   backends: dict[tuple[str, int, int], str]) -> None:
    """The four tuple ends' names (at the flow's first packet) and ``service``, at the end."""
    add_names(flows, identities, NAT_NAMES, "first_ts_ns", after=True)
    flows["service"] = service_column(flows, backends)


def service_column(flows: pd.DataFrame, backends: dict[tuple[str, int, int], str]
                   ) -> pd.Categorical:
    """The ``service`` of each NAT flow (module docstring)."""
    if not len(flows):
        return pd.Categorical([], categories=[])
    destination = flows["orig_dst_name"].astype("string")
    service = destination.where(destination.str.startswith("service:", na=False))
    missing = service.isna().to_numpy() & flows["kind"].astype("string").str.contains(
        "dnat", na=False).to_numpy()
    if missing.any() and backends:
        keys = flows.loc[missing, ["xlat_dst", "xlat_dport", "proto"]]
        found = [backends.get((normal_address(a) or "", int(p), int(q)))
                 if pd.notna(p) and pd.notna(q) else None
                 for a, p, q in keys.itertuples(index=False, name=None)]
        service[missing] = pd.array(found, dtype="string")
    return pd.Categorical(service)
