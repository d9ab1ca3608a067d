"""GEdit-Bench: VIEScore parsing and statistics against the official fixtures, data, scorer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT
from fixture_paths import SHARED
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.benchmarks.gedit import GEdit
from evalkit.benchmarks.gedit.aggregate import aggregate_records, summarize
from evalkit.benchmarks.gedit.data import TASK_TYPES, export_rows
from evalkit.benchmarks.gedit.official import load_official_csvs
from evalkit.benchmarks.gedit.parse import parse_reply
from evalkit.benchmarks.gedit.scorer import GEditScorer, vie_evaluate
from evalkit.errors import DataError
from evalkit.judges.base import JudgeFailure

FIXTURES = FIXTURE_ROOT / "gedit_bench"
DATA = SHARED / "benchmarks"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared GEdit fixtures absent")
needs_prompts = pytest.mark.skipif(not (DATA / "gedit_bench").is_dir(), reason="shared GEdit prompts absent")
# Every run folder under aggregation/, whatever it is called.
RUNS = (
    sorted(p.name for p in (FIXTURES / "aggregation").iterdir() if p.is_dir())
    if (FIXTURES / "aggregation").is_dir()
    else []
)


def close(got: float | None, expected: float | None) -> bool:
    if expected is None:
        return got is None
    return got is not None and abs(got - expected) <= 1e-6


class ScriptedJudge:
    """Answers SC requests (two images) and PQ requests (one image) from per-call scripts."""

    name = "scripted"

    def __init__(self, sc: list[Any], pq: list[Any]):
        self.sc, self.pq = list(sc), list(pq)
        self.sizes: list[list[tuple[int, int]]] = []
        self.texts: list[str] = []
        self.n_sc = self.n_pq = 0

    def config(self) -> dict[str, Any]:
        return {"model": "scripted"}

    def yes_probability(self, image: Image.Image, questions: list[str]) -> list[float]:
        raise JudgeFailure("not used")

    def chat(self, messages: list[dict[str, Any]], *, validate: Any = None, **decoding: Any) -> str:
        parts = messages[-1]["content"]
        images = [p["image"] for p in parts if p["type"] == "image"]
        self.sizes.append([im.size for im in images])
        self.texts.append(parts[0]["text"])
        if len(images) == 2:
            self.n_sc += 1
            reply = self.sc.pop(0)
        else:
            self.n_pq += 1
            reply = self.pq.pop(0)
        if isinstance(reply, JudgeFailure):
            raise reply
        return reply


def _result(parsed) -> Any:
    """The fixture's encoding of a parse result."""
    if parsed.rate_limited:
        return "rate_limit_exceeded"
    if parsed.random_fallback:
        return None
    return parsed.data if parsed.ok else False


# ------------------------------------------------------------------------------------------ parsing


@needs_fixtures
def test_reply_parsing_matches_official() -> None:
    data = json.loads((FIXTURES / "judge_reply_parsing.json").read_text())
    for case in data["cases"]:
        cid, reply = case["case_id"], case["reply"]
        assert _result(parse_reply(reply)) == case["parse_first_attempt"]["result"], cid
        give_up = parse_reply(reply, give_up=True)
        assert _result(give_up) == case["parse_give_up_attempt"]["result"], cid
        assert give_up.random_fallback == case["parse_give_up_attempt"]["random_fallback"], cid


@needs_fixtures
def test_vie_evaluate_matches_official_or_records_failure() -> None:
    data = json.loads((FIXTURES / "judge_reply_parsing.json").read_text())
    for case in data["cases"]:
        exp = case["vie_evaluate_with_fixed_pq"]
        out = vie_evaluate(lambda c=case: c["reply"], lambda: data["fixed_pq_reply"])
        status = "would_retry_forever" if out.status == "unparseable" else out.status
        assert status == exp["status"], case["case_id"]
        if status == "ok":
            assert (out.sc, out.pq) == (exp["SC"], exp["PQ"]) and close(out.o, exp["O"]), case["case_id"]
        else:
            assert out.sc is None and out.o is None and out.reason, case["case_id"]  # never a random number
        if status != "would_retry_forever":  # the official loop never stops; the stub stopped at 3
            assert out.sc_requests == exp["sc_requests"], case["case_id"]
        if status == "exception" and "rate_limit" in exp["exception"]:
            assert out.reason == exp["exception"]


# -------------------------------------------------------------------------------------- statistics


