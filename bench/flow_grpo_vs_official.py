"""Seconds per Flow-GRPO epoch: evalkit's trainer vs the official `scripts/train_sd3.py`, same config.

Both sides train the same saved tiny SD3 pipeline (evalkit.testing's builder, loaded with `from_pretrained`)
at one config: resolution, denoising steps, rollout batch, group size, rollout batches per epoch, LoRA
r32/alpha 64 on the 8 SD3.5 attention projections (the official script hard-codes them), KL beta, CFG
scale, timestep_fraction 0.99, fp32, EMA off, no eval or checkpoint inside the timed epochs, and the
official JPEG-compressibility reward (evalkit side: the same computation as a bench-local scorer). An
epoch is rollouts + rewards + advantages + the clipped GRPO update. Each side runs in its own subprocess:
one warm-up epoch, then `--epochs` timed ones; the sides alternate (official, evalkit, then evalkit,
official, ...) for `--rounds` rounds so load from other processes hits both alike, and the table reports
medians. The official loop has no epoch limit: the harness times it from the sampler's `set_epoch`, which
train_sd3.py calls once at the start of every epoch, and ends the process after the last timed epoch.

    python bench/flow_grpo_vs_official.py --official-repo ~/src/flow_grpo
    python bench/flow_grpo_vs_official.py --official-repo ~/src/flow_grpo --official-python ~/fg/bin/python \
        --configs cfg,nocfg --epochs 3 --rounds 2

`--official-python` is an interpreter that has the official requirements (ml_collections, absl-py, wandb;
wandb runs with WANDB_MODE=disabled) plus torch/diffusers/peft/accelerate and evalkit importable.

Harness shims (none changes what the official code computes): run in one process, the official
`transformer.module.disable_adapter()` (its KL reference, written for a DDP-wrapped model) finds no
`.module`, so the harness lets a peft model answer `.module` with itself; on a CPU-only torch the PyPI
torchvision wheel needs evalkit's torchvision_cpu hook before diffusers imports, as evalkit itself does.

How it was run for the issue-17 numbers (2-core shared CPU, OMP_NUM_THREADS=1): the official files were
read from the public yifan123/flow_grpo repository as stored in the project library and written to a
throwaway checkout outside this repository, never committed: scripts/train_sd3.py at commit 74db69191de9;
flow_grpo/diffusers_patch/sd3_pipeline_with_logprob.py, sd3_sde_with_logprob.py and solver.py, config/base.py
at 54809b5fcf4d; flow_grpo/sampler.py (74db69191de9), stat_tracking.py and rewards.py (94e23ee5405a). Only
the code paths this config reaches were transcribed from solver.py (the flow solver), stat_tracking.py (the
grpo branch) and rewards.py (JPEG compressibility and multi_score). Four modules are not in the library and
were stand-ins written for the run: flow_grpo/__init__.py and flow_grpo/prompts.py (empty: prompt_fn
"general_ocr" reads prompts from a text file), flow_grpo/ema.py (EMAModuleWrapper constructed but never
stepped, EMA being off) and flow_grpo/diffusers_patch/train_dreambooth_lora_sd3.py's encode_prompt (CLIP-L +
CLIP-G penultimate states padded to T5's width, then T5, as in diffusers' SD3 DreamBooth-LoRA example). The
official interpreter was a throwaway venv over the shared one (diffusers 0.42.1, not the pinned 0.33.1) with
ml_collections, absl-py and wandb added.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite_results import emit

PROMPTS = [
    "a photo of a cat", "a red car", "two dogs on a bench", "a blue bird above a tree",
    "a white horse", "an apple next to a cup", "a black chair", "a green bus",
]  # fmt: skip
EVAL_PROMPTS = ["a pink clock", "a brown cow"]
CONFIGS = {"cfg": 4.5, "nocfg": 1.0}  # name -> CFG scale (1.0 = no guidance in rollouts and training)


class JpegCompressibility:
    """Flow-GRPO's `jpeg_compressibility`: minus the quality-95 JPEG size in kB, divided by 500."""

    name = "jpeg_compressibility"

    def score(self, images, prompts, metadata):
        sizes = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=95)
            sizes.append(buffer.tell() / 1000)
        return [-s / 500 for s in sizes]


