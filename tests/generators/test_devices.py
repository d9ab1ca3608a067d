"""One device rule for every model (evalkit.devices): `cuda:$LOCAL_RANK` under torchrun, checked on CPU
with CUDA's availability mocked, and the generators and the hf judge load where it says."""

from __future__ import annotations

import pytest
import torch

from evalkit.devices import default_device, gpu_index, resolve_device
from evalkit.errors import EvalkitError


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this node shows `n` GPUs."""

    def show(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return show


def test_default_is_this_ranks_gpu(gpus, monkeypatch):
    gpus(4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert default_device() == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == resolve_device(None) == resolve_device("cuda") == "cuda:3"
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "auto"


def test_no_gpu_means_cpu(gpus, monkeypatch):
    gpus(0)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device(None) == "cpu"


def test_one_visible_gpu_per_process_and_too_many_ranks(gpus, monkeypatch):
    gpus(1)  # CUDA_VISIBLE_DEVICES per task: each process sees only its own GPU
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert resolve_device(None) == "cuda:0"
    assert gpu_index(1, 2) == 1
    with pytest.raises(EvalkitError, match="LOCAL_RANK=2 but this node shows 2 GPUs.*nproc-per-node 2"):
        gpu_index(2, 2)


@pytest.mark.parametrize("value", ["x", "-1"])
def test_bad_local_rank_is_one_line(gpus, monkeypatch, value):
    gpus(2)
    monkeypatch.setenv("LOCAL_RANK", value)
    with pytest.raises(EvalkitError, match="LOCAL_RANK"):
        resolve_device(None)


@pytest.fixture
def moves(monkeypatch, gpus):
    """Record where modules are sent; CUDA moves are recorded and skipped (no GPU here)."""
    gpus(2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    seen: list[str] = []
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, str | torch.device):
            seen.append(str(target))
            if str(target).startswith("cuda"):
                return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return seen


def test_diffusers_generator_goes_to_local_rank(moves):
    from evalkit import registry
    from evalkit.generators.base import ModelSpec

    registry.lookup("models", "tiny-sd3").load()(ModelSpec(name="tiny-sd3", path=None, options={}))
    assert moves and set(moves) == {"cuda:1"}


def test_hf_judge_goes_to_local_rank(moves, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    from evalkit.judges.hf import HFJudge
    from evalkit.testing.judges import tiny_qwen2vl_path

    path = tiny_qwen2vl_path(tmp_path / "tiny-qwen2vl")
    HFJudge.from_pretrained(str(path), name="tiny")
    assert "cuda:1" in moves and not any(m.startswith("cuda") and m != "cuda:1" for m in moves)
