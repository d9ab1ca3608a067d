"""CLI wiring of rewards, DVReward, SRR and the reward ablation (the pieces are tested in their own files)."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image


def test_score_folder_with_a_reward(cli, tmp_path):
    folder = tmp_path / "imgs"
    for i, level in enumerate([30, 200]):
        (folder / f"{i:05d}").mkdir(parents=True)
        Image.new("RGB", (16, 16), (level,) * 3).save(folder / f"{i:05d}" / "0.png")
        (folder / f"{i:05d}" / "0.json").write_text(json.dumps({"prompt": f"prompt {i}"}))
    code, out, err = cli("score", folder, "--reward", "brightness")
    assert code == 0, err
    lines = [json.loads(x) for x in (folder / "brightness.jsonl").read_text().splitlines()]
    assert [line["prompt"] for line in lines] == ["prompt 0", "prompt 1"]
    assert lines[0]["score"] < lines[1]["score"]
    assert "2/2 images scored" in out
    code, _, err = cli("score", folder, "--reward", "pickscor")
    assert code == 2 and "did you mean 'pickscore'" in err


def test_dvreward_subcommands_are_mounted(cli):
    code, out, _ = cli("dvreward", "--help")
    assert code == 0 and "decompose" in out and "score" in out


def test_srr_through_run_stores_rounds_and_labels_the_row(cli, data_dir, tmp_path):
    from evalkit.bagel.loading import save_pretrained
    from evalkit.testing.bagel import random_pipeline, tiny_config

    ckpt = save_pretrained(random_pipeline(tiny_config(), seed=0), tmp_path / "bagel", dtype=torch.float32)
    args = [
        "run", "geneval", "--model", f"bagel:{ckpt}", "--detector", "tiny", "--limit", 1, "--srr", 1,
        "--srr-gate", "all", "--option", "num_timesteps=2", "--option", "resolution=64", "--device", "cpu",
        "--dtype", "fp32", "--data-dir", data_dir, "--runs-dir", tmp_path / "runs",
    ]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs" / "geneval").iterdir()
    sample = run_dir / "samples" / "00000"
    assert (
        (sample / "0.r0.png").exists() and (sample / "0.r1.png").exists() and (sample / "0.srr.json").exists()
    )
    final, first = np.asarray(Image.open(sample / "0.png")), np.asarray(Image.open(sample / "0.r0.png"))
    assert np.array_equal(final, np.asarray(Image.open(sample / "0.r1.png"))) and not np.array_equal(
        final, first
    )
    assert json.loads((run_dir / "run.json").read_text())["generation"]["srr"] == {"rounds": 1, "gate": "all"}
    assert "+SRR(K=1, all)" in out


def test_ablate_reward_tiny_end_to_end(cli, data_dir, tmp_path):
    args = [
        "ablate-reward", "--backbone", "tiny-sd3", "--rewards", "pickscore", "--steps", 1, "--eval", "geneval",
        "--limit", 1, "--out", tmp_path, "--data-dir", data_dir,
    ]  # fmt: skip
    code, out, err = cli(*args)
    assert code == 0, err
    assert "| Reward | TIIF short | TIIF long | GenEval |" in out and "| PickScore |" in out
    folder = tmp_path / "tiny-sd3"
    assert (folder / "ablation.md").exists() and (folder / "ablation.tex").exists()
    results = json.loads((folder / "results.json").read_text())
    assert set(results["rows"]) == {"base", "pickscore"}
    assert isinstance(results["rows"]["pickscore"]["geneval"], float)
    code, out2, err = cli(*args, "--format", "latex")  # resumes: nothing retrained
    assert code == 0, err
    assert r"\toprule" in out2
    code, _, err = cli("ablate-reward", "--backbone", "sd3", "--data-dir", data_dir)
    assert code == 2 and "did you mean" in err
