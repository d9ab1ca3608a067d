"""WISE under one protocol: samples, scorer and table for the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.benchmarks.wise.aggregate import aggregate_records
from evalkit.benchmarks.wise.data import (
    CATEGORIES,
    COLUMN_NAMES,
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    VARIANTS,
    category_of,
    load_judge_prompts,
    load_prompts,
)
from evalkit.benchmarks.wise.scorer import WISEScorer
from evalkit.errors import EvalkitError


class WISE(Benchmark):
    """WISE under wise@legacy (default) or wise@verified; one image per prompt named by prompt_id."""

    name = "wise"
    # BAGEL scripts/eval/run_wise.sh: BAGEL's t2i settings, thinking first (sampled at T = 0.3, <= 2048 tokens)
    generation_presets = {
        "bagel": {"think": True, "think_do_sample": True, "think_temperature": 0.3, "max_think_tokens": 2048}
    }
    needs_judge = True  # `evalkit run` refuses to start without --judge
    scorer_options = ("max_attempts", "max_tokens")  # WISEScorer's keywords
    images_per_sample = 1

    def __init__(
        self, data_dir: Path | str, protocol: str = "wise@legacy", think: bool = False, rewrite: bool = False
    ):
        protocol = DEFAULT_PROTOCOL if protocol == "wise" else protocol  # `evalkit run wise`
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown WISE protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        self.root = Path(data_dir) / "wise"
        self.protocol, self.think, self.rewrite = protocol, think, rewrite
        self.columns = [COLUMN_NAMES[c] for c in CATEGORIES] + ["Overall"]

    def samples(self) -> list[Sample]:
        ranges = VARIANTS[self.protocol].ranges
        return [
            Sample(
                id=str(row["prompt_id"]),
                prompt=row["Prompt"],
                metadata={
                    "prompt_id": row["prompt_id"],
                    "category": category_of(row["prompt_id"], ranges),
                    "subcategory": row["Subcategory"],
                    "explanation": row["Explanation"],
                },
            )
            for row in load_prompts(self.root, self.protocol, self.rewrite)
        ]

    def request_options(self, sample: Sample) -> dict[str, Any]:
        """--think is passed through; generators without a think mode ignore or refuse it."""
        return {**super().request_options(sample), **({"think": True} if self.think else {})}

    def make_scorer(self, **options: Any) -> WISEScorer:
        """options: judge (required), max_attempts (3), max_tokens (protocol: 2000 legacy, 500 verified)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("WISE needs a judge (--judge hf:<id> or --judge openai:<model>)")
        system, user = load_judge_prompts(self.root, self.protocol)
        return WISEScorer(judge, system, user, protocol=self.protocol, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = aggregate_records(records, self.protocol)
        return {**out, "table": {c: out[c] for c in self.columns}, "n_records": len(records)}
