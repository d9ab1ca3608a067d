"""Sample viewer generation time on a full-size GenEval layout: 553 prompts x 4 images per run.

Writes synthetic run folders in the exact layout of evalkit/runs.py (run.json, samples/<id>/<k>.png +
<k>.json, records.jsonl with detections, summary.json), then times `build_report` over 1 run and over
`--runs` runs side by side (optionally with SRR rounds on every image). The budget is 10 s for 553 x 4.

    python bench/view_report.py                 # 1 run and 2 runs, no SRR
    python bench/view_report.py --runs 3 --srr 2
    python bench/view_report.py --browser      # also: page load + first render and a filter in Chromium
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from evalkit.report.view import build_report

PROMPTS, IMAGES, BUDGET_S = 553, 4, 10.0
TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


def _png(rng: np.random.Generator, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_run(root: Path, seed: int, srr: int) -> Path:
    """One synthetic GenEval run; images share a few PNG payloads (the viewer never decodes them)."""
    rng = np.random.default_rng(seed)
    payloads = [_png(rng) for _ in range(8)]
    run = root / "geneval" / f"model{seed}-{seed:08x}"
    records = []
    for i in range(PROMPTS):
        sid, tag = f"{i:05d}", TAGS[i % len(TAGS)]
        folder = run / "samples" / sid
        folder.mkdir(parents=True)
        prompt = f"a photo of {i % 7 + 1} things number {i}"
        for k in range(IMAGES):
            meta: dict = {"prompt": prompt, "seed": int(rng.integers(2**31)), "seconds": 0.1, "think": None}
            if srr:
                history = [
                    {"round": r, "think": f"round {r}: make it better", "reward": 0.4, "decision": "refine"}
                    for r in range(srr + 1)
                ]
                meta["srr"] = {"rounds": srr, "gate": "all", "final_round": srr, "history": history}
                for r in range(srr + 1):
                    (folder / f"{k}.r{r}.png").write_bytes(payloads[(k + r) % 8])
                    gate = {"mode": "all", "decision": "refine", "reward": 0.4}
                    (folder / f"{k}.r{r}.json").write_text(json.dumps({"round": r, "gate": gate}))
            (folder / f"{k}.json").write_text(json.dumps(meta))
            (folder / f"{k}.png").write_bytes(payloads[k])
            boxes = {"dog": [[1.0, 2.0, 40.0, 50.0, 0.9]], "cat": [[10.0, 10.0, 60.0, 60.0, 0.5]]}
            correct = bool(rng.random() < 0.6)
            records.append(
                {"id": f"{sid}/{k}", "sample_id": sid, "k": k, "prompt": prompt, "protocol": "geneval",
                 "tag": tag, "correct": correct, "reason": "" if correct else "expected dog>=2, found 1",
                 "details": boxes, "metadata": {"tag": tag, "include": [{"class": "dog", "count": 2}]}}
            )  # fmt: skip
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "run.json").write_text(
        json.dumps({"model": f"model{seed}", "protocol": "geneval", "generation": {}})
    )
    table = {"Single Obj.": 0.6, "Overall": 0.6}
    summary = {"benchmark": "geneval", "protocol": "geneval", "table": table, "n_scored": len(records)}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def timed(runs: list[Path], out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    page = build_report(runs, out)
    return time.perf_counter() - start, page.stat().st_size


def browser_timings(page: Path) -> None:
    """Load the page in headless Chromium (tests/chromium_driver.py) and time first render and a filter."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from chromium_driver import Chromium, find_browser

    found = find_browser()
    if found is None:
        print("browser: chromium + chromedriver not installed, skipped")
        return
    with Chromium(*found) as browser:
        start = time.perf_counter()
        browser.open(page.as_uri())  # returns after the load event: data parsed and first page rendered
        loaded = time.perf_counter() - start
        total = browser.run("return document.getElementById('count').dataset.count")
        start = time.perf_counter()
        browser.click("#f-status option[value='fail']")
        shown = browser.run("return document.getElementById('count').dataset.count")
        filtered = time.perf_counter() - start
        errors = [e for e in browser.console() if e.get("level") == "SEVERE"]
    print(
        f"browser: load + first render {loaded:.2f} s ({total} samples); 'some image fails' filter "
        f"{filtered:.2f} s ({shown} shown); console errors: {len(errors)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs side by side in the second measurement")
    parser.add_argument("--srr", type=int, default=0, help="SRR rounds stored per image (0: none)")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = [make_run(root / "runs", seed, args.srr) for seed in range(args.runs)]
        for label, subset in (("1 run", runs[:1]), (f"{args.runs} runs", runs)):
            seconds, size = timed(subset, root / "out" / label.replace(" ", "_"))
            images = len(subset) * PROMPTS * IMAGES
            print(
                f"{label}: {images} images (srr={args.srr}) -> index.html {size / 1e6:.1f} MB in {seconds:.2f} s;"
                f" {seconds / BUDGET_S:.3f} of the {BUDGET_S:.0f} s budget"
            )
        if args.browser:
            browser_timings(root / "out" / f"{args.runs}_runs" / "index.html")


if __name__ == "__main__":
    main()
