"""The sample viewer in a real headless Chromium: no console errors, every sample renders, filters and table
links change what is shown, and a screenshot is kept as an artefact.

Needs the Debian packages `chromium` and `chromium-driver` (.ci/run installs them). The screenshot goes to
the test's tmp folder, and also to $EVALKIT_TEST_ARTIFACTS when that is set.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from chromium_driver import Chromium, find_browser
from PIL import Image

from evalkit.report.view import build, build_report

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="headless Chromium not installed: apt-get install -y chromium chromium-driver (.ci/run does this)",
)
PAGE = 60  # samples rendered before "Show more" (viewer.js)


def _count(page: Chromium, expected: int | None = None, timeout: float = 5.0) -> int:
    """The shown count; with `expected`, waits for it (hash changes re-render after the click returns)."""
    deadline = time.monotonic() + timeout
    while True:
        count = int(page.run("return document.getElementById('count').dataset.count"))
        if expected is None or count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def _rendered(page: Chromium) -> int:
    return page.run("return document.querySelectorAll('#grid article.sample').length")


def _wait_images(page: Chromium, timeout: float = 10.0) -> list[str]:
    """Sources of images in the first card that did not load (empty when all did)."""
    script = """
      const imgs = [...document.querySelectorAll('#grid article.sample:first-child img')];
      imgs.forEach((im) => im.scrollIntoView());
      return imgs.filter((im) => !(im.complete && im.naturalWidth > 0)).map((im) => im.getAttribute('src'));
    """
    deadline = time.monotonic() + timeout
    broken = page.run(script)
    while broken and time.monotonic() < deadline:
        time.sleep(0.2)
        broken = page.run(script)
    return broken


def _errors(page: Chromium) -> list[str]:
    return [e["message"] for e in page.console() if e.get("level") in ("SEVERE", "ERROR")]


def test_viewer_in_headless_chromium(tiny_runs, tmp_path):
    roots = [p for k, p in tiny_runs.items() if k != "ablation"] + [tiny_runs["ablation"]]
    out = tmp_path / "report"
    index = build_report(roots, out)
    report = build(roots, out)  # what the page was made from
    total = len(report.samples)
    failed = sum(s["flags"]["err"] for s in report.samples)
    assert 0 < failed < total, "the tiny runs have judge failures and clean samples"
    assert BROWSER is not None
    with Chromium(*BROWSER, width=1400, height=1800) as page:
        page.open(index.as_uri())
        assert _errors(page) == []
        assert _count(page) == total
        assert _rendered(page) == min(total, PAGE)
        assert page.run("return document.querySelectorAll('table.summary').length") == len(report.tables)
        assert _wait_images(page) == []  # relative image paths resolve from file://
        boxes = sum(
            len(im.get("boxes", []))
            for s in report.samples[:PAGE]
            for ims in s["runs"].values()
            for im in ims
        )
        assert page.run("return document.querySelectorAll('#grid svg rect').length") == boxes

        page.click("#f-status option[value='err']")  # a real click on the filter
        assert _count(page, failed) == _rendered(page) == failed

        page.click("#f-reset")
        assert _count(page, total) == total
        target = report.samples[-1]
        page.type("#f-text", target["prompt"][:40])
        expected = sum(target["prompt"][:40].lower() in s["prompt"].lower() for s in report.samples)
        assert 0 < _count(page, expected) == expected < total or expected == total

        page.click("#f-reset")
        geneval = next(t for t in report.tables if t["protocol"] == "geneval")
        column = next(i for i, c in enumerate(geneval["cats"]) if c)
        row = geneval["rows"][0]
        page.click(
            f"table.summary[data-protocol='geneval'] tbody tr:first-child td:nth-child({column + 2}) a"
        )
        in_cell = [
            s for s in report.samples
            if s["p"] == "geneval" and s["cat"] == geneval["cats"][column] and str(row["run"]) in s["runs"]
        ]  # fmt: skip
        assert _count(page, len(in_cell)) == len(in_cell) < total
        assert page.run("return document.getElementById('f-cat').value") == geneval["cats"][column]

        page.click("#f-reset")
        page.click("#f-protocol option[value='geneval']")
        srr = next(i for i, r in enumerate(report.runs) if r["path"].endswith(tiny_runs["srr"].name))
        page.click(f"#f-run option[value='{srr}']")
        assert _count(page, sum(str(srr) in s["runs"] for s in report.samples)) > 0
        assert page.run("return document.querySelectorAll('#grid .srr .round').length") > 0
        page.run("window.scrollTo(0, 0)")
        shot = page.screenshot(tmp_path / "viewer.png")
        assert _errors(page) == []
    with Image.open(shot) as im:
        assert im.size[0] >= 1000 and im.getbbox() is not None
    artefacts = os.environ.get("EVALKIT_TEST_ARTIFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artefacts) / "viewer.png")
