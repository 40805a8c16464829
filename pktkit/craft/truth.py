"""Ground truth: ``truth.json`` beside generated captures, one entry for every frame written.

The file is streamed (``packets`` grows with the capture) and written under a temporary name,
then renamed. Schema (documented for users in docs/ARCHITECTURE.md):

top level: ``scenario``, ``seed``, ``params``, ``captures``, ``packets``, ``nat_flows``,
``names``, ``lost``, ``clocks``.

``packets`` entries (:class:`PacketTruth`): ``capture``, ``frame`` (1-based), ``ts_ns`` (as the
capturing node's clock recorded it, truncated to the file's resolution), ``true_ts_ns`` (the
reference clock: true time), ``node``, ``interface``, ``direction`` (``in``/``out``, as SLL2's
packet type), ``packet_id``, ``hop`` (0-based position of this sighting along the packet's
path), ``flow_id``, ``nat_flow_id``, ``encap``, ``vni``, ``overlay_encap``/``overlay_vni``
(the tunnel of the packet's encapsulated copy, on every sighting of it, decapsulated ones
included; ``none``/null for a packet never tunnelled), ``overhead_bytes``, ``wire_len``, the
outer header (``outer_src``, ``outer_dst``, ``outer_sport``, ``outer_dport``; null when not
encapsulated), the innermost ``src``, ``dst``, ``proto``, ``sport``, ``dport`` as seen at that
point (ports null for an IP fragment that carries no L4 header, and for ICMP: only NAT flows
carry the echo identifier as ports), ``fragment`` (``none``, ``first``, ``non-first`` for the
innermost IP packet) and ``duplicate`` (true: a second record of the frame before it at that
point, same packet and hop).

``nat_flows`` entries (:class:`NatFlowTruth`) have exactly the fields ``nat_flow_id``, ``kind``
(``snat``, ``dnat``, ``snat+dnat``), ``proto``, ``orig_*`` and ``xlat_*``.

``names`` entries (:class:`~pktkit.craft.inventory.NameTruth`): ``address``, ``port`` and
``proto`` (null: every port), ``name`` (``pod:NS/NAME``, ``service:NS/NAME:PORT``,
``node:NAME``, ``container:NAME``), ``from_ns`` and ``to_ns`` (exclusive; null: unbounded): who
holds an address when, as the scenario's ``kubectl.json`` or ``docker.json`` describes it.
Empty for scenarios without that metadata; an address no entry covers is named by itself.

``lost`` entries (:class:`LostTruth`): the packets the underlay dropped (``--impair loss``).
``clocks``: per node its clock model, ``{"offset_ns", "drift_ppm", "at_ns"}``: the node's
clock reads ``t + offset_ns + drift_ppm × 1e-6 × (t − at_ns)`` at true time t.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pktkit.craft.inventory import NameTruth
from pktkit.errors import OutputError
from pktkit.files import AtomicFile

TRUTH_FILE = "truth.json"


@dataclass(frozen=True, slots=True)
class NatFlowTruth:
    nat_flow_id: int
    kind: str
    proto: int
    orig_src: str
    orig_sport: int
    orig_dst: str
    orig_dport: int
    xlat_src: str
    xlat_sport: int
    xlat_dst: str
    xlat_dport: int


@dataclass(frozen=True, slots=True)
class PacketTruth:
    capture: str
    frame: int
    ts_ns: int
    true_ts_ns: int
    node: str
    interface: str
    direction: str
    packet_id: int
    hop: int
    flow_id: int
    nat_flow_id: int | None
    encap: str
    vni: int | None
    overlay_encap: str
    overlay_vni: int | None
    overhead_bytes: int
    wire_len: int
    outer_src: str | None
    outer_dst: str | None
    outer_sport: int | None
    outer_dport: int | None
    src: str
    dst: str
    proto: int
    sport: int | None
    dport: int | None
    fragment: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class LostTruth:
    """A packet the underlay dropped: where it was last seen, and when."""

    packet_id: int
    flow_id: int
    node: str  # its last capture point
    interface: str
    true_ts_ns: int  # its last sighting there
    retransmitted_as: int | None  # TCP's retransmission (packet_id); None: UDP/ICMP, gone


PACKET_FIELDS = tuple(PacketTruth.__dataclass_fields__)


class TruthWriter:
    """Streams ``truth.json``: header fields first, packets one by one, NAT flows at the end."""

    def __init__(self, path: Path, scenario: str, seed: int, params: dict[str, Any]) -> None:
        self.path = path
        self._file = AtomicFile(path, "truth.json", error=lambda exc: OutputError(
            f"{path.parent}: cannot write truth.json ({exc.strerror}); choose a writable --out "
            "directory"))
        self._handle = io.TextIOWrapper(self._file.handle, encoding="utf-8")
        head = {"scenario": scenario, "seed": seed, "params": params}
        self._handle.write(json.dumps(head, sort_keys=False)[:-1])
        self._handle.write(', "packets": [')
        self._first = True

    def add_packet(self, entry: PacketTruth) -> None:
        self._handle.write("\n  " if self._first else ",\n  ")
        # Not dataclasses.asdict: its deep copy dominated the cost of a million entries.
        record = {name: getattr(entry, name) for name in PACKET_FIELDS}
        self._handle.write(json.dumps(record, separators=(",", ":")))
        self._first = False

    def commit(self, captures: list[str], nat_flows: list[NatFlowTruth],
               names: Sequence[NameTruth] = (), lost: Sequence[LostTruth] = (),
               clocks: dict[str, dict[str, Any]] | None = None) -> None:
        self._handle.write("\n], \"captures\": ")
        self._handle.write(json.dumps(captures))
        self._handle.write(', "nat_flows": [')
        self._handle.write(",".join("\n  " + json.dumps(asdict(flow)) for flow in nat_flows))
        self._handle.write('\n], "names": [')
        self._handle.write(",".join("\n  " + json.dumps(asdict(name)) for name in names))
        self._handle.write('\n], "lost": [')
        self._handle.write(",".join("\n  " + json.dumps(asdict(item)) for item in lost))
        self._handle.write('\n], "clocks": ')
        self._handle.write(json.dumps(clocks or {}))
        self._handle.write("}\n")
        self._handle.flush()
        self._handle.detach()  # the binary handle stays the AtomicFile's, to close
        self._file.commit()

    def abort(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # (already detached, or a full disk)
            self._handle.detach()
        self._file.abort()


def load_truth(path: str | Path) -> dict[str, Any]:
    """Read a ``truth.json`` (or the directory holding one) into plain Python objects."""
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
