"""(address, port, protocol, time) → name (pktkit.analysis.identities), against the fixtures'
documented timeline (see tests/test_metadata.py) and against a plain per-row lookup."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pktkit.analysis.identities import IdentityMap, service_backends
from pktkit.analysis.metadata import read_metadata

DATA = Path(__file__).parent / "data" / "metadata"
TCP, UDP = 6, 17


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


@pytest.fixture(scope="module")
def cluster() -> IdentityMap:
    return IdentityMap.from_metadata(read_metadata(
        k8s=[DATA / "kubectl-t0.json", DATA / "kubectl-t1.json"]))


@pytest.fixture(scope="module")
def docker() -> IdentityMap:
    return IdentityMap.from_metadata(read_metadata(
        docker=[DATA / "docker-inspect.json", DATA / "docker-network-inspect.json"]))


def names(identities: IdentityMap, rows: list[tuple[str | None, int, int, int]]) -> list:
    addresses = [r[0] for r in rows]
    columns = [np.array([r[i] for r in rows], np.int64) for i in (1, 2, 3)]
    found = identities.name(addresses, *columns)
    return [None if pd.isna(x) else x for x in found]


def test_a_reused_pod_address_is_named_by_time(cluster: IdentityMap) -> None:
    """10.244.1.7: the Job pod from its sandbox (08:55:02) until the second its container
    finished ends (09:20:11 → 09:20:12); free until the api pod's sandbox (09:41:32)."""
    at = [("08:55:01", "10.244.1.7"), ("08:55:02", "pod:batch/report-29460055-vk4tl"),
          ("09:20:11.9", "pod:batch/report-29460055-vk4tl"), ("09:20:12", "10.244.1.7"),
          ("09:41:31", "10.244.1.7"), ("09:41:32", "pod:default/api-6d4b9c7f58-t4wzp"),
          ("12:00:00", "pod:default/api-6d4b9c7f58-t4wzp")]
    times = [utc(f"2026-01-05T{t}") if "." not in t else
             utc(f"2026-01-05T{t.split('.')[0]}") + 900_000_000 for t, _ in at]
    got = names(cluster, [("10.244.1.7", 80, TCP, t) for t in times])
    assert got == [name for _, name in at]


@pytest.mark.parametrize("address, port, proto, name", [
    ("10.244.0.5", 8080, TCP, "pod:default/web-7c9d8b5f4-q2x7z"),
    ("10.96.45.67", 80, TCP, "service:default/web-nodeport:80"),  # ClusterIP:port
    ("10.96.45.67", 81, TCP, "service:default/web-nodeport"),  # another port of the VIP
    ("10.96.45.67", 80, UDP, "service:default/web-nodeport"),  # the port is TCP's
    ("198.51.100.12", 30080, TCP, "service:default/web-nodeport:80"),  # NodePort, any node
    ("198.51.100.11", 31443, TCP, "service:default/web-public:443"),
    ("203.0.113.80", 443, TCP, "service:default/web-public:443"),  # LoadBalancer ingress
    ("198.51.100.12", 22, TCP, "node:kw-node-b"),
    ("198.51.100.11", 10256, TCP, "node:kw-node-a"),  # kube-proxy: host network → its node
    ("203.0.113.11", -1, 1, "node:kw-node-a"),  # ExternalIP, ICMP
    ("192.0.2.99", 80, TCP, "192.0.2.99"),  # nobody's: the address
    (None, -1, -1, None),
])
def test_names_of_the_cluster(cluster: IdentityMap, address: str | None, port: int,
                              proto: int, name: str | None) -> None:
    assert names(cluster, [(address, port, proto, utc("2026-01-05T10:00:00"))]) == [name]


def test_docker_names(docker: IdentityMap) -> None:
    t = utc("2026-01-05T09:00:00")
    assert names(docker, [("172.17.0.2", 80, TCP, t), ("172.17.0.3", 6379, TCP, t),
                          ("127.0.0.1", 6380, TCP, t), ("127.0.0.1", 6381, TCP, t),
                          ("172.17.0.2", 80, TCP, utc("2026-01-05T08:00:00"))]) == [
        "container:web", "container:shop-cache-1", "container:shop-cache-1", "127.0.0.1",
        "172.17.0.2"]  # the last: before the container started


def test_a_published_port_on_every_host_address_needs_a_nat_flow(docker: IdentityMap) -> None:
    """-p 8080:80 binds every host address: a DNAT of 192.0.2.5:8080 to web's :80 shows
    192.0.2.5 is one, so its port 8080 is web's; other ports stay the address."""
    t = utc("2026-01-05T09:00:00")
    rows = [("192.0.2.5", 8080, TCP, t), ("192.0.2.5", 8081, TCP, t)]
    assert names(docker, rows) == ["192.0.2.5", "192.0.2.5"]
    flows = pd.DataFrame({"kind": ["dnat"], "proto": [TCP], "orig_dst": ["192.0.2.5"],
                          "orig_dport": [8080], "xlat_dst": ["172.17.0.2"], "xlat_dport": [80]})
    assert names(docker.with_published(flows), rows) == ["container:web", "192.0.2.5"]
    wrong_port = flows.assign(xlat_dport=[81])
    assert names(docker.with_published(wrong_port), rows)[0] == "192.0.2.5"


def test_service_backends_resolve_target_ports_by_name() -> None:
    metadata = read_metadata(k8s=[DATA / "kubectl-t0.json"])
    backends = service_backends(metadata)
    # the API server's selectorless endpoint (no targetRef)
    assert backends[("198.51.100.11", 6443, TCP)] == "service:default/kubernetes:443"
    # the web pods back three Services: no single answer, so none
    assert ("10.244.0.5", 8080, TCP) not in backends


def test_a_column_is_named_as_row_by_row(cluster: IdentityMap) -> None:
    """100,000 rows of mixed addresses, ports and times named at once equal the per-row
    lookup."""
    rng = random.Random(7)
    addresses = ["10.244.1.7", "10.244.0.5", "10.96.45.67", "198.51.100.12", "203.0.113.80",
                 "192.0.2.1", None]
    start = utc("2026-01-05T08:50:00")
    rows = [(rng.choice(addresses), rng.choice([80, 81, 443, 30080, -1]),
             rng.choice([TCP, UDP]), start + rng.randrange(2 * 3600) * 10**9)
            for _ in range(100_000)]
    whole = names(cluster, rows)
    sample = rng.sample(range(len(rows)), 300)
    assert [whole[i] for i in sample] == [names(cluster, [rows[i]])[0] for i in sample]
    assert len(set(whole)) >= 8


def test_without_metadata_the_names_are_the_addresses() -> None:
    assert names(IdentityMap(), [("10.0.0.1", 80, TCP, 0), (None, -1, -1, 0),
                                  ("fd00::1", -1, -1, 0)]) == ["10.0.0.1", None, "fd00::1"]


def test_the_identities_table(cluster: IdentityMap) -> None:
    table = cluster.table()
    pods = table[table["kind"] == "pod"].set_index("name")
    api = pods.loc["pod:default/api-6d4b9c7f58-t4wzp"]
    assert (api["address"], api["node"], api["workload"]) == (
        "10.244.1.7", "kw-node-b", "deployment:default/api")
    report = pods.loc["pod:batch/report-29460055-vk4tl"]
    assert report["until_ts_ns"] == utc("2026-01-05T09:20:12")
    assert "pod:kube-system/kube-proxy-7hxkz" not in pods.index  # host network: the node's
