"""GenEval under one protocol: samples, scorer options and table for the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit import data
from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.benchmarks.geneval.aggregate import COLUMNS, summarize
from evalkit.benchmarks.geneval.data import load_metadata, load_object_names
from evalkit.benchmarks.geneval.rules import GenEvalOptions
from evalkit.benchmarks.geneval.scorer import GenEvalScorer, build_geneval_scorer


class GenEval(Benchmark):
    name = "geneval"
    # BAGEL scripts/eval/run_geneval.sh: BAGEL's t2i settings with text CFG over the whole trajectory
    generation_presets = {"bagel": {"cfg_interval": (0.0, 1.0)}}
    columns = [*COLUMNS.values(), "Overall"]

    def __init__(self, data_dir: Path, protocol: str = "geneval"):
        spec = data.protocol(protocol)
        self.protocol = protocol
        self.data_dir = Path(data_dir)
        self.images_per_sample = int(spec["images_per_prompt"])
        self.classnames = load_object_names(self.data_dir)
        self.metadata = load_metadata(
            data.require_file(self.data_dir, spec["prompts"], "geneval"), self.classnames
        )

    def samples(self) -> list[Sample]:
        return [Sample(id=f"{i:05d}", prompt=m["prompt"], metadata=m) for i, m in enumerate(self.metadata)]

    @staticmethod
    def _split_options(options: dict[str, Any]) -> tuple[GenEvalOptions, dict[str, Any]]:
        """Rule constants (threshold, ...) vs. scorer construction options (detector, device, batch_size)."""
        fields = GenEvalOptions.__dataclass_fields__
        defaults = GenEvalOptions()
        unknown = set(options) - set(fields) - {"detector", "device", "batch_size"}
        if unknown:
            from evalkit.errors import did_you_mean

            raise did_you_mean("GenEval option", sorted(unknown)[0], [*fields, "detector"])
        rules = GenEvalOptions(
            **{k: type(getattr(defaults, k))(v) for k, v in options.items() if k in fields}
        )
        return rules, {k: v for k, v in options.items() if k not in fields}

    def scorer_config(self, **options: Any) -> dict[str, Any]:
        rules, rest = self._split_options(options)
        return {"detector": rest.get("detector", "mmdet"), "rules": rules.to_dict()}

    def make_scorer(self, **options: Any) -> GenEvalScorer:
        rules, rest = self._split_options(options)
        return build_geneval_scorer(self.data_dir, options=rules, **rest)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        summary = summarize(records)
        table = {COLUMNS[tag]: summary["tasks"][tag]["score"] for tag in COLUMNS if tag in summary["tasks"]}
        table["Overall"] = summary["overall"]
        return {"table": table, **summary}
