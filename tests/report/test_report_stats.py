"""Bootstrap intervals and paired tests against closed forms on synthetic data, and the official aggregation."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from evalkit.errors import EvalkitError
from evalkit.registry import BENCHMARKS
from evalkit.report.stats import (
    bootstrap_ci,
    compare,
    mean_ci,
    official_aggregate,
    paired_bootstrap,
    resample,
    run_ci,
    significance_marker,
)

Z95 = 1.959964


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _mean_records(groups: list[list[float]]) -> list[dict]:
    return [{"sample_id": f"p{i}", "k": k, "v": v} for i, vs in enumerate(groups) for k, v in enumerate(vs)]


def _mean_of_prompt_means(records: list[dict]) -> dict[str, float | None]:
    by: dict[str, list[float]] = {}
    for r in records:
        by.setdefault(r["sample_id"], []).append(r["v"])
    return {"mean": sum(sum(v) / len(v) for v in by.values()) / len(by)}


def test_normal_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 2.0, 400)
    ci = mean_ci([[v] for v in x])
    half = Z95 * x.std(ddof=0) / math.sqrt(len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.half_width == pytest.approx(half, rel=0.1)
    assert ci.low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert (ci.n, ci.n_images) == (400, 400)


def test_bernoulli_accuracy_matches_the_wald_interval():
    rng = np.random.default_rng(2)
    x = (rng.random(600) < 0.3).astype(float)
    p = x.mean()
    ci = mean_ci([[v] for v in x])
    assert ci.half_width == pytest.approx(Z95 * math.sqrt(p * (1 - p) / len(x)), rel=0.1)


def test_two_level_resampling_matches_its_closed_form_variance():
    """Resampling G prompts, then the m images of each: Var = (between + mean within/m) / G (ddof 0)."""
    rng = np.random.default_rng(3)
    g, m = 200, 4
    means = rng.normal(0, 1, g)
    values = means[:, None] + rng.normal(0, 2, (g, m))
    boot = resample(_mean_records(values.tolist()), _mean_of_prompt_means, resamples=1000)
    sd = np.std([r["mean"] for r in boot.replicates])
    prompt_means = values.mean(axis=1)
    expected = math.sqrt((prompt_means.var() + (values.var(axis=1) / m).mean()) / g)
    assert sd == pytest.approx(expected, rel=0.1)
    # one level only (images kept): the within-prompt term disappears
    one = resample(_mean_records(values.tolist()), _mean_of_prompt_means, images=False, resamples=1000)
    assert np.std([r["mean"] for r in one.replicates]) == pytest.approx(
        math.sqrt(prompt_means.var() / g), rel=0.1
    )


def test_fixed_seed_is_reproducible_and_the_seed_matters():
    groups = [[random.Random(i).random()] for i in range(50)]
    assert mean_ci(groups) == mean_ci(groups)
    assert mean_ci(groups, seed=1) != mean_ci(groups)


def test_paired_test_on_identical_and_shifted_data():
    rng = np.random.default_rng(4)
    base = rng.normal(0, 1, 300)
    a = _mean_records([[v] for v in base])
    same = paired_bootstrap(a, a, _mean_of_prompt_means)["mean"]
    assert same.delta == 0 and same.p_value == 1.0 and significance_marker(same.p_value) == ""
    shifted = _mean_records([[v + 0.5] for v in base + rng.normal(0, 0.5, 300)])
    test = paired_bootstrap(a, shifted, _mean_of_prompt_means)["mean"]
    assert test.p_value < 0.01 and significance_marker(test.p_value) == "**"
    assert test.low < test.delta < test.high


def test_paired_p_value_matches_the_normal_paired_test():
    rng = np.random.default_rng(5)
    n = 400
    a = rng.normal(0, 1, n)
    d = rng.normal(0.1, 1, n)  # a small effect: p around a few percent
    test = paired_bootstrap(
        _mean_records([[v] for v in a]),
        _mean_records([[v] for v in a + d]),
        _mean_of_prompt_means,
        resamples=2000,
    )["mean"]
    z = d.mean() / (d.std(ddof=0) / math.sqrt(n))
    p_normal = 2 * (1 - _normal_cdf(abs(z)))
    assert test.delta == pytest.approx(d.mean())
    assert test.p_value == pytest.approx(p_normal, abs=0.02)


def test_pairing_beats_independent_intervals_and_needs_the_same_prompts():
    rng = np.random.default_rng(6)
    base = rng.normal(0, 3, 200)
    a, b = _mean_records([[v] for v in base]), _mean_records([[v + 0.3] for v in base])
    test = paired_bootstrap(a, b, _mean_of_prompt_means)["mean"]
    ci_a = bootstrap_ci(a, _mean_of_prompt_means)["mean"]
    assert test.p_value < 0.01 < ci_a.half_width  # the constant shift is certain though each CI is wide
    other = resample(b[:100], _mean_of_prompt_means)
    with pytest.raises(EvalkitError, match="same prompts"):
        compare(resample(a, _mean_of_prompt_means), other)


def _geneval_records(seed: int, per_tag: dict[str, int], p: float) -> list[dict]:
    rng = random.Random(seed)
    out, i = [], 0
    for tag, n in per_tag.items():
        for _ in range(n):
            meta = {"tag": tag, "prompt": f"prompt {i}"}
            for k in range(4):
                sid = f"{i:05d}"
                out.append(
                    {
                        "id": f"{sid}/{k}",
                        "sample_id": sid,
                        "k": k,
                        "tag": tag,
                        "metadata": meta,
                        "correct": rng.random() < p,
                    }
                )
            i += 1
    return out


def test_bootstrap_recomputes_the_official_geneval_aggregation():
    """GenEval's overall is the mean of task accuracies, not of images: with unbalanced tasks they differ."""
    from evalkit.benchmarks.geneval.aggregate import summarize
    from evalkit.benchmarks.geneval.rules import TAGS

    tags = sorted(TAGS)
    records = _geneval_records(0, {t: 5 + 20 * j for j, t in enumerate(tags)}, 0.6)
    aggregate = official_aggregate({"benchmark": "geneval", "protocol": "geneval"})
    official = summarize(records)["overall"]
    naive = sum(r["correct"] for r in records) / len(records)
    cis = bootstrap_ci(records, aggregate, resamples=200)
    assert cis["Overall"].estimate == pytest.approx(official) and official != pytest.approx(naive)
    assert cis["Overall"].low < official < cis["Overall"].high
    assert cis["Overall"].n == sum(5 + 20 * j for j in range(len(tags)))


