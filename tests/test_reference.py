"""The bundled captures/: reproducible byte for byte, small, and clean in tshark's eyes."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from oracle import CHECKSUM_PREFS, PROBLEM_FIELDS, tshark_fields, tshark_problems

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


VNI_FIELDS = ["vxlan.vni", "geneve.vni", "gre.key"]


# A `tcpdump -i any` file holds each packet once per interface it crossed. tshark's TCP and IP
# reassembly then sees the same segment or fragment again and flags "New fragment overlaps old
# data": an artifact of reading duplicates, not a malformed frame. Per-frame checks of those
# files run with reassembly off; per-interface files are checked with it on.
NO_REASSEMBLY = ("-o", "tcp.desegment_tcp_streams:FALSE", "-o", "ip.defragment:FALSE",
                 "-o", "ipv6.defragment:FALSE")


@cache
def tshark_rows(path: Path) -> list[list[str]]:
    """One tshark pass per file serves both checks below."""
    holds_duplicates = path.stem.endswith("-any")
    extra = CHECKSUM_PREFS + (NO_REASSEMBLY if holds_duplicates else ())
    return tshark_fields(path, PROBLEM_FIELDS + VNI_FIELDS, extra=extra)


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tshark_finds_no_malformed_or_expert_error_frames(path: Path) -> None:
    assert tshark_problems(path, tshark_rows(path)) == []


def _truth_by_frame(path: Path) -> dict[int, dict]:
    truth = json.loads((path.parent / "truth.json").read_text())
    return {p["frame"]: p for p in truth["packets"] if p["capture"] == path.name}


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tshark_vnis_equal_truth_frame_by_frame(path: Path) -> None:
    rows = tshark_rows(path)
    truth = _truth_by_frame(path)
    assert len(rows) == len(truth)
    width = len(PROBLEM_FIELDS) + len(VNI_FIELDS)
    for row in rows:
        number, *_, vxlan, geneve, gre_key = (row + [""] * width)[:width]
        expected = truth[int(number)]
        vnis = [int(v, 0) for v in (vxlan + "," + geneve).split(",") if v]
        if gre_key:  # NVGRE: the key's upper 24 bits are the VSID
            vnis += [int(k, 0) >> 8 for k in gre_key.split(",")]
        seen = vnis[-1] if vnis else None  # innermost tunnel that has one
        assert seen == expected["vni"], f"frame {number}: tshark {vnis}, truth {expected['vni']}"
