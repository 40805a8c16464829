"""What a scenario runs, by name: nodes, pods and Services (Kubernetes), containers (Docker).

A scenario that stands for a Kubernetes cluster or a Docker host describes it here; from the
description :mod:`~pktkit.craft.metadata` writes ``kubectl.json`` / ``docker.json`` in the
real API shapes, and :meth:`Inventory.names` states the ground truth of names written into
``truth.json``: which name each address (and port) has, and when. The analyzer never sees
this module: it reads only the JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

# the alphabet of Kubernetes' generated name suffixes (k8s.io/apimachinery util/rand)
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PROTOCOLS = {"TCP": 6, "UDP": 17}


def k8s_suffix(seed: str, length: int) -> str:
    """A generated-name suffix (pod names, pod-template-hash), fixed by ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:length])


@dataclass(frozen=True)
class NameTruth:
    """An address (and port) has ``name`` from ``from_ns`` until ``to_ns`` (exclusive; None:
    unbounded): the truth the analyzer's names are checked against."""

    address: str
    port: int | None
    proto: int | None
    name: str
    from_ns: int | None = None
    to_ns: int | None = None


@dataclass(frozen=True)
class KubeNode:
    name: str
    address: str  # InternalIP
    pod_cidr: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KubePod:
    """A pod of a workload (``Deployment``, ``DaemonSet``) on a node. ``ready_ns``: its
    sandbox (and address) came up; ``finished_ns``: it was evicted then (still listed, as
    kubectl lists evicted pods, with its old address)."""

    namespace: str
    workload_kind: str
    workload: str
    node: str
    address: str
    ready_ns: int
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, containerPort, protocol)
    host_network: bool = False
    finished_ns: int | None = None
    replica: int = 0  # tells apart the pods of one workload

    @property
    def template_hash(self) -> str:
        return k8s_suffix(f"{self.namespace}/{self.workload}/template", 10)

    @property
    def name(self) -> str:
        suffix = k8s_suffix(f"{self.namespace}/{self.workload}/{self.replica}", 5)
        if self.workload_kind == "Deployment":
            return f"{self.workload}-{self.template_hash}-{suffix}"
        return f"{self.workload}-{suffix}"

    @property
    def app(self) -> str:
        return self.workload


@dataclass(frozen=True)
class KubeServicePort:
    name: str
    port: int
    target_port: int | str  # a number, or a container port's name
    protocol: str = "TCP"
    node_port: int | None = None


@dataclass(frozen=True)
class KubeService:
    """A Service selecting the pods of app ``app``."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[KubeServicePort, ...]
    app: str | None
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    backends: tuple[str, ...] = ()  # node addresses of a selectorless Service (the API server)


@dataclass(frozen=True)
class KubeCluster:
    nodes: tuple[KubeNode, ...]
    pods: tuple[KubePod, ...]
    services: tuple[KubeService, ...]
    listed_ns: int  # when kubectl ran (after the capture)

    def names(self) -> list[NameTruth]:
        truth = [NameTruth(n.address, None, None, f"node:{n.name}") for n in self.nodes]
        for pod in self.pods:
            if not pod.host_network:  # its address is its node's
                truth.append(NameTruth(pod.address, None, None,
                                       f"pod:{pod.namespace}/{pod.name}", pod.ready_ns,
                                       pod.finished_ns))
        for service in self.services:
            base = f"service:{service.namespace}/{service.name}"
            truth.append(NameTruth(service.cluster_ip, None, None, base))
            for port in service.ports:
                proto = PROTOCOLS[port.protocol]
                truth.append(NameTruth(service.cluster_ip, port.port, proto,
                                       f"{base}:{port.port}"))
                if port.node_port:
                    truth += [NameTruth(n.address, port.node_port, proto,
                                        f"{base}:{port.port}") for n in self.nodes]
        return truth

    def pods_of(self, app: str | None) -> list[KubePod]:
        """The pods a Service selects: app ``app``, not evicted."""
        return [p for p in self.pods if p.app == app and p.finished_ns is None]


@dataclass(frozen=True)
class DockerContainer:
    """A container on the default bridge; ``published``: (container port, protocol, host
    port) for ``docker run -p HOST:CONTAINER``."""

    name: str
    address: str
    image: str
    started_ns: int
    published: tuple[tuple[int, str, int], ...] = ()


@dataclass(frozen=True)
class DockerHost:
    subnet: str
    gateway: str
    bridge: str  # the host's device (docker0)
    containers: tuple[DockerContainer, ...]
    host_address: str  # where published ports are reached (eth0)

    def names(self) -> list[NameTruth]:
        truth = []
        for c in self.containers:
            truth.append(NameTruth(c.address, None, None, f"container:{c.name}", c.started_ns))
            truth += [NameTruth(self.host_address, host_port, PROTOCOLS[proto],
                                f"container:{c.name}", c.started_ns)
                      for _, proto, host_port in c.published]
        return truth


Inventory = KubeCluster | DockerHost
