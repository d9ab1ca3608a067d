"""A new benchmark is one folder plus one registry line, a new reward one file plus one registry line: a toy
of each (tests/plugins/toy_plugin/) runs through `evalkit.evaluate`, the reward factory and the CLI; out of
tree, the same lines come as entry points of an installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixture_paths import REPO, TESTS
from PIL import Image

import evalkit
from evalkit import registry
from evalkit.rewards.factory import build_reward

pytestmark = pytest.mark.slow

PLUGIN = TESTS / "plugins" / "toy_plugin"
TINY = {"num_inference_steps": 2}


def _toy():
    """The toy plugin's own functions, to recompute what evalkit reports."""
    from toy_bench.benchmark import PROMPTS, redness
    from toy_reward import warmth

    return PROMPTS, redness, warmth


def _images(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "samples").glob("*/*.png"))


@pytest.fixture
def registered(monkeypatch):
    """The in-tree way: the plugin's modules importable, one line in each registry table."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setitem(registry.BENCHMARKS, "toy", registry.Entry("toy_bench:ToyBench", "toy: redness"))
    monkeypatch.setitem(registry.REWARDS, "toy-warmth", registry.Entry("toy_reward:build", "toy: red - blue"))


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The out-of-tree way: what `pip install` of a package declaring the entry points leaves on sys.path."""
    site = tmp_path / "site"
    info = site / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[evalkit.benchmarks]\ntoy = toy_bench:ToyBench\n\n[evalkit.rewards]\ntoy-warmth = toy_reward:build\n"
    )
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_toy_benchmark_and_reward_by_registry_lines(registered, tmp_path):
    prompts, redness, warmth = _toy()
    result = evalkit.evaluate(
        "toy", "tiny-sd3", model_options=TINY, runs_dir=tmp_path / "runs", show_progress=False
    )
    images = _images(result.run_dir)
    assert len(images) == len(prompts)
    expected = sum(redness(Image.open(p)) for p in images) / len(images)
    assert result.table["Redness"] == pytest.approx(expected)
    again = evalkit.evaluate("toy", "tiny-sd3", model_options=TINY, runs_dir=tmp_path / "runs")
    assert again.run_dir == result.run_dir and again.table == result.table  # resumed, nothing redone

    scorer = build_reward("toy-warmth")
    loaded = [Image.open(p) for p in images]
    assert scorer.score(loaded, list(prompts), [{}] * len(images)) == [
        pytest.approx(warmth(im)) for im in loaded
    ]


def test_toy_plugins_installed_as_entry_points_through_the_cli(installed, cli, tmp_path):
    assert "toy" not in registry.BENCHMARKS and "toy-warmth" not in registry.REWARDS  # no registry edit
    prompts, redness, warmth = _toy()
    code, out, err = cli("ls")
    assert code == 0, err
    assert "toy" in out and "toy-warmth" in out and "plugin from toy-plugin" in " ".join(out.split())

    runs = tmp_path / "runs"
    code, out, err = cli(
        "run", "toy", "--model", "tiny-sd3", "--option", "num_inference_steps=2", "--runs-dir", runs
    )
    assert code == 0, err
    (run_dir,) = (runs / "toy").iterdir()
    images = _images(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = sum(redness(Image.open(p)) for p in images) / len(images)
    assert summary["table"]["Redness"] == pytest.approx(expected)

    out_file = tmp_path / "warmth.jsonl"
    code, out, err = cli("score", run_dir / "samples", "--reward", "toy-warmth", "--out", out_file)
    assert code == 0, err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(lines) == len(images)
    for line in lines:
        image = Image.open(run_dir / "samples" / line["image"])
        assert line["score"] == pytest.approx(warmth(image)) and line["prompt"] in prompts


def test_a_fresh_process_finds_installed_plugins(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(PLUGIN), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", "ls", "rewards"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "toy-warmth" in done.stdout
