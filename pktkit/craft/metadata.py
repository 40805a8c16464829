"""``kubectl.json`` and ``docker.json`` beside generated captures, in the real API shapes.

``kubectl.json`` is what ``kubectl get pods,services,endpointslices,nodes -A -o json`` prints
after the capture: one ``List`` (``metadata.resourceVersion: ""``), items with their own
``apiVersion`` and ``kind``, keys sorted, 4-space indent. Pods are ``v1`` (``status.podIP``,
``podIPs``, ``hostIP``, conditions with ``PodReadyToStartContainers``, ``spec.nodeName``,
``metadata.ownerReferences`` to their ReplicaSet or DaemonSet with ``pod-template-hash``);
Services ``v1`` (``spec.clusterIP``, ``clusterIPs``, ``ports[].port/targetPort/nodePort``);
EndpointSlices ``discovery.k8s.io/v1`` (``endpoints[].addresses``, ``targetRef``,
``conditions``, ``ports`` with target ports resolved to numbers, the
``kubernetes.io/service-name`` label); Nodes ``v1`` (``status.addresses``, ``spec.podCIDR``,
CNI annotations). Times are RFC 3339 to the second, as the API writes them.

``docker.json`` is what ``docker inspect CONTAINER... bridge`` prints (Docker 20.10, API 1.41):
one array mixing the containers (``State``, ``NetworkSettings.Networks``, ``Ports`` with a
``0.0.0.0`` and a ``::`` binding per published port) and the ``bridge`` network
(``IPAM.Config``, ``Containers`` with CIDR addresses). Times have nanoseconds.

Every id, uid and generated name is derived from the object's name, so the files are the same
on every run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pktkit.capture.formats import DOCKER_FILE, KUBECTL_FILE
from pktkit.craft.inventory import (
    DockerContainer,
    DockerHost,
    Inventory,
    KubeCluster,
    KubeNode,
    KubePod,
    KubeService,
    k8s_suffix,
)
from pktkit.files import write_text

_DAY_NS = 86_400 * 10**9


def _hex(seed: str, length: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _uid(seed: str) -> str:
    h = _hex("uid:" + seed, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def k8s_time(ns: int) -> str:
    """RFC 3339 to the second, truncated, as metav1.Time is written."""
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def docker_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Docker writes it."""
    seconds, fraction = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + \
        f".{fraction:09d}Z"


def _dumps(value: Any, sort_keys: bool) -> str:
    return json.dumps(value, indent=4, sort_keys=sort_keys) + "\n"


def write_metadata(out_dir: Path, inventory: Inventory | None) -> list[str]:
    """Write the inventory's metadata file into ``out_dir``; returns the names written."""
    if isinstance(inventory, KubeCluster):
        write_text(out_dir / KUBECTL_FILE, _dumps(kubectl_list(inventory), True),
                   "kubectl.json", "choose a writable --out directory")
        return [KUBECTL_FILE]
    if isinstance(inventory, DockerHost):
        write_text(out_dir / DOCKER_FILE, _dumps(docker_inspect(inventory), False),
                   "docker.json", "choose a writable --out directory")
        return [DOCKER_FILE]
    return []


# -- kubectl ---------------------------------------------------------------------------------


def kubectl_list(cluster: KubeCluster) -> dict[str, Any]:
    """The ``List`` kubectl prints: pods, services, endpointslices, nodes, in that order,
    each sorted by namespace and name as the API server returns them."""
    pods = sorted(cluster.pods, key=lambda p: (p.namespace, p.name))
    services = sorted(cluster.services, key=lambda s: (s.namespace, s.name))
    items = [*(_pod(p, cluster) for p in pods), *(_service(s, cluster) for s in services),
             *(_slice(s, cluster) for s in services), *(_node(n, cluster) for n in cluster.nodes)]
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def _condition(kind: str, ns: int, true: bool = True, reason: str | None = None
               ) -> dict[str, Any]:
    found = {"lastProbeTime": None, "lastTransitionTime": k8s_time(ns),
             "status": "True" if true else "False", "type": kind}
    if reason:
        found["reason"] = reason
    return found