def test_drawn_copies_of_a_prompt_stay_separate_prompts():
    """Aggregations that group records by sample (DPG's grids) must see each drawn copy as its own prompt."""
    records = _mean_records([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])

    def count(rs):
        return {"prompts": len({r["sample_id"] for r in rs}), "images": len(rs)}

    boot = resample(records, count, resamples=50)
    assert all(r == {"prompts": 3, "images": 6} for r in boot.replicates)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_aggregates_without_its_data_files(name):
    aggregate = official_aggregate({"benchmark": name, "protocol": name, "bench_options": {}})
    table = aggregate([])
    assert isinstance(table, dict) and table


def test_run_ci_matches_the_runs_summary(tmp_path):
    records = _geneval_records(7, {"single_object": 10, "two_object": 12, "counting": 9}, 0.5)
    (tmp_path / "run.json").write_text(json.dumps({"benchmark": "geneval", "protocol": "geneval"}))
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    from evalkit.benchmarks.geneval.aggregate import summarize

    cis = run_ci(tmp_path, resamples=100)
    assert cis["Overall"].estimate == pytest.approx(summarize(records)["overall"])
    assert set(cis) == {"Single Obj.", "Two Obj.", "Counting", "Overall"}
    with pytest.raises(EvalkitError, match="no run.json"):
        run_ci(tmp_path / "nope")


def test_dpg_cells_resample_as_images_of_their_prompt():
    """DPG's official aggregate groups cells by sample: copies of a drawn prompt must stay separate grids,
    and its overall (100 x mean image score) follows the two-level closed form."""
    rng = np.random.default_rng(8)
    g, m = 150, 4
    scores = np.clip(rng.normal(0.6, 0.2, g)[:, None] + rng.normal(0, 0.2, (g, m)), 0, 1).round(2)
    records = [
        {
            "id": f"{i}/{k}",
            "sample_id": str(i),
            "k": k,
            "l2": ["entity - whole"],
            "raw": [s],
            "zeroed": [s],
            "cell_score": float(s),
        }
        for i in range(g)
        for k, s in enumerate(scores[i])
    ]
    aggregate = official_aggregate({"benchmark": "dpg", "protocol": "dpg"})
    boot = resample(records, aggregate, resamples=600)
    assert boot.estimate["Overall"] == pytest.approx(100 * scores.mean())
    sd = np.std([r["Overall"] for r in boot.replicates])
    expected = 100 * math.sqrt((scores.mean(axis=1).var() + (scores.var(axis=1) / m).mean()) / g)
    assert sd == pytest.approx(expected, rel=0.12)
