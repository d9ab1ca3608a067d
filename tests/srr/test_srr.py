"""Inference-time SRR over a run folder: gating modes, storage of every round, resume mid-rounds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evalkit import pipeline
from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.dvreward import Decomposition, Question
from evalkit.errors import EvalkitError
from evalkit.generators.base import Generation, GenerationRequest, Generator, SelfCheck
from evalkit.judges.base import JudgeFailure, YesNoAnswer
from evalkit.rewards.dvreward import DVReward
from evalkit.runs import Run
from evalkit.srr import done_path, pending_srr, refine_run, reflection_prompt, round_path, srr_counts

CHANNEL = {"red": 0, "green": 1, "blue": 2}


def share(image: Image.Image, color: str) -> float:
    """Fraction of the image's total intensity in the colour's channel."""
    means = np.asarray(image, dtype=float).mean(axis=(0, 1))
    return float(means[CHANNEL[color]] / max(means.sum(), 1e-9))


def color_of(prompt: str) -> str:
    return next(c for c in CHANNEL if c in prompt)


class ColorScorer(SampleScorer):
    """The benchmark's own scorer: an image is correct when its colour dominates (share > 0.5)."""

    def __init__(self):
        self.images = 0

    def config(self) -> dict[str, Any]:
        return {"rule": "share > 0.5"}

    def score_images(self, samples, images):
        self.images += len(images)
        return [
            {"correct": share(im, s.metadata["color"]) > 0.5, "share": share(im, s.metadata["color"])}
            for s, im in zip(samples, images, strict=True)
        ]


class ColorBench(Benchmark):
    name = "colors"
    protocol = "colors@test"
    images_per_sample = 2
    columns = ["Acc"]

    def samples(self) -> list[Sample]:
        return [
            Sample(f"s{i}", f"a {c} square", {"color": c}) for i, c in enumerate(("red", "blue", "green"))
        ]

    def make_scorer(self, **options: Any) -> SampleScorer:
        return ColorScorer()

    def aggregate(self, records):
        return {"table": {"Acc": sum(r["correct"] for r in records) / len(records)}}


class RedPainter(Generator):
    """First pass: reddish noise whatever the prompt (right for red, wrong for blue and green)."""

    name = "red-painter"

    def config(self):
        return {"model": self.name}

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for req in requests:
            noise = np.random.default_rng(req.seed).integers(-10, 10, (16, 16, 3))
            pixels = np.clip(np.array([200, 60, 60]) + noise, 0, 255).astype(np.uint8)
            out.append(Generation(Image.fromarray(pixels), seconds=0.0))
        return out


class PaintRefiner(Generator):
    """A refiner: reflects (think text) and repaints the image towards the prompt's colour by `step`."""

    name = "paint-refiner"
    can_refine = True

    def __init__(self, step: int = 60, crash_at: int | None = None):
        self.step = step
        self.crash_at = crash_at
        self.calls: list[tuple[str, int]] = []

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation:
        if self.crash_at is not None and len(self.calls) + 1 == self.crash_at:
            raise KeyboardInterrupt
        self.calls.append((prompt, seed))
        color = color_of(prompt)
        pixels = np.asarray(image, dtype=int) - self.step // 2
        pixels[..., CHANNEL[color]] += self.step + self.step // 2
        instruction = reflection_prompt(prompt)
        think = f"The {color} is too weak. Edit: make the square more {color}."
        return Generation(
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)),
            think=think,
            seconds=0.001,
            extra={"reflection_prompt": instruction},
        )