def _owner(pod: KubePod) -> dict[str, Any]:
    name = (f"{pod.workload}-{pod.template_hash}" if pod.workload_kind == "Deployment"
            else pod.workload)
    kind = "ReplicaSet" if pod.workload_kind == "Deployment" else pod.workload_kind
    return {"apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True,
            "kind": kind, "name": name, "uid": _uid(f"{pod.namespace}/{kind}/{name}")}


def _pod(pod: KubePod, cluster: KubeCluster) -> dict[str, Any]:
    node = next(n for n in cluster.nodes if n.name == pod.node)
    # created, scheduled and the sandbox up within a second or two: whole seconds apart
    created = pod.ready_ns - 10**9
    started = pod.ready_ns
    uid = _uid(f"{pod.namespace}/pod/{pod.name}")
    labels = {"app": pod.app}
    if pod.workload_kind == "Deployment":
        labels["pod-template-hash"] = pod.template_hash
    else:
        labels.update({"controller-revision-hash": k8s_suffix(pod.workload, 10),
                       "pod-template-generation": "1"})
    container: dict[str, Any] = {
        "image": f"registry.example/{pod.workload}:1.0", "imagePullPolicy": "IfNotPresent",
        "name": pod.workload, "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"}
    if pod.ports:
        container["ports"] = [
            {"containerPort": port, "name": name, "protocol": protocol,
             **({"hostPort": port} if pod.host_network else {})}
            for name, port, protocol in pod.ports]
    spec: dict[str, Any] = {
        "containers": [container],
        "dnsPolicy": "ClusterFirstWithHostNet" if pod.host_network else "ClusterFirst",
        "enableServiceLinks": True, "nodeName": pod.node, "restartPolicy": "Always",
        "schedulerName": "default-scheduler", "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30}
    if pod.host_network:
        spec["hostNetwork"] = True
    container_id = "containerd://" + _hex(uid)
    image_id = f"registry.example/{pod.workload}@sha256:" + _hex(pod.workload)
    status: dict[str, Any] = {
        "hostIP": node.address, "hostIPs": [{"ip": node.address}],
        "podIP": pod.address, "podIPs": [{"ip": pod.address}], "qosClass": "BestEffort",
        "startTime": k8s_time(created)}
    if pod.finished_ns is None:
        status["phase"] = "Running"
        status["conditions"] = [
            _condition("PodReadyToStartContainers", pod.ready_ns),
            _condition("Initialized", created),
            _condition("Ready", started), _condition("ContainersReady", started),
            _condition("PodScheduled", created)]
        state: dict[str, Any] = {"running": {"startedAt": k8s_time(started)}}
        ready = True
    else:  # evicted: the kubelet killed it; the API keeps it, with its old address
        message = "The node was low on resource: memory. Threshold quantity: 100Mi."
        status.update({"phase": "Failed", "reason": "Evicted", "message": message})
        status["conditions"] = [
            _condition("DisruptionTarget", pod.finished_ns, reason="TerminationByKubelet"),
            _condition("PodReadyToStartContainers", pod.finished_ns, False),
            _condition("Initialized", created),
            _condition("Ready", pod.finished_ns, False, "PodFailed"),
            _condition("ContainersReady", pod.finished_ns, False, "PodFailed"),
            _condition("PodScheduled", created)]
        state = {"terminated": {"containerID": container_id, "exitCode": 137,
                                "finishedAt": k8s_time(pod.finished_ns), "reason": "Error",
                                "startedAt": k8s_time(started)}}
        ready = False
    status["containerStatuses"] = [{
        "containerID": container_id, "image": container["image"], "imageID": image_id,
        "lastState": {}, "name": pod.workload, "ready": ready, "restartCount": 0,
        "started": ready, "state": state}]
    metadata = {
        "creationTimestamp": k8s_time(created), "generateName": pod.name[:-5],
        "labels": labels, "name": pod.name, "namespace": pod.namespace,
        "ownerReferences": [_owner(pod)], "resourceVersion": str(int(uid[:5], 16)),
        "uid": uid}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status}