def check_official(repo: str | None) -> Path:
    """The official checkout, refused with one line before anything loads."""
    from evalkit.errors import EvalkitError

    if not repo:
        raise EvalkitError(
            "--official-repo is required: a yifan123/flow_grpo checkout (git clone "
            "https://github.com/yifan123/flow_grpo), e.g. --official-repo ~/src/flow_grpo"
        )
    path = Path(repo).expanduser().resolve()
    if not (path / "scripts" / "train_sd3.py").is_file() or not (path / "flow_grpo").is_dir():
        raise EvalkitError(
            f"--official-repo {repo}: no scripts/train_sd3.py and flow_grpo/ there; pass the root of a "
            "yifan123/flow_grpo checkout"
        )
    return path


def tiny_folder() -> Path:
    from evalkit.testing.sd3 import build_tiny_sd3, default_folder

    folder = default_folder()
    if not (folder / "model_index.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_sd3(folder)
    return folder


# ------------------------------------------------------------------------------------------ evalkit side


def evalkit_worker(args) -> dict:
    import torch

    import evalkit  # noqa: F401  (torchvision hook before diffusers)
    from evalkit.grpo.config import GRPOConfig
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.testing.sd3 import tiny_sd3_pipeline

    torch.set_num_threads(1)
    scale = CONFIGS[args.worker_config]
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            pretrained_model=str(tiny_folder()),
            mixed_precision="no",
            resolution=args.resolution,
            num_steps=args.num_steps,
            guidance_scale=scale,
            eval_guidance_scale=scale,
            train_cfg=scale > 1.0,
            group_size=args.group,
            sample_batch_size=args.batch,
            train_batch_size=args.batch,
            num_batches_per_epoch=args.batches,
            gradient_accumulation_steps=1,
            timestep_fraction=0.99,
            beta=args.beta,
            rewards={"jpeg_compressibility": 1.0},
            lora_rank=32,
            lora_alpha=64,
            max_sequence_length=128,
            ema=False,
            save_freq=0,
            eval_freq=0,
        )
        trainer = GRPOTrainer(
            config, tiny_sd3_pipeline(), {"jpeg_compressibility": JpegCompressibility()}, PROMPTS
        )
        trainer.train_epoch()  # warm-up
        seconds, cpu = [], []
        for _ in range(args.epochs):
            cpu_start = time.process_time()
            seconds.append(trainer.train_epoch()["epoch_seconds"])
            cpu.append(time.process_time() - cpu_start)
    return {"side": "evalkit", "seconds": seconds, "cpu_seconds": cpu}


# ----------------------------------------------------------------------------------------- official side

_OFFICIAL_CONFIG = """\
import importlib.util
spec = importlib.util.spec_from_file_location("base", {base!r})
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def get_config():
    config = base.get_config()
    config.pretrained.model = {model!r}
    config.dataset = {dataset!r}
    config.prompt_fn = "general_ocr"
    config.reward_fn = {{"jpeg_compressibility": 1.0}}
    config.mixed_precision = "no"
    config.use_lora = True
    config.resolution = {resolution}
    config.sample.num_steps = {num_steps}
    config.sample.eval_num_steps = 2
    config.sample.guidance_scale = {scale}
    config.sample.eval_guidance_scale = {scale}
    config.sample.noise_level = 0.7
    config.sample.train_batch_size = {batch}
    config.sample.num_image_per_prompt = {group}
    config.sample.unique_sample_per_epoch = {unique}
    config.sample.unique_prompt_per_epoch = {unique}
    config.sample.num_batches_per_epoch = {batches}
    config.sample.test_batch_size = {n_eval}
    config.sample.global_std = True
    config.sample.same_latent = False
    config.train.batch_size = {batch}
    config.train.gradient_accumulation_steps = 1
    config.train.num_inner_epochs = 1
    config.train.cfg = {cfg}
    config.train.timestep_fraction = 0.99
    config.train.beta = {beta}
    config.train.ema = False
    config.per_prompt_stat_tracking = True
    config.eval_freq = 10**9  # epoch 0 still evaluates (0 % n == 0): outside the timed epochs
    config.save_freq = 10**9
    config.logdir = {logdir!r}
    config.save_dir = {logdir!r}
    return config
"""