def _check_statistics(records: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    full, inter = aggregate_records(records), aggregate_records(records, intersection_only=True)
    for name, got, exp_tasks, exp_overall in (
        ("fullset", full, expected["per_task"], expected["overall"]),
        ("intersection", inter, expected["per_task_intersection"], expected["overall_intersection"]),
    ):
        assert set(exp_tasks) == set(TASK_TYPES)
        for task, values in exp_tasks.items():
            for m in ("SC", "PQ", "O"):
                assert close(got["per_task"][task][m], values[m]), (name, task, m)
        for m in ("SC", "PQ", "O"):
            assert close(got["overall"][m], exp_overall[m]), (name, m)


@needs_fixtures
@pytest.mark.parametrize("run", RUNS)
def test_statistics_from_official_csvs(run: str) -> None:
    spec = json.loads((FIXTURES / "aggregation" / run / "run.json").read_text())
    records = load_official_csvs(FIXTURES / "aggregation" / run / "official_csv", spec["model_name"])
    _check_statistics(records, spec["expected"])


@needs_fixtures
@needs_prompts
@pytest.mark.parametrize("run", RUNS)
def test_scorer_replays_official_run(tmp_path: Path, run: str) -> None:
    """Every sample through GEditScorer with the scripted replies, then the official statistics."""
    spec = json.loads((FIXTURES / "aggregation" / run / "run.json").read_text())
    source_path = tmp_path / "src.png"
    Image.new("RGB", (24, 16), "gray").save(source_path)
    bench = GEdit(DATA)
    records = []
    for s in spec["samples"]:
        if s["edited_image_missing"]:  # the official script skips it; nothing to score
            assert s["expected"]["in_csv"] is False
            continue
        judge = ScriptedJudge(s["sc_call_replies"], s["pq_call_replies"])
        scorer = bench.make_scorer(judge=judge)
        meta = {
            "task_type": s["task_type"],
            "key": s["key"],
            "language": s["instruction_language"],
            "intersection": s["Intersection_exist"],
        }
        sample = Sample(id=s["key"], prompt=s["instruction"], metadata=meta, input_image=source_path)
        (rec,) = scorer.score_images([sample], [Image.new("RGB", (10, 10), "white")])
        exp = s["expected"]
        assert rec["failed"] is False, rec
        assert (rec["SC"], rec["PQ"]) == (exp["SC"], exp["PQ"]) and close(rec["O"], exp["O"]), s["sample_no"]
        assert (str(rec["SC"]), str(rec["PQ"])) == (exp["csv_sementics_score"], exp["csv_quality_score"])
        assert (judge.n_sc, judge.n_pq) == (s["n_sc_calls_made"], s["n_pq_calls_made"])
        assert judge.sizes[0] == [(24, 16), (24, 16)] and judge.sizes[1] == [(24, 16)]  # resized to source
        assert s["instruction"] in judge.texts[0] and "<instruction>" not in judge.texts[0]
        records.append(rec)
    _check_statistics(records, spec["expected"])
    out = bench.aggregate(records)
    assert close(out["G_O"], spec["expected"]["overall"]["O"]) and out["n_failed"] == 0


# ------------------------------------------------------------------------------------------ failures


@needs_prompts
def test_unparseable_and_transport_failures_are_counted_not_scored(tmp_path: Path) -> None:
    source_path = tmp_path / "src.png"
    Image.new("RGB", (8, 8)).save(source_path)
    bench = GEdit(DATA)
    samples = [
        Sample(
            id=f"s{i}",
            prompt="Make it red",
            input_image=source_path,
            metadata={"task_type": "color_alter", "key": f"k{i}", "language": "en", "intersection": True},
        )
        for i in range(3)
    ]
    judge = ScriptedJudge(
        sc=['{"score": [8, 6], "reasoning": "ok"}', "no idea", "still no idea", JudgeFailure("timeout")],
        pq=['{"score": [9, 7], "reasoning": "ok"}', '{"score": [5, 5]}', '{"score": [5, 5]}'],
    )
    records = bench.make_scorer(judge=judge).score_images(samples, [Image.new("RGB", (4, 4))] * 3)
    assert [r["failed"] for r in records] == [False, True, True]
    assert records[1]["status"] == "random_fallback" and "SC" not in records[1]
    assert records[2]["reason"] == "timeout"
    out = summarize(records)
    assert out["n_failed"] == 2 and out["n_scored"] == 1
    assert out["table"] == {"G_SC": None, "G_PQ": None, "G_O": None}
    assert out["fullset"]["per_task"]["color_alter"] == {
        "SC": 6,
        "PQ": 7,
        "O": pytest.approx(42**0.5),
        "n": 1,
    }
    assert out["G_O"] is None  # ten task types have no score: the macro mean is undefined


def test_overall_is_unweighted_mean_over_task_types() -> None:
    records = []
    for i, task in enumerate(TASK_TYPES):
        for sc, pq in ((i, 4.0), (i + 1, 9.0)):
            records.append(
                {"task_type": task, "language": "en", "intersection": i % 2 == 0, "SC": sc, "PQ": pq}
            )
    records.append({"task_type": "ps_human", "language": "cn", "intersection": True, "SC": 0, "PQ": 0})
    out = summarize(records)
    per_task_o = [((i * 4) ** 0.5 + ((i + 1) * 9) ** 0.5) / 2 for i in range(len(TASK_TYPES))]
    assert out["G_O"] == pytest.approx(sum(per_task_o) / len(per_task_o))
    assert out["G_SC"] == pytest.approx(sum(i + 0.5 for i in range(11)) / 11)
    assert out["intersection"]["overall"]["O"] is None  # odd tasks have no intersection rows
    assert out["n_records"] == 22  # the cn row is another language
    assert summarize(records, language="cn")["fullset"]["per_task"]["ps_human"]["n"] == 1


# -------------------------------------------------------------------------------------------- data


def _hub_rows() -> list[dict[str, Any]]:
    rows = []
    for i, task in enumerate(TASK_TYPES[:3]):
        for lang in ("en", "cn"):
            rows.append(
                {
                    "task_type": task,
                    "key": f"key{i}",
                    "instruction": f"{lang} edit {i}",
                    "instruction_language": lang,
                    "Intersection_exist": i == 0,
                    "input_image": Image.new("RGB", (8, 6), (i, 0, 0)),
                    "input_image_raw": None,
                }
            )
    return rows


def test_local_copy_export_and_samples(tmp_path: Path) -> None:
    root = tmp_path / "gedit_bench"
    assert export_rows(_hub_rows(), root) == 6
    samples = GEdit(tmp_path).samples()
    assert [s.prompt for s in samples] == ["en edit 0", "en edit 1", "en edit 2"]
    assert samples[0].input_image is not None and Image.open(samples[0].input_image).size == (8, 6)
    assert len(GEdit(tmp_path, subset="intersection").samples()) == 1
    assert len(GEdit(tmp_path, language="cn").samples()) == 3


def test_malformed_data_line_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "gedit_bench"
    export_rows(_hub_rows(), root)
    lines = (root / "data.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"task_type": "color_alter", "key": "x"})
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"data\.jsonl:4: missing field"):
        GEdit(tmp_path).samples()
    with pytest.raises(DataError, match="evalkit data fetch gedit"):
        GEdit(tmp_path / "nowhere").samples()


def test_scorer_config_records_decoding() -> None:
    scorer = GEditScorer(ScriptedJudge([], []), "SC <instruction>", "PQ")
    assert scorer.config()["temperature"] == 0.0 and scorer.config()["rounds"] == 2


def test_second_round_bare_list_is_scored_not_randomized() -> None:
    sc = iter(["no idea", "[6, 8]"])
    pq = iter(['{"score": [7]}', '{"score": [9]}'])
    out = vie_evaluate(lambda: next(sc), lambda: next(pq))
    assert out.status == "ok" and (out.sc, out.pq) == (6, 9)
    assert out.official_random == ("SC",)  # the official give-up parsing would have drawn a random SC


# ------------------------------------------------------------------------------------- tiny judge


@needs_prompts
def test_tiny_judge_end_to_end(tmp_path: Path, tiny_judge) -> None:
    export_rows(_hub_rows(), tmp_path / "gedit_bench")
    shutil.copytree(DATA / "gedit_bench" / "judge_prompts", tmp_path / "gedit_bench" / "judge_prompts")
    bench = GEdit(tmp_path)
    scorer = bench.make_scorer(judge=tiny_judge, max_tokens=8)
    records = scorer.score_images(bench.samples()[:1], [Image.new("RGB", (16, 12), "green")])
    assert all(r["failed"] is False or r["reason"] for r in records)
    out = bench.aggregate(records)
    assert out["n_scored"] + out["n_failed"] == 1
