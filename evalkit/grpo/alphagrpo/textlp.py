"""Think-text log-probs as BAGEL's `forward_cache_update_text(return_logprobs=True)` computes them.

Each text is scored as `[BOS] + ids + [EOS]`: position k scores token k+1, so BOS is never scored and EOS
always is. Log-probs use float32 `log_softmax` of the temperature-scaled logits; entropies stay in the
logits' dtype (bf16 under autocast), as in the official code. In training the decoded think text is
re-tokenised, so the scored ids are those of `encode(text)`, not the sampled ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def pack_texts(
    texts: Sequence[str], encode: Callable[[str], list[int]], bos_id: int, eos_id: int
) -> tuple[torch.Tensor, list[int]]:
    """Packed ids `[BOS] + encode(t) + [EOS]` of every text and each text's length."""
    ids: list[int] = []
    lens: list[int] = []
    for text in texts:
        seq = [bos_id, *encode(text), eos_id]
        ids.extend(seq)
        lens.append(len(seq))
    return torch.tensor(ids, dtype=torch.long), lens


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) along the last axis, in the logits' dtype."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def token_log_probs(
    logits: torch.Tensor,
    packed_ids: torch.Tensor,
    text_token_lens: Sequence[int],
    temperature: float = 1.0,
    with_entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(per-token log-probs [sum(len - 1)] float32, entropies or None) from packed logits [sum(len), V]."""
    scaled = logits / temperature
    lens = [int(n) for n in text_token_lens]
    lps, ents = [], []
    for chunk, ids in zip(scaled.split(lens), packed_ids.split(lens), strict=True):
        logp = torch.log_softmax(chunk[:-1].float(), dim=-1)
        lps.append(logp.gather(-1, ids[1:].to(logp.device).unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            ents.append(entropy_from_logits(chunk[:-1]))
    return torch.cat(lps), (torch.cat(ents) if with_entropy else None)


def logprob_lens(text_token_lens: Sequence[int]) -> list[int]:
    return [int(n) - 1 for n in text_token_lens]
