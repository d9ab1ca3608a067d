"""Qwen2 Mixture-of-Transformers decoder: two experts per layer that share one attention.

Every token is routed by a boolean `gen_mask`: `True` tokens (noisy or clean VAE latents) use the
generation expert (`*_moe_gen` weights), all others (text, ViT tokens, image markers) the understanding
expert. Attention runs over the concatenation of a padded KV cache and the new tokens, with an explicit
boolean mask, so several prompts of different lengths run as one batch through PyTorch SDPA.
Attribute names follow the official state-dict keys (`language_model.model.layers.{L}....`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from evalkit.bagel.config import LLMConfig


class RMSNorm(nn.Module):
    """Qwen2 RMSNorm: statistics in float32, weight applied in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


@dataclass(frozen=True)
class Routing:
    """Which expert each token uses, summarised once per forward (avoids a device sync per layer)."""

    gen_mask: torch.Tensor | None  # [B, n] True = generation expert; None = all understanding
    gen_major: bool = False  # most tokens are generation tokens
    mixed: bool = False  # both experts are used

    @classmethod
    def from_mask(cls, gen_mask: torch.Tensor | None) -> Routing:
        if gen_mask is None:
            return cls(None)
        n_gen, total = int(gen_mask.sum()), gen_mask.numel()
        if n_gen == 0:
            return cls(None)
        return cls(gen_mask, gen_major=2 * n_gen >= total, mixed=n_gen < total)


def route(x: torch.Tensor, routing: Routing, und: Callable, gen: Callable) -> torch.Tensor:
    """Apply `und` to understanding tokens and `gen` to generation tokens (mask over leading dims).

    The majority expert runs on the whole (padded) tensor and the minority tokens are overwritten, which
    avoids gathering the large side (a latent block has only its two marker tokens on the und side).
    """
    if routing.gen_mask is None:
        return und(x)
    if not routing.mixed:
        return gen(x)
    mask = routing.gen_mask.to(x.device)
    if routing.gen_major:
        out = gen(x)
        out[~mask] = und(x[~mask]).to(out.dtype)
        return out
    out = und(x)
    out[mask] = gen(x[mask]).to(out.dtype)
    return out


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """Standard Qwen2 rotary tables (float32 maths) for integer positions of shape [B, n]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, n, H, D]; cos/sin: [B, n, D]."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoTAttention(nn.Module):
    """Shared attention with per-expert q/k/v/o projections and per-head q/k RMSNorm."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        h, d = cfg.hidden_size, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, d
        for suffix in ("", "_moe_gen"):
            setattr(self, f"q_proj{suffix}", nn.Linear(h, self.num_heads * d, bias=True))
            setattr(self, f"k_proj{suffix}", nn.Linear(h, self.num_kv_heads * d, bias=True))
            setattr(self, f"v_proj{suffix}", nn.Linear(h, self.num_kv_heads * d, bias=True))
            setattr(self, f"o_proj{suffix}", nn.Linear(self.num_heads * d, h, bias=False))
            setattr(self, f"q_norm{suffix}", RMSNorm(d, cfg.rms_norm_eps))
            setattr(self, f"k_norm{suffix}", RMSNorm(d, cfg.rms_norm_eps))

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        routing: Routing,
        past_k: torch.Tensor,
        past_v: torch.Tensor,
        attn_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the attention output and this block's keys/values as [B, H_kv, n, D] (post norm+RoPE)."""
        b, n, _ = x.shape
        q = route(x, routing, self.q_proj, self.q_proj_moe_gen).view(b, n, self.num_heads, self.head_dim)
        k = route(x, routing, self.k_proj, self.k_proj_moe_gen).view(b, n, self.num_kv_heads, self.head_dim)
        v = route(x, routing, self.v_proj, self.v_proj_moe_gen).view(b, n, self.num_kv_heads, self.head_dim)
        q = route(q, routing, self.q_norm, self.q_norm_moe_gen)
        k = route(k, routing, self.k_norm, self.k_norm_moe_gen)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        keys = torch.cat([past_k.to(k.dtype), k], dim=2)
        values = torch.cat([past_v.to(v.dtype), v], dim=2)
        if self.num_kv_heads != self.num_heads:
            # Explicit repeat (query head h reads KV head h // group) rather than `enable_gqa`, so that CUDA
            # can use the memory-efficient kernel with our padding mask, not the O(n^2)-memory math path.
            group = self.num_heads // self.num_kv_heads
            keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return route(out, routing, self.o_proj, self.o_proj_moe_gen), k, v


class MoTDecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.self_attn = MoTAttention(cfg)
        self.mlp = MLP(h, cfg.intermediate_size)
        self.mlp_moe_gen = MLP(h, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(h, eps)
        self.input_layernorm_moe_gen = RMSNorm(h, eps)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.post_attention_layernorm_moe_gen = RMSNorm(h, eps)

    def forward(self, x, cos, sin, routing, past_k, past_v, attn_mask):
        h = route(x, routing, self.input_layernorm, self.input_layernorm_moe_gen)
        h, k, v = self.self_attn(h, cos, sin, routing, past_k, past_v, attn_mask)
        x = x + h
        h = route(x, routing, self.post_attention_layernorm, self.post_attention_layernorm_moe_gen)
        x = x + route(h, routing, self.mlp, self.mlp_moe_gen)
        return x, k, v


class MoTModel(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(MoTDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.norm_moe_gen = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # Training (AlphaGRPO): recompute each layer in backward instead of keeping its activations.
        self.gradient_checkpointing = False

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        gen_mask: torch.Tensor | None,
        past_keys: list[torch.Tensor],
        past_values: list[torch.Tensor],
        attn_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """x: [B, n, hidden]; positions: [B, n]; attn_mask: [B, 1, n, past + n] (True = attend).

        Returns the final-normed hidden states and the new keys/values of every layer.
        """
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        routing = Routing.from_mask(gen_mask)
        new_keys, new_values = [], []
        checkpointing = self.gradient_checkpointing and torch.is_grad_enabled()
        for layer, pk, pv in zip(self.layers, past_keys, past_values, strict=True):
            if checkpointing:
                x, k, v = checkpoint(layer, x, cos, sin, routing, pk, pv, attn_mask, use_reentrant=False)
            else:
                x, k, v = layer(x, cos, sin, routing, pk, pv, attn_mask)
            new_keys.append(k)
            new_values.append(v)
        return route(x, routing, self.norm, self.norm_moe_gen), new_keys, new_values


class MoTForCausalLM(nn.Module):
    """Holds `model` and the untied `lm_head`, matching the `language_model.*` checkpoint keys."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.model = MoTModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
