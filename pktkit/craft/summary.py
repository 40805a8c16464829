"""A per-capture text summary of generated capture folders (``pktkit summary``, ``make demo``).

It reads each folder's ``truth.json``: what the builders wrote, frame by frame. (The analysis
of captures from the decoded bytes is ``pktkit packets``.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from pktkit.craft.truth import TRUTH_FILE, load_truth
from pktkit.errors import CaptureError


def _folders(paths: list[Path]) -> list[Path]:
    """The folders to summarize: each given folder holding truth.json, or its subfolders."""
    found: list[Path] = []
    for path in paths:
        if (path / TRUTH_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob(f"*/{TRUTH_FILE}")))
        else:
            raise CaptureError(f"{path}: no such folder; run `make captures` or pass a folder "
                               "written by `pktkit generate`")
    if not found:
        raise CaptureError(f"{', '.join(map(str, paths))}: no truth.json found; pass folders "
                           "written by `pktkit generate`")
    return found


def summarize_dirs(paths: list[Path]) -> str:
    lines: list[str] = []
    for folder in _folders(paths):
        truth = load_truth(folder)
        by_capture: dict[str, list[dict]] = defaultdict(list)
        for entry in truth["packets"]:
            by_capture[entry["capture"]].append(entry)
        lines.append(f"{folder}/  scenario {truth['scenario']} (seed {truth['seed']}): "
                     f"{len(truth['packets'])} frames, "
                     f"{len({p['packet_id'] for p in truth['packets']})} packets, "
                     f"{len(truth['nat_flows'])} NAT flows")
        for capture in truth["captures"]:
            entries = by_capture.get(capture, [])
            encaps = Counter(
                e["encap"] + (f" vni {e['vni']}" if e["vni"] is not None else "") for e in entries
            )
            interfaces = sorted({e["interface"] for e in entries})
            wire = sum(e["wire_len"] for e in entries)
            mix = ", ".join(f"{k} x{v}" for k, v in sorted(encaps.items()))
            lines.append(f"  {capture:<26} {len(entries):>6} frames {wire:>9} bytes  "
                         f"[{', '.join(interfaces)}]  {mix}")
    return "\n".join(lines)
