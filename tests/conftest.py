"""Shared fixtures. ``tests/`` is on sys.path so that tests can import the ``oracle`` helpers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The third-party capture corpus beside the repo (or $PKTKIT_CORPUS); skip when absent."""
    path = Path(os.environ.get("PKTKIT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"capture corpus not found at {path} (set PKTKIT_CORPUS)")
    return path


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (.ci/run installs it)")
    return path
