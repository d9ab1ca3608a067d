"""Inference-time Self-Reflective Refinement (SRR) over a run folder.

After the generate stage, each image goes through up to K rounds of reflect -> refine: the unified model is
told its image failed (AlphaGRPO's reflection prompt, built by the refiner), writes a diagnosis and an edit
instruction in think mode, and redraws the image in edit mode conditioned on the previous one. A gate
decides, before each round, whether the current image is refined:

    all     every image, every round
    self    when DVReward (or, without a reward, the model's own verdict) is below `threshold`
    oracle  only images the benchmark's own scorer marks wrong (`correct` false), as AlphaGRPO's released
            `--only_wrong` scripts do; tables footnote such rows as using the benchmark's answer

Layout, next to the generate stage's files (samples/<id>/):

    <k>.png, <k>.json          the FINAL image, read by the score stage (after SRR; before, the first pass)
    <k>.r0.png, <k>.r0.json    the first-pass image and its sidecar, copied before any round
    <k>.r<r>.png, .json        round r (1..K): think text, seed, seconds, refiner extras
    <k>.srr.json               written last: the sample's SRR summary; its presence means "done"

Each round image's sidecar also gets its gate signal (reward, oracle record or self check) and decision:
`refine`, `keep` (the gate judged the image good enough), `undecided` (no signal: the reward abstained or
the model's verdict could not be read; the image stays as it is and the decision counts as an abstention)
or `final` (no rounds left). The self check of a model without a reward (BAGEL, AlphaGRPO) is its own
reflection: it reflects on the image with the refinement's seed and prompt (so its reflection is the one
the redraw would write), then answers SELF_CHECK_QUESTION; `parse_self_verdict` reads the answer.
Everything is written atomically and decisions are stored, so a killed run resumes in the middle of the
rounds without redoing finished rounds or re-asking the gate. Rounds run breadth-first so the reward and
the oracle scorer see batches.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.errors import EvalkitError
from evalkit.generators.base import Generator
from evalkit.rewards.base import Scorer
from evalkit.runs import Run, atomic_write_bytes, atomic_write_json, sample_seed

GATES = ("all", "self", "oracle")
Progress = Callable[[int], None]

# AlphaGRPO's reflection prompt (alpha_grpo/constants.py, exact per ../shared/specs/method.md §A2). Refiners
# build their own instruction from the user prompt (the BAGEL adapter uses its eval-script variant); this
# one is for refiners that have none.
REFLECTION_PROMPT = (
    "The user requires to generate image of `{}`. You tried to generate an image based on the user's request, "
    "but you failed to create the correct image.\nReflect on what went wrong and write down the editing "
    "instruction that will help you do better and refine the image to meet user's request based on your own "
    "reflection."
)


def reflection_prompt(prompt: str) -> str:
    return REFLECTION_PROMPT.format(prompt)


# evalkit's question, asked after the model's reflection (AlphaGRPO has no self gate: its reflection prompt
# asserts failure and its released scripts gate on the benchmark's answer). The reflection is written under
# "you failed", so a model may lean towards "no"; the gate then refines more, it never refines less.
SELF_CHECK_QUESTION = (
    "Look at the image again. Does it already meet the user's request `{}`? Answer with one word: yes or no."
)
_WORD = re.compile(r"[a-z]+")


def parse_self_verdict(answer: str | None) -> bool | None:
    """True: the image meets the request (keep it); False: redraw; None: no readable verdict.

    The answer's first word must be yes or no, and the other word must not appear anywhere in it
    ("No, yes" is ambiguous); anything else is None, which the gate records as undecided, never as a
    decision not to redraw."""
    words = _WORD.findall((answer or "").lower())
    if not words or words[0] not in ("yes", "no"):
        return None
    other = "no" if words[0] == "yes" else "yes"
    return None if other in words else words[0] == "yes"


@dataclass(frozen=True)
class SRRSettings:
    """What changes SRR's output (the CLI writes it into the run's generation config as "srr")."""

    rounds: int
    gate: str = "all"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise EvalkitError(f"--srr must be >= 0, got {self.rounds}")
        if self.gate not in GATES:
            raise EvalkitError(f"unknown SRR gate '{self.gate}' (known: {', '.join(GATES)})")


# ------------------------------------------------------------------------------------------------ layout
def round_path(run: Run, sample_id: str, k: int, r: int) -> Path:
    return run.image_path(sample_id, k).with_name(f"{k}.r{r}.png")


def done_path(run: Run, sample_id: str, k: int) -> Path:
    return run.image_path(sample_id, k).with_name(f"{k}.srr.json")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def pending_srr(run: Run, bench: Benchmark, samples: list[Sample]) -> list[tuple[Sample, int]]:
    """Images whose SRR is not finished; the score stage must not run while this is non-empty."""
    return [
        (s, k)
        for s in samples
        for k in range(bench.images_per_sample)
        if not done_path(run, s.id, k).exists()
    ]


def _ensure_first_pass(run: Run, sample: Sample, k: int) -> None:
    """Copy the generate stage's image to round 0 once (never again: <k>.png later becomes the final)."""
    target = round_path(run, sample.id, k, 0)
    if target.exists():
        return
    source = run.image_path(sample.id, k)
    if not source.exists():
        raise EvalkitError(f"missing image {source}; run the generate stage before SRR")
    meta = run.load_image_meta(sample.id, k)
    atomic_write_json(target.with_suffix(".json"), {**meta, "round": 0})
    atomic_write_bytes(target, source.read_bytes())


