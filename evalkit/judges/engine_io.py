"""Pure conversions between evalkit's judge requests and the in-process vLLM / SGLang engines.

Nothing here imports vllm, sglang or torch, so every conversion is tested on a CPU with fake engine
outputs shaped like the real ones. A request is an OpenAI chat-completions request as a dict
(`messages`, `temperature`, `top_p`, `max_tokens`, `seed`, `logprobs`, `top_logprobs`); its messages may
hold evalkit image parts ({"type": "image", "image": PIL}) or wire ones (image_url data URLs). A reply is
the OpenAI `chat.completion` JSON the HTTP judge receives, so the yes/no parser, the reply cache and the
AlphaGRPO protocol (`dvreward@alphagrpo`) read engine replies exactly as they read a server's.

Engine shapes (looked up in their sources):

* vLLM `LLM.chat(conversations, sampling_params)` -> `RequestOutput`; `.outputs[0]` has `text`,
  `token_ids`, `finish_reason` and `logprobs`: one {token_id: Logprob(logprob, rank, decoded_token)}
  mapping per generated token, holding the top-`SamplingParams.logprobs` tokens plus the sampled one.
* SGLang `Engine.generate(prompt, image_data, sampling_params, return_logprob, top_logprobs_num)` -> a dict
  with `text` and `meta_info`: `finish_reason` ({"type": "stop" | "length" | "abort", ...}),
  `output_token_logprobs` [(logprob, token_id, text | None)] and `output_top_logprobs` (one such list,
  or None, per generated token). Texts are None unless the request asked for them, so ids are decoded here.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from PIL import Image

from evalkit.judges.base import (
    JudgeFailure,
    YesNoAnswer,
    p_yes_from_logprobs,
    parse_yes_no,
    yes_no_of_token,
)
from evalkit.judges.messages import split_images

Decode = Callable[[int], str]


# ---------------------------------------------------------------------------------------------- requests


def yes_no_request(
    image: Image.Image, question: str, *, system_prompt: str | None, top_logprobs: int, max_tokens: int = 1
) -> dict[str, Any]:
    """One yes/no question: the image first, then the question, so an engine's prefix cache shares the
    image tokens across every question about the same image. Greedy: P(yes) is read, not sampled."""
    content = [{"type": "image", "image": image}, {"type": "text", "text": question}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    request: dict[str, Any] = {
        "messages": messages,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": max_tokens,
    }
    if top_logprobs > 0:
        request.update(logprobs=True, top_logprobs=top_logprobs)
    return request


def requested_top_logprobs(request: Mapping[str, Any]) -> int | None:
    """How many alternatives per token the request wants (None: no log-probs at all)."""
    if not request.get("logprobs"):
        return None
    return int(request.get("top_logprobs") or 0)


def max_new_tokens(request: Mapping[str, Any]) -> int:
    value = request.get("max_completion_tokens") or request.get("max_tokens")
    return int(value) if value is not None else 512


def to_vllm_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """evalkit messages as one `LLM.chat` conversation: PIL images become `image_pil` parts (no PNG round
    trip; vLLM hashes the pixels for its prefix cache); image_url parts and strings pass unchanged."""
    conversation = []
    for message in messages:
        content = message.get("content")
        if content is None or isinstance(content, str):
            conversation.append({"role": message["role"], "content": content or ""})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                parts.append({"type": "image_pil", "image_pil": part["image"]})
            else:
                parts.append(dict(part))
        conversation.append({"role": message["role"], "content": parts})
    return conversation


def vllm_sampling(request: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for a request. `logprobs=k` returns the top k per token
    (plus the sampled token); None asks for none."""
    temperature = float(request.get("temperature") if request.get("temperature") is not None else 1.0)
    kwargs: dict[str, Any] = {
        "temperature": temperature,
        "top_p": float(request.get("top_p") if request.get("top_p") is not None else 1.0),
        "max_tokens": max_new_tokens(request),
        "logprobs": requested_top_logprobs(request),
    }
    if request.get("seed") is not None:
        kwargs["seed"] = int(request["seed"])
    return kwargs


def sglang_inputs(
    request: Mapping[str, Any], render: Callable[[list[dict[str, Any]]], str]
) -> tuple[str, list[Image.Image]]:
    """The prompt text and its images for `Engine.generate`. `render` applies the model's chat template
    (the processor's, as the local hf: judge does) to messages whose image parts are {"type": "image"}."""
    stripped, images = split_images(list(request["messages"]))
    return render(stripped), images


def sglang_sampling(request: Mapping[str, Any]) -> dict[str, Any]:
    """SGLang `sampling_params` for a request (temperature 0 is greedy there too). The seed only matters
    when sampling, and older SGLang releases do not know `sampling_seed`, so it is sent only then."""
    temperature = float(request.get("temperature") if request.get("temperature") is not None else 1.0)
    params: dict[str, Any] = {
        "temperature": temperature,
        "top_p": float(request.get("top_p") if request.get("top_p") is not None else 1.0),
        "max_new_tokens": max_new_tokens(request),
    }
    if temperature > 0 and request.get("seed") is not None:
        params["sampling_seed"] = int(request["seed"])
    return params


# ---------------------------------------------------------------------------------------------- replies


def _token_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": float(logprob),
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": float(lp), "bytes": list(t.encode())} for t, lp in top],
    }


