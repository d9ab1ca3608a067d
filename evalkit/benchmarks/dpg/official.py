"""DPG-Bench official folder mode: score a folder of saved 2x2 grids as ``compute_dpg_bench.py`` does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.dpg.aggregate import summarize
from evalkit.benchmarks.dpg.data import DPGImageError, DPGItem, split_grid
from evalkit.benchmarks.dpg.parse import AnswerFn
from evalkit.benchmarks.dpg.scorer import score_item
from evalkit.judges.base import JudgeFailure


def score_folder(
    image_dir: Path,
    items: Mapping[Any, DPGItem],
    answer_fn: Callable[[str], AnswerFn],
    pic_num: int = 4,
    resolution: int | None = None,
    compat: str = "default",
) -> dict[str, Any]:
    """Score every grid image of a folder like the official script (key = file name up to the first '.').

    ``answer_fn(file_name)`` gives the answer function for that image. Unscorable images are listed in
    ``failed_images`` with their reasons.
    """
    per_image: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for path in sorted(image_dir.iterdir()):
        if not path.is_file():
            continue
        item = items.get(path.name.split(".")[0])
        if item is None:
            failures[path.name] = "no questions for this image (file name is not an item_id)"
            continue
        try:
            with Image.open(path) as im:
                cells = split_grid(im.convert("RGB"), pic_num, resolution)
        except OSError as e:
            failures[path.name] = f"unreadable image: {e}"
            continue
        try:
            per_image[path.name] = score_item(item, cells, answer_fn(path.name), compat)
        except (DPGImageError, JudgeFailure) as e:
            failures[path.name] = str(e)
    summary = summarize(list(per_image.values()), n_failed=len(failures))
    return {
        **summary,
        "per_image": per_image,
        "failed_images": sorted(failures),
        "failure_messages": failures,
        "dpg_score": summary["Overall"],
    }
