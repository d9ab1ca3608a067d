"""A compact Flow-GRPO trainer for diffusers SD3 pipelines (LoRA), runnable under `accelerate launch`.

One epoch = sample groups of images per prompt with the SDE sampler (log-probs stored), score them (in a
worker thread while the next batch is sampled), turn rewards into per-prompt group advantages, then
optimise the clipped GRPO objective on the stored transitions, with an optional KL to the base model
(the same transformer with its LoRA adapter disabled) and an EMA of the LoRA weights.

Every random draw (prompts, initial noise, SDE noise, windows, shuffles) is derived from
(seed, epoch, sample index), so results do not depend on the number of processes and a resumed run
continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalkit.grpo import checkpoint
from evalkit.grpo.advantages import PerPromptStatTracker, batch_advantages, informative_mask
from evalkit.grpo.config import GRPOConfig
from evalkit.grpo.distributed import (
    accumulation_steps,
    build_accelerator,
    check_accumulation,
    configure_backend,
    reduce_metrics,
)
from evalkit.grpo.ema import LoRAEMA
from evalkit.grpo.loss import clipped_policy_loss, gaussian_mean_kl
from evalkit.grpo.reward_mix import WeightedReward
from evalkit.grpo.rollout import (
    PromptEmbeds,
    encode_negative,
    encode_prompts,
    make_scheduler,
    predict_velocity,
    sample_with_logprob,
    to_pil,
)
from evalkit.grpo.sde import sde_step_with_logprob
from evalkit.rewards.base import Scorer


def _generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints (stable across processes and runs)."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] % (2**63))
    return torch.Generator().manual_seed(seed)


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else math.nan


def _cat_embeds(parts: Sequence[PromptEmbeds]) -> PromptEmbeds:
    def cat(name: str) -> torch.Tensor | None:
        first = getattr(parts[0], name)
        return None if first is None else torch.cat([getattr(p, name) for p in parts])

    return PromptEmbeds(cat("embeds"), cat("pooled"), cat("neg_embeds"), cat("neg_pooled"))


def _json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """NaN (e.g. every reward abstained) becomes null, so metrics.jsonl stays strict JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _split_prompt(item: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    meta = {k: v for k, v in item.items() if k != "prompt"}
    return str(item["prompt"]), meta


class GRPOTrainer:
    """Flow-GRPO on a `StableDiffusion3Pipeline`; `prompts` are strings or dicts with "prompt" + metadata."""

    def __init__(
        self,
        config: GRPOConfig,
        pipeline,
        scorers: Mapping[str, Scorer],
        prompts: Sequence[str | Mapping[str, Any]],
        accelerator=None,
        eval_prompts: Sequence[str | Mapping[str, Any]] | None = None,
    ):
        self.config = config
        self.pipeline = pipeline
        self.prompts = [_split_prompt(p) for p in prompts]
        self.eval_prompts = list(eval_prompts or [])
        if not self.prompts:
            raise ValueError("no training prompts")
        self.reward_fn = WeightedReward(scorers, config.rewards)
        for scorer in scorers.values():  # e.g. DVReward without questions for some prompt: refuse now
            check = getattr(scorer, "check_prompts", None)
            if check is not None:
                check(self.prompts)
        self.accelerator = accelerator or build_accelerator(config)
        check_accumulation(self.accelerator, config)
        self.output_dir = Path(config.output_dir)
        self.epoch = 0  # number of finished epochs
        self.global_step = 0  # number of optimiser steps
        self.history: list[dict[str, Any]] = []
        self._negative: PromptEmbeds | None = None

        n_total = config.sample_batch_size * self.accelerator.num_processes * config.num_batches_per_epoch
        if n_total % config.group_size:
            raise ValueError(
                f"sample_batch_size * num_processes * num_batches_per_epoch = {n_total} must be a multiple "
                f"of group_size = {config.group_size}"
            )
        self.samples_per_epoch = n_total
        self._setup_models()

    # ----------------------------------------------------------------------------------------- setup

    def _setup_models(self) -> None:
        from peft import LoraConfig

        cfg, acc, pipe = self.config, self.accelerator, self.pipeline
        if cfg.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", "transformer"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.requires_grad_(False)
                module.eval()
                # The VAE stays in fp32 (decoding precision matters for rewards).
                module.to(acc.device, dtype=torch.float32 if name == "vae" else weight_dtype)
        transformer = pipe.transformer
        lora_config = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            init_lora_weights=cfg.lora_init,
            target_modules=list(cfg.lora_target_modules),
        )
        with torch.random.fork_rng(devices=[]):  # seeded LoRA init without touching the global RNG
            torch.manual_seed(cfg.seed)
            transformer.add_adapter(lora_config)
        if cfg.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        for param in transformer.parameters():
            if param.requires_grad:
                param.data = param.data.float()  # LoRA weights train in fp32
        self.lora_names = [n for n, p in transformer.named_parameters() if p.requires_grad]
        params = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
            eps=cfg.adam_epsilon,
        )
        configure_backend(acc, cfg)
        self.transformer, self.optimizer = acc.prepare(transformer, optimizer)
        check_accumulation(acc, cfg)  # DeepSpeed's own config may have replaced the value in `prepare`
        self.ema = (
            LoRAEMA(self.lora_parameters(), cfg.ema_decay, cfg.ema_update_interval) if cfg.ema else None
        )
        height = width = cfg.resolution
        c, h, w = (
            pipe.transformer.config.in_channels,
            height // pipe.vae_scale_factor,
            width // pipe.vae_scale_factor,
        )
        patch = pipe.transformer.config.patch_size
        self.latent_shape = (c, h, w)
        self.train_scheduler = make_scheduler(pipe, cfg.num_steps, (h // patch) * (w // patch))
        self.stat_tracker = PerPromptStatTracker(global_std=cfg.global_std)

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The bare transformer, looked up once: `unwrap_model` costs ~1.5 ms and ran on every KL step."""
        if getattr(self, "_unwrapped_for", None) is not self.transformer:
            self._unwrapped = self.accelerator.unwrap_model(self.transformer)
            self._unwrapped_for = self.transformer
        return self._unwrapped

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        named = dict(self.unwrapped.named_parameters())
        return [named[n] for n in self.lora_names]

    @contextmanager
    def reference_model(self) -> Iterator[torch.nn.Module]:
        """The base model: the same transformer with its LoRA adapter switched off.

        Switches the LoRA layers found once per run, as diffusers' `disable_adapters`/`enable_adapters` do
        layer by layer; those re-walk every module and re-read peft's installed version on each call, which
        made the KL step slower than the official trainer's."""
        model = self.unwrapped
        if getattr(self, "_lora_layers_of", None) is not model:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._lora_layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
            self._lora_layers_of = model
        for layer in self._lora_layers:
            layer.enable_adapters(False)
        try:
            yield model
        finally:
            for layer in self._lora_layers:
                layer.enable_adapters(True)

    def negative_embeds(self) -> PromptEmbeds:
        """The negative prompt encoded once per run (the text encoders are frozen)."""
        if self._negative is None:
            self._negative = encode_negative(
                self.pipeline, self.config.negative_prompt, self.config.max_sequence_length
            )
        return self._negative

    def use_cfg(self, guidance_scale: float) -> bool:
        return guidance_scale > 1.0

    def encode(self, texts: list[str], use_cfg: bool) -> PromptEmbeds:
        """Prompt embeddings of a batch (with the run's negative prompt when CFG is on)."""
        cfg = self.config
        negative = self.negative_embeds() if use_cfg else None
        return encode_prompts(
            self.pipeline, texts, cfg.negative_prompt, cfg.max_sequence_length, use_cfg, negative=negative
        )

    # -------------------------------------------------------------------------------------- rollouts

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Global (prompt index, group id) per sample of `epoch`: groups of `group_size`, then shuffled."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch, 0])
        n_groups = self.samples_per_epoch // cfg.group_size
        chosen = rng.choice(len(self.prompts), n_groups, replace=len(self.prompts) < n_groups)
        prompt_ids = np.repeat(chosen, cfg.group_size)
        group_ids = np.repeat(np.arange(n_groups), cfg.group_size)
        order = rng.permutation(len(prompt_ids))
        return prompt_ids[order], group_ids[order]

    def sde_window(self, epoch: int, batch_index: int) -> tuple[int, int] | None:
        cfg = self.config
        if cfg.sde_window_size <= 0:
            return None
        lo, hi = cfg.window_range
        rng = random.Random(f"{cfg.seed}-{epoch}-{batch_index}")
        start = rng.randint(lo, hi - cfg.sde_window_size)
        return start, start + cfg.sde_window_size

    @torch.no_grad()
    def collect_rollouts(self, epoch: int) -> dict[str, Any]:
        """This process's share of the epoch's rollouts, with rewards (None = abstained)."""
        cfg, acc = self.config, self.accelerator
        prompt_ids, group_ids = self.epoch_plan(epoch)
        n_local = len(prompt_ids) // acc.num_processes
        first = acc.process_index * n_local
        use_cfg = self.use_cfg(cfg.guidance_scale)
        self.transformer.eval()
        batches, futures = [], []
        executor = ThreadPoolExecutor(max_workers=1) if cfg.async_rewards else None
        try:
            for b in range(cfg.num_batches_per_epoch):
                idx = np.arange(first + b * cfg.sample_batch_size, first + (b + 1) * cfg.sample_batch_size)
                texts = [self.prompts[prompt_ids[i]][0] for i in idx]
                meta = [self.prompts[prompt_ids[i]][1] for i in idx]
                embeds = self.encode(texts, use_cfg)
                noise_gens = [_generator(cfg.seed, epoch, int(i), 1) for i in idx]
                init_key = group_ids if cfg.same_latent else np.arange(len(prompt_ids))
                init_gens = [_generator(cfg.seed, epoch, int(init_key[i]), 0) for i in idx]
                with acc.autocast():
                    rollout = sample_with_logprob(
                        self.pipeline,
                        self.unwrapped,
                        embeds,
                        noise_gens,
                        num_steps=cfg.num_steps,
                        guidance_scale=cfg.guidance_scale,
                        noise_level=cfg.noise_level,
                        height=cfg.resolution,
                        width=cfg.resolution,
                        sde_type=cfg.sde_type,
                        sde_window=self.sde_window(epoch, acc.process_index * cfg.num_batches_per_epoch + b),
                        num_stored_steps=cfg.num_train_timesteps,
                        init_generators=init_gens,
                    )
                images = to_pil(rollout.images)
                if executor is not None:
                    futures.append(executor.submit(self.reward_fn, images, texts, meta))
                else:
                    done: Future = Future()
                    done.set_result(self.reward_fn(images, texts, meta))
                    futures.append(done)
                batches.append((idx, embeds, rollout))
            results = [f.result() for f in futures]
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        details: dict[str, list[float | None]] = {name: [] for name in self.reward_fn.scorers}
        totals: list[float | None] = []
        for total, detail in results:
            totals.extend(total)
            for name, values in detail.items():
                details[name].extend(values)
        rollouts = [r for _, _, r in batches]
        embeds = [e for _, e, _ in batches]
        return {
            "sample_index": np.concatenate([idx for idx, _, _ in batches]),
            "prompt_ids": prompt_ids,
            "latents": torch.cat([r.latents for r in rollouts]),
            "next_latents": torch.cat([r.next_latents for r in rollouts]),
            "log_probs": torch.cat([r.log_probs for r in rollouts]),
            "timesteps": torch.cat([r.timesteps for r in rollouts]),
            "embeds": _cat_embeds(embeds),
            "rewards": totals,
            "reward_details": details,
        }

    def compute_advantages(self, rollouts: dict[str, Any]) -> tuple[np.ndarray, dict[str, float]]:
        """Gather rewards from every process, compute per-prompt advantages, return this process's slice."""
        cfg, acc = self.config, self.accelerator
        local = torch.tensor([math.nan if r is None else r for r in rollouts["rewards"]], dtype=torch.float64)
        rewards = acc.gather(local.to(acc.device)).cpu().numpy()
        prompt_ids = rollouts["prompt_ids"]  # global plan, identical on every process
        valid = ~np.isnan(rewards)
        advantages = np.zeros_like(rewards)
        if valid.any():
            if cfg.per_prompt_stat_tracking:
                texts = [self.prompts[i][0] for i in prompt_ids[valid]]
                advantages[valid] = self.stat_tracker.update(texts, rewards[valid])
                self.stat_tracker.clear()
            else:
                advantages[valid] = batch_advantages(rewards[valid])
        groups = {}
        for pid, r in zip(prompt_ids[valid], rewards[valid], strict=True):
            groups.setdefault(int(pid), []).append(r)
        stds = [np.std(g) for g in groups.values()]
        stats = {
            "reward_mean": float(np.mean(rewards[valid])) if valid.any() else math.nan,
            "reward_std": float(np.std(rewards[valid])) if valid.any() else math.nan,
            "reward_std_mean": float(np.mean(stds)) if stds else math.nan,
            "zero_std_ratio": float(np.mean([s == 0 for s in stds])) if stds else math.nan,
            "abstained": int((~valid).sum()),
        }
        for name, values in rollouts["reward_details"].items():
            local_detail = torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64)
            gathered = acc.gather(local_detail.to(acc.device)).cpu().numpy()
            stats[f"reward/{name}"] = float(np.nanmean(gathered)) if np.isfinite(gathered).any() else math.nan
        n_local = len(rewards) // acc.num_processes
        first = acc.process_index * n_local
        return advantages[first : first + n_local], stats

    def training_indices(self, advantages_all_local: np.ndarray, epoch: int) -> np.ndarray:
        """Local sample indices to train on: informative ones, topped up (as train_sd3.py does) so every process
        runs the same whole number of optimiser steps."""
        cfg = self.config
        keep = (
            informative_mask(advantages_all_local)
            if cfg.filter_zero_std
            else np.ones(len(advantages_all_local), bool)
        )
        counts = self.accelerator.gather(torch.tensor([int(keep.sum())], device=self.accelerator.device))
        target = int(counts.max().item())
        if target == 0:
            return np.zeros(0, dtype=np.int64)
        per_step = cfg.train_batch_size * cfg.gradient_accumulation_steps  # len(keep) is a multiple (config)
        target = min(len(keep), math.ceil(target / per_step) * per_step)
        kept = np.flatnonzero(keep)
        dropped = np.flatnonzero(~keep)
        rng = np.random.default_rng([cfg.seed, epoch, 2, self.accelerator.process_index])
        extra = rng.permutation(dropped)[: max(0, target - len(kept))]
        return np.sort(np.concatenate([kept, extra]).astype(np.int64))

    # -------------------------------------------------------------------------------------- training

    def step_log_prob(self, model: torch.nn.Module, latents, next_latents, timesteps, embeds: PromptEmbeds):
        """Recompute one stored transition under `model` (same velocity code as the rollout)."""
        cfg = self.config
        use_cfg = cfg.train_cfg and self.use_cfg(cfg.guidance_scale)
        with self.accelerator.autocast():
            velocity = predict_velocity(model, latents, timesteps, embeds, cfg.guidance_scale, use_cfg)
        return sde_step_with_logprob(
            self.train_scheduler,
            velocity,
            timesteps,
            latents,
            noise_level=cfg.noise_level,
            prev_sample=next_latents,
            sde_type=cfg.sde_type,
        )

    def optimize(self, rollouts: dict[str, Any], advantages: np.ndarray, epoch: int) -> dict[str, float]:
        """The clipped GRPO update on this epoch's rollouts: one backward per (minibatch, trained step) inside
        `accelerator.accumulate`, one optimiser step per `gradient_accumulation_steps` minibatches."""
        cfg, acc = self.config, self.accelerator
        indices = self.training_indices(advantages, epoch)
        metrics: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "kl", "approx_kl", "clipfrac", "ratio")
        }
        out: dict[str, float] = {"trained_samples": float(len(indices) * acc.num_processes)}
        if len(indices) == 0:
            return out
        adv = torch.as_tensor(advantages, dtype=torch.float32, device=acc.device)
        n_steps = rollouts["latents"].shape[1]
        if n_steps * cfg.gradient_accumulation_steps != accumulation_steps(cfg):
            raise RuntimeError(f"rollouts store {n_steps} steps, the config trains {cfg.num_train_timesteps}")
        params = self.lora_parameters()
        self.transformer.train()
        first_ratio_dev = math.nan
        for inner in range(cfg.num_inner_epochs):
            perm = torch.randperm(len(indices), generator=_generator(cfg.seed, epoch, 3, inner)).numpy()
            order = torch.as_tensor(indices[perm], device=acc.device)
            for mb_index, mb in enumerate(order.split(cfg.train_batch_size)):
                embeds = rollouts["embeds"].select(mb)
                a = torch.clamp(adv[mb], -cfg.adv_clip_max, cfg.adv_clip_max)
                for j in range(n_steps):
                    latents = rollouts["latents"][mb, j]
                    next_latents = rollouts["next_latents"][mb, j]
                    timesteps = rollouts["timesteps"][mb, j]
                    old_log_prob = rollouts["log_probs"][mb, j]
                    ref_mean = None
                    if cfg.beta > 0:
                        with torch.no_grad(), self.reference_model() as ref:
                            ref_mean = self.step_log_prob(
                                ref, latents, next_latents, timesteps, embeds
                            ).prev_sample_mean
                    with acc.accumulate(self.transformer):
                        step = self.step_log_prob(self.transformer, latents, next_latents, timesteps, embeds)
                        policy_loss, ratio = clipped_policy_loss(
                            step.log_prob, old_log_prob, a, cfg.clip_range
                        )
                        loss = policy_loss
                        if ref_mean is not None:
                            kl = gaussian_mean_kl(step.prev_sample_mean, ref_mean, step.std_dev_t).mean()
                            loss = loss + cfg.beta * kl
                            metrics["kl"].append(kl.item())
                        acc.backward(loss)  # divided by accumulation_steps(cfg) (accelerate or DeepSpeed)
                        if acc.sync_gradients:
                            acc.clip_grad_norm_(params, cfg.max_grad_norm)
                        self.optimizer.step()  # a no-op until the accumulation boundary
                        self.optimizer.zero_grad(set_to_none=True)
                    if acc.sync_gradients:
                        self._after_optimizer_step(params)
                    if inner == 0 and mb_index == 0:
                        first_ratio_dev = np.nanmax(
                            [first_ratio_dev, (ratio.detach() - 1).abs().max().item()]
                        )
                    metrics["policy_loss"].append(policy_loss.item())
                    metrics["approx_kl"].append(0.5 * ((step.log_prob - old_log_prob) ** 2).mean().item())
                    metrics["clipfrac"].append(((ratio - 1).abs() > cfg.clip_range).float().mean().item())
                    metrics["ratio"].append(ratio.mean().item())
        if not acc.sync_gradients:
            raise RuntimeError("the epoch ended inside a gradient accumulation window")
        means = {k: float(np.mean(v)) if v else math.nan for k, v in metrics.items()}
        out.update(reduce_metrics(acc, means, {"first_minibatch_ratio_max_dev": float(first_ratio_dev)}))
        return out

    def _after_optimizer_step(self, params: list[torch.nn.Parameter]) -> None:
        if self.ema is not None:
            self.ema.step(params, self.global_step)
        self.global_step += 1

    # ----------------------------------------------------------------------------------------- loop

    def train_epoch(self) -> dict[str, Any]:
        """Run epoch number `self.epoch` (rollouts, advantages, optimisation) and return its metrics."""
        epoch = self.epoch
        start = time.perf_counter()
        rollouts = self.collect_rollouts(epoch)
        rollout_s = time.perf_counter() - start
        advantages, stats = self.compute_advantages(rollouts)
        if stats["abstained"] and math.isnan(stats["reward_mean"]):
            from evalkit.errors import EvalkitError

            raise EvalkitError(
                f"epoch {epoch}: the reward abstained on all {stats['abstained']} rollouts, so there is nothing "
                "to train on (a judge that always fails, or a reward without inputs for these prompts)"
            )
        train_metrics = self.optimize(rollouts, advantages, epoch)
        self.epoch += 1
        record = {
            "epoch": epoch,
            "global_step": self.global_step,
            **stats,
            **train_metrics,
            "rollout_seconds": rollout_s,
            "epoch_seconds": time.perf_counter() - start,
        }
        self.history.append(record)
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(_json_safe(record)) + "\n")
        if self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=epoch)
        return record

    def train(self, num_epochs: int | None = None) -> list[dict[str, Any]]:
        """Train until `num_epochs` epochs are done (resuming first if `config.resume_from` is set)."""
        cfg = self.config
        if cfg.resume_from and self.epoch == 0:
            self.load_checkpoint(checkpoint.resolve_resume(self.output_dir, cfg.resume_from))
        total = num_epochs if num_epochs is not None else cfg.num_epochs
        while self.epoch < total:
            record = self.train_epoch()
            if self.eval_prompts and cfg.eval_freq and self.epoch % cfg.eval_freq == 0:
                evaluation = {f"eval/{k}": v for k, v in self.evaluate(self.eval_prompts).items()}
                record.update(evaluation)
                if self.accelerator.is_main_process:
                    with open(self.output_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(_json_safe({"epoch": record["epoch"], **evaluation})) + "\n")
                if self.accelerator.trackers:
                    self.accelerator.log(evaluation, step=record["epoch"])
            if cfg.save_freq and (self.epoch % cfg.save_freq == 0 or self.epoch == total):
                self.save_checkpoint()
        return self.history

    # --------------------------------------------------------------------------------- checkpoints

    def lora_state_dict(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        """LoRA weights in diffusers' layout (EMA weights when kept and asked for); call on every process."""
        return checkpoint.lora_state_dict(self, use_ema)

    def save_lora(self, folder: str | Path, use_ema: bool = True) -> Path:
        """Save a LoRA that `StableDiffusion3Pipeline.load_lora_weights(folder)` loads (every process calls)."""
        return checkpoint.save_lora(self, folder, use_ema)

    def save_checkpoint(self, folder: str | Path | None = None) -> Path:
        return checkpoint.save_checkpoint(self, folder)

    def load_checkpoint(self, folder: str | Path) -> None:
        checkpoint.load_checkpoint(self, folder)

    # -------------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self, prompts: Sequence[str | Mapping[str, Any]], use_ema: bool = True) -> dict[str, float]:
        """Mean rewards of ODE samples (eval steps/guidance) with the EMA weights, one image per prompt."""
        cfg = self.config
        items = [_split_prompt(p) for p in prompts]
        use_cfg = self.use_cfg(cfg.eval_guidance_scale)
        context = (
            self.ema.applied(self.lora_parameters()) if (use_ema and self.ema is not None) else nullcontext()
        )
        totals, details = [], {name: [] for name in self.reward_fn.scorers}
        self.transformer.eval()
        with context:
            for start in range(0, len(items), cfg.sample_batch_size):
                chunk = items[start : start + cfg.sample_batch_size]
                texts, meta = [t for t, _ in chunk], [m for _, m in chunk]
                embeds = self.encode(texts, use_cfg)
                gens = [_generator(cfg.seed, 10**6, start + i) for i in range(len(chunk))]
                with self.accelerator.autocast():
                    rollout = sample_with_logprob(
                        self.pipeline,
                        self.unwrapped,
                        embeds,
                        gens,
                        num_steps=cfg.eval_num_steps,
                        guidance_scale=cfg.eval_guidance_scale,
                        noise_level=0.0,
                        height=cfg.resolution,
                        width=cfg.resolution,
                        num_stored_steps=1,
                    )
                total, detail = self.reward_fn(to_pil(rollout.images), texts, meta)
                totals.extend(total)
                for name, values in detail.items():
                    details[name].extend(values)
        return {"reward_mean": _mean(totals), **{f"reward/{n}": _mean(v) for n, v in details.items()}}