def chat_completion(
    *,
    model: str,
    text: str,
    finish_reason: str,
    logprobs: list[dict[str, Any]] | None,
    prompt_tokens: int | None,
    completion_tokens: int,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """An OpenAI `chat.completion` JSON object (the shape `evalkit.judges.server` sends)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": (prompt_tokens or 0) + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None if logprobs is None else {"content": logprobs},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def completion_from_vllm(
    output: Any, *, model: str, top_logprobs: int | None, decode: Decode
) -> dict[str, Any]:
    """A vLLM `RequestOutput` as a chat.completion. Each position's mapping holds the top k plus the
    sampled token, which may rank below them: the alternatives are the k most likely, best first.
    Raises JudgeFailure for an aborted request (e.g. a prompt longer than the model's context)."""
    choice = output.outputs[0]
    finish = choice.finish_reason or "stop"
    if finish == "abort":
        raise JudgeFailure("the vllm engine aborted the request")
    token_ids = list(choice.token_ids or [])
    entries = None
    if top_logprobs is not None and choice.logprobs is not None:
        entries = []
        for token_id, position in zip(token_ids, choice.logprobs, strict=False):
            ranked = sorted(position.items(), key=lambda item: -float(item[1].logprob))
            top = [(_vllm_text(tid, lp, decode), float(lp.logprob)) for tid, lp in ranked[:top_logprobs]]
            chosen = position.get(token_id)
            chosen_logprob = float(chosen.logprob) if chosen is not None else -math.inf
            entries.append(_token_entry(_vllm_text(token_id, chosen, decode), chosen_logprob, top))
    prompt_ids = getattr(output, "prompt_token_ids", None)
    return chat_completion(
        model=model,
        text=choice.text or "",
        finish_reason=finish,
        logprobs=entries,
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
        completion_tokens=len(token_ids),
        cached_tokens=getattr(output, "num_cached_tokens", None),
    )


def _vllm_text(token_id: int, logprob: Any, decode: Decode) -> str:
    text = getattr(logprob, "decoded_token", None) if logprob is not None else None
    return text if text is not None else decode(int(token_id))


def completion_from_sglang(
    output: Mapping[str, Any], *, model: str, top_logprobs: int | None, decode: Decode
) -> dict[str, Any]:
    """An SGLang `Engine.generate` result as a chat.completion. Raises JudgeFailure for an aborted one."""
    meta = output.get("meta_info") or {}
    finish = meta.get("finish_reason")
    kind = finish.get("type") if isinstance(finish, Mapping) else finish
    if kind == "abort":
        message = finish.get("message") if isinstance(finish, Mapping) else None
        raise JudgeFailure(f"the sglang engine aborted the request{': ' + str(message) if message else ''}")
    tokens = list(meta.get("output_token_logprobs") or [])
    entries = None
    if top_logprobs is not None and tokens:
        tops = list(meta.get("output_top_logprobs") or [])
        entries = []
        for index, (logprob, token_id, text) in enumerate(tokens):
            alternatives = tops[index] if index < len(tops) and tops[index] else []
            ranked = sorted(alternatives, key=lambda item: -float(item[0]))[:top_logprobs]
            top = [(_sglang_text(tid, txt, decode), float(lp)) for lp, tid, txt in ranked]
            entries.append(_token_entry(_sglang_text(token_id, text, decode), _finite(logprob), top))
    return chat_completion(
        model=model,
        text=output.get("text") or "",
        finish_reason=str(kind or "stop"),
        logprobs=entries,
        prompt_tokens=meta.get("prompt_tokens"),
        completion_tokens=int(meta.get("completion_tokens") or len(tokens)),
        cached_tokens=meta.get("cached_tokens"),
    )


def _sglang_text(token_id: int, text: str | None, decode: Decode) -> str:
    return text if text is not None else decode(int(token_id))


def _finite(value: Any) -> float:
    return -math.inf if value is None else float(value)


# ---------------------------------------------------------------------------------------------- answers


def yes_no_answer(completion: Mapping[str, Any]) -> YesNoAnswer:
    """P(yes) / (P(yes) + P(no)) from the first generated token's alternatives (and the token itself),
    summed over the Yes/No spellings; the decoded answer (0 or 1, source "text") when there are no
    log-probs. The same rule as the HTTP judge. Raises JudgeFailure."""
    choice = completion["choices"][0]
    text = choice["message"].get("content") or ""
    snapshot = str(completion.get("model"))
    entries = (choice.get("logprobs") or {}).get("content") or []
    if entries:
        first = entries[0]
        candidates = list(first.get("top_logprobs") or [])
        if all(alt["token"] != first["token"] for alt in candidates):
            candidates.append(first)
        grouped: dict[str, list[float]] = {"yes": [], "no": []}
        for alt in candidates:
            kind = yes_no_of_token(alt["token"])
            if kind is not None:
                grouped[kind].append(float(alt["logprob"]))
        p_yes = p_yes_from_logprobs(grouped)
        if p_yes is None:
            raise JudgeFailure(
                f"no yes/no token among the top {len(candidates)} logprobs (reply {text[:60]!r})"
            )
        return YesNoAnswer(p_yes, "logprobs", snapshot)
    word = parse_yes_no(text)
    if word is None:
        raise JudgeFailure(f"unparseable yes/no reply: {text[:80]!r}")
    return YesNoAnswer(1.0 if word == "yes" else 0.0, "text", snapshot)


def reply_text(completion: Mapping[str, Any]) -> str:
    """The reply text; JudgeFailure when it is empty."""
    text = completion["choices"][0]["message"].get("content") or ""
    if not text.strip():
        raise JudgeFailure("empty reply")
    return text


def each_or_failure(results: Iterable[Any], count: int, what: str) -> list[Any]:
    """An engine's per-request results, checked to be one per request (an engine bug otherwise)."""
    results = list(results)
    if len(results) != count:
        raise JudgeFailure(f"the {what} engine returned {len(results)} outputs for {count} requests")
    return results
