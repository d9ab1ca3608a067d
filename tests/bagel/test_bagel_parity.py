"""Parity with the official BAGEL code on the tiny checkpoint in ../shared/fixtures/bagel_tiny.

Tolerances are the ones the fixture's README suggests for float32 on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixture_paths import SHARED
from PIL import Image

FIXTURE = SHARED / "fixtures" / "bagel_tiny"
if not FIXTURE.is_dir():
    pytest.skip("bagel_tiny parity fixture not present", allow_module_level=True)

from safetensors.torch import load_file  # noqa: E402

from evalkit import bagel  # noqa: E402
from evalkit.bagel.siglip import grid_position_ids, patchify  # noqa: E402
from evalkit.bagel.transforms import to_tensor  # noqa: E402

T2I = dict(
    cfg_text_scale=4.0,
    cfg_img_scale=1.0,
    cfg_interval=(0.4, 1.0),
    timestep_shift=3.0,
    num_timesteps=5,
    cfg_renorm_min=0.0,
    cfg_renorm_type="global",
    height=64,
    width=64,
)
EDIT = dict(
    cfg_text_scale=4.0,
    cfg_img_scale=2.0,
    cfg_interval=(0.0, 1.0),
    timestep_shift=3.0,
    num_timesteps=5,
    cfg_renorm_min=0.0,
    cfg_renorm_type="text_channel",
)


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return bagel.load(FIXTURE / "checkpoint", dtype=torch.float32, device="cpu")


def _case(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    folder = FIXTURE / "cases" / name
    return json.loads((folder / "case.json").read_text()), load_file(str(folder / "tensors.safetensors"))


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    actual = actual.detach().float().cpu().reshape(expected.shape)
    torch.testing.assert_close(actual, expected.float(), atol=atol, rtol=0)


def _check_flow(trace: dict, t: dict[str, torch.Tensor]) -> None:
    assert torch.equal(trace["timesteps"], t["timesteps_shifted"])
    assert torch.equal(trace["dts"], t["dts"])
    for i in range(len(trace["v_cond"])):
        _close(trace["x_t"][i], t[f"step{i}.x_t"], 1e-3)
        _close(trace["v_cond"][i], t[f"step{i}.v_cond"], 1e-4)
        _close(trace["v_cfg"][i], t[f"step{i}.v_cfg"], 1e-4)
        for key in ("v_uncond_text", "v_uncond_img"):
            if f"step{i}.{key}" in t:
                _close(trace[key][i], t[f"step{i}.{key}"], 1e-4)
            else:
                assert trace[key][i] is None
    _close(trace["x_t"][-1], t["final_latent_packed"], 1e-3)
    _close(trace["decode_latent"], t["decode.latent_unpatchified"], 1e-3)
    _close(trace["float_pixels"], t["decode.image_float_0_255"], 0.05)


def _check_image(image: Image.Image, expected: torch.Tensor) -> None:
    ours = np.asarray(image).astype(np.int16)
    theirs = expected.numpy().astype(np.int16)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 0.005


def _check_caches(trace: dict, t: dict[str, torch.Tensor], meta: dict) -> None:
    ctx = trace["contexts"]
    for name in ("gen", "cfg_text", "cfg_img"):
        cache = getattr(ctx, name)
        info = meta["gen_image_contexts"][name]
        assert int(cache.lengths[0]) == info["kv_lens"][0]
        assert int(cache.rope[0]) == info["ropes"][0]
        keys, values = cache.row(0)
        for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
            if f"kv_cache.{name}.layer{layer}.key" not in t:
                assert info["kv_lens"][0] == 0
                continue
            _close(k.transpose(0, 1), t[f"kv_cache.{name}.layer{layer}.key"], 1e-4)
            _close(v.transpose(0, 1), t[f"kv_cache.{name}.layer{layer}.value"], 1e-4)


def test_loader_reads_official_layout(pipe):
    cfg = pipe.config
    assert (cfg.llm.hidden_size, cfg.llm.num_hidden_layers, cfg.llm.num_key_value_heads) == (64, 2, 2)
    assert cfg.vit.num_hidden_layers == 2  # vit_config.json says 3; the loader drops one like the release
    assert (cfg.max_latent_size, cfg.vit_max_num_patch_per_side, cfg.latent_patch_size) == (8, 8, 2)
    assert (cfg.vae.ch, cfg.vae.ch_mult, cfg.vae.num_res_blocks, cfg.vae.z_channels) == (
        32,
        [1, 2, 2, 2],
        1,
        16,
    )
    assert (cfg.vae.scale_factor, cfg.vae.shift_factor) == (0.3611, 0.1159)
    assert cfg.vae_transform == (128, 64, 16) and cfg.vit_transform == (112, 56, 14)
    stored = load_file(str(FIXTURE / "checkpoint" / "ema.safetensors"))
    state = pipe.model.state_dict()
    assert set(state) == set(stored)
    for key in ("latent_pos_embed.pos_embed", "vit_model.vision_model.embeddings.patch_embedding.weight"):
        assert torch.equal(state[key], stored[key].float())
    tok = pipe.tokenizer
    assert (tok.bos, tok.eos, tok.start_of_image, tok.end_of_image) == (491, 492, 499, 500)
    assert tok.segment("a red cube on a blue table") == [491, 64, 325, 324, 307, 260, 317, 386, 492]


def test_t2i_matches_official(pipe):
    meta, t = _case("a_t2i")
    trace: dict = {}
    out = pipe.generate_image("a red cube on a blue table", noise=t["initial_noise"], trace=trace, **T2I)
    _check_caches(trace, t, meta)
    _check_flow(trace, t)
    _check_image(out.image, t["decode.image_uint8"])
    assert out.think is None


def test_t2i_seed_draws_the_official_noise(pipe):
    """seed=s draws randn(N, 64) from torch.Generator().manual_seed(s), the fixture's injected noise."""
    _, t = _case("a_t2i")
    out = pipe.generate_image("a red cube on a blue table", seed=1001, **T2I)
    _check_image(out.image, t["decode.image_uint8"])


