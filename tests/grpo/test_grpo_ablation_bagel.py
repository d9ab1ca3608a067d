"""`evalkit ablate-reward` on BAGEL: the tiny ablation end to end (AlphaGRPO per reward, base + every
adapter evaluated through `evalkit.evaluate`), resume, user errors before loading, and two gloo ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_paths import REPO
from safetensors.torch import load_file

from evalkit.grpo.ablation import load_ablation_spec
from evalkit.grpo.alphagrpo import config as presets
from evalkit.runs import read_jsonl

SPEC = REPO / "reward_ablation" / "tiny-bagel.yaml"


def _must_not_load(*args, **kwargs):
    raise AssertionError("nothing may load here")


def test_shipped_bagel_specs_resolve_to_the_official_preset():
    """Every reward of both BAGEL specs resolves to its preset with only its own `reward_fn` changed."""
    for name in ("bagel.yaml", "tiny-bagel.yaml"):
        spec = load_ablation_spec(REPO / "reward_ablation" / name)
        assert [r.name for r in spec.rewards] == [
            "pickscore",
            "viescore",
            "hpsv3",
            "unifiedreward",
            "dvreward",
        ]
        assert [c.key for c in spec.columns] == ["tiif_short", "tiif_long", "geneval"]
        for run in spec.rewards:
            values = {**spec.train, **run.train, "reward_fn": {run.registry_name: 1.0}}
            values = {k: (1 if v == "auto" else v) for k, v in values.items()}
            config = presets.resolve(spec.preset, values)
            assert config["reward_fn"] == {run.registry_name: 1.0}
    real = load_ablation_spec(REPO / "reward_ablation" / "bagel.yaml")
    official = presets.resolve(real.preset, {"reward_fn": {"dvreward": 1.0}})
    assert real.train == {} and official == presets.resolve(real.preset)  # the official values, unchanged
    assert real.eval_protocols == {"geneval": "geneval@long"}


def test_tiny_bagel_ablation_prints_the_table_and_resumes(cli, data_dir, tmp_path, monkeypatch):
    args = [
        "ablate-reward",
        "--backbone",
        "tiny-bagel",
        "--limit",
        4,
        "--out",
        tmp_path,
        "--data-dir",
        data_dir,
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    spec = load_ablation_spec(SPEC)
    folder = tmp_path / "tiny-bagel"
    results = json.loads((folder / "results.json").read_text())
    assert list(results["rows"]) == ["base"] + [r.name for r in spec.rewards]
    assert "| Reward | TIIF short | TIIF long | GenEval |" in out and "| tiny-bagel (base) |" in out
    for run in spec.rewards:
        assert f"| {run.title} |" in out
    # the random judge never writes a VIEScore/UnifiedReward reply: those rows say why they are empty
    assert set(results["not_trained"]) == {"viescore", "unifiedreward"}
    assert "VIEScore: not trained (every sample abstained" in out
    assert "first 4 samples" in out and "num_epochs=2" in out  # --limit and the tiny training, footnoted
    trained = [r for r in spec.rewards if r.name not in results["not_trained"]]
    for run in trained:
        run_dir = folder / run.name
        config = json.loads((run_dir / "config.json").read_text())
        values = {**spec.train, "num_gpus": 1, "reward_fn": {run.registry_name: 1.0}}
        assert config == json.loads(json.dumps(presets.resolve(spec.preset, values)))
        steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert len(steps) == config["num_epochs"] and all(s["samples"] > 0 for s in steps)
        weights = load_file(str(run_dir / "final" / "adapter" / "adapter_model.safetensors"))
        assert any(float(w.abs().max()) > 0 for k, w in weights.items() if "lora_B" in k)  # it moved
        assert isinstance(results["rows"][run.name]["geneval"], float)
    # every row went through evalkit.evaluate: base = bagel without adapter, a reward = alphagrpo + its LoRA
    runs = [json.loads(p.read_text()) for p in (folder / "eval").glob("*/*/run.json")]
    loras = sorted(str(r["generator"].get("lora")) for r in runs if r["protocol"] == "geneval@long")
    assert loras == sorted(["None"] + [str(folder / r.name / "final" / "adapter") for r in trained])
    assert {r["protocol"] for r in runs} == {"tiif", "geneval@long"}

    # A second run finds every adapter and evaluation on disk: only the rewards that could not train are
    # tried again (their judge may have been fixed); no generator loads; the same table comes back.
    from evalkit.grpo.alphagrpo import launch

    retried, load = [], launch.load_trainable
    monkeypatch.setattr(
        launch, "load_trainable", lambda m, c, d: retried.append(*c["reward_fn"]) or load(m, c, d)
    )
    monkeypatch.setattr("evalkit.generators.bagel.build", _must_not_load)
    code, again, err = cli(*args, "--format", "latex")
    assert code == 0, err
    assert sorted(retried) == sorted(results["not_trained"])
    assert (
        r"\toprule" in again and json.loads((folder / "results.json").read_text())["rows"] == results["rows"]
    )


def test_user_errors_are_one_line_before_anything_loads(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("evalkit.grpo.alphagrpo.launch.load_trainable", _must_not_load)
    monkeypatch.setattr("evalkit.bagel.load", _must_not_load)
    prompts = tmp_path / "train.jsonl"
    prompts.write_text(json.dumps({"prompt": "a red cube"}) + "\n")
    base = ["ablate-reward", "--out", tmp_path / "out"]
    cases = {
        ("--backbone", "tiny-bagle"): "did you mean 'tiny-bagel'",
        ("--backbone", "bagel"): "pass --prompts FILE",
        ("--backbone", "bagel", "--prompts", prompts): "need a judge: pass --judge",
        ("--backbone", "tiny-bagel", "--set", "train.learning_rat=1"): "did you mean 'train.learning_rate'",
        ("--backbone", "tiny-bagel", "--reward-option", "pickscor.tiny=true"): "did you mean 'pickscore'",
        ("--backbone", "tiny-bagel", "--rewards", "dvreward", "--prompts", prompts): "questions",
        ("--backbone", "bagel", "--prompts", prompts, "--rewards", "dvreward", "--judge", "tiny", "--eval", "geneval"):
            "needs an OpenAI-compatible judge",  # the spec's DVReward is AlphaGRPO's own reward function
        ("--backbone", "bagel", "--prompts", prompts, "--rewards", "pickscore", "--eval", "geneval"):
            "num_gpus=56 but 1 process(es) run; pass --set num_gpus=1",
        (
            "--backbone", "bagel", "--prompts", prompts, "--rewards", "pickscore,hpsv3", "--eval", "geneval",
            "--set", "num_gpus=1", "--set", "sample.num_image_per_prompt=2", "--base", tmp_path / "no-such",
        ): "does not exist",
    }  # fmt: skip
    for extra, message in cases.items():
        code, _, err = cli(*base, *extra)
        assert code == 2 and message in err and err.strip().count("\n") == 0, (extra, err)
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ablate(nproc: int, out: Path, data_dir: Path, *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
    ]
    cmd += [f"--master_port={_free_port()}", "-m", "evalkit.cli", "ablate-reward", "--backbone", "tiny-bagel"]
    cmd += ["--rewards", "pickscore", "--eval", "geneval", "--limit", "2", "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--data-dir", str(data_dir), *extra], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_two_gloo_ranks_train_evaluate_and_write_once(data_dir, tmp_path):
    """Under torchrun both ranks train (per-sample seeds: the same adapter as one process) and evaluate
    their shard; rank 0 alone merges, writes the folders and prints the table."""
    one = _ablate(1, tmp_path / "one", data_dir)
    # the same global batch (sample.train_batch_size is per process): 2 ranks x 2 samples = 1 x 4
    two = _ablate(2, tmp_path / "two", data_dir, "--set", "sample.train_batch_size=2")
    table = one[one.index("| Reward |") :]  # (the detector's loader prints a line per process before it)
    assert two.count("| Reward |") == 1 and table.split("\n\n")[0] in two  # printed once, same rows
    runs = [p / "tiny-bagel" / "pickscore" for p in (tmp_path / "one", tmp_path / "two")]
    steps = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in runs]
    assert len(steps[0]) == len(steps[1]) == 2
    for a, b in zip(*steps, strict=True):
        assert a["samples"] == b["samples"] == 4
        for key in ("reward_mean", "loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        assert b["advantages"] == pytest.approx(a["advantages"], rel=1e-4, abs=1e-5)
    a, b = (load_file(str(r / "final" / "adapter" / "adapter_model.safetensors")) for r in runs)
    for key, value in a.items():
        assert b[key].allclose(value, rtol=1e-3, atol=1e-6), key
    for model in ("bagel", "alphagrpo"):  # the base row and the trained row
        runs = [
            next((p / "tiny-bagel" / "eval" / "geneval@long").glob(f"{model}-*"))
            for p in (tmp_path / "one", tmp_path / "two")
        ]
        keep = ("id", "correct", "details")
        records = [sorted(tuple(json.dumps(r.get(k)) for k in keep) for r in read_jsonl(d / "records.jsonl"))
                   for d in runs]  # fmt: skip
        assert records[0] == records[1] and len(records[0]) == 2 * 4  # both shards merged: 2 prompts x 4
