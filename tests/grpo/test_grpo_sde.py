"""The Flow-GRPO SDE step against the official outputs in ../shared/fixtures/flow_grpo/."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fixture_paths import FIXTURES as FIXTURE_ROOT

from evalkit.grpo.sde import ode_step, sde_step_with_logprob

FIXTURES = FIXTURE_ROOT / "flow_grpo"
CASES_FILE = FIXTURES / "sde_step_cases.json"


def _scheduler(num_steps: int = 10, shift: float = 3.0):
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(num_steps)
    return scheduler


def _cases() -> list[dict]:
    if not CASES_FILE.exists():
        return []
    return json.loads(CASES_FILE.read_text())["cases"]


def _fixture_scheduler():
    """The scheduler the fixture's official run used, as its file records it."""
    settings = json.loads(CASES_FILE.read_text())["scheduler"]
    return _scheduler(settings["num_inference_steps"], settings["shift"])


@pytest.mark.skipif(not CASES_FILE.exists(), reason="flow_grpo fixtures not present")
def test_schedule_matches_fixture():
    data = json.loads(CASES_FILE.read_text())
    scheduler = _scheduler(data["scheduler"]["num_inference_steps"], data["scheduler"]["shift"])
    assert torch.allclose(scheduler.timesteps, torch.tensor(data["timesteps"]), rtol=1e-6)
    assert torch.allclose(scheduler.sigmas, torch.tensor(data["sigmas"]), rtol=1e-6)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["case_id"])
