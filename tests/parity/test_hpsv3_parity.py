"""HPSv3 against the official `hpsv3` package on tiny random weights in the released format.

Everything (checkpoint, base folder, images, prompts, batches, expected chat texts, token ids, pixels and
(μ, σ)) comes from tests/fixtures/parity/hpsv3/ (see its README for how it was made).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_paths import PARITY, fixture_cases, need

import evalkit  # noqa: F401 - installs the torchvision hook before anything imports torchvision

pytest.importorskip("transformers")
pytest.importorskip("torchvision")

FOLDER = PARITY / "hpsv3"
CASES = FOLDER / "cases.json"


def _runs(path: Path) -> list[dict]:
    return json.loads(path.read_text())["runs"]


def _run_id(run: dict) -> str:
    return "+".join(Path(name).stem for name in run["images"])


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(need(CASES, "HPSv3 parity fixture").read_text())


@pytest.fixture(scope="module")
def scorer(fixture):
    import torch

    from evalkit.rewards.hpsv3 import HPSv3Scorer

    return HPSv3Scorer(
        checkpoint=FOLDER / fixture["checkpoint"],
        base=FOLDER / fixture["base"],
        device="cpu",
        dtype=getattr(torch, fixture["dtype"]),
        pixels=fixture["pixels"],
    )


def _images(run: dict):
    from PIL import Image

    return [Image.open(FOLDER / "images" / name) for name in run["images"]]


@pytest.mark.parametrize("run", fixture_cases(CASES, "HPSv3 parity fixture", _runs, _run_id))
def test_prompt_tokens_and_pixels_match_official(run, fixture, scorer):
    import torch

    need(CASES, "HPSv3 parity fixture")
    texts = [scorer.chat_text(prompt) for prompt in run["prompts"]]
    assert texts == run["chat_texts"]  # byte for byte, the whole instruction included
    inputs = scorer.inputs(_images(run), run["prompts"])
    assert inputs["input_ids"].tolist() == run["input_ids"]
    assert inputs["image_grid_thw"].tolist() == run["image_grid_thw"]
    if "pixel_values_sum" in run:
        pixels = inputs["pixel_values"].double()
        tol = fixture["tolerance"]["pixel_values_abs"]
        step = run["pixel_values_stride"]
        expected = torch.tensor(run["pixel_values_strided"], dtype=torch.float64)
        assert (pixels.flatten()[::step] - expected).abs().max().item() <= tol
        assert pixels.sum().item() == pytest.approx(run["pixel_values_sum"], abs=tol * pixels.numel())
        assert pixels.abs().sum().item() == pytest.approx(
            run["pixel_values_abs_sum"], abs=tol * pixels.numel()
        )


@pytest.mark.parametrize("run", fixture_cases(CASES, "HPSv3 parity fixture", _runs, _run_id))
def test_mu_sigma_match_official(run, fixture, scorer):
    import torch

    need(CASES, "HPSv3 parity fixture")
    got = scorer.mu_sigma(_images(run), run["prompts"])
    expected = torch.tensor(run["mu_sigma"])
    assert (got - expected).abs().max().item() <= fixture["tolerance"]["mu_sigma_abs"]
    assert scorer.score(_images(run), run["prompts"]) == pytest.approx(expected[:, 0].tolist(), abs=1e-4)
