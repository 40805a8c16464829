"""The report pages in a real browser: headless Chromium renders the index and each analysis
page at 1280 px wide (skipped when Chromium is not installed; .ci/run installs it).

What the pages must show is checked on their HTML (tests/test_page.py); here they must render:
a screenshot of the right width that is not blank, with the page's colours (the links'
blue, the table headings' grey), from every page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import pktkit
from pktkit.craft.generation import generate, make_scenario
from pktkit.report.folder import write_collection

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1280
LINK_BLUE = (0x24, 0x56, 0xA8)  # style.css: a { color: #2456a8 }
HEADING_GREY = (0xF2, 0xF4, 0xF8)  # th { background: #f2f4f8 }

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                                          "(apt-get install chromium)")


def screenshot(page: Path, out: Path, height: int = 1600) -> Image.Image:
    profile = out.parent / f".profile-{out.stem}"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--hide-scrollbars", f"--window-size={WIDTH},{height}",
                    f"--screenshot={out}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    return Image.open(out).convert("RGB")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chromium")
    jobs = []
    for scenario in ("k8s-clusterip", "vxlan-overlay"):
        generate(make_scenario(scenario, seed=1), root / "captures" / scenario)
        jobs.append((scenario, lambda f=root / "captures" / scenario: pktkit.analyze(f)))
    write_collection(jobs, root / "out")
    return root / "out"


@pytest.mark.parametrize("page", ["index.html", "k8s-clusterip/index.html",
                                  "vxlan-overlay/index.html"])
def test_pages_render_at_1280_px(report: Path, page: str, tmp_path: Path) -> None:
    image = screenshot(report / page, tmp_path / "shot.png")
    assert image.size == (WIDTH, 1600)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20) or []}
    assert len(colours) > 50  # text, tables, not a blank page
    assert any(max(abs(a - b) for a, b in zip(c, LINK_BLUE, strict=True)) < 40
               for c in colours)  # the links (back link, contents, analyses)
    assert HEADING_GREY in colours  # a table's headings
