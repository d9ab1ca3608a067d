"""Reward ablation: one GRPO run per reward model, the base and each LoRA evaluated, one table.

The spec (reward_ablation/*.yaml) names the backbone, shared trainer settings, one entry per reward (scorer
options and trainer overrides) and the table columns. Training, evaluation and scorer construction are
injected, so the same driver runs the tiny offline backbone in tests and SD3.5-M on a cluster:

    result = run_reward_ablation(spec, pipeline_factory, scorer_factory, evaluate, prompts, out_dir)

Every stage is resumable: a reward whose final LoRA exists is not retrained (an interrupted run resumes from
its latest checkpoint), and an evaluation whose `eval.json` exists is not recomputed.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.grpo.config import GRPOConfig
from evalkit.report.tables import latex_escape
from evalkit.rewards.base import Scorer

FINAL_LORA = Path("final") / "lora"
BASE_ROW = "base"


@dataclass
class Column:
    key: str  # what `evaluate` returns, e.g. "tiif_short"
    title: str  # table header, e.g. "TIIF short"
    fmt: str = ".2f"
    higher_is_better: bool = True


@dataclass
class RewardRun:
    name: str  # row name and run folder, e.g. "pickscore"
    scorer: dict[str, Any] = field(default_factory=dict)  # options for scorer_factory
    train: dict[str, Any] = field(default_factory=dict)  # trainer overrides for this reward
    title: str | None = None  # row label in the table
    reward: str | None = None  # registry name when it differs from the row name (e.g. dvreward@alphagrpo)

    @property
    def registry_name(self) -> str:
        return self.reward or self.name


@dataclass
class AblationSpec:
    backbone: str
    train: dict[str, Any]  # GRPOConfig fields shared by every run
    rewards: list[RewardRun]
    columns: list[Column]
    prompts: str | None = None  # where the training prompts come from (interpreted by the caller)
    eval_limit: int | None = None  # default --limit of every evaluation (stated in the table footnote)
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # scorer options per evaluation
    # AlphaGRPO backbones: the official preset every reward trains from (`train` holds dotted overrides)
    preset: str | None = None
    trainer_options: dict[str, Any] = field(default_factory=dict)  # e.g. max_think_tokens
    eval_protocols: dict[str, str] = field(default_factory=dict)  # evaluation -> protocol (geneval@long)
    eval_model_options: dict[str, Any] = field(default_factory=dict)  # generator options of every row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AblationSpec:
        rewards = [
            RewardRun(name=name, **(opts or {})) for name, opts in dict(data.get("rewards", {})).items()
        ]
        columns = [Column(**c) for c in data.get("columns", [])]
        return cls(
            backbone=data["backbone"],
            train=dict(data.get("train", {})),
            rewards=rewards,
            columns=columns,
            prompts=data.get("prompts"),
            eval_limit=(data.get("eval") or {}).get("limit"),
            eval_options=dict((data.get("eval") or {}).get("score_options") or {}),
            preset=data.get("preset"),
            trainer_options=dict(data.get("trainer_options") or {}),
            eval_protocols=dict((data.get("eval") or {}).get("protocols") or {}),
            eval_model_options=dict((data.get("eval") or {}).get("model_options") or {}),
        )

    def reward(self, name: str) -> RewardRun:
        for run in self.rewards:
            if run.name == name:
                return run
        raise KeyError(f"reward {name!r} not in the ablation spec ({[r.name for r in self.rewards]})")


@dataclass
class AblationResult:
    rows: dict[str, dict[str, float]]  # row name -> column key -> value (base first)
    markdown: str
    latex: str
    lora_paths: dict[str, Path]


def load_ablation_spec(path: str | Path) -> AblationSpec:
    """Read a spec; a scorer's relative `questions` file is relative to the spec's folder."""
    import yaml

    spec = AblationSpec.from_dict(yaml.safe_load(Path(path).read_text()))
    for run in spec.rewards:
        questions = run.scorer.get("questions")
        if isinstance(questions, str) and not Path(questions).is_absolute():
            run.scorer["questions"] = str(Path(path).resolve().parent / questions)
    return spec


def run_config(spec: AblationSpec, run: RewardRun, out_dir: Path, steps: int | None) -> GRPOConfig:
    """Trainer config of one reward's run: shared settings, the reward's overrides, its own folder."""
    values = {**spec.train, **run.train}
    values["output_dir"] = str(out_dir / run.name)
    values["rewards"] = {run.name: 1.0}
    if steps is not None:
        values["num_epochs"] = steps
    return GRPOConfig.from_dict(values)


def train_reward(
    spec: AblationSpec,
    run: RewardRun,
    pipeline_factory: Callable[[], Any],
    scorer_factory: Callable[[str, dict[str, Any]], Scorer],
    prompts: Sequence[str | Mapping[str, Any]],
    out_dir: Path,
    steps: int | None = None,
) -> Path:
    """Train (or resume, or skip when done) the run for one reward; returns its final LoRA folder."""
    from evalkit.grpo.trainer import GRPOTrainer

    final = out_dir / run.name / FINAL_LORA
    if (final / "pytorch_lora_weights.safetensors").exists():
        return final
    config = run_config(spec, run, out_dir, steps)
    if any((Path(config.output_dir) / "checkpoints").glob("checkpoint-*")):
        config.resume_from = "latest"
    trainer = GRPOTrainer(
        config, pipeline_factory(), {run.name: scorer_factory(run.registry_name, run.scorer)}, prompts
    )
    trainer.train()
    trainer.save_lora(final)
    trainer.accelerator.wait_for_everyone()
    return final


def _cached_eval(
    folder: Path,
    row: str,
    lora: Path | None,
    evaluate: Callable[[str, Path | None], Mapping[str, float]],
    comm: Any = None,
) -> dict[str, float]:
    """The row's values, from `eval.json` when it exists. Every rank evaluates (its shard); only rank 0
    writes the file, and the barrier after it keeps the ranks in step."""
    cache = folder / "eval.json"
    if cache.exists():
        return json.loads(cache.read_text())
    values = {k: None if v is None else float(v) for k, v in evaluate(row, lora).items()}
    if comm is None or comm.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=2))
        tmp.replace(cache)
    if comm is not None:
        comm.barrier()
    return values


def _best(values: list[float], higher_is_better: bool) -> float | None:
    """The value to bold, or None when there is nothing to choose (no values, or all tied)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(set(finite)) < 2:
        return None
    return max(finite) if higher_is_better else min(finite)


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[Column],
    titles: Mapping[str, str] | None = None,
    footnotes: Sequence[str] = (),
) -> tuple[str, str]:
    """(Markdown, LaTeX) tables: one row per run, best value of each column in bold (never when all are
    tied); missing = "–"; footnotes once, under the table."""
    titles = dict(titles or {})
    cells: dict[str, list[str]] = {row: [] for row in rows}
    for col in columns:
        best = _best([rows[r].get(col.key, math.nan) for r in rows], col.higher_is_better)
        for row, values in rows.items():
            value = values.get(col.key)
            if value is None or not math.isfinite(value):
                cells[row].append("")
                continue
            text = format(value, col.fmt)
            cells[row].append(f"\x00{text}" if best is not None and value == best else text)

    def md(cell: str) -> str:
        return "–" if not cell else (f"**{cell[1:]}**" if cell.startswith("\x00") else cell)

    def tex(cell: str) -> str:
        return "--" if not cell else (f"\\textbf{{{cell[1:]}}}" if cell.startswith("\x00") else cell)

    header = ["Reward"] + [c.title for c in columns]
    md_lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [" ---: "] * len(columns)) + "|"]
    tex_lines = [
        "% needs \\usepackage{booktabs}; nothing else",
        "\\begin{tabular}{l" + "r" * len(columns) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for row, row_cells in cells.items():
        label = titles.get(row, row)
        md_lines.append("| " + " | ".join([label] + [md(c) for c in row_cells]) + " |")
        tex_label = latex_escape(label)
        tex_lines.append(" & ".join([tex_label] + [tex(c) for c in row_cells]) + " \\\\")
    tex_lines += ["\\bottomrule", "\\end{tabular}"]
    if footnotes:
        md_lines += [""] + [f"{i}. {note}" for i, note in enumerate(footnotes, 1)]
        tex_lines += ["\\par\\footnotesize " + " ".join(f"({i}) {latex_escape(n)}" for i, n in enumerate(footnotes, 1))]
    return "\n".join(md_lines) + "\n", "\n".join(tex_lines) + "\n"


def run_reward_ablation(
    spec: AblationSpec,
    pipeline_factory: Callable[[], Any] | None,
    scorer_factory: Callable[[str, dict[str, Any]], Scorer] | None,
    evaluate: Callable[[str, Path | None], Mapping[str, float]],
    prompts: Sequence[str | Mapping[str, Any]],
    out_dir: str | Path,
    rewards: Sequence[str] | None = None,
    steps: int | None = None,
    footnotes: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    trainer: Callable[[RewardRun], Path] | None = None,
    comm: Any = None,
) -> AblationResult:
    """Train one LoRA per reward, evaluate base + each LoRA, write ablation.md / ablation.tex / results.json.

    `evaluate(row, lora_folder_or_None)` returns ``{column key: value}`` (None = the base model);
    `scorer_factory(reward name, options)` builds the reward's Scorer; `steps` overrides `num_epochs`.
    `trainer(run) -> adapter folder` replaces the Flow-GRPO training (AlphaGRPO on BAGEL passes its own;
    then `pipeline_factory` and `scorer_factory` are unused). `comm` (rank, barrier) makes the driver
    rank-aware under torchrun: every rank trains and evaluates, only rank 0 writes the shared files.
    """
    out_dir = Path(out_dir)
    rank = comm.rank if comm is not None else 0
    say = progress or (_stderr if rank == 0 else _quiet)
    chosen = [spec.reward(name) for name in rewards] if rewards else list(spec.rewards)
    stages = 2 * len(chosen) + 1
    loras: dict[str, Path] = {}
    not_trained: dict[str, str] = {}
    for i, run in enumerate(chosen, 1):
        say(f"[{i}/{stages}] training {run.name} ({out_dir / run.name})")
        try:
            if trainer is not None:
                loras[run.name] = trainer(run)
            else:
                loras[run.name] = train_reward(
                    spec, run, pipeline_factory, scorer_factory, prompts, out_dir, steps
                )
        except EvalkitError as error:  # e.g. every rollout abstained: a row that says why, not a tie
            not_trained[run.name] = str(error)
            say(f"[{i}/{stages}] {run.name} not trained: {error}")
        if comm is not None:
            comm.barrier()  # rank 0 saves the adapter; nobody evaluates it before it is on disk
    say(f"[{len(chosen) + 1}/{stages}] evaluating {BASE_ROW}")
    rows = {BASE_ROW: _cached_eval(out_dir / BASE_ROW, BASE_ROW, None, evaluate, comm)}
    for i, run in enumerate(chosen, len(chosen) + 2):
        if run.name in not_trained:
            rows[run.name] = {}
            continue
        say(f"[{i}/{stages}] evaluating {run.name}")
        rows[run.name] = _cached_eval(out_dir / run.name, run.name, loras[run.name], evaluate, comm)
    titles = {BASE_ROW: f"{spec.backbone} (base)", **{r.name: r.title or r.name for r in chosen}}
    notes = list(footnotes) + [f"{titles[name]}: not trained ({why})" for name, why in not_trained.items()]
    notes += [
        f"{col.title}: no value in any row (every record failed or abstained)"
        for col in spec.columns
        if all(values.get(col.key) is None for values in rows.values())
    ]
    markdown, latex = format_table(rows, spec.columns, titles, notes)
    if rank == 0:
        (out_dir / "ablation.md").write_text(markdown)
        (out_dir / "ablation.tex").write_text(latex)
        results = {"backbone": spec.backbone, "rows": rows, "not_trained": not_trained, "footnotes": notes}
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    if comm is not None:
        comm.barrier()
    return AblationResult(rows=rows, markdown=markdown, latex=latex, lora_paths=loras)


def _quiet(line: str) -> None:
    """Ranks other than 0 say nothing (rank 0 reports for all)."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