def test_sde_step_matches_official(case):
    from safetensors.torch import load_file

    tensors = load_file(FIXTURES / case["tensor_file"])
    generator = None
    if not case["with_prev"]:
        generator = torch.Generator().manual_seed(case["noise_generator_seed"])
    out = sde_step_with_logprob(
        _fixture_scheduler(),
        tensors["model_output"],
        tensors["timestep"],
        tensors["sample"],
        noise_level=case["noise_level"],
        prev_sample=tensors.get("prev_sample_in"),
        generator=generator,
    )
    for name, dtype in case["output_dtypes"].items():
        assert str(getattr(out, name).dtype) == dtype, name
    for name in ("prev_sample", "log_prob", "prev_sample_mean", "std_dev_t"):
        got, expected = getattr(out, name), tensors[name]
        assert got.shape == expected.shape, name
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(out.log_prob, torch.tensor(case["log_prob"]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.std_dev_t.flatten(), torch.tensor(case["std_dev_t"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in _cases() if c["dtype"] != "float32"], ids=lambda c: c["case_id"])
def test_low_precision_prev_sample_comes_back_float32(case):
    """A bf16/fp16 prev_sample is upcast like the reference does; the log-prob is that of the upcast value."""
    from safetensors.torch import load_file

    tensors = load_file(FIXTURES / case["tensor_file"])
    low = getattr(torch, case["dtype"])
    prev = tensors["prev_sample"].to(low)
    args = (_fixture_scheduler(), tensors["model_output"], tensors["timestep"], tensors["sample"])
    out = sde_step_with_logprob(*args, noise_level=case["noise_level"], prev_sample=prev)
    for name, dtype in case["output_dtypes"].items():
        assert str(getattr(out, name).dtype) == dtype, name
    assert torch.equal(out.prev_sample, prev.float())
    again = sde_step_with_logprob(*args, noise_level=case["noise_level"], prev_sample=prev.float())
    torch.testing.assert_close(out.log_prob, again.log_prob, rtol=0, atol=0)


def test_bf16_prev_sample_is_returned_as_float32():
    scheduler = _scheduler()
    x, v = torch.randn(2, 4, 4, 4).bfloat16(), torch.randn(2, 4, 4, 4).bfloat16()
    prev = torch.randn(2, 4, 4, 4).bfloat16()
    out = sde_step_with_logprob(scheduler, v, scheduler.timesteps[[3, 5]], x, prev_sample=prev)
    assert out.prev_sample.dtype == out.log_prob.dtype == out.prev_sample_mean.dtype == torch.float32
    assert torch.equal(out.prev_sample, prev.float())


def test_logprob_is_per_element_mean_gaussian():
    scheduler = _scheduler()
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    t = scheduler.timesteps[[1, 4, 7]]
    out = sde_step_with_logprob(scheduler, v, t, x, noise_level=0.7, generator=gen)
    scale = out.std_dev_t * torch.sqrt(scheduler.sigmas[[1, 4, 7]] - scheduler.sigmas[[2, 5, 8]]).view(
        -1, 1, 1, 1
    )
    dist = torch.distributions.Normal(out.prev_sample_mean.double(), scale.double())
    expected = dist.log_prob(out.prev_sample.double()).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.log_prob.double(), expected, rtol=1e-5, atol=1e-5)


def test_bf16_inputs_are_computed_in_fp32():
    scheduler = _scheduler()
    x, v = torch.randn(2, 4, 4, 4).bfloat16(), torch.randn(2, 4, 4, 4).bfloat16()
    out = sde_step_with_logprob(scheduler, v, scheduler.timesteps[[3, 3]], x, generator=torch.Generator())
    assert out.prev_sample.dtype == out.log_prob.dtype == torch.float32


@pytest.mark.parametrize("sde_type", ["sde", "cps"])
def test_noise_zero_is_the_euler_ode_step(sde_type):
    scheduler = _scheduler()
    x, v = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    for i in range(len(scheduler.timesteps)):
        t = scheduler.timesteps[[i, i]]
        out = sde_step_with_logprob(scheduler, v, t, x, noise_level=0.0, sde_type=sde_type)
        ref = scheduler.step(v, scheduler.timesteps[i], x, return_dict=False)[0]
        scheduler._step_index = None  # diffusers' step() advances its own index
        torch.testing.assert_close(out.prev_sample, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.prev_sample, ode_step(scheduler, v, t, x), rtol=1e-6, atol=1e-6)


def test_cps_step_preserves_coefficients_and_logprob_form():
    scheduler = _scheduler()
    gen = torch.Generator().manual_seed(1)
    x, v = torch.randn(2, 4, 4, 4, generator=gen), torch.randn(2, 4, 4, 4, generator=gen)
    i, a = 3, 0.8
    t = scheduler.timesteps[[i, i]]
    out = sde_step_with_logprob(scheduler, v, t, x, noise_level=a, generator=gen, sde_type="cps")
    sigma, sigma_next = scheduler.sigmas[i].item(), scheduler.sigmas[i + 1].item()
    std = sigma_next * math.sin(a * math.pi / 2)
    assert torch.allclose(out.std_dev_t, torch.full_like(out.std_dev_t, std))
    x0, x1 = x - sigma * v, x + (1 - sigma) * v
    mean = x0 * (1 - sigma_next) + x1 * math.sqrt(sigma_next**2 - std**2)
    torch.testing.assert_close(out.prev_sample_mean, mean, rtol=1e-5, atol=1e-6)
    # Noise and deterministic part keep the total noise coefficient at sigma_next.
    assert math.isclose(std**2 + (sigma_next**2 - std**2), sigma_next**2)
    expected = -((out.prev_sample - mean) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.log_prob, expected, rtol=1e-5, atol=1e-6)


def test_given_prev_sample_gives_gradient_to_model_output():
    scheduler = _scheduler()
    x = torch.randn(2, 4, 4, 4)
    v = torch.randn(2, 4, 4, 4, requires_grad=True)
    t = scheduler.timesteps[[2, 5]]
    with torch.no_grad():
        rollout = sde_step_with_logprob(scheduler, v, t, x, generator=torch.Generator().manual_seed(3))
    again = sde_step_with_logprob(scheduler, v, t, x, prev_sample=rollout.prev_sample)
    assert torch.equal(again.log_prob.detach(), rollout.log_prob)
    again.log_prob.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
