"""GenEval's colour classifier against the official pipeline (open_clip transform + clip_benchmark zero-shot).

The tiny CLIP, images, masks, boxes, class names, colours and templates come from
tests/fixtures/parity/geneval_color/ (README there). The checkpoint is stored compactly (only the token
embedding rows its tokenizer can produce); `expand_clip` writes the full transformers folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixture_paths import PARITY, fixture_cases, need

import evalkit  # noqa: F401 - installs the torchvision hook before anything imports torchvision

pytest.importorskip("transformers")

FOLDER = PARITY / "geneval_color"
CASES = FOLDER / "cases.json"
WHAT = "GenEval colour parity fixture"


def expand_clip(compact_dir: Path, out: Path) -> Path:
    """The transformers folder of the fixture's CLIP: unused token-embedding rows are zeros, as when made."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(compact_dir, out, ignore=shutil.ignore_patterns("compact.safetensors"))
    state = load_file(compact_dir / "compact.safetensors")
    ids, rows = state.pop("token_embedding_ids"), state.pop("token_embedding_rows")
    from transformers import CLIPConfig

    vocab = CLIPConfig.from_pretrained(compact_dir).text_config.vocab_size
    embedding = torch.zeros(vocab, rows.shape[1], dtype=rows.dtype)
    embedding[ids] = rows
    state["text_model.embeddings.token_embedding.weight"] = embedding
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    return out


def _cases(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cases"]


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(need(CASES, WHAT).read_text())


@pytest.fixture(scope="module")
def classifier(fixture, tmp_path_factory):
    from evalkit.detection.color import COLORS, TEMPLATES, ClipColorClassifier

    assert list(COLORS) == fixture["colors"]
    assert [t.replace("{cls}", "{classname}").replace("{c}", "{{c}}") for t in TEMPLATES] == fixture[
        "templates"
    ]
    path = expand_clip(FOLDER / fixture["clip"], tmp_path_factory.mktemp("clip") / "clip")
    return ClipColorClassifier(path, bgcolor=fixture["bgcolor"], crop=fixture["crop"])


def _job(case: dict):
    from PIL import Image

    from evalkit.benchmarks.geneval.rules import DetectedObject

    image = Image.open(FOLDER / "images" / case["image"])
    objects = [
        DetectedObject(
            box=np.array(o["box"]),
            mask=None
            if o["mask"] is None
            else np.array(Image.open(FOLDER / "images" / o["mask"])).astype(bool),
        )
        for o in case["objects"]
    ]
    return image, objects, case["classname"]


def _id(case: dict) -> str:
    return f"{Path(case['image']).stem}-{case['classname'].replace(' ', '_')}"


@pytest.mark.parametrize("case", fixture_cases(CASES, WHAT, _cases, _id))
def test_crop_pixels_match_open_clip(case, fixture, classifier):
    import torch

    from evalkit.detection.color import object_crop

    need(CASES, WHAT)
    image, objects, _ = _job(case)
    tol = fixture["tolerance"]["pixel_abs"]
    for obj, expected in zip(objects, case["objects"], strict=True):
        crop = object_crop(image, obj, classifier.bgcolor, classifier.crop)
        pixels = classifier.pixel_values([crop])[0].double()
        want = torch.tensor(expected["pixel_strided"], dtype=torch.float64)
        assert (pixels.flatten()[:: expected["pixel_stride"]] - want).abs().max().item() <= tol
        assert pixels.sum().item() == pytest.approx(expected["pixel_sum"], abs=tol * pixels.numel())
        assert pixels.abs().sum().item() == pytest.approx(expected["pixel_abs_sum"], abs=tol * pixels.numel())


@pytest.mark.parametrize("case", fixture_cases(CASES, WHAT, _cases, _id))
def test_logits_probabilities_and_colours_match_official(case, fixture, classifier):
    import torch

    need(CASES, WHAT)
    (logits,) = classifier.logits([_job(case)])
    tol = fixture["tolerance"]
    assert (logits - torch.tensor(case["logits"])).abs().max().item() <= tol["logit_abs"]
    assert (logits.softmax(-1) - torch.tensor(case["probs"])).abs().max().item() <= tol["prob_abs"]
    assert classifier.classify([_job(case)]) == [case["colors"]]


def test_centre_crop_offsets_round_half_to_even_like_torchvision():
    """evalkit's pixels against torchvision's own transform chain on sizes with odd crop margins."""
    torchvision = pytest.importorskip("torchvision")
    import torch
    from PIL import Image

    from evalkit.detection.color import openclip_pixels

    T = torchvision.transforms
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    chain = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    rng = np.random.default_rng(0)
    for width, height in [(50, 61), (61, 50), (224, 275), (229, 224), (300, 90), (224, 224)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        torch.testing.assert_close(
            openclip_pixels(image, 224, 224, mean, std), chain(image), rtol=0, atol=1e-6
        )
