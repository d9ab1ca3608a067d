"""DPG-Bench under one protocol: samples, the saved grid, scorer and table for the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.benchmarks.dpg.aggregate import COLUMNS, group_records, summarize
from evalkit.benchmarks.dpg.data import (
    COMPAT_MODES,
    GRID_FILE,
    PROTOCOLS,
    load_prompts,
    load_questions,
    merge_grid,
)
from evalkit.benchmarks.dpg.scorer import DPGScorer
from evalkit.errors import EvalkitError


class DPG(Benchmark):
    """DPG-Bench: pic_num images per prompt (4 = the protocol's 2x2 grid, see merge_grid).

    A run keeps the protocol's saved form: ``samples/<id>/grid.png`` (cells 0-3 row-major, pixel-identical
    to ``samples/<id>/<k>.png``) is written next to the four generated images. Scoring asks every question
    on each generated image (``input="cell"``, one record per cell) and ``aggregate`` combines a sample's
    cells exactly as a split grid is combined, so the numbers equal those of scoring the saved grid.
    """

    name = "dpg"
    generation_presets = {"bagel": {}}  # BAGEL's plain t2i settings (BAGEL has no script for it)
    needs_judge = True  # `evalkit run` refuses to start without --judge
    scorer_options = ("resolution", "threshold", "input")  # DPGScorer's keywords the user may set

    def __init__(
        self,
        data_dir: Path | str,
        protocol: str = "dpg",
        compat: str | None = None,
        csv_path: Path | str | None = None,
        pic_num: int = 4,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown DPG protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        compat = compat or ("official" if protocol == "dpg@official" else "default")
        if compat not in COMPAT_MODES:
            raise EvalkitError(f"unknown compat mode '{compat}' (known: {', '.join(COMPAT_MODES)})")
        if pic_num not in (1, 2, 3, 4):
            raise EvalkitError(f"pic_num must be 1-4, got {pic_num}")
        self.root = Path(data_dir) / "dpg_bench"
        self.compat, self.pic_num, self.images_per_sample = compat, pic_num, pic_num
        self.protocol = "dpg@official" if compat == "official" else "dpg"
        self.csv_path = Path(csv_path) if csv_path else self.root / "dpg_bench.csv"
        self.columns = list(COLUMNS)

    def samples(self) -> list[Sample]:
        return [
            Sample(id=item_id, prompt=text, metadata={"item_id": item_id})
            for item_id, text in load_prompts(self.root)
        ]

    def derived_names(self, sample: Sample) -> list[str]:
        """The grid file the protocol saves per prompt (only for the full 2x2 layout, pic_num = 4)."""
        return [GRID_FILE] if self.pic_num == 4 else []

    def derived_images(self, images: Sequence[Image.Image]) -> dict[str, Image.Image]:
        """The 2x2 grid of a sample's generated images (k = 0..3, row-major)."""
        return {GRID_FILE: merge_grid(images)} if self.pic_num == 4 else {}

    def scorer_config(self, **options: Any) -> dict[str, Any]:
        """A run scores its generated images one cell per record; ``input="grid"`` is for scoring saved
        grid images outside a run (DPGScorer, score_folder)."""
        self.check_scorer_options(options)
        if options.get("input", "cell") != "cell":
            raise EvalkitError(
                "a DPG-Bench run scores each generated image (input=cell); its samples/<id>/grid.png "
                "holds the same cells, so the numbers are those of the grid"
            )
        return dict(options)

    def make_scorer(self, **options: Any) -> DPGScorer:
        """options: judge (required), input ('cell' | 'grid'), resolution (grid cell side; default half the
        grid width), threshold (P(yes) counted as 'yes', 0.5)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("DPG-Bench needs a yes/no judge (--judge hf:<id> or --judge openai:<model>)")
        items = load_questions(self.csv_path, self.compat)
        return DPGScorer(judge, items, compat=self.compat, pic_num=self.pic_num, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        results, failed = group_records(records, self.compat)
        n_failed_records = sum(1 for r in records if r.get("failed"))
        return {
            **summarize(results, n_failed=len(failed)),
            "n_failed": n_failed_records,
            "failed_samples": failed,
            "protocol": self.protocol,
            "compat": self.compat,
        }
