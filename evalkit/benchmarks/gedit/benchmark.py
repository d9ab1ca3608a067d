"""GEdit-Bench under one protocol: samples with their source images, scorer and table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.benchmarks.gedit.aggregate import summarize
from evalkit.benchmarks.gedit.data import LANGUAGES, PROTOCOLS, SUBSETS, load_prompts, load_rows
from evalkit.benchmarks.gedit.scorer import GEditScorer
from evalkit.errors import EvalkitError


class GEdit(Benchmark):
    """GEdit-Bench (EN by default); samples carry the source image for editing-capable generators."""

    name = "gedit"
    # BAGEL scripts/eval/run_gedit.sh: BAGEL's edit settings with image CFG 1.5 from t = 0.4 (its
    # cfg_type='serial_text_img' is not read by the official sampler)
    generation_presets = {"bagel": {"cfg_img_scale": 1.5, "cfg_interval": (0.4, 1.0)}}
    needs_judge = True  # `evalkit run` refuses to start without --judge
    scorer_options = ("rounds", "temperature", "max_tokens", "jpeg")  # GEditScorer's keywords
    protocol = "gedit"
    images_per_sample = 1

    def __init__(
        self, data_dir: Path | str, protocol: str = "gedit", language: str = "en", subset: str = "fullset"
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown GEdit protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if language not in LANGUAGES:
            raise EvalkitError(f"unknown language '{language}' (known: {', '.join(LANGUAGES)})")
        if subset not in SUBSETS:
            raise EvalkitError(f"unknown subset '{subset}' (known: {', '.join(SUBSETS)})")
        self.root = Path(data_dir) / "gedit_bench"
        self.protocol, self.language, self.subset = protocol, language, subset
        self.columns = ["G_SC", "G_PQ", "G_O"]

    def samples(self) -> list[Sample]:
        out = []
        for row in load_rows(self.root):
            if row["instruction_language"] != self.language:
                continue
            if self.subset == "intersection" and not row["Intersection_exist"]:
                continue
            meta = {
                "task_type": row["task_type"],
                "key": row["key"],
                "language": row["instruction_language"],
                "intersection": bool(row["Intersection_exist"]),
            }
            out.append(
                Sample(
                    id=f"{row['task_type']}__{row['key']}",
                    prompt=row["instruction"],
                    metadata=meta,
                    input_image=self.root / row["input_image"],
                )
            )
        return out

    def make_scorer(self, **options: Any) -> GEditScorer:
        """options: judge (required), rounds (2), temperature (0.0), max_tokens (1400), jpeg (True)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("GEdit-Bench needs a judge (--judge hf:<id> or --judge openai:<model>)")
        sc_template, pq_prompt = load_prompts(self.root)
        return GEditScorer(judge, sc_template, pq_prompt, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {**summarize(records, self.language, self.subset), "protocol": self.protocol}
