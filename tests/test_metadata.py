"""kubectl and docker inspect JSON → records (pktkit.analysis.metadata).

The files under ``tests/data/metadata/`` are ours: synthetic objects in the shapes the
Kubernetes API and Docker 20.10 print (kubectl's printGeneric List, a raw PodList, a bare Pod,
a watch stream; ``docker inspect`` of containers and of the default bridge, API 1.41 and
1.52). Their timeline (UTC, 2026-01-05): 10.244.1.7 is held by the Job pod
``batch/report-29460055-vk4tl`` from 08:55:02 (sandbox ready) until its container finished
at 09:20:11; at 10:00 (``kubectl-t1.json``) the finished pod is still listed with that podIP
and ``default/api-6d4b9c7f58-t4wzp`` holds it since 09:41:32.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

import pktkit
from pktkit.analysis.metadata import (
    PublishedPort,
    from_bytes,
    parse_time,
    read_docker,
    read_kubectl,
    read_metadata,
)
from pktkit.cli import main
from pktkit.errors import MetadataError

DATA = Path(__file__).parent / "data" / "metadata"
T0, T1 = DATA / "kubectl-t0.json", DATA / "kubectl-t1.json"
CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def by_name(records: list) -> dict:
    return {r.name: r for r in records}


def test_a_kubectl_list_gives_pods_services_slices_nodes() -> None:
    found = read_kubectl(T0)
    pods = by_name(found.pods)
    assert set(pods) == {"web-7c9d8b5f4-q2x7z", "web-7c9d8b5f4-m5n8k", "report-29460055-vk4tl",
                         "kube-proxy-7hxkz"}
    web = pods["web-7c9d8b5f4-q2x7z"]
    assert (web.namespace, web.node, web.addresses) == ("default", "kw-node-a", ("10.244.0.5",))
    # owner: ReplicaSet web-7c9d8b5f4 with pod-template-hash 7c9d8b5f4 → the Deployment
    assert web.workload == "deployment:default/web"
    assert pods["report-29460055-vk4tl"].workload == "job:batch/report-29460055"
    proxy = pods["kube-proxy-7hxkz"]
    assert proxy.host_network and proxy.workload == "daemonset:kube-system/kube-proxy"
    assert web.start_ns == utc("2026-01-04T16:20:02")  # PodReadyToStartContainers
    assert web.end_ns is None and not web.terminal
    services = by_name(found.services)
    nodeport = services["web-nodeport"]
    assert nodeport.type == "NodePort" and nodeport.cluster_addresses == ("10.96.45.67",)
    (port,) = nodeport.ports
    assert (port.port, port.target_port, port.node_port, port.protocol) == (80, "http", 30080, 6)
    assert services["web-public"].external_addresses == ("203.0.113.80",)  # LB ingress
    slices = [e for e in found.endpoints if e.service == "web-nodeport"]
    assert {e.address for e in slices} == {"10.244.0.5", "10.244.1.6"}
    assert {e.ports for e in slices} == {(("http", 8080, 6),)}  # targetPort resolved
    api = [e for e in found.endpoints if e.service == "kubernetes"]
    assert [(e.address, e.pod) for e in api] == [("198.51.100.11", None)]  # no targetRef
    nodes = by_name(found.nodes)
    assert nodes["kw-node-a"].addresses == ("198.51.100.11", "203.0.113.11")
    assert nodes["kw-node-b"].pod_cidrs == ("10.244.1.0/24",)


def test_snapshots_merge_one_pod_per_uid() -> None:
    """t0 shows the Job pod running (its sandbox time); t1 shows it finished (no sandbox
    time any more, PodReadyToStartContainers False at 09:20:11): one record, both known."""
    found = read_metadata(k8s=[T0, T1])
    report = [p for p in found.pods if p.name == "report-29460055-vk4tl"]
    assert len(report) == 1
    assert report[0].terminal and report[0].addresses == ("10.244.1.7",)
    assert report[0].start_ns == utc("2026-01-05T08:55:02")
    # the API writes whole seconds: the end covers its second
    assert report[0].end_ns == utc("2026-01-05T09:20:11") + 10**9
    api = by_name(found.pods)["api-6d4b9c7f58-t4wzp"]
    assert api.start_ns == utc("2026-01-05T09:41:32") and api.addresses == ("10.244.1.7",)


def test_snapshots_concatenated_in_one_file_read_alike(tmp_path: Path) -> None:
    both = tmp_path / "both.json"
    both.write_bytes(T0.read_bytes() + T1.read_bytes())
    def without_source(pods: list) -> list:
        return [replace(p, source="") for p in pods]

    assert without_source(read_kubectl(both).pods) == \
        without_source(read_metadata(k8s=[T0, T1]).pods)


@pytest.mark.parametrize("name, pods", [
    ("k8s-raw-podlist.json", 2),  # PodList: items without kind or apiVersion
    ("kubectl-single-pod.json", 1),  # kubectl get pod NAME -o json: the bare object
    ("kubectl-watch-stream.json", 2),  # kubectl get -w -o json: objects one after another
])
def test_other_kubectl_shapes(name: str, pods: int) -> None:
    found = read_kubectl(DATA / name)
    assert len(found.pods) == pods
    assert all(p.addresses for p in found.pods)


def test_file_objects_read_like_paths() -> None:
    """Bundles hand over file objects: binary or text, named by their ``name``."""
    expected = read_kubectl(T0).pods
    binary = from_bytes(T0.read_bytes(), "bundle/node-a/kubectl.json")
    assert [p.name for p in read_kubectl(binary).pods] == [p.name for p in expected]
    text = io.StringIO(T0.read_text())
    assert len(read_kubectl(text).pods) == len(expected)
    with pytest.raises(MetadataError, match=r"bundle/x\.json"):
        read_kubectl(from_bytes(b"apiVersion: v1\n", "bundle/x.json"))


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "cut.json"
    path.write_bytes(T0.read_bytes()[:5000])
    return path


BAD_K8S = [
    ("bad/kubectl-configmaps.json", r"no Pod, Service, EndpointSlice or Node in it \(found "
                                    r"ConfigMap ×1\)"),
    ("bad/kubectl-empty-list.json", r"an empty List"),
    ("bad/kubectl-list.yaml", r"looks like YAML .*-o json"),
    ("bad/kubectl-with-warning.txt", r"line 1 is a message, not JSON \('Warning: v1 Endpoints"),
    ("docker-inspect.json", r"a JSON array \(docker inspect output\?\)"),
    ("truncated", r"ends before the JSON does \(a truncated file\?\)"),
]


@pytest.mark.parametrize("name, message", BAD_K8S, ids=[n for n, _ in BAD_K8S])
def test_bad_kubectl_files_get_one_line_naming_the_file(name: str, message: str,
                                                        tmp_path: Path) -> None:
    path = _truncated(tmp_path) if name == "truncated" else DATA / name
    with pytest.raises(MetadataError, match=message) as caught:
        read_kubectl(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"--k8s {path}: ")
    assert "kubectl get pods,services,endpointslices,nodes -A -o json" in text


@pytest.mark.parametrize("name, message", BAD_K8S, ids=[n for n, _ in BAD_K8S])
def test_the_cli_says_it_in_one_line_and_exits_2(name: str, message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Before reading any capture: the bundled folder would take seconds, the error none."""
    path = _truncated(tmp_path) if name == "truncated" else DATA / name
    code = main(["analyze", str(CAPTURES / "flat-routed"), "--k8s", str(path), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(path) in err
    assert err.startswith("pktkit: error: --k8s ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data, message", [
    (b"", r"the file is empty"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", r"not text"),
    (T0.read_bytes(), r"kubectl output, not docker inspect output; give it to --k8s"),
    (b'[{"RepoTags": ["busybox:latest"], "RootFS": {}}]',
     r"no container or network in it \(found image ×1\)"),
])
def test_bad_docker_files(data: bytes, message: str) -> None:
    with pytest.raises(MetadataError, match=message) as caught:
        read_docker(from_bytes(data, "docker.json"))
    assert str(caught.value).startswith("--docker docker.json: ")
    assert "docker inspect" in str(caught.value) and "\n" not in str(caught.value)


def test_docker_inspect_20_10() -> None:
    found = read_docker(DATA / "docker-inspect.json")
    web, cache = found.containers
    assert (web.name, web.addresses, web.networks) == ("web", ("172.17.0.2",), ("bridge",))
    # -p 8080:80 binds 0.0.0.0 and :: → one wildcard publication
    assert web.published == (PublishedPort(80, 6, None, 8080),)
    # -p 127.0.0.1:6380:6379 is that address only; 9121/tcp exposed, not published (null)
    assert cache.published == (PublishedPort(6379, 6, "127.0.0.1", 6380),)
    assert web.start_ns == parse_time("2026-01-05T08:12:03.604117250Z") and web.end_ns is None


def test_docker_api_152_has_no_top_level_address_and_reads_alike() -> None:
    old = read_docker(DATA / "docker-inspect.json").containers
    new = read_docker(DATA / "docker-inspect-api152.json").containers
    assert [(c.name, c.addresses, c.published) for c in new] == \
        [(c.name, c.addresses, c.published) for c in old]


def test_docker_mixed_array_and_network_inspect() -> None:
    mixed = read_docker(DATA / "docker-inspect-mixed.json")
    assert [c.name for c in mixed.containers] == ["web"]
    assert [n.name for n in mixed.networks] == ["bridge"]
    (bridge,) = read_docker(DATA / "docker-network-inspect.json").networks
    assert (bridge.bridge, bridge.subnets, bridge.gateways) == ("docker0", ("172.17.0.0/16",), ())
    # network inspect: names without the slash, addresses as CIDR
    assert sorted((name, addresses) for _, name, addresses in bridge.members) == [
        ("shop-cache-1", ("172.17.0.3",)), ("web", ("172.17.0.2",))]


@pytest.mark.parametrize("text, ns", [
    ("2026-01-05T09:41:32Z", 1767606092 * 10**9),
    ("2026-01-05T08:12:03.604117250Z", 1767600723 * 10**9 + 604117250),
    ("2026-01-05T11:12:03.5+03:00", 1767600723 * 10**9 + 500_000_000),
    ("0001-01-01T00:00:00Z", None),  # Docker's "never"
    ("", None), (None, None),
])
def test_times(text: str | None, ns: int | None) -> None:
    assert parse_time(text) == ns


def test_analyze_raises_the_metadata_error() -> None:
    with pytest.raises(MetadataError, match="configmaps"):
        pktkit.analyze(CAPTURES / "flat-routed", k8s=[DATA / "bad" / "kubectl-configmaps.json"])
