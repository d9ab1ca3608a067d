"""A local transformers VLM judge (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and other image-text-to-text models).

VQA-style benchmarks ask many yes/no questions about one image. The image and the chat text before the
question (system turn, vision tokens) are the same for all of them, so the judge runs that prefix once,
keeps its KV cache, and runs all questions as one right-padded batch on top of a copy of it. Right padding
needs no attention mask (causal attention never looks ahead), and without a mask the Qwen models place
the new tokens after the cached prefix with their stored M-RoPE offset (`rope_deltas`). P(yes) is read
from the next-token distribution: P(yes) / (P(yes) + P(no)), each summed over the Yes/No token spellings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.judges.base import (
    CachedJudge,
    JudgeFailure,
    YesNoAnswer,
    p_yes_from_logprobs,
    yes_no_of_token,
)
from evalkit.judges.cache import ReplyCache, cache_key, open_cache
from evalkit.judges.messages import (
    layout_key,
    split_images,
    user_message,
    with_system,
)

logger = logging.getLogger(__name__)

_QUESTION_MARKER = "<<evalkit-question-0d5c>>"


@dataclass
class TokenLogprob:
    """One generated token with its log-probability and the most likely alternatives (OpenAI layout)."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_tokens reached)
    tokens: list[TokenLogprob]
    prompt_tokens: int


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Ids of every single-token spelling of yes/no (yes, Yes, YES, with and without a leading space)."""
    found: dict[str, set[int]] = {"yes": set(), "no": set()}
    for word in ("yes", "Yes", "YES", "no", "No", "NO"):
        for text in (word, " " + word):
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) == 1:
                kind = yes_no_of_token(tokenizer.decode(ids))
                if kind is not None:
                    found[kind].add(ids[0])
    return sorted(found["yes"]), sorted(found["no"])


def weights_snapshot(model, path: str | os.PathLike | None) -> str:
    """The hub commit when known; else a hash of config.json and each weight file's name, size and head.

    Hashing multi-GB weights on every start would be too slow; the first MiB of a safetensors file holds
    its header (names, shapes, offsets) and the start of the data, which tells checkpoints apart.
    """
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return str(commit)
    folder = Path(path) if path is not None else None
    if folder is None or not folder.is_dir():
        return "unknown"
    digest = hashlib.sha256()
    config_file = folder / "config.json"
    if config_file.exists():
        digest.update(config_file.read_bytes())
    for weight_file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weight_file.name}:{weight_file.stat().st_size}:".encode())
        with open(weight_file, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return "sha256:" + digest.hexdigest()[:16]


def _cache_snapshot(path: Path) -> str | None:
    """The hub commit of a folder in the Hugging Face cache (.../snapshots/<commit>), else None."""
    return path.name if path.parent.name == "snapshots" else None


class HFJudge(CachedJudge):
    """A transformers image-text-to-text model as a Judge, with prefix KV-cache reuse for yes/no questions."""

    backend = "hf"

    def __init__(
        self,
        model,
        processor,
        *,
        name: str,
        snapshot: str = "unknown",
        system_prompt: str | None = None,
        batch_size: int = 16,
        cache: ReplyCache | str | os.PathLike | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int = 0,
    ):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.name = name
        self.source = name  # from_pretrained sets the hub id or folder it loaded
        self.snapshot = snapshot
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.cache = open_cache(cache)
        self.decoding = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, "seed": seed}
        self.stats: Counter[str] = Counter()
        self._lock = threading.RLock()  # the model keeps per-call state (rope_deltas); one call at a time
        self.yes_ids, self.no_ids = yes_no_token_ids(self.tokenizer)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"{name}: the tokenizer has no single-token 'yes'/'no'; P(yes) is undefined")
        template = getattr(processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", "")
        self.template_sha256 = hashlib.sha256(str(template or "").encode()).hexdigest()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        name: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        allow_download: bool = False,
        **options: Any,
    ) -> HFJudge:
        """Load model and processor with AutoModelForImageTextToText / AutoProcessor (local folder or hub id).

        `device="auto"` spreads a large model over the visible GPUs (accelerate's device_map).
        """
        from evalkit.checkpoints import resolve_hub
        from evalkit.errors import MissingWeightsError

        # Local folder, checkpoints/<name>/ or the HF cache; a miss is one line with the fetch command,
        # found before torch loads and without a minutes-long hub retry loop.
        source = name_or_path
        local_path = resolve_hub(name_or_path, allow_download=allow_download, what="judge")

        from transformers import AutoModelForImageTextToText, AutoProcessor

        from evalkit.devices import resolve_device

        device = resolve_device(device)  # cuda:$LOCAL_RANK under torchrun, not every rank on GPU 0
        load_kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if attn_implementation:
            load_kwargs["attn_implementation"] = attn_implementation
        if device == "auto":
            load_kwargs["device_map"] = "auto"
        try:
            processor = AutoProcessor.from_pretrained(str(local_path), local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(str(local_path), **load_kwargs)
        except OSError as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise MissingWeightsError(f"cannot load judge '{source}' from {local_path}: {first}") from None
        if device != "auto":
            model = model.to(device)
        snapshot = _cache_snapshot(local_path) or weights_snapshot(model, local_path)
        judge = cls(model, processor, name=name or source, snapshot=snapshot, **options)
        judge.source = source
        return judge

    # ------------------------------------------------------------------ interface

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.name,
            "source": self.source,
            "snapshot": self.snapshot,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "chat_template_sha256": self.template_sha256,
            "system_prompt": self.system_prompt,
            "decoding": dict(self.decoding),
            "yes_tokens": [self.tokenizer.decode([i]) for i in self.yes_ids],
            "no_tokens": [self.tokenizer.decode([i]) for i in self.no_ids],
        }

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer | JudgeFailure]:
        """Per question: a cached answer, a fresh one (prefix computed once for all misses), or a failure."""
        keys, answers, missing = self._cached_yes_no(image, questions)
        if missing:
            try:
                values = self.p_yes_with_prefix_cache(image, [questions[i] for i in missing])
            except JudgeFailure as failure:
                values = [failure] * len(missing)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory, a processor that rejects input
                values = [JudgeFailure(f"local model error: {type(error).__name__}: {error}")] * len(missing)
            for index, value in zip(missing, values, strict=True):
                if isinstance(value, JudgeFailure):
                    answers[index] = value
                    self._count("failures")
                    continue
                answer = YesNoAnswer(value, "logprobs", self.snapshot)
                answers[index] = answer
                self._put_yes_no(keys[index], answer)
        return answers  # type: ignore[return-value]

    def _chat_reply(
        self, messages: list[dict[str, Any]], options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        try:
            generation = self.generate(messages, **options)
        except (RuntimeError, ValueError) as error:
            raise JudgeFailure(f"local model error: {type(error).__name__}: {error}") from error
        if not generation.text.strip():
            raise JudgeFailure("empty reply")
        return generation.text, {"finish_reason": generation.finish_reason, "snapshot": self.snapshot}

    # ------------------------------------------------------------------ P(yes)

    def p_yes_with_prefix_cache(self, image: Image.Image, questions: list[str]) -> list[float]:
        """P(yes) per question: image+prompt prefix run once, questions batched on a copy of its KV cache."""
        import torch

        if not questions:
            return []
        with self._lock, torch.inference_mode():
            head, tail, images = self._split_prompt(image)
            head_ids = self.tokenizer(head, add_special_tokens=False)["input_ids"]
            prefix_cache = None
            results: list[float | None] = [None] * len(questions)
            rows: list[tuple[int, list[int]]] = []
            for index, question in enumerate(questions):
                suffix_ids = self.tokenizer(question + tail, add_special_tokens=False)["input_ids"]
                whole_ids = self.tokenizer(head + question + tail, add_special_tokens=False)["input_ids"]
                if head_ids + suffix_ids == whole_ids:
                    rows.append((index, suffix_ids))
                else:  # the question merges with the prefix text under this tokenizer: no split possible
                    self.stats["prefix_fallbacks"] += 1
                    results[index] = self.p_yes_full_forward(image, question)
            if rows:
                inputs = self._model_inputs(head, images)
                output = self.model(**inputs, use_cache=True, logits_to_keep=1)
                prefix_cache = output.cache if hasattr(output, "cache") else output.past_key_values
                self.stats["prefix_forwards"] += 1
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                logits = self._suffix_logits(prefix_cache, [ids for _, ids in chunk])
                for (index, _), row in zip(chunk, logits, strict=True):
                    results[index] = self._p_yes(row)
            return results  # type: ignore[return-value]

    def p_yes_full_forward(self, image: Image.Image, question: str) -> float:
        """P(yes) from one plain forward over the whole prompt (the reference the prefix path must match)."""
        messages = [user_message(question, image)]
        return self._p_yes(self.next_token_logits(messages))

    def next_token_logits(self, messages: list[dict[str, Any]]):
        """Logits of the first reply token after the chat template's generation prompt (one full forward)."""
        import torch

        with self._lock, torch.inference_mode():
            stripped, images = split_images(with_system(messages, self.system_prompt))
            text = self.processor.apply_chat_template(stripped, tokenize=False, add_generation_prompt=True)
            inputs = self._model_inputs(text, images)
            self.stats["full_forwards"] += 1
            return self.model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1]

    def _split_prompt(self, image: Image.Image) -> tuple[str, str, list[Image.Image]]:
        """The rendered prompt cut at the question: (text before, text after, images)."""
        messages = with_system([user_message(_QUESTION_MARKER, image)], self.system_prompt)
        stripped, images = split_images(messages)
        text = self.processor.apply_chat_template(stripped, tokenize=False, add_generation_prompt=True)
        head, marker, tail = text.partition(_QUESTION_MARKER)
        if not marker or _QUESTION_MARKER in tail:
            raise JudgeFailure("the chat template does not keep the question text verbatim")
        return head, tail, images

    def _suffix_logits(self, prefix_cache, rows: list[list[int]]):
        """Next-token logits at each row's last real token, for right-padded rows on top of the prefix."""
        import torch

        device = self.model.device
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else rows[0][-1]
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long, device=device)
        cache = copy.deepcopy(prefix_cache)
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
        # No attention mask: padding sits after every real token, so causal attention never sees it, and
        # positions continue from the cached prefix (Qwen: arange(prefix_len, ...) + rope_deltas).
        logits = self.model(input_ids=input_ids, cache=cache, use_cache=True).logits
        self.stats["suffix_forwards"] += 1
        last = torch.tensor([len(ids) - 1 for ids in rows], device=device)
        return logits[torch.arange(len(rows), device=device), last]

    def _p_yes(self, logits) -> float:
        logprobs = logits.double().log_softmax(-1)
        value = p_yes_from_logprobs(
            {"yes": logprobs[self.yes_ids].tolist(), "no": logprobs[self.no_ids].tolist()}
        )
        if value is None:  # only if both are -inf, which a softmax over finite logits cannot give
            raise JudgeFailure("no probability mass on yes/no tokens")
        return value

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        top_logprobs: int = 0,
    ) -> Generation:
        """A greedy (temperature 0) or seeded sampled reply, with log-probs of the raw model logits."""
        import torch

        with self._lock, torch.inference_mode():
            stripped, images = split_images(with_system(messages, self.system_prompt))
            text = self.processor.apply_chat_template(stripped, tokenize=False, add_generation_prompt=True)
            inputs = self._model_inputs(text, images)
            sampling: dict[str, Any] = {"do_sample": False}
            if temperature > 0:
                torch.manual_seed(seed)
                sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                output_logits=True,
                return_dict_in_generate=True,
                **sampling,
            )
            self.stats["generations"] += 1
            prompt_length = inputs["input_ids"].shape[1]
            new_ids = output.sequences[0, prompt_length:].tolist()
            tokens = []
            for step, token_id in enumerate(new_ids):
                logprobs = output.logits[step][0].float().log_softmax(-1)
                top = []
                if top_logprobs > 0:
                    values, ids = logprobs.topk(min(top_logprobs, logprobs.shape[-1]))
                    top = [
                        (self.tokenizer.decode([i]), v)
                        for i, v in zip(ids.tolist(), values.tolist(), strict=True)
                    ]
                tokens.append(TokenLogprob(self.tokenizer.decode([token_id]), float(logprobs[token_id]), top))
        eos_ids = self.model.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
        finish_reason = "stop" if new_ids and new_ids[-1] in eos_ids else "length"
        reply = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Generation(reply, finish_reason, tokens, prompt_length)

    # ------------------------------------------------------------------ helpers

    def _model_inputs(self, text: str, images: list[Image.Image]) -> dict[str, Any]:
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        device, dtype = self.model.device, self.model.dtype
        return {
            key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
            for key, value in inputs.items()
        }

    def _key_base(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.name,
            "snapshot": self.snapshot,
            "dtype": str(self.model.dtype),  # bf16 and fp32 give slightly different P(yes)
            "template": self.template_sha256,
            "system": self.system_prompt,
        }

    def _yes_no_key(self, image_hash: str, question: str) -> str:
        prompt = hashlib.sha256(question.encode()).hexdigest()
        return cache_key(
            kind="yes_probability", **self._key_base(), prompt=prompt, images=[image_hash], **layout_key()
        )

    def __repr__(self) -> str:
        return f"HFJudge({json.dumps(self.name)}, snapshot={self.snapshot})"
