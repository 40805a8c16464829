"""Reading a ``pktkit lab`` run in the tests, independently of pktkit's own readers: the files
with :mod:`oracle` (plain struct code) and tshark, the markers with a regular expression."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from oracle import Record, read_capture, tshark_path

CLI = [sys.executable, "-m", "pktkit.cli"]
TOKEN = re.compile(rb"PKTKIT(\d{5})([qr])(\d{4})(\d{6})(\d{6})\n")
ICMP_ERRORS = {"3", "4", "5", "11", "12"}


class LabOutput:
    """A finished lab run: its folder, truth.json, lab.json and its nodes' bundles."""

    def __init__(self, out: Path, result: Any = None) -> None:
        self.out = out
        self.result = result
        self.truth: dict[str, Any] = json.loads((out / "truth.json").read_text())
        self.lab: dict[str, Any] = json.loads((out / "lab.json").read_text())

    @property
    def nodes(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir() if (p / "bundle.json").is_file())

    def path(self, capture: str) -> Path:
        """Where a capture of truth.json is: in its node's bundle."""
        (found,) = [self.out / node / capture for node in self.nodes
                    if (self.out / node / capture).is_file()]
        return found

    def records(self, capture: str) -> list[Record]:
        return read_capture(self.path(capture))

    def entries(self, capture: str) -> list[dict[str, Any]]:
        return sorted((p for p in self.truth["packets"] if p["capture"] == capture),
                      key=lambda p: p["frame"])

    def links(self, node: str) -> list[dict[str, Any]]:
        return json.loads((self.out / node / "end" / "ip-link.json").read_text())

    def ifnames(self, node: str) -> dict[int, str]:
        return {int(link["ifindex"]): link["ifname"] for link in self.links(node)}

    def bundle(self, node: str) -> dict[str, Any]:
        return json.loads((self.out / node / "bundle.json").read_text())

    @cached_property
    def flows(self) -> dict[int, dict[str, Any]]:
        return {f["flow_id"]: f for f in self.lab["flows"]}


def marker_flow(data: bytes) -> int | None:
    match = TOKEN.search(data)
    return int(match.group(1)) if match else None


def tshark(path: Path, fields: list[str]) -> list[dict[str, list[str]]]:
    """One dict per frame: field → every occurrence (outermost first). IP reassembly off,
    UDP 8472 decoded as VXLAN (4789 is by default)."""
    cmd = [tshark_path(), "-n", "-r", str(path), "-o", "ip.defragment:FALSE",
           "-o", "tcp.desegment_tcp_streams:FALSE", "-d", "udp.port==8472,vxlan",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [{name: [v for v in value.split(",") if v]
             for name, value in zip(fields, line.split("\t"), strict=True)}
            for line in out.splitlines()]
