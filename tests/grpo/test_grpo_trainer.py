"""The GRPO trainer on the tiny SD3 pipeline (random weights; CPU; a few seconds per test)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from evalkit.grpo.config import GRPOConfig
from evalkit.grpo.rollout import encode_prompts, sample_with_logprob
from evalkit.grpo.trainer import GRPOTrainer
from evalkit.rewards.brightness import BrightnessScorer
from evalkit.testing.sd3 import tiny_sd3_pipeline

PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a blue bird"]
TINY_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def tiny_config(tmp_path, **overrides) -> GRPOConfig:
    values = dict(
        output_dir=str(tmp_path / "run"),
        mixed_precision="no",
        resolution=64,
        num_steps=6,
        group_size=4,
        sample_batch_size=8,
        train_batch_size=8,
        num_batches_per_epoch=1,
        gradient_accumulation_steps=1,
        learning_rate=3e-3,
        beta=0.0,
        rewards={"brightness": 1.0},
        lora_rank=4,
        lora_alpha=128,
        lora_target_modules=TINY_TARGETS,
        max_sequence_length=16,
        save_freq=0,
        ema=False,
        async_rewards=False,
        seed=0,
    )
    values.update(overrides)
    return GRPOConfig(**values)


def make_trainer(config: GRPOConfig, prompts=PROMPTS) -> GRPOTrainer:
    return GRPOTrainer(config, tiny_sd3_pipeline(), {"brightness": BrightnessScorer()}, prompts)


def test_noise_zero_sde_sampler_equals_diffusers_ode_sampler():
    pipe = tiny_sd3_pipeline()
    prompts = ["a photo of a cat", "a red car"]
    embeds = encode_prompts(pipe, prompts, "", 16, cfg=True)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    ours = sample_with_logprob(
        pipe,
        pipe.transformer,
        embeds,
        gens,
        num_steps=5,
        guidance_scale=4.5,
        noise_level=0.0,
        height=64,
        width=64,
    )
    init = torch.cat(
        [torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    )
    reference = pipe(
        prompt_embeds=embeds.embeds,
        pooled_prompt_embeds=embeds.pooled,
        negative_prompt_embeds=embeds.neg_embeds,
        negative_pooled_prompt_embeds=embeds.neg_pooled,
        latents=init,
        num_inference_steps=5,
        guidance_scale=4.5,
        height=64,
        width=64,
        output_type="latent",
    ).images
    torch.testing.assert_close(ours.next_latents[:, -1], reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.log_probs, torch.zeros_like(ours.log_probs))


def test_window_rollout_stores_only_window_steps():
    pipe = tiny_sd3_pipeline()
    embeds = encode_prompts(pipe, ["a cat"], "", 16, cfg=False)
    out = sample_with_logprob(
        pipe,
        pipe.transformer,
        embeds,
        [torch.Generator().manual_seed(0)],
        num_steps=6,
        guidance_scale=1.0,
        noise_level=0.8,
        height=64,
        width=64,
        sde_type="cps",
        sde_window=(1, 3),
    )
    assert out.step_indices == [1, 2]
    assert out.latents.shape == (1, 2, 16, 8, 8) and out.log_probs.shape == (1, 2)
    torch.testing.assert_close(out.latents[:, 1], out.next_latents[:, 0])


def test_first_minibatch_ratio_is_exactly_one_and_only_lora_gets_gradients(tmp_path):
    config = tiny_config(tmp_path, beta=0.04, train_cfg=True, learning_rate=1e-3)
    trainer = make_trainer(config)
    trainer.optimizer.zero_grad = lambda set_to_none=True: None  # keep the gradients for inspection
    record = trainer.train_epoch()
    assert record["first_minibatch_ratio_max_dev"] == 0.0
    assert record["trained_samples"] > 0 and record["kl"] >= 0.0
    with_grad = {n for n, p in trainer.unwrapped.named_parameters() if p.grad is not None}
    assert with_grad and with_grad == set(trainer.lora_names)
    assert all("lora_" in n for n in with_grad)
    # lora_B starts at zero, so only B receives a non-zero gradient on the first update (and the last
    # block's context-query projection feeds outputs SD3 discards).
    named = dict(trainer.unwrapped.named_parameters())
    nonzero = [n for n in with_grad if named[n].grad.abs().sum() > 0]
    assert nonzero and all("lora_B" in n for n in nonzero) and len(nonzero) >= len(with_grad) // 2 - 1
    for module in (trainer.pipeline.vae, trainer.pipeline.text_encoder, trainer.pipeline.text_encoder_3):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_fast_window_cps_path_trains_only_window_steps(tmp_path):
    config = tiny_config(
        tmp_path, sde_window_size=2, sde_type="cps", noise_level=0.8, clip_range=1e-5, beta=0.01,
        gradient_accumulation_steps=2, num_batches_per_epoch=2,
    )  # fmt: skip
    trainer = make_trainer(config)
    assert {trainer.sde_window(0, b) for b in range(20)} <= {(0, 2), (1, 3)}  # window inside (0, 6 // 2)
    rollouts = trainer.collect_rollouts(0)
    assert rollouts["latents"].shape[:2] == (16, 2) and rollouts["log_probs"].shape == (16, 2)
    record = trainer.train_epoch()
    assert record["first_minibatch_ratio_max_dev"] == 0.0 and trainer.global_step == 1


def test_kl_reference_is_the_model_with_lora_disabled(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path))
    with torch.no_grad():
        for p in trainer.lora_parameters():
            p.add_(0.05)
    x = torch.randn(1, 16, 8, 8)
    embeds = encode_prompts(trainer.pipeline, ["a cat"], "", 16, cfg=False)
    args = dict(
        hidden_states=x,
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=embeds.embeds,
        pooled_projections=embeds.pooled,
        return_dict=False,
    )
    with torch.no_grad():
        policy = trainer.unwrapped(**args)[0]
        with trainer.reference_model() as ref:
            reference = ref(**args)[0]
        again = trainer.unwrapped(**args)[0]
    assert not torch.allclose(policy, reference)
    assert torch.equal(policy, again)  # adapter re-enabled
    assert all(p.requires_grad for p in trainer.lora_parameters())


def test_mean_brightness_rises_within_a_few_dozen_steps(tmp_path):
    # same_latent: a group shares its initial noise, so reward differences inside a group come from the SDE
    # noise the policy controls (checked on seeds 0-3: rise 0.008-0.018).
    config = tiny_config(
        tmp_path, num_steps=4, group_size=8, sample_batch_size=32, train_batch_size=32, same_latent=True
    )
    trainer = make_trainer(config)
    history = trainer.train(num_epochs=30)
    rewards = np.array([r["reward_mean"] for r in history])
    start, end = rewards[:5].mean(), rewards[-5:].mean()
    # The tiny VAE decodes almost-flat images (reward std ~0.002 within a batch): a rise of 0.004 is twice
    # that spread and >20 standard errors of a 5-epoch mean.
    assert end - start > 0.004, rewards.round(4).tolist()
    assert end > rewards[:5].max()


def test_checkpoint_resume_continues_identically(tmp_path):
    overrides = dict(
        ema=True, ema_update_interval=1, beta=0.01, num_batches_per_epoch=2, gradient_accumulation_steps=1
    )
    straight = make_trainer(tiny_config(tmp_path / "a", **overrides))
    straight.train(num_epochs=3)

    first = make_trainer(tiny_config(tmp_path / "b", **overrides))
    first.train(num_epochs=2)
    checkpoint = first.save_checkpoint()
    assert (checkpoint / "lora" / "pytorch_lora_weights.safetensors").exists()

    resumed = make_trainer(tiny_config(tmp_path / "b", resume_from="latest", **overrides))
    resumed.train(num_epochs=3)
    assert resumed.epoch == 3 and resumed.global_step == straight.global_step
    for a, b in zip(straight.lora_parameters(), resumed.lora_parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.shadow, resumed.ema.shadow, strict=True):
        assert torch.equal(a, b)
    assert straight.history[-1]["reward_mean"] == resumed.history[-1]["reward_mean"]


def test_saved_lora_loads_into_a_fresh_pipeline(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, ema=True, ema_update_interval=1))
    trainer.train(num_epochs=1)
    folder = trainer.save_lora(tmp_path / "lora")
    pipe = tiny_sd3_pipeline()
    pipe.load_lora_weights(folder)
    loaded = {n: p for n, p in pipe.transformer.named_parameters() if "lora" in n}
    assert len(loaded) == len(trainer.lora_names)
    expected = trainer.lora_state_dict(use_ema=True)
    assert len(expected) == len(loaded)


def test_abstaining_rewards_are_masked_not_zero(tmp_path):
    class Flaky:
        name = "flaky"

        def score(self, images, prompts, metadata):
            return [None if i % 4 == 0 else float(i) for i in range(len(images))]

    config = tiny_config(
        tmp_path, rewards={"flaky": 1.0, "brightness": 0.5}, async_rewards=True, eval_freq=1, eval_num_steps=3
    )
    scorers = {"flaky": Flaky(), "brightness": BrightnessScorer()}
    trainer = GRPOTrainer(config, tiny_sd3_pipeline(), scorers, PROMPTS, eval_prompts=["a cat", "a dog"])
    (record,) = trainer.train(num_epochs=1)
    assert record["abstained"] == 2
    assert "reward/flaky" in record and "reward/brightness" in record
    assert record["eval/reward/flaky"] == 1.0  # image 0 abstains, image 1 scores 1.0
    assert 0.0 < record["eval/reward/brightness"] < 1.0


def test_config_defaults_follow_the_sd35m_recipe():
    config = GRPOConfig()
    assert (config.lora_rank, config.lora_alpha, config.learning_rate) == (32, 64, 3e-4)
    assert (config.group_size, config.noise_level, config.num_steps, config.eval_num_steps) == (
        24,
        0.7,
        10,
        40,
    )
    assert (config.resolution, config.guidance_scale, config.clip_range, config.adv_clip_max) == (
        512,
        4.5,
        1e-4,
        5,
    )
    assert config.num_train_timesteps == 9 and len(config.lora_target_modules) == 8
    assert all(f.metadata.get("help") for f in dataclasses.fields(GRPOConfig))
    fast = GRPOConfig(sde_window_size=2)
    assert fast.num_train_timesteps == 2 and fast.window_range == (0, 5)
    with pytest.raises(ValueError):
        GRPOConfig.from_dict({"nope": 1})


def test_train_command_trains_and_saves(tmp_path, cli):
    from evalkit.errors import EvalkitError
    from evalkit.rewards.factory import build_reward

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na red car\n\n")
    overrides = dict(
        output_dir=tmp_path / "run", num_epochs=1, resolution=64, mixed_precision="no", num_steps=3, group_size=4,
        sample_batch_size=4, train_batch_size=4, num_batches_per_epoch=1, gradient_accumulation_steps=1, lora_rank=4, lora_alpha=8,
        lora_target_modules="[to_q, to_k]", max_sequence_length=16, save_freq=1,
    )  # fmt: skip
    argv = ["--model", "tiny-sd3", "--prompts", str(prompts), "--reward", "brightness=2"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    code, out, err = cli("train", *argv)
    assert code == 0, err
    assert "1 epoch(s) trained" in out
    assert (tmp_path / "run" / "final" / "lora" / "pytorch_lora_weights.safetensors").exists()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-1" / "trainer_state.pt").exists()
    code, _, err = cli("train", "--prompts", prompts, "--set", "num_epoch=1")
    assert code == 2 and "did you mean 'num_epochs'" in err
    with pytest.raises(EvalkitError, match="computed by a judge"):
        build_reward("viescore")
    with pytest.raises(EvalkitError, match="did you mean 'normalize'"):
        build_reward("pickscore", {"normalise": "flow_grpo"})


def test_negative_prompt_is_encoded_once_per_run_and_equals_batched_encoding(tmp_path):
    config = tiny_config(tmp_path, negative_prompt="blurry", guidance_scale=4.5, num_batches_per_epoch=2)
    trainer = make_trainer(config)
    calls = []
    encode = trainer.pipeline.encode_prompt

    def counting(*args, **kwargs):
        calls.append(list(kwargs["prompt"]))
        return encode(*args, **kwargs)

    trainer.pipeline.encode_prompt = counting
    trainer.train(num_epochs=2)
    assert calls.count(["blurry"]) == 1  # 2 epochs x 2 batches, one encoding

    texts = ["a red car", "two dogs"]
    ours = encode_prompts(trainer.pipeline, texts, "blurry", 16, cfg=True, negative=trainer.negative_embeds())
    embeds, neg, pooled, neg_pooled = encode(
        prompt=texts,
        prompt_2=None,
        prompt_3=None,
        do_classifier_free_guidance=True,
        negative_prompt=["blurry"] * 2,
        max_sequence_length=16,
    )
    torch.testing.assert_close(ours.neg_embeds, neg, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.neg_pooled, neg_pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.embeds, embeds, rtol=0, atol=1e-6)


def test_launch_module_is_the_train_command():
    """`accelerate launch -m evalkit.grpo.launch ARGS` runs `evalkit train ARGS`."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "evalkit.grpo.launch", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--prompts" in result.stdout and "Flow-GRPO" in result.stdout
