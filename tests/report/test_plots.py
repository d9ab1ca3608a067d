"""Paper figures from tiny real runs and a tiny real GRPO training: the numbers each figure is made of,
checked against the run folders (or recomputed from the images), and the files (PNG + PDF with TrueType
fonts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from evalkit.errors import EvalkitError  # noqa: E402
from evalkit.report.plots import (  # noqa: E402
    HEADLINES,
    category_bars,
    category_intervals,
    headline_scores,
    radar,
    read_metrics,
    srr_gain,
    srr_round_series,
    training_curves,
)


def _check_files(paths: list[Path]) -> None:
    png, pdf = paths
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 600 and im.getbbox() is not None
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/FontFile2" in data and b"/Type3" not in data  # embedded TrueType fonts, no Type 3


def test_radar_across_benchmarks(tiny_runs, tmp_path):
    dirs = [tiny_runs[k] for k in ("geneval", "tiif", "wise", "dpg")]
    scores = headline_scores(dirs)
    for run_dir in dirs:
        info = json.loads((run_dir / "run.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        column, factor = HEADLINES[summary["benchmark"]]
        value = summary["table"][column]
        assert scores[info["model"]][summary["benchmark"]] == (None if value is None else value * factor)
    other = {bench: 10.0 * (i + 1) for i, bench in enumerate(HEADLINES)}
    _check_files(radar({**scores, "other model": other}, tmp_path / "radar"))
    with pytest.raises(EvalkitError, match="two geneval runs"):
        headline_scores([tiny_runs["geneval"], tiny_runs["geneval_seed7"]])
    with pytest.raises(EvalkitError, match="at least 3 benchmarks"):
        radar({"m": {"geneval": 1.0, "dpg": 2.0}}, tmp_path / "bad")


def test_category_bars_with_bootstrap_whiskers(tiny_runs, tmp_path):
    runs = [tiny_runs["geneval"], tiny_runs["dpg"]]
    intervals = category_intervals(runs, resamples=50)
    for run_dir, per in zip(runs, intervals.values(), strict=True):
        table = json.loads((run_dir / "summary.json").read_text())["table"]
        assert per and set(per) <= set(table)
        for column, interval in per.items():
            if table[column] is None:  # nothing scored in this column: no interval either
                assert interval.estimate is None
                continue
            assert interval.estimate == pytest.approx(table[column])
            assert interval.low <= interval.estimate <= interval.high
    given = {"a": {"x": (0.5, 0.4, 0.6), "y": 0.3}, "b": {"x": (0.7, 0.65, 0.75)}}
    _check_files(category_bars({**intervals, **given}, tmp_path / "bars", ylabel="accuracy"))


def test_srr_gain_per_round_from_the_gate_signal(tiny_runs, tmp_path):
    """The helper's gate is DVReward over a judge whose P(yes) is the image's mean brightness, so each
    round's value is recomputed here from the round images themselves."""
    run_dir = tiny_runs["srr"]
    series = srr_round_series(run_dir)
    rounds = {
        int(m.group(1))
        for p in run_dir.glob("samples/*/*.r*.png")
        if (m := re.search(r"\.r(\d+)\.png$", p.name))
    }
    expected = []
    for r in sorted(rounds):
        values = [
            np.asarray(Image.open(p).convert("RGB"), dtype=float).mean() / 255
            for p in run_dir.glob(f"samples/*/*.r{r}.png")
        ]
        expected.append(float(np.mean(values)))
    assert series == pytest.approx(expected, abs=1e-6)
    _check_files(srr_gain({"tiny-sd3 +SRR": series}, tmp_path / "srr"))
    with pytest.raises(EvalkitError, match="no SRR round"):
        srr_round_series(tiny_runs["geneval"])


def test_training_curves_from_metrics_jsonl(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from view_helpers import train_tiny_grpo

    train = train_tiny_grpo(tmp_path / "train", epochs=2)
    rows = read_metrics(train)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {"reward/brightness", "reward/darkness", "kl", "clipfrac"} <= set(rows[0])
    _check_files(training_curves([train, train], tmp_path / "curves", labels=["run a", "run b"]))
    with pytest.raises(EvalkitError, match="no metrics.jsonl"):
        read_metrics(tmp_path)


def test_plot_commands(cli, tiny_runs, tmp_path):
    dirs = [tiny_runs[k] for k in ("geneval", "tiif", "wise", "dpg")]
    code, out, err = cli("plot", "radar", *dirs, "--out", tmp_path / "radar")
    assert code == 0, err
    assert out.split() == [str(tmp_path / "radar.png"), str(tmp_path / "radar.pdf")]
    code, out, err = cli("plot", "srr", tiny_runs["srr"], "--out", tmp_path / "srr")
    assert code == 0 and (tmp_path / "srr.pdf").exists(), err
    code, out, err = cli("plot", "bars", tiny_runs["geneval"], "--resamples", 20, "--out", tmp_path / "bars")
    assert code == 0 and (tmp_path / "bars.png").exists(), err
    for args in (("srr", tiny_runs["geneval"]), ("curves", tmp_path), ("radar", tiny_runs["geneval"])):
        code, _, err = cli("plot", *args)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
