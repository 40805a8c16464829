"""pktkit.progress: tqdm draws the stages where asked, and nothing otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

import pktkit
from pktkit.progress import ProgressBar

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def test_an_enabled_bar_draws_each_stage(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar(True)
    report = bar.stages()
    report("read", 1, 4)
    report("correlate", 2, 4)
    bar.close()
    drawn = capsys.readouterr().err
    assert "read:  25%" in drawn and "correlate:  50%" in drawn


def test_a_disabled_bar_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar(False)
    bar("read", 0.5)
    bar.close()
    assert capsys.readouterr().err == ""


def test_analyze_with_progress_true_shows_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    found = pktkit.analyze(CAPTURES / "docker-snat", progress=True)
    assert len(found.packets) > 0
    drawn = capsys.readouterr().err  # tqdm.auto falls back to the text bar outside Jupyter
    assert "latency: 100%" in drawn