def _current_round(run: Run, sample: Sample, k: int, rounds: int) -> int:
    """The round to look at next: the last round image whose predecessor decided to refine."""
    r = 0
    while r < rounds:
        meta = _read_json(round_path(run, sample.id, k, r).with_suffix(".json"))
        decision = meta.get("gate", {}).get("decision")
        if decision != "refine" or not round_path(run, sample.id, k, r + 1).exists():
            return r
        r += 1
    return r


# ------------------------------------------------------------------------------------------------ gating
@dataclass
class _Item:
    sample: Sample
    k: int
    r: int


@dataclass
class _Context:
    """What a self check needs to share its reflection with the refinement (seed and options)."""

    bench: str
    global_seed: int
    options: dict[str, Any]

    def seed(self, it: _Item) -> int:
        """The seed of round it.r + 1, the refinement this gate decision may lead to."""
        return sample_seed(self.global_seed, f"{self.bench}/srr{it.r + 1}", it.sample.id, it.k)


def _signals(
    items: list[_Item],
    run: Run,
    settings: SRRSettings,
    refiner: Generator,
    reward: Scorer | None,
    oracle_scorer: SampleScorer | None,
    context: _Context,
) -> list[dict[str, Any]]:
    """The gate record for each item's current image (reward, oracle record, self check, decision)."""
    images = [_load(round_path(run, it.sample.id, it.k, it.r)) for it in items]
    prompts = [it.sample.prompt for it in items]
    records: list[dict[str, Any]] = [_gate_header(settings) for _ in items]
    if reward is not None:
        metadata = [dict(it.sample.metadata) for it in items]
        if hasattr(reward, "score_with_details"):
            scored = reward.score_with_details(images, prompts, metadata)
        else:
            scored = [(value, None) for value in reward.score(images, prompts, metadata)]
        for record, (value, details) in zip(records, scored, strict=True):
            record["reward"] = value
            if details is not None:
                record["reward_details"] = details
    if settings.gate == "oracle":
        assert oracle_scorer is not None
        for record, result in zip(
            records, oracle_scorer.score_images([it.sample for it in items], images), strict=True
        ):
            if "correct" not in result:
                raise EvalkitError("oracle gating needs a benchmark whose scorer marks images correct/wrong")
            record["oracle"] = {"correct": bool(result["correct"])}
    if settings.gate == "self" and reward is None:
        for record, image, it in zip(records, images, items, strict=True):
            check = refiner.self_check(image, it.sample.prompt, seed=context.seed(it), **context.options)
            record.update(
                self_check=check.score,
                reflection=check.reflection,
                verdict=check.answer,
                seed=context.seed(it),
                **check.extra,
            )
    for record, it in zip(records, items, strict=True):
        record["decision"] = _decide(record, settings, it.r)
    return records


def _gate_header(settings: SRRSettings) -> dict[str, Any]:
    header: dict[str, Any] = {"mode": settings.gate}
    if settings.gate == "self":
        header["threshold"] = settings.threshold
    return header


