"""Judges on an in-process vLLM or SGLang engine: `vllm:<model>` and `sglang:<model>`.

Labs that already run vLLM or SGLang get their batching and prefix caching inside the evalkit process:
the yes/no questions about one image go to the engine as one batch, each with the image first, so the
engine computes the image tokens once and reuses them from its prefix cache for every question. Every
conversion between evalkit's requests and the engine's inputs and outputs is a pure function in
`evalkit.judges.engine_io`; the engine classes below only call the engine. Replies are OpenAI
`chat.completion` dicts, cached by content like every other judge's, and `chat_completion(**request)`
lets the AlphaGRPO protocol (`dvreward@alphagrpo`) send its own requests (top-5 log-probs) here too.

Neither package is a dependency of evalkit: without it the spec is refused, before any model loads, with
the install command and the alternative (`evalkit judge serve` + an `openai:` judge).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PIL import Image

from evalkit.judges import engine_io
from evalkit.judges.base import (
    CachedJudge,
    JudgeFailure,
    YesNoAnswer,
)
from evalkit.judges.cache import ReplyCache, cache_key, open_cache
from evalkit.judges.messages import with_system

ENGINE_PACKAGES = {"vllm": "vllm", "sglang": "sglang"}


def require_engine(backend: str) -> None:
    """Refuse an engine judge whose package is not installed (found without importing it), and one per
    process under a launcher: every rank would load its own copy of the judge onto the same GPUs."""
    import os

    from evalkit.errors import EvalkitError

    package = ENGINE_PACKAGES[backend]
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        raise EvalkitError(
            f"{backend}: judges run one engine in each process, and this is one of {world} processes "
            f"(WORLD_SIZE): start one server with `evalkit judge serve --backend {backend} MODEL` and pass "
            "--judge openai:MODEL --judge-url URL to every rank"
        )
    if importlib.util.find_spec(package) is None:
        raise EvalkitError(
            f"{backend}: judges run the {package} engine in this process, but {package} is not installed: "
            f"`pip install {package}` (on a CUDA machine), or start a server with `evalkit judge serve "
            f"--backend {backend} MODEL` where it is installed and pass --judge openai:MODEL --judge-url URL"
        )


def folder_snapshot(path: Path) -> str:
    """The hub commit of a Hugging Face cache folder, else a hash of its config and weight file heads."""
    from evalkit.judges.hf import _cache_snapshot, weights_snapshot

    return _cache_snapshot(path) or weights_snapshot(SimpleNamespace(config=None), path)


class EngineJudge(CachedJudge):
    """A Judge over any engine with `complete(requests) -> list[chat.completion dict | JudgeFailure]`."""

    def __init__(
        self,
        engine: Any,
        *,
        name: str,
        snapshot: str = "unknown",
        system_prompt: str | None = None,
        cache: ReplyCache | str | Path | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int | None = 0,
        top_logprobs: int = 20,
        yes_no_max_tokens: int = 1,
    ):
        self.engine = engine
        self.backend = engine.backend
        self.name = self.model = name
        self.snapshot = snapshot
        self.system_prompt = system_prompt
        self.cache = open_cache(cache)
        self.decoding = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, "seed": seed}
        self.top_logprobs = top_logprobs
        self.yes_no_max_tokens = yes_no_max_tokens
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()  # one engine call at a time: the offline engines are not re-entrant

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.name,
            "snapshot": self.snapshot,
            "system_prompt": self.system_prompt,
            "decoding": dict(self.decoding),
            "top_logprobs": self.top_logprobs,
            "yes_no_max_tokens": self.yes_no_max_tokens,
            "engine": self.engine.config(),
        }

    # ------------------------------------------------------------------ yes/no

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer | JudgeFailure]:
        """Cached answers first; the rest go to the engine as one batch (image first in each)."""
        keys, answers, missing = self._cached_yes_no(image, questions)
        requests = [
            engine_io.yes_no_request(
                image,
                questions[index],
                system_prompt=self.system_prompt,
                top_logprobs=self.top_logprobs,
                max_tokens=self.yes_no_max_tokens,
            )
            for index in missing
        ]
        for index, reply in zip(missing, self._complete(requests), strict=True):
            try:
                if isinstance(reply, JudgeFailure):
                    raise reply
                answer = engine_io.yes_no_answer(reply)
            except JudgeFailure as failure:
                self._count("failures")
                answers[index] = failure
                continue
            answers[index] = answer
            self._put_yes_no(keys[index], answer)
        return answers  # type: ignore[return-value]

    # ------------------------------------------------------------------ chat

    def _chat_reply(
        self, messages: list[dict[str, Any]], options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        (reply,) = self._complete([{"messages": with_system(messages, self.system_prompt), **options}])
        if isinstance(reply, JudgeFailure):
            raise reply
        return engine_io.reply_text(reply), {"snapshot": self.snapshot}

    def chat_completion(self, **request: Any) -> dict[str, Any]:
        """One raw chat completion as JSON (OpenAI layout), for protocols that send and parse their own
        requests (`dvreward@alphagrpo`); not cached. Raises JudgeFailure."""
        request.pop("model", None)
        (reply,) = self._complete([request])
        if isinstance(reply, JudgeFailure):
            raise reply
        return reply

    # ------------------------------------------------------------------ helpers

    def _complete(self, requests: list[dict[str, Any]]) -> list[dict[str, Any] | JudgeFailure]:
        if not requests:
            return []
        with self._lock:
            self.stats["requests"] += len(requests)
            self.stats["engine_calls"] += 1
            try:
                replies = self.engine.complete(requests)
                return engine_io.each_or_failure(replies, len(requests), self.backend)
            except JudgeFailure as failure:
                return [failure] * len(requests)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory, a prompt over the context
                failure = JudgeFailure(f"{self.backend} engine error: {type(error).__name__}: {error}")
                return [failure] * len(requests)

    def _key_base(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.name,
            "snapshot": self.snapshot,
            "dtype": self.engine.config().get("dtype"),
            "system": self.system_prompt,
        }

    def _yes_no_key(self, image_hash: str, question: str) -> str:
        prompt = hashlib.sha256(question.encode()).hexdigest()
        decoding = {"top_logprobs": self.top_logprobs, "max_tokens": self.yes_no_max_tokens}
        return cache_key(
            kind="yes_probability", **self._key_base(), prompt=prompt, images=[image_hash], decoding=decoding
        )

    def __repr__(self) -> str:
        return f"EngineJudge({self.backend}:{self.name}, snapshot={self.snapshot})"


# -------------------------------------------------------------------------------------------- engines


class VLLMEngine:
    """`vllm.LLM` with prefix caching; one `LLM.chat` call per batch of requests."""

    backend = "vllm"

    def __init__(self, llm: Any, *, model: str, settings: dict[str, Any]):
        self.llm = llm
        self.model = model
        self.settings = settings
        self._tokenizer = None

    def config(self) -> dict[str, Any]:
        return dict(self.settings)

    def decode(self, token_id: int) -> str:
        if self._tokenizer is None:
            self._tokenizer = self.llm.get_tokenizer()
        return self._tokenizer.decode([token_id])

    def complete(self, requests: list[dict[str, Any]]) -> list[dict[str, Any] | JudgeFailure]:
        from vllm import SamplingParams

        conversations = [engine_io.to_vllm_messages(request["messages"]) for request in requests]
        params = [SamplingParams(**engine_io.vllm_sampling(request)) for request in requests]
        outputs = self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
        return [
            _or_failure(
                engine_io.completion_from_vllm,
                output,
                model=self.model,
                top_logprobs=engine_io.requested_top_logprobs(request),
                decode=self.decode,
            )
            for output, request in zip(
                engine_io.each_or_failure(outputs, len(requests), "vllm"), requests, strict=True
            )
        ]


class SGLangEngine:
    """`sglang.Engine` (RadixAttention prefix cache); prompts rendered with the model's chat template."""

    backend = "sglang"

    def __init__(self, engine: Any, processor: Any, *, model: str, settings: dict[str, Any]):
        self.engine = engine
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model = model
        self.settings = settings

    def config(self) -> dict[str, Any]:
        return dict(self.settings)

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def decode(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def complete(self, requests: list[dict[str, Any]]) -> list[dict[str, Any] | JudgeFailure]:
        inputs = [engine_io.sglang_inputs(request, self.render) for request in requests]
        wanted = [engine_io.requested_top_logprobs(request) for request in requests]
        outputs = self.engine.generate(
            prompt=[prompt for prompt, _ in inputs],
            image_data=[images or None for _, images in inputs] if any(i for _, i in inputs) else None,
            sampling_params=[engine_io.sglang_sampling(request) for request in requests],
            return_logprob=[k is not None for k in wanted],
            top_logprobs_num=[k or 0 for k in wanted],
        )
        if isinstance(outputs, dict):  # a single prompt comes back unwrapped
            outputs = [outputs]
        return [
            _or_failure(
                engine_io.completion_from_sglang, output, model=self.model, top_logprobs=k, decode=self.decode
            )
            for output, k in zip(
                engine_io.each_or_failure(outputs, len(requests), "sglang"), wanted, strict=True
            )
        ]


def _or_failure(
    convert: Callable[..., dict[str, Any]], output: Any, **kwargs: Any
) -> dict[str, Any] | JudgeFailure:
    try:
        return convert(output, **kwargs)
    except JudgeFailure as failure:
        return failure


# -------------------------------------------------------------------------------------------- loaders


def load_vllm_judge(
    target: str,
    *,
    allow_download: bool = False,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    dtype: str = "auto",
    max_logprobs: int = 20,
    enable_prefix_caching: bool = True,
    trust_remote_code: bool = False,
    **judge_options: Any,
) -> EngineJudge:
    """`vllm:<hub-id-or-folder>`: weights resolved like hf: judges (never downloaded implicitly)."""
    from evalkit.checkpoints import resolve_hub

    require_engine("vllm")
    _check_logprobs(judge_options, max_logprobs, "max_logprobs")
    path = resolve_hub(target, allow_download=allow_download, what="judge")
    settings = {
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "dtype": dtype,
        "max_logprobs": max_logprobs,
        "enable_prefix_caching": enable_prefix_caching,
        "trust_remote_code": trust_remote_code,
    }
    from vllm import LLM

    llm = LLM(model=str(path), seed=0, **{k: v for k, v in settings.items() if v is not None})
    engine = VLLMEngine(llm, model=target, settings=settings)
    return EngineJudge(engine, name=target, snapshot=folder_snapshot(path), **judge_options)


def load_sglang_judge(
    target: str,
    *,
    allow_download: bool = False,
    tp_size: int = 1,
    mem_fraction_static: float | None = None,
    context_length: int | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    **judge_options: Any,
) -> EngineJudge:
    """`sglang:<hub-id-or-folder>`: the processor's chat template renders prompts (as for hf: judges)."""
    from evalkit.checkpoints import resolve_hub

    require_engine("sglang")
    path = resolve_hub(target, allow_download=allow_download, what="judge")
    settings = {
        "tp_size": tp_size,
        "mem_fraction_static": mem_fraction_static,
        "context_length": context_length,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
    }
    import sglang
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        str(path), local_files_only=True, trust_remote_code=trust_remote_code
    )
    engine = sglang.Engine(
        model_path=str(path), random_seed=0, **{k: v for k, v in settings.items() if v is not None}
    )
    wrapped = SGLangEngine(engine, processor, model=target, settings=settings)
    return EngineJudge(wrapped, name=target, snapshot=folder_snapshot(path), **judge_options)


def _check_logprobs(options: dict[str, Any], limit: int, name: str) -> None:
    from evalkit.errors import EvalkitError

    wanted = int(options.get("top_logprobs", 20))
    if wanted > limit:
        raise EvalkitError(
            f"judge option top_logprobs={wanted} is above the engine's {name}={limit}; raise {name}"
        )