def official_worker(args) -> dict:
    """Run the official train_sd3.main in this process and time it between `set_epoch` calls."""
    import importlib.util

    from evalkit.compat import torchvision_cpu

    torchvision_cpu.install()
    import torch

    torch.set_num_threads(1)
    repo = Path(args.official_repo)
    sys.path.insert(0, str(repo))
    os.environ.setdefault("WANDB_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="flow_grpo_official_"))
    (work / "data").mkdir()
    (work / "data" / "train.txt").write_text("\n".join(PROMPTS) + "\n")
    (work / "data" / "test.txt").write_text("\n".join(EVAL_PROMPTS) + "\n")
    scale = CONFIGS[args.worker_config]
    if args.batch * args.batches % args.group:
        raise SystemExit("batch x batches must be a multiple of group")
    config_file = work / "bench_config.py"
    config_file.write_text(
        _OFFICIAL_CONFIG.format(
            base=str(repo / "config" / "base.py"), model=str(tiny_folder()), dataset=str(work / "data"),
            resolution=args.resolution, num_steps=args.num_steps, scale=scale, batch=args.batch,
            group=args.group, unique=args.batch * args.batches // args.group, batches=args.batches,
            n_eval=len(EVAL_PROMPTS), cfg=scale > 1.0, beta=args.beta, logdir=str(work / "logs"),
        )
    )  # fmt: skip
    os.chdir(work)

    import peft

    if not hasattr(peft.PeftModel, "module"):  # single process: no DDP wrapper to unwrap
        peft.PeftModel.module = property(lambda self: self)
    from flow_grpo.sampler import DistributedKRepeatSampler

    marks: list[tuple[float, float]] = []
    original = DistributedKRepeatSampler.set_epoch

    def timed_set_epoch(self, epoch: int) -> None:
        marks.append((time.perf_counter(), time.process_time()))
        if len(marks) == args.epochs + 2:  # warm-up + timed epochs are complete
            spans = list(zip(marks[1:], marks[2:], strict=False))
            seconds = [b[0] - a[0] for a, b in spans]
            cpu = [b[1] - a[1] for a, b in spans]
            print(json.dumps({"side": "official", "seconds": seconds, "cpu_seconds": cpu}), flush=True)
            os._exit(0)  # the official loop never returns; skip its worker/thread teardown
        original(self, epoch)

    DistributedKRepeatSampler.set_epoch = timed_set_epoch
    spec = importlib.util.spec_from_file_location("train_sd3", repo / "scripts" / "train_sd3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from absl import app

    sys.argv = ["train_sd3.py", f"--config={config_file}"]
    app.run(module.main)
    raise SystemExit("train_sd3.main returned before the timed epochs finished")


# ----------------------------------------------------------------------------------------------- driver


def run_side(args, side: str, config: str) -> dict[str, list[float]]:
    python = args.official_python if side == "official" else sys.executable
    cmd = [
        python, __file__, "--worker", side, "--worker-config", config, "--epochs", str(args.epochs),
        "--batch", str(args.batch), "--group", str(args.group), "--batches", str(args.batches),
        "--num-steps", str(args.num_steps), "--resolution", str(args.resolution), "--beta", str(args.beta),
        "--official-repo", str(args.official_repo),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "WANDB_MODE": "disabled",
        "TQDM_DISABLE": "1",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"side"')]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{side} worker ({config}) failed with exit code {proc.returncode}")
    return json.loads(lines[-1])


def measure(args, config: str) -> dict:
    wall: dict[str, list[float]] = {"official": [], "evalkit": []}
    cpu: dict[str, list[float]] = {"official": [], "evalkit": []}
    for r in range(args.rounds):
        order = ("official", "evalkit") if r % 2 == 0 else ("evalkit", "official")
        for side in order:
            got = run_side(args, side, config)
            wall[side].extend(got["seconds"])
            cpu[side].extend(got["cpu_seconds"])
            print(
                f"  {config} round {r + 1} {side:<8} s/epoch: " + " ".join(f"{s:.2f}" for s in got["seconds"])
            )
    med = {side: statistics.median(values) for side, values in wall.items()}
    cpu_med = {side: statistics.median(values) for side, values in cpu.items()}
    return {
        "config": config, "evalkit": med["evalkit"], "official": med["official"],
        "ratio": med["evalkit"] / med["official"], "cpu_ratio": cpu_med["evalkit"] / cpu_med["official"],
    }  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--official-repo", default=None, help="root of a yifan123/flow_grpo checkout")
    parser.add_argument(
        "--official-python", default=sys.executable, help="interpreter with ml_collections/absl/wandb"
    )
    parser.add_argument("--configs", default="cfg,nocfg", help="comma list of: " + ", ".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating official/evalkit runs per config")
    parser.add_argument("--batch", type=int, default=4, help="rollouts per batch = training minibatch")
    parser.add_argument("--group", type=int, default=4, help="images per prompt")
    parser.add_argument("--batches", type=int, default=2, help="rollout batches per epoch")
    parser.add_argument("--num-steps", type=int, default=10, help="denoising steps per rollout")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.04, help="KL weight")
    parser.add_argument("--json", default=None, help="append the measurements to this JSONL file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", default="cfg", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from evalkit.errors import EvalkitError

    args = parse_args(argv)
    try:
        if args.worker != "evalkit":  # the evalkit side alone needs no official code
            args.official_repo = check_official(args.official_repo)
        unknown = sorted(set(args.configs.split(",")) - set(CONFIGS))
        if unknown:
            raise EvalkitError(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.worker:
        worker = official_worker if args.worker == "official" else evalkit_worker
        print(json.dumps(worker(args)), flush=True)
        return 0
    tiny_folder()  # build the shared pipeline once, before the workers load it
    print(
        f"tiny SD3 CPU, {args.resolution}px, {args.num_steps} steps, batch {args.batch} x {args.batches}, group "
        f"{args.group}, LoRA r32, beta {args.beta}, timed epochs {args.epochs} x {args.rounds} rounds per side"
    )
    rows = [measure(args, name) for name in args.configs.split(",")]
    print(
        f"{'config':<7} {'evalkit s/epoch':>16} {'official s/epoch':>17} {'ratio':>7} {'CPU-time ratio':>15}"
    )
    for row in rows:
        print(
            f"{row['config']:<7} {row['evalkit']:>16.3f} {row['official']:>17.3f} {row['ratio']:>6.2f}x "
            f"{row['cpu_ratio']:>14.2f}x"
        )
        emit(
            args.json, bench="flow_grpo_vs_official", config=f"tiny {row['config']}", device="cpu",
            ratio=row["ratio"], ratio_of="evalkit s/epoch / official s/epoch", cpu_ratio=row["cpu_ratio"],
            images_per_s=None, peak_mem_gb=None, seconds=row["evalkit"], official_seconds=row["official"],
        )  # fmt: skip
    print(
        "ratio = evalkit / official median wall seconds per epoch (< 1: evalkit is faster); the CPU-time ratio"
    )
    print("compares process CPU seconds per epoch, which load from other processes disturbs less.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
