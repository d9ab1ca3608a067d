"""Flow-GRPO under accelerate: one optimiser step per intended step, the same trajectory on 1 and 2 processes.

DDP runs here (2 CPU processes, gloo). accelerate runs FSDP and DeepSpeed only on accelerators (on a CPU it
falls back to MULTI_CPU / one process), so for those the tests check what the CPU can: the trainer hands every
backward to accelerate with the accumulation boundary (the flag DeepSpeed's engine steps on), and the shipped
launch configs leave the accumulation to the trainer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from evalkit.grpo.config import GRPOConfig
from evalkit.grpo.distributed import accumulation_steps, configure_backend
from evalkit.grpo.trainer import GRPOTrainer
from evalkit.rewards.brightness import BrightnessScorer
from evalkit.testing.sd3 import tiny_sd3_pipeline

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("grpo_dist_worker.py")
CONFIGS = sorted((ROOT / "reward_ablation" / "accelerate").glob("*.yaml"))
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def _config(tmp_path, **overrides) -> GRPOConfig:
    values = dict(
        output_dir=str(tmp_path), mixed_precision="no", resolution=64, num_steps=4, timestep_fraction=0.5,
        group_size=4, sample_batch_size=4, train_batch_size=4, num_batches_per_epoch=2,
        gradient_accumulation_steps=2, beta=0.01, rewards={"brightness": 1.0}, lora_rank=4, lora_alpha=8,
        lora_target_modules=TARGETS, max_sequence_length=16, save_freq=0, ema=False, async_rewards=False,
    )  # fmt: skip
    values.update(overrides)
    return GRPOConfig(**values)


def test_backward_passes_reach_accelerate_with_one_boundary_per_optimizer_step(tmp_path):
    config = _config(tmp_path)  # 2 minibatches x 2 trained steps = 4 backward passes per optimiser step
    trainer = GRPOTrainer(config, tiny_sd3_pipeline(), {"brightness": BrightnessScorer()}, ["a cat", "a dog"])
    acc = trainer.accelerator
    assert acc.gradient_accumulation_steps == accumulation_steps(config) == 4
    boundaries, real_steps = [], []
    backward = acc.backward
    acc.backward = lambda loss, **kw: (boundaries.append(acc.sync_gradients), backward(loss, **kw))
    trainer.optimizer.optimizer.register_step_post_hook(lambda *_: real_steps.append(trainer.global_step))
    trainer.train(num_epochs=2)
    # DeepSpeed's engine steps exactly when accelerate passes sync_gradients=True to its backward.
    assert boundaries == [False, False, False, True] * 2
    assert real_steps == [0, 1] and trainer.global_step == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_worker(out: Path, processes: int, sample_batch: int) -> dict:
    args = [str(out), str(sample_batch), "2", "2", "2"]  # num_batches, gradient_accumulation_steps, epochs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    if processes == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        env["ACCELERATE_USE_CPU"] = "true"  # accelerate's multi-CPU (gloo) mode under torchrun
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
            "--master-addr=127.0.0.1", f"--master-port={_free_port()}", str(WORKER), *args,
        ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_processes_follow_the_one_process_trajectory(tmp_path):
    one = _run_worker(tmp_path / "one.json", 1, 4)
    two = _run_worker(tmp_path / "two.json", 2, 2)  # same global batch: 2 processes x 2 x 2 batches
    assert (one["backend"], two["backend"], two["num_processes"]) == ("NO", "MULTI_CPU", 2)
    # One real AdamW step per intended step (2 epochs x 1), on both layouts.
    assert one["optimizer_steps"] == two["optimizer_steps"] == one["global_step"] == two["global_step"] == 2
    for a, b in zip(one["records"], two["records"], strict=True):
        assert a["trained_samples"] == b["trained_samples"] and a["global_step"] == b["global_step"]
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-5)
        for key in ("kl", "approx_kl", "ratio", "policy_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-6), key
    assert one["records"][1]["kl"] > 0  # the LoRA moved, so the second epoch compares trained weights
    assert one["lora"].keys() == two["lora"].keys()
    for name, value in one["lora"].items():
        assert two["lora"][name] == pytest.approx(value, rel=1e-3, abs=1e-3), name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_launch_configs_leave_accumulation_to_the_trainer(path, tmp_path):
    launch = yaml.safe_load(path.read_text())
    backend = launch.get("deepspeed_config") or launch.get("fsdp_config") or {}
    assert "gradient_accumulation_steps" not in launch and "gradient_accumulation_steps" not in backend
    if launch["distributed_type"] == "FSDP":
        assert backend["fsdp_version"] == 2  # FSDP2: the rollout calls the unwrapped module
        blocks = {type(m).__name__ for m in tiny_sd3_pipeline().transformer.modules()}
        assert backend["fsdp_transformer_layer_cls_to_wrap"] in blocks
    if launch["distributed_type"] == "DEEPSPEED":
        from accelerate.utils import DeepSpeedPlugin

        plugin = DeepSpeedPlugin(**backend)
        config = _config(tmp_path, max_grad_norm=0.5, train_batch_size=2)
        configure_backend(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)), config)
        ds = plugin.deepspeed_config
        assert ds["gradient_accumulation_steps"] == "auto"  # accelerate fills in the trainer's value
        assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_clipping"]) == (2, 0.5)


def test_an_accumulation_set_by_the_launcher_is_refused(tmp_path, monkeypatch):
    from evalkit.errors import EvalkitError

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1")
    with pytest.raises(EvalkitError, match="2 x 2 = 4"):
        GRPOTrainer(_config(tmp_path), tiny_sd3_pipeline(), {"brightness": BrightnessScorer()}, ["a cat"])


def test_rollouts_per_epoch_must_fill_whole_optimizer_steps():
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        GRPOConfig(
            sample_batch_size=4, num_batches_per_epoch=1, train_batch_size=4, gradient_accumulation_steps=2
        )
    # The SD3.5-M recipe: 9 x 4 rollouts per process, 2 minibatches x 9 trained steps per optimiser step.
    assert accumulation_steps(GRPOConfig()) == 18
