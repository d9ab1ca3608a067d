"""PickScore and HPSv3 with tiny random weights of their real architectures, saved and loaded back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.rewards.brightness import BrightnessScorer


def _images(n: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)) for _ in range(n)]


# ------------------------------------------------------------------------------------------ PickScore


@pytest.fixture(scope="module")
def pickscore_folder(tmp_path_factory):
    from evalkit.testing.rewards import tiny_pickscore

    return tiny_pickscore(tmp_path_factory.mktemp("models") / "pickscore")


def test_pickscore_is_logit_scaled_cosine(pickscore_folder):
    from evalkit.rewards.pickscore import PickScoreScorer

    scorer = PickScoreScorer(model=str(pickscore_folder), processor=str(pickscore_folder), device="cpu")
    images, prompts = _images(3), ["a photo of a cat", "a red car", "two dog on the table"]
    scores = scorer.score(images, prompts, [{}] * 3)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)

    model = scorer.model
    text = scorer.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**text, pixel_values=scorer.pixel_values(images))
    # CLIP's own logits_per_text diagonal is exactly exp(logit_scale) * cos(text_i, image_i).
    np.testing.assert_allclose(scores, out.logits_per_text.diag().numpy(), rtol=1e-5, atol=1e-5)
    assert abs(model.logit_scale.exp().item() - 1 / 0.07) < 1e-3  # CLIP's init: logit scale 1/0.07

    normalized = PickScoreScorer(
        model=str(pickscore_folder), processor=str(pickscore_folder), device="cpu", normalize="flow_grpo",
        batch_size=2,
    )  # fmt: skip
    np.testing.assert_allclose(normalized.score(images, prompts, [{}] * 3), np.array(scores) / 26, rtol=1e-5)


# -------------------------------------------------------------------------------------------- HPSv3


@pytest.fixture(scope="module")
def hpsv3_files(tmp_path_factory):
    from evalkit.testing.rewards import tiny_hpsv3

    return tiny_hpsv3(tmp_path_factory.mktemp("models") / "hpsv3")


def test_hpsv3_loads_released_layout_and_scores_mu(hpsv3_files):
    from safetensors.torch import load_file

    from evalkit.rewards.hpsv3 import REWARD_TOKEN, HPSv3Scorer, convert_released_keys
    from evalkit.testing.rewards import TINY_PIXELS

    base, checkpoint = hpsv3_files
    released = load_file(checkpoint)
    assert any(k.startswith("visual.") for k in released) and "rm_head.5.weight" in released
    assert any(k.startswith("model.layers.") for k in released)
    scorer = HPSv3Scorer(checkpoint=checkpoint, base=base, device="cpu", pixels=TINY_PIXELS)
    loaded = scorer.model.state_dict()
    expected = convert_released_keys(released)
    assert set(expected) == set(loaded)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert scorer.model.rm_head[0].weight.dtype == torch.float32

    images = _images(3)
    prompts = ["a photo of a cat", "a red car on the table", "two dog"]
    scores = scorer.score(images, prompts, [{}] * 3)
    assert len(scores) == 3 and all(np.isfinite(scores))
    mu_sigma = scorer.mu_sigma(images, prompts)
    assert mu_sigma.shape == (3, 2)
    np.testing.assert_allclose(scores, mu_sigma[:, 0].numpy(), rtol=1e-6)

    # Batching (right padding) does not change a sample's score; the reward token is in every sequence.
    single = [scorer.score([im], [p], [{}])[0] for im, p in zip(images, prompts, strict=True)]
    np.testing.assert_allclose(scores, single, rtol=1e-4, atol=1e-5)
    messages = scorer.messages("a cat")
    text = scorer.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.count(REWARD_TOKEN) == 1 and "Textual prompt - a cat" in text


def test_hpsv3_key_conversion_is_idempotent():
    from evalkit.rewards.hpsv3 import convert_released_keys

    state = {
        "visual.blocks.0.w": 1, "model.layers.0.w": 2, "model.embed_tokens.weight": 3, "lm_head.weight": 4,
        "rm_head.0.weight": 5,
    }  # fmt: skip
    once = convert_released_keys(state)
    assert set(once) == {
        "model.visual.blocks.0.w", "model.language_model.layers.0.w", "model.language_model.embed_tokens.weight",
        "lm_head.weight", "rm_head.0.weight",
    }  # fmt: skip
    assert convert_released_keys(once) == once


# ---------------------------------------------------------------------------------------- brightness


def test_brightness_scorer():
    black, white = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 255, 255))
    assert BrightnessScorer().score([black, white], ["", ""], [{}, {}]) == [0.0, 1.0]
