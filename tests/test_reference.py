"""The bundled captures/: reproducible byte for byte, small, and clean in tshark's eyes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oracle import tshark_fields, tshark_problems
from pktkit.craft.reference import references, write_references

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
CAPTURE_FILES = sorted(p for p in CAPTURES.rglob("*.pcap*") if p.is_file())


def test_every_scenario_has_a_reference_folder_with_pcapng_and_sll2_variants() -> None:
    folders = {p.name for p in CAPTURES.iterdir() if p.is_dir()}
    assert folders == {ref.folder for ref in references()}
    assert any(p.suffix == ".pcapng" for p in CAPTURE_FILES)
    linktypes = {int.from_bytes(p.read_bytes()[20:24], "little") for p in CAPTURE_FILES
                 if p.suffix == ".pcap"}
    assert 276 in linktypes  # an SLL2 (tcpdump -i any) node capture


def test_make_captures_reproduces_captures_byte_for_byte(tmp_path: Path) -> None:
    write_references(tmp_path)
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    bundled = sorted(p.relative_to(CAPTURES) for p in CAPTURES.rglob("*") if p.is_file())
    assert ours == bundled
    for relative in ours:
        assert (tmp_path / relative).read_bytes() == (CAPTURES / relative).read_bytes(), relative


def test_captures_folder_is_under_5_mb() -> None:
    total = sum(p.stat().st_size for p in CAPTURES.rglob("*") if p.is_file())
    assert total < 5_000_000


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tshark_finds_no_malformed_or_expert_error_frames(path: Path) -> None:
    assert tshark_problems(path) == []


def _truth_by_frame(path: Path) -> dict[int, dict]:
    truth = json.loads((path.parent / "truth.json").read_text())
    return {p["frame"]: p for p in truth["packets"] if p["capture"] == path.name}


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tshark_vnis_equal_truth_frame_by_frame(path: Path) -> None:
    rows = tshark_fields(path, ["frame.number", "vxlan.vni", "geneve.vni", "gre.key"])
    truth = _truth_by_frame(path)
    assert len(rows) == len(truth)
    for number, vxlan, geneve, gre_key in (row + [""] * 4 for row in rows):
        expected = truth[int(number)]
        vnis = [int(v, 0) for v in (vxlan + "," + geneve).split(",") if v]
        if gre_key:  # NVGRE: the key's upper 24 bits are the VSID
            vnis += [int(k, 0) >> 8 for k in gre_key.split(",")]
        seen = vnis[-1] if vnis else None  # innermost tunnel that has one
        assert seen == expected["vni"], f"frame {number}: tshark {vnis}, truth {expected['vni']}"
