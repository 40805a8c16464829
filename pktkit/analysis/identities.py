"""Who is behind an address: (address, port, protocol, time) → a name, from the metadata.

Names, most specific first:

1. ``service:NAMESPACE/NAME:PORT`` for a Service's port (its ``port``) on one of its cluster
   IPs, external IPs or load-balancer IPs, and for its ``nodePort`` on any node address;
   ``container:NAME`` for a port Docker publishes on a given host address, and (once a NAT
   flow proves the host address, :meth:`IdentityMap.with_published`) on every host address;
   ``pod:NAMESPACE/NAME`` for a pod's ``hostPort`` on its node's addresses.
2. ``pod:NAMESPACE/NAME`` for a pod's address while the pod held it (a pod address reused by a
   later pod is the later pod's from that pod's start on: the earlier one's end is cut there);
   ``service:NAMESPACE/NAME`` for any other port of a Service's address; ``node:NAME`` for a
   node's addresses (and for host-network pods, whose address is their node's);
   ``container:NAME`` for a container's address on any of its networks while it ran.
3. Otherwise the address itself: nothing is guessed.

:class:`IdentityMap` answers for whole columns at once: the distinct addresses are looked up
once each, and only the rows of addresses whose name depends on the port or the time are
looked at row by row, in numpy.

``identities`` table (:meth:`IdentityMap.table`) — one row per claim

===========  ======  ===============================================================
name         string  the name given
kind         string  ``pod``, ``service``, ``node`` or ``container``
address      string  the address claimed
port         UInt16  the port claimed (NA: every port)
proto        UInt8   its protocol (NA: any)
since_ts_ns  Int64   from (NA: since ever), ns since the epoch (the metadata's clock)
until_ts_ns  Int64   until, exclusive (NA: still)
node         string  a pod's node
workload     string  a pod's owning workload (``deployment:default/web``)
source       string  the metadata file it comes from
===========  ======  ===============================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pktkit.analysis.metadata import (
    ContainerRecord,
    Metadata,
    PodRecord,
    PublishedPort,
    normal_address,
)
from pktkit.capture.frame import typed_frame

IDENTITIES_SCHEMA: dict[str, str] = {
    "name": "string", "kind": "string", "address": "string", "port": "UInt16",
    "proto": "UInt8", "since_ts_ns": "Int64", "until_ts_ns": "Int64", "node": "string",
    "workload": "string", "source": "string",
}
_EVER = np.iinfo(np.int64).min
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Claim:
    """An address (and maybe port) held by a name, from ``start_ns`` until ``end_ns``."""

    address: str
    port: int | None
    proto: int | None
    name: str
    kind: str
    start_ns: int | None = None
    end_ns: int | None = None
    node: str | None = None
    workload: str | None = None
    source: str = ""


@dataclass(frozen=True)
class _Segments:
    """The claims on one key, cut so that they do not overlap: sorted starts, ends, names."""

    starts: np.ndarray
    ends: np.ndarray
    names: list[str]

    @property
    def constant(self) -> bool:
        """One name for all time."""
        return len(self.names) == 1 and self.starts[0] == _EVER and self.ends[0] == _NEVER

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per time, the segment that covers it, and whether one does."""
        index = np.searchsorted(self.starts, times, side="right") - 1
        safe = np.maximum(index, 0)
        return safe, (index >= 0) & (times < self.ends[safe])


def _segments(claims: Sequence[Claim]) -> _Segments:
    """Claims of one key without overlaps: identical names merged, and a claim that starts
    later takes over from there (a reused pod address is the newer pod's)."""
    by_name: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for claim in claims:
        by_name[claim.name].append((_EVER if claim.start_ns is None else claim.start_ns,
                                    _NEVER if claim.end_ns is None else claim.end_ns))
    spans = []
    for name, intervals in by_name.items():
        intervals.sort()
        start, end = intervals[0]
        for s, e in intervals[1:]:
            if s <= end:
                end = max(end, e)
            else:
                spans.append((start, end, name))
                start, end = s, e
        spans.append((start, end, name))
    spans.sort(key=lambda span: (span[0], span[2]))
    starts, ends, names = [], [], []
    for index, (start, end, name) in enumerate(spans):
        later = [s for s, _, _ in spans[index + 1:] if s > start]
        end = min([end, *later[:1]])
        if starts and start < ends[-1]:  # same start as the previous: keep the first
            continue
        starts.append(start)
        ends.append(end)
        names.append(name)
    return _Segments(np.array(starts, np.int64), np.array(ends, np.int64), names)