def _settings_of(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("mode"), record.get("threshold")


def _decide(record: dict[str, Any], settings: SRRSettings, r: int) -> str:
    """'refine', 'keep' (the gate says the image is good enough), 'undecided' (the gate has no signal) or
    'final' (no rounds left)."""
    if r >= settings.rounds:
        return "final"
    if settings.gate == "all":
        return "refine"
    if settings.gate == "oracle":
        return "keep" if record["oracle"]["correct"] else "refine"
    signal = record.get("reward", record.get("self_check"))
    if signal is None:
        source = "the reward abstained" if "reward" in record else "the model's verdict could not be read"
        record["note"] = f"no signal ({source}): left as it is, counted as an abstention"
        return "undecided"
    return "refine" if signal < settings.threshold else "keep"


# ------------------------------------------------------------------------------------------------ rounds
def _refine_one(run: Run, it: _Item, refiner: Generator, context: _Context) -> None:
    """Round it.r + 1 from round it.r: reflect + redraw, stored with its think text."""
    r = it.r + 1
    seed = context.seed(it)
    options = context.options
    previous = _load(round_path(run, it.sample.id, it.k, it.r))
    started = time.perf_counter()
    out = refiner.refine(previous, it.sample.prompt, seed=seed, **options)
    meta = {
        "round": r,
        "from_round": it.r,
        "prompt": it.sample.prompt,
        "seed": seed,
        "seconds": round(out.seconds or time.perf_counter() - started, 4),
        "think": out.think,
        **out.extra,
    }
    path = round_path(run, it.sample.id, it.k, r)
    atomic_write_json(path.with_suffix(".json"), meta)
    buffer = io.BytesIO()
    out.image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _finalize(run: Run, sample: Sample, k: int, final_round: int, settings: SRRSettings) -> dict[str, Any]:
    """Put the final round's image at <k>.png (what the score stage reads), then write the done marker."""
    history = []
    for r in range(final_round + 1):
        meta = _read_json(round_path(run, sample.id, k, r).with_suffix(".json"))
        gate = meta.get("gate", {})
        step = {"round": r, "think": meta.get("think"), "reward": gate.get("reward")}
        for key in ("self_check", "reflection", "verdict"):
            if key in gate:
                step[key] = gate[key]
        history.append({**step, "decision": gate.get("decision")})
    changed = final_round > 0 and _pixels(round_path(run, sample.id, k, final_round)) != _pixels(
        round_path(run, sample.id, k, 0)
    )
    summary = {
        "rounds": settings.rounds,
        "gate": settings.gate,
        "threshold": settings.threshold if settings.gate == "self" else None,
        "final_round": final_round,
        "refined": changed,  # an image the rounds left pixel for pixel as it was is not "refined"
        "history": history,
    }
    if final_round > 0 and not changed:
        summary["unchanged"] = True
    base = _read_json(round_path(run, sample.id, k, 0).with_suffix(".json"))
    base = {key: value for key, value in base.items() if key not in ("round", "gate")}
    final = run.image_path(sample.id, k)
    atomic_write_json(final.with_suffix(".json"), {**base, "srr": summary})
    atomic_write_bytes(final, round_path(run, sample.id, k, final_round).read_bytes())
    atomic_write_json(done_path(run, sample.id, k), summary)
    return summary


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes() + repr(image.size).encode()


@dataclass
class SRRStats:
    samples: int = 0  # images handled in this call
    rounds_run: int = 0  # refine calls made in this call
    refined: int = 0  # images whose final image is a refinement
    kept: int = 0  # images the gate kept before the last round
    abstained: int = 0  # gate decisions made without a signal ("undecided")


def check_gate(
    gate: str,
    *,
    reward: Scorer | None,
    refiner: Any = None,
    samples: list[Sample] | None = None,
    refiner_can_self_check: bool | None = None,
) -> None:
    """Refuse, before any work, a gate that could not decide: a self gate without a signal, or with a
    reward that has no inputs (DVReward without questions) for some sample; it would leave every image
    unchanged under a row labelled as refined."""
    if gate != "self":
        return
    can_self_check = bool(
        refiner_can_self_check if refiner is None else getattr(refiner, "can_self_check", False)
    )
    if reward is None and not can_self_check:
        raise EvalkitError(
            "--srr-gate self needs a reward (--srr-judge + --srr-questions for DVReward) or a model with "
            "self_check(); use --srr-gate all or oracle otherwise"
        )
    check = getattr(reward, "check_prompts", None)
    if check is not None and samples is not None:
        try:
            check([(s.prompt, dict(s.metadata)) for s in samples])
        except EvalkitError as error:
            raise EvalkitError(f"--srr-gate self cannot decide: {error}") from None


def srr_counts(run: Run, bench: Benchmark, samples: list[Sample]) -> dict[str, Any]:
    """What the gate did over the run's finished images, for the summary and the table footnote:
    images refined (changed by their rounds), kept by the gate, gate decisions made without a signal
    (abstentions: undecided), and refinements that left their image unchanged."""
    counts = {"images": 0, "refined": 0, "kept": 0, "abstained": 0, "rounds_run": 0, "unchanged": 0}
    gate = None
    for sample in samples:
        for k in range(bench.images_per_sample):
            summary = _read_json(done_path(run, sample.id, k))
            if not summary:
                continue
            gate = summary.get("gate", gate)
            counts["images"] += 1
            counts["refined"] += bool(summary.get("refined"))
            counts["rounds_run"] += int(summary.get("final_round") or 0)
            counts["unchanged"] += bool(summary.get("unchanged"))
            for r in range(int(summary.get("final_round") or 0) + 1):
                meta = _read_json(round_path(run, sample.id, k, r).with_suffix(".json")).get("gate", {})
                counts["kept"] += meta.get("decision") == "keep"
                counts["abstained"] += "note" in meta
    return {"gate": gate, **counts}


def refine_run(
    run: Run,
    bench: Benchmark,
    samples: list[Sample],
    refiner: Generator,
    *,
    rounds: int,
    gate: str = "all",
    threshold: float = 0.5,
    reward: Scorer | None = None,
    oracle_scorer: SampleScorer | None = None,
    global_seed: int,
    refine_options: dict[str, Any] | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> SRRStats:
    """Run K SRR rounds on every image of `samples` that has none finished; resumable at any point."""
    settings = SRRSettings(rounds, gate, threshold)
    if gate == "oracle" and oracle_scorer is None:
        raise EvalkitError("--srr-gate oracle needs the benchmark's scorer (oracle_scorer)")
    check_gate(gate, reward=reward, refiner=refiner, samples=samples)
    context = _Context(bench.name, global_seed, dict(refine_options or {}))
    todo = pending_srr(run, bench, samples)
    stats = SRRStats(samples=len(todo))
    for sample, k in todo:
        _ensure_first_pass(run, sample, k)
    active = [_Item(s, k, _current_round(run, s, k, rounds)) for s, k in todo]
    while active:
        level = min(it.r for it in active)
        now = [it for it in active if it.r == level]
        _gate_round(now, run, settings, refiner, reward, oracle_scorer, batch_size, stats, context)
        for it in now:
            meta = _read_json(round_path(run, it.sample.id, it.k, it.r).with_suffix(".json"))
            if meta["gate"]["decision"] != "refine":
                summary = _finalize(run, it.sample, it.k, it.r, settings)
                stats.refined += summary["refined"]
                stats.kept += meta["gate"]["decision"] == "keep"
                active.remove(it)
                if progress is not None:
                    progress(1)
                continue
            if not round_path(run, it.sample.id, it.k, it.r + 1).exists():
                _refine_one(run, it, refiner, context)
                stats.rounds_run += 1
            it.r += 1
    return stats


def _gate_round(
    items: list[_Item],
    run: Run,
    settings: SRRSettings,
    refiner: Generator,
    reward: Scorer | None,
    oracle_scorer: SampleScorer | None,
    batch_size: int,
    stats: SRRStats,
    context: _Context,
) -> None:
    """Compute and store the gate record of every item whose current round has none yet."""
    missing = []
    for it in items:
        stored = _read_json(round_path(run, it.sample.id, it.k, it.r).with_suffix(".json")).get("gate")
        if stored is None:
            missing.append(it)
        elif _settings_of(stored) != _settings_of(_gate_header(settings)):
            raise EvalkitError(
                f"{run.root}: sample {it.sample.id}/{it.k} was refined with other SRR settings "
                f"({_settings_of(stored)}); use a new run folder"
            )
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        for it, record in zip(
            chunk, _signals(chunk, run, settings, refiner, reward, oracle_scorer, context), strict=True
        ):
            sidecar = round_path(run, it.sample.id, it.k, it.r).with_suffix(".json")
            atomic_write_json(sidecar, {**_read_json(sidecar), "gate": record})
            stats.abstained += "note" in record
