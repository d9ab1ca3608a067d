"""AlphaGRPO sampling maths against the official outputs: schedules, sde_step, rollouts, SDE windows."""

from __future__ import annotations

import random

import pytest
import torch
from alphagrpo_fixtures import assert_scalar, assert_tensor, cases, dtype, family, tensors

from evalkit.grpo.alphagrpo.sampling import (
    get_timesteps,
    num_train_timesteps,
    ode_step,
    sample_sde_window,
    sde_rollout,
    sde_step,
    step_log_prob,
)


@pytest.mark.parametrize("schedule", family("schedules").get("schedules", []), ids=str)
def test_schedules(schedule):
    got = get_timesteps(schedule["num_timesteps"], schedule["timestep_shift"])
    assert str(got.dtype) == f"torch.{family('schedules')['dtype']}"
    assert_tensor(got, torch.tensor(schedule["timesteps"]), what="timesteps")


@pytest.mark.parametrize("case", cases("sde_step"), ids=lambda c: c["case_id"])
def test_sde_step(case):
    t = tensors(case)
    assert t["sample"].dtype == dtype(case["dtype"])
    generator = None
    if case["noise_generator_seed"] is not None:
        generator = torch.Generator().manual_seed(case["noise_generator_seed"])
    out = sde_step(
        t["sample"],
        t["model_output"],
        case["sigma"],
        case["sigma_prev"],
        case["sigma_max"],
        case["noise_level"],
        tokens_per_sample=case["tokens_per_sample"],
        prev_sample=t.get("prev_sample_in"),
        generator=generator,
        use_flowcps=case["variant"] == "flowcps",
    )
    for name, want_dtype in case["output_dtypes"].items():
        assert str(getattr(out, name).dtype) == want_dtype, name
    for name in ("prev_sample", "log_prob", "prev_sample_mean", "std_dev_t", "per_sample_log_prob"):
        assert_tensor(getattr(out, name), t[name], what=name)
    assert_scalar(out.std_dev_t, case["std_dev_t"], "std_dev_t")
    for got, want in zip(out.per_sample_log_prob.tolist(), case["per_sample_log_prob"], strict=True):
        assert_scalar(got, want, "per_sample_log_prob")


def _stand_in_velocity(case, t):
    """The fixture's velocity model: V[i] + a x + b (s_txt - 1) W[i] + b (s_img - 1) U[i]."""
    a, b = case["velocity_alpha"], case["velocity_beta"]
    out_dtype = dtype(case["velocity_dtype"])

    def velocity(x, i, sigma, s_txt, s_img):
        v = t["V"][i] + a * x + b * (s_txt - 1) * t["W"][i] + b * (s_img - 1) * t["U"][i]
        return v.to(out_dtype)

    return velocity


def _rollout_kwargs(case) -> dict:
    return dict(
        tokens_per_sample=case["tokens_per_sample"],
        cfg_interval=case["cfg_interval"],
        cfg_text_scale=case["cfg_text_scale"],
        cfg_img_scale=case["cfg_img_scale"],
        noise_level=case["noise_level"],
        use_flowcps=case["use_flowcps"],
    )


@pytest.mark.parametrize("case", cases("sde_rollout"), ids=lambda c: c["case_id"])
def test_sde_rollout_steps_and_logprobs(case):
    """Per step: CFG gating and SDE flag; ODE steps and SDE log-probs through the stored latents."""
    t = tensors(case)
    timesteps = get_timesteps(case["num_timesteps"], case["timestep_shift"])
    assert_tensor(timesteps, torch.tensor(case["timesteps"]), what="timesteps")
    velocity = _stand_in_velocity(case, t)
    latents = t["latents"]
    torch.manual_seed(case["torch_manual_seed"])
    window = case["sde_window"]
    rollout = sde_rollout(
        velocity,
        t["init_noise"],
        timesteps,
        sde_window=window,
        deterministic=case["deterministic"],
        **_rollout_kwargs(case),
    )
    assert rollout.sde_steps == case["sde_steps"]
    for got, want in zip(rollout.per_step, case["per_step"], strict=True):
        assert got["step"] == want["step"] and got["sde"] == want["sde"]
        assert_scalar(got["sigma"], want["sigma"])
        assert got["cfg_text_scale"] == want["cfg_text_scale"]
        assert got["cfg_img_scale"] == want["cfg_img_scale"]
    # The draw order is one randn(N, C) per SDE step from the global generator: the whole path matches.
    assert_tensor(torch.stack(rollout.latents), latents, what="latents")
    assert_tensor(rollout.final, t["final_latent"], what="final_latent")
    if case["sde_steps"]:
        assert_tensor(rollout.log_probs, t["rollout_log_probs"], what="rollout_log_probs")
    # Independently of the random stream: each stored transition.
    kwargs = _rollout_kwargs(case)
    for i in range(len(timesteps) - 1):
        if i in case["sde_steps"]:
            k = case["sde_steps"].index(i)
            out = step_log_prob(velocity, latents[i], latents[i + 1], i, timesteps, **kwargs)
            assert_tensor(out.per_sample_log_prob, t["recompute_log_probs"][k], what=f"lp step {i}")
            assert_tensor(out.prev_sample_mean, t["recompute_prev_sample_mean"][k], what=f"mean {i}")
            assert_scalar(out.std_dev_t, case["recompute_std_dev_t"][k], f"std step {i}")
        else:
            scales = (case["per_step"][i]["cfg_text_scale"], case["per_step"][i]["cfg_img_scale"])
            v = velocity(latents[i], i, timesteps[i], *scales)
            got = ode_step(latents[i], v, timesteps[i], timesteps[i + 1])
            assert_tensor(got, latents[i + 1], what=f"ode step {i}")


@pytest.mark.parametrize("case", cases("sde_window"), ids=lambda c: c["case_id"])
def test_sde_window(case):
    assert num_train_timesteps(case["num_steps"], case["timestep_fraction"]) == case["num_train_timesteps"]
    random.seed(case["python_random_seed"])
    got = [
        list(
            sample_sde_window(
                case["num_steps"],
                case["timestep_fraction"],
                case["sde_window_range"],
                case["random_sde_window"],
                case["disable_image_grpo"],
            )
        )
        for _ in case["windows"]
    ]
    assert got == case["windows"]
