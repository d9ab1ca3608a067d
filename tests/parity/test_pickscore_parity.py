"""PickScore against the official snippet (transformers 4.45 CLIPProcessor/CLIPModel) on tiny random weights.

Model folder, images, prompts, expected scores and pixel checksums come from tests/fixtures/parity/pickscore/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_paths import PARITY, fixture_cases, need

import evalkit  # noqa: F401 - installs the torchvision hook before anything imports torchvision

pytest.importorskip("transformers")

FOLDER = PARITY / "pickscore"
CASES = FOLDER / "cases.json"
WHAT = "PickScore parity fixture"


def _load(key: str):
    return lambda path: json.loads(path.read_text())[key]


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(need(CASES, WHAT).read_text())


@pytest.fixture(scope="module")
def scorer(fixture):
    import torch

    from evalkit.rewards.pickscore import PickScoreScorer

    model = str(FOLDER / fixture["model"])
    return PickScoreScorer(model=model, processor=model, device="cpu", dtype=getattr(torch, fixture["dtype"]))


def _image(name: str):
    from PIL import Image

    return Image.open(FOLDER / "images" / name)


@pytest.mark.parametrize("case", fixture_cases(CASES, WHAT, _load("pixels"), lambda c: Path(c["image"]).stem))
def test_pixels_match_the_official_pil_preprocessing(case, fixture, scorer):
    import torch

    need(CASES, WHAT)
    pixels = scorer.pixel_values([_image(case["image"])]).double()
    tol = fixture["tolerance"]["pixel_abs"]
    expected = torch.tensor(case["pixel_strided"], dtype=torch.float64)
    assert (pixels.flatten()[:: case["pixel_stride"]] - expected).abs().max().item() <= tol
    assert pixels.sum().item() == pytest.approx(case["pixel_sum"], abs=tol * pixels.numel())
    assert pixels.abs().sum().item() == pytest.approx(case["pixel_abs_sum"], abs=tol * pixels.numel())


@pytest.mark.parametrize("run", fixture_cases(CASES, WHAT, _load("runs"), lambda r: r["prompt"][:24]))
def test_scores_match_official(run, fixture, scorer):
    need(CASES, WHAT)
    images = [_image(name) for name in run["images"]]
    got = scorer.score(images, [run["prompt"]] * len(images))
    assert got == pytest.approx(run["scores"], abs=fixture["tolerance"]["score_abs"])
