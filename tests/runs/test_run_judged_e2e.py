"""Judge-scored benchmarks end to end through the real CLI: TIIF-Bench, WISE, DPG-Bench and GEdit-Bench-EN
on the tiny SD3 generators and the tiny random Qwen2-VL judge, the HTTP judge path with injected faults,
the judge cache, API-key hygiene, capability errors and the TIIF re-scoring of released judgments.

Numbers from the random models are noise: the tests check the plumbing (what is written, counted and
refused), and exact values only where the judge's replies are known (the scripted judge model).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT
from judged_helpers import (
    BENCHMARKS,
    GEDIT_ROWS,
    ScriptedVLM,
    build_data_dir,
    build_thinker,
    noise_image,
)
from PIL import Image

from evalkit.runs import Run, read_jsonl

if not (BENCHMARKS / "tiif_bench").is_dir() or not (BENCHMARKS / "wise").is_dir():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
for _module in ("diffusers", "transformers", "torchvision", "openai"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is needed", allow_module_level=True)

TIIF_FIXTURES = FIXTURE_ROOT / "tiif_bench"
SECRET = "sk-evalkit-e2e-5f3c9a0d1e2b4c6a"
FAST_CHAT = ["--score-option", "max_tokens=8"]  # the random judge's replies are noise: keep them short


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return build_data_dir(tmp_path_factory.mktemp("judged"))


def _run_dir(runs: Path, protocol: str) -> Path:
    (run_dir,) = (runs / protocol).iterdir()
    return run_dir


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def _check_counts(run_dir: Path, planned: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every planned image has one record; failures carry a reason and no score, and are counted."""
    records = sorted(read_jsonl(run_dir / "records.jsonl"), key=lambda r: r["id"])
    summary = _summary(run_dir)
    failed = [r for r in records if r["failed"]]
    assert len(records) == planned == summary["n_planned"] == summary["n_records"]
    assert summary["n_failed"] == len(failed)
    assert summary["n_scored"] == planned - len(failed) - summary["n_left_out"]
    assert sum(summary["failure_reasons"].values()) == len(failed)
    for r in failed:
        assert r["reason"]
        assert not {"correct", "wiscore", "SC", "PQ", "O", "score", "cell_score"} & set(r)
    return records, summary


def _footnotes(stdout: str) -> str:
    return " ".join(stdout.split())  # rich wraps long lines


# --------------------------------------------------------------------------------------- TIIF-Bench


def test_tiif_short_and_long_testmini(cli, data, tmp_path):
    runs = tmp_path / "runs"
    args = ["run", "tiif", "--model", "tiny-sd3", "--judge", "tiny", "--limit", 3, *FAST_CHAT]
    args += ["--score-option", "max_attempts=1", "--bench-option", "split=testmini"]
    code, out, err = cli(*args, "--data-dir", data, "--runs-dir", runs)
    assert code == 0, err
    run_dir = _run_dir(runs, "tiif")
    records, summary = _check_counts(run_dir, planned=3)
    # samples are (prompt, length) pairs: the first prompt in both lengths, then the next one short
    assert [(r["dimension"], r["line_idx"], r["length"]) for r in records] == [
        ("2d_spatial_relation", 0, "long"),
        ("2d_spatial_relation", 0, "short"),
        ("2d_spatial_relation", 1, "short"),
    ]
    assert all(r["protocol"] == "tiif" for r in records)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == sorted(r["sample_id"] for r in records)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["bench_options"] == {"split": "testmini"} and info["limit"] == 3
    assert info["scoring"]["judge"]["spec"] == "tiny"
    assert info["scorer"]["temperature"] == 0.0 and info["scorer"]["templates"] == "raw_prompt.txt"
    assert list(summary["table"])[:2] == ["Overall (short)", "Overall (long)"]
    text = _footnotes(out)
    assert "protocol: tiif" in text and "random weights" in text
    if summary["n_failed"]:  # the random judge rarely writes three yes/no lines
        assert (
            f"{summary['n_failed']} judge failures (not scored; {summary['n_scored']}/3 images scored)"
            in text
        )
    if summary["n_scored"] == 0:
        assert summary["table"]["Overall (short)"] is None


