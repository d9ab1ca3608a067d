"""TIIF-Bench: parity with the official summaries and parser, data loading, scorer with a fake judge."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT
from fixture_paths import SHARED
from judged_helpers import FakeJudge
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.benchmarks.tiif import TIIF
from evalkit.benchmarks.tiif.aggregate import pooled_counts, summarize
from evalkit.benchmarks.tiif.data import load_templates
from evalkit.benchmarks.tiif.official import format_table, import_judgments
from evalkit.benchmarks.tiif.parse import OutputFormatError, parse_yes_no
from evalkit.benchmarks.tiif.scorer import TIIFScorer
from evalkit.errors import DataError
from evalkit.judges.base import JudgeFailure

FIXTURES = FIXTURE_ROOT / "tiif_bench"
DATA = SHARED / "benchmarks"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared TIIF fixtures absent")
needs_data = pytest.mark.skipif(not (DATA / "tiif_bench").is_dir(), reason="shared TIIF data absent")


def assert_matches(got: Any, expected: Any, path: str = "") -> None:
    """Floats within 1e-6, None = NaN/no value, everything else exact; only expected keys are checked."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), path
        for k, v in expected.items():
            assert k in got, f"{path}/{k} missing"
            assert_matches(got[k], v, f"{path}/{k}")
    elif expected is None:
        assert got is None or (isinstance(got, float) and math.isnan(got)), f"{path}: {got} != None"
    elif isinstance(expected, float):
        assert got is not None and abs(got - expected) <= 1e-6, f"{path}: {got} != {expected}"
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


# ------------------------------------------------------------------------------------------ parity


