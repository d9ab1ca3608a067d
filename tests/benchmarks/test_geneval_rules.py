"""GenEval rules and aggregation against cases produced by the official evaluate_images.py/summary_scores.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixture_paths import FIXTURES

from evalkit.benchmarks.geneval.aggregate import summarize
from evalkit.benchmarks.geneval.rules import (
    DetectedObject,
    GenEvalOptions,
    relative_position,
    score_detections,
    select_objects,
)

CASES = FIXTURES / "geneval" / "cases.jsonl"
SUMMARY = FIXTURES / "geneval" / "summary"


def _cases() -> list[dict]:
    if not CASES.exists():
        pytest.skip("GenEval fixtures not present")
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


def _as_input(case: dict) -> dict:
    return {
        "metadata": case["metadata"],
        "width": case["image_width"],
        "height": case["image_height"],
        "detections": case["detections"],
    }


def test_every_official_case_matches():
    cases = _cases()
    mismatches = []
    for case in cases:
        got = score_detections(_as_input(case))
        exp = case["expected"]
        if (
            got["correct"] != exp["correct"]
            or got["reason"] not in exp["reason_alternatives"]
            or got["details"] != exp["details"]
        ):
            mismatches.append(case["case_id"])
    assert mismatches == []
    known = {"single_object", "two_object", "counting", "colors", "color_attr", "position"}  # GenEval's tags
    assert {c["metadata"]["tag"] for c in cases} <= known  # whatever the set holds, only real GenEval tasks


def test_cli_rescore_matches_fixture_line_by_line(cli, tmp_path):
    cases = _cases()
    inp = tmp_path / "dets.jsonl"
    inp.write_text("".join(json.dumps(_as_input(c)) + "\n" for c in cases))
    code, _, err = cli("score", "geneval", "--detections", inp, "--out", tmp_path / "out.jsonl")
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == len(cases)
    for case, line in zip(cases, lines, strict=True):
        assert set(line) == {"correct", "reason"}
        assert line["correct"] == case["expected"]["correct"], case["case_id"]
        assert line["reason"] in case["expected"]["reason_alternatives"], case["case_id"]


def test_cli_rescore_rejects_malformed_line(cli, tmp_path):
    cases = _cases()
    lines = [json.dumps(_as_input(c)) for c in cases[:3]] + ['{"metadata": {"tag": "nope"}}']
    inp = tmp_path / "dets.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    code, out, err = cli("score", "geneval", "--detections", inp, "--out", tmp_path / "out.jsonl")
    assert code == 2
    assert f"{inp}:4:" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_thresholds_are_strict_and_counting_uses_its_own():
    opts = GenEvalOptions()
    boxes = np.array([[0, 0, 10, 10, 0.3], [0, 0, 10, 10, 0.31], [0, 0, 10, 10, 0.95]])
    assert [o.box[4] for o in select_objects(boxes, None, None, opts.threshold, opts)] == [0.95, 0.31]
    assert [o.box[4] for o in select_objects(boxes, None, None, opts.counting_threshold, opts)] == [0.95]


def test_cap_applies_before_exclude_count():
    boxes = [{"box": [i, 0, i + 5, 5], "score": 0.99} for i in range(20)]
    meta = {
        "tag": "counting",
        "include": [{"class": "cat", "count": 2}],
        "exclude": [{"class": "cat", "count": 3}],
        "prompt": "a photo of two cats",
    }
    got = score_detections({"metadata": meta, "width": 64, "height": 64, "detections": {"cat": boxes}})
    assert got["reason"] == "expected cat<3, found 16"


def test_nms_when_enabled_uses_plus_one_iou():
    opts = GenEvalOptions(max_overlap=0.5)
    boxes = np.array([[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8], [50, 50, 60, 60, 0.7]])
    kept = select_objects(boxes, None, None, 0.3, opts)
    assert [o.box[4] for o in kept] == [0.9, 0.7]


def test_relative_position_margin():
    a = DetectedObject(np.array([0, 0, 10, 10, 1.0]))
    b = DetectedObject(np.array([13, 0, 23, 10, 1.0]))  # |dx| = 13 <= 0.2 * 20 + ... just beyond margin
    assert relative_position(a, b, 0.1) == ["left of"]
    c = DetectedObject(np.array([3, 0, 13, 10, 1.0]))  # |dx| = 3 < 0.1 * (10 + 10): no relation
    assert relative_position(a, c, 0.1) == []


def test_summary_matches_official_scenarios():
    if not SUMMARY.exists():
        pytest.skip("GenEval fixtures not present")
    expected = json.loads((SUMMARY / "expected.json").read_text())
    for scenario in expected.values():
        records = [
            json.loads(x) for x in (SUMMARY / scenario["input_file"]).read_text().splitlines() if x.strip()
        ]
        got = summarize(records)
        assert got["n_images"] == scenario["n_images"]
        assert got["overall"] == pytest.approx(scenario["overall"], abs=1e-6)
        for task in scenario["task_scores_in_official_order"]:
            mine = got["tasks"][task["tag"]]
            assert mine["score"] == pytest.approx(task["score"], abs=1e-6)
            assert (mine["n_correct"], mine["n_images"]) == (task["n_correct"], task["n_images"])
        prompts_line = next(x for x in scenario["stdout"].splitlines() if x.startswith("% correct prompts"))
        assert f"{got['correct_prompts'] * 100:.2f}%" in prompts_line
