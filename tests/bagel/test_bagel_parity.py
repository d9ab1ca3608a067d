"""Parity with the official BAGEL code on the tiny checkpoint in ../shared/fixtures/bagel_tiny.

Tolerances are the ones the fixture's README suggests for float32 on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixture_paths import FIXTURES as FIXTURE_ROOT
from PIL import Image

FIXTURE = FIXTURE_ROOT / "bagel_tiny"
if not FIXTURE.is_dir():
    pytest.skip("bagel_tiny parity fixture not present", allow_module_level=True)

from safetensors.torch import load_file  # noqa: E402

from evalkit import bagel  # noqa: E402
from evalkit.bagel.siglip import grid_position_ids, patchify  # noqa: E402
from evalkit.bagel.transforms import to_tensor  # noqa: E402

CASE_NAMES = sorted(p.name for p in (FIXTURE / "cases").iterdir() if (p / "case.json").is_file())


def _kind(meta: dict) -> str:
    """What the official call did: 'understanding', 'edit' (an input image) or 't2i'."""
    call = meta["official_call"]
    if call["kwargs"].get("understanding_output"):
        return "understanding"
    return "edit" if call["image"] else "t2i"


def _of_kind(*kinds: str) -> list[str]:
    return [name for name in CASE_NAMES if _kind(_case_meta(name)) in kinds]


def _case_meta(name: str) -> dict:
    return json.loads((FIXTURE / "cases" / name / "case.json").read_text())


def _think_tokens(meta: dict) -> int:
    """The official max_think_token_n counts the <|im_start|> it generates first; evalkit counts text tokens."""
    return meta["interleave_inference_args"]["max_think_token_n"] - 1


def _generation_args(meta: dict) -> dict:
    """The official call's sampling settings, in evalkit's names."""
    kwargs = meta["official_call"]["kwargs"]
    names = (
        "cfg_text_scale",
        "cfg_img_scale",
        "timestep_shift",
        "num_timesteps",
        "cfg_renorm_min",
        "cfg_renorm_type",
    )
    args = {name: kwargs[name] for name in names}
    args["cfg_interval"] = tuple(kwargs["cfg_interval"])
    if _kind(meta) == "t2i":
        args["height"], args["width"] = kwargs["image_shapes"]
    return args


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
    llm = json.loads((FIXTURE / "checkpoint" / "llm_config.json").read_text())
    vit = json.loads((FIXTURE / "checkpoint" / "vit_config.json").read_text())
    assert (cfg.llm.hidden_size, cfg.llm.num_hidden_layers, cfg.llm.num_key_value_heads) == (
        llm["hidden_size"],
        llm["num_hidden_layers"],
        llm["num_key_value_heads"],
    )
    assert (
        cfg.vit.num_hidden_layers == vit["num_hidden_layers"] - 1
    )  # the release's loader drops the last one
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
    for name in _of_kind("t2i"):  # a prompt's segment fills the context exactly as the official update did
        meta = _case_meta(name)
        prompt = meta["official_call"]["text"]
        updates = [u for u in meta["context_updates"] if u.get("text") == prompt and u["context"] == "gen"]
        for update in updates:
            segment = tok.segment(prompt)
            assert (segment[0], segment[-1]) == (tok.bos, tok.eos)
            assert len(segment) == update["kv_lens_after"][0] - update["kv_lens_before"][0]


@pytest.mark.parametrize("name", _of_kind("t2i", "edit"))
def test_generation_matches_official(pipe, name):
    meta, t = _case(name)
    think = bool(meta["interleave_inference_args"]["think"])
    trace: dict = {}
    kwargs: dict = {}
    ctx = None
    if _kind(meta) == "edit":
        ctx = [u["idx"] for u in meta["context_updates"] if u["fn"] == "update_context_image"][0]
        kwargs = {
            "input_image": Image.open(FIXTURE / "cases" / name / "input_image.png"),
            "posterior_noise": t[f"ctx{ctx}.vae_encode.posterior_eps"],
        }
    out = pipe.generate_image(
        meta["official_call"]["text"],
        think=think,
        max_think_tokens=_think_tokens(meta),
        noise=t["initial_noise"],
        trace=trace,
        **kwargs,
        **_generation_args(meta),
    )
    if ctx is not None:
        assert np.array_equal(np.asarray(trace["vae_resized_image"]), t[f"ctx{ctx}.image_uint8"].numpy())
        assert np.array_equal(
            np.asarray(trace["vit_resized_image"]), t[f"ctx{ctx}.vit_resized_image_uint8"].numpy()
        )
        _close(trace["vae_input"], t[f"ctx{ctx}.vae_encode.input"], 1e-5)
        _close(trace["vae_latent"], t[f"ctx{ctx}.vae_encode.output_z"], 1e-5)
        _close(trace["vae_packed_latent_tokens"], t[f"ctx{ctx}.vae_packed_latent_tokens"], 1e-5)
        assert out.image.size == tuple(meta["context_updates"][ctx]["image_size_wh"])
    assert out.think == meta["outputs"]["text"]
    if think:
        assert trace["text_sequences"][0][0] == t["text0.generated_sequence"].tolist()
        logits = trace["text_step_logits"][0][0]
        _close(logits, t["text0.step_logits"], 1e-4)
        assert torch.equal(logits.argmax(-1)[:-1], t["text0.generated_token_ids"])
    _check_caches(trace, t, meta)
    _check_flow(trace, t)
    _check_image(out.image, t["decode.image_uint8"])


@pytest.mark.parametrize(
    "name", [n for n in _of_kind("t2i") if _case_meta(n)["seeds"]["noise_seed"] is not None]
)
def test_seed_draws_the_official_noise(pipe, name):
    """seed=s draws randn(N, 64) from torch.Generator().manual_seed(s), the fixture's injected noise."""
    meta, t = _case(name)
    if meta["interleave_inference_args"]["think"]:
        pytest.skip("the noise is drawn after the think text; the plain t2i cases check the draw")
    out = pipe.generate_image(
        meta["official_call"]["text"], seed=meta["seeds"]["noise_seed"], **_generation_args(meta)
    )
    _check_image(out.image, t["decode.image_uint8"])