@pytest.fixture(scope="module")
def judgments_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture inputs plus the derived model built as inputs/derived_models.json says."""
    root = tmp_path_factory.mktemp("tiif_inputs")
    shutil.copytree(FIXTURES / "inputs", root, dirs_exist_ok=True)
    derived = json.loads((FIXTURES / "inputs" / "derived_models.json").read_text())
    for name, spec in derived.items():
        for judge in spec["for_judges"]:
            target = root / judge / name
            shutil.copytree(root / judge / spec["copy_of"], target)
            for rel in spec["then_delete"]:
                shutil.rmtree(target / rel)
    return root


@needs_fixtures
@pytest.mark.parametrize(
    "judge",
    sorted(json.loads((FIXTURES / "expected.json").read_text()))
    if (FIXTURES / "expected.json").is_file()
    else [],
)
def test_import_judgments_reproduces_official_summaries(judgments_root: Path, judge: str) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())[judge]
    results = import_judgments(judgments_root / judge)
    assert set(expected) <= set(results)
    for model, exp in expected.items():
        assert_matches(results[model], exp, f"{judge}/{model}")


@needs_fixtures
def test_sanity_anchor_and_table(judgments_root: Path) -> None:
    result = import_judgments(judgments_root / "GPT-4o" / "Janus-Pro")  # a single model folder works too
    table = result["Janus-Pro"]["table"]
    assert round(table["Overall (short)"], 2) == 66.67
    assert round(table["Overall (long)"], 2) == 65.19
    assert "Janus-Pro" in format_table(result)


@needs_fixtures
def test_missing_dimensions_are_skipped_not_zero(judgments_root: Path) -> None:
    summary = import_judgments(judgments_root / "GPT-4o")["JanusPro_missing_dims"]
    assert summary["nine_groups"]["Advanced_Style Control"]["short"] is None
    assert summary["nine_groups"]["Advanced_Text Generation"]["long"] is None
    groups = [v["short"] for v in summary["nine_groups"].values() if v["short"] is not None]
    assert summary["overall"]["short"] == pytest.approx(sum(groups) / len(groups))


@needs_data
@pytest.mark.parametrize(("model", "short", "long"), [("sd35", 71.66, 67.42), ("GPT-4o", 89.32, 88.46)])
def test_released_judgments_match_the_spec_anchors(model: str, short: float, long: float) -> None:
    result = import_judgments(DATA / "tiif_bench" / "released_judgments" / "GPT-4o" / model)[model]
    assert round(result["table"]["Overall (short)"], 2) == short
    assert round(result["table"]["Overall (long)"], 2) == long


def test_excel_rounding_changes_groups_only_through_dimension_values() -> None:
    counts = {("text", "short"): (1, 3), ("style", "short"): (2, 3)}
    exact = summarize(counts, excel_rounding=False)
    rounded = summarize(counts, excel_rounding=True)
    assert exact["nine_groups"]["Advanced_Text Generation"]["short"] == pytest.approx(1 / 3)
    assert rounded["nine_groups"]["Advanced_Text Generation"]["short"] == 0.3333
    assert exact["dimensions"]["text"]["short"]["excel_value"] == 0.3333


def test_import_rejects_mismatched_answers(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "text" / "short"
    folder.mkdir(parents=True)
    (folder / "0.json").write_text(json.dumps({"gt_answers": ["yes", "no"], "model_pred": ["yes"]}))
    with pytest.raises(DataError, match="0.json"):
        import_judgments(tmp_path)


# ------------------------------------------------------------------------------------------ parser


@needs_fixtures
def test_yes_no_parser_matches_official_cases() -> None:
    cases = json.loads((FIXTURES / "yes_no_parser.json").read_text())["cases"]
    for case in cases:
        exp = case["expected"]
        if exp["error"] is None:
            assert parse_yes_no(case["model_output"], case["n_questions"]) == exp["preds"], case["case_id"]
        else:
            with pytest.raises(OutputFormatError) as info:
                parse_yes_no(case["model_output"], case["n_questions"])
            assert f"OutputFormatError: {info.value}" == exp["error"], case["case_id"]


# -------------------------------------------------------------------------------------------- data


@needs_data
def test_testmini_samples_and_templates() -> None:
    bench = TIIF(DATA, protocol="tiif", split="testmini")
    samples = bench.samples()
    assert len(samples) == 554
    assert sum(len(s.metadata["questions"]) for s in samples) == 2 * 1446
    assert len({s.id for s in samples}) == len(samples)
    released = DATA / "tiif_bench" / "released_judgments" / "GPT-4o" / "sd35"
    for s in samples[::37]:  # the official testmini layout names images by their test-file line
        meta = s.metadata
        path = released / meta["dimension"] / meta["length"] / f"{meta['official_idx']}.json"
        assert json.loads(path.read_text())["questions"] == meta["questions"], s.id
    system, templates = load_templates(DATA / "tiif_bench")
    assert system == "You are a professional image critic."
    assert len(templates) == 3


@needs_data
def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "tiif_bench"
    shutil.copytree(DATA / "tiif_bench" / "testmini_prompts", root / "testmini_prompts")
    shutil.copytree(DATA / "tiif_bench" / "testmini_eval_prompts", root / "testmini_eval_prompts")
    bad = root / "testmini_eval_prompts" / "text_eval_prompts.jsonl"
    bad.chmod(0o644)
    lines = bad.read_text().splitlines()
    lines[2] = '{"type": "text", "yn_question_list": ['
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"text_eval_prompts\.jsonl:3"):
        TIIF(tmp_path).samples()


# ------------------------------------------------------------------------------------------ scorer


def _sample(questions: list[str], answers: list[str], dim: str = "text", idx: int = 0) -> Sample:
    meta = {"dimension": dim, "length": "short", "line_idx": idx, "questions": questions, "answers": answers}
    return Sample(id=f"{dim}__short__{idx:04d}", prompt="p", metadata=meta)


TEMPLATES = ("A\n##YNQuestions##", "B\n##YNQuestions##", "C\n##YNQuestions##")


def test_scorer_counts_failures_and_never_scores_them() -> None:
    samples = [_sample(["q1", "q2"], ["yes", "no"], idx=i) for i in range(4)]
    judge = FakeJudge(
        [
            "yes, a\nno, b",  # 2/2 correct
            JudgeFailure("HTTP 500"),  # transport failure
            "garbage",
            "still garbage",
            "nope",  # unparseable 3 times
            "Yes\nyes",  # 1/2 correct
        ]
    )
    scorer = TIIFScorer(judge, "sys", TEMPLATES, protocol="tiif", max_attempts=3)
    image = Image.new("RGB", (8, 8))
    records = scorer.score_images(samples, [image] * 4)
    assert [r["failed"] for r in records] == [False, True, True, False]
    assert records[1]["reason"] == "HTTP 500"
    assert "unparseable after 3 attempts" in records[2]["reason"]
    counts, n_scored, n_failed = pooled_counts(records)
    assert counts == {("text", "short"): (3, 4)} and (n_scored, n_failed) == (2, 2)
    messages, decoding = judge.calls[0]
    assert decoding["temperature"] == 0.0
    assert messages[1]["content"][0]["text"] == "A\nq1\nq2"


def test_benchmark_aggregate_reports_counts(tmp_path: Path) -> None:
    bench = TIIF(tmp_path, protocol="tiif")
    records = [
        {"dimension": "text", "length": "short", "correct": 1, "total": 3, "failed": False},
        {"dimension": "text", "length": "short", "failed": True, "reason": "timeout"},
    ]
    out = bench.aggregate(records)
    assert out["n_failed"] == 1 and out["n_scored"] == 1
    assert out["Text (short)"] == pytest.approx(100 / 3)
    assert out["Overall (short)"] == pytest.approx(100 / 3)
    assert out["Overall (long)"] is None
    assert set(bench.columns) <= set(out)


def test_official_protocol_uses_seeded_random_templates() -> None:
    samples = [_sample(["q"], ["yes"], idx=i) for i in range(12)]
    image = Image.new("RGB", (4, 4))

    def run() -> list[str]:
        judge = FakeJudge(["yes"] * 12)
        TIIFScorer(judge, "s", TEMPLATES, protocol="tiif@official", seed=7).score_images(
            samples, [image] * 12
        )
        assert all(d["temperature"] == 1.0 for _, d in judge.calls)
        return [m[1]["content"][0]["text"][0] for m, _ in judge.calls]

    first = run()
    assert first == run()  # reproducible
    assert len(set(first)) > 1  # but not a single fixed template


# ------------------------------------------------------------------------------------- tiny judge


@needs_data
def test_tiny_judge_end_to_end(tiny_judge) -> None:
    bench = TIIF(DATA)
    samples = bench.samples()[:2]
    scorer = bench.make_scorer(judge=tiny_judge, max_tokens=12, max_attempts=2)
    records = scorer.score_images(samples, [Image.new("RGB", (32, 32), "red")] * 2)
    assert all(r["failed"] is False or r["reason"] for r in records)
    out = bench.aggregate(records)
    assert out["n_scored"] + out["n_failed"] == 2 and set(bench.columns) <= set(out["table"])
