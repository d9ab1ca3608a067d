"""AlphaGRPO reward pieces: think-format rewards, weighted combination, RT2I and SRR post-processing.

* `multi_score` combines scorers by a weighted **sum** (not a mean), as the official `multi_score`.
* RT2I: ``reward = image reward + think_text_weight * weighted text-format reward``.
* SRR: the reward is the refined image's; False-Positive Rectification (`evalkit.dvreward.fpr`) gives a
  refinement that does not beat its initial image (``<=``) the lowest initial reward of its prompt; a round
  where nothing improved is skipped. In `alphagrpo_reflect` the format rewards do not reach the advantages
  (they only feed `text_avg`, used with `isolate_image_text_reward`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evalkit.dvreward.fpr import rectify
from evalkit.grpo.advantages import PerPromptStatTracker
from evalkit.grpo.alphagrpo.advantages import AdvantageConfig, Advantages, compute_advantages

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REFLECTIVE_ATTEMPTS = 5  # official: 5 tries, temperature +0.2 per retry
_SCORE_RE = re.compile(r'"score"\s*:\s*(-?\d+(?:\.\d+)?)')

#: judge(text, temperature) -> the LLM's raw reply
ReflectiveJudge = Callable[[str, float], str]


def think_tag_format(texts: Sequence[str]) -> list[float]:
    """1.0 iff the text starts with exactly `<think>` and ends with exactly `</think>` (no stripping)."""
    return [float(t.startswith(THINK_OPEN) and t.endswith(THINK_CLOSE)) for t in texts]


def parse_reflective_reply(reply: str) -> tuple[float, str] | None:
    """(score, reasoning) from a judge reply: fenced or bare JSON, else the first `"score": n`."""
    body = reply.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    if fence:
        body = fence.group(1)
    try:
        data = json.loads(body)
        return float(data["score"]), str(data["reasoning"])
    except (ValueError, KeyError, TypeError):
        pass
    match = _SCORE_RE.search(reply)
    if match:
        return float(match.group(1)), "parse score directly"
    return None


def reflective_think_format(
    texts: Sequence[str], judge: ReflectiveJudge, attempts: int = REFLECTIVE_ATTEMPTS
) -> tuple[list[float], dict[str, list]]:
    """LLM-judged structure score per text; retries at temperature 0.2*k, 0.0 after `attempts` failures."""
    scores: list[float] = []
    metas: dict[str, list] = {"reasoning": [], "score": []}
    for text in texts:
        parsed = None
        for k in range(attempts):
            parsed = parse_reflective_reply(judge(text, round(0.2 * k, 10)))
            if parsed is not None:
                break
        score, reasoning = parsed if parsed is not None else (0.0, "no valid score found")
        scores.append(score)
        metas["reasoning"].append(reasoning)
        metas["score"].append(score)
    return scores, metas


def multi_score(scores: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> dict[str, list]:
    """Each scorer's list plus `avg` = the weighted sum over the scorers named in `weights`."""
    names = list(weights)
    missing = [n for n in names if n not in scores]
    if missing:
        raise KeyError(f"no scores for {', '.join(missing)}")
    total = np.zeros(len(scores[names[0]]), dtype=np.float64)
    for name in names:
        total = total + weights[name] * np.asarray(scores[name], dtype=np.float64)
    out = {name: list(scores[name]) for name in names}
    out["avg"] = total.tolist()
    return out


def text_format_scores(
    texts: Sequence[str], weights: Mapping[str, float], judge: ReflectiveJudge | None = None
) -> dict[str, list]:
    """`multi_score(text_reward_fn)` on think texts; the reflective scorer needs an explicit judge."""
    scores: dict[str, list[float]] = {}
    for name in weights:
        if name == "think_tag_format":
            scores[name] = think_tag_format(texts)
        elif name == "reflective_think_format":
            if judge is None:
                raise ValueError("text reward 'reflective_think_format' needs a judge")
            scores[name] = reflective_think_format(texts, judge)[0]
        else:
            raise ValueError(f"unknown text reward {name!r} (think_tag_format, reflective_think_format)")
    return multi_score(scores, weights)


