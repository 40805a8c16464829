"""Bundles for tests that need no root: a generated scenario's captures laid out as the nodes'
``pktkit collect`` bundles, with each node's ``ip link``/``ip addr`` written from the
scenario's own interfaces (``capture-set.json``: name and ifindex) and addresses."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from pktkit.capture.bundle import BUNDLE_FORMAT, FORMAT_VERSION


def bundle_json(node: str, captures: list[tuple[str, str]]) -> dict[str, Any]:
    """A minimal bundle.json: the keys a reader needs (the collector writes many more)."""
    return {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, "node": node,
            "captures": [{"file": f, "interface": i, "linktype": "LINUX_SLL2" if i == "any"
                          else "EN10MB"} for f, i in captures]}


def make_bundles(generated: Path, out: Path, *,
                 devices: dict[tuple[str, str], dict[str, Any]] | None = None,
                 fdb: dict[str, dict[str, str]] | None = None,
                 addresses: dict[str, list[str]] | None = None,
                 conntrack: dict[str, str] | None = None) -> dict[str, Path]:
    """One bundle folder per node of the generated folder ``generated`` (its capture-set.json
    says which file is whose): the captures copied, ``end/ip-link.json`` from the interfaces
    (``devices``: (node, device) → more ``ip -j link`` keys, e.g. ``address``, ``master``),
    ``end/bridge-fdb.json`` from ``fdb`` (node → MAC → port), ``end/ip-addr.json`` from
    ``addresses`` and ``end/conntrack.txt`` from ``conntrack``. No capture-set.json: the
    bundle alone names."""
    manifest = json.loads((generated / "capture-set.json").read_text())
    nodes: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        nodes.setdefault(entry["node"], []).append(entry)
    made = {}
    for node, entries in nodes.items():
        folder = out / node
        (folder / "end").mkdir(parents=True)
        links: dict[int, dict[str, Any]] = {1: {"ifindex": 1, "ifname": "lo"}}
        captures = []
        for entry in entries:
            shutil.copyfile(generated / entry["file"], folder / entry["file"])
            many = len(entry["interfaces"]) > 1 or entry["file"].endswith(("-any.pcap",
                                                                         "-any.pcapng"))
            captures.append((entry["file"], "any" if many else entry["interfaces"][0]["name"]))
            for iface in entry["interfaces"]:
                links[iface["ifindex"]] = {"ifindex": iface["ifindex"], "ifname": iface["name"],
                                           "link_type": "ether",
                                           **(devices or {}).get((node, iface["name"]), {})}
        (folder / "bundle.json").write_text(json.dumps(bundle_json(node, captures)))
        (folder / "end" / "ip-link.json").write_text(json.dumps(list(links.values())))
        addr = [{"ifindex": 2, "ifname": "eth0", "addr_info": [
            {"family": "inet", "local": a, "prefixlen": 24, "scope": "global"}
            for a in (addresses or {}).get(node, [])]}]
        (folder / "end" / "ip-addr.json").write_text(json.dumps(addr))
        entries = [{"mac": mac, "ifname": port, "master": "bridge", "state": "static"}
                   for mac, port in (fdb or {}).get(node, {}).items()]
        (folder / "end" / "bridge-fdb.json").write_text(json.dumps(entries))
        if conntrack and node in conntrack:
            (folder / "end" / "conntrack.txt").write_text(conntrack[node])
        made[node] = folder
    return made


def tarball(folder: Path, out: Path) -> Path:
    """``folder`` as ``out`` (.tar.gz), the folder's name as its one top folder, as pktkit
    collect --out NAME.tar.gz writes it."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=out.name.removesuffix(".tar.gz"))
    return out