@pytest.mark.parametrize("protocol", ["tiif", "tiif@official"])
def test_tiif_known_replies_give_the_official_table(cli, data, tmp_path, protocol):
    """A judge that answers the ground truth on the short-description image and flips its first answer
    on the long one: accuracies are then known exactly, whichever template the protocol picks."""
    from evalkit.judges.messages import image_sha256
    from evalkit.judges.server import JudgeServer

    runs = tmp_path / "runs"
    code, _, err = cli(
        "gen", protocol, "--model", "tiny-sd3", "--limit", 2, "--data-dir", data, "--runs-dir", runs
    )
    assert code == 0, err
    run_dir = _run_dir(runs, protocol)
    run = Run(run_dir)
    ids = sorted(p.name for p in (run_dir / "samples").iterdir())  # one prompt, long and short
    meta = json.loads(
        (BENCHMARKS / "tiif_bench" / "testmini_eval_prompts" / "2d_spatial_relation_eval_prompts.jsonl")
        .read_text()
        .splitlines()[0]
    )
    gt = [a.lower() for a in meta["yn_answer_list"]]
    length_of = {image_sha256(run.load_image(i, 0)): i.split("__")[1] for i in ids}

    def reply(text: str, images: list[Image.Image]) -> str:
        assert all(q in text for q in meta["yn_question_list"])
        (image,) = images
        flipped = [{"yes": "no", "no": "yes"}[gt[0]], *gt[1:]]
        return "\n".join(gt if length_of[image_sha256(image)] == "short" else flipped)

    with JudgeServer(ScriptedVLM("scripted-judge", reply)) as server:
        args = [
            "score",
            run_dir,
            "--data-dir",
            data,
            "--judge",
            "openai:scripted-judge",
            "--judge-url",
            server.url,
        ]
        code, out, err = cli(*args)
        assert code == 0, err
    records, summary = _check_counts(run_dir, planned=2)
    assert summary["n_failed"] == 0
    long, short = records  # sorted by id: __long__ before __short__
    assert (short["correct"], long["correct"], short["total"]) == (len(gt), len(gt) - 1, len(gt))
    table = summary["table"]
    assert table["Overall (short)"] == 100.0 and table["Basic_Relation (short)"] == 100.0
    share = (len(gt) - 1) / len(gt)  # 2/3: the official Excel round trip keeps 4 decimals of it
    expected_long = 100 * (round(share, 4) if protocol == "tiif@official" else share)
    assert table["Overall (long)"] == pytest.approx(expected_long, abs=1e-9)
    assert table["Basic_Attribute (short)"] is None  # dimensions without images are skipped, not zero
    scorer = json.loads((run_dir / "run.json").read_text())["scorer"]
    official = protocol == "tiif@official"
    assert scorer["temperature"] == (1.0 if official else 0.0)
    assert scorer["templates"] == ("random of 3" if official else "raw_prompt.txt")


def test_tiif_import_judgments_reproduces_official_summaries(cli, tmp_path):
    if not TIIF_FIXTURES.is_dir():
        pytest.skip("TIIF-Bench fixtures absent")
    root = tmp_path / "judgments"
    shutil.copytree(TIIF_FIXTURES / "inputs", root)
    for name, spec in json.loads((root / "derived_models.json").read_text()).items():
        for judge in spec["for_judges"]:
            shutil.copytree(root / judge / spec["copy_of"], root / judge / name)
            for rel in spec["then_delete"]:
                shutil.rmtree(root / judge / name / rel)
    expected = json.loads((TIIF_FIXTURES / "expected.json").read_text())
    for judge, models in expected.items():
        out_file = tmp_path / f"{judge}.json"
        code, out, err = cli("score", "tiif", "--import-judgments", root / judge, "--out", out_file)
        assert code == 0, err
        got = json.loads(out_file.read_text())
        assert set(got) == set(models)
        for model, exp in models.items():
            _assert_matches(got[model], exp, f"{judge}/{model}")
            assert model in out
    code, out, _ = cli("score", "tiif", "--import-judgments", root / "GPT-4o" / "Janus-Pro")
    assert code == 0
    header, row = out.strip().splitlines()
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert cells["Overall (short)"] == "66.67" and cells["Overall (long)"] == "65.19"
    code, _, err = cli("score", "wise", "--import-judgments", root)
    assert code == 2 and err.strip() == "error: --import-judgments is only for tiif"
    # the released judgments of the data folder: every model, and the spec's anchors
    released = BENCHMARKS / "tiif_bench" / "released_judgments" / "GPT-4o"
    code, out, err = cli("score", "tiif", "--import-judgments", released)
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    table = {row.split("\t")[0]: dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows}
    assert set(table) == {p.name for p in released.iterdir() if p.is_dir()}
    assert (table["sd35"]["Overall (short)"], table["sd35"]["Overall (long)"]) == ("71.66", "67.42")
    assert (table["GPT-4o"]["Overall (short)"], table["GPT-4o"]["Overall (long)"]) == ("89.32", "88.46")


