"""SigLIP NaViT understanding encoder (native aspect ratio, one image at a time).

The patch embedding is a Linear over flattened 14x14x3 patches (the official checkpoint stores the conv
kernel already converted to that layout), and the learned position table is indexed by
`row * max_patches_per_side + col`, so any aspect ratio up to the table size works without interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.bagel.config import ViTConfig


def patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """[3, H, W] -> [(H/p)*(W/p), p*p*3], each patch flattened in (row, col, channel) order."""
    c, h, w = image.shape
    x = image.reshape(c, h // patch, patch, w // patch, patch)
    return x.permute(1, 3, 2, 4, 0).reshape((h // patch) * (w // patch), patch * patch * c)


def grid_position_ids(rows: int, cols: int, max_per_side: int, device=None) -> torch.Tensor:
    """Flattened 2-D positions `r * max_per_side + c` used by both the ViT and the latent tables."""
    r = torch.arange(rows, device=device)[:, None]
    c = torch.arange(cols, device=device)[None, :]
    return (r * max_per_side + c).flatten()


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(3 * cfg.patch_size**2, cfg.hidden_size)
        self.position_embedding = nn.Embedding((cfg.image_size // cfg.patch_size) ** 2, cfg.hidden_size)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.patch_embedding(patches) + self.position_embedding(position_ids)


class SiglipAttention(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        h = cfg.hidden_size
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h = x.shape
        d = h // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, self.num_heads, d).transpose(0, 1)

        out = F.scaled_dot_product_attention(
            heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        )
        return self.out_proj(out.transpose(0, 1).reshape(n, h))


class SiglipMLP(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipLayer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = SiglipAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SiglipLayer(cfg) for _ in range(cfg.num_hidden_layers))


class SiglipVisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = SiglipEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """patches: [n, 3*p*p] of one image; full attention over its n tokens."""
        x = self.embeddings(patches, position_ids)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class SiglipVisionModel(nn.Module):
    """Wrapper so parameter names read `vit_model.vision_model.*` like the official checkpoint."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vision_model = SiglipVisionTransformer(cfg)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.vision_model(patches, position_ids)
