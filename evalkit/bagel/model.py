"""The BAGEL network: MoT language model, SigLIP + connector, latent heads, and the batched LLM step.

Parameter names equal the keys of the official `ema.safetensors`, so loading is a plain
`load_state_dict`. This module knows how to embed each kind of block (text, ViT image, VAE latents) and
how to push one block per batch row through the decoder on top of a `KVCache`; the sampling logic
lives in `pipeline.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from evalkit.bagel.cache import KVCache, attention_mask
from evalkit.bagel.config import BagelConfig
from evalkit.bagel.qwen2_mot import MoTForCausalLM
from evalkit.bagel.siglip import SiglipVisionModel, grid_position_ids, patchify


class PositionTable(nn.Module):
    """A fixed 2-D sin-cos table stored in the checkpoint (loaded, never recomputed)."""

    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(rows, dim), requires_grad=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[position_ids]


class TimestepEmbedder(nn.Module):
    """256-d sinusoid of t in [0, 1] (cos half first, max period 1e4) followed by an MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class Connector(nn.Module):
    def __init__(self, vit_hidden: int, llm_hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vit_hidden, llm_hidden)
        self.fc2 = nn.Linear(llm_hidden, llm_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def pad_rows(rows: list[torch.Tensor], fill: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of [n_i, ...] tensors to [B, n_max, ...] and return the validity mask."""
    n = max(r.shape[0] for r in rows)
    out = rows[0].new_full((len(rows), n, *rows[0].shape[1:]), fill)
    valid = torch.zeros(len(rows), n, dtype=torch.bool, device=rows[0].device)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        valid[i, : r.shape[0]] = True
    return out, valid


class Bagel(nn.Module):
    def __init__(self, cfg: BagelConfig) -> None:
        super().__init__()
        self.config = cfg
        h = cfg.llm.hidden_size
        self.language_model = MoTForCausalLM(cfg.llm)
        self.vit_model = SiglipVisionModel(cfg.vit)
        self.connector = Connector(cfg.vit.hidden_size, h)
        self.vit_pos_embed = PositionTable(cfg.vit_max_num_patch_per_side**2, h)
        self.time_embedder = TimestepEmbedder(h)
        self.vae2llm = nn.Linear(cfg.latent_channels, h)
        self.llm2vae = nn.Linear(h, cfg.latent_channels)
        self.latent_pos_embed = PositionTable(cfg.max_latent_size**2, h)

    # ---------------------------------------------------------------- embeddings of one block per row

    @property
    def device(self) -> torch.device:
        return self.vae2llm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae2llm.weight.dtype

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.model.embed_tokens(ids.to(self.device))

    def vit_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """Image [3, H, W] in [-1, 1], sides multiples of the patch size -> connector tokens [n, hidden]."""
        p = self.config.vit.patch_size
        rows, cols = image.shape[1] // p, image.shape[2] // p
        pos = grid_position_ids(rows, cols, self.config.vit_max_num_patch_per_side, self.device)
        features = self.vit_model(patchify(image.to(self.device, self.dtype), p), pos)
        return self.connector(features) + self.vit_pos_embed(pos)

    def latent_tokens(self, packed: torch.Tensor, t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Packed 2x2 latent patches [N, C] at flow time t (scalar tensor) -> LLM inputs [N, hidden]."""
        pos = grid_position_ids(rows, cols, self.config.max_latent_size, self.device)
        time = self.time_embedder(t.reshape(1).to(self.device))
        return self.vae2llm(packed.to(self.device, self.dtype)) + time + self.latent_pos_embed(pos)

    def image_block(self, tokens: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
        """Wrap image tokens in the vision start/end markers."""
        markers = self.embed_ids(torch.tensor([start_id, end_id], device=self.device))
        return torch.cat([markers[:1], tokens.to(markers.dtype), markers[1:]], dim=0)

    # ---------------------------------------------------------------- the batched decoder step

    def forward_block(
        self,
        cache: KVCache,
        blocks: list[torch.Tensor],
        *,
        causal: bool,
        gen_masks: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run one block of new tokens per cache row.

        Text blocks take consecutive RoPE positions from the row's position; an image block (`causal=False`)
        shares a single position. Returns final-normed hidden states [B, n, hidden], the block's validity
        mask [B, n], and the per-layer new keys/values.
        """
        x, valid = pad_rows(blocks)
        n = x.shape[1]
        rope = cache.rope.to(self.device)[:, None]
        positions = rope + torch.arange(n, device=self.device)[None] if causal else rope.expand(-1, n)
        gen_mask = pad_rows(gen_masks)[0].bool() if gen_masks is not None else None
        mask = attention_mask(cache.valid.to(self.device), valid, causal)
        hidden, keys, values = self.language_model.model(
            x, positions, gen_mask, list(cache.keys), list(cache.values), mask
        )
        return hidden, valid, keys, values

    def update_cache(
        self, cache: KVCache, blocks: list[torch.Tensor], *, causal: bool, gen_masks=None
    ) -> tuple[KVCache, torch.Tensor]:
        """Append blocks to the cache; RoPE advances by the block length (text) or by 1 (image)."""
        hidden, valid, keys, values = self.forward_block(cache, blocks, causal=causal, gen_masks=gen_masks)
        step = valid.sum(-1) if causal else torch.ones_like(cache.rope)
        return cache.extend(keys, values, valid, step.to(cache.rope.device)), hidden

    def new_cache(self, batch: int) -> KVCache:
        c = self.config.llm
        return KVCache.empty(
            batch, c.num_hidden_layers, c.num_key_value_heads, c.head_dim, self.dtype, self.device
        )
