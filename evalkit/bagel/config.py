"""BAGEL hyper-parameters, read from the official checkpoint folder.

The released folder only holds `llm_config.json` and `vit_config.json`; everything else (VAE shape,
latent/ViT position-table sizes, patch size) is hard-coded in the official loading script. We recover
those values from tensor shapes so that any checkpoint in the official layout loads without extra flags.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class LLMConfig:
    """Qwen2 decoder with the BAGEL switches (q/k RMSNorm, untied head, MoT layers) always on."""

    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    vocab_size: int = 152064
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class ViTConfig:
    """SigLIP NaViT encoder; `num_hidden_layers` is the number of layers actually kept (json value - 1)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 26
    num_attention_heads: int = 16
    patch_size: int = 14
    image_size: int = 980
    layer_norm_eps: float = 1e-6


@dataclass
class VAEConfig:
    """FLUX autoencoder. Scale/shift are the values of the official `load_ae` (0.3611 / 0.1159)."""

    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    z_channels: int = 16
    in_channels: int = 3
    out_ch: int = 3
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass
class BagelConfig:
    llm: LLMConfig = field(default_factory=LLMConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    # image transforms (max long edge, min short edge, stride) of the official inferencer
    vae_transform: tuple[int, int, int] = (1024, 512, 16)
    vit_transform: tuple[int, int, int] = (980, 224, 14)
    max_pixels: int = 14 * 14 * 9 * 1024

    @property
    def latent_channels(self) -> int:
        return self.latent_patch_size**2 * self.vae.z_channels

    @property
    def pixels_per_token(self) -> int:
        return self.latent_patch_size * self.vae.downsample

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BagelConfig:
        data = dict(data)
        return cls(
            llm=LLMConfig(**data.pop("llm")),
            vit=ViTConfig(**data.pop("vit")),
            vae=VAEConfig(**data.pop("vae")),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()},
        )


def read_llm_config(path: Path) -> LLMConfig:
    raw = json.loads(path.read_text())
    return LLMConfig(
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=raw["num_attention_heads"],
        num_key_value_heads=raw.get("num_key_value_heads", raw["num_attention_heads"]),
        vocab_size=raw["vocab_size"],
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        rope_theta=raw.get("rope_theta", 1_000_000.0),
    )


def read_vit_config(path: Path) -> ViTConfig:
    """The official loader drops the last SigLIP layer (it uses the penultimate layer's features)."""
    raw = json.loads(path.read_text())
    return ViTConfig(
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"] - 1,
        num_attention_heads=raw["num_attention_heads"],
        patch_size=raw["patch_size"],
        image_size=raw["image_size"],
        layer_norm_eps=raw.get("layer_norm_eps", 1e-6),
    )


def vae_config_from_shapes(shapes: dict[str, torch.Size]) -> VAEConfig:
    """Infer the FLUX autoencoder's width, depth and multipliers from `ae.safetensors` tensor shapes."""
    ch = shapes["encoder.conv_in.weight"][0]
    levels = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down.")})
    ch_mult = [shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] // ch for i in levels]
    num_res = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down.0.block.")})
    return VAEConfig(
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=num_res,
        z_channels=shapes["decoder.conv_in.weight"][1],
        in_channels=shapes["encoder.conv_in.weight"][1],
        out_ch=shapes["decoder.conv_out.weight"][0],
    )


def bagel_sizes_from_shapes(shapes: dict[str, torch.Size], z_channels: int) -> dict[str, int]:
    """Position-table sizes and patch size are not in any json; the tables' shapes give them."""
    latent_rows = shapes["latent_pos_embed.pos_embed"][0]
    vit_rows = shapes["vit_pos_embed.pos_embed"][0]
    patch = math.isqrt(shapes["vae2llm.weight"][1] // z_channels)
    return {
        "max_latent_size": math.isqrt(latent_rows),
        "vit_max_num_patch_per_side": math.isqrt(vit_rows),
        "latent_patch_size": patch,
    }
