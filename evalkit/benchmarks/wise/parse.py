"""WISE judge replies: the legacy 0-2 triple and the verified 0/1 score, and when a reply is usable."""

from __future__ import annotations

import re
from collections.abc import Mapping

_LEGACY_LABELLED = re.compile(
    r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*:?\s*(\d)", re.IGNORECASE
)


LEGACY_KEYS = ("consistency", "realism", "aesthetic_quality")


_VERIFIED_LABELLED = re.compile(r"\*{0,2}Score\*{0,2}\s*:?\s*([01])\b", re.IGNORECASE)


_VERIFIED_BARE = re.compile(r"^\s*([01])\s*$", re.MULTILINE)


def parse_legacy_reply(reply: str) -> dict[str, float]:
    """Official legacy extraction: labelled scores anywhere (one digit, last occurrence wins); only when
    no label is found, the first three lines holding a single digit 0-2. May return a partial dict."""
    scores: dict[str, float] = {}
    for m in _LEGACY_LABELLED.finditer(reply):
        scores[m.group(1).lower().replace(" ", "_")] = float(m.group(2))
    if scores:
        return scores
    digits = [ln.strip() for ln in reply.split("\n") if re.fullmatch(r"[0-2]", ln.strip())]
    if len(digits) >= 3:
        return {k: float(d) for k, d in zip(LEGACY_KEYS, digits[:3], strict=True)}
    return {}


def strip_think(reply: str) -> str:
    """Verified evaluator: drop <think> blocks (and a dangling </think>) before parsing."""
    reply = re.sub(r"<think>.*?</think>\s*", "", reply, flags=re.DOTALL)
    return re.sub(r"</think>\s*", "", reply).strip()


def parse_verified_reply(reply: str) -> dict[str, float]:
    """Official verified extraction: first 'Score: 0|1', else exactly one bare 0/1 line."""
    text = strip_think(reply)
    m = _VERIFIED_LABELLED.search(text)
    if m:
        return {"score": float(m.group(1))}
    bare = _VERIFIED_BARE.findall(text)
    return {"score": float(bare[0])} if len(bare) == 1 else {}


def required_keys(protocol: str) -> tuple[str, ...]:
    return LEGACY_KEYS if protocol == "wise@legacy" else ("score",)


def reply_accepted(scores: Mapping[str, float], protocol: str) -> bool:
    """The official accept rule: every required key present (else the judge is asked again)."""
    return all(k in scores for k in required_keys(protocol))


def out_of_range(scores: Mapping[str, float], protocol: str) -> list[str]:
    """Keys whose value is off the protocol's scale (0-2 legacy, 0/1 verified); the official scripts
    keep such values, evalkit re-asks and finally records a failure."""
    top = 2.0 if protocol == "wise@legacy" else 1.0
    return [k for k in required_keys(protocol) if not 0.0 <= scores[k] <= top]
