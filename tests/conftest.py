"""Shared test helpers: paths to the official data and fixtures, and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCHMARKS = SHARED / "benchmarks"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def data_dir() -> Path:
    if not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists():
        pytest.skip("official benchmark data (../shared/benchmarks) not present")
    return BENCHMARKS


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `evalkit ARGS...` in this process; returns (exit code, stdout, stderr)."""
    from evalkit.cli import main

    def run(*args, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["evalkit", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        for key in env or {}:
            monkeypatch.delenv(key)
        return exc.value.code, captured.out, captured.err

    return run
