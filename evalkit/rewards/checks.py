"""Checks of a reward's name and options that run before any reward model, judge or generator loads.

A misspelt option, a judge-based reward without a judge or DVReward without questions is one line with the
fix (EvalkitError, exit 2), found in a second instead of after the images are made.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from evalkit.errors import EvalkitError, did_you_mean

JUDGED = ("viescore", "unifiedreward", "dvreward", "dvreward@alphagrpo")
# Options every judge backend takes (see evalkit.judges.load_judge); DVReward passes them to its judge.
JUDGE_OPTIONS = (
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "system_prompt",
    "device",
    "dtype",
    "batch_size",
    "concurrency",
    "min_concurrency",
    "adaptive_concurrency",
    "timeout",
    "max_retries",
    "allow_download",
)


def _constructor(name: str) -> Callable[..., Any] | None:
    """The callable whose keyword arguments are the reward's options."""
    if name == "pickscore":
        from evalkit.rewards.pickscore import PickScoreScorer

        return PickScoreScorer
    if name == "hpsv3":
        from evalkit.rewards.hpsv3 import HPSv3Scorer

        return HPSv3Scorer
    if name == "viescore":
        from evalkit.rewards.viescore import VIEScoreScorer

        return VIEScoreScorer
    if name == "unifiedreward":
        from evalkit.rewards.unifiedreward import UnifiedRewardScorer

        return UnifiedRewardScorer
    if name == "dvreward":
        from evalkit.rewards.dvreward import build_dvreward

        return build_dvreward
    if name == "dvreward@alphagrpo":
        from evalkit.rewards.dvreward_alphagrpo import AlphaGRPOProtocolReward

        return AlphaGRPOProtocolReward
    return None  # brightness: no options


def accepted_options(name: str) -> dict[str, Any]:
    """Option name -> its annotation (typing.Literal choices are checked), for reward `name`."""
    target = _constructor(name)
    if target is None:
        return {}
    func = target.__init__ if inspect.isclass(target) else target
    hints = typing.get_type_hints(func)
    params = {
        p: hints.get(p, Any)
        for p, param in inspect.signature(func).parameters.items()
        if p not in ("self", "judge") and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    }
    if name in ("pickscore", "hpsv3"):
        params["tiny"] = bool  # tiny random-weight model of the real architecture (tests, demo)
    if name in JUDGED:
        params.update({"judge": str, "judge_url": str, "allow_download": bool})
    if name == "dvreward":
        params.update({key: Any for key in JUDGE_OPTIONS})
    return params


def check_reward(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    judge: Any = None,
    prompts: Iterable[tuple[str, Mapping[str, Any]]] | None = None,
) -> None:
    """Refuse, before anything loads, a reward that cannot work as asked.

    `judge` is a built Judge handed over by the caller (else the `judge` option is the spec); `prompts`
    ((prompt, metadata) pairs), when known, lets DVReward check it has questions for every one of them
    (callers that learn the prompts later call the built scorer's `check_prompts`).
    """
    from evalkit import registry

    registry.lookup("rewards", name)
    options = dict(options or {})
    accepted = accepted_options(name)
    for key, value in options.items():
        if key not in accepted:
            raise did_you_mean(f"{name} option", key, list(accepted) or ["(none)"])
        choices = typing.get_args(accepted[key]) if typing.get_origin(accepted[key]) is typing.Literal else ()
        if choices and value not in choices:
            raise EvalkitError(f"{name} option {key}={value!r} is not one of {', '.join(map(repr, choices))}")
    if name not in JUDGED:
        return
    spec = options.get("judge")
    if judge is None and not spec:
        raise EvalkitError(
            f"reward '{name}' is computed by a judge: pass --judge hf:<id-or-path> or "
            "--judge openai:<model> --judge-url URL (or the `judge` option)"
        )
    if judge is None:
        from evalkit.judges import check_judge

        check_judge(
            str(spec), url=options.get("judge_url"), allow_download=bool(options.get("allow_download"))
        )
    if spec and name == "dvreward@alphagrpo" and not str(spec).startswith(("openai:", "azure:")):
        raise EvalkitError(
            f"reward '{name}' needs an OpenAI-compatible judge that returns log-probs: "
            f"--judge openai:<model> --judge-url URL, not {spec!r}"
        )
    if name.startswith("dvreward") and (prompts is not None or options.get("questions")):
        from evalkit.rewards.dvreward import check_dvreward_questions

        check_dvreward_questions(options.get("questions"), prompts)
