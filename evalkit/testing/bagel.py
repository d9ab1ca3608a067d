"""Tiny, randomly initialised BAGEL pipelines of the real architecture (tests and benchmarks only).

Numbers produced by these models are meaningless; they exist to exercise the real code paths.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from evalkit.bagel.autoencoder import AutoEncoder
from evalkit.bagel.config import BagelConfig, LLMConfig, VAEConfig, ViTConfig
from evalkit.bagel.model import Bagel
from evalkit.bagel.pipeline import BagelPipeline
from evalkit.bagel.tokenizer import BOS, END_OF_IMAGE, EOS, START_OF_IMAGE, BagelTokenizer

SPECIAL_TOKENS = ["<|endoftext|>", BOS, EOS, START_OF_IMAGE, END_OF_IMAGE]


def byte_tokenizer() -> BagelTokenizer:
    """A byte-level tokenizer (256 byte tokens, no merges) plus the BAGEL special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return BagelTokenizer(tok)


def tiny_config(
    hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, vocab: int = 272
) -> BagelConfig:
    """Shapes like the parity fixture (64x64 to 128x128 images, 14-px ViT patches, 16-ch latents)."""
    return BagelConfig(
        llm=LLMConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            vocab_size=vocab,
        ),
        vit=ViTConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=112
        ),
        vae=VAEConfig(ch=32, ch_mult=[1, 2, 2, 2], num_res_blocks=1),
        max_latent_size=8,
        vit_max_num_patch_per_side=8,
        vae_transform=(128, 64, 16),
        vit_transform=(112, 56, 14),
    )


def random_pipeline(cfg: BagelConfig | None = None, seed: int = 0, dtype=torch.float32, device="cpu"):
    """Random weights with non-trivial scales so that every path (incl. llm2vae) changes the output."""
    cfg = cfg or tiny_config()
    tokenizer = byte_tokenizer()
    if cfg.llm.vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {cfg.llm.vocab_size} < tokenizer size {len(tokenizer)}")
    torch.manual_seed(seed)
    model, vae = Bagel(cfg), AutoEncoder(cfg.vae)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pos_embed"):
                p.normal_(0, 0.2)
            elif p.ndim >= 2:
                p.normal_(0, 0.1 if "embed_tokens" not in name else 1.0)
            elif "norm" in name:
                p.normal_(1.0, 0.1) if name.endswith("weight") else p.normal_(0, 0.05)
            else:
                p.normal_(0, 0.05)
    return BagelPipeline(model.to(device, dtype), vae.to(device), tokenizer)


def use_transparent_decoder(pipe: BagelPipeline) -> BagelPipeline:
    """Swap the random VAE decoder for `tanh(mean over latent channels)`, upsampled to pixels.

    A random VAE decoder (GroupNorm throughout) maps every latent to nearly the same mean brightness, so
    a reward such as brightness could not tell rollouts apart; training tests use this instead.
    """
    factor = pipe.config.pixels_per_token // pipe.config.latent_patch_size

    def decode(z: torch.Tensor) -> torch.Tensor:
        gray = torch.tanh(z.float().mean(1, keepdim=True))
        return torch.nn.functional.interpolate(gray, scale_factor=factor, mode="nearest").expand(
            -1, 3, -1, -1
        )

    pipe.vae.decode = decode  # type: ignore[method-assign]
    return pipe


#: The tiny BAGEL that `tiny-bagel` trains and evaluates (hidden 32: LoRA r 4 fits it).
TINY_BAGEL_SHAPE = {"hidden": 32, "layers": 2, "heads": 2, "kv_heads": 1}
_TINY_BAGEL_VERSION = "1"


def tiny_bagel_folder(folder: Path | None = None) -> Path:
    """The tiny random BAGEL (seed 0) saved once in the official layout (float32), so that training and
    evaluation load the same base weights through the real loading code."""
    import hashlib
    import json
    import os
    import shutil
    import tempfile

    from evalkit.bagel.loading import save_pretrained
    from evalkit.paths import cache_dir

    if folder is None:
        key = json.dumps([TINY_BAGEL_SHAPE, _TINY_BAGEL_VERSION], sort_keys=True)
        folder = cache_dir() / f"tiny-bagel-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    folder = Path(folder)
    if (folder / "ema.safetensors").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-bagel-", dir=folder.parent))
    save_pretrained(random_pipeline(tiny_config(**TINY_BAGEL_SHAPE), seed=0), tmp, dtype=torch.float32)
    try:
        os.replace(tmp, folder)  # another process may have published it first: keep theirs
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
