"""Two CPU processes (gloo) give the same rewards, advantages, loss and weights per step as one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("alphagrpo_dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(WORKER), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_processes_match_one(tmp_path):
    one = _run(1, tmp_path / "one.json")
    two = _run(2, tmp_path / "two.json")
    assert len(one["records"]) == len(two["records"])
    for a, b in zip(one["records"], two["records"], strict=True):
        assert a["samples"] == b["samples"]
        for key in ("reward_mean", "reward_avg_mean", "loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        assert b["advantages"] == pytest.approx(a["advantages"], rel=1e-5, abs=1e-6)
    for name, value in one["lora"].items():
        assert two["lora"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


# ---------------------------------------------------------------- accelerate launch with the shipped configs

ACCELERATE = Path(__file__).resolve().parents[2] / "evalkit" / "grpo" / "alphagrpo" / "accelerate"
TINY = [
    "sample.num_image_per_prompt=4",
    "total_batch_size=1",
    "train.gradient_accumulation_steps=1",
    "resolution=32",
    "sample.num_steps=6",
    "train.timestep_fraction=0.5",
    "sample.sde_window_range=[0,4]",
    "train.learning_rate=1e-2",
    "reward_fn={brightness: 1.0}",
    "save_freq=1",
]


def _train(
    tmp_path: Path, out: Path, nproc: int, config: str | None, *extra: str, preset: str = "alphagrpo_t2iThink"
) -> list[dict]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na cat\n")
    sets = [*TINY, f"num_gpus={nproc}", f"sample.train_batch_size={4 // nproc}"]
    args = [
        "-m",
        "evalkit.grpo.alphagrpo.launch",
        "--preset",
        preset,
        "--prompts",
        str(prompts),
    ]
    args += ["--steps", "2", "--max-think-tokens", "4", "--per-sample-seeds", "--out", str(out), *extra]
    args += [arg for item in sets for arg in ("--set", item)]
    cmd = [sys.executable, *args]
    if config is not None:  # the real launcher, reading the shipped config (2 CPU processes, gloo)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / config)]
        cmd += ["--num_processes", str(nproc), "--main_process_port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _same_run(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert y["reward_mean"] == pytest.approx(x["reward_mean"], rel=1e-6)
        assert y["advantages"] == pytest.approx(x["advantages"], rel=1e-5, abs=1e-6)
        for key in ("loss", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key


def _same_adapter(a: Path, b: Path) -> None:
    one, two = _adapter(a), _adapter(b)
    assert one.keys() == two.keys() and one
    for name, value in one.items():
        assert two[name].allclose(value, rtol=1e-4, atol=1e-5), name


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    return tmp / "run", _train(tmp, tmp / "run", 1, None)


@pytest.mark.parametrize(("config", "strategy"), [("ddp.yaml", "data"), ("fsdp.yaml", "fsdp")])
def test_accelerate_configs_train_like_one_process(tmp_path, single_run, config, strategy):
    """`accelerate launch --config_file <shipped> -m evalkit.grpo.alphagrpo.launch` on 2 CPU processes:
    the same rewards, advantages, loss and adapter as one process; FSDP really shards the LoRA."""
    one_dir, one = single_run
    two = _train(tmp_path, tmp_path / "run", 2, config)
    _same_run(one, two)
    _same_adapter(one_dir / "final" / "adapter", tmp_path / "run" / "final" / "adapter")
    layout = json.loads((tmp_path / "run" / "parallel.json").read_text())
    assert layout["strategy"] == strategy and layout["processes"] == 2
    if strategy == "fsdp":  # every decoder layer sharded, rank 0 holds half of every LoRA matrix
        assert layout["sharded_modules"] == 2 and layout["lora_fraction_on_rank0"] == 0.5
    else:
        assert layout["sharded_modules"] == 0 and layout["lora_fraction_on_rank0"] == 1.0
    if strategy == "fsdp":  # exact resume from the per-rank shards of step 1
        resumed = tmp_path / "resumed"
        step1 = tmp_path / "run" / "checkpoints" / "step_1"
        assert {p.name for p in step1.glob("rank*.pt")} == {"rank0.pt", "rank1.pt"}
        again = _train(tmp_path, resumed, 2, config, "--resume", str(step1))
        _same_run(two[1:], again)
        _same_adapter(tmp_path / "run" / "final" / "adapter", resumed / "final" / "adapter")


def test_mix_t2i_two_processes_match_one(tmp_path):
    """mix_t2i picks each prompt's lowest T2I image over all ranks (images gathered): same numbers."""
    mix = "alphagrpo_reflect_mix_t2i"
    one = _train(tmp_path, tmp_path / "one", 1, None, preset=mix)
    two = _train(tmp_path, tmp_path / "two", 2, "ddp.yaml", preset=mix)
    _same_run(one, two)
    assert [r["samples_edit"] for r in two] == [4, 4] and [r["samples_t2i"] for r in two] == [4, 4]
    _same_adapter(tmp_path / "one" / "final" / "adapter", tmp_path / "two" / "final" / "adapter")


def _launch_env(config: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file` gives each process (without starting any)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE / config), "x.py"])
    args = _validate_launch_command(args)[0]
    return prepare_multi_gpu_env(args)


def test_shipped_configs_load_and_map_to_a_strategy():
    from evalkit.grpo.alphagrpo import config as presets
    from evalkit.grpo.alphagrpo import parallel

    shipped = sorted(p.name for p in ACCELERATE.glob("*.yaml"))
    assert shipped == ["ddp.yaml", "fsdp.yaml"]
    preset = presets.resolve("alphagrpo_reflect")
    for name, kind in (("ddp.yaml", "data"), ("fsdp.yaml", "fsdp")):
        env = _launch_env(name)
        assert parallel.strategy_from_env(env).kind == kind
        parallel.check_mixed_precision(preset, env)  # bf16, as the preset


def test_unsupported_launch_settings_are_one_line():
    from evalkit.errors import EvalkitError
    from evalkit.grpo.alphagrpo import config as presets
    from evalkit.grpo.alphagrpo import parallel

    fsdp = _launch_env("fsdp.yaml")
    cases = [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "ddp.yaml"),
        ({**fsdp, "FSDP_VERSION": "1"}, "fsdp_version: 2"),
        ({**fsdp, "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params"),
        ({**fsdp, "FSDP_AUTO_WRAP_POLICY": "SIZE_BASED_WRAP"}, "TRANSFORMER_BASED_WRAP"),
    ]
    for env, fix in cases:
        with pytest.raises(EvalkitError, match=fix):
            parallel.strategy_from_env(env)
    with pytest.raises(EvalkitError, match="--set mixed_precision=fp16"):
        parallel.check_mixed_precision(
            presets.resolve("alphagrpo_reflect"), {"ACCELERATE_MIXED_PRECISION": "fp16"}
        )