class IdentityMap:
    """The claims of some metadata, ready to name columns (see the module docstring)."""

    def __init__(self, claims: Iterable[Claim] = (), published: Iterable[tuple[
            ContainerRecord, PublishedPort]] = ()) -> None:
        self.claims = list(dict.fromkeys(claims))
        self.published = list(published)
        wide: dict[str, list[Claim]] = defaultdict(list)
        ported: dict[str, dict[tuple[int, int | None], list[Claim]]] = defaultdict(
            lambda: defaultdict(list))
        for claim in self.claims:
            if claim.port is None:
                wide[claim.address].append(claim)
            else:
                ported[claim.address][(claim.port, claim.proto)].append(claim)
        self._wide = {address: _segments(c) for address, c in wide.items()}
        self._ported = {address: {key: _segments(c) for key, c in keys.items()}
                        for address, keys in ported.items()}

    def __bool__(self) -> bool:
        return bool(self.claims)

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> IdentityMap:
        published = [(c, p) for c in metadata.containers for p in c.published
                     if p.host_address is None]
        return cls(claims_of(metadata), published)

    # -- naming ----------------------------------------------------------------------------

    def name(self, addresses: pd.Series | Sequence[object], ports: np.ndarray | None = None,
             protos: np.ndarray | None = None, times: np.ndarray | None = None
             ) -> pd.Categorical:
        """The name of each (address, port, protocol, time): a categorical aligned to
        ``addresses`` (NA where the address is NA). ``ports``, ``protos`` and ``times`` are
        int64 arrays with −1 for NA (None: all NA)."""
        codes, uniques = pd.factorize(pd.Series(addresses, dtype="string"),
                                      use_na_sentinel=True)
        n = len(codes)
        texts = [str(u) for u in uniques]
        labels = list(dict.fromkeys(texts))
        label_of = {text: i for i, text in enumerate(labels)}

        def label(text: str) -> int:
            if text not in label_of:
                label_of[text] = len(labels)
                labels.append(text)
            return label_of[text]

        per_address = np.array([label_of[t] for t in texts] + [-1], np.int32)
        complex_codes = []
        for code, text in enumerate(texts):
            key = normal_address(text)
            wide, ported = self._wide.get(key), self._ported.get(key)
            if ported is None and (wide is None or wide.constant):
                if wide is not None:
                    per_address[code] = label(wide.names[0])
            else:
                complex_codes.append(code)
        result = per_address[codes]
        if complex_codes:
            ports = np.full(n, -1, np.int64) if ports is None else np.asarray(ports, np.int64)
            protos = np.full(n, -1, np.int64) if protos is None else np.asarray(protos,
                                                                                  np.int64)
            times = np.full(n, -1, np.int64) if times is None else np.asarray(times, np.int64)
            rows = np.flatnonzero(np.isin(codes, complex_codes))
            rows = rows[np.argsort(codes[rows], kind="stable")]
            bounds = np.searchsorted(codes[rows], [*complex_codes, n + 1])
            for index, code in enumerate(complex_codes):
                mine = rows[bounds[index]:bounds[index + 1]]
                key = normal_address(texts[code])
                result[mine] = self._row_labels(key, ports[mine], protos[mine], times[mine],
                                                per_address[code], label)
        if not labels:
            return pd.Categorical([None] * n, categories=[])
        # only the names given (an address named otherwise in every row is not a category)
        return pd.Categorical.from_codes(result, categories=labels).remove_unused_categories()

    def _row_labels(self, key: str | None, ports: np.ndarray, protos: np.ndarray,
                    times: np.ndarray, fallback: int, label: Callable[[str], int]
                    ) -> np.ndarray:
        """Labels of the rows of one address whose name depends on port or time."""
        out = np.full(len(times), fallback, np.int32)
        wide = self._wide.get(key)
        if wide is not None:
            segment, hit = wide.at(times)
            codes = np.array([label(n) for n in wide.names], np.int32)
            out[hit] = codes[segment[hit]]
        for (port, proto), segments in self._ported.get(key, {}).items():
            match = ports == port
            if proto is not None:
                match &= protos == proto
            if not match.any():
                continue
            segment, hit = segments.at(times)
            codes = np.array([label(n) for n in segments.names], np.int32)
            chosen = match & hit
            out[chosen] = codes[segment[chosen]]
        return out

    # -- more claims -----------------------------------------------------------------------

    def with_published(self, nat_flows: pd.DataFrame) -> IdentityMap:
        """More claims from NAT flows: a destination NAT to a container's published port on
        every host address (Docker's ``-p 8080:80``) proves the original destination is a host
        address: its port is the container's. Returns a new map (or this one: nothing new)."""
        if not self.published or not len(nat_flows):
            return self
        containers = {a: c for c in {c for c, _ in self.published} for a in c.addresses}
        found = []
        dnat = nat_flows[nat_flows["kind"].astype("string").str.contains("dnat", na=False)]
        columns = ["orig_dst", "orig_dport", "xlat_dst", "xlat_dport", "proto"]
        for orig, orig_port, xlat, xlat_port, proto in dnat[columns].drop_duplicates(
                ).itertuples(index=False, name=None):
            container = containers.get(normal_address(xlat))
            address = normal_address(orig)
            if container is None or address is None or pd.isna(orig_port):
                continue
            for owner, port in self.published:
                if owner is container and port.container_port == xlat_port \
                        and port.protocol == proto and port.host_port == orig_port:
                    found.append(Claim(address, int(orig_port), int(proto),
                                       f"container:{container.name}", "container",
                                       container.start_ns, container.end_ns,
                                       source=container.source))
        return IdentityMap([*self.claims, *found], self.published) if found else self

    # -- the table ---------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """The ``identities`` table (module docstring), sorted by kind and name."""
        rows = [{"name": c.name, "kind": c.kind, "address": c.address, "port": c.port,
                 "proto": c.proto, "since_ts_ns": c.start_ns, "until_ts_ns": c.end_ns,
                 "node": c.node, "workload": c.workload, "source": c.source}
                for c in self.claims]
        frame = pd.DataFrame(rows, columns=list(IDENTITIES_SCHEMA))
        order = {"pod": 0, "service": 1, "container": 2, "node": 3}
        frame = frame.sort_values(["kind", "name", "address", "port", "since_ts_ns"],
                                  key=lambda s: s.map(order) if s.name == "kind" else s,
                                  kind="stable", na_position="first")
        frame = frame.drop_duplicates(["name", "address", "port", "proto", "since_ts_ns"])
        return typed_frame(frame.reset_index(drop=True), IDENTITIES_SCHEMA)


