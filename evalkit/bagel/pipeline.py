"""BAGEL inference with the official semantics, batched over prompts.

Three KV contexts are kept per prompt, as in the official interleaved inferencer:

* `gen`: everything (think system prompt, input image, prompt, think text);
* `cfg_text`: `gen` as it was just before the last text input (or just after the last image), which
  drops the prompt for text CFG;
* `cfg_img`: the text inputs only (no images), for image CFG.

The noisy latent block is never cached; each Euler step runs every active CFG branch of every prompt in
one batched decoder call. Rows never see each other (explicit masks), so a batch gives the results of
one-at-a-time calls up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from evalkit.bagel.autoencoder import AutoEncoder
from evalkit.bagel.cache import KVCache, concat_caches
from evalkit.bagel.config import BagelConfig
from evalkit.bagel.flow import cfg_active, combine_cfg, shifted_timesteps
from evalkit.bagel.model import Bagel
from evalkit.bagel.siglip import patchify
from evalkit.bagel.tokenizer import BagelTokenizer
from evalkit.bagel.transforms import float_pixels, resize, to_pil, to_rgb, to_tensor

GEN_THINK_SYSTEM_PROMPT = (
    "You should first think about the planning process in the mind and then generate the image. \n"
    "The planning process is enclosed within <think> </think> tags, i.e. <think> planning process here "
    "</think> image here"
)
VLM_THINK_SYSTEM_PROMPT = (
    "You should first think about the reasoning process in the mind and then provide the user with the "
    "answer. \nThe reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning "
    "process here </think> answer here"
)


@dataclass
class BagelOutput:
    """A generated image and, in think mode, the plan text that conditioned it."""

    image: Image.Image
    think: str | None = None


@dataclass
class _Contexts:
    gen: KVCache
    cfg_text: KVCache
    cfg_img: KVCache


def unpatchify(packed: torch.Tensor, rows: int, cols: int, patch: int) -> torch.Tensor:
    """[N, p*p*c] packed tokens -> [c, rows*p, cols*p] latent."""
    c = packed.shape[1] // (patch * patch)
    x = packed.reshape(rows, cols, patch, patch, c).permute(4, 0, 2, 1, 3)
    return x.reshape(c, rows * patch, cols * patch)


class BagelPipeline:
    """What `evalkit.bagel.load` returns: the network, the autoencoder, the tokenizer and the samplers."""

    def __init__(self, model: Bagel, vae: AutoEncoder, tokenizer: BagelTokenizer) -> None:
        self.model, self.vae, self.tokenizer = model.eval(), vae.eval(), tokenizer
        self.config: BagelConfig = model.config

    # ------------------------------------------------------------------ context building

    def _text_block(self, text: str) -> torch.Tensor:
        return self.model.embed_ids(torch.tensor(self.tokenizer.segment(text)))

    def _add_text(self, cache: KVCache, texts: list[str]) -> KVCache:
        cache, _ = self.model.update_cache(cache, [self._text_block(t) for t in texts], causal=True)
        return cache

    def _vae_latent(self, image: Image.Image, eps: torch.Tensor | None, generator, trace) -> torch.Tensor:
        pixels = to_tensor(image)[None].to(self.model.device)
        z = self.vae.encode(pixels, eps=eps, generator=generator)[0].float()
        packed = patchify(z, self.config.latent_patch_size)
        if trace is not None:
            trace.update({"vae_input": pixels, "vae_latent": z, "vae_packed_latent_tokens": packed})
        return packed

    def _add_vae_images(self, cache, images, eps_list, generators, trace) -> KVCache:
        """Clean latents of the input images through the generation expert at t = 0."""
        blocks, masks = [], []
        tok = self.tokenizer
        for image, eps, gen in zip(images, eps_list, generators, strict=True):
            packed = self._vae_latent(image, eps, gen, trace)
            rows = image.height // self.config.pixels_per_token
            cols = image.width // self.config.pixels_per_token
            tokens = self.model.latent_tokens(packed, torch.zeros(()), rows, cols)
            blocks.append(self.model.image_block(tokens, tok.start_of_image, tok.end_of_image))
            masks.append(self._latent_mask(packed.shape[0]))
        cache, _ = self.model.update_cache(cache, blocks, causal=False, gen_masks=masks)
        return cache

    def _add_vit_images(self, cache: KVCache, images: list[Image.Image], trace) -> KVCache:
        """Understanding tokens: the image is resized again by the ViT transform."""
        blocks = []
        tok = self.tokenizer
        for image in images:
            vit_image = resize(image, self.config.vit_transform, self.config.max_pixels)
            tokens = self.model.vit_tokens(to_tensor(vit_image))
            if trace is not None:
                trace["vit_resized_image"] = vit_image
                trace["vit_tokens_with_pos"] = tokens
            blocks.append(self.model.image_block(tokens, tok.start_of_image, tok.end_of_image))
        cache, _ = self.model.update_cache(cache, blocks, causal=False)
        return cache

    def _latent_mask(self, n: int) -> torch.Tensor:
        mask = torch.ones(n + 2, dtype=torch.bool, device=self.model.device)
        mask[0] = mask[-1] = False
        return mask

    def _vae_resize(self, image: Image.Image) -> Image.Image:
        return resize(to_rgb(image), self.config.vae_transform, self.config.max_pixels)

    # ------------------------------------------------------------------ text decoding

    @torch.no_grad()
    def _generate_text(
        self,
        cache: KVCache,
        max_length: int,
        *,
        do_sample: bool = False,
        temperature: float = 0.3,
        generators: list[torch.Generator | None] | None = None,
        trace: dict | None = None,
    ) -> list[str]:
        """Decode from `<|im_start|>` for every row; `max_length` counts the start token like the official."""
        tok = self.tokenizer
        batch = cache.batch_size
        current = torch.full((batch,), tok.bos, dtype=torch.long)
        sequences: list[list[int]] = [[] for _ in range(batch)]
        done = [False] * batch
        logits_rows = []
        for _ in range(max_length):
            for i in range(batch):
                if not done[i]:
                    sequences[i].append(int(current[i]))
            blocks = [self.model.embed_ids(current[i : i + 1]) for i in range(batch)]
            cache, hidden = self.model.update_cache(cache, blocks, causal=True)
            logits = self.model.language_model.lm_head(hidden[:, 0]).float()
            logits_rows.append(logits)
            if do_sample:
                probs = torch.softmax(logits / temperature, dim=-1).cpu()
                gens = generators or [None] * batch
                current = torch.stack(
                    [torch.multinomial(probs[i], 1, generator=gens[i])[0] for i in range(batch)]
                )
            else:
                current = logits.argmax(-1).cpu()
            for i in range(batch):
                done[i] = done[i] or int(current[i]) == tok.eos
            if all(done):
                break
        if trace is not None:
            trace.setdefault("text_step_logits", []).append(torch.stack(logits_rows, dim=1))
            trace.setdefault("text_sequences", []).append(sequences)
        return [tok.split_generated(seq) for seq in sequences]

    # ------------------------------------------------------------------ image generation

    @torch.no_grad()
    def generate_images(
        self,
        prompts: list[str],
        *,
        height: int = 1024,
        width: int = 1024,
        num_timesteps: int = 50,
        timestep_shift: float = 3.0,
        cfg_text_scale: float = 4.0,
        cfg_img_scale: float = 1.0,
        cfg_interval: tuple[float, float] = (0.4, 1.0),
        cfg_renorm_type: str = "global",
        cfg_renorm_min: float = 0.0,
        think: bool = False,
        max_think_tokens: int = 1000,
        think_do_sample: bool = False,
        think_temperature: float = 0.3,
        input_images: list[Image.Image] | None = None,
        noises: list[torch.Tensor | None] | None = None,
        posterior_noises: list[torch.Tensor | None] | None = None,
        seeds: list[int | None] | None = None,
        trace: dict | None = None,
    ) -> list[BagelOutput]:
        """Generate (or edit) one image per prompt, all in one batch.

        With `input_images`, every prompt edits its image and the output has the image's (resized) size.
        `max_think_tokens` counts generated tokens (the official `max_think_token_n` is this + 1).
        Randomness per row comes from `noises` / `posterior_noises` if given, else from
        `torch.Generator().manual_seed(seed)` (posterior noise first, then the initial latent noise).
        """
        batch = len(prompts)
        seeds = seeds or [None] * batch
        generators = [torch.Generator().manual_seed(s) if s is not None else None for s in seeds]
        if input_images is None:
            self._check_size(height, width)
        ctx, sizes = self._contexts(prompts, think, input_images, posterior_noises, generators, trace)
        sizes = sizes or [(height, width)] * batch
        thoughts: list[str | None] = [None] * batch
        if think:
            thoughts = self._generate_text(
                ctx.gen,
                max_think_tokens + 1,
                do_sample=think_do_sample,
                temperature=think_temperature,
                generators=generators,
                trace=trace,
            )
            ctx.gen = self._add_text(ctx.gen, thoughts)
        if trace is not None:
            trace["contexts"] = ctx
        grid = [(h // self.config.pixels_per_token, w // self.config.pixels_per_token) for h, w in sizes]
        x = []
        for i, (rows, cols) in enumerate(grid):
            given = noises[i] if noises is not None else None
            shape = (rows * cols, self.config.latent_channels)
            if given is None:
                given = torch.randn(shape, generator=generators[i])
            elif tuple(given.shape) != shape:
                raise ValueError(
                    f"noise must be packed latent tokens of shape {shape}, got {tuple(given.shape)}"
                )
            x.append(given.float().to(self.model.device))
        settings = dict(
            text_scale=cfg_text_scale,
            img_scale=cfg_img_scale,
            renorm_type=cfg_renorm_type,
            renorm_min=cfg_renorm_min,
        )
        latents = self._denoise(
            ctx, grid, x, num_timesteps, timestep_shift, tuple(cfg_interval), settings, trace
        )
        decoded = self._decode(latents, grid)
        if trace is not None:
            trace["decode_latent"] = unpatchify(latents[0], *grid[0], self.config.latent_patch_size)
            trace.update({"decode_output": decoded[0], "float_pixels": float_pixels(decoded[0])})
        outputs = [BagelOutput(image=to_pil(d), think=t) for d, t in zip(decoded, thoughts, strict=True)]
        return outputs

    def _contexts(self, prompts, think, input_images, posterior_noises, generators, trace):
        """The three KV contexts up to the prompt, and the (resized) input images' sizes (None for T2I).
        Input images draw their VAE posterior noise from `generators` first."""
        batch = len(prompts)
        cache = self.model.new_cache(batch)
        ctx = _Contexts(cache, cache, cache)
        if think:
            ctx.gen = self._add_text(ctx.gen, [GEN_THINK_SYSTEM_PROMPT] * batch)
            ctx.cfg_img = self._add_text(ctx.cfg_img, [GEN_THINK_SYSTEM_PROMPT] * batch)
        sizes = None
        if input_images is not None:
            images = [self._vae_resize(im) for im in input_images]
            eps = posterior_noises or [None] * batch
            ctx.gen = self._add_vae_images(ctx.gen, images, eps, generators, trace)
            ctx.gen = self._add_vit_images(ctx.gen, images, trace)
            sizes = [(im.height, im.width) for im in images]
            if trace is not None:
                trace["vae_resized_image"] = images[0]
        ctx.cfg_text = ctx.gen
        ctx.gen = self._add_text(ctx.gen, prompts)
        ctx.cfg_img = self._add_text(ctx.cfg_img, prompts)
        return ctx, sizes

    @torch.no_grad()
    def reflect_and_answer(
        self,
        instruction: str,
        image: Image.Image,
        question: str,
        *,
        seed: int | None = None,
        max_think_tokens: int = 1000,
        think_do_sample: bool = False,
        think_temperature: float = 0.3,
        max_answer_tokens: int = 16,
        **_: object,
    ) -> tuple[str, str]:
        """The think text that `generate_image(instruction, input_image=image, think=True, seed=seed)`
        writes before drawing (same context, same random draws), then the greedy answer to `question`
        asked after it. SRR's self gate: the reflection that would drive the redraw decides on it."""
        generators = [torch.Generator().manual_seed(seed) if seed is not None else None]
        ctx, _sizes = self._contexts([instruction], True, [image], None, generators, None)
        (thought,) = self._generate_text(
            ctx.gen,
            max_think_tokens + 1,
            do_sample=think_do_sample,
            temperature=think_temperature,
            generators=generators,
        )
        cache = self._add_text(self._add_text(ctx.gen, [thought]), [question])
        (answer,) = self._generate_text(cache, max_answer_tokens + 1)
        return thought, answer

    def _check_size(self, height: int, width: int) -> None:
        step, limit = self.config.pixels_per_token, self.config.max_latent_size * self.config.pixels_per_token
        if height % step or width % step or not (step <= height <= limit and step <= width <= limit):
            raise ValueError(
                f"image size {height}x{width} must be multiples of {step} between {step} and {limit}"
            )

    def _decode(self, latents: list[torch.Tensor], grid: list[tuple[int, int]]) -> list[torch.Tensor]:
        """VAE-decode packed latents: one decoder call per distinct size on GPU, per image on CPU.

        (Batched convolutions are slower than one image at a time on CPU, and faster on GPU.)
        """
        decoded: list[torch.Tensor | None] = [None] * len(latents)
        per_image = self.model.device.type == "cpu"
        groups = (
            [[i] for i in range(len(grid))]
            if per_image
            else [[i for i, g in enumerate(grid) if g == shape] for shape in dict.fromkeys(grid)]
        )
        for rows in groups:
            shape = grid[rows[0]]
            z = torch.stack([unpatchify(latents[i], *shape, self.config.latent_patch_size) for i in rows])
            images = self.vae.decode(z.to(self.model.device))
            for i, image in zip(rows, images, strict=True):
                decoded[i] = image
        return decoded  # type: ignore[return-value]

    def _velocities(self, cache: KVCache, branches: int, x: list[torch.Tensor], t: torch.Tensor, grid):
        """One decoder call for all prompts x CFG branches; returns v[prompt][branch] as float32 [N, C]."""
        blocks, masks = [], []
        for latent, (rows, cols) in zip(x, grid, strict=True):
            tokens = self.model.latent_tokens(latent, t, rows, cols)
            blocks.append(
                self.model.image_block(tokens, self.tokenizer.start_of_image, self.tokenizer.end_of_image)
            )
            masks.append(self._latent_mask(rows * cols))
        hidden, _, _, _ = self.model.forward_block(
            cache, blocks * branches, causal=False, gen_masks=masks * branches
        )
        out = []
        for j, (rows, cols) in enumerate(grid):
            rows_of_j = [j + b * len(x) for b in range(branches)]
            out.append([self.model.llm2vae(hidden[r, 1 : 1 + rows * cols]).float() for r in rows_of_j])
        return out

    def _denoise(self, ctx, grid, x, num_timesteps, shift, interval, cfg, trace) -> list[torch.Tensor]:
        """Euler steps over the shifted grid; the last grid point (t = 0) is never evaluated.

        Branch order in the batched cache: gen, then cfg_text (if text scale > 1), then cfg_img (if image
        scale > 1). Outside the CFG interval only the gen branch runs.
        """
        timesteps = shifted_timesteps(num_timesteps, shift)
        dts = timesteps[:-1] - timesteps[1:]
        use_text, use_img = cfg["text_scale"] > 1.0, cfg["img_scale"] > 1.0
        branches = [ctx.gen] + ([ctx.cfg_text] if use_text else []) + ([ctx.cfg_img] if use_img else [])
        all_branches = concat_caches(branches) if len(branches) > 1 else ctx.gen
        if trace is not None:
            trace.update({"timesteps": timesteps, "dts": dts})
            trace.update({k: [] for k in ("x_t", "v_cond", "v_cfg", "v_uncond_text", "v_uncond_img")})
        for i, t in enumerate(timesteps[:-1]):
            guided = cfg_active(t, interval) and len(branches) > 1
            cache, n = (all_branches, len(branches)) if guided else (ctx.gen, 1)
            velocities = self._velocities(cache, n, x, t, grid)
            new_x = []
            for j, v in enumerate(velocities):
                v_text = v[1] if guided and use_text else None
                v_img = v[-1] if guided and use_img else None
                scales = (cfg["text_scale"], cfg["img_scale"]) if guided else (1.0, 1.0)
                v_cfg = combine_cfg(
                    v[0],
                    v_text,
                    v_img,
                    text_scale=scales[0],
                    img_scale=scales[1],
                    renorm_type=cfg["renorm_type"],
                    renorm_min=cfg["renorm_min"],
                )
                if trace is not None and j == 0:
                    step = {
                        "x_t": x[0],
                        "v_cond": v[0],
                        "v_cfg": v_cfg,
                        "v_uncond_text": v_text,
                        "v_uncond_img": v_img,
                    }
                    for key, value in step.items():
                        trace[key].append(value)
                new_x.append(x[j] - v_cfg * dts[i].to(x[j].device))
            x = new_x
        if trace is not None:
            trace["x_t"].append(x[0])
        return x

    def generate_image(
        self,
        prompt: str,
        *,
        input_image=None,
        noise=None,
        posterior_noise=None,
        seed=None,
        trace: dict | None = None,
        **settings,
    ) -> BagelOutput:
        """One prompt; see `generate_images` for the settings. Returns `.image` and `.think`."""
        return self.generate_images(
            [prompt],
            input_images=[input_image] if input_image is not None else None,
            noises=[noise],
            posterior_noises=[posterior_noise],
            seeds=[seed],
            trace=trace,
            **settings,
        )[0]

    # ------------------------------------------------------------------ understanding

    @torch.no_grad()
    def understand_batch(
        self,
        images: list[Image.Image],
        questions: list[str],
        *,
        max_new_tokens: int = 512,
        think: bool = False,
        do_sample: bool = False,
        temperature: float = 0.3,
        seeds: list[int | None] | None = None,
        trace: dict | None = None,
    ) -> list[str]:
        """Answer a question about each image (ViT tokens only, after the VAE-then-ViT resize)."""
        batch = len(images)
        cache = self.model.new_cache(batch)
        if think:
            cache = self._add_text(cache, [VLM_THINK_SYSTEM_PROMPT] * batch)
        cache = self._add_vit_images(cache, [self._vae_resize(im) for im in images], trace)
        cache = self._add_text(cache, questions)
        if trace is not None:
            trace["contexts"] = _Contexts(cache, cache, cache)
        gens = [
            torch.Generator().manual_seed(s) if s is not None else None for s in (seeds or [None] * batch)
        ]
        return self._generate_text(
            cache,
            max_new_tokens + 1,
            do_sample=do_sample,
            temperature=temperature,
            generators=gens,
            trace=trace,
        )

    def understand(self, image: Image.Image, question: str, max_new_tokens: int = 512, **options) -> str:
        return self.understand_batch([image], [question], max_new_tokens=max_new_tokens, **options)[0]
