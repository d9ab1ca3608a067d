"""Trainable BAGEL for AlphaGRPO: LoRA on both MoT experts and gradient-enabled forwards.

The inference pipeline (`pipeline.py`) builds the three KV contexts and runs the decoder; this module adds
what GRPO needs on top of it:

* LoRA (peft) on every `q/k/v/o_proj` and MLP `gate/up/down_proj` of both experts, r 32 / alpha 64,
  Gaussian init (official train.py), saved in the PEFT layout the `alphagrpo` generator merges;
* think-text sampling with temperature and top-p, and the think tokens' log-probs with gradients;
* the CFG velocity at a packed latent and timestep with gradients (text/image scales, renorm exactly as
  generation; CFG gating is done by the caller's sampler);
* gradient checkpointing per decoder layer and optional bf16 autocast.

Contexts are built without gradients (the official replay copies stored contexts); gradients reach the
LoRA weights through the think-text block and the noisy-latent block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from evalkit.bagel.cache import KVCache, concat_caches
from evalkit.bagel.flow import combine_cfg
from evalkit.bagel.lora import ALPHAGRPO_TARGET_MODULES
from evalkit.bagel.pipeline import GEN_THINK_SYSTEM_PROMPT, BagelPipeline
from evalkit.bagel.transforms import to_pil
from evalkit.grpo.alphagrpo.textlp import token_log_probs


@dataclass(frozen=True)
class CFGSettings:
    """Guidance of one task (official config: T2I and edit settings differ)."""

    text_scale: float = 4.0
    img_scale: float = 1.0
    interval: tuple[float, float] = (0.4, 1.0)
    renorm_type: str = "global"
    renorm_min: float = 0.0


@dataclass
class Contexts:
    """The three KV contexts of an image generation, one row per sample."""

    gen: KVCache
    cfg_text: KVCache
    cfg_img: KVCache


class TrainableBagel:
    """A BAGEL pipeline with LoRA adapters and the forwards GRPO differentiates."""

    def __init__(
        self,
        pipe: BagelPipeline,
        *,
        lora_rank: int = 32,
        lora_alpha: int = 64,
        gradient_checkpointing: bool = True,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        from peft import LoraConfig, get_peft_model

        self.pipe = pipe
        for p in pipe.model.parameters():
            p.requires_grad_(False)
        config = LoraConfig(
            r=lora_rank,
            lora_alpha=lora_alpha,
            target_modules=ALPHAGRPO_TARGET_MODULES,
            init_lora_weights="gaussian",
        )
        self.peft = get_peft_model(pipe.model, config)  # injects LoRA layers into pipe.model in place
        pipe.model.language_model.model.gradient_checkpointing = gradient_checkpointing
        self.autocast_dtype = autocast_dtype

    # ------------------------------------------------------------------ parameters and adapters

    @property
    def model(self):
        return self.pipe.model

    @property
    def device(self) -> torch.device:
        return self.pipe.model.device

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.peft.named_parameters() if p.requires_grad and "lora_" in n]

    def lora_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.peft.named_parameters() if "lora_" in n}

    def load_lora_state(self, state: dict[str, torch.Tensor]) -> None:
        """Values of `lora_state` (or, for FSDP-sharded weights, of this rank's shards)."""
        params = dict(self.peft.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                param = params[name]
                (param.to_local() if hasattr(param, "to_local") else param).copy_(value)

    def save_adapter(self, folder: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """PEFT folder (`adapter_config.json` + `adapter_model.safetensors`) that `merge_lora` loads.

        `state`: whole LoRA tensors to write instead of the parameters (FSDP: gathered from the shards).
        """
        folder = Path(folder)
        self.peft.save_pretrained(str(folder), state_dict=state)
        return folder

    @contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """The base model (KL reference), as the official KL pass does with the same PEFT model."""
        with self.peft.disable_adapter():
            yield

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ contexts (no gradients)

    @torch.no_grad()
    def t2i_contexts(self, prompts: Sequence[str], think: bool) -> Contexts:
        """gen = [system] + prompt; cfg_text = [system]; cfg_img = [system] + prompt (as generation)."""
        pipe, batch = self.pipe, len(prompts)
        cache = self.model.new_cache(batch)
        base = pipe._add_text(cache, [GEN_THINK_SYSTEM_PROMPT] * batch) if think else cache
        with_prompt = pipe._add_text(base, list(prompts))
        return Contexts(gen=with_prompt, cfg_text=base, cfg_img=with_prompt)

    @torch.no_grad()
    def edit_contexts(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        think: bool,
        generators: Sequence[torch.Generator | None] | None = None,
        posterior_noises: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[Contexts, list[tuple[int, int]]]:
        """SRR: gen = [system, image (VAE + ViT), prompt]; cfg_text = [system, image];
        cfg_img = [system, prompt]. Returns the contexts and each resized image's (height, width)."""
        pipe, batch = self.pipe, len(prompts)
        cache = self.model.new_cache(batch)
        base = pipe._add_text(cache, [GEN_THINK_SYSTEM_PROMPT] * batch) if think else cache
        resized = [pipe._vae_resize(im) for im in images]
        gens = list(generators) if generators is not None else [None] * batch
        eps = list(posterior_noises) if posterior_noises is not None else [None] * batch
        with_image = pipe._add_vae_images(base, resized, eps, gens, None)
        with_image = pipe._add_vit_images(with_image, resized, None)
        gen = pipe._add_text(with_image, list(prompts))
        cfg_img = pipe._add_text(base, list(prompts))
        return Contexts(gen=gen, cfg_text=with_image, cfg_img=cfg_img), [
            (im.height, im.width) for im in resized
        ]

    @torch.no_grad()
    def append_think(self, contexts: Contexts, texts: Sequence[str]) -> Contexts:
        """The think text joins the gen context only (CFG contexts stay as they were)."""
        return Contexts(self.pipe._add_text(contexts.gen, list(texts)), contexts.cfg_text, contexts.cfg_img)

    # ------------------------------------------------------------------ think text

    @torch.no_grad()
    def sample_think(
        self,
        cache: KVCache,
        *,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 0.8,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> list[str]:
        """Sample one think text per row from `<|im_start|>` (official: temperature 1.0, top-p 0.8)."""
        tok, batch = self.pipe.tokenizer, cache.batch_size
        current = torch.full((batch,), tok.bos, dtype=torch.long)
        sequences: list[list[int]] = [[] for _ in range(batch)]
        done = [False] * batch
        for _ in range(max_tokens + 1):
            for i in range(batch):
                if not done[i]:
                    sequences[i].append(int(current[i]))
            blocks = [self.model.embed_ids(current[i : i + 1]) for i in range(batch)]
            with self.autocast():
                cache, hidden = self.model.update_cache(cache, blocks, causal=True)
                logits = self.model.language_model.lm_head(hidden[:, 0]).float().cpu()
            current = sample_top_p(logits / temperature, top_p, generator)
            for i in range(batch):
                done[i] = done[i] or int(current[i]) == tok.eos
            if all(done):
                break
        return [tok.split_generated(seq) for seq in sequences]

    def think_log_probs(
        self, cache: KVCache, texts: Sequence[str], temperature: float = 1.0
    ) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """Per-token log-probs (packed, float32) of `[BOS] + encode(text) + [EOS]` after the context.

        Differentiable when called with gradients enabled. Returns (log-probs, scored tokens per text,
        entropies).
        """
        tok = self.pipe.tokenizer
        segments = [tok.segment(t) for t in texts]
        blocks = [self.model.embed_ids(torch.tensor(s)) for s in segments]
        with self.autocast():
            hidden, valid, _, _ = self.model.forward_block(cache, blocks, causal=True)
            rows = [hidden[i, valid[i]] for i in range(len(texts))]
            logits = self.model.language_model.lm_head(torch.cat(rows))
        ids = torch.tensor([i for s in segments for i in s], device=logits.device)
        lens = [len(s) for s in segments]
        lp, ent = token_log_probs(logits, ids, lens, temperature)
        return lp, [n - 1 for n in lens], ent

    # ------------------------------------------------------------------ image velocity

    def velocity_fn(self, contexts: Contexts, grid: Sequence[tuple[int, int]], cfg: CFGSettings):
        """A `sampling.VelocityFn` over packed latents [sum(rows*cols), C] of the samples in `grid`.

        Scales > 1 add the corresponding CFG branch, combined and renormalised as in generation; the
        caller gates the scales by the CFG interval (`sampling.cfg_scales`).
        """
        tokens = [r * c for r, c in grid]
        stacked: dict[tuple[bool, bool], tuple[KVCache, int]] = {}

        def branches(use_text: bool, use_img: bool) -> tuple[KVCache, int]:
            key = (use_text, use_img)
            if key not in stacked:
                caches = [contexts.gen]
                caches += [contexts.cfg_text] if use_text else []
                caches += [contexts.cfg_img] if use_img else []
                stacked[key] = (concat_caches(caches) if len(caches) > 1 else caches[0], len(caches))
            return stacked[key]

        def velocity(x: torch.Tensor, i: int, sigma: torch.Tensor, text_scale: float, img_scale: float):
            use_text, use_img = text_scale > 1.0, img_scale > 1.0
            cache, n = branches(use_text, use_img)
            xs = list(x.split(tokens))
            with self.autocast():
                per_sample = self.pipe._velocities(cache, n, xs, sigma, list(grid))
            out = []
            for v in per_sample:
                out.append(
                    combine_cfg(
                        v[0],
                        v[1] if use_text else None,
                        v[-1] if use_img else None,
                        text_scale=text_scale,
                        img_scale=img_scale,
                        renorm_type=cfg.renorm_type,
                        renorm_min=cfg.renorm_min,
                    )
                )
            return torch.cat(out)

        return velocity

    @torch.no_grad()
    def decode(self, packed: torch.Tensor, grid: Sequence[tuple[int, int]]) -> list[Image.Image]:
        latents = list(packed.split([r * c for r, c in grid]))
        return [to_pil(d) for d in self.pipe._decode(latents, list(grid))]

    def latent_grid(self, height: int, width: int) -> tuple[int, int]:
        self.pipe._check_size(height, width)
        ppt = self.pipe.config.pixels_per_token
        return height // ppt, width // ppt


def sample_top_p(
    logits: torch.Tensor, top_p: float, generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """Nucleus sampling per row of [B, V] (already temperature-scaled) logits.

    Keeps the smallest set of most likely tokens whose probability reaches `top_p` (the most likely token
    is always kept), then samples from the renormalised set.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator)[:, 0]
    return torch.stack(
        [torch.multinomial(p, 1, generator=g)[0] for p, g in zip(probs, generator, strict=True)]
    )