# -- claims from metadata --------------------------------------------------------------------


def _node_addresses(metadata: Metadata) -> dict[str, tuple[str, ...]]:
    """Each node's addresses: its Node object's, and the host addresses its pods report."""
    found: dict[str, dict[str, None]] = defaultdict(dict)
    for node in metadata.nodes:
        found[node.name].update(dict.fromkeys(node.addresses))
    for pod in metadata.pods:
        if pod.node:
            found[pod.node].update(dict.fromkeys(pod.host_addresses))
            if pod.host_network:
                found[pod.node].update(dict.fromkeys(pod.addresses))
    return {name: tuple(addresses) for name, addresses in found.items()}


def _pod_claims(pod: PodRecord, nodes: dict[str, tuple[str, ...]]) -> Iterable[Claim]:
    common = {"start_ns": pod.start_ns, "end_ns": pod.end_ns, "node": pod.node,
              "workload": pod.workload, "source": pod.source}
    name = f"pod:{pod.namespace}/{pod.name}"
    if not pod.host_network:  # a host-network pod's address is its node's
        for address in pod.addresses:
            yield Claim(address, None, None, name, "pod", **common)
    hosts = pod.host_addresses or nodes.get(pod.node or "", ())
    for port in pod.ports:
        if port.host_port and not pod.host_network:
            for address in hosts:
                yield Claim(address, port.host_port, port.protocol, name, "pod", **common)


