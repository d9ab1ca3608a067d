"""Our BAGEL runtime on tiny random checkpoints: save/load round trip, batching, CFG and size rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixture_paths import FIXTURES as FIXTURE_ROOT
from PIL import Image

from evalkit import bagel
from evalkit.bagel.flow import cfg_active, combine_cfg, shifted_timesteps
from evalkit.bagel.transforms import target_size
from evalkit.errors import MissingWeightsError
from evalkit.testing.bagel import random_pipeline

FIXTURE = FIXTURE_ROOT / "bagel_tiny"
FAST = dict(num_timesteps=3, timestep_shift=3.0, cfg_renorm_min=0.0)
T2I = dict(FAST, cfg_text_scale=4.0, cfg_img_scale=1.0, cfg_interval=(0.4, 1.0), cfg_renorm_type="global")
EDIT = dict(
    FAST, cfg_text_scale=4.0, cfg_img_scale=2.0, cfg_interval=(0.0, 1.0), cfg_renorm_type="text_channel"
)


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return random_pipeline(seed=0)


def _image(seed: int, size=(90, 70)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_save_load_round_trip(pipe, tmp_path):
    folder = bagel.save_pretrained(pipe, tmp_path / "tiny", dtype=torch.float32)
    assert {p.name for p in folder.iterdir()} >= {
        "llm_config.json",
        "vit_config.json",
        "ema.safetensors",
        "ae.safetensors",
        "tokenizer.json",
    }
    loaded = bagel.load(folder, dtype=torch.float32, device="cpu")
    assert loaded.config.to_dict() == pipe.config.to_dict()
    for key, value in pipe.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    a = pipe.generate_image("a cat", height=48, width=64, seed=3, **T2I)
    b = loaded.generate_image("a cat", height=48, width=64, seed=3, **T2I)
    assert a.image.size == (64, 48)
    assert np.array_equal(_pixels(a.image), _pixels(b.image))
    assert loaded.understand(_image(1), "what?", max_new_tokens=4) == pipe.understand(
        _image(1), "what?", max_new_tokens=4
    )


def test_bf16_round_trip_loads_as_bf16(pipe, tmp_path):
    folder = bagel.save_pretrained(pipe, tmp_path / "bf16")
    loaded = bagel.load(folder, dtype="bf16", device="cpu")
    assert loaded.model.dtype == torch.bfloat16 and loaded.vae.decoder.conv_in.weight.dtype == torch.float32
    out = loaded.generate_image("a dog", height=32, width=32, seed=0, **T2I)
    assert out.image.size == (32, 32)


def test_multi_gpu_device_map_places_every_parameter_once(pipe):
    from evalkit.bagel.loading import balanced_device_map

    device_map = balanced_device_map(28, 3)
    assert [device_map[f"language_model.model.layers.{i}"] for i in (0, 9, 10, 19, 20, 27)] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    small = balanced_device_map(pipe.config.llm.num_hidden_layers, 2)
    for name in pipe.model.state_dict():
        owners = [key for key in small if name == key or name.startswith(key + ".")]
        assert len(owners) == 1, name


def test_missing_weights_error_says_how_to_get_them(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        bagel.load(tmp_path / "nowhere", device="cpu")
    message = str(err.value)
    assert "\n" not in message and "ema.safetensors" in message and "ByteDance-Seed/BAGEL-7B-MoT" in message


def test_batched_t2i_equals_one_at_a_time(pipe):
    prompts = ["a red cube", "two blue spheres on a long wooden table", "x"]
    seeds = [11, 12, 13]
    batch = pipe.generate_images(prompts, height=48, width=48, seeds=seeds, **T2I)
    for prompt, seed, out in zip(prompts, seeds, batch, strict=True):
        single = pipe.generate_image(prompt, height=48, width=48, seed=seed, **T2I)
        assert np.abs(_pixels(single.image) - _pixels(out.image)).max() <= 1
    assert not np.array_equal(_pixels(batch[0].image), _pixels(batch[1].image))


def test_batched_think_and_latents_equal_sequential(pipe):
    prompts, seeds = ["a red cube", "a very long prompt about a green dog"], [5, 6]
    traces = [{}, {}]
    singles = [
        pipe.generate_image(p, height=32, width=48, seed=s, think=True, max_think_tokens=5, trace=tr, **T2I)
        for p, s, tr in zip(prompts, seeds, traces, strict=True)
    ]
    batch = pipe.generate_images(
        prompts, height=32, width=48, seeds=seeds, think=True, max_think_tokens=5, **T2I
    )
    assert [o.think for o in batch] == [o.think for o in singles]
    assert all(o.think for o in batch)
    for single, out in zip(singles, batch, strict=True):
        assert np.abs(_pixels(single.image) - _pixels(out.image)).max() <= 1


def test_batched_sampled_think_equals_sequential(pipe):
    """Sampled think text draws from a per-prompt generator, so batching does not change it."""
    prompts, seeds = ["a red cube", "a green dog"], [21, 22]
    kwargs = dict(
        height=32, width=32, think=True, max_think_tokens=6, think_do_sample=True, think_temperature=1.0
    )
    batch = pipe.generate_images(prompts, seeds=seeds, **kwargs, **T2I)
    singles = [pipe.generate_image(p, seed=s, **kwargs, **T2I) for p, s in zip(prompts, seeds, strict=True)]
    assert [o.think for o in batch] == [o.think for o in singles]
    greedy = pipe.generate_image(prompts[0], seed=21, **{**kwargs, "think_do_sample": False}, **T2I)
    assert batch[0].think != greedy.think
    for single, out in zip(singles, batch, strict=True):
        assert np.abs(_pixels(single.image) - _pixels(out.image)).max() <= 1


def test_batched_edit_equals_sequential(pipe):
    images = [_image(1, (90, 70)), _image(2, (64, 100))]
    prompts, seeds = ["make it green", "remove the cat"], [1, 2]
    batch = pipe.generate_images(prompts, input_images=images, seeds=seeds, **EDIT)
    for image, prompt, seed, out in zip(images, prompts, seeds, batch, strict=True):
        single = pipe.generate_image(prompt, input_image=image, seed=seed, **EDIT)
        assert out.image.size == single.image.size
        assert np.abs(_pixels(single.image) - _pixels(out.image)).max() <= 1
    assert batch[0].image.size == (96, 64) and batch[1].image.size == (64, 96)


def test_batched_understanding_equals_sequential(pipe):
    images, questions = (
        [_image(3), _image(4, (120, 60))],
        ["what is it?", "how many cats are in the picture?"],
    )
    batch = pipe.understand_batch(images, questions, max_new_tokens=6)
    assert batch == [
        pipe.understand(im, q, max_new_tokens=6) for im, q in zip(images, questions, strict=True)
    ]


def test_rejects_sizes_the_latent_grid_cannot_hold(pipe):
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe.generate_image("a", height=40, width=48, **T2I)
    with pytest.raises(ValueError, match="between 16 and 128"):
        pipe.generate_image("a", height=144, width=48, **T2I)


def test_explicit_noise_reproduces_and_changes_output(pipe):
    noise = torch.randn(9, 64, generator=torch.Generator().manual_seed(0))
    a = pipe.generate_image("a", height=48, width=48, noise=noise, **T2I)
    b = pipe.generate_image("a", height=48, width=48, noise=noise, **T2I)
    c = pipe.generate_image("a", height=48, width=48, noise=noise * -1, **T2I)
    with pytest.raises(ValueError, match="packed latent tokens"):
        pipe.generate_image("a", height=48, width=48, noise=noise.reshape(3, 3, 64), **T2I)
    assert np.array_equal(_pixels(a.image), _pixels(b.image))
    assert not np.array_equal(_pixels(a.image), _pixels(c.image))


def test_cfg_interval_is_open_below_closed_above():
    t = shifted_timesteps(5, 3.0)
    assert t[0] == 1.0 and t[-1] == 0.0
    assert [cfg_active(x, (0.4, 1.0)) for x in t[:-1]] == [True, True, True, True]
    assert not cfg_active(torch.tensor(0.4), (0.4, 1.0))
    assert cfg_active(torch.tensor(1.0), (0.4, 1.0)) and not cfg_active(torch.tensor(1.0), (0.0, 0.9))


def test_combine_cfg_renorm_variants():
    g = torch.Generator().manual_seed(0)
    vc, vt, vi = (torch.randn(6, 8, generator=g) for _ in range(3))
    raw = vt + 4.0 * (vc - vt)
    kwargs = dict(text_scale=4.0, img_scale=1.0, renorm_min=0.0)
    glob = combine_cfg(vc, vt, None, renorm_type="global", **kwargs)
    torch.testing.assert_close(glob, raw * (vc.norm() / raw.norm()).clamp(max=1.0))
    chan = combine_cfg(vc, vt, None, renorm_type="channel", **kwargs)
    torch.testing.assert_close(chan.norm(dim=-1), torch.minimum(vc.norm(dim=-1), raw.norm(dim=-1)))
    # renorm_min = 1 disables the rescaling
    torch.testing.assert_close(
        combine_cfg(vc, vt, None, renorm_type="global", text_scale=4.0, img_scale=1.0, renorm_min=1.0), raw
    )
    # text_channel: per-token renorm of the text term, then image CFG without renorm
    text = raw * (vc.norm(dim=-1, keepdim=True) / raw.norm(dim=-1, keepdim=True)).clamp(max=1.0)
    both = combine_cfg(vc, vt, vi, renorm_type="text_channel", text_scale=4.0, img_scale=2.0, renorm_min=0.0)
    torch.testing.assert_close(both, vi + 2.0 * (text - vi))
    assert combine_cfg(vc, vt, vi, renorm_type="global", text_scale=1.0, img_scale=2.0, renorm_min=0.0) is vc
    with pytest.raises(ValueError):
        combine_cfg(vc, vt, None, renorm_type="nope", **kwargs)


def test_resize_rule_uses_bankers_rounding():
    assert target_size(100, 76, 128, 64, 16, 10**7) == (96, 80)
    assert target_size(96, 80, 112, 56, 14, 10**7) == (98, 84)
    assert target_size(150, 110, 128, 64, 16, 10**7) == (128, 96)
    # 104 / 16 = 6.5 and 200 / 16 = 12.5: round() gives 6 and 12 (banker's), not 7 and 13
    assert target_size(104, 200, 1024, 16, 16, 10**7) == (96, 192)
    # the short-edge minimum can push the long edge over the maximum, which then wins
    assert target_size(4000, 1000, 1024, 512, 16, 10**9) == (1024, 256)


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="bagel_tiny fixture not present")
def test_fixture_tokenizer_round_trips_think_text():
    pipe = bagel.load(FIXTURE / "checkpoint", dtype=torch.float32, device="cpu")
    tok = pipe.tokenizer
    assert tok.split_generated([491, 9, 273, 354, 315, 58, 423, 313]) == "* gstube[urnlue"
    assert tok.split_generated([491, *tok.encode("ab"), 492, *tok.encode("cd")]) == "ab"


def test_understanding_think_prepends_the_vlm_system_prompt(pipe):
    from evalkit.bagel.pipeline import VLM_THINK_SYSTEM_PROMPT

    image = _image(5, (64, 64))
    plain, thinking = {}, {}
    pipe.understand(image, "why?", max_new_tokens=2, trace=plain)
    pipe.understand(image, "why?", max_new_tokens=2, think=True, trace=thinking)
    extra = len(pipe.tokenizer.segment(VLM_THINK_SYSTEM_PROMPT))
    assert int(thinking["contexts"].gen.lengths[0]) == int(plain["contexts"].gen.lengths[0]) + extra
    assert int(thinking["contexts"].gen.rope[0]) == int(plain["contexts"].gen.rope[0]) + extra


def test_loader_rejects_foreign_state_dict(pipe, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = bagel.save_pretrained(pipe, tmp_path / "bad", dtype=torch.float32)
    state = load_file(str(folder / "ema.safetensors"))
    state["language_model.model.extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "ema.safetensors"))
    with pytest.raises(ValueError, match="unexpected"):
        bagel.load(folder, dtype=torch.float32, device="cpu")
