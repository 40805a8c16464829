"""The bundled reference captures: every scenario, plus pcapng and ``tcpdump -i any`` variants.

``python -m pktkit.craft.reference DIR`` (``make captures``) rewrites DIR byte for byte: the
same code, seed and parameters always give the same bytes. It also writes DIR/README.md, the
table of what each folder holds, from what it has just written.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pktkit.capture.formats import CaptureFormat
from pktkit.capture.write import Linktype, TsResolution
from pktkit.craft.generation import GenerateResult, generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS


@dataclass(frozen=True)
class Reference:
    folder: str
    scenario: str
    fmt: CaptureFormat = "pcap"
    linktype: Linktype = "ether"
    ts_resolution: TsResolution = "us"
    clock_offset_s: float = 0.0
    clock_drift_ppm: float = 0.0
    note: str = ""


def references() -> list[Reference]:
    """One folder per scenario (per-interface pcap), then the variants."""
    plain = [Reference(name, name) for name in SCENARIOS]
    variants = [
        Reference("docker-snat-any", "docker-snat", "pcap", "sll2",
                  note="tcpdump -i any: one SLL2 file for the host, interface indexes only"),
        Reference("flat-routed-pcapng", "flat-routed", "pcapng", "ether", "ns",
                  note="pcapng per interface, nanosecond timestamps"),
        Reference("vxlan-overlay-any", "vxlan-overlay", "pcapng", "sll2",
                  clock_offset_s=0.0375, clock_drift_ppm=25.0,
                  note="SLL2 pcapng per node with named interfaces; node-b's clock 37.5 ms "
                       "ahead and 25 ppm fast"),
    ]
    return plain + [v for v in variants if v.scenario in SCENARIOS]


def _readme(rows: list[tuple[Reference, GenerateResult]], total_bytes: int) -> str:
    lines = [
        "# Reference captures",
        "",
        "Written by `make captures` (`python -m pktkit.craft.reference captures`): do not edit by",
        "hand. Each folder holds what tcpdump would record at each capture point of one scenario",
        "(seed 1, default parameters) and `truth.json`, the label of every frame (schema in",
        "`docs/ARCHITECTURE.md`). The Kubernetes and Docker scenarios also hold what `kubectl",
        "get pods,services,endpointslices,nodes -A -o json` (`kubectl.json`) or `docker inspect`",
        "(`docker.json`) would print; `pktkit analyze` reads them to name the addresses.",
        "",
        "| folder | scenario | files | frames | format | what it holds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for ref, result in rows:
        files = ", ".join([*(f"`{name}` ({result.per_file.get(name, 0)})"
                             for name in result.files), *(f"`{m}`" for m in result.metadata)])
        description = SCENARIOS[ref.scenario].description + (f". {ref.note}" if ref.note else "")
        fmt = f"{ref.fmt}, {ref.linktype}, {ref.ts_resolution}"
        lines.append(f"| `{ref.folder}/` | `{ref.scenario}` | {files} | {result.packets} | "
                     f"{fmt} | {description} |")
    lines += ["", f"Total of the folders: {total_bytes / 1e6:.2f} MB.", ""]
    return "\n".join(lines)


def write_references(out: Path) -> list[tuple[Reference, GenerateResult]]:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if stale.is_dir():
            shutil.rmtree(stale)
    rows = []
    for ref in references():
        scenario = make_scenario(ref.scenario, seed=1, clock_offset_s=ref.clock_offset_s,
                                 clock_drift_ppm=ref.clock_drift_ppm)
        rows.append((ref, generate(scenario, out / ref.folder, fmt=ref.fmt,
                                   linktype=ref.linktype, ts_resolution=ref.ts_resolution)))
    # Folders only: the README's own size would make the figure depend on the previous run.
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.parent != out)
    (out / "README.md").write_text(_readme(rows, total), encoding="utf-8")
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("captures")
    rows = write_references(out)
    frames = sum(result.packets for _, result in rows)
    print(f"wrote {len(rows)} reference folders, {frames} frames, under {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