class CheckingRefiner(PaintRefiner):
    """A model that can also check its own image."""

    can_self_check = True

    def self_check(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> SelfCheck:
        return SelfCheck(share(image, color_of(prompt)), reflection=f"seed {seed}")


class ShareReward:
    """A Scorer: the prompt colour's share; abstains on green prompts; counts the images it scored."""

    name = "share"

    def __init__(self):
        self.images = 0

    def score(self, images, prompts, metadata):
        self.images += len(images)
        return [
            None if "green" in p else share(im, color_of(p)) for im, p in zip(images, prompts, strict=True)
        ]


class ColorJudge:
    """A judge double for DVReward: P(yes) of "Is the square <colour>?" is that colour's share."""

    name = "color-judge"

    def config(self):
        return {"model": self.name, "snapshot": "1"}

    def answer_yes_no(self, image, questions):
        return [YesNoAnswer(share(image, color_of(q)), "logprobs", "1") for q in questions]


@pytest.fixture
def setup(tmp_path):
    bench = ColorBench()
    samples = bench.samples()
    run = Run(tmp_path / "run")
    pipeline.generate(run, bench, samples, RedPainter, global_seed=7)
    first = {(s.id, k): run.image_path(s.id, k).read_bytes() for s in samples for k in range(2)}
    return run, bench, samples, first


def sidecar(path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def test_gate_all_refines_every_round_and_keeps_every_round_on_disk(setup) -> None:
    run, bench, samples, first = setup
    refiner = PaintRefiner()
    stats = refine_run(run, bench, samples, refiner, rounds=2, gate="all", global_seed=7)
    assert (stats.samples, stats.rounds_run, stats.refined) == (6, 12, 6)
    assert len({seed for _, seed in refiner.calls}) == 12  # a seed per (sample, k, round)
    for s in samples:
        for k in range(2):
            assert round_path(run, s.id, k, 0).read_bytes() == first[(s.id, k)]
            assert run.image_path(s.id, k).read_bytes() == round_path(run, s.id, k, 2).read_bytes()
            meta = run.load_image_meta(s.id, k)
            assert meta["prompt"] == s.prompt and meta["srr"]["final_round"] == 2
            assert [h["decision"] for h in meta["srr"]["history"]] == ["refine", "refine", "final"]
            assert "too weak" in meta["srr"]["history"][1]["think"]
            r1 = sidecar(round_path(run, s.id, k, 1))
            assert r1["from_round"] == 0 and r1["reflection_prompt"].startswith(
                "The user requires to generate image of"
            )
            assert json.loads(done_path(run, s.id, k).read_text())["gate"] == "all"
    # The score stage reads the final images.
    pipeline.score(run, bench, samples, bench.make_scorer, {"rule": 1})
    assert pipeline.summarize(run, bench, samples)["table"]["Acc"] == 1.0
    again = PaintRefiner()
    assert refine_run(run, bench, samples, again, rounds=2, gate="all", global_seed=7).samples == 0
    assert again.calls == []
    done_path(run, "s0", 0).unlink()  # unfinished, and now asked to resume under another gate
    with pytest.raises(EvalkitError, match="other SRR settings"):
        refine_run(
            run, bench, samples, again, rounds=2, gate="oracle", oracle_scorer=ColorScorer(), global_seed=7
        )


def test_gate_oracle_refines_only_what_the_benchmark_marks_wrong(setup) -> None:
    run, bench, samples, first = setup
    refiner, oracle = PaintRefiner(), ColorScorer()
    refine_run(run, bench, samples, refiner, rounds=3, gate="oracle", oracle_scorer=oracle, global_seed=7)
    assert {p for p, _ in refiner.calls} == {"a blue square", "a green square"}
    assert len(refiner.calls) == 8  # wrong after one round, right after two: 4 images x 2 rounds
    for k in range(2):
        assert run.image_path("s0", k).read_bytes() == first[("s0", k)]  # correct at once: untouched
        assert not round_path(run, "s0", k, 1).exists()
        gate = sidecar(round_path(run, "s0", k, 0))["gate"]
        assert gate == {"mode": "oracle", "oracle": {"correct": True}, "decision": "keep"}
        blue = run.load_image_meta("s1", k)["srr"]
        assert blue["final_round"] == 2 and [h["decision"] for h in blue["history"]] == [
            "refine",
            "refine",
            "keep",
        ]
    assert oracle.images == 6 + 4 + 4  # round 0 for all, then only the refined ones


class GreenFailingJudge(ColorJudge):
    """Fails (as a server would) on every question about green."""

    def answer_yes_no(self, image, questions):
        return [
            JudgeFailure("server error") if "green" in q else answer
            for q, answer in zip(questions, super().answer_yes_no(image, questions), strict=True)
        ]

    def chat(self, messages, **decoding):
        raise JudgeFailure("server error")


def _questions(colors) -> dict:
    return {
        f"a {c} square": Decomposition(
            f"a {c} square", [Question(f"Is the square {c}?", "semantic", "Attribute")], []
        )
        for c in colors
    }


def test_gate_self_without_questions_for_a_sample_is_refused_before_work(setup) -> None:
    run, bench, samples, first = setup
    reward = DVReward(ColorJudge(), questions=_questions(("red", "blue")))  # none for green
    refiner = PaintRefiner()
    with pytest.raises(EvalkitError, match="cannot decide.*no questions for 1 of 3"):
        refine_run(run, bench, samples, refiner, rounds=1, gate="self", reward=reward, global_seed=7)
    assert refiner.calls == [] and not list(run.root.glob("samples/*/*.r0.png"))


def test_gate_self_uses_dvreward_below_threshold_and_counts_abstentions(setup) -> None:
    run, bench, samples, _ = setup
    reward = DVReward(GreenFailingJudge(), questions=_questions(("red", "blue", "green")))
    refiner = PaintRefiner()
    stats = refine_run(
        run, bench, samples, refiner, rounds=3, gate="self", threshold=0.7, reward=reward, global_seed=7
    )
    assert {p for p, _ in refiner.calls} == {"a blue square"} and len(refiner.calls) == 4
    assert stats.abstained == 2 and stats.kept == 4
    green = sidecar(round_path(run, "s2", 0, 0))["gate"]
    assert green["reward"] is None and green["decision"] == "undecided" and "abstained" in green["note"]
    assert green["reward_details"]["failure"]
    counts = srr_counts(run, bench, samples)
    assert counts == {
        "gate": "self", "images": 6, "refined": 2, "kept": 4, "abstained": 2, "rounds_run": 4, "unchanged": 0
    }  # fmt: skip
    blue = [sidecar(round_path(run, "s1", 0, r))["gate"] for r in range(3)]
    assert [g["decision"] for g in blue] == ["refine", "refine", "keep"]
    assert blue[0]["reward"] == pytest.approx(blue[0]["reward_details"]["questions"][0]["score"] ** 0.5)
    assert blue[0]["reward"] < blue[1]["reward"] < 0.7 <= blue[2]["reward"]


def test_gate_self_without_a_reward_asks_the_model_itself(setup) -> None:
    run, bench, samples, _ = setup
    refiner = CheckingRefiner()
    refine_run(run, bench, samples, refiner, rounds=1, gate="self", threshold=0.5, global_seed=7)
    assert {p for p, _ in refiner.calls} == {"a blue square", "a green square"}
    gate = sidecar(round_path(run, "s1", 1, 0))["gate"]
    assert gate["decision"] == "refine" and gate["self_check"] < 0.5 and "reward" not in gate
    # the check reflected with the seed of the refinement it led to
    assert (
        gate["reflection"] == f"seed {sidecar(round_path(run, 's1', 1, 1))['seed']}" == f"seed {gate['seed']}"
    )


class SameImageRefiner(PaintRefiner):
    """A refiner whose redraw is its input, pixel for pixel."""

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation:
        self.calls.append((prompt, seed))
        return Generation(image.copy(), think="nothing to change", seconds=0.001)


def test_an_unchanged_image_is_never_labelled_refined(setup) -> None:
    run, bench, samples, _ = setup
    stats = refine_run(run, bench, samples, SameImageRefiner(), rounds=2, gate="all", global_seed=7)
    assert stats.rounds_run == 12 and stats.refined == 0
    summary = json.loads(done_path(run, "s0", 0).read_text())
    assert summary["final_round"] == 2 and not summary["refined"] and summary["unchanged"]
    assert run.load_image_meta("s0", 0)["srr"]["refined"] is False
    counts = srr_counts(run, bench, samples)
    assert counts["refined"] == 0 and counts["unchanged"] == 6 and counts["rounds_run"] == 12


def test_a_run_killed_mid_rounds_resumes_without_redoing_finished_rounds(setup, tmp_path) -> None:
    run, bench, samples, _ = setup
    reference = Run(tmp_path / "reference")
    pipeline.generate(reference, bench, samples, RedPainter, global_seed=7)
    ref_reward = ShareReward()
    options = dict(rounds=3, gate="self", threshold=0.99, global_seed=7, batch_size=4)
    refine_run(reference, bench, samples, PaintRefiner(), reward=ref_reward, **options)

    crashing, reward = PaintRefiner(crash_at=9), ShareReward()
    with pytest.raises(KeyboardInterrupt):
        refine_run(run, bench, samples, crashing, reward=reward, **options)
    assert len(crashing.calls) == 8 and pending_srr(run, bench, samples)
    resumed = PaintRefiner()
    refine_run(run, bench, samples, resumed, reward=reward, **options)
    # Green abstains (kept at round 0): 4 images x 3 rounds in all, none made twice, no gate asked twice.
    assert len(crashing.calls) + len(resumed.calls) == 12
    assert not set(crashing.calls) & set(resumed.calls)
    assert reward.images == ref_reward.images
    for s in samples:
        for k in range(2):
            for r in range(4):
                mine, ref = round_path(run, s.id, k, r), round_path(reference, s.id, k, r)
                assert mine.exists() == ref.exists()
                if ref.exists():
                    assert mine.read_bytes() == ref.read_bytes()
                    assert sidecar(mine) == sidecar(ref)
            assert run.image_path(s.id, k).read_bytes() == reference.image_path(s.id, k).read_bytes()
    # Killed between writing the final image and the done marker: finishing again makes no model call.
    done_path(run, "s1", 0).unlink()
    final = run.image_path("s1", 0).read_bytes()
    again = PaintRefiner()
    assert refine_run(run, bench, samples, again, reward=reward, **options).samples == 1
    assert again.calls == [] and run.image_path("s1", 0).read_bytes() == final
    assert done_path(run, "s1", 0).exists()


def test_misconfigured_gates_are_refused(setup, tmp_path) -> None:
    run, bench, samples, _ = setup
    with pytest.raises(EvalkitError, match="oracle"):
        refine_run(run, bench, samples, PaintRefiner(), rounds=1, gate="oracle", global_seed=0)
    with pytest.raises(EvalkitError, match="self_check"):
        refine_run(run, bench, samples, PaintRefiner(), rounds=1, gate="self", global_seed=0)
    with pytest.raises(EvalkitError, match="unknown SRR gate"):
        refine_run(run, bench, samples, PaintRefiner(), rounds=1, gate="sometimes", global_seed=0)
    with pytest.raises(EvalkitError, match="generate stage"):
        refine_run(Run(tmp_path / "empty"), bench, samples, PaintRefiner(), rounds=1, global_seed=0)


def test_srr_stage_loads_the_model_only_when_work_is_left(setup) -> None:
    from evalkit.evaluator import SRROptions, srr_stage

    run, bench, samples, _ = setup
    built: list[PaintRefiner] = []

    def make_refiner() -> PaintRefiner:
        built.append(PaintRefiner())
        return built[-1]

    oracle = SRROptions(1, "oracle", 0.5)
    stats = srr_stage(run, bench, samples, make_refiner, oracle, seed=7, make_oracle_scorer=ColorScorer)
    assert stats.rounds_run == 4 and len(built) == 1
    assert srr_stage(run, bench, samples, make_refiner, oracle, seed=7) is None
    assert len(built) == 1
    assert SRROptions(0, "all", 0.5).config() is None
    assert SRROptions(1, "oracle", 0.5).config() == {"rounds": 1, "gate": "oracle"}
    assert SRROptions(2, "self", 0.7, "tiny").config()["threshold"] == 0.7
    with pytest.raises(EvalkitError, match="unknown SRR gate"):
        SRROptions(1, "sometimes")
    with pytest.raises(EvalkitError, match="cannot refine"):
        srr_stage(
            run,
            bench,
            [Sample("new", "a red square", {"color": "red"})],
            RedPainter,
            SRROptions(1, "all", 0.5),
            seed=7,
        )
