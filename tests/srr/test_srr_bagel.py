"""SRR end to end with the tiny random BAGEL (reflect in think mode, then edit) as the refining model."""

from __future__ import annotations

import json

import pytest

bagel_testing = pytest.importorskip("evalkit.testing.bagel")

import torch  # noqa: E402

from evalkit import pipeline  # noqa: E402
from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer  # noqa: E402
from evalkit.generators.bagel import REFLECTION_PROMPT, BagelGenerator  # noqa: E402
from evalkit.runs import Run  # noqa: E402
from evalkit.srr import done_path, refine_run, round_path  # noqa: E402

FAST = {"num_timesteps": 2, "max_think_tokens": 3}


class OnePrompt(Benchmark):
    name = "one"
    protocol = "one@test"
    images_per_sample = 2
    columns = ["n"]

    def samples(self) -> list[Sample]:
        return [Sample("0", "two cats")]

    def make_scorer(self, **options) -> SampleScorer:
        raise AssertionError("not used")

    def aggregate(self, records):
        return {"table": {"n": len(records)}}


def test_srr_with_tiny_bagel_stores_think_and_resumes(tmp_path) -> None:
    torch.set_num_threads(1)
    generator = BagelGenerator(bagel_testing.random_pipeline(seed=0), resolution=64, overrides=FAST)
    bench, run = OnePrompt(), Run(tmp_path / "run")
    samples = bench.samples()
    pipeline.generate(run, bench, samples, lambda: generator, global_seed=3)
    stats = refine_run(
        run, bench, samples, generator, rounds=1, gate="all", global_seed=3, refine_options=FAST
    )
    assert stats.rounds_run == 2
    for k in range(2):
        r1 = json.loads(round_path(run, "0", k, 1).with_suffix(".json").read_text())
        assert r1["reflection_prompt"] == REFLECTION_PROMPT.format("two cats") and r1["think"] is not None
        assert r1["settings"]["think"] and r1["settings"]["cfg_img_scale"] == 2.0
        assert run.image_path("0", k).read_bytes() == round_path(run, "0", k, 1).read_bytes()
        assert run.load_image_meta("0", k)["srr"]["history"][1]["think"] == r1["think"]
    # A lost done marker: finishing again redraws nothing.
    done_path(run, "0", 1).unlink()
    assert refine_run(run, bench, samples, generator, rounds=1, gate="all", global_seed=3).rounds_run == 0