def claims_of(metadata: Metadata) -> list[Claim]:
    """Every claim the metadata supports (module docstring)."""
    nodes = _node_addresses(metadata)
    claims: list[Claim] = []
    sources = {n.name: n.source for n in metadata.nodes}
    for node, addresses in nodes.items():
        claims += [Claim(a, None, None, f"node:{node}", "node", node=node,
                         source=sources.get(node, "")) for a in addresses]
    known_pods = set()
    for pod in metadata.pods:
        known_pods.add(f"{pod.namespace}/{pod.name}")
        claims += _pod_claims(pod, nodes)
    for endpoint in metadata.endpoints:  # backends whose Pod was not listed
        if endpoint.pod and endpoint.pod not in known_pods:
            claims.append(Claim(endpoint.address, None, None, f"pod:{endpoint.pod}", "pod",
                                node=endpoint.node, source=endpoint.source))
    every_node_address = [a for addresses in nodes.values() for a in addresses]
    for service in metadata.services:
        base = f"service:{service.namespace}/{service.name}"
        for address in (*service.cluster_addresses, *service.external_addresses):
            claims.append(Claim(address, None, None, base, "service", source=service.source))
            claims += [Claim(address, p.port, p.protocol, f"{base}:{p.port}", "service",
                             source=service.source) for p in service.ports]
        for port in service.ports:
            if port.node_port:
                claims += [Claim(a, port.node_port, port.protocol, f"{base}:{port.port}",
                                 "service", source=service.source) for a in every_node_address]
    inspected = {c.id for c in metadata.containers}
    for container in metadata.containers:
        common = {"start_ns": container.start_ns, "end_ns": container.end_ns,
                  "source": container.source}
        name = f"container:{container.name}"
        claims += [Claim(a, None, None, name, "container", **common)
                   for a in container.addresses]
        claims += [Claim(p.host_address, p.host_port, p.protocol, name, "container", **common)
                   for p in container.published if p.host_address is not None]
    for network in metadata.networks:
        for container_id, name, addresses in network.members:
            if container_id not in inspected and name:
                claims += [Claim(a, None, None, f"container:{name}", "container",
                                 source=network.source) for a in addresses]
    return claims


def service_backends(metadata: Metadata) -> dict[tuple[str, int, int], str]:
    """(backend address, port, protocol) → ``service:NAMESPACE/NAME:PORT`` for every Service
    backend whose port is known (target ports by name resolved through the EndpointSlices'
    ports, else the pod's named container port); an address:port behind two Services is left
    out: no single answer."""
    pod_ports = {f"{p.namespace}/{p.name}": p.ports for p in metadata.pods}
    found: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    services = {(s.namespace, s.name): s for s in metadata.services}
    for endpoint in metadata.endpoints:
        service = services.get((endpoint.namespace, endpoint.service))
        if service is None:
            continue
        for port in service.ports:
            number = next((n for name, n, proto in endpoint.ports
                           if name == (port.name or "") and proto == port.protocol), None)
            if number is None and isinstance(port.target_port, int):
                number = port.target_port
            if number is None and endpoint.pod:  # a target port by name, no slice port
                number = next((p.port for p in pod_ports.get(endpoint.pod, ())
                               if p.name == port.target_port and p.protocol == port.protocol),
                              None)
            if number is not None:
                found[(endpoint.address, number, port.protocol)].add(
                    f"service:{service.namespace}/{service.name}:{port.port}")
    return {key: next(iter(names)) for key, names in found.items() if len(names) == 1}
