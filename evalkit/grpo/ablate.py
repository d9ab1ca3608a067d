"""The reward ablation behind `evalkit ablate-reward`: one GRPO training per reward, then the base model and
each LoRA evaluated with `evalkit.evaluate` (TIIF-Bench short and long descriptions, GenEval) and written as
the paper's reward-ablation table.

Training, evaluation runs and the table are all resumable: finished trainings and evaluations are skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.grpo.ablation import AblationSpec
from evalkit.paths import manifest_dir


@dataclass(frozen=True)
class AblationEval:
    """One evaluation of the table: a protocol, the table cells it fills, and scorer options it takes."""

    protocol: str
    cells: dict[str, str]  # ablation column key -> the benchmark's official table column
    score_options: tuple[str, ...] = ()  # which of the ablation's scorer settings apply


EVALS = {
    "tiif": AblationEval("tiif", {"tiif_short": "Overall (short)", "tiif_long": "Overall (long)"}),
    "geneval": AblationEval("geneval", {"geneval": "Overall"}, score_options=("detector",)),
}


def spec_path(backbone: str) -> Path:
    path = manifest_dir("reward_ablation") / f"{backbone}.yaml"
    if not path.exists():
        from evalkit.errors import did_you_mean

        raise did_you_mean("ablation backbone", backbone, [p.stem for p in path.parent.glob("*.yaml")])
    return path


def _sd3_model(backbone: str) -> Callable[[str, Path | None], tuple[str, dict[str, Any]]]:
    """SD3 rows: the backbone itself, with `lora=` for a trained row."""
    return lambda row, lora: (backbone, {"lora": str(lora)} if lora else {})


def make_evaluator(
    backbone: str,
    evals: list[str],
    *,
    data_dir: Path,
    runs_dir: Path,
    judge: str | None,
    judge_url: str | None,
    detector: str,
    limit: int | None,
    seed: int,
    batch_size: int,
    eval_options: dict[str, dict[str, Any]] | None = None,
    protocols: dict[str, str] | None = None,
    model_for: Callable[[str, Path | None], tuple[str, dict[str, Any]]] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    comm: Any = None,
) -> Callable[[str, Path | None], dict[str, float | None]]:
    """evaluate(row, lora) -> {tiif_short, tiif_long, geneval}: `evalkit.evaluate` per protocol, the
    generator loaded once per row. `eval_options` adds scorer options per evaluation (e.g. the tiny spec caps
    the TIIF judge's reply length); `protocols` replaces an evaluation's protocol (BAGEL: geneval@long);
    `model_for(row, lora) -> (model, options)` names each row's model (default: the backbone + `lora=`).
    Under torchrun (`comm` with several ranks) every rank evaluates its shard; rank 0 merges the shards
    and hands the table to every rank."""
    from evalkit.evaluator import evaluate, merge_run
    from evalkit.registry import lookup
    from evalkit.runs import stable_hash

    scorer_settings = {"detector": detector}
    model_for = model_for or _sd3_model(backbone)
    sharded = comm is not None and comm.world_size > 1

    def evaluate_row(row: str, lora: Path | None) -> dict[str, float | None]:
        model, options = model_for(row, lora)
        loaded: dict[str, Any] = {}
        result: dict[str, float | None] = {}
        for name in evals:
            spec = EVALS[name]
            protocol = (protocols or {}).get(name, spec.protocol)
            judged = lookup("benchmarks", protocol.split("@")[0]).load().needs_judge
            outcome = evaluate(
                protocol, model, model_options=options, limit=limit, seed=seed, runs_dir=runs_dir,
                data_dir=data_dir, judge=judge if judged else None, judge_url=judge_url if judged else None,
                score_options={**{k: scorer_settings[k] for k in spec.score_options},
                               **(eval_options or {}).get(name, {})},
                batch_size=batch_size, device=device, dtype=dtype,
                generator=loaded.get("generator"), show_progress=False,
            )  # fmt: skip
            loaded["generator"] = outcome.generator or loaded.get("generator")
            if sharded:
                comm.barrier()  # every shard's records are on disk
                table = None
                if comm.rank == 0:
                    summary = outcome.summary or merge_run(outcome.run_dir, data_dir=data_dir)[1].summary
                    table = (summary or {}).get("table", {})
                table = comm.broadcast(table)
            else:
                table = outcome.table
            result.update({key: table.get(column) for key, column in spec.cells.items()})
        stable_hash(result)  # fails loudly on a non-serialisable value before it is cached
        return result

    return evaluate_row


def _reward_option(items: Sequence[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """`--reward-option NAME.KEY=VALUE` (VALUE parsed as YAML) -> {NAME: {KEY: VALUE}}."""
    import yaml

    from evalkit.errors import did_you_mean

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise EvalkitError(
                f"--reward-option expects NAME.KEY=VALUE, got '{item}' "
                "(e.g. --reward-option unifiedreward.judge_url=http://host:30000/v1)"
            )
        if name not in names:
            raise did_you_mean("reward", name, names)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.setdefault(name, {})[key] = value
    return out


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    from evalkit.grpo.alphagrpo.config import parse_overrides

    return parse_overrides(items)


def _sd3_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`--set` on an SD3 backbone: GRPOConfig fields (YAML values), an unknown one named with the closest."""
    import dataclasses

    from evalkit.errors import did_you_mean
    from evalkit.grpo.config import GRPOConfig

    values = _parse_sets(items)
    known = [f.name for f in dataclasses.fields(GRPOConfig)]
    for key in values:
        if key not in known:
            raise did_you_mean("GRPOConfig field", key, known)
    return values


def _bagel_rows(base: Path, options: dict[str, Any]) -> Callable[[str, Path | None], tuple[str, dict]]:
    """BAGEL rows: the base row is `bagel`, a trained row `alphagrpo` (RT2I variant) with its adapter merged,
    both on the same base folder and with the spec's generator options."""

    def model_for(row: str, lora: Path | None) -> tuple[str, dict[str, Any]]:
        if lora is None:
            return "bagel", {**options, "base": str(base)}
        return "alphagrpo", {**options, "base": str(base), "lora": str(lora), "variant": "rt2i"}

    return model_for


def _base_folder(backbone: str, base: Path | None) -> Path | None:
    """The backbone's weights folder: --base, else the checkpoint manifest's (tiny-bagel: built here)."""
    if base is not None:
        if not Path(base).expanduser().exists():
            raise EvalkitError(f"--base {base} does not exist")
        return Path(base).expanduser()
    if backbone == "tiny-bagel":
        from evalkit.testing.bagel import tiny_bagel_folder

        return tiny_bagel_folder()
    if backbone in ("bagel", "sd35m"):
        from evalkit.checkpoints import resolve

        return resolve(backbone)
    return None


@contextlib.contextmanager
def _process_group() -> Iterator[Any]:
    """The ranks' Comm under torchrun / accelerate launch (WORLD_SIZE > 1), else None. A process group
    created here is destroyed on the way out (an undestroyed gloo group can abort the interpreter)."""
    from evalkit.runs import Shard

    if Shard.from_env().world_size == 1:
        yield None
        return
    from evalkit.grpo.alphagrpo.comm import Comm
    from evalkit.grpo.alphagrpo.launch import _init_distributed

    created = _init_distributed()
    try:
        yield Comm()
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _footnotes(
    spec: AblationSpec,
    spec_name: str,
    evals: list[str],
    limit: int | None,
    tiny: bool,
    overrides: Sequence[str],
) -> list[str]:
    notes = []
    if limit is None and spec.eval_limit is not None:
        notes.append(
            f"partial evaluation: the first {spec.eval_limit} samples of each benchmark per row "
            f"(eval.limit in {spec_name}; pass --limit to change it)"
        )
    elif limit is not None:
        notes.append(f"partial evaluation: the first {limit} samples of each benchmark per row (--limit)")
    for name, values in spec.eval_options.items():
        if name in evals:
            settings = ", ".join(f"{k}={v}" for k, v in values.items())
            notes.append(f"{name} scored with {settings} (eval.score_options in {spec_name})")
    for name, protocol in spec.eval_protocols.items():
        if name in evals:
            notes.append(f"{name} evaluated as protocol {protocol} (eval.protocols in {spec_name})")
    if spec.eval_model_options:
        settings = ", ".join(f"{k}={v}" for k, v in spec.eval_model_options.items())
        notes.append(f"every row generated with {settings} (eval.model_options in {spec_name})")
    if spec.preset is not None:
        changed = {**spec.train, **_parse_sets(overrides)}
        what = ", ".join(f"{k}={v}" for k, v in changed.items()) or "none (the official values)"
        notes.append(
            f"trained with the AlphaGRPO preset {spec.preset}, reward_fn = the row's reward alone; "
            f"values changed from the preset: {what} (train in {spec_name}, --set)"
        )
    elif overrides:
        notes.append(f"trainer settings changed with --set {' '.join(overrides)}")
    if tiny:
        notes.append("tiny random-weight backbone, rewards and judge: the numbers only check the pipeline")
    return notes


def ablate(
    backbone: str,
    *,
    rewards: list[str] | None,
    steps: int | None,
    evals: list[str],
    prompts_file: Path | None,
    out_dir: Path,
    data_dir: Path,
    judge_spec: str | None,
    judge_url: str | None,
    detector: str | None,
    limit: int | None,
    seed: int = 42,
    batch_size: int = 4,
    overrides: Sequence[str] = (),
    reward_options: Sequence[str] = (),
    base: Path | None = None,
):
    """Run (or resume) the whole ablation; returns the AblationResult with Markdown and LaTeX tables.

    SD3 backbones train with Flow-GRPO (`evalkit.grpo.trainer`), BAGEL backbones (a spec with a `preset`)
    with AlphaGRPO (`evalkit.grpo.alphagrpo`). Under torchrun every rank trains and evaluates its shard;
    rank 0 alone writes the shared files. Every user error is raised before any model loads."""
    from evalkit.grpo.ablation import load_ablation_spec, run_reward_ablation
    from evalkit.rewards.checks import JUDGED, check_reward

    unknown = [e for e in evals if e not in EVALS]
    if unknown:
        raise EvalkitError(f"unknown evaluation '{unknown[0]}' (use {', '.join(EVALS)})")
    spec_file = spec_path(backbone)
    spec = load_ablation_spec(spec_file)
    names = [r.name for r in spec.rewards]
    for name in rewards or []:
        if name not in names:
            from evalkit.errors import did_you_mean

            raise did_you_mean("reward", name, names)
    chosen = [spec.reward(name) for name in rewards] if rewards else list(spec.rewards)
    for name, values in _reward_option(reward_options, names).items():
        spec.reward(name).scorer.update(values)
    alphagrpo, tiny = spec.preset is not None, backbone.startswith("tiny")
    if prompts_file is None:
        if not tiny:
            kind = "an AlphaGRPO-format .jsonl with questions, or .txt" if alphagrpo else ".txt or .jsonl"
            raise EvalkitError(f"pass --prompts FILE for --backbone {backbone} (training prompts: {kind})")
        from evalkit.paths import DEMO_DATA_DIR

        prompts_file = DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl"  # pipeline check only
    if alphagrpo:
        from evalkit.grpo.alphagrpo.trainer import read_prompts as read_records

        records = read_records(prompts_file)
        if not records:
            raise EvalkitError(f"no prompts in {prompts_file}")
        pairs = [(r["prompt"], r) for r in records]
    else:
        from evalkit.dvreward.decompose import read_prompts

        prompts = read_prompts(prompts_file)
        pairs = [(p, {}) for p in prompts]
    if alphagrpo and not tiny:  # judged rewards take the explicit judge: there is no default one
        missing = [r.name for r in chosen if r.registry_name in JUDGED and not r.scorer.get("judge")]
        if missing and not judge_spec:
            raise EvalkitError(
                f"reward(s) {', '.join(missing)} need a judge: pass --judge openai:<model> --judge-url URL "
                "(or hf:<id>; --reward-option NAME.judge=... sets one reward's own)"
            )
        for run in chosen:
            if run.name in missing:
                run.scorer.update({"judge": judge_spec, **({"judge_url": judge_url} if judge_url else {})})
    footnotes = _footnotes(spec, spec_file.name, evals, limit, tiny, overrides)
    if limit is None:
        limit = spec.eval_limit
    for run in chosen:  # a reward that cannot work is refused before any training starts
        check_reward(run.registry_name, run.scorer, prompts=pairs)
        if run.registry_name in JUDGED and not tiny:  # which model judged each reward (never its URL)
            footnotes.append(
                f"{run.title or run.name} ({run.registry_name}) judged by {run.scorer.get('judge')}"
            )
    judge_spec = judge_spec or ("tiny" if tiny else None)
    if "tiif" in evals and not judge_spec:
        raise EvalkitError(
            "TIIF-Bench needs a judge: --judge hf:<id> or --judge openai:<model> --judge-url URL"
        )
    if alphagrpo:
        from evalkit.grpo.alphagrpo.ablate import reward_configs

        configs = reward_configs(spec, chosen, _parse_sets(overrides), out_dir, steps)
    else:
        spec.train.update(_sd3_overrides(overrides))
    base = _base_folder(backbone, base)  # missing weights: one line, still before anything loads
    with _process_group() as comm:
        common: dict[str, Any] = dict(
            data_dir=data_dir, runs_dir=out_dir / "eval", judge=judge_spec, judge_url=judge_url,
            detector=detector or ("tiny" if tiny else "mmdet"), limit=limit, seed=seed, batch_size=batch_size,
            eval_options=spec.eval_options, protocols=spec.eval_protocols, comm=comm,
        )  # fmt: skip
        if alphagrpo:
            from evalkit.grpo.alphagrpo.ablate import make_trainer

            assert base is not None
            device = "cpu" if tiny else None
            evaluate = make_evaluator(
                backbone, evals, model_for=_bagel_rows(base, spec.eval_model_options), device=device,
                dtype="fp32" if tiny else None, **common,
            )  # fmt: skip
            trainer = make_trainer(configs, model=str(base), prompts=[r for _, r in pairs], device=device)
            return run_reward_ablation(
                spec, None, None, evaluate, [p for p, _ in pairs], out_dir, rewards=rewards, steps=steps,
                footnotes=footnotes, trainer=trainer, comm=comm,
            )  # fmt: skip
        from evalkit.grpo.launch import load_pipeline
        from evalkit.rewards.factory import build_reward

        evaluate = make_evaluator(backbone, evals, **common)
        return run_reward_ablation(
            spec, lambda: load_pipeline(str(base) if base else backbone), build_reward, evaluate,
            [p for p, _ in pairs],
            out_dir, rewards=rewards, steps=steps, footnotes=footnotes, comm=comm,
        )  # fmt: skip