def _assert_matches(got: Any, expected: Any, path: str) -> None:
    """The fixture's comparison rules: floats within 1e-6, null = no value, the rest exact."""
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert key in got, f"{path}/{key} missing"
            _assert_matches(got[key], value, f"{path}/{key}")
    elif expected is None:
        assert got is None or (isinstance(got, float) and math.isnan(got)), path
    elif isinstance(expected, float):
        assert got is not None and abs(got - expected) <= 1e-6, f"{path}: {got} != {expected}"
    else:
        assert got == expected, path


# --------------------------------------------------------------------------------------------- WISE


@pytest.mark.parametrize("protocol", ["wise@legacy", "wise@verified"])
def test_wise_legacy_and_verified(cli, data, tmp_path, protocol):
    runs = tmp_path / "runs"
    args = ["run", protocol, "--model", "tiny-sd3", "--judge", "tiny", "--limit", 2, *FAST_CHAT]
    code, out, err = cli(*args, "--score-option", "max_attempts=1", "--data-dir", data, "--runs-dir", runs)
    assert code == 0, err
    run_dir = _run_dir(runs, protocol)
    records, summary = _check_counts(run_dir, planned=2)
    assert [r["prompt_id"] for r in records] == [1, 2] and {r["category"] for r in records} == {"CULTURE"}
    assert summary["protocol"] == protocol and list(summary["table"])[-1] == "Overall"
    assert summary["table"]["Overall"] is None  # five categories have no image: no weighted overall
    assert json.loads((run_dir / "run.json").read_text())["scorer"]["max_tokens"] == 8
    assert f"protocol: {protocol}" in _footnotes(out)


def test_think_is_refused_by_diffusers_generators_before_any_work(cli, data, tmp_path):
    runs = tmp_path / "runs"
    base = ["--data-dir", data, "--runs-dir", runs, "--limit", 1]
    code, _, err = cli("run", "wise", "--model", "tiny-sd3", "--think", "--judge", "tiny", *base)
    assert code == 2
    assert err.strip() == (
        "error: tiny-sd3 has no think mode; drop --think (or the benchmark's think option) for this model"
    )
    code, _, err = cli("gen", "wise", "--model", "tiny-sd3", "--bench-option", "think=true", *base)
    assert code == 2 and "has no think mode" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "wise", "--model", "tiny-sd3", *base)  # no --judge: refused up front
    assert code == 2 and err.startswith("error: wise is scored by a judge: pass --judge")
    assert not runs.exists()


def test_think_reaches_generators_that_support_it(cli, data, tmp_path, monkeypatch):
    from evalkit import pipeline, registry
    from evalkit.benchmarks.wise import WISE
    from evalkit.generators.base import ModelSpec

    monkeypatch.setitem(registry.MODELS, "thinker", registry.Entry("judged_helpers:build_thinker", "test"))
    runs = tmp_path / "runs"
    code, out, err = cli(
        "gen", "wise", "--model", "thinker", "--think", "--limit", 2, "--data-dir", data, "--runs-dir", runs
    )
    assert code == 0, err
    run = Run(_run_dir(runs, "wise@legacy"))
    assert run.info()["generation"]["options"] == {"think": True}
    assert [run.load_image_meta(i, 0)["think"] for i in ("1", "2")] == ["plan (model option)"] * 2
    # the benchmark's own think option travels with each request
    bench = WISE(data, think=True)
    thinker, run = build_thinker(ModelSpec("thinker")), Run(tmp_path / "run")
    assert pipeline.required_capabilities(bench, bench.samples()[:2]) == {"think"}
    assert pipeline.generate(run, bench, bench.samples()[:2], lambda: thinker, global_seed=0) == 2
    assert [r.options.get("think") for r in thinker.requests] == [True, True]
    assert run.load_image_meta("1", 0)["think"] == "plan (request)"


