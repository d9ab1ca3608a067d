"""Every registered reward is built here, by name: `evalkit score --reward`, the GRPO trainers, the reward
ablation and SRR's self gate all call `build_reward`.

A registry line (`evalkit/registry.py`, REWARDS) points at a builder `(options, judge) -> Scorer`; a new
reward is its module plus a builder and that one line. `tiny=true` swaps in a tiny random-weight model of
the real architecture (offline tests); judged rewards take a built Judge or a `judge` spec option.
"""

from __future__ import annotations

from typing import Any

from evalkit.errors import EvalkitError
from evalkit.rewards.base import Scorer


def build_reward(name: str, options: dict[str, Any] | None = None, judge: Any = None) -> Scorer:
    """The reward `name` (see `evalkit ls rewards`) with its options; judged rewards need `judge` (a Judge
    or, in options, a spec such as `hf:<id>` with an optional `judge_url`)."""
    from evalkit import registry
    from evalkit.rewards.checks import check_reward

    entry = registry.lookup("rewards", name)
    options = dict(options or {})
    check_reward(name, options, judge=judge)  # options, judge name and weights/server: before any load
    if entry.needs_judge and judge is None and not options.get("judge"):
        raise EvalkitError(
            f"reward '{name}' is computed by a judge: pass --judge hf:<id-or-path> (or openai:<model> "
            "--judge-url URL), or the `judge` option"
        )
    return entry.load()(options, judge)


def check_options(reward: str, options: dict[str, Any], target: Any, extra: tuple[str, ...] = ()) -> None:
    """Refuse an option the reward does not take, with the closest known one, before anything loads."""
    import inspect

    from evalkit.errors import did_you_mean

    params = inspect.signature(target).parameters.values()
    named = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    accepted = [p for p in named if p not in ("self", "judge")] + list(extra)
    for key in options:
        if key not in accepted:
            raise did_you_mean(f"{reward} option", key, accepted or ["(none)"])


def _load_judge(options: dict[str, Any], judge: Any) -> Any:
    if judge is not None:
        options.pop("allow_download", None)
        return judge
    from evalkit.judges import load_judge

    return load_judge(
        options.pop("judge"),
        url=options.pop("judge_url", None),
        allow_download=bool(options.pop("allow_download", False)),
    )


def brightness(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.brightness import BrightnessScorer

    check_options("brightness", options, BrightnessScorer)
    return BrightnessScorer(**options)


def pickscore(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.pickscore import PickScoreScorer

    check_options("pickscore", options, PickScoreScorer, ("tiny",))
    if options.pop("tiny", False):
        from evalkit.testing.rewards import tiny_pickscore

        options["model"] = options["processor"] = str(tiny_pickscore())
    return PickScoreScorer(**options)


def hpsv3(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.hpsv3 import HPSv3Scorer

    check_options("hpsv3", options, HPSv3Scorer, ("tiny",))
    if options.pop("tiny", False):
        from evalkit.testing.rewards import TINY_PIXELS, tiny_hpsv3

        base, checkpoint = tiny_hpsv3()
        options.update(base=base, checkpoint=checkpoint, pixels=TINY_PIXELS)
    return HPSv3Scorer(**options)


def viescore(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.viescore import VIEScoreScorer

    check_options("viescore", options, VIEScoreScorer, ("judge", "judge_url", "allow_download"))
    return VIEScoreScorer(_load_judge(options, judge), **options)


def unifiedreward(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.unifiedreward import UnifiedRewardScorer

    check_options("unifiedreward", options, UnifiedRewardScorer, ("judge", "judge_url", "allow_download"))
    return UnifiedRewardScorer(_load_judge(options, judge), **options)


def dvreward_alphagrpo(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.dvreward_alphagrpo import AlphaGRPOProtocolReward

    return AlphaGRPOProtocolReward(_load_judge(options, judge), **options)


def dvreward(options: dict[str, Any], judge: Any = None) -> Scorer:
    from evalkit.rewards.dvreward import build_dvreward

    if judge is not None:  # a built judge: the remaining options are DVReward's own (spec: judge options too)
        check_options("dvreward", options, build_dvreward)
    return build_dvreward(judge if judge is not None else options.pop("judge"), **options)
