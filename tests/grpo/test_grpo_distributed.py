"""Flow-GRPO under accelerate: one optimiser step per intended step, the same trajectory on 1 and 2 processes.

DDP runs here (2 CPU processes, gloo), and so does FSDP2 through the shipped fsdp.yaml (accelerate itself
falls back to MULTI_CPU on a CPU; the trainer honours the FSDP config there): both take one real AdamW step
per intended step and follow the 1-process trajectory, FSDP resume included. DeepSpeed runs
only on accelerators, so for it the tests check what the CPU can: the trainer hands every backward to
accelerate with the accumulation boundary (the flag DeepSpeed's engine steps on), and the shipped launch
configs leave the accumulation to the trainer.
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
FSDP_YAML = "reward_ablation/accelerate/fsdp.yaml"
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


def _fsdp_launch(processes: int) -> list[str]:
    """`accelerate launch` with the shipped fsdp.yaml on `processes` CPU processes (gloo)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / FSDP_YAML),
        "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", str(_free_port()),
    ]  # fmt: skip


def _run_worker(out: Path, processes: int, sample_batch: int, launcher: str = "torchrun") -> dict:
    """The worker on `processes` CPU processes: `torchrun` (accelerate sees MULTI_CPU: DDP over gloo) or
    `fsdp` (`accelerate launch` with the shipped fsdp.yaml); 1 process runs it directly."""
    args = [str(out), str(sample_batch), "2", "2", "2"]  # num_batches, gradient_accumulation_steps, epochs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    if processes == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        env["ACCELERATE_USE_CPU"] = "true"  # accelerate's multi-CPU (gloo) mode; the trainer keeps FSDP on
        if launcher == "torchrun":
            cmd = [
                sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                "--master-addr=127.0.0.1", f"--master-port={_free_port()}", str(WORKER), *args,
            ]  # fmt: skip
        else:
            cmd = [*_fsdp_launch(processes), str(WORKER), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    """The 1-process reference run, shared by the DDP and FSDP comparisons."""
    return _run_worker(tmp_path_factory.mktemp("one") / "one.json", 1, 4)


@pytest.mark.parametrize(("launcher", "backend"), [("torchrun", "MULTI_CPU"), ("fsdp", "FSDP")])
def test_two_gloo_processes_follow_the_one_process_trajectory(tmp_path, one_process, launcher, backend):
    one = one_process
    two = _run_worker(tmp_path / "two.json", 2, 2, launcher)  # same global batch: 2 processes x 2 x 2 batches
    assert (one["backend"], two["backend"], two["num_processes"]) == ("NO", backend, 2)
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


# ------------------------------------------------- FSDP checkpoints: exact resume from the per-rank shards

PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a blue bird"]
TINY = [
    "mixed_precision=no", "resolution=64", "num_steps=4", "timestep_fraction=0.5", "group_size=4",
    "sample_batch_size=2", "train_batch_size=2", "num_batches_per_epoch=2", "gradient_accumulation_steps=2",
    "learning_rate=3e-3", "beta=0.01", "lora_rank=4", "lora_alpha=128", "max_sequence_length=16",
    "save_freq=1", "ema_update_interval=1", "async_rewards=false", "filter_zero_std=false",
]  # fmt: skip


def _train(tmp_path: Path, out: Path, epochs: int, nproc: int, *sets: str) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file fsdp.yaml -m evalkit.grpo.launch` on `nproc` CPU processes (gloo);
    `nproc` 1: the plain command."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = ["-m", "evalkit.grpo.launch", "--model", "tiny-sd3", "--prompts", str(prompts)]
    args += ["--reward", "brightness"]
    for item in [*TINY, f"output_dir={out}", f"num_epochs={epochs}", *sets]:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    cmd = [sys.executable, *args]
    if nproc > 1:
        env["ACCELERATE_USE_CPU"] = "true"  # accelerate's multi-CPU (gloo) mode; the trainer keeps FSDP on
        cmd = [*_fsdp_launch(nproc), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


SAME = ("global_step", "reward_mean", "reward_std", "trained_samples", "policy_loss", "kl", "approx_kl", "ratio")  # fmt: skip


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name, value in a.items():
        assert b[name].allclose(value, rtol=1e-5, atol=1e-6), name


def test_fsdp_resume_from_step_1_equals_the_uninterrupted_run(tmp_path):
    """2 FSDP2 processes: 2 steps straight == 1 step, stop, resume from its checkpoint, 1 step (rewards,
    losses, raw LoRA, EMA LoRA, optimiser state restored from each rank's shards)."""
    import torch
    from safetensors.torch import load_file

    runs = {"full": 2, "part": 1}
    for name, epochs in runs.items():
        done = _train(tmp_path, tmp_path / name, epochs, 2)
        assert done.returncode == 0, done.stderr[-3000:]
    step1 = tmp_path / "part" / "checkpoints" / "checkpoint-1"
    done = _train(tmp_path, tmp_path / "resumed", 2, 2, f"resume_from={step1}")
    assert done.returncode == 0, done.stderr[-3000:]

    state = torch.load(step1 / "trainer_state.pt", weights_only=False)
    assert (state["layout"], state["processes"], state["optimizer"]) == ("fsdp", 2, None)
    shard = torch.load(step1 / "rank1.pt", weights_only=False)
    whole = next(iter(state["lora"].values()))
    assert shard["lora"][0].shape[0] * 2 == whole.shape[0]  # really sharded: rank 1 holds half of each matrix
    assert shard["optimizer"]["state"][0]["exp_avg"].shape == shard["lora"][0].shape

    full, resumed = _records(tmp_path / "full"), _records(tmp_path / "resumed")
    assert [r["epoch"] for r in resumed] == [1]
    assert full[1]["kl"] > 0  # the second step starts from trained weights
    for key in SAME:
        assert resumed[0][key] == pytest.approx(full[1][key], rel=1e-5, abs=1e-7), key
    end = {n: torch.load(tmp_path / n / "checkpoints" / "checkpoint-2" / "trainer_state.pt", weights_only=False)
           for n in ("full", "resumed")}  # fmt: skip
    _same_tensors(end["full"]["lora"], end["resumed"]["lora"])
    lora = "final/lora/pytorch_lora_weights.safetensors"  # the EMA weights
    _same_tensors(load_file(tmp_path / "full" / lora), load_file(tmp_path / "resumed" / lora))

    # Another layout (one process, no FSDP) cannot take 2 ranks' shards: one line, exit 2, nothing trained.
    refused = _train(tmp_path, tmp_path / "one", 2, 1, f"resume_from={step1}")
    assert refused.returncode == 2, refused.stderr[-3000:]
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "FSDP shards of 2 process(es)" in line and "--num_processes 2" in line


def test_resume_refusals_name_the_layout_that_can_take_the_checkpoint(tmp_path):
    """(saved layout, processes) vs (this run's): shards need FSDP with the same process count; a whole
    optimiser state needs no FSDP; DeepSpeed's partitioned state is never saved. One line each."""
    import torch

    from evalkit.errors import EvalkitError
    from evalkit.grpo import checkpoint, shards

    ok = [(("fsdp", 2), ("fsdp", 2)), (("data", 2), ("data", 1)), (("data", 1), ("data", 4))]
    for saved, now in ok:
        shards.check_layout(tmp_path, saved, now, FSDP_YAML)
    refused = [
        (("fsdp", 2), ("fsdp", 4), "this run has 4; resume it with --num_processes 2"),
        (("fsdp", 2), ("data", 2), f"resume it under FSDP: accelerate launch --config_file {FSDP_YAML}"),
        (("data", 2), ("fsdp", 2), f"resume it without {FSDP_YAML}"),
    ]
    for saved, now, fix in refused:
        with pytest.raises(EvalkitError, match=fix):
            shards.check_layout(tmp_path, saved, now, FSDP_YAML)

    def trainer(kind: str) -> SimpleNamespace:
        acc = SimpleNamespace(distributed_type=f"DistributedType.{kind}", num_processes=2, process_index=0)
        return SimpleNamespace(accelerator=acc, lora_parameters=list)

    def save(**state) -> Path:
        torch.save({"processes": 2, "optimizer": None, **state}, tmp_path / checkpoint.STATE_FILE)
        return tmp_path

    with pytest.raises(EvalkitError, match="written under DeepSpeed and lacks the optimiser state"):
        checkpoint.load_checkpoint(trainer("MULTI_GPU"), save(layout="deepspeed"))
    with pytest.raises(EvalkitError, match="FSDP or DeepSpeed by an older evalkit"):
        checkpoint.load_checkpoint(trainer("MULTI_GPU"), save())  # no layout, no optimiser state
    with pytest.raises(
        EvalkitError, match="resuming under DeepSpeed is not supported .*accelerate/ddp.yaml or"
    ):
        checkpoint.load_checkpoint(trainer("DEEPSPEED"), save(layout="data", optimizer={}))
