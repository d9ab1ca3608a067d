"""A tiny, randomly initialised Stable Diffusion 3 pipeline for offline tests and demos.

It has the real SD3 architecture (MMDiT transformer, two CLIP text encoders, T5, an 8x-downsampling VAE with
16 latent channels, flow-matching scheduler) at toy sizes. It is saved with `save_pretrained` and loaded back
with `from_pretrained`, so tests exercise the same loading path as real weights. Its images are noise:
numbers from it are pipeline checks, never results.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from evalkit.paths import cache_dir

_WORDS = (  # noqa: SIM905 - a readable word list
    "a an the of and photo picture image with on in to left right above below "
    "red orange yellow green blue purple pink brown black white "
    "cat dog car bus bench cow horse bird person apple orange banana clock cup chair table tv "
    "two three four one colored object sitting standing next"
).split()

TINY_SD3_CONFIG = {
    "transformer": {
        "sample_size": 8,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 8,
        "num_attention_heads": 4,
        "joint_attention_dim": 32,
        "caption_projection_dim": 32,
        "pooled_projection_dim": 64,
        "pos_embed_max_size": 32,
    },
    "clip": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
        "max_position_embeddings": 77,
    },
    "t5": {"d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4},
    "vae": {"block_out_channels": [8, 8, 16, 16], "latent_channels": 16, "layers_per_block": 1},
    "scheduler_shift": 3.0,
    "seed": 0,
}


def _config_hash() -> str:
    return hashlib.sha256(json.dumps(TINY_SD3_CONFIG, sort_keys=True).encode()).hexdigest()[:12]


def default_folder() -> Path:
    return cache_dir() / f"tiny-sd3-{_config_hash()}"


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    chars = sorted({c for w in _WORDS for c in w})
    vocab_list = specials + chars + [c + "</w>" for c in chars] + [w + "</w>" for w in _WORDS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token="<|endoftext|>")


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in _WORDS]
    chars = sorted({c for w in _WORDS for c in w})
    pieces += [(c, -5.0) for c in chars] + [("\u2581", -3.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_tiny_sd3(folder: Path) -> None:
    """Build the tiny pipeline from configs with random weights and save it to `folder`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    cfg = TINY_SD3_CONFIG
    torch.manual_seed(cfg["seed"])
    clip_tok = _clip_tokenizer()
    t5_tok = _t5_tokenizer()
    clip_cfg = CLIPTextConfig(
        vocab_size=len(clip_tok),
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
        **cfg["clip"],
    )
    vae_cfg = cfg["vae"]
    n_blocks = len(vae_cfg["block_out_channels"])
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**cfg["transformer"]),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=cfg["scheduler_shift"]),
        vae=AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * n_blocks,
            up_block_types=["UpDecoderBlock2D"] * n_blocks,
            block_out_channels=vae_cfg["block_out_channels"],
            latent_channels=vae_cfg["latent_channels"],
            layers_per_block=vae_cfg["layers_per_block"],
            norm_num_groups=4,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
        text_encoder=CLIPTextModelWithProjection(clip_cfg),
        tokenizer=clip_tok,
        text_encoder_2=CLIPTextModelWithProjection(clip_cfg),
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=len(t5_tok), **cfg["t5"])),
        tokenizer_3=t5_tok,
    )
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    pipe.save_pretrained(tmp)
    os.replace(tmp, folder)


def tiny_sd3_pipeline(folder: Path | None = None, **from_pretrained_kwargs):
    """Load the tiny pipeline through `from_pretrained`, building and saving it first if needed."""
    from diffusers import StableDiffusion3Pipeline

    folder = Path(folder) if folder else default_folder()
    if not (folder / "model_index.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_sd3(folder)
    return StableDiffusion3Pipeline.from_pretrained(folder, **from_pretrained_kwargs)
