"""The AlphaGRPO training loop on a trainable BAGEL (tasks `t2i` = RT2I and `reflect` = SRR).

One optimizer step per round, as the official train.py: `gradient_accumulation_steps` rollout batches
(each rank B samples; every prompt repeated `num_image_per_prompt` times across ranks), rewards computed
in a worker thread while the next batch rolls out, advantages from the gathered rewards, then the replay:
per batch one think-text backward (scaled by `max(1, K) * text_loss_weight`) and one backward per trained
SDE step; every backward is divided by the accelerate accumulation count, gradients are averaged over
ranks (by FSDP itself for sharded layers, `parallel.py`) and clipped, and AdamW steps once. With
`train.mix_t2i_task` SRR's stage 1 is a trained RT2I batch, so a round replays twice the batches.

Rewards: `reward_fn` names evalkit rewards (any registered Scorer) with weights. A sample whose reward
abstains (None) is counted, logged and left out of the advantages (advantage 0); a round in which every
sample abstains stops the run with an error.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalkit.errors import EvalkitError
from evalkit.grpo.advantages import PerPromptStatTracker
from evalkit.grpo.alphagrpo import checkpoint, parallel
from evalkit.grpo.alphagrpo.advantages import AdvantageConfig
from evalkit.grpo.alphagrpo.comm import Comm
from evalkit.grpo.alphagrpo.config import write_resolved
from evalkit.grpo.alphagrpo.losses import ImageLossConfig, TextLossConfig, image_loss, text_loss
from evalkit.grpo.alphagrpo.options import (  # noqa: F401 - read_prompts re-exported
    TrainerOptions,
    build_reward,
    read_prompts,
    validate,
)
from evalkit.grpo.alphagrpo.rewards import (
    PostprocessConfig,
    Postprocessed,
    srr_reward_postprocess,
    t2i_reward_postprocess,
)
from evalkit.grpo.alphagrpo.rollout import (
    RolloutBatch,
    SampleSeeds,
    draw_window,
    rollout_reflect,
    rollout_t2i,
    stage1_images,
    stage1_per_prompt,
)
from evalkit.grpo.alphagrpo.sampling import get_timesteps, step_log_prob
from evalkit.grpo.reward_mix import WeightedReward


def _subset(values, index):
    return None if values is None else [values[i] for i in index]


class AlphaGRPOTrainer:
    """Trains `model`'s LoRA with AlphaGRPO on `prompts` (dicts with "prompt" and metadata)."""

    def __init__(
        self,
        model,
        config: Mapping[str, Any],
        prompts: Sequence[Mapping[str, Any]],
        options: TrainerOptions,
        reward: WeightedReward | None = None,
        comm: Comm | None = None,
        strategy: parallel.Strategy | None = None,
    ) -> None:
        self.comm = comm or Comm()
        validate(config, options, self.comm.world_size)
        if not prompts:
            raise EvalkitError("no training prompts")
        self.model, self.config, self.options = model, dict(config), options
        self.strategy = strategy or parallel.Strategy("data")
        self.sharded = parallel.apply(model, self.strategy, self.comm.world_size)  # before the optimizer
        self.prompts = [dict(p) for p in prompts]
        self.reward = reward or build_reward(config, options)
        train, sample = config["train"], config["sample"]
        self.optimizer = torch.optim.AdamW(
            model.lora_parameters(),
            lr=train["learning_rate"],
            betas=(train["adam_beta1"], train["adam_beta2"]),
            weight_decay=train["adam_weight_decay"],
            eps=train["adam_epsilon"],
        )
        self.tracker = PerPromptStatTracker(global_std=sample["global_std"])
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.abstained_total = 0
        self.run_dir = Path(options.run_dir)
        derived = config["_derived"]
        self.num_train = derived["num_train_timesteps"]
        self.acc_steps = derived["accelerate_gradient_accumulation_steps"]
        self.post_config = self._post_config()
        self.image_loss_config = ImageLossConfig(
            train["image_clip_range"],
            train["adv_clip_max"],
            train["true_ratio"],
            train["rollout_correction"],
            train["correction_truncated_threshold"],
            train["image_beta"],
        )
        self.text_loss_config = TextLossConfig(
            train["text_clip_range"],
            train["text_clip_range_high"],
            train["text_importance_sampling_level"],
            train["text_loss_level"],
            train["true_ratio"],
            train["rollout_correction"],
            train["correction_truncated_threshold"],
            train["text_beta"],
            train["top_entropy_quantile"],
        )
        seed = config["seed"] + self.comm.rank  # official: set_seed(42 + rank)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.comm.rank == 0:
            write_resolved(self.config, self.run_dir)
            layout = parallel.describe(model, self.strategy, self.sharded, self.comm.world_size)
            (self.run_dir / "parallel.json").write_text(json.dumps(layout, indent=2) + "\n")

    def _post_config(self) -> PostprocessConfig:
        c, train, sample = self.config, self.config["train"], self.config["sample"]
        adv = AdvantageConfig(
            per_prompt_stat_tracking=c["per_prompt_stat_tracking"],
            global_std=sample["global_std"],
            think=bool(sample["think"]) or train["task"] == "reflect",
            num_train_timesteps=self.num_train,
            stage1_reward_as_group_mean=train["stage1_reward_as_group_mean"],
            isolate_image_text_reward=train["isolate_image_text_reward"],
            mask_image_adv_w_negative_think_text=train["mask_image_adv_w_negative_think_text"],
            reflect_think_text_format=train["reflect_think_text_format"],
        )
        return PostprocessConfig(
            think=bool(sample["think"]),
            think_text_weight=train["think_text_weight"],
            use_think_text_format_reward=train["use_think_text_format_reward"],
            # SRR: the reflective judge only feeds the logged text_avg (see options.validate): not called
            text_reward_fn={
                k: v
                for k, v in c["text_reward_fn"].items()
                if not (train["task"] == "reflect" and k == "reflective_think_format")
            },
            clamp_no_improve_reward=train["clamp_no_improve_reward"],
            think_text_format_reward_weight=train["think_text_format_reward_weight"],
            advantages=adv,
        )

    # ------------------------------------------------------------------ data

    def loader_batch(self, step: int, index: int) -> list[dict[str, Any]]:
        """This rank's B samples: m unique prompts x k repeats, shuffled identically on every rank."""
        sample = self.config["sample"]
        k, b, world = sample["num_image_per_prompt"], sample["train_batch_size"], self.comm.world_size
        m = world * b // k
        rng = random.Random(f"{self.config['seed']}/{step}/{index}")
        chosen = (
            rng.sample(range(len(self.prompts)), m)
            if m <= len(self.prompts)
            else rng.choices(range(len(self.prompts)), k=m)
        )
        repeated = [i for i in chosen for _ in range(k)]
        rng.shuffle(repeated)
        mine = repeated[self.comm.rank * b : (self.comm.rank + 1) * b]
        return [self.prompts[i] for i in mine]

    # ------------------------------------------------------------------ rollout and rewards

    def _score(self, images, prompts, metadata) -> list[float | None]:
        return self.reward(images, prompts, metadata)[0]

    def _inputs(self, step: int, index: int, stream: int):
        """Loader batch `index` of round `step`: prompts, metadata, noise seeds (stream `stream`), window."""
        records = self.loader_batch(step, index)
        prompts = [r["prompt"] for r in records]
        metadata = [{k: v for k, v in r.items() if k != "prompt"} for r in records]
        seeds = SampleSeeds()
        window_rng: Any = random
        if self.options.per_sample_seeds:
            seeds = self._sample_seeds(step, stream, len(prompts))
            window_rng = random.Random(f"{self.config['seed']}/{step}/{stream}/window")
        return prompts, metadata, seeds, draw_window(self.config, window_rng)

    def _rollout(self, step: int, executor: ThreadPoolExecutor, timing: dict[str, float]):
        """All rollout batches of a round; rewards are submitted as soon as a batch's images exist."""
        train = self.config["train"]
        if train["mix_t2i_task"]:
            return self._rollout_mixed(step, executor, timing)
        out: list[tuple[RolloutBatch, Future]] = []
        for index in range(train["gradient_accumulation_steps"]):
            prompts, metadata, seeds, window = self._inputs(step, index, index)
            if train["task"] == "t2i":
                out.append(self._t2i(prompts, metadata, seeds, window, executor, timing))
            else:
                init = self._stage1(prompts, metadata, timing)  # books its own rollout and reward time
                out.append(self._reflect(prompts, metadata, init, seeds, window, executor, timing))
        return out

    def _t2i(self, prompts, metadata, seeds, window, executor, timing) -> tuple[RolloutBatch, Future]:
        start = time.perf_counter()
        opts = self.options
        batch = rollout_t2i(self.model, prompts, metadata, self.config, window, opts.max_think_tokens, seeds)
        timing["rollout"] += time.perf_counter() - start
        return batch, executor.submit(self._score, batch.images, prompts, metadata)

    def _reflect(self, prompts, metadata, init, seeds, window, executor, timing):
        start = time.perf_counter()
        batch = rollout_reflect(
            self.model, prompts, metadata, init, self.config, window, self.options.max_think_tokens, seeds
        )
        timing["rollout"] += time.perf_counter() - start
        return batch, executor.submit(self._score, batch.images, prompts, metadata)

    def _rollout_mixed(self, step: int, executor: ThreadPoolExecutor, timing: dict[str, float]):
        """`mix_t2i_task` (official reflect.py): SRR stage 1 is an RT2I rollout that is trained itself.

        Per loader batch: a T2I batch (think + SDE, the preset's window and steps), its rewards
        post-processed as RT2I; then each prompt's lowest-reward T2I image over all ranks is refined by an
        SRR batch. A round trains both: twice the batches (the config's accumulation count is doubled)."""
        ga = self.config["train"]["gradient_accumulation_steps"]
        t2i = [self._t2i(*self._inputs(step, i, i), executor, timing) for i in range(ga)]
        out: list[tuple[RolloutBatch, Future]] = []
        for index, (batch, future) in enumerate(t2i):
            start = time.perf_counter()
            post, stats = self._postprocess(batch, future.result())
            batch.extra["post"] = (post, stats)
            init = self._lowest_t2i(batch, post, stats)
            timing["reward"] += time.perf_counter() - start
            out.append((batch, future))
            prompts, metadata, seeds, window = self._inputs(step, index, ga + index)
            out.append(self._reflect(prompts, metadata, init, seeds, window, executor, timing))
        return out

    def _lowest_t2i(self, batch: RolloutBatch, post, stats) -> dict[str, tuple[Any, float | None]]:
        """Each prompt's lowest-reward T2I image over all ranks (official `np.argmin`) and that reward."""
        g_prompts, g_images = self.comm.gather(batch.prompts), self.comm.gather(batch.images)
        scores: list[float | None] = [None] * len(g_prompts)
        if post is not None:
            key = "avg" if self.options.mix_t2i_compat == "official" else "ori_avg"
            for j, i in enumerate(stats["valid"]):
                scores[i] = post.rewards[key][j]
        init: dict[str, tuple[Any, float | None]] = {}
        for prompt in dict.fromkeys(g_prompts):
            mine = [i for i, p in enumerate(g_prompts) if p == prompt]
            known = [(scores[i], i) for i in mine if scores[i] is not None]
            score, i = min(known) if known else (None, mine[0])
            init[prompt] = (g_images[i], score)
        return init

    def _sample_seeds(self, step: int, index: int, batch: int) -> SampleSeeds:
        first = self.comm.rank * batch

        def gens(kind: str) -> list[torch.Generator]:
            keys = [f"{self.config['seed']}/{step}/{index}/{first + i}/{kind}" for i in range(batch)]
            return [torch.Generator().manual_seed(zlib.crc32(k.encode())) for k in keys]

        return SampleSeeds(think=gens("think"), image=gens("image"), posterior=gens("posterior"))

    def _stage1(self, prompts, metadata, timing) -> dict[str, tuple[Any, float | None]]:
        """SRR stage 1: ODE images per unique prompt, scored; the lowest-reward one is refined."""
        start = time.perf_counter()
        unique = list(dict.fromkeys(prompts))
        per_prompt = stage1_per_prompt(self.config["num_gpus"], len(unique))
        images = stage1_images(self.model, prompts, self.config, per_prompt)
        timing["rollout"] += time.perf_counter() - start
        start = time.perf_counter()
        meta_of = dict(zip(prompts, metadata, strict=True))
        init = {}
        for prompt in unique:
            scores = self._score(images[prompt], [prompt] * per_prompt, [meta_of[prompt]] * per_prompt)
            known = [(s, i) for i, s in enumerate(scores) if s is not None]
            if known:
                score, i = min(known)  # official: np.argmin over the stage-1 rewards
                init[prompt] = (images[prompt][i], float(score))
            else:
                init[prompt] = (images[prompt][0], None)
        timing["reward"] += time.perf_counter() - start
        return init

    def _postprocess(
        self, batch: RolloutBatch, rewards: list[float | None]
    ) -> tuple[Postprocessed | None, dict]:
        """Gather, drop abstentions, post-process as the official task does; this rank's advantages."""
        comm = self.comm
        g_prompts = comm.gather(batch.prompts)
        g_rewards = comm.gather(rewards)
        g_texts = comm.gather(batch.think_texts) if batch.think_texts is not None else None
        g_init = comm.gather(batch.init_rewards) if batch.init_rewards is not None else None
        valid = [
            i for i, r in enumerate(g_rewards) if r is not None and (g_init is None or g_init[i] is not None)
        ]
        stats = {"abstained": len(g_rewards) - len(valid), "samples": len(g_rewards), "valid": valid}
        if not valid:
            return None, stats
        if batch.task == "t2i":
            post = t2i_reward_postprocess(
                _subset(g_prompts, valid),
                _subset(g_rewards, valid),
                _subset(g_texts, valid),
                self.post_config,
                tracker=self.tracker,
            )
        else:
            post = srr_reward_postprocess(
                _subset(g_prompts, valid),
                _subset(g_init, valid),
                _subset(g_rewards, valid),
                _subset(g_texts, valid),
                self.post_config,
                tracker=self.tracker,
            )
            if self.post_config.clamp_no_improve_reward:  # FPR: refined <= its initial image's reward
                pairs = zip(post.rewards["image_avg"], post.rewards["init_reward"], strict=True)
                stats["fpr_rectified"] = sum(r <= i for r, i in pairs)
        stats["reward_mean"] = float(np.mean(_subset(g_rewards, valid)))
        stats["reward_avg_mean"] = float(np.mean(post.rewards["avg"]))
        if post.should_skip:
            return post, stats
        full = np.zeros((len(g_rewards), self.num_train))
        full[valid] = post.result.advantages
        stats["advantages"] = full[:, 0].tolist()
        b = len(batch.prompts)
        post.result.advantages = full[comm.rank * b : (comm.rank + 1) * b]
        if post.result.text_advantages is not None:
            text = np.zeros((len(g_rewards), post.result.text_advantages.shape[1]))
            text[valid] = post.result.text_advantages
            post.result.text_advantages = text[comm.rank * b : (comm.rank + 1) * b]
        return post, stats

    # ------------------------------------------------------------------ update

    def _text_backward(self, batch: RolloutBatch, advantages: np.ndarray, info: dict) -> None:
        model, cfg = self.model, self.text_loss_config
        temperature = self.config["sample"]["think_text_temperature"]
        lp, lens, ent = model.think_log_probs(batch.contexts.gen, batch.think_texts, temperature)
        ref = None
        if cfg.text_beta > 0:
            with torch.no_grad(), model.adapter_disabled():
                ref = model.think_log_probs(batch.contexts.gen, batch.think_texts, temperature)[0]
        adv = torch.as_tensor(advantages[:, 0])
        loss, parts = text_loss(
            lp,
            batch.old_think_log_probs,
            lens,
            adv,
            cfg,
            entropies=ent.detach(),
            ref_log_probs=ref,
            compat=self.options.text_loss_compat,
        )
        scale = self.config["_derived"]["text_backward_scale"]
        loss = loss * scale / self.acc_steps
        loss.backward()
        info.setdefault("_loss", []).append(float(loss))
        for key, value in parts.items():
            info.setdefault(key, []).append(float(value))

    def _image_backward(self, batch: RolloutBatch, advantages: np.ndarray, info: dict) -> None:
        model, sample = self.model, self.config["sample"]
        timesteps = get_timesteps(batch.num_steps, sample["timestep_shift"])
        velocity = model.velocity_fn(batch.image_contexts, batch.grid, batch.cfg)
        kwargs = dict(
            tokens_per_sample=batch.tokens_per_sample,
            cfg_interval=batch.cfg.interval,
            cfg_text_scale=batch.cfg.text_scale,
            cfg_img_scale=batch.cfg.img_scale,
            noise_level=sample["noise_level"],
            use_flowcps=sample["use_flowcps"],
        )
        for j, i in enumerate(batch.sde_steps):
            out = step_log_prob(velocity, batch.latents[i], batch.latents[i + 1], i, timesteps, **kwargs)
            ref_mean = None
            if self.image_loss_config.image_beta > 0:
                with torch.no_grad(), model.adapter_disabled():
                    ref = step_log_prob(
                        velocity, batch.latents[i], batch.latents[i + 1], i, timesteps, **kwargs
                    )
                ref_mean = ref.prev_sample_mean
            loss, parts = image_loss(
                out.per_sample_log_prob,
                batch.old_image_log_probs[:, j],
                torch.as_tensor(advantages[:, j]),
                self.image_loss_config,
                prev_mean=out.prev_sample_mean,
                ref_prev_mean=ref_mean,
                std_dev_t=out.std_dev_t,
            )
            loss = loss / self.acc_steps
            loss.backward()
            info.setdefault("_loss", []).append(float(loss))
            for key, value in parts.items():
                info.setdefault(key, []).append(float(value))

    def _optimizer_step(self) -> float:
        params = self.model.lora_parameters()
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        # FSDP has averaged the sharded gradients already (reduce-scatter)
        self.comm.average_([p.grad for p in params if not parallel.is_sharded(p.grad)])
        norm = torch.nn.utils.clip_grad_norm_(params, self.config["train"]["max_grad_norm"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(parallel.full(norm))

    # ------------------------------------------------------------------ loop

    def train_step(self) -> dict[str, Any]:
        """One round: rollouts, rewards, advantages, replay, one optimizer step."""
        timing = {"rollout": 0.0, "reward": 0.0, "backward": 0.0}
        start_all = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as executor:
            with parallel.whole(self.sharded, self.strategy):
                rolled = self._rollout(self.step, executor, timing)
            prepared = []
            totals = {"abstained": 0, "samples": 0, "skipped_batches": 0, "fpr_rectified": 0}
            rewards_seen, avg_seen, advantages = [], [], []
            for batch, future in rolled:
                start = time.perf_counter()
                rewards = future.result()
                done = batch.extra.pop("post", None)  # mix_t2i: post-processed before its SRR batch
                post, stats = done if done is not None else self._postprocess(batch, rewards)
                timing["reward"] += time.perf_counter() - start
                totals["abstained"] += stats["abstained"]
                totals["samples"] += stats["samples"]
                totals[f"samples_{batch.task}"] = totals.get(f"samples_{batch.task}", 0) + stats["samples"]
                totals["fpr_rectified"] += stats.get("fpr_rectified", 0)
                advantages.extend(stats.get("advantages", []))
                if "reward_mean" in stats:
                    rewards_seen.append(stats["reward_mean"])
                    avg_seen.append(stats["reward_avg_mean"])
                if post is None or post.should_skip:
                    totals["skipped_batches"] += 1
                    continue
                prepared.append((batch, post))
        self.abstained_total += totals["abstained"]
        if totals["abstained"] == totals["samples"]:
            raise EvalkitError(
                f"every sample abstained in step {self.step} ({totals['samples']} rewards): check the judge "
                "and that every prompt has questions"
            )
        info: dict[str, list[float]] = {}
        start = time.perf_counter()
        for batch, post in prepared:
            adv = post.result.advantages
            if batch.think_texts is not None and post.result.text_advantages is not None:
                self._text_backward(batch, post.result.text_advantages, info)
            self._image_backward(batch, adv, info)
        grad_norm = self._optimizer_step()
        # the objective this step minimised: sum of the scaled backward losses, averaged over ranks
        losses = info.pop("_loss", [])
        loss = self.comm.mean(sum(losses))
        timing["backward"] += time.perf_counter() - start
        self.step += 1
        record = {
            "step": self.step,
            "reward_mean": float(np.mean(rewards_seen)) if rewards_seen else math.nan,
            "reward_avg_mean": float(np.mean(avg_seen)) if avg_seen else math.nan,
            "grad_norm": grad_norm,
            "loss": loss,
            "backward_calls": len(losses),  # = the accumulation count when no batch was skipped
            "advantages": advantages,
            **totals,
            "abstained_total": self.abstained_total,
            **{k: float(np.mean(v)) for k, v in info.items()},
            "time": {**timing, "total": time.perf_counter() - start_all},
        }
        self.history.append(record)
        if self.comm.rank == 0:
            with (self.run_dir / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(_json_safe(record)) + "\n")
        return record

    def train(self) -> list[dict[str, Any]]:
        save_every = self.options.save_every or self.config["save_freq"]
        while self.step < self.options.steps:
            self.train_step()
            if self.step % save_every == 0 or self.step == self.options.steps:
                self.save_checkpoint()
        return self.history

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_dir(self, step: int | None = None) -> Path:
        return self.run_dir / "checkpoints" / f"step_{self.step if step is None else step}"

    def save_checkpoint(self) -> Path:
        """Adapter (PEFT layout, loadable by the `alphagrpo` generator) + everything exact resume needs."""
        return checkpoint.save_checkpoint(self, self.checkpoint_dir())

    def resume(self, folder: str | Path) -> None:
        checkpoint.resume(self, folder)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
