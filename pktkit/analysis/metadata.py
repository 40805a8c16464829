"""Cluster and container metadata: ``kubectl ... -o json`` and ``docker inspect`` → typed records.

``--k8s FILE`` takes what ``kubectl get pods,services,endpointslices,nodes -A -o json`` prints:
one ``List`` whose items carry their own ``kind``, or a typed list of the raw API
(``PodList`` ..., items without ``kind``), a single object (``kubectl get pod NAME -o json``),
a watch stream (objects one after another), or several of these concatenated (snapshots taken
at different times, ``cat t0.json t1.json``). Pods, Services, EndpointSlices and Nodes are read;
ReplicaSets and Jobs, when present, prove an owner chain; other kinds are skipped.

``--docker FILE`` takes ``docker inspect`` output (a JSON array; containers, networks and images
may be mixed, as ``docker inspect web bridge`` prints them) and ``docker network inspect``
output, or both concatenated.

A source is a path or a file-like object (binary or text; its ``name`` names it in errors), so
that files inside a bundle read alike. A file that is not what was asked for (YAML, a
truncated file, kubectl's stderr mixed in, ``kubectl get configmaps``, docker output given to
``--k8s``) raises :class:`~pktkit.errors.MetadataError`: one line naming the file and what to
run instead.

Time bounds of a pod's addresses (``PodRecord.start_ns``/``end_ns``): from the
``PodReadyToStartContainers`` condition becoming true (the sandbox, and so the address, is
configured), else the earliest container start, else ``status.startTime``, else the creation
time; until, for a pod that has terminated (``Succeeded``/``Failed``, e.g. evicted: kubectl
still shows its old ``podIP``), ``PodReadyToStartContainers`` becoming false, else its last
container's ``finishedAt``, else ``Ready`` becoming false; for a pod being deleted, its
``deletionTimestamp``. Kubernetes writes these times to the second, truncated, so an end time
covers its whole second. A pod seen in several snapshots (same ``uid``) is one record: its
earliest start, its latest state. Docker's times have nanoseconds: a container holds its
addresses from ``State.StartedAt`` until ``State.FinishedAt`` when it is not running.

Owners: the controlling ``ownerReference``. A ReplicaSet named ``<name>-<pod-template-hash>``
is the Deployment ``<name>`` (or what the ReplicaSet's own ownerReference says, when
ReplicaSets are given); a Job owned by a CronJob (Jobs given) is that CronJob. The workload is
written ``kind:NAMESPACE/NAME`` in lower case, e.g. ``deployment:default/web``.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pktkit.errors import MetadataError

Source = str | os.PathLike[str] | IO[bytes] | IO[str]

PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
K8S_KINDS = ("Pod", "Service", "EndpointSlice", "Node")
_OWNER_KINDS = ("ReplicaSet", "Job")  # read only to follow a pod's owner one step further
KUBECTL_HINT = ("give the output of `kubectl get pods,services,endpointslices,nodes -A -o "
                "json`")
DOCKER_HINT = ("give the output of `docker inspect CONTAINER...` and `docker network inspect "
               "NETWORK...`")
_SECOND_NS = 10**9
_NO_TIME = "0001-01-01T00:00:00Z"  # Docker's "never" (FinishedAt of a running container)
_TIME = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortRecord:
    """A container port a pod declares (``spec.containers[].ports[]``)."""

    name: str | None
    port: int
    protocol: int  # IP protocol number: 6 TCP, 17 UDP, 132 SCTP
    host_port: int | None = None


@dataclass(frozen=True)
class PodRecord:
    """A pod: its addresses and when it held them (see the module docstring)."""

    namespace: str
    name: str
    uid: str
    node: str | None
    addresses: tuple[str, ...]
    host_addresses: tuple[str, ...]  # status.hostIPs: its node's addresses
    host_network: bool
    workload: str | None
    ports: tuple[PortRecord, ...]
    start_ns: int | None
    end_ns: int | None  # exclusive; None: still holds them
    terminal: bool
    source: str


@dataclass(frozen=True)
class ServicePortRecord:
    name: str | None
    protocol: int
    port: int
    target_port: int | str  # a number, or the name of a container port
    node_port: int | None


@dataclass(frozen=True)
class ServiceRecord:
    """A Service and the addresses it answers on: cluster IPs (not for headless Services),
    external IPs and load-balancer ingress IPs."""

    namespace: str
    name: str
    type: str
    cluster_addresses: tuple[str, ...]
    external_addresses: tuple[str, ...]
    ports: tuple[ServicePortRecord, ...]
    source: str


@dataclass(frozen=True)
class EndpointRecord:
    """One address of an EndpointSlice: a Service's backend and the ports it serves on (the
    resolved numbers of the Service's ports, by port name)."""

    namespace: str
    service: str
    address: str
    pod: str | None  # NAMESPACE/NAME of targetRef when it is a Pod
    node: str | None
    ports: tuple[tuple[str, int, int], ...]  # (port name, port, protocol)
    source: str


