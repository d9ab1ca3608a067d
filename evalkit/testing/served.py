"""A scripted judge model to put behind `evalkit.judges.server.JudgeServer` in tests and bench scripts.

The tiny random VLM is real but slow on a shared CPU and its replies never parse. This model answers at
once and deterministically: a yes/no question gets first-token log-probs whose P(yes) is a hash of the
question and the image pixels (so every question of every image has its own answer, and an answer sent
to the wrong request shows), and any other request gets `chat_reply`: a fixed text, or a function of the
user text and the image hashes (`scored_reply` answers the VIEScore and UnifiedReward prompts with scores
drawn from the image, so each image has its own reward; a function that raises makes the server answer
500). Timing comes from the server's `latency`, not from here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evalkit.judges.messages import image_sha256


@dataclass(frozen=True)
class ScriptedToken:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class ScriptedGeneration:
    text: str
    finish_reason: str = "stop"
    tokens: list[ScriptedToken] = field(default_factory=list)
    prompt_tokens: int = 1


def scripted_p_yes(question: str, image_hashes: list[str]) -> float:
    """P(yes) in [0.05, 0.95] from the question and the images' pixel hashes."""
    digest = hashlib.sha256("\n".join([question, *image_hashes]).encode()).digest()
    return 0.05 + 0.9 * int.from_bytes(digest[:4], "big") / 2**32


class ScriptedJudgeModel:
    """What JudgeServer needs from a judge model (`name`, `generate`), with no model behind it."""

    def __init__(
        self, name: str = "scripted-judge", chat_reply: str | Callable[[str, list[str]], str] = "Yes"
    ):
        self.name, self.chat_reply = name, chat_reply
        self.calls = 0

    def generate(self, messages: list[dict[str, Any]], *, max_tokens: int = 1, **decoding: Any):
        self.calls += 1
        texts, hashes = [], []
        for message in messages:
            content = message["content"]
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                if part.get("type") == "image":
                    hashes.append(image_sha256(part["image"]))
                elif part.get("type") == "text" and message["role"] == "user":
                    texts.append(part["text"])
        if max_tokens > 1:
            reply = self.chat_reply
            return ScriptedGeneration(reply("\n".join(texts), hashes) if callable(reply) else reply)
        p_yes = scripted_p_yes("\n".join(texts), hashes)
        yes, no = math.log(p_yes), math.log(1.0 - p_yes)
        word = "Yes" if p_yes >= 0.5 else "No"
        token = ScriptedToken(word, max(yes, no), [("Yes", yes), ("No", no)])
        return ScriptedGeneration(word, "length", [token])


def scored_reply(text: str, image_hashes: list[str]) -> str:
    """A parseable reply to a score prompt, its numbers drawn from the prompt and the images: VIEScore's
    perceptual-quality prompt (two 0-10 scores), its semantic prompt (one), else UnifiedReward's 1-5
    "Final Score" (1.0-4.9)."""
    digest = hashlib.sha256("\n".join([text, *image_hashes]).encode()).digest()
    if "[naturalness, artifacts]" in text:
        return f'{{"score": [{digest[0] % 11}, {digest[1] % 11}], "reasoning": "scripted"}}'
    if "output score = [score]" in text:
        return f'{{"score": [{digest[0] % 11}], "reasoning": "scripted"}}'
    return f"Scripted reasoning.\nFinal Score: {1 + digest[0] % 4}.{digest[1] % 10}"
