"""TIIF-Bench under one protocol: samples, scorer and table for the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.benchmarks.tiif.aggregate import flat_table, pooled_counts, summarize, table_columns
from evalkit.benchmarks.tiif.data import (
    LENGTHS,
    PROTOCOLS,
    SPLITS,
    load_prompts,
    load_templates,
    official_indices,
    sample_id,
)
from evalkit.benchmarks.tiif.scorer import TIIFScorer
from evalkit.errors import EvalkitError


class TIIF(Benchmark):
    """TIIF-Bench under one protocol: one image per (prompt, short|long description)."""

    name = "tiif"
    generation_presets = {"bagel": {}}  # BAGEL's plain t2i settings (BAGEL has no script for it)
    needs_judge = True  # `evalkit run` refuses to start without --judge
    scorer_options = ("seed", "max_attempts", "max_tokens")  # TIIFScorer's keywords
    images_per_sample = 1

    def __init__(
        self,
        data_dir: Path | str,
        protocol: str = "tiif",
        split: str = "testmini",
        lengths: tuple[str, ...] = LENGTHS,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown TIIF protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if split not in SPLITS:
            raise EvalkitError(f"unknown TIIF-Bench split '{split}' (known: {', '.join(SPLITS)})")
        bad = [ln for ln in lengths if ln not in LENGTHS]
        if bad:
            raise EvalkitError(f"unknown description length(s) {bad} (known: {', '.join(LENGTHS)})")
        self.root = Path(data_dir) / "tiif_bench"
        self.protocol, self.split, self.lengths = protocol, split, tuple(lengths)
        self.columns = table_columns()

    def samples(self) -> list[Sample]:
        """One sample per (prompt, length); metadata official_idx = image index in the official layout."""
        prompts = load_prompts(self.root, self.split)
        if self.split == "test":
            official = {(p.dimension, p.line_idx): p.line_idx for p in prompts}
        else:
            official = official_indices(self.root, prompts)
        out = []
        for p in prompts:
            for length in self.lengths:
                prompt = p.short if length == "short" else p.long
                meta = {
                    "dimension": p.dimension,
                    "length": length,
                    "line_idx": p.line_idx,
                    "official_idx": official.get((p.dimension, p.line_idx)),
                    "split": self.split,
                    "questions": list(p.questions),
                    "answers": list(p.answers),
                }
                out.append(
                    Sample(id=sample_id(p.dimension, length, p.line_idx), prompt=prompt, metadata=meta)
                )
        return out

    def make_scorer(self, **options: Any) -> TIIFScorer:
        """options: judge (required), seed, max_attempts, max_tokens."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("TIIF-Bench needs a judge (--judge hf:<id> or --judge openai:<model>)")
        system, templates = load_templates(self.root)
        return TIIFScorer(judge, system, templates, protocol=self.protocol, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        counts, n_scored, n_failed = pooled_counts(records)
        summary = summarize(counts, excel_rounding=self.protocol == "tiif@official")
        table = flat_table(summary)
        return {
            **table,
            "table": table,
            "n_records": len(records),
            "n_scored": n_scored,
            "n_failed": n_failed,
            "protocol": self.protocol,
            "summary": summary,
        }