@dataclass(frozen=True)
class NodeRecord:
    """A node and the addresses it owns: InternalIP/ExternalIP, and the addresses CNI
    annotations name (flannel's public IP, Calico's node and tunnel addresses)."""

    name: str
    addresses: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class PublishedPort:
    """A published container port: ``host_address`` None for every host address (Docker's
    ``""``, ``0.0.0.0`` and ``::``)."""

    container_port: int
    protocol: int
    host_address: str | None
    host_port: int


@dataclass(frozen=True)
class ContainerRecord:
    """A Docker container: its addresses on every network and when it held them."""

    id: str
    name: str
    addresses: tuple[str, ...]
    networks: tuple[str, ...]
    published: tuple[PublishedPort, ...]
    start_ns: int | None
    end_ns: int | None
    source: str


@dataclass(frozen=True)
class NetworkRecord:
    """A Docker network and the containers ``docker network inspect`` lists on it."""

    id: str
    name: str
    driver: str
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    bridge: str | None  # the host's bridge device (docker0, br-<id>)
    members: tuple[tuple[str, str, tuple[str, ...]], ...]  # (container id, name, addresses)
    source: str


@dataclass
class Metadata:
    """Everything read from the metadata files, merged."""

    pods: list[PodRecord] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    endpoints: list[EndpointRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    containers: list[ContainerRecord] = field(default_factory=list)
    networks: list[NetworkRecord] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def extend(self, other: Metadata) -> Metadata:
        """Both sets of records: pods seen in both (same uid) merged, the rest side by side."""
        merged = Metadata(*(getattr(self, name) + getattr(other, name) for name in (
            "pods", "services", "endpoints", "nodes", "containers", "networks", "sources")))
        merged.pods = _merge_pods(merged.pods)
        return merged


# -- reading ---------------------------------------------------------------------------------


def read_metadata(k8s: Iterable[Source] = (), docker: Iterable[Source] = ()) -> Metadata:
    """All the given kubectl and docker files as one :class:`Metadata`."""
    found = Metadata()
    for source in k8s:
        found = found.extend(read_kubectl(source))
    for source in docker:
        found = found.extend(read_docker(source))
    return found


def source_name(source: Source) -> str:
    """How a source is named in messages: its path, or the file object's ``name``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<stream>"))


def _text(source: Source, option: str) -> str:
    name = source_name(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            data: bytes | str = Path(source).read_bytes()
        else:
            data = source.read()
    except OSError as exc:
        raise MetadataError(f"{option} {name}: cannot read it ({exc.strerror or exc})") from None
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MetadataError(f"{option} {name}: not text (not JSON at all); {_hint(option)}"
                                ) from None
    return data.lstrip("\ufeff")


def _hint(option: str) -> str:
    return KUBECTL_HINT if option == "--k8s" else DOCKER_HINT


def _documents(text: str, name: str, option: str) -> list[Any]:
    """The JSON documents of a file, one after another (one, usually)."""
    decoder = json.JSONDecoder()
    documents, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        if text[at] not in "{[":
            raise MetadataError(f"{option} {name}: {_not_json(text, at)}; {_hint(option)}")
        try:
            document, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            what = ("ends before the JSON does (a truncated file?)"
                    if _unclosed(text, at) else f"is not valid JSON at {where} ({exc.msg})")
            raise MetadataError(f"{option} {name}: {what}; {_hint(option)}") from None
        documents.append(document)
    if not documents:
        raise MetadataError(f"{option} {name}: the file is empty; {_hint(option)}")
    return documents


def _unclosed(text: str, start: int) -> bool:
    """Whether the document from ``start`` is still open at the end of the text: its brackets
    (outside strings) never close. Only run on a file that failed to parse."""
    depth, in_string, escaped = 0, False, False
    for char in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return False
    return True


def _not_json(text: str, at: int) -> str:
    line_number = text.count("\n", 0, at) + 1
    line = text[at:].split("\n", 1)[0].strip()
    if re.match(r"(---|apiVersion:|kind:|items:|metadata:|- )", line):
        return "looks like YAML (kubectl -o yaml); re-run with -o json"
    if re.match(r"(Warning|error|Error|No resources found)\b", line):
        return (f"line {line_number} is a message, not JSON ({line[:60]!r}: stderr mixed "
                "in?); keep only the command's standard output")
    return f"line {line_number} is not JSON ({line[:40]!r})"


# -- kubectl ---------------------------------------------------------------------------------


def read_kubectl(source: Source) -> Metadata:
    """One ``--k8s`` file (see the module docstring)."""
    name = source_name(source)
    documents = _documents(_text(source, "--k8s"), name, "--k8s")
    objects: list[tuple[str, dict[str, Any]]] = []
    found: Counter[str] = Counter()
    for document in documents:
        for kind, item in _k8s_items(document, name):
            found[kind] += 1
            objects.append((kind, item))
    if not any(found[kind] for kind in K8S_KINDS):
        if not found:
            raise MetadataError(f"--k8s {name}: an empty List (kubectl found no resources: "
                                "wrong context or namespace?); " + KUBECTL_HINT)
        kinds = ", ".join(f"{kind} ×{count}" for kind, count in found.most_common(5))
        raise MetadataError(f"--k8s {name}: no Pod, Service, EndpointSlice or Node in it "
                            f"(found {kinds}); " + KUBECTL_HINT)
    owners = {(_meta(item).get("namespace"), _meta(item).get("name"), kind): item
              for kind, item in objects if kind in _OWNER_KINDS}
    found_records = Metadata(sources=[name])
    try:
        for kind, item in objects:
            if kind == "Pod":
                found_records.pods.append(_pod(item, owners, name))
            elif kind == "Service":
                found_records.services.append(_service(item, name))
            elif kind == "EndpointSlice":
                found_records.endpoints.extend(_endpoints(item, name))
            elif kind == "Node":
                found_records.nodes.append(_node(item, name))
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise MetadataError(f"--k8s {name}: a {kind} is not in the shape of the Kubernetes "
                            f"API ({_object_name(item)}: {exc}); " + KUBECTL_HINT) from None
    found_records.pods = _merge_pods(found_records.pods)
    return found_records


def _k8s_items(document: Any, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object) of every object in one document: a List or typed list, one object, or a
    watch event."""
    if isinstance(document, list):
        raise MetadataError(f"--k8s {name}: a JSON array (docker inspect output?), not kubectl "
                            "output; give it to --docker, or " + KUBECTL_HINT)
    if not isinstance(document, dict):
        raise MetadataError(f"--k8s {name}: not a Kubernetes object; " + KUBECTL_HINT)
    if "object" in document and "type" in document:  # kubectl get -w --output-watch-events
        yield from _k8s_items(document["object"], name)
        return
    kind = document.get("kind")
    if isinstance(document.get("items"), list):
        item_kind = kind[:-4] if isinstance(kind, str) and kind.endswith("List") \
            and kind != "List" else None
        for item in document["items"]:
            if isinstance(item, dict):
                yield str(item.get("kind") or item_kind or "?"), item
        return
    if not isinstance(kind, str) or not isinstance(document.get("metadata"), dict):
        if "Id" in document or "NetworkSettings" in document:
            raise MetadataError(f"--k8s {name}: docker inspect output, not kubectl output; "
                                "give it to --docker, or " + KUBECTL_HINT)
        raise MetadataError(f"--k8s {name}: a JSON object without kind and metadata, not "
                            "kubectl output; " + KUBECTL_HINT)
    yield kind, document


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    meta = item.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _object_name(item: dict[str, Any]) -> str:
    meta = _meta(item)
    return "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x) or "?"


def _list(value: Any) -> list[Any]:
    """A list the API may print as null or leave out."""
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def normal_address(text: Any) -> str | None:
    """An IP address in its canonical text (``::`` compressed, no zone), None if it is none."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return ipaddress.ip_address(text.split("/")[0].split("%")[0]).compressed
    except ValueError:
        return None


def _addresses(values: Iterable[Any]) -> tuple[str, ...]:
    found = (normal_address(v) for v in values)
    return tuple(dict.fromkeys(a for a in found if a is not None))


def parse_time(text: Any) -> int | None:
    """An RFC 3339 time (``2026-01-15T10:00:00Z``, fractions of any length, an offset) in ns
    since the epoch; None for null, "" and Docker's ``0001-01-01T00:00:00Z``."""
    if not isinstance(text, str) or not text or text == _NO_TIME:
        return None
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"time {text!r} is not RFC 3339")
    whole, fraction, zone = match.groups()
    zone = zone or "Z"
    stamp = datetime.fromisoformat(whole.replace(" ", "T") + ("+00:00" if zone == "Z" else zone))
    if stamp.year < 1970:
        return None
    seconds = int((stamp - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * _SECOND_NS + int((fraction or "0")[:9].ljust(9, "0"))


def _condition(status: dict[str, Any], kind: str, value: str) -> int | None:
    for condition in _list(status.get("conditions")):
        if isinstance(condition, dict) and condition.get("type") == kind \
                and condition.get("status") == value:
            return parse_time(condition.get("lastTransitionTime"))
    return None


def _container_states(status: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for container in _list(status.get(key)):
            if isinstance(container, dict):
                for state in (container.get("state"), container.get("lastState")):
                    for value in _dict(state).values():
                        if isinstance(value, dict):
                            yield value


def _pod_times(meta: dict[str, Any], status: dict[str, Any], terminal: bool
               ) -> tuple[int | None, int | None]:
    """When the pod held its addresses (module docstring); ends are exclusive and cover the
    second they are written to."""
    states = list(_container_states(status))
    started = [t for t in (parse_time(s.get("startedAt")) for s in states) if t is not None]
    start = _condition(status, "PodReadyToStartContainers", "True")
    if start is None:
        start = min(started) if started else None
    if start is None:
        start = parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp"))
    end = None
    if terminal:
        finished = [t for t in (parse_time(s.get("finishedAt")) for s in states) if t is not None]
        end = _condition(status, "PodReadyToStartContainers", "False")
        if end is None:
            end = max(finished) if finished else _condition(status, "Ready", "False")
    deleting = parse_time(meta.get("deletionTimestamp"))
    if deleting is not None:
        end = deleting if end is None else min(end, deleting)
    return start, None if end is None else end + _SECOND_NS


def _workload(meta: dict[str, Any], owners: dict[tuple[Any, Any, str], dict[str, Any]]
              ) -> str | None:
    """``kind:NAMESPACE/NAME`` of the pod's controller, one step further for ReplicaSets and
    Jobs (module docstring); None for a bare pod."""
    refs = [r for r in _list(meta.get("ownerReferences")) if isinstance(r, dict)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None or not ref.get("kind") or not ref.get("name"):
        return None
    namespace = meta.get("namespace") or "default"
    kind, name = str(ref["kind"]), str(ref["name"])
    owner = owners.get((namespace, name, kind))
    if owner is not None:  # the owner's own controller proves the chain
        up = _workload(_meta(owner), {})
        if up is not None:
            return up
    if kind == "ReplicaSet":
        template_hash = _dict(meta.get("labels")).get("pod-template-hash")
        if template_hash and name.endswith("-" + template_hash):
            return f"deployment:{namespace}/{name[: -len(template_hash) - 1]}"
    if kind == "Node":  # a static pod's mirror
        return f"node:{name}"
    return f"{kind.lower()}:{namespace}/{name}"


def _pod(item: dict[str, Any], owners: dict[tuple[Any, Any, str], dict[str, Any]],
         source: str) -> PodRecord:
    meta, spec, status = _meta(item), _dict(item.get("spec")), _dict(item.get("status"))
    terminal = status.get("phase") in ("Succeeded", "Failed")
    start, end = _pod_times(meta, status, terminal)
    ports = []
    for key in ("initContainers", "containers"):
        for container in _list(spec.get(key)):
            for port in _list(_dict(container).get("ports")):
                port = _dict(port)
                if isinstance(port.get("containerPort"), int):
                    ports.append(PortRecord(port.get("name") or None, port["containerPort"],
                                            PROTOCOLS.get(port.get("protocol") or "TCP", 6),
                                            port.get("hostPort") or None))
    addresses = _addresses([*(_dict(p).get("ip") for p in _list(status.get("podIPs"))),
                            status.get("podIP")])
    hosts = _addresses([*(_dict(p).get("ip") for p in _list(status.get("hostIPs"))),
                        status.get("hostIP")])
    return PodRecord(
        namespace=str(meta.get("namespace") or "default"), name=str(meta["name"]),
        uid=str(meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}"),
        node=spec.get("nodeName") or None, addresses=addresses, host_addresses=hosts,
        host_network=bool(spec.get("hostNetwork")), workload=_workload(meta, owners),
        ports=tuple(dict.fromkeys(ports)), start_ns=start, end_ns=end, terminal=terminal,
        source=source)


def _merge_pods(pods: list[PodRecord]) -> list[PodRecord]:
    """One record per uid: the latest listed (its state is the newest), with the earliest
    start any snapshot showed (a terminated pod no longer shows when its sandbox came up)."""
    latest: dict[str, PodRecord] = {}
    for pod in pods:
        before = latest.get(pod.uid)
        if before is not None:
            starts = [t for t in (before.start_ns, pod.start_ns) if t is not None]
            pod = replace(pod, start_ns=min(starts) if starts else None,
                          addresses=pod.addresses or before.addresses,
                          end_ns=pod.end_ns if pod.end_ns is not None else before.end_ns)
            del latest[pod.uid]  # re-inserted last: the order of the newest snapshot
        latest[pod.uid] = pod
    return list(latest.values())


def _service(item: dict[str, Any], source: str) -> ServiceRecord:
    meta, spec = _meta(item), _dict(item.get("spec"))
    kind = str(spec.get("type") or "ClusterIP")
    cluster = [] if kind == "ExternalName" else [*_list(spec.get("clusterIPs")),
                                                   spec.get("clusterIP")]
    ingress = [_dict(i).get("ip") for i in _list(_dict(_dict(item.get("status")).get(
        "loadBalancer")).get("ingress"))]
    ports = []
    for port in _list(spec.get("ports")):
        port = _dict(port)
        if not isinstance(port.get("port"), int):
            continue
        target = port.get("targetPort")
        ports.append(ServicePortRecord(
            port.get("name") or None, PROTOCOLS.get(port.get("protocol") or "TCP", 6),
            port["port"], target if isinstance(target, (int, str)) and target != ""
            else port["port"], port.get("nodePort") or None))
    return ServiceRecord(str(meta.get("namespace") or "default"), str(meta["name"]), kind,
                         _addresses(c for c in cluster if c != "None"),
                         _addresses([*_list(spec.get("externalIPs")), *ingress]), tuple(ports),
                         source)


def _endpoints(item: dict[str, Any], source: str) -> list[EndpointRecord]:
    meta = _meta(item)
    if item.get("addressType") == "FQDN":
        return []
    namespace = str(meta.get("namespace") or "default")
    service = _dict(meta.get("labels")).get("kubernetes.io/service-name")
    if not service:  # legacy v1beta1 / hand-made slices: the owner names the Service
        service = next((r.get("name") for r in _list(meta.get("ownerReferences"))
                        if _dict(r).get("kind") == "Service"), None)
    if not service:
        return []
    ports = tuple((str(p.get("name") or ""), p["port"],
                   PROTOCOLS.get(p.get("protocol") or "TCP", 6))
                  for p in map(_dict, _list(item.get("ports"))) if isinstance(p.get("port"), int))
    found = []
    for endpoint in map(_dict, _list(item.get("endpoints"))):
        ref = _dict(endpoint.get("targetRef"))
        pod = (f"{ref.get('namespace') or namespace}/{ref['name']}"
               if ref.get("kind") == "Pod" and ref.get("name") else None)
        for address in _addresses(_list(endpoint.get("addresses"))):
            found.append(EndpointRecord(namespace, str(service), address, pod,
                                        endpoint.get("nodeName") or None, ports, source))
    return found


def _node(item: dict[str, Any], source: str) -> NodeRecord:
    meta, spec = _meta(item), _dict(item.get("spec"))
    listed = [_dict(a).get("address") for a in _list(_dict(item.get("status")).get("addresses"))
              if _dict(a).get("type") in ("InternalIP", "ExternalIP")]
    notes = _dict(meta.get("annotations"))
    annotated = [value for key, value in notes.items() if key in (
        "flannel.alpha.coreos.com/public-ip", "flannel.alpha.coreos.com/public-ipv6",
        "projectcalico.org/IPv4Address", "projectcalico.org/IPv6Address",
        "projectcalico.org/IPv4VXLANTunnelAddr", "projectcalico.org/IPv6VXLANTunnelAddr",
        "projectcalico.org/IPv4IPIPTunnelAddr", "projectcalico.org/IPv4WireguardInterfaceAddr",
        "k3s.io/internal-ip", "alpha.kubernetes.io/provided-node-ip")]
    annotated = [part for value in annotated if isinstance(value, str)
                 for part in value.split(",")]
    cidrs = [c for c in [*_list(spec.get("podCIDRs")), spec.get("podCIDR")]
             if isinstance(c, str) and c]
    return NodeRecord(str(meta["name"]), _addresses([*listed, *annotated]),
                      tuple(dict.fromkeys(cidrs)), source)


# -- docker ----------------------------------------------------------------------------------


def read_docker(source: Source) -> Metadata:
    """One ``--docker`` file (see the module docstring)."""
    name = source_name(source)
    documents = _documents(_text(source, "--docker"), name, "--docker")
    found = Metadata(sources=[name])
    others: Counter[str] = Counter()
    for document in documents:
        if isinstance(document, dict) and ("items" in document or "apiVersion" in document):
            raise MetadataError(f"--docker {name}: kubectl output, not docker inspect output; "
                                "give it to --k8s, or " + DOCKER_HINT)
        for item in document if isinstance(document, list) else [document]:
            if not isinstance(item, dict):
                others["not an object"] += 1
                continue
            try:
                if "State" in item and "Config" in item:
                    found.containers.append(_container(item, name))
                elif "IPAM" in item and "Driver" in item:
                    found.networks.append(_network(item, name))
                else:
                    others["image" if "RepoTags" in item or "RootFS" in item else "other"] += 1
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise MetadataError(f"--docker {name}: an object is not in the shape of docker "
                                    f"inspect ({item.get('Name', '?')}: {exc}); " + DOCKER_HINT
                                    ) from None
    if not found.containers and not found.networks:
        what = ", ".join(f"{k} ×{v}" for k, v in others.items()) or "nothing"
        raise MetadataError(f"--docker {name}: no container or network in it (found {what}); "
                            + DOCKER_HINT)
    return found


def _wildcard(host: Any) -> bool:
    return host in (None, "", "0.0.0.0", "::")


def _published(ports: dict[str, Any]) -> tuple[PublishedPort, ...]:
    found = []
    for key, bindings in ports.items():
        number, _, protocol = str(key).partition("/")
        for binding in _list(bindings):
            binding = _dict(binding)
            host_port = str(binding.get("HostPort") or "")
            if number.isdigit() and host_port.isdigit():
                host = binding.get("HostIp")
                found.append(PublishedPort(int(number), PROTOCOLS.get(protocol.upper() or "TCP",
                                                                      6),
                                           None if _wildcard(host) else normal_address(host),
                                           int(host_port)))
    return tuple(dict.fromkeys(found))  # 0.0.0.0 and :: are one wildcard


def _container(item: dict[str, Any], source: str) -> ContainerRecord:
    state, settings = _dict(item.get("State")), _dict(item.get("NetworkSettings"))
    networks = _dict(settings.get("Networks"))
    addresses = _addresses([value for endpoint in networks.values() for value in (
        _dict(endpoint).get("IPAddress"), _dict(endpoint).get("GlobalIPv6Address"))]
        + [settings.get("IPAddress"), settings.get("GlobalIPv6Address")])
    ports = _dict(settings.get("Ports")) or _dict(_dict(item.get("HostConfig")).get(
        "PortBindings"))
    start = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt"))
    running = bool(state.get("Running")) or state.get("Status") in ("running", "paused")
    end = None if running or finished is None or (start is not None and finished < start) \
        else finished
    return ContainerRecord(str(item.get("Id") or ""), str(item["Name"]).lstrip("/"), addresses,
                           tuple(networks), _published(ports), start, end, source)


def _network(item: dict[str, Any], source: str) -> NetworkRecord:
    configs = [_dict(c) for c in _list(_dict(item.get("IPAM")).get("Config"))]
    options = _dict(item.get("Options"))
    bridge = options.get("com.docker.network.bridge.name")
    if not bridge and item.get("Driver") == "bridge" and item.get("Id"):
        bridge = "br-" + str(item["Id"])[:12]
    members = tuple(
        (str(key), str(_dict(value).get("Name", "")).lstrip("/"),
         _addresses([_dict(value).get("IPv4Address"), _dict(value).get("IPv6Address")]))
        for key, value in _dict(item.get("Containers")).items())
    return NetworkRecord(str(item.get("Id") or ""), str(item["Name"]), str(item["Driver"]),
                         tuple(str(c["Subnet"]) for c in configs if c.get("Subnet")),
                         _addresses(c.get("Gateway") for c in configs), bridge or None,
                         members, source)


def from_bytes(data: bytes, name: str) -> IO[bytes]:
    """A named in-memory source (e.g. a file inside a bundle)."""
    stream = io.BytesIO(data)
    stream.name = name  # type: ignore[attr-defined]
    return stream
