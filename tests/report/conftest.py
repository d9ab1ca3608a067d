"""Tiny real runs of every benchmark, built once per session for the viewer and plot tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fixture_paths import BENCHMARKS


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if (
        not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists()
        or not (BENCHMARKS / "wise").is_dir()
    ):
        pytest.skip("official benchmark data (../shared/benchmarks) not present")
    for module in ("diffusers", "transformers", "torchvision", "mmdet"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is needed to make tiny runs")
    from view_helpers import build_all_runs

    return build_all_runs(tmp_path_factory.mktemp("tiny-runs"))
