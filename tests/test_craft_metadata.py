"""The generator's kubectl.json and docker.json (pktkit.craft.metadata) have the real shapes.

Compared with tests/data/metadata/, objects written in the shapes the Kubernetes API types
(k8s.io/api core/v1, discovery/v1), kubectl's printer (one List, resourceVersion "", 4-space
indent, keys sorted) and Docker 20.10 (observed ``docker inspect`` output) print; and with what
the names in truth.json say the scenario runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pktkit.craft.generation import generate, make_scenario

DATA = Path(__file__).parent / "data" / "metadata"
K8S_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # metav1.Time: whole seconds
DOCKER_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metadata")
    out = {}
    for name in ("k8s-clusterip", "k8s-nodeport", "docker-portmap", "ipip", "vxlan-overlay"):
        out[name] = root / name
        generate(make_scenario(name, seed=1), out[name])
    return out


def reference(kind: str) -> dict[str, Any]:
    """An object of ``kind`` from our fixture in the API's shape."""
    items = json.loads((DATA / "kubectl-t1.json").read_text())["items"]
    return next(i for i in items if i["kind"] == kind)


def kubectl(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "kubectl.json").read_text())


def test_kubectl_prints_one_list_sorted_and_indented(written: dict[str, Path]) -> None:
    text = (written["k8s-clusterip"] / "kubectl.json").read_text()
    listed = json.loads(text)
    assert text == json.dumps(listed, indent=4, sort_keys=True) + "\n"
    assert (listed["apiVersion"], listed["kind"], listed["metadata"]) == (
        "v1", "List", {"resourceVersion": ""})
    kinds = [i["kind"] for i in listed["items"]]
    # kubectl's order: the types as asked (pods,services,endpointslices,nodes)
    assert kinds == sorted(kinds, key=["Pod", "Service", "EndpointSlice", "Node"].index)
    versions = {i["kind"]: i["apiVersion"] for i in listed["items"]}
    assert versions == {"Pod": "v1", "Service": "v1", "EndpointSlice": "discovery.k8s.io/v1",
                        "Node": "v1"}


@pytest.mark.parametrize("kind", ["Pod", "Service", "EndpointSlice", "Node"])
def test_objects_have_the_api_fields(written: dict[str, Path], kind: str) -> None:
    """Every field our reference object has at the levels pktkit and kubectl users read."""
    expected = reference(kind)
    for item in (i for i in kubectl(written["k8s-clusterip"])["items"] if i["kind"] == kind):
        assert set(item) == set(expected)
        assert set(expected["metadata"]) - {"ownerReferences", "generateName"} <= \
            set(item["metadata"]) | ({"labels"} if kind == "Node" else set())
        for part in ("spec", "status"):
            if part in expected and kind != "Node":
                assert set(expected[part]) - _optional(kind) <= set(item[part]), part


def _optional(kind: str) -> set[str]:
    """Fields only some objects of a kind have (a reference with a selector, a podCIDR...)."""
    return {"Service": {"selector", "externalTrafficPolicy", "allocateLoadBalancerNodePorts"},
            "Pod": {"hostNetwork"}}.get(kind, set())


