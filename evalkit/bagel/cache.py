"""Padded, batched KV caches (one row per prompt or CFG branch) and attention-mask building.

A cache row may contain holes (padding between segments of different lengths). `valid` marks the real
keys, and attention masks are built from it, so a row in a batch computes the same thing as the row alone.
Caches are immutable: every update returns a new object, so a "snapshot" (BAGEL's text-dropped CFG
context) is simply a reference to an earlier cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KVCache:
    keys: tuple[torch.Tensor, ...]  # per layer [B, H_kv, C, D]
    values: tuple[torch.Tensor, ...]
    valid: torch.Tensor  # [B, C] bool
    rope: torch.Tensor  # [B] int64, next RoPE position of each row

    @classmethod
    def empty(cls, batch: int, layers: int, kv_heads: int, head_dim: int, dtype, device) -> KVCache:
        z = torch.zeros(batch, kv_heads, 0, head_dim, dtype=dtype, device=device)
        return cls(
            keys=tuple(z for _ in range(layers)),
            values=tuple(z for _ in range(layers)),
            valid=torch.zeros(batch, 0, dtype=torch.bool, device=device),
            rope=torch.zeros(batch, dtype=torch.long, device=device),
        )

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Number of real keys per row."""
        return self.valid.sum(-1)

    def extend(
        self,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        valid: torch.Tensor,
        rope_step: torch.Tensor,
    ) -> KVCache:
        """Append a block of new keys (valid: [B, n]) and advance each row's RoPE position."""
        return KVCache(
            keys=tuple(
                torch.cat([a.to(b.device), b.to(a.dtype)], dim=2)
                for a, b in zip(self.keys, keys, strict=True)
            ),
            values=tuple(
                torch.cat([a.to(b.device), b.to(a.dtype)], dim=2)
                for a, b in zip(self.values, values, strict=True)
            ),
            valid=torch.cat([self.valid, valid], dim=1),
            rope=self.rope + rope_step,
        )

    def select(self, rows: list[int]) -> KVCache:
        idx = torch.tensor(rows, device=self.valid.device)
        return KVCache(
            keys=tuple(k[idx] for k in self.keys),
            values=tuple(v[idx] for v in self.values),
            valid=self.valid[idx],
            rope=self.rope[idx],
        )

    def compact(self) -> KVCache:
        """Drop columns that are padding in every row (keeps memory bounded after ragged updates)."""
        keep = self.valid.any(0)
        if bool(keep.all()):
            return self
        return KVCache(
            keys=tuple(k[:, :, keep] for k in self.keys),
            values=tuple(v[:, :, keep] for v in self.values),
            valid=self.valid[:, keep],
            rope=self.rope,
        )

    def row(self, i: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The real keys/values of row i, as lists over layers of [H_kv, L, D] (for inspection/tests)."""
        m = self.valid[i]
        return [k[i][:, m] for k in self.keys], [v[i][:, m] for v in self.values]


def concat_caches(caches: list[KVCache]) -> KVCache:
    """Stack caches along the batch dimension, right-padding the key axis."""
    width = max(c.valid.shape[1] for c in caches)

    def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
        missing = width - t.shape[dim]
        if missing == 0:
            return t
        shape = list(t.shape)
        shape[dim] = missing
        return torch.cat([t, t.new_zeros(shape)], dim=dim)

    layers = len(caches[0].keys)
    return KVCache(
        keys=tuple(torch.cat([pad(c.keys[i], 2) for c in caches]) for i in range(layers)),
        values=tuple(torch.cat([pad(c.values[i], 2) for c in caches]) for i in range(layers)),
        valid=torch.cat([pad(c.valid, 1) for c in caches]),
        rope=torch.cat([c.rope for c in caches]),
    )


def attention_mask(cache_valid: torch.Tensor, query_valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """[B, 1, n, C + n] boolean mask for a block of n new tokens on top of the cache.

    Cached keys are visible when real. New keys are visible when real and, for causal text, not in the
    future (flash-attn's bottom-right alignment against the cache). Padded query rows see everything so
    that their (discarded) outputs stay finite.
    """
    b, n = query_valid.shape
    new = query_valid[:, None, :].expand(b, n, n)
    if causal:
        new = new & torch.ones(n, n, dtype=torch.bool, device=new.device).tril()
    mask = torch.cat([cache_valid[:, None, :].expand(b, n, cache_valid.shape[1]), new], dim=2)
    mask = mask | ~query_valid[:, :, None]
    return mask[:, None]
