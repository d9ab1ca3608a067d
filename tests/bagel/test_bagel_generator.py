"""The `bagel` / `alphagrpo` generator adapters on tiny random checkpoints in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit import bagel
from evalkit.bagel.lora import ALPHAGRPO_TARGET_MODULES
from evalkit.benchmarks.geneval import GenEval
from evalkit.benchmarks.tiif import TIIF
from evalkit.benchmarks.wise import WISE
from evalkit.errors import EvalkitError, MissingWeightsError
from evalkit.generators.bagel import PRESETS, REFLECTION_PROMPT, build
from evalkit.generators.base import GenerationRequest, Generator, ModelSpec
from evalkit.testing.bagel import random_pipeline

FAST = {"num_timesteps": "3"}  # as the CLI passes --option values: strings


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    return bagel.save_pretrained(
        random_pipeline(seed=0), tmp_path_factory.mktemp("bagel") / "tiny", torch.float32
    )


@pytest.fixture(scope="module")
def generator(checkpoint):
    return build(
        ModelSpec(name="bagel", path=str(checkpoint), options={**FAST, "batch_size": "2"}, device="cpu")
    )


@pytest.fixture(scope="module")
def adapter(checkpoint, tmp_path_factory):
    """A random rank-4 LoRA on both MoT experts, saved by peft like the AlphaGRPO release."""
    from peft import LoraConfig, get_peft_model

    model = bagel.load(checkpoint, dtype=torch.float32, device="cpu").model
    config = LoraConfig(r=4, lora_alpha=8, target_modules=ALPHAGRPO_TARGET_MODULES, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    folder = tmp_path_factory.mktemp("lora") / "AlphaGRPO-srr"
    peft_model.save_pretrained(str(folder))
    return folder


def _image(seed: int, size=(70, 50)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_interfaces_and_config(generator):
    assert isinstance(generator, Generator) and generator.declared() == {
        "edit": True,
        "think": True,
        "refine": True,
        "self_check": True,
    }
    cfg = generator.config()
    assert cfg["model"] == "bagel" and cfg["settings"]["num_timesteps"] == 3
    assert cfg["settings"]["cfg_interval"] == (0.4, 1.0) and cfg["settings"]["cfg_renorm_type"] == "global"
    assert cfg["vit_transform"] == [112, 56, 14]  # official ratio: min(224, half the ViT table size)
    assert "batch_size" not in cfg  # batching does not change images, so it must not change the run hash


def test_presets_resolve_per_request(generator):
    geneval = GenEval.generation_presets
    assert generator.settings({"generation_presets": geneval})["cfg_interval"] == (0.0, 1.0)
    edit = generator.settings({}, edit=True)
    assert (edit["cfg_img_scale"], edit["cfg_interval"], edit["cfg_renorm_type"]) == (
        2.0,
        (0.0, 1.0),
        "text_channel",
    )
    assert generator.settings({"generation_presets": WISE.generation_presets})["think"] is True
    assert generator.settings({"generation_presets": TIIF.generation_presets}) == generator.settings(
        {"preset": "t2i"}
    )
    assert generator.settings({"generation_presets": {"other-model": {"think": True}}}) == generator.settings(
        {}
    )
    assert generator.settings({"cfg_text_scale": "6"})["cfg_text_scale"] == 6
    assert PRESETS["t2i"]["num_timesteps"] == 50 and generator.settings({})["num_timesteps"] == 3
    with pytest.raises(EvalkitError):
        generator.settings({"preset": "nope"})


def test_generate_mixed_requests_in_order(generator):
    requests = [
        GenerationRequest(prompt="a red cube", seed=1, height=32, width=48),
        GenerationRequest(
            prompt="a cat", seed=2, height=32, width=32, options={"think": True, "max_think_tokens": 4}
        ),
        GenerationRequest(prompt="make it blue", seed=3, input_image=_image(0)),
        GenerationRequest(prompt="a blue cube", seed=4, height=32, width=48),
        GenerationRequest(prompt="a dog", seed=5, height=32, width=48),
    ]
    out = generator.generate(requests)
    assert [g.image.size for g in out] == [(48, 32), (32, 32), (96, 64), (48, 32), (48, 32)]
    assert out[1].think and out[0].think is None and out[2].think is None
    assert out[0].extra["batch"] == 2 and out[4].extra["batch"] == 1  # 3 same-setting requests, batch_size 2
    assert out[2].extra["settings"]["cfg_renorm_type"] == "text_channel"
    direct = generator.pipe.generate_image("a dog", height=32, width=48, seed=5, **out[4].extra["settings"])
    assert np.array_equal(np.asarray(direct.image), np.asarray(out[4].image))


def test_refine_reflects_then_edits(generator):
    image = _image(1, (64, 48))
    out = generator.refine(image, "two cats", seed=7, max_think_tokens=3)
    assert out.image.size == (80, 64)  # VAE transform: short edge raised to 64, sides snapped to 16
    assert out.think is not None and out.extra["reflection_prompt"] == REFLECTION_PROMPT.format("two cats")
    settings = out.extra["settings"]
    assert (
        settings["think"]
        and settings["cfg_img_scale"] == 2.0
        and settings["cfg_renorm_type"] == "text_channel"
    )
    again = generator.refine(image, "two cats", seed=7, max_think_tokens=3)
    assert np.array_equal(np.asarray(out.image), np.asarray(again.image)) and again.think == out.think


def test_alphagrpo_merges_lora(checkpoint, adapter):
    base = bagel.load(checkpoint, dtype=torch.float32, device="cpu")
    gen = build(
        ModelSpec(
            name="alphagrpo",
            path=str(adapter),
            options={"variant": "srr", "base": str(checkpoint), **FAST},
            device="cpu",
        )
    )
    assert gen.config()["variant"] == "srr" and gen.config()["lora"] == str(adapter)
    assert gen.config()["vit_transform"][1] == 378  # AlphaGRPO's eval scripts use a 378-px ViT minimum
    from safetensors.torch import load_file

    lora = load_file(str(adapter / "adapter_model.safetensors"))
    prefix = "base_model.model.language_model.model.layers.1.self_attn.q_proj_moe_gen"
    delta = 2.0 * lora[f"{prefix}.lora_B.weight"] @ lora[f"{prefix}.lora_A.weight"]  # alpha / r = 2
    name = "language_model.model.layers.1.self_attn.q_proj_moe_gen.weight"
    merged, original = gen.pipe.model.state_dict()[name], base.model.state_dict()[name]
    torch.testing.assert_close(merged, original + delta)
    assert set(gen.pipe.model.state_dict()) == set(base.model.state_dict())  # no LoRA layers left
    a = gen.pipe.generate_image("a red cube", height=32, width=32, seed=0, **gen.settings({"preset": "t2i"}))
    b = base.generate_image("a red cube", height=32, width=32, seed=0, **gen.settings({"preset": "t2i"}))
    assert not np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_alphagrpo_rt2i_thinks_by_default(checkpoint, adapter):
    gen = build(
        ModelSpec(
            name="alphagrpo",
            options={"lora": str(adapter), "base": str(checkpoint), **FAST, "max_think_tokens": "3"},
            device="cpu",
        )
    )
    out = gen.generate([GenerationRequest(prompt="a cube", seed=0, height=32, width=32)])
    assert gen.variant == "rt2i" and out[0].think


def test_default_locations_come_from_the_manifests(tmp_path, monkeypatch, checkpoint):
    import evalkit.checkpoints

    monkeypatch.setattr(evalkit.checkpoints, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(evalkit.checkpoints, "_hf_cached", lambda model_id: None)
    with pytest.raises(MissingWeightsError, match=r"(hf|huggingface-cli) download ByteDance-Seed/BAGEL-7B-MoT"):
        build(ModelSpec(name="bagel", device="cpu"))
    with pytest.raises(MissingWeightsError, match="alphagrpo-srr"):
        build(ModelSpec(name="alphagrpo", options={"variant": "srr", "base": str(checkpoint)}, device="cpu"))
    (tmp_path / "bagel").symlink_to(checkpoint)
    gen = build(ModelSpec(name="bagel", options=FAST, device="cpu"))
    assert gen.config()["base"] == str(tmp_path / "bagel")


def test_missing_weights_and_bad_options(tmp_path, checkpoint):
    with pytest.raises(MissingWeightsError, match="ByteDance-Seed/BAGEL-7B-MoT"):
        build(ModelSpec(name="bagel", path=str(tmp_path / "none"), device="cpu"))
    with pytest.raises(MissingWeightsError, match="lora=PATH"):
        build(
            ModelSpec(
                name="alphagrpo", options={"base": str(checkpoint), "lora": str(tmp_path)}, device="cpu"
            )
        )
    with pytest.raises(EvalkitError, match="rt2i or srr"):
        build(ModelSpec(name="alphagrpo", options={"variant": "x"}, device="cpu"))
    with pytest.raises(EvalkitError, match="unknown option"):
        build(ModelSpec(name="bagel", path=str(checkpoint), options={"cfg_scale": 3}, device="cpu"))
