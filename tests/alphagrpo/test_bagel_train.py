"""Trainable BAGEL: noise-0 sampler equals generation, gradients only on LoRA, adapter round trip."""

from __future__ import annotations

import json

import pytest
import torch
from fixture_paths import FIXTURES
from PIL import Image

from evalkit.bagel.train import CFGSettings, TrainableBagel
from evalkit.grpo.alphagrpo.sampling import get_timesteps, sde_rollout
from evalkit.testing.bagel import random_pipeline, tiny_config

BAGEL_TINY = FIXTURES / "bagel_tiny"


def _image_cases() -> list[str]:
    folder = BAGEL_TINY / "cases"
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if json.loads((p / "case.json").read_text())["outputs"].get("image")
    )


@pytest.fixture(scope="module")
def tiny_official():
    from evalkit import bagel

    torch.set_num_threads(1)
    pipe = bagel.load(BAGEL_TINY / "checkpoint", dtype=torch.float32, device="cpu")
    return TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=False)


@pytest.mark.parametrize("name", _image_cases())
def test_noise_level_zero_reproduces_generation(tiny_official, name):
    """Every step stochastic with noise level 0 is the ODE: the official final latent, LoRA freshly added."""
    from safetensors.torch import load_file

    folder = BAGEL_TINY / "cases" / name
    meta = json.loads((folder / "case.json").read_text())
    t = load_file(str(folder / "tensors.safetensors"))
    args = meta["gen_image_args"]
    think = bool(meta["interleave_inference_args"].get("think"))
    prompt = meta["official_call"]["text"]
    model = tiny_official
    if meta["official_call"]["image"] is None:
        contexts = model.t2i_contexts([prompt], think)
        grid = [model.latent_grid(*args["image_shape"])]
    else:
        ctx = [u["idx"] for u in meta["context_updates"] if u["fn"] == "update_context_image"][0]
        image = Image.open(folder / "input_image.png")
        eps = [t[f"ctx{ctx}.vae_encode.posterior_eps"]]
        contexts, sizes = model.edit_contexts([image], [prompt], think, posterior_noises=eps)
        grid = [model.latent_grid(*sizes[0])]
    if think:
        contexts = model.append_think(contexts, [meta["outputs"]["text"]])
    cfg = CFGSettings(
        args["cfg_text_scale"],
        args["cfg_img_scale"],
        tuple(args["cfg_interval"]),
        args["cfg_renorm_type"],
        args["cfg_renorm_min"],
    )
    with torch.no_grad():
        rollout = sde_rollout(
            model.velocity_fn(contexts, grid, cfg),
            t["initial_noise"],
            get_timesteps(args["num_timesteps"], args["timestep_shift"]),
            tokens_per_sample=[r * c for r, c in grid],
            cfg_interval=cfg.interval,
            cfg_text_scale=cfg.text_scale,
            cfg_img_scale=cfg.img_scale,
            noise_level=0.0,
            sde_window=None,
        )
    torch.testing.assert_close(rollout.final, t["final_latent_packed"].float(), atol=1e-3, rtol=0)


@pytest.fixture
def trainable():
    torch.manual_seed(0)
    pipe = random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1))
    return TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=True)


def _loss(model: TrainableBagel, prompts=("a red cube", "a cat")) -> torch.Tensor:
    contexts = model.t2i_contexts(list(prompts), think=True)
    lp, _, _ = model.think_log_probs(contexts.gen, ["<think>plan</think>", "<think>x</think>"])
    contexts = model.append_think(contexts, ["<think>plan</think>", "<think>x</think>"])
    grid = [model.latent_grid(32, 32)] * len(prompts)
    x = torch.randn(sum(r * c for r, c in grid), model.pipe.config.latent_channels)
    v = model.velocity_fn(contexts, grid, CFGSettings())(x, 0, torch.tensor(0.9), 4.0, 1.0)
    return lp.mean() + v.square().mean()


def test_only_lora_weights_get_gradients_on_both_experts(trainable):
    with torch.no_grad():  # B = 0 at init: give the adapters a value so both factors get gradients
        for p in trainable.lora_parameters():
            p.normal_(0, 0.02)
    _loss(trainable).backward()
    lora = {id(p) for p in trainable.lora_parameters()}
    named = dict(trainable.peft.named_parameters())
    assert all(p.grad is None for p in named.values() if id(p) not in lora)
    with_grad = {n for n, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
    for module in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f".{module}.lora_" in n for n in with_grad), module  # understanding expert (text)
        assert any(f".{module}_moe_gen.lora_" in n or f"mlp_moe_gen.{module}.lora_" in n for n in with_grad)


def test_gradient_checkpointing_gives_the_same_gradients(trainable):
    with torch.no_grad():
        for p in trainable.lora_parameters():
            p.normal_(0, 0.02)
    grads = []
    for flag in (True, False):
        trainable.model.language_model.model.gradient_checkpointing = flag
        for p in trainable.lora_parameters():
            p.grad = None
        torch.manual_seed(1)
        _loss(trainable).backward()
        grads.append([p.grad.clone() for p in trainable.lora_parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_adapter_round_trip_through_merge_lora(trainable, tmp_path):
    """Saved adapters load with the `alphagrpo` generator's merge and give the trained model's outputs."""
    from evalkit.bagel.lora import merge_lora

    with torch.no_grad():
        for p in trainable.lora_parameters():
            p.normal_(0, 0.05)
    folder = trainable.save_adapter(tmp_path / "adapter")
    assert (folder / "adapter_config.json").exists()
    torch.manual_seed(3)
    with torch.no_grad():
        want = _loss(trainable)
    fresh = random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1))
    merge_lora(fresh, folder)
    merged = TrainableBagel.__new__(TrainableBagel)
    merged.pipe, merged.autocast_dtype = fresh, None
    torch.manual_seed(3)
    with torch.no_grad():
        got = _loss(merged)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), trainable.adapter_disabled():
        torch.manual_seed(3)
        base = _loss(trainable)
    assert not torch.allclose(base, want)
