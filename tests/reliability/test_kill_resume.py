"""kill -9 at random points of a real `evalkit run` (subprocess), then resume: the finished run folder has
exactly the records and images of an uninterrupted run. Short here (one cycle, two kills);
`bench/reliability.py` runs the long drill and prints the figures."""

from __future__ import annotations

import importlib.util

import pytest
from fixture_paths import BENCHMARKS

from evalkit.testing.reliability import kill_drill, run_cli

if not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
if importlib.util.find_spec("diffusers") is None:
    pytest.skip("diffusers is needed", allow_module_level=True)


def _args(runs):
    return ["run", "geneval", "-m", "tiny-sd3", "--detector", "tiny", "--limit", "1", "--batch-size", "1",
            "--data-dir", str(BENCHMARKS), "--runs-dir", str(runs)]  # fmt: skip


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_run(tmp_path):
    assert run_cli(_args(tmp_path / "reference")) == 0
    (reference,) = (tmp_path / "reference").glob("*/*")
    result = kill_drill(
        _args,
        reference,
        tmp_path / "drill",
        cycles=1,
        kills_per_cycle=2,
        max_delay=12.0,
        seed=1,
        budget_s=240,
    )
    assert result.cycles == 1 and result.lost == 0, result.differences
    assert result.identical == result.cycles, result.differences