def test_pods_services_and_slices_say_what_truth_says(written: dict[str, Path]) -> None:
    folder = written["k8s-clusterip"]
    items = kubectl(folder)["items"]
    truth = json.loads((folder / "truth.json").read_text())["names"]
    pods = {f"pod:{i['metadata']['namespace']}/{i['metadata']['name']}": i for i in items
            if i["kind"] == "Pod" and not i["spec"].get("hostNetwork")}
    assert set(pods) == {n["name"] for n in truth if n["name"].startswith("pod:")}
    for name, pod in pods.items():
        (held,) = [n for n in truth if n["name"] == name]
        assert pod["status"]["podIP"] == held["address"]
        assert pod["status"]["podIPs"] == [{"ip": held["address"]}]
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
        # the ReplicaSet is <deployment>-<pod-template-hash>
        assert owner["name"].endswith("-" + pod["metadata"]["labels"]["pod-template-hash"])
        for key in ("creationTimestamp",):
            assert K8S_TIME.match(pod["metadata"][key])
        for condition in pod["status"]["conditions"]:
            assert K8S_TIME.match(condition["lastTransitionTime"])
            assert condition["lastProbeTime"] is None
    evicted = [p for p in pods.values() if p["status"]["phase"] == "Failed"]
    assert len(evicted) == 1 and evicted[0]["status"]["reason"] == "Evicted"
    assert evicted[0]["status"]["podIP"]  # kubectl still shows the old address
    services = {i["metadata"]["name"]: i for i in items if i["kind"] == "Service"}
    web = services["web"]["spec"]
    assert web["clusterIPs"] == [web["clusterIP"]] and web["ports"][0]["targetPort"] == "http"
    (web_slice,) = [i for i in items if i["kind"] == "EndpointSlice"
                    and i["metadata"]["labels"]["kubernetes.io/service-name"] == "web"]
    # the controller writes the resolved number, and only the ready pod
    assert web_slice["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    (endpoint,) = web_slice["endpoints"]
    assert endpoint["targetRef"]["kind"] == "Pod"
    assert f"pod:default/{endpoint['targetRef']['name']}" in pods
    assert endpoint["targetRef"]["name"] != evicted[0]["metadata"]["name"]


def test_a_node_port_service(written: dict[str, Path]) -> None:
    items = kubectl(written["k8s-nodeport"])["items"]
    (web,) = [i for i in items if i["kind"] == "Service" and i["metadata"]["name"] == "web"]
    assert web["spec"]["type"] == "NodePort" and web["spec"]["ports"][0]["nodePort"] == 30080
    nodes = [i for i in items if i["kind"] == "Node"]
    assert all(n["status"]["addresses"][0]["type"] == "InternalIP" for n in nodes)
    assert all(n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]] for n in nodes)


def test_calico_nodes_have_calicos_annotations(written: dict[str, Path]) -> None:
    nodes = [i for i in kubectl(written["ipip"])["items"] if i["kind"] == "Node"]
    for node in nodes:
        notes = node["metadata"]["annotations"]
        address = node["status"]["addresses"][0]["address"]
        assert notes["projectcalico.org/IPv4Address"] == f"{address}/24"
        assert "projectcalico.org/IPv4IPIPTunnelAddr" in notes
        assert "podCIDR" not in node["spec"]  # Calico IPAM allocates blocks itself


def test_no_metadata_for_vxlan_tenants(written: dict[str, Path]) -> None:
    """Two tenants with the same pod addresses are no one cluster: nothing written, no
    names in truth."""
    folder = written["vxlan-overlay"]
    assert not (folder / "kubectl.json").exists() and not (folder / "docker.json").exists()
    assert json.loads((folder / "truth.json").read_text())["names"] == []


def test_docker_inspect_shape(written: dict[str, Path]) -> None:
    folder = written["docker-portmap"]
    text = (folder / "docker.json").read_text()
    found = json.loads(text)
    assert text == json.dumps(found, indent=4) + "\n"  # struct order, not sorted
    expected = json.loads((DATA / "docker-inspect.json").read_text())[0]
    network = json.loads((DATA / "docker-network-inspect.json").read_text())[0]
    *containers, bridge = found
    assert [c["Name"] for c in containers] == ["/web1", "/web2"]
    for container in containers:
        assert set(container) <= set(expected)
        for key in ("State", "NetworkSettings"):
            assert set(container[key]) == set(expected[key])
        assert set(container["NetworkSettings"]["Networks"]["bridge"]) == \
            set(expected["NetworkSettings"]["Networks"]["bridge"])
        assert DOCKER_TIME.match(container["State"]["StartedAt"])
        (bindings,) = container["NetworkSettings"]["Ports"].values()
        assert [b["HostIp"] for b in bindings] == ["0.0.0.0", "::"]
        (requested,) = container["HostConfig"]["PortBindings"].values()
        assert requested[0]["HostIp"] == ""
    ports = [int(b[0]["HostPort"]) for c in containers
             for b in c["NetworkSettings"]["Ports"].values()]
    assert ports == [8080, 8081]
    assert set(bridge) == set(network)
    assert bridge["Options"]["com.docker.network.bridge.name"] == "docker0"
    assert {v["Name"]: v["IPv4Address"] for v in bridge["Containers"].values()} == {
        c["Name"][1:]: c["NetworkSettings"]["IPAddress"] + "/16" for c in containers}
