"""BAGEL through the whole CLI pipeline: a tiny checkpoint in the official layout, GenEval, resume."""

from __future__ import annotations

import json

import torch

from evalkit.bagel.loading import save_pretrained
from evalkit.benchmarks.geneval import GenEval
from evalkit.runs import read_jsonl
from evalkit.testing.bagel import random_pipeline, tiny_config


def test_tiny_bagel_runs_geneval_end_to_end(cli, data_dir, tmp_path, monkeypatch):
    ckpt = save_pretrained(random_pipeline(tiny_config(), seed=0), tmp_path / "bagel", dtype=torch.float32)
    args = [
        "run", "geneval", "--model", f"bagel:{ckpt}", "--detector", "tiny", "--limit", 1,
        "--option", "num_timesteps=3", "--option", "resolution=64", "--device", "cpu", "--dtype", "fp32",
        "--data-dir", data_dir, "--runs-dir", tmp_path / "runs",
    ]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs" / "geneval").iterdir()
    records = read_jsonl(run_dir / "records.jsonl")
    assert len(records) == 4 and all(isinstance(r["correct"], bool) for r in records)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["model"] == f"bagel:{ckpt}" and info["generator"]
    sidecar = json.loads((run_dir / "samples" / "00000" / "0.json").read_text())
    assert isinstance(sidecar["seed"], int)
    preset = GenEval.generation_presets["bagel"]  # the benchmark's BAGEL settings reach the generator
    assert sidecar["settings"]["cfg_interval"] == list(preset["cfg_interval"])
    assert sidecar["settings"]["num_timesteps"] == 3  # --option still overrides the benchmark's preset

    def must_not_load(*a, **k):
        raise AssertionError("a finished run must not load BAGEL")

    monkeypatch.setattr("evalkit.generators.bagel.build", must_not_load)
    code, _, err = cli(*args)
    assert code == 0, err