def test_t2i_think_matches_official(pipe):
    meta, t = _case("b_t2i_think")
    trace: dict = {}
    out = pipe.generate_image(
        "a red cube on a blue table",
        think=True,
        max_think_tokens=7,
        noise=t["initial_noise"],
        trace=trace,
        **T2I,
    )
    assert out.think == meta["outputs"]["text"] == "* gstube[urnlue"
    assert trace["text_sequences"][0][0] == t["text0.generated_sequence"].tolist()
    logits = trace["text_step_logits"][0][0]
    _close(logits, t["text0.step_logits"], 1e-4)
    assert torch.equal(logits.argmax(-1)[:-1], t["text0.generated_token_ids"])
    _check_caches(trace, t, meta)
    _check_flow(trace, t)
    _check_image(out.image, t["decode.image_uint8"])


@pytest.mark.parametrize("case", ["c_edit", "e_edit_think"])
def test_edit_matches_official(pipe, case):
    meta, t = _case(case)
    image = Image.open(FIXTURE / "cases" / case / "input_image.png")
    ctx = [u["idx"] for u in meta["context_updates"] if u["fn"] == "update_context_image"][0]
    think = "think" in case
    trace: dict = {}
    out = pipe.generate_image(
        "make it green",
        input_image=image,
        noise=t["initial_noise"],
        posterior_noise=t[f"ctx{ctx}.vae_encode.posterior_eps"],
        think=think,
        max_think_tokens=7,
        trace=trace,
        **EDIT,
    )
    assert np.array_equal(np.asarray(trace["vae_resized_image"]), t[f"ctx{ctx}.image_uint8"].numpy())
    assert np.array_equal(
        np.asarray(trace["vit_resized_image"]), t[f"ctx{ctx}.vit_resized_image_uint8"].numpy()
    )
    _close(trace["vae_input"], t[f"ctx{ctx}.vae_encode.input"], 1e-5)
    _close(trace["vae_latent"], t[f"ctx{ctx}.vae_encode.output_z"], 1e-5)
    _close(trace["vae_packed_latent_tokens"], t[f"ctx{ctx}.vae_packed_latent_tokens"], 1e-5)
    assert out.think == meta["outputs"]["text"]
    _check_caches(trace, t, meta)
    _check_flow(trace, t)
    _check_image(out.image, t["decode.image_uint8"])
    assert out.image.size == tuple(meta["context_updates"][ctx]["image_size_wh"])


def test_vit_and_connector_match_official(pipe):
    _, t = _case("c_edit")
    vit_image = Image.fromarray(t["ctx0.vit_resized_image_uint8"].numpy())
    patches = patchify(to_tensor(vit_image), 14)
    _close(patches, t["ctx0.prepare_vit_images.packed_vit_tokens"], 1e-5)
    pos = grid_position_ids(6, 7, 8)
    assert torch.equal(pos, t["ctx0.prepare_vit_images.packed_vit_position_ids"])
    assert torch.equal(grid_position_ids(5, 6, 8), t["gen_input.packed_vae_position_ids"])
    with torch.no_grad():
        features = pipe.model.vit_model(patches, pos)
        _close(features, t["ctx0.vit_output"], 1e-4)
        _close(pipe.model.connector(features), t["ctx0.connector_output"], 1e-4)


def test_understanding_matches_official(pipe):
    meta, t = _case("d_understanding")
    image = Image.open(FIXTURE / "cases" / "d_understanding" / "input_image.png")
    trace: dict = {}
    answer = pipe.understand(image, "what color is it?", max_new_tokens=7, trace=trace)
    assert answer == meta["outputs"]["text"] == "*llomola yeolorpe"
    assert np.array_equal(np.asarray(trace["vit_resized_image"]), t["ctx0.vit_resized_image_uint8"].numpy())
    logits = trace["text_step_logits"][0][0]
    _close(logits, t["text0.step_logits"], 1e-4)
    assert trace["text_sequences"][0][0] == t["text0.generated_sequence"].tolist()
    cache = trace["contexts"].gen
    assert int(cache.lengths[0]) == 58 and int(cache.rope[0]) == 9