def _service(service: KubeService, cluster: KubeCluster) -> dict[str, Any]:
    family = "IPv6" if ":" in service.cluster_ip else "IPv4"
    ports = []
    for port in service.ports:
        entry: dict[str, Any] = {"name": port.name, "port": port.port,
                                 "protocol": port.protocol, "targetPort": port.target_port}
        if port.node_port:
            entry["nodePort"] = port.node_port
        ports.append(entry)
    spec: dict[str, Any] = {
        "clusterIP": service.cluster_ip, "clusterIPs": [service.cluster_ip],
        "internalTrafficPolicy": "Cluster", "ipFamilies": [family],
        "ipFamilyPolicy": "SingleStack", "ports": ports, "sessionAffinity": "None",
        "type": service.type}
    if service.app:
        spec["selector"] = {"app": service.app}
    if service.type == "NodePort":
        spec["externalTrafficPolicy"] = "Cluster"
    labels = {"component": "apiserver", "provider": "kubernetes"} if not service.app else \
        {"app": service.app}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {
        "creationTimestamp": k8s_time(cluster.listed_ns - 30 * _DAY_NS), "labels": labels,
        "name": service.name, "namespace": service.namespace,
        "resourceVersion": str(int(_hex(service.name, 5), 16)),
        "uid": _uid(f"{service.namespace}/service/{service.name}")},
        "spec": spec, "status": {"loadBalancer": {}}}


def _slice(service: KubeService, cluster: KubeCluster) -> dict[str, Any]:
    """The Service's EndpointSlice: its ready pods, the target ports resolved by name."""
    pods = cluster.pods_of(service.app) if service.app else []
    endpoints: list[dict[str, Any]] = []
    for pod in pods:
        endpoints.append({
            "addresses": [pod.address],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": pod.node,
            "targetRef": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                          "uid": _uid(f"{pod.namespace}/pod/{pod.name}")}})
    endpoints += [{"addresses": [address], "conditions": {"ready": True}}
                  for address in service.backends]
    ports = []
    for port in service.ports:
        number = port.target_port
        if isinstance(number, str):  # the controller writes the container port's number
            number = next(p for pod in pods for name, p, _ in pod.ports if name == number)
        ports.append({"name": port.name, "port": number, "protocol": port.protocol})
    family = "IPv6" if ":" in service.cluster_ip else "IPv4"
    labels = {"kubernetes.io/service-name": service.name}
    name = service.name
    metadata: dict[str, Any] = {"labels": labels, "namespace": service.namespace}
    if service.app:
        labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
        name = f"{service.name}-{k8s_suffix(service.name + '/slice', 5)}"
        metadata["generateName"] = f"{service.name}-"
        metadata["ownerReferences"] = [{
            "apiVersion": "v1", "blockOwnerDeletion": True, "controller": True,
            "kind": "Service", "name": service.name,
            "uid": _uid(f"{service.namespace}/service/{service.name}")}]
    metadata.update({"creationTimestamp": k8s_time(cluster.listed_ns - _DAY_NS), "generation": 1,
                     "name": name, "resourceVersion": str(int(_hex(name, 5), 16)),
                     "uid": _uid(f"{service.namespace}/endpointslice/{name}")})
    return {"addressType": family, "apiVersion": "discovery.k8s.io/v1", "endpoints": endpoints,
            "kind": "EndpointSlice", "metadata": metadata, "ports": ports}


