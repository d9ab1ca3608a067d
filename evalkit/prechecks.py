"""Checks that cost a second and can be made before any model loads or image is drawn.

Everything a run will need later (a model able to refine for SRR, a judge that exists and answers, the
scorer's data files, DVReward questions for the SRR gate, a writable run folder) is checked here first, so a
mistake is one line with its fix instead of a failure after every image has been generated.
`check_before_work` is what `evalkit.evaluate()` calls; each check is usable alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError


class _UnloadedJudge:
    """Stands in for the judge while a benchmark's scorer reads its files; never asked anything."""

    name = backend = "not-loaded"

    def config(self) -> dict[str, Any]:
        return {}

    def __getattr__(self, attr: str) -> Any:
        raise EvalkitError("internal: the judge was used during a pre-work check")


def check_model_can(model: str, options: Mapping[str, Any], needs: set[str]) -> None:
    """Refuse a model whose registry entry says (without loading it) that it lacks a needed capability:
    edit (editing benchmarks), think, refine (SRR)."""
    from evalkit import registry
    from evalkit.generators.base import ModelSpec

    if not needs:
        return
    name, path = registry.parse_model(model)
    known = registry.lookup("models", name).probe(ModelSpec(name=name, path=path, options=dict(options)))
    for capability in sorted(needs):
        if known.get(capability) is not False:
            continue
        if capability == "refine":
            raise EvalkitError(
                f"{model} cannot refine its images, so --srr does not apply; SRR needs a unified model "
                "(bagel, alphagrpo)"
            )
        if capability == "edit":
            raise EvalkitError(
                f"this benchmark edits images but {model} cannot edit; use an editing-capable model "
                "(tiny-sd3-edit, bagel, or diffusers:<a pipeline that takes an `image`>)"
            )
        raise EvalkitError(f"{model} has no {capability} mode; drop that option for this model")


def check_scoring_inputs(bench: Any, score_options: Mapping[str, Any] | None = None) -> None:
    """A judged benchmark's scorer reads its files (question CSV, judge prompts) when built; build it
    with a stand-in judge now, so a missing file is found before generation rather than after."""
    if not getattr(bench, "needs_judge", False):
        return
    from evalkit.errors import DataError

    options = {k: v for k, v in dict(score_options or {}).items() if k != "judge"}
    try:
        bench.make_scorer(judge=_UnloadedJudge(), **options)
    except DataError as error:
        hint = "" if "evalkit data fetch" in str(error) else f"; run `evalkit data fetch {bench.name}`"
        raise DataError(f"{error}{hint}") from None


def check_writable(folder: Path) -> None:
    """The runs folder (or its nearest existing parent) accepts new files."""
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise EvalkitError(
            f"cannot create the run folder under {folder}: {probe_dir} is not a folder; "
            "pass --runs-dir DIR (a folder)"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".evalkit-write-check-"):
            pass
    except OSError as error:
        raise EvalkitError(
            f"cannot write under {probe_dir} ({error.strerror or error}); pass --runs-dir DIR you can write to"
        ) from None


def check_srr(
    model: str,
    options: Mapping[str, Any],
    *,
    rounds: int,
    gate: str,
    samples: list[Any],
    reward_judge: str | None = None,
    reward_judge_url: str | None = None,
    questions: str | os.PathLike | None = None,
    oracle_possible: bool = True,
) -> None:
    """SRR's requirements: a model that can refine, and a gate that can decide for every sample."""
    from evalkit.srr import SRRSettings

    if rounds <= 0:
        return
    SRRSettings(rounds, gate)
    check_model_can(model, options, {"refine"})
    if gate == "oracle" and not oracle_possible:
        raise EvalkitError("--srr-gate oracle needs a benchmark whose scorer marks images correct or wrong")
    if gate != "self":
        return
    if reward_judge is None:
        if questions is not None:
            raise EvalkitError("--srr-questions is for the DVReward self gate: add --srr-judge")
        return  # the model's own check; refine_run refuses a model without self_check()
    from evalkit.rewards.checks import check_reward

    try:
        check_reward(
            "dvreward",
            {"judge": reward_judge, "judge_url": reward_judge_url, "questions": questions},
            prompts=[(s.prompt, dict(s.metadata)) for s in samples],
        )
    except EvalkitError as error:
        raise EvalkitError(f"--srr-gate self cannot decide: {error}") from None


def check_before_work(
    bench: Any,
    samples: list[Any],
    *,
    model: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    needs: set[str] | None = None,
    judge: str | None = None,
    judge_url: str | None = None,
    score_options: Mapping[str, Any] | None = None,
    srr: Mapping[str, Any] | None = None,
    runs_dir: Path | None = None,
) -> None:
    """All of the above, cheapest first. `srr` holds rounds, gate, and for the self gate judge,
    judge_url and questions (the CLI's --srr-* options)."""
    if not samples:
        raise EvalkitError(f"{bench.name}: no samples to run (check --limit and the data folder)")
    if runs_dir is not None:
        check_writable(runs_dir)
    if model is not None:
        check_model_can(model, model_options or {}, set(needs or ()))
    if getattr(bench, "needs_judge", False) and not judge:
        raise EvalkitError(
            f"{bench.name} is scored by a judge: pass --judge hf:<id-or-path> or "
            "--judge openai:<model> --judge-url URL"
        )
    check_scoring_inputs(bench, score_options)
    if srr and int(srr.get("rounds") or 0) > 0 and model is not None:
        check_srr(
            model,
            model_options or {},
            rounds=int(srr["rounds"]),
            gate=str(srr.get("gate", "all")),
            samples=samples,
            reward_judge=srr.get("judge"),
            reward_judge_url=srr.get("judge_url"),
            questions=srr.get("questions"),
        )
    if judge:
        from evalkit.judges import check_judge

        check_judge(judge, url=judge_url)
