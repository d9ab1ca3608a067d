"""WISE: official score-file aggregation and reply parsing, data loading, scorer with a fake judge."""

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
from evalkit.benchmarks.wise import WISE
from evalkit.benchmarks.wise.aggregate import wiscore
from evalkit.benchmarks.wise.data import BAGEL_UNWEIGHTED_KEY
from evalkit.benchmarks.wise.official import official_calculate
from evalkit.benchmarks.wise.parse import parse_legacy_reply, parse_verified_reply, reply_accepted
from evalkit.benchmarks.wise.scorer import WISEScorer
from evalkit.errors import DataError
from evalkit.judges.base import JudgeFailure

FIXTURES = FIXTURE_ROOT / "wise"
DATA = SHARED / "benchmarks"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared WISE fixtures absent")
needs_data = pytest.mark.skipif(not (DATA / "wise").is_dir(), reason="shared WISE data absent")


def assert_matches(got: Any, expected: Any, path: str = "") -> None:
    """Floats within 1e-6, None = no value, everything else exact; only expected keys are checked."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), path
        assert set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for k, v in expected.items():
            assert_matches(got[k], v, f"{path}/{k}")
    elif expected is None:
        assert got is None or (isinstance(got, float) and math.isnan(got)), f"{path}: {got} != None"
    elif isinstance(expected, float):
        assert got is not None and abs(got - expected) <= 1e-6, f"{path}: {got} != {expected}"
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


# ------------------------------------------------------------------------------------------ parity


@needs_fixtures
@pytest.mark.parametrize(
    "scenario",
    sorted(json.loads((FIXTURES / "calculate" / "expected.json").read_text()) if FIXTURES.is_dir() else {}),
)
def test_official_calculate_matches_fixture(scenario: str) -> None:
    spec = json.loads((FIXTURES / "calculate" / "expected.json").read_text())[scenario]
    files = [FIXTURES / f for f in spec["input_files"]]
    got = official_calculate(files, spec["category_arg"])
    expected = {k: v for k, v in spec["expected"].items() if k != "stdout"}
    if got["per_file_reports"] is not None:  # the fixture names reports '<scenario>__<file name>'
        got["per_file_reports"] = {
            f"{scenario}__{Path(k).name}": v for k, v in got["per_file_reports"].items()
        }
    for key, value in expected.items():
        assert_matches(got[key], value, f"{scenario}/{key}")


@needs_fixtures
def test_legacy_reply_parsing_matches_official() -> None:
    data = json.loads((FIXTURES / "judge_reply_parsing.json").read_text())
    assert sorted(data["required_keys"]) == ["aesthetic_quality", "consistency", "realism"]
    for case in data["cases"]:
        scores = parse_legacy_reply(case["reply"])
        assert scores == case["expected"]["scores"], case["case_id"]
        assert reply_accepted(scores, "wise@legacy") == case["expected"]["accepted"], case["case_id"]


def test_all_twos_give_official_float() -> None:
    assert wiscore(2, 2, 2) == 0.9999999999999999


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 1", {"score": 1.0}),
        ("<think>maybe Score: 0</think>\n**Score**: 1", {"score": 1.0}),
        ("0", {"score": 0.0}),
        ("1\n0", {}),
        ("Score: 2", {}),
        ("I cannot judge this.", {}),
    ],
)
def test_verified_reply_parsing(reply: str, expected: dict[str, float]) -> None:
    assert parse_verified_reply(reply) == expected


def test_verified_calculate_keeps_partial_results(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    lines = [{"prompt_id": i, "score": 1 if i % 2 else 0} for i in range(1, 1001) if i != 5]
    lines.append({"prompt_id": 6, "score": 0.5})  # outside {0, 1}: skipped
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = official_calculate([path], "all", protocol="wise@verified")
    assert got["status"] == "ok" and got["missing_prompt_ids"] == [5]
    assert got["category_num_samples"]["CULTURE"] == 399
    cats = got["category_scores"]
    assert got["overall_wiscore"] == pytest.approx(
        0.4 * cats["CULTURE"]
        + 0.12 * sum(cats[c] for c in ("TIME", "SPACE", "BIOLOGY", "PHYSICS", "CHEMISTRY"))
    )


# -------------------------------------------------------------------------------------------- data


@needs_data
@pytest.mark.parametrize(
    ("protocol", "time_range"), [("wise@legacy", (401, 567)), ("wise@verified", (401, 520))]
)
def test_samples_and_categories(protocol: str, time_range: tuple[int, int]) -> None:
    samples = WISE(DATA, protocol=protocol).samples()
    assert [s.metadata["prompt_id"] for s in samples] == list(range(1, 1001))
    time_ids = [s.metadata["prompt_id"] for s in samples if s.metadata["category"] == "TIME"]
    assert (min(time_ids), max(time_ids)) == time_range


@needs_data
def test_think_is_passed_through() -> None:
    bench = WISE(DATA, think=True)
    presets = {
        "generation_presets": WISE.generation_presets
    }  # BAGEL's WISE settings travel with each request
    assert bench.request_options(bench.samples()[0]) == {"think": True, **presets}
    assert WISE(DATA).request_options(bench.samples()[0]) == presets


@needs_data
def test_malformed_prompt_file_is_a_data_error(tmp_path: Path) -> None:
    shutil.copytree(DATA / "wise", tmp_path / "wise")
    bad = tmp_path / "wise" / "legacy" / "natural_science.json"
    bad.chmod(0o644)
    bad.write_text('[\n{"Prompt": "x",\n oops}\n]')
    with pytest.raises(DataError, match=r"natural_science\.json:3"):
        WISE(tmp_path).samples()
    bad.write_text(
        '[\n  {"Prompt": "a", "Explanation": "b", "Subcategory": "c", "prompt_id": 701},\n'
        '  {"Prompt": "a", "Explanation": "b", "Subcategory": "c", "prompt_id": "702"}\n]'
    )
    with pytest.raises(DataError, match=r"natural_science\.json:3: 'prompt_id'"):
        WISE(tmp_path).samples()


# ------------------------------------------------------------------------------------------ scorer


@needs_data
def test_scorer_retries_counts_failures_and_aggregates() -> None:
    bench = WISE(DATA, protocol="wise@legacy")
    samples = bench.samples()[:3]
    judge = FakeJudge(
        [
            "Consistency: 2\nRealism: 1\nAesthetic Quality: 1",  # sample 1, first try
            "Consistency: 1",  # sample 2: incomplete or off the 0-2 scale three times -> failure
            "nothing",
            "Consistency: 3\nRealism: 1\nAesthetic Quality: 1",
            JudgeFailure("timeout"),  # sample 3: transport failure
        ]
    )
    scorer = bench.make_scorer(judge=judge)
    records = scorer.score_images(samples, [Image.new("RGB", (8, 8))] * 3)
    assert [r["failed"] for r in records] == [False, True, True]
    assert records[0]["wiscore"] == pytest.approx((0.7 * 2 + 0.2 + 0.1) / 2)
    assert records[1]["attempts"] == 3 and "out of range ['consistency']" in records[1]["reason"]
    assert records[2]["reason"] == "timeout"
    messages, decoding = judge.calls[0]
    assert decoding == {"temperature": 0.0, "max_tokens": 2000}
    assert samples[0].prompt in messages[1]["content"][0]["text"]
    assert "{Prompt}" not in messages[1]["content"][0]["text"]
    out = bench.aggregate(records)
    assert out["n_failed"] == 2 and out["n_scored"] == 1 and out["n_missing"] == 999
    assert out["Cultural"] == pytest.approx(records[0]["wiscore"])
    assert out["Overall"] is None  # not every category has a score


def test_aggregate_weighted_and_bagel_unweighted(tmp_path: Path) -> None:
    bench = WISE(tmp_path, protocol="wise@legacy")
    # one image per category, each category a different score
    ids = {"Cultural": 1, "Time": 401, "Space": 600, "Biology": 701, "Physics": 801, "Chemistry": 901}
    scores = {"Cultural": 0.5, "Time": 0.2, "Space": 0.3, "Biology": 0.9, "Physics": 0.4, "Chemistry": 0.1}
    records = [{"prompt_id": ids[c], "wiscore": scores[c], "failed": False} for c in ids]
    out = bench.aggregate(records)
    assert out["Overall"] == pytest.approx(0.4 * 0.5 + 0.167 * 0.2 + 0.133 * 0.3 + 0.1 * (0.9 + 0.4 + 0.1))
    assert out[BAGEL_UNWEIGHTED_KEY] == pytest.approx(sum(scores.values()) / 6)
    assert BAGEL_UNWEIGHTED_KEY not in bench.columns
    assert all(out[c] == pytest.approx(scores[c]) for c in ids)


def test_verified_scorer_uses_binary_score(tmp_path: Path) -> None:
    scorer = WISEScorer(
        FakeJudge(["<think>hmm</think>Score: 1"]),
        "sys",
        "P={Prompt} E={Explanation}",
        protocol="wise@verified",
    )
    sample = Sample(
        id="641",
        prompt="a plant",
        metadata={"prompt_id": 641, "category": "BIOLOGY", "subcategory": "x", "explanation": "bends"},
    )
    (record,) = scorer.score_images([sample], [Image.new("RGB", (4, 4))])
    assert record["failed"] is False and record["wiscore"] == 1.0
    assert scorer.judge.calls[0][1] == {"temperature": 0.0, "max_tokens": 500}
    assert scorer.judge.calls[0][0][1]["content"][0]["text"] == "P=a plant E=bends"


def test_official_calculate_drops_a_file_with_a_non_object_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"prompt_id": 1, "consistency": 2, "realism": 2, "aesthetic_quality": 2}) + "\n"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt_id": 2, "consistency": 0, "realism": 0, "aesthetic_quality": 0}) + "\n[1]\n"
    )
    got = official_calculate([good, bad], "culture")
    assert got["status"] == "categories_only"
    assert got["category_num_samples"] == {"CULTURE": 1} and list(got["per_file_reports"]) == [str(good)]
    assert official_calculate([bad], "culture")["status"] == "no_valid_data"


# ------------------------------------------------------------------------------------- tiny judge


@needs_data
def test_tiny_judge_end_to_end(tiny_judge) -> None:
    bench = WISE(DATA)
    scorer = bench.make_scorer(judge=tiny_judge, max_tokens=8, max_attempts=1)
    records = scorer.score_images(bench.samples()[:1], [Image.new("RGB", (32, 32), "blue")])
    assert all(r["failed"] is False or r["reason"] for r in records)
    out = bench.aggregate(records)
    assert out["n_scored"] + out["n_failed"] == 1 and list(out["table"]) == bench.columns
