"""Stand-ins for vLLM's and SGLang's offline engines, shaped like their real outputs, for CPU tests.

`TinyVLLM` / `TinySGLang` answer from the tiny Qwen2-VL's real next-token distribution, so P(yes) read
through the engine conversions can be compared with the local hf: judge's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalkit.judges.messages import data_url_to_image


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = "stop"
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    outputs: list[CompletionOutput]
    finished: bool = True
    num_cached_tokens: int | None = None


class SamplingParams:  # vllm.SamplingParams (keyword arguments only)
    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)


def _evalkit_messages(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages = []
    for message in conversation:
        if isinstance(message["content"], str):
            messages.append(message)
            continue
        parts = []
        for part in message["content"]:
            if part["type"] == "image_pil":
                parts.append({"type": "image", "image": part["image_pil"]})
            elif part["type"] == "image_url":
                parts.append({"type": "image", "image": data_url_to_image(part["image_url"]["url"])})
            else:
                parts.append(part)
        messages.append({"role": message["role"], "content": parts})
    return messages


def _top(logits, k: int):
    logprobs = logits.double().log_softmax(-1)
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]))
    return logprobs, list(zip(ids.tolist(), values.tolist(), strict=True))


@dataclass
class TinyVLLM:
    """`vllm.LLM` stand-in: one greedy token per conversation from the tiny judge's logits."""

    hf: Any
    calls: list[list[list[dict[str, Any]]]] = field(default_factory=list)

    def get_tokenizer(self):
        return self.hf.tokenizer

    def chat(self, conversations, sampling_params=None, use_tqdm=True):
        self.calls.append(conversations)
        params = (
            sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(conversations)
        )
        outputs = []
        for index, (conversation, param) in enumerate(zip(conversations, params, strict=True)):
            logits = self.hf.next_token_logits(_evalkit_messages(conversation))
            logprobs, top = _top(logits, param.logprobs or 1)
            token = top[0][0]
            position = None
            if param.logprobs is not None:
                # top k plus the sampled token; decoded_token left None on odd ids (decode path)
                position = {
                    tid: Logprob(lp, rank + 1, None if tid % 2 else self.hf.tokenizer.decode([tid]))
                    for rank, (tid, lp) in enumerate(top[: param.logprobs])
                }
                position.setdefault(token, Logprob(float(logprobs[token]), 1, None))
            choice = CompletionOutput(
                0,
                self.hf.tokenizer.decode([token]),
                [token],
                float(logprobs[token]),
                None if position is None else [position],
                "length",
            )
            outputs.append(RequestOutput(str(index), None, [0] * 7, [choice], num_cached_tokens=0))
        return outputs


@dataclass
class TinySGLang:
    """`sglang.Engine` stand-in: renders nothing itself; runs the tiny model on the given prompt text."""

    hf: Any
    prompts: list[str] = field(default_factory=list)
    image_data: list[Any] = field(default_factory=list)

    def generate(
        self, prompt, image_data=None, sampling_params=None, return_logprob=False, top_logprobs_num=None
    ):
        import torch

        self.image_data.append(image_data)
        single = isinstance(prompt, str)
        prompts = [prompt] if single else list(prompt)
        n = len(prompts)

        def each(value):
            return value if isinstance(value, list) and len(value) == n and not single else [value] * n

        results = []
        for text, images, want, k in zip(
            prompts, each(image_data), each(return_logprob), each(top_logprobs_num), strict=True
        ):
            self.prompts.append(text)
            with torch.inference_mode():
                inputs = self.hf._model_inputs(text, list(images or []))
                logits = self.hf.model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1]
            logprobs, top = _top(logits, max(k or 0, 1))
            token = top[0][0]
            meta: dict[str, Any] = {
                "id": "rid",
                "finish_reason": {"type": "length", "length": 1},
                "prompt_tokens": int(inputs["input_ids"].shape[1]),
                "completion_tokens": 1,
                "cached_tokens": 0,
            }
            if want:
                meta["output_token_logprobs"] = [(float(logprobs[token]), token, None)]
                meta["output_top_logprobs"] = [[(lp, tid, None) for tid, lp in top[:k]] if k else None]
            results.append({"text": self.hf.tokenizer.decode([token]), "meta_info": meta})
        return results[0] if single else results
