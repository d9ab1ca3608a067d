"""The HTML sample viewer's data over tiny real runs of every benchmark, SRR and ablate-reward output.

Expectations are read from the run folders (records, sidecars, summaries), never written out by hand.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from evalkit.errors import EvalkitError
from evalkit.report.view import build, build_report, find_runs
from evalkit.runs import Run, read_jsonl


def _roots(tiny_runs: dict[str, Path]) -> list[Path]:
    return [p for key, p in tiny_runs.items() if key != "ablation"] + [tiny_runs["ablation"]]


def _by_key(report) -> dict[tuple[str, str], dict]:
    return {(s["p"], s["id"]): s for s in report.samples}


def _run_index(report, root: Path) -> str:
    paths = [r["path"] for r in report.runs]
    return str(next(i for i, p in enumerate(paths) if p.rstrip("/").endswith(root.name)))


def test_every_benchmark_srr_and_ablation_output(tiny_runs, tmp_path):
    out = tmp_path / "report"
    report = build(_roots(tiny_runs), out)
    samples = _by_key(report)
    ablation_runs = find_runs([tiny_runs["ablation"]])
    assert ablation_runs, "ablate-reward output holds run folders"
    roots = [p for k, p in tiny_runs.items() if k != "ablation"] + ablation_runs
    assert len(report.runs) == len(roots)
    for root in roots:
        run = Run(root)
        summary = run.summary()
        index = _run_index(report, root)
        records = run.records()
        assert records, root
        for rec in records:
            images = samples[(summary["protocol"], rec["sample_id"])]["runs"][index]
            image = next(im for im in images if im["k"] == rec["k"])
            assert (out / unquote(image["src"])).resolve() == run.image_path(
                rec["sample_id"], rec["k"]
            ).resolve()
            if rec.get("failed"):
                assert image["v"] == "err" and image["why"] == rec["reason"]
            elif isinstance(rec.get("correct"), bool):
                assert image["v"] == ("pass" if rec["correct"] else "fail")
            if isinstance(rec.get("details"), dict):  # GenEval detections, one box each
                assert len(image.get("boxes", [])) == sum(len(b) for b in rec["details"].values())
            if isinstance(rec.get("questions"), list):  # TIIF: every question, with the expected answer
                assert [q[0] for q in image["q"]] == [q.strip() for q in rec["questions"]]
                assert [q[3] for q in image["q"]] == rec["gt_answers"]
            if rec.get("answers") and rec.get("l2"):  # DPG: one row per proposition
                assert [q[1] for q in image["q"]] == rec["answers"]
            assert image["seed"] == run.load_image_meta(rec["sample_id"], rec["k"])["seed"]
        table = next(t for t in report.tables if t["protocol"] == summary["protocol"])
        row = next(r for r in table["rows"] if str(r["run"]) == index)
        assert dict(zip(table["columns"], row["cells"], strict=True)) == {
            c: summary["table"].get(c) for c in table["columns"]
        }
    # an ablate-reward evaluation keeps its row name as the label
    ablation_info = json.loads((ablation_runs[0] / "run.json").read_text())
    assert ablation_info["model"] in [r["label"] for r in report.runs]


def test_srr_rounds_think_gate_and_p_yes(tiny_runs, tmp_path):
    run = Run(tiny_runs["srr"])
    report = build([run.root], tmp_path)
    for sample in report.samples:
        for image in sample["runs"]["0"]:
            meta = run.load_image_meta(sample["id"], image["k"])
            history = meta["srr"]["history"]
            assert [r["r"] for r in image["srr"]] == [h["round"] for h in history]
            assert [r["decision"] for r in image["srr"]] == [h["decision"] for h in history]
            assert [r["think"] for r in image["srr"]] == [h["think"] for h in history]
            for r in image["srr"]:
                side = json.loads(
                    (run.root / "samples" / sample["id"] / f"{image['k']}.r{r['r']}.json").read_text()
                )
                questions = side["gate"]["reward_details"]["questions"]
                assert [q[2] for q in r["q"]] == [q["score"] for q in questions]
                assert unquote(r["src"]).endswith(f"{sample['id']}/{image['k']}.r{r['r']}.png")
            assert any(r["think"] for r in image["srr"][1:])


def test_table_cells_point_at_their_samples(tiny_runs, tmp_path):
    from evalkit.benchmarks.geneval.aggregate import COLUMNS

    report = build([tiny_runs[k] for k in ("geneval", "dpg", "gedit", "tiif")], tmp_path)
    categories = {(s["p"], s["cat"]) for s in report.samples}
    for table in report.tables:
        for column, cat, query in zip(table["columns"], table["cats"], table["queries"], strict=True):
            assert cat is None or (table["protocol"], cat) in categories
            assert not (cat and query)
            if query:  # e.g. TIIF's '(short)' columns: the samples of that prompt length
                assert column.endswith(query) and any(
                    c.endswith(query) for p, c in categories if p == table["protocol"]
                )
            if table["protocol"] == "geneval" and column in COLUMNS.values():
                assert cat in COLUMNS  # a task column filters to its tag
    tiif = next(t for t in report.tables if t["protocol"] == "tiif")
    assert {q for q in tiif["queries"] if q} == {f"({r['length']})" for r in Run(tiny_runs["tiif"]).records()}
    gedit = next(t for t in report.tables if t["protocol"] == "gedit")
    tasks = {s["cat"] for s in report.samples if s["p"] == "gedit"}
    assert {c for c in gedit["cats"] if c} == {t for t in tasks if f"O/{t}" in gedit["columns"]}


def _with_records(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    records = [change(r) for r in read_jsonl(dst / "records.jsonl")]
    (dst / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return dst


def test_flags_disagreement_failures_and_pass(tiny_runs, tmp_path):
    original = tiny_runs["geneval"]
    first = min(r["sample_id"] for r in read_jsonl(original / "records.jsonl"))

    def all_right_on_first(rec):
        return {**rec, "correct": True} if rec["sample_id"] == first else {**rec, "correct": False}

    left = _with_records(original, tmp_path / "runs" / "geneval" / "left", lambda r: {**r, "correct": False})
    right = _with_records(original, tmp_path / "runs" / "geneval" / "right", all_right_on_first)
    report = build([left, right], tmp_path / "out")
    flags = {s["id"]: s["flags"] for s in report.samples}
    assert flags[first]["disagree"] and not flags[first]["pass"] and flags[first]["fail"]
    assert all(not f["disagree"] for sid, f in flags.items() if sid != first)
    alone = build([right], tmp_path / "alone")
    assert {s["id"]: s["flags"]["pass"] for s in alone.samples} == {sid: sid == first for sid in flags}

    judged = build([tiny_runs["tiif"], tiny_runs["wise"]], tmp_path / "judged")
    failed = {
        (r["protocol"], r["sample_id"])
        for k in ("tiif", "wise")
        for r in Run(tiny_runs[k]).records()
        if r["failed"]
    }
    assert {(s["p"], s["id"]) for s in judged.samples if s["flags"]["err"]} == failed


def test_page_is_self_contained_and_escapes_data(tiny_runs, tmp_path):
    hostile = "a cat </script><script>alert(1)</script> <!-- & \u2603"
    run = _with_records(
        tiny_runs["geneval"], tmp_path / "runs" / "geneval" / "x", lambda r: {**r, "prompt": hostile}
    )
    page = build_report([run], tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", text)  # nothing remote
    assert text.count("</script>") == 2  # the data block and the viewer script, nothing injected
    data = re.search(r'<script id="evalkit-data" type="application/json">(.*?)</script>', text, re.S).group(1)
    parsed = json.loads(data)
    assert {s["prompt"] for s in parsed["samples"]} == {hostile}
    assert parsed == json.loads(json.dumps(build([run], tmp_path / "out").to_json()))


def test_folders_without_runs_are_refused(tmp_path):
    with pytest.raises(EvalkitError, match="no evalkit run"):
        find_runs([tmp_path])
    with pytest.raises(EvalkitError, match="not a folder"):
        find_runs([tmp_path / "missing"])


def test_view_command(cli, tiny_runs, tmp_path):
    out = tmp_path / "view"
    code, stdout, err = cli("view", tiny_runs["geneval"], tiny_runs["ablation"], "--out", out)
    assert code == 0, err
    assert stdout.strip() == str(out / "index.html") and (out / "index.html").exists()
    code, _, err = cli("view", tmp_path / "missing")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_geneval_records_name_box_colours_for_the_viewer(tmp_path):
    """The scorer records the colours CLIP named for the boxes the rules looked at; the viewer labels
    those boxes with them."""
    import numpy as np
    from PIL import Image as PILImage

    from evalkit.benchmarks.base import Sample
    from evalkit.benchmarks.geneval.scorer import GenEvalScorer
    from evalkit.detection.base import ClassDetections
    from evalkit.report.view import _boxes

    boxes = np.array([[0, 0, 10, 10, 0.9], [5, 5, 30, 30, 0.8], [1, 1, 2, 2, 0.1]], dtype=float)

    class Detector:
        classnames = ["car"]

        def config(self):
            return {"name": "double"}

        def detect(self, images):
            return [{"car": ClassDetections(boxes, None)} for _ in images]

    class Colours:
        def config(self):
            return {"name": "double"}

        def classify(self, jobs):
            return [["red", "blue"][: len(found)] for _, found, _ in jobs]

    meta = {
        "tag": "colors",
        "include": [{"class": "car", "count": 2, "color": "red"}],
        "prompt": "two red cars",
    }
    (rec,) = GenEvalScorer(Detector(), Colours()).score_images(
        [Sample("0", meta["prompt"], meta)], [PILImage.new("RGB", (32, 32))]
    )
    assert rec["colors"] == {"car": ["red", "blue"]} and not rec["correct"]
    drawn = _boxes(rec)
    assert [(b[0], b[6]) for b in drawn] == [("car", "red"), ("car", "blue")]
    assert [b[1:5] for b in drawn] == [[float(v) for v in box[:4]] for box in rec["details"]["car"]]


def test_unsafe_sample_ids_use_their_safe_folder(tiny_runs, tmp_path):
    from evalkit.runs import safe_name

    odd = "../a/b c\\d"
    first = min(r["sample_id"] for r in read_jsonl(tiny_runs["geneval"] / "records.jsonl"))

    def rename(rec):
        return {**rec, "sample_id": odd, "id": f"{odd}/{rec['k']}"} if rec["sample_id"] == first else rec

    run = _with_records(tiny_runs["geneval"], tmp_path / "runs" / "geneval" / "odd", rename)
    (run / "samples" / first).rename(run / "samples" / safe_name(odd))
    out = tmp_path / "out"
    report = build([run], out)
    (sample,) = [s for s in report.samples if s["id"] == odd]
    assert {s["id"] for s in report.samples} == {odd} | {
        r["sample_id"] for r in read_jsonl(run / "records.jsonl")
    }
    for image in sample["runs"]["0"]:
        assert (out / unquote(image["src"])).resolve() == Run(run).image_path(odd, image["k"]).resolve()
