"""VIEScore judge replies, as VIEScore's ``mllm_output_to_dict`` reads them (GEdit-Bench and the viescore reward)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

DELIMITER = "||V^=^V||"


RATE_LIMIT = "rate_limit_exceeded"


@dataclass(frozen=True)
class Parsed:
    """Outcome of parsing one VIEScore reply.

    ``ok`` says a value was parsed into ``data`` (usually a dict with 'score', but the JSON repair may
    yield anything); ``rate_limited`` marks the exact text 'rate_limit_exceeded'; ``random_fallback`` marks
    where the official code would draw a random score.
    """

    ok: bool = False
    data: Any = None
    rate_limited: bool = False
    random_fallback: bool = False

    @property
    def usable(self) -> bool:
        """The official loop stops re-asking once the parse result is not False."""
        return self.ok or self.rate_limited or self.random_fallback


_FAILED = Parsed()


def _fix_json(text: str) -> str:
    """VIEScore's JSON repair: quote bare keys, wrap numeric values in a list, quote other values."""
    fixed = re.sub(r"(\w+):", r'"\1":', text)

    def fmt(m: re.Match[str]) -> str:
        key, value, end = m.group(1), m.group(2).strip(), m.group(3)
        if re.match(r"^-?\d+(\.\d+)?$", value):
            value = f"[{value}]"
        elif not re.match(r"^(true|false|null)$", value, re.IGNORECASE):
            value = f'"{value}"'
        return f"{key}: {value}{end}"

    return re.sub(r'(".*?"):(.*?)(,|})', fmt, fixed)


def _loads_json_body(body: str) -> Parsed:
    """Parse the extracted JSON text; a scalar score becomes a list; else one repair attempt."""
    text = body.strip().replace("\n", "")
    try:
        data = json.loads(text)
        if not isinstance(data["score"], list):
            data["score"] = [data["score"]]
        return Parsed(ok=True, data=data)
    except Exception:  # noqa: BLE001 - the official code catches everything here
        try:
            return Parsed(ok=True, data=json.loads(_fix_json(text)))
        except Exception:  # noqa: BLE001
            return _FAILED


def _bare_scores(text: str) -> Parsed:
    """No braces: a '[a, b]' slice (first '[' to last ']') or a bare integer 0-10."""
    start, end = text.find("["), text.rfind("]") + 1
    chunk = text[start:end]
    if re.match(r"^\[\d+, ?\d+\]$", chunk):
        try:
            scores = json.loads(chunk)
        except json.JSONDecodeError:
            return _FAILED
        return Parsed(
            ok=True, data={"score": scores, "reasoning": "System: output is simply a list of scores"}
        )
    try:
        number = int(text)
    except ValueError:
        return _FAILED
    if 0 <= number <= 10:
        return Parsed(ok=True, data={"score": [number], "reasoning": "System: output is simply a number"})
    return _FAILED


def parse_reply(text: str, give_up: bool = False, strict: bool = False) -> Parsed:
    """VIEScore reply parsing. ``give_up`` is the official second attempt, where text without braces
    would get a random score (reported as ``random_fallback``, never drawn here).

    ``strict`` is the viescore reward's rule, the one difference between the two users: a reply counts as
    parsed only when its score list is usable (see :func:`min_score`), so a reply the official code accepts
    and later crashes on (string, negative, infinite or missing scores) is re-asked and never becomes a
    reward. GEdit-Bench keeps the official acceptance and records such a sample as an exception.
    """
    parsed = _official_parse(text, give_up)
    if strict and parsed.ok:
        try:
            min_score(parsed.data, strict=True)
        except ValueError:
            return _FAILED
    return parsed


def _official_parse(text: str, give_up: bool) -> Parsed:
    """``mllm_output_to_dict``: delimiters, else the brace slice, else a bare list or integer."""
    if text == RATE_LIMIT:
        return Parsed(rate_limited=True)
    if text.count(DELIMITER) == 2:
        start, end = text.find(DELIMITER) + len(DELIMITER), text.rfind(DELIMITER)
        return _loads_json_body(text[start:end]) if start != end else _FAILED
    start, end = text.find("{"), text.rfind("}") + 1
    if start == -1 or end == 0:
        return Parsed(random_fallback=True) if give_up else _bare_scores(text)
    return _loads_json_body(text[start:end]) if start != end else _FAILED


def min_score(data: Any, strict: bool = False) -> float:
    """min of the 'score' list; ValueError for anything the official code would crash on (``strict``: also
    for an infinite score, which the official sqrt accepts)."""
    if not isinstance(data, dict) or "score" not in data:
        raise ValueError("reply has no 'score'")
    scores = data["score"]
    if not isinstance(scores, list) or not scores:
        raise ValueError(f"'score' is not a non-empty list: {scores!r}")
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
        raise ValueError(f"non-numeric score in {scores!r}")
    value = min(scores)
    if value < 0 or math.isnan(value):
        raise ValueError(f"score {value} < 0 (sqrt undefined)")
    if strict and not all(math.isfinite(s) for s in scores):
        raise ValueError(f"non-finite score in {scores!r}")
    return value