def _node(node: KubeNode, cluster: KubeCluster) -> dict[str, Any]:
    created = k8s_time(cluster.listed_ns - 40 * _DAY_NS)
    spec: dict[str, Any] = {}
    if node.pod_cidr:
        spec = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]}
    annotations = {"node.alpha.kubernetes.io/ttl": "0",
                   "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                   **node.annotations}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "annotations": annotations, "creationTimestamp": created,
        "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node.name,
                   "kubernetes.io/os": "linux"},
        "name": node.name, "resourceVersion": str(int(_hex(node.name, 5), 16)),
        "uid": _uid(f"node/{node.name}")},
        "spec": spec,
        "status": {
            "addresses": [{"address": node.address, "type": "InternalIP"},
                          {"address": node.name, "type": "Hostname"}],
            "conditions": [{"lastHeartbeatTime": created, "lastTransitionTime": created,
                            "message": "kubelet is posting ready status",
                            "reason": "KubeletReady", "status": "True", "type": "Ready"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "",
                         "containerRuntimeVersion": "containerd://1.7.24",
                         "kernelVersion": "6.1.0-28-amd64", "kubeProxyVersion": "v1.31.4",
                         "kubeletVersion": "v1.31.4", "machineID": "",
                         "operatingSystem": "linux",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": ""}}}


# -- docker ----------------------------------------------------------------------------------


def docker_inspect(host: DockerHost) -> list[dict[str, Any]]:
    """``docker inspect`` of every container, then of the ``bridge`` network."""
    return [*(_container(c, host) for c in host.containers), _bridge(host)]


def _mac(address: str) -> str:
    """Docker ≤ 27 derives a container's MAC from its IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def _container(c: DockerContainer, host: DockerHost) -> dict[str, Any]:
    cid, network_id = _hex("container/" + c.name), _hex("network/bridge")
    endpoint = _hex("endpoint/" + c.name)
    prefix = ipaddress.ip_network(host.subnet).prefixlen
    ports = {f"{port}/{proto.lower()}": [{"HostIp": "0.0.0.0", "HostPort": str(host_port)},
                                          {"HostIp": "::", "HostPort": str(host_port)}]
             for port, proto, host_port in c.published}
    bindings = {f"{port}/{proto.lower()}": [{"HostIp": "", "HostPort": str(host_port)}]
                for port, proto, host_port in c.published}
    exposed = {f"{port}/{proto.lower()}": {} for port, proto, _ in c.published} or None
    network = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": network_id,
               "EndpointID": endpoint, "Gateway": host.gateway, "IPAddress": c.address,
               "IPPrefixLen": prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
               "GlobalIPv6PrefixLen": 0, "MacAddress": _mac(c.address), "DriverOpts": None}
    return {
        "Id": cid, "Created": docker_time(c.started_ns - 1_250_000_000),
        "Path": "/docker-entrypoint.sh", "Args": [],
        "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 4000 + int(cid[:3], 16) % 50000,
                  "ExitCode": 0, "Error": "", "StartedAt": docker_time(c.started_ns),
                  "FinishedAt": "0001-01-01T00:00:00Z"},
        "Image": "sha256:" + _hex("image/" + c.image),
        "Name": "/" + c.name, "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
        "HostConfig": {"NetworkMode": "default", "PortBindings": bindings,
                       "PublishAllPorts": False, "RestartPolicy": {"Name": "no",
                                                                   "MaximumRetryCount": 0}},
        "Config": {"Hostname": cid[:12], "ExposedPorts": exposed, "Image": c.image,
                   "Labels": {}},
        "NetworkSettings": {
            "Bridge": "", "SandboxID": _hex("sandbox/" + c.name), "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
            "SandboxKey": "/var/run/docker/netns/" + _hex("sandbox/" + c.name, 12),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": endpoint, "Gateway": host.gateway, "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": c.address, "IPPrefixLen": prefix,
            "IPv6Gateway": "", "MacAddress": _mac(c.address),
            "Networks": {"bridge": network}}}


def _bridge(host: DockerHost) -> dict[str, Any]:
    prefix = ipaddress.ip_network(host.subnet).prefixlen
    first_start = min((c.started_ns for c in host.containers), default=0)
    return {
        "Name": "bridge", "Id": _hex("network/bridge"),
        "Created": docker_time(first_start - _DAY_NS), "Scope": "local", "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": host.subnet, "Gateway": host.gateway}]},
        "Internal": False, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {_hex("container/" + c.name): {
            "Name": c.name, "EndpointID": _hex("endpoint/" + c.name),
            "MacAddress": _mac(c.address), "IPv4Address": f"{c.address}/{prefix}",
            "IPv6Address": ""} for c in host.containers},
        "Options": {"com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    "com.docker.network.bridge.name": host.bridge,
                    "com.docker.network.driver.mtu": "1500"},
        "Labels": {}}
