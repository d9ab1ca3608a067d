"""SRR's self gate on BAGEL / AlphaGRPO: the model's own reflection decides whether to redraw (no judge).

The reflection prompt and CFG interval are the official evaluation's (checked against the specs); the
yes/no verdict asked after the reflection is evalkit's, and an unreadable verdict is recorded as undecided.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fixture_paths import SHARED, need
from PIL import Image

bagel_testing = pytest.importorskip("evalkit.testing.bagel")

import torch  # noqa: E402

from evalkit import pipeline  # noqa: E402
from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer  # noqa: E402
from evalkit.generators import bagel as bagel_generator  # noqa: E402
from evalkit.generators.bagel import PRESETS, REFLECTION_PROMPT, BagelGenerator  # noqa: E402
from evalkit.runs import Run  # noqa: E402
from evalkit.srr import REFLECTION_PROMPT as TRAINING_REFLECTION_PROMPT  # noqa: E402
from evalkit.srr import (  # noqa: E402
    SELF_CHECK_QUESTION,
    done_path,
    parse_self_verdict,
    refine_run,
    round_path,
    srr_counts,
)

FAST = {"num_timesteps": 2, "max_think_tokens": 4}
SPECS = SHARED / "specs"


def _spec(name: str) -> str:
    return need(SPECS / name, f"spec {name}").read_text()


def test_reflection_prompt_is_byte_identical_to_the_specs() -> None:
    method = _spec("method.md")
    block = re.search(r"Reflection / SRR prompt[^\n]*\n```\n(.*?)\n```", method, re.S)
    assert block is not None, "method.md no longer quotes the reflection prompt"
    training = block.group(1)
    assert training == TRAINING_REFLECTION_PROMPT
    from evalkit.grpo.alphagrpo.rollout import REFLECTION_PROMPT as ROLLOUT_PROMPT

    assert training == ROLLOUT_PROMPT
    # The evaluation scripts' copy (what inference-time SRR and the self gate use): one extra space.
    assert 'The eval scripts\' copy has an extra space after "correct image."' in _spec(
        "alphagrpo_training.md"
    )
    assert training.replace("correct image.\n", "correct image. \n") == REFLECTION_PROMPT
    assert REFLECTION_PROMPT.encode() != training.encode()


def test_srr_settings_are_the_official_evaluations() -> None:
    a5 = _spec("method.md").split("### A5.", 1)[1].split("###", 1)[0]
    lo, hi = map(float, re.search(r"cfg_interval \[([\d.]+), ([\d.]+)\]", a5).groups())
    text, img = (float(x) for x in re.search(r"cfg_text (\d+), cfg_img (\d+)", a5).groups())
    temperature = float(re.search(r"temperature ([\d.]+)", a5).group(1))
    srr = PRESETS["srr"]
    assert srr["cfg_interval"] == (lo, hi) and (srr["cfg_text_scale"], srr["cfg_img_scale"]) == (text, img)
    assert srr["think"] and srr["think_do_sample"] and srr["think_temperature"] == temperature
    assert srr["cfg_renorm_type"] == "text_channel"


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("yes", True),
        ("Yes.", True),
        ("  YES, it shows two cats", True),
        ('"Yes"', True),
        ("**No**", False),
        ("no", False),
        ("No, the second cat is missing.", False),
        ("no. no.", False),
        ("", None),
        (None, None),
        ("maybe", None),
        ("yesterday", None),
        ("nothing is wrong", None),
        ("I think yes", None),
        ("yes/no", None),
        ("No... actually yes", None),
        ("<think>yes</think>", None),
        ("ÿ\x00Ġ", None),
    ],
)
def test_self_verdict_parser(answer, verdict) -> None:
    assert parse_self_verdict(answer) is verdict


class ThreePrompts(Benchmark):
    name = "three"
    protocol = "three@test"
    images_per_sample = 1
    columns = ["n"]

    def samples(self) -> list[Sample]:
        return [Sample(str(i), p) for i, p in enumerate(("a cat", "two dogs", "a red cube"))]

    def make_scorer(self, **options) -> SampleScorer:
        raise AssertionError("not used")

    def aggregate(self, records):
        return {"table": {"n": len(records)}}


@pytest.fixture(scope="module")
def tiny_generator() -> BagelGenerator:
    torch.set_num_threads(1)
    return BagelGenerator(bagel_testing.random_pipeline(seed=0), resolution=64, overrides=FAST)


def test_the_self_check_reflects_exactly_as_the_refinement_would(tiny_generator) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    check = tiny_generator.self_check(image, "two cats", seed=11, **FAST)
    refined = tiny_generator.refine(image, "two cats", seed=11, **FAST)
    assert check.reflection and check.reflection == refined.think
    assert check.answer is not None and check.extra["question"] == SELF_CHECK_QUESTION.format("two cats")
    assert check.score in (0.0, 1.0, None) and (check.score is None) == (
        parse_self_verdict(check.answer) is None
    )
    other = tiny_generator.self_check(image, "two cats", seed=12, **FAST)
    assert other.reflection != check.reflection  # sampled (temperature 0.3), the seed matters


def test_gate_decisions_follow_the_models_verdict(tiny_generator, tmp_path, monkeypatch) -> None:
    """A scripted verdict after the real reflection: yes keeps, no redraws, an unreadable one is undecided."""
    script = {"a cat": "Yes.", "two dogs": "No, there is one dog.", "a red cube": "the cube"}
    real = tiny_generator.pipe.reflect_and_answer
    asked = []

    def scripted(instruction, image, question, **kwargs):
        reflection, _ = real(instruction, image, question, **kwargs)
        prompt = next(p for p in script if f"`{p}`" in question)
        asked.append(prompt)
        return reflection, script[prompt]

    monkeypatch.setattr(tiny_generator.pipe, "reflect_and_answer", scripted)
    bench, run = ThreePrompts(), Run(tmp_path / "run")
    samples = bench.samples()
    pipeline.generate(run, bench, samples, lambda: tiny_generator, global_seed=3)
    stats = refine_run(
        run, bench, samples, tiny_generator, rounds=1, gate="self", global_seed=3, refine_options=FAST
    )
    assert sorted(asked) == sorted(script) + ["two dogs"]  # the redrawn image is checked once more
    gates = {s.prompt: json.loads(round_path(run, s.id, 0, 0).with_suffix(".json").read_text())["gate"]
             for s in samples}  # fmt: skip
    assert {p: g["decision"] for p, g in gates.items()} == {
        "a cat": "keep", "two dogs": "refine", "a red cube": "undecided"
    }  # fmt: skip
    assert {p: g["self_check"] for p, g in gates.items()} == {
        "a cat": 1.0,
        "two dogs": 0.0,
        "a red cube": None,
    }
    assert gates["a red cube"]["verdict"] == "the cube" and "could not be read" in gates["a red cube"]["note"]
    assert all(g["reflection"] and g["mode"] == "self" for g in gates.values())
    # the redraw wrote the reflection that decided on it, with the official SRR settings
    r1 = json.loads(round_path(run, "1", 0, 1).with_suffix(".json").read_text())
    assert r1["think"] == gates["two dogs"]["reflection"] and r1["seed"] == gates["two dogs"]["seed"]
    assert r1["reflection_prompt"] == REFLECTION_PROMPT.format("two dogs")
    assert tuple(r1["settings"]["cfg_interval"]) == PRESETS["srr"]["cfg_interval"]
    assert (stats.rounds_run, stats.refined, stats.kept, stats.abstained) == (1, 1, 1, 1)
    for sample_id in ("0", "2"):  # kept and undecided: the first-pass image, never labelled refined
        assert run.image_path(sample_id, 0).read_bytes() == round_path(run, sample_id, 0, 0).read_bytes()
        assert json.loads(done_path(run, sample_id, 0).read_text())["refined"] is False
    history = run.load_image_meta("1", 0)["srr"]["history"]
    assert history[0]["verdict"] == script["two dogs"] and history[0]["reflection"] == r1["think"]
    counts = srr_counts(run, bench, samples)
    assert (counts["refined"], counts["kept"], counts["abstained"], counts["images"]) == (1, 1, 1, 3)


def test_cli_run_with_the_self_gate_records_the_models_decisions(cli, data_dir, tmp_path) -> None:
    from evalkit.bagel.loading import save_pretrained
    from evalkit.testing.bagel import random_pipeline, tiny_config

    ckpt = save_pretrained(random_pipeline(tiny_config(), seed=0), tmp_path / "bagel", dtype=torch.float32)
    args = [
        "run", "geneval", "--model", f"bagel:{ckpt}", "--detector", "tiny", "--limit", 1, "--srr", 1,
        "--srr-gate", "self", "--option", "num_timesteps=2", "--option", "resolution=64",
        "--option", "max_think_tokens=4", "--device", "cpu", "--dtype", "fp32",
        "--data-dir", data_dir, "--runs-dir", tmp_path / "runs",
    ]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs" / "geneval").iterdir()
    info = json.loads((run_dir / "run.json").read_text())["generation"]["srr"]
    assert info["gate"] == "self" and info["signal"] == "self_check" and info["judge"] is None
    decisions = []
    for marker in sorted((run_dir / "samples").glob("*/*.srr.json")):
        k = marker.name.split(".")[0]
        gate = json.loads(marker.with_name(f"{k}.r0.json").read_text())["gate"]
        assert gate["reflection"] and isinstance(gate["verdict"], str)
        assert gate["self_check"] == {True: 1.0, False: 0.0, None: None}[parse_self_verdict(gate["verdict"])]
        decisions.append(gate["decision"])
        final, first = marker.with_name(f"{k}.png"), marker.with_name(f"{k}.r0.png")
        summary = json.loads(marker.read_text())
        if gate["decision"] == "refine":
            think = json.loads(marker.with_name(f"{k}.r1.json").read_text())["think"]
            assert think == gate["reflection"]
        else:  # kept or undecided: the first pass, not labelled refined
            assert final.read_bytes() == first.read_bytes() and summary["refined"] is False
    assert len(decisions) == 4 and set(decisions) <= {"refine", "keep", "undecided"}
    counts = json.loads((run_dir / "summary.json").read_text())["srr"]
    assert counts["gate"] == "self" and counts["images"] == 4
    assert counts["abstained"] == decisions.count("undecided") and counts["kept"] == decisions.count("keep")
    assert counts["rounds_run"] == decisions.count("refine") >= counts["refined"]
    assert "+SRR(K=1, self)" in out
    if counts["abstained"]:
        assert "without a signal" in out or "abstention" in out
    assert bagel_generator.BagelGenerator.can_self_check