# ---------------------------------------------------------------------------------------------- DPG


def test_dpg_grid_cells_and_official_compat(cli, data, tmp_path):
    from evalkit.benchmarks.dpg import DPG
    from evalkit.benchmarks.dpg.data import load_questions, split_grid
    from evalkit.benchmarks.dpg.scorer import DPGScorer
    from evalkit.judges import load_judge

    runs = tmp_path / "runs"
    base = ["--model", "tiny-sd3", "--judge", "tiny", "--limit", 2, "--data-dir", data, "--runs-dir", runs]
    code, out, err = cli("run", "dpg", *base)
    assert code == 0, err
    run_dir = _run_dir(runs, "dpg")
    records, summary = _check_counts(run_dir, planned=8)
    assert summary["n_failed"] == 0 and summary["n_images_scored"] == 2
    assert [r["id"] for r in records] == [f"{i}/{k}" for i in ("0", "1") for k in range(4)]
    assert records[0]["pids"] == [1, 2, 3, 4] and records[4]["pids"] == [1, 2, 3, 4]
    # the protocol's saved form: a 2x2 grid next to the cells, pixel-identical to them
    run = Run(run_dir)
    for sample_id in ("0", "1"):
        with Image.open(run_dir / "samples" / sample_id / "grid.png") as grid:
            assert grid.size == (128, 128)
            for k, cell in enumerate(split_grid(grid.convert("RGB"))):
                assert cell.tobytes() == run.load_image(sample_id, k).tobytes()
    # scoring the saved grids gives the run's numbers
    bench = DPG(data)
    scorer = DPGScorer(load_judge("tiny"), load_questions(bench.csv_path), input="grid")
    grid_scores = []
    for sample in bench.samples()[:2]:
        with Image.open(run_dir / "samples" / sample.id / "grid.png") as grid:
            rec = scorer.score_one(sample, grid.convert("RGB"))
        assert rec["cell_scores"] == [r["cell_score"] for r in records if r["sample_id"] == sample.id]
        grid_scores.append(rec["score"])
    assert summary["Overall"] == pytest.approx(100 * sum(grid_scores) / 2)
    # default categories: the dependency-zeroed answers of every cell
    entity = [
        z for r in records for z, l2 in zip(r["zeroed"], r["l2"], strict=True) if l2 == "entity - whole"
    ]
    assert summary["l2_category_scores"]["entity - whole"] == pytest.approx(100 * sum(entity) / len(entity))
    global_ = [r["zeroed"][0] for r in records if r["sample_id"] == "0"]
    assert summary["Global"] == pytest.approx(100 * sum(global_) / 4)

    code, _, err = cli("run", "dpg", *base, "--compat", "official")
    assert code == 0, err
    official_dir = _run_dir(runs, "dpg@official")
    official, osummary = _check_counts(official_dir, planned=8)
    assert osummary["protocol"] == "dpg@official" and osummary["compat"] == "official"
    # the official scorer drops the first CSV row: item 0 loses its only global question ...
    assert official[0]["pids"] == [2, 3, 4] and official[4]["pids"] == [1, 2, 3, 4]
    assert osummary["Global"] is None and "global -" not in osummary["l2_category_scores"]
    # ... and takes categories from the last cell's answers before dependency zeroing
    last = [r for r in official if r["k"] == 3]
    entity = [v for r in last for v, l2 in zip(r["raw"], r["l2"], strict=True) if l2 == "entity - whole"]
    assert osummary["l2_category_scores"]["entity - whole"] == pytest.approx(100 * sum(entity) / len(entity))
    assert "protocol: dpg@official" in _footnotes(cli("report", official_dir)[1])

    code, _, err = cli("run", "dpg", *base, "--score-option", "input=grid", "--seed", 7)
    assert code == 2 and "input=cell" in err and len(err.strip().splitlines()) == 1
    assert len(list((runs / "dpg").iterdir())) == 1  # refused before a new run folder was made