@dataclass(frozen=True)
class PostprocessConfig:
    """The reward-side `train.*` / `sample.*` values (see config.py for the presets)."""

    think: bool = True
    think_text_weight: float = 1.0
    use_think_text_format_reward: bool = True
    text_reward_fn: Mapping[str, float] = field(default_factory=lambda: {"think_tag_format": 1.0})
    clamp_no_improve_reward: bool = True
    think_text_format_reward_weight: float = 0.5
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)


@dataclass
class Postprocessed:
    rewards: dict[str, list[float]]  # this rank's rewards by key (float32 values)
    result: Advantages

    @property
    def should_skip(self) -> bool:
        return self.result.should_skip


def _f32(values) -> list[float]:
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


def _local(values, world_size: int, rank: int) -> list[float]:
    arr = np.asarray(values)
    return arr.reshape(world_size, -1)[rank].tolist()


def t2i_reward_postprocess(
    prompts: Sequence[str],
    image_rewards: Sequence[float],
    think_texts: Sequence[str] | None,
    config: PostprocessConfig,
    *,
    world_size: int = 1,
    rank: int = 0,
    tracker: PerPromptStatTracker | None = None,
    judge: ReflectiveJudge | None = None,
) -> Postprocessed:
    """RT2I (`T2ITask.reward_postprocess`) on gathered inputs; returns rank `rank`'s rewards/advantages."""
    image = _f32(image_rewards)
    avg = list(image)
    rewards: dict[str, list[float]] = {"dvreward": image, "ori_avg": list(image)}
    if config.think and config.use_think_text_format_reward and think_texts is not None:
        text = text_format_scores(think_texts, config.text_reward_fn, judge)["avg"]
        text = _f32(text)
        avg = _f32(np.asarray(image) + config.think_text_weight * np.asarray(text, dtype=np.float32))
        rewards["think_text_reward"] = text
    rewards["avg"] = avg
    result = compute_advantages(
        prompts,
        avg,
        config.advantages,
        world_size=world_size,
        rank=rank,
        tracker=tracker,
        think_texts=think_texts,
    )
    local = {k: _local(v, world_size, rank) for k, v in rewards.items()}
    return Postprocessed(local, result)


def srr_reward_postprocess(
    prompts: Sequence[str],
    init_rewards: Sequence[float],
    refined_rewards: Sequence[float],
    think_texts: Sequence[str],
    config: PostprocessConfig,
    *,
    world_size: int = 1,
    rank: int = 0,
    tracker: PerPromptStatTracker | None = None,
    judge: ReflectiveJudge | None = None,
    prompts_mean: Mapping[str, float] | None = None,
) -> Postprocessed:
    """SRR (`ReflectTask.reward_postprocess`) with FPR on gathered inputs, for rank `rank`."""
    init, refined = _f32(init_rewards), _f32(refined_rewards)
    avg = list(refined)
    if config.clamp_no_improve_reward:
        avg = _f32(rectify(init, refined, groups=list(prompts)).rewards)
    rewards: dict[str, list[float]] = {
        "dvreward": list(refined),
        "avg": avg,
        "init_reward": init,
        "image_avg": list(refined),
    }
    think = np.asarray(think_tag_format(think_texts), dtype=np.float32)  # unweighted, unlike RT2I
    rewards["think_text_reward"] = _f32(think)
    reflective = np.zeros_like(think)
    if "reflective_think_format" in config.text_reward_fn:
        if judge is None:
            raise ValueError("text reward 'reflective_think_format' needs a judge")
        reflective = np.asarray(reflective_think_format(think_texts, judge)[0], dtype=np.float32) - 1
        rewards["reflective_think_text_reward"] = _f32(reflective)
    weight = np.float32(config.think_text_format_reward_weight)
    rewards["text_avg"] = _f32(np.asarray(avg, dtype=np.float32) + (reflective + think) / 2 * weight)
    local = {k: _local(v, world_size, rank) for k, v in rewards.items()}
    if all(r <= i for r, i in zip(refined, init, strict=True)):
        return Postprocessed(local, Advantages(True))
    result = compute_advantages(
        prompts,
        avg,
        config.advantages,
        world_size=world_size,
        rank=rank,
        tracker=tracker,
        text_rewards=rewards["text_avg"],
        local_extra=local,
        prompts_mean=prompts_mean,
        think_texts=think_texts,
    )
    return Postprocessed(local, result)