@pytest.mark.parametrize("name", _of_kind("edit"))
def test_vit_and_connector_match_official(pipe, name):
    meta, t = _case(name)
    ctx = [u["idx"] for u in meta["context_updates"] if u["fn"] == "update_context_image"][0]
    vit_pixels = t[f"ctx{ctx}.vit_resized_image_uint8"]
    vit_image = Image.fromarray(vit_pixels.numpy())
    patch = pipe.config.vit_transform[2]
    patches = patchify(to_tensor(vit_image), patch)
    _close(patches, t[f"ctx{ctx}.prepare_vit_images.packed_vit_tokens"], 1e-5)
    rows, cols = vit_pixels.shape[0] // patch, vit_pixels.shape[1] // patch
    pos = grid_position_ids(rows, cols, pipe.config.vit_max_num_patch_per_side)
    assert torch.equal(pos, t[f"ctx{ctx}.prepare_vit_images.packed_vit_position_ids"])
    (latent_shape,) = [
        v for k, v in meta["non_tensor_inputs"].items() if k.endswith("patchified_vae_latent_shapes")
    ]
    assert torch.equal(
        grid_position_ids(*latent_shape[0], pipe.config.max_latent_size),
        t["gen_input.packed_vae_position_ids"],
    )
    with torch.no_grad():
        features = pipe.model.vit_model(patches, pos)
        _close(features, t[f"ctx{ctx}.vit_output"], 1e-4)
        _close(pipe.model.connector(features), t[f"ctx{ctx}.connector_output"], 1e-4)


@pytest.mark.parametrize("name", _of_kind("understanding"))
def test_understanding_matches_official(pipe, name):
    meta, t = _case(name)
    image = Image.open(FIXTURE / "cases" / name / "input_image.png")
    trace: dict = {}
    text = meta["official_call"]["text"]
    answer = pipe.understand(image, text, max_new_tokens=_think_tokens(meta), trace=trace)
    assert answer == meta["outputs"]["text"]
    assert np.array_equal(np.asarray(trace["vit_resized_image"]), t["ctx0.vit_resized_image_uint8"].numpy())
    logits = trace["text_step_logits"][0][0]
    _close(logits, t["text0.step_logits"], 1e-4)
    assert trace["text_sequences"][0][0] == t["text0.generated_sequence"].tolist()
    (prompt,) = [u for u in meta["context_updates"] if u.get("text") == text and u["context"] == "gen"]
    cache = trace["contexts"].gen
    assert (
        int(cache.lengths[0]) == prompt["kv_lens_after"][0] and int(cache.rope[0]) == prompt["ropes_after"][0]
    )