# -------------------------------------------------------------------------------------------- GEdit


def test_gedit_needs_an_editing_generator(cli, data, tmp_path):
    runs = tmp_path / "runs"
    code, _, err = cli(
        "run", "gedit", "--model", "tiny-sd3", "--judge", "tiny", "--data-dir", data, "--runs-dir", runs
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: gedit edits images but tiny-sd3 cannot edit")
    assert not runs.exists()

    args = ["run", "gedit", "--model", "tiny-sd3-edit", "--judge", "tiny", *FAST_CHAT]
    code, out, err = cli(*args, "--data-dir", data, "--runs-dir", runs)
    assert code == 0, err
    run_dir = _run_dir(runs, "gedit")
    records, summary = _check_counts(run_dir, planned=3)  # the Chinese row is not in the EN protocol
    assert [r["key"] for r in records] == ["bg001", "col001", "add001"]
    assert all(r["language"] == "en" for r in records)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["generator"]["pipeline"] == "StableDiffusion3Pipeline"
    assert info["generator"]["edit_pipeline"] == "StableDiffusion3Img2ImgPipeline"
    assert info["generator"]["strength"] == 0.6
    with Image.open(run_dir / "samples" / "background_change__bg001" / "0.png") as edited:
        assert edited.size == (64, 64)
    if summary["n_failed"]:
        assert "judge failures (not scored" in _footnotes(out)


def test_gedit_known_replies_and_what_the_judge_sees(cli, data, tmp_path):
    """VIEScore through the CLI: SC sees [source, edited] and PQ the edited image, both at the source's
    size; per sample SC and PQ are the minimum of their scores and O = sqrt(SC x PQ)."""
    from evalkit.judges.server import JudgeServer

    sizes = {(w, h) for *_, (w, h) in GEDIT_ROWS}
    seen: list[tuple[int, tuple[int, int]]] = []

    def reply(text: str, images: list[Image.Image]) -> str:
        assert {im.size for im in images} <= sizes and len({im.size for im in images}) == 1
        seen.append((len(images), images[0].size))
        if len(images) == 2:  # semantic consistency: [source, edited]
            assert any(instruction in text for _, _, instruction, *_ in GEDIT_ROWS)
            return '{"reasoning": "edited as asked", "score": [6, 9]}'
        return '{"reasoning": "natural, few artifacts", "score": [8, 7]}'

    runs = tmp_path / "runs"
    with JudgeServer(ScriptedVLM("scripted-judge", reply)) as server:
        args = ["run", "gedit", "--model", "tiny-sd3-edit", "--data-dir", data, "--runs-dir", runs]
        code, out, err = cli(*args, "--judge", "openai:scripted-judge", "--judge-url", server.url)
        assert code == 0, err
    assert sorted(seen) == sorted((n, size) for *_, size in GEDIT_ROWS for n in (1, 2))
    records, summary = _check_counts(_run_dir(runs, "gedit"), planned=3)
    assert all((r["SC"], r["PQ"]) == (6, 7) and r["O"] == pytest.approx(math.sqrt(42)) for r in records)
    assert summary["O/background_change"] == pytest.approx(math.sqrt(42))
    assert summary["O/tone_transfer"] is None and summary["G_O"] is None  # 8 task types have no sample
    assert summary["intersection"]["per_task"]["color_alter"]["n"] == 0  # col001 is not in the subset


def test_diffusers_pipelines_that_take_an_image_can_edit(cli, data, tmp_path):
    from diffusers import StableDiffusion3Img2ImgPipeline

    from evalkit.testing.sd3 import default_folder, tiny_sd3_pipeline

    img2img = tmp_path / "tiny-sd3-img2img"
    StableDiffusion3Img2ImgPipeline.from_pipe(tiny_sd3_pipeline()).save_pretrained(img2img)
    runs = tmp_path / "runs"
    base = ["--data-dir", data, "--runs-dir", runs, "--limit", 1]
    for option in ("height=64", "width=64", "num_inference_steps=4"):
        base += ["--option", option]
    code, _, err = cli("gen", "gedit", "--model", f"diffusers:{default_folder()}", *base)
    assert code == 2 and "cannot edit" in err and not runs.exists()
    code, out, err = cli("gen", "gedit", "--model", f"diffusers:{img2img}", *base)
    assert code == 0, err
    run_dir = _run_dir(runs, "gedit")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["generator"]["edit_pipeline"] == "StableDiffusion3Img2ImgPipeline"
    with Image.open(run_dir / "samples" / "background_change__bg001" / "0.png") as edited:
        assert edited.size == (64, 64)


def test_edit_generator_batches_like_one_at_a_time():
    import numpy as np

    from evalkit.errors import EvalkitError
    from evalkit.generators.base import GenerationRequest, ModelSpec
    from evalkit.generators.diffusers_t2i import build, capabilities

    caps = {"think": False, "refine": False, "self_check": False}
    assert capabilities(ModelSpec("tiny-sd3-edit")) == {"edit": True, **caps}
    assert capabilities(ModelSpec("tiny-sd3")) == {"edit": False, **caps}
    with pytest.raises(EvalkitError, match="no think mode"):
        build(ModelSpec("tiny-sd3-edit", options={"think": True}, device="cpu"))
    generator = build(ModelSpec("tiny-sd3-edit", device="cpu"))
    assert generator.supports_edit and not generator.supports_think
    requests = [
        GenerationRequest("make it red", seed=1, input_image=noise_image(1, (40, 56))),
        GenerationRequest("add a cat", seed=2, input_image=noise_image(2, (64, 64))),
    ]
    batched = generator.generate(requests)
    single = [generator.generate_one(r)[0] for r in requests]
    for a, b in zip(batched, single, strict=True):
        assert a.image.size == (64, 64)
        assert np.abs(np.asarray(a.image, dtype=int) - np.asarray(b.image, dtype=int)).max() <= 1
    text_only = generator.generate([GenerationRequest("a red cat", seed=3)])[0]  # it still draws from text
    assert text_only.image.size == (64, 64)


# ------------------------------------------------------------------------------------- HTTP judge


@pytest.fixture
def scripted_server():
    from evalkit.judges.server import JudgeServer

    vlm = ScriptedVLM("scripted-judge", "Consistency: 2\nRealism: 1\nAesthetic Quality: 1")
    with JudgeServer(vlm, fault_delay=5.0, api_key=SECRET) as server:
        yield server


def test_http_judge_faults_cache_and_api_key(cli, data, tmp_path, scripted_server):
    server = scripted_server
    runs = tmp_path / "runs"
    judge = ["--judge", "openai:scripted-judge", "--judge-url", server.url, "--data-dir", data]
    for option in ("timeout=2.0", "max_retries=1", "backoff=0.01", "backoff_max=0.02", "concurrency=1"):
        judge += ["--judge-option", option]
    args = ["run", "wise", "--model", "tiny-sd3", "--limit", 6, "--runs-dir", runs, *judge]
    env = {"OPENAI_API_KEY": SECRET}
    # one request per image (two with the retry): images 1, 3 and 4 fail, 2, 5 and 6 are judged
    # ("no_logprobs" changes nothing in a chat reply: it serves the real completion)
    for fault in ("500", "500", "no_logprobs", "timeout", "timeout", "garbage", "garbage"):
        server.faults.add(fault)
    code, out, err = cli(*args, env=env)
    assert code == 0, err
    assert len(server.faults) == 0 and server.requests == 9
    run_dir = _run_dir(runs, "wise@legacy")
    records, summary = _check_counts(run_dir, planned=6)
    assert [r["prompt_id"] for r in records if r["failed"]] == [1, 3, 4]
    reasons = [r["reason"] for r in records if r["failed"]]
    assert reasons[0] == "http 500 (gave up after 2 attempts)"
    assert reasons[1] == "timeout after 2s (gave up after 2 attempts)"
    assert reasons[2].startswith("malformed response") and reasons[2].endswith("(gave up after 2 attempts)")
    # the scored images all got (2, 1, 1): failures are left out, not averaged in as zeros
    assert summary["n_scored"] == 3 and summary["table"]["Cultural"] == pytest.approx(
        (0.7 * 2 + 0.2 + 0.1) / 2
    )
    assert "wise@legacy: 3 judge failures (not scored; 3/6 images scored)" in _footnotes(out)
    # re-scoring asks the judge only for what the cache does not hold: the three failures
    code, out, err = cli("score", run_dir, "--rescore", *judge, env=env)
    assert code == 0, err
    assert server.requests == 12
    records, summary = _check_counts(run_dir, planned=6)
    assert summary["n_failed"] == 0 and summary["table"]["Cultural"] == pytest.approx(0.85)
    assert "judge failures" not in _footnotes(out)
    # the key authenticated every request but is written nowhere
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out + err
    judge_config = json.loads((run_dir / "run.json").read_text())["scorer"]["judge"]
    assert judge_config["api_key_env"] == "OPENAI_API_KEY" and judge_config["model"] == "scripted-judge"


def test_http_yes_no_judge_with_real_logprobs_and_faults(cli, data, tmp_path):
    """DPG over HTTP: the tiny Qwen2-VL behind the server answers with real log-probs; a question that
    keeps failing fails its cell, and the cell's prompt is left out of the score, never scored as 'no'."""
    from evalkit.judges import load_judge
    from evalkit.judges.server import JudgeServer

    tiny = load_judge("tiny")
    runs = tmp_path / "runs"
    with JudgeServer(tiny, max_logprobs=1024, fault_delay=3.0) as server:
        args = ["run", "dpg", "--model", "tiny-sd3", "--limit", 2, "--data-dir", data, "--runs-dir", runs]
        args += ["--judge", f"openai:{tiny.name}", "--judge-url", server.url]
        options = ("timeout=5", "max_retries=1", "backoff=0.01", "backoff_max=0.02", "concurrency=1")
        for option in (*options, f"top_logprobs={len(tiny.tokenizer)}"):
            args += ["--judge-option", option]
        server.faults.add("500", times=2)  # the first question of the first cell, and its retry
        code, out, err = cli(*args)
        assert code == 0, err
        questions = 4 * 4 + 4 * 4  # cells x questions of items 0 and 1
        assert server.requests == questions + 1
    run_dir = _run_dir(runs, "dpg")
    records, summary = _check_counts(run_dir, planned=8)
    assert [r["id"] for r in records if r["failed"]] == ["0/0"]
    assert records[0]["reason"] == "http 500 (gave up after 2 attempts)"
    assert summary["failed_samples"] == ["0"] and summary["n_left_out"] == 3 and summary["n_scored"] == 4
    assert summary["n_images_scored"] == 1
    cells = [r["cell_score"] for r in records if r["sample_id"] == "1"]
    assert summary["Overall"] == pytest.approx(100 * sum(cells) / 4)
    note = "1 judge failures (not scored; 3 other images of their prompts left out; 4/8 images scored)"
    assert note in _footnotes(out)


# ------------------------------------------------------------------------------------------ summary


def test_summary_counts_failures_apart_from_scores(data, tmp_path):
    from evalkit import pipeline
    from evalkit.benchmarks.gedit import GEdit
    from evalkit.report.tables import build_table, render

    bench = GEdit(data)
    samples = bench.samples()
    run = Run(tmp_path / "run")
    run.write_info({"model": "m", "benchmark": "gedit", "protocol": "gedit"})
    common = {"k": 0, "protocol": "gedit", "language": "en", "intersection": True}
    run.append_record(
        {**common, "id": f"{samples[0].id}/0", "sample_id": samples[0].id, "task_type": "background_change"}
        | {"failed": False, "SC": 4.0, "PQ": 9.0, "O": 6.0}
    )
    run.append_record(
        {**common, "id": f"{samples[1].id}/0", "sample_id": samples[1].id, "task_type": "color_alter"}
        | {"failed": True, "reason": "http 500 (gave up after 2 attempts)"}
    )
    summary = pipeline.summarize(run, bench, samples)
    assert (summary["n_planned"], summary["n_records"], summary["n_scored"], summary["n_failed"]) == (
        3,
        2,
        1,
        1,
    )
    assert summary["failure_reasons"] == {"http 500 (gave up after 2 attempts)": 1}
    assert summary["O/background_change"] == 6.0 and summary["O/color_alter"] is None
    notes = render(build_table([run.root]), "md")
    assert "partial runs: m on gedit: 1 of 3 images scored (1 images not judged)" in notes
    assert (
        "failures: m on gedit: 1 judge failures (not scored; 1/3 images scored), most often: http 500"
        in notes
    )
