"""Shared test helpers: paths to the official data and fixtures, and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fixture_paths import (  # noqa: F401 - re-exported for older imports
    BENCHMARKS,
    FIXTURES,
    REQUIRE_ENV,
    SHARED,
    fixtures_required,
    need,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under EVALKIT_REQUIRE_FIXTURES=1 (CI) the run stops at once when the shared parity data is missing."""
    if fixtures_required():
        missing = [str(p) for p in (FIXTURES, BENCHMARKS) if not p.is_dir()]
        if missing:
            raise pytest.UsageError(f"{REQUIRE_ENV} is set but {', '.join(missing)} is missing")


# Words a skip reason uses when the thing missing is official data or a fixture (see fixture_paths.need).
_DATA_SKIP_WORDS = ("fixture", "../shared", "benchmark data", "official data", "empty parameter set")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under EVALKIT_REQUIRE_FIXTURES=1 a test that skips because parity data is absent fails instead."""
    outcome = yield
    report = outcome.get_result()
    if fixtures_required() and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).lower()
        if any(word in reason for word in _DATA_SKIP_WORDS):
            report.outcome = "failed"
            report.longrepr = f"{REQUIRE_ENV} is set, but the test skipped: {report.longrepr[2]}"


@pytest.fixture
def data_dir() -> Path:
    need(
        BENCHMARKS / "geneval" / "evaluation_metadata.jsonl", "official benchmark data (../shared/benchmarks)"
    )
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


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory):
    """The tiny random Qwen2-VL judge (real HFJudge code path); its answers are noise."""
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
    from evalkit.judges.hf import HFJudge
    from evalkit.testing.judges import tiny_qwen2vl_path

    path = tiny_qwen2vl_path(tmp_path_factory.getbasetemp() / "tiny-qwen2vl")
    return HFJudge.from_pretrained(str(path), name="tiny-qwen2vl", device="cpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it needs: tests under parity/ compare against stored
    fixtures (`fixtures`); `gpu` tests are skipped on a machine without CUDA."""
    parity = Path(__file__).resolve().parent / "parity"
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    for item in items:
        if parity in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.fixtures)
    if gpu_items:
        import torch

        if not torch.cuda.is_available():
            for item in gpu_items:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache and checkpoints folder, and any outside connection is a test failure."""
    import socket

    import huggingface_hub.constants

    from evalkit import checkpoints

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path / "ckpt")
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
            raise AssertionError(f"network access to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tmp_path
