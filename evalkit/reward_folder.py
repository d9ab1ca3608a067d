"""`evalkit score FOLDER --reward NAME`: any registered reward on a folder of images.

Prompts come from each image's sidecar JSON (the evalkit run layout), else from `--prompts` (one per line,
or JSONL with a "prompt" key) by the leading number of the image's path. One JSON line per image is
written; an abstention is `null`, never 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order (hidden files skipped)."""
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def prompt_of(image: Path, folder: Path, prompts_in_order: list[str]) -> str | None:
    """The image's prompt: its sidecar JSON's "prompt" (evalkit run layout); else the single prompt of the
    questions file; else the leading integer folder/file name as an index into the questions file."""
    sidecar = image.with_suffix(".json")
    if sidecar.exists():
        try:
            prompt = json.loads(sidecar.read_text()).get("prompt")
        except (json.JSONDecodeError, AttributeError):
            prompt = None
        if isinstance(prompt, str):
            return prompt
    if len(prompts_in_order) == 1:
        return prompts_in_order[0]
    head = image.relative_to(folder).parts[0].split(".")[0].split("_")[0]
    if head.isdigit() and int(head) < len(prompts_in_order):
        return prompts_in_order[int(head)]
    return None


def open_image(path: Path):
    """An RGB image, or one line saying which file cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise EvalkitError(f"cannot read image {path} ({error})") from None


def score_folder(
    name: str,
    folder: Path,
    *,
    prompts_file: Path | None,
    options: dict[str, Any],
    judge: str | None,
    judge_url: str | None,
    batch_size: int,
    out: Path | None,
    allow_download: bool = False,
) -> tuple[Path, int, int]:
    """Returns (output file, images scored, images total). Everything about the reward (options, judge,
    weights on disk, DVReward questions for every prompt) is checked before its model loads."""
    from evalkit import registry
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.rewards.factory import build_reward
    from evalkit.runs import atomic_write_bytes

    registry.lookup("rewards", name)
    if not folder.is_dir():
        raise EvalkitError(f"no such folder: {folder}")
    files = find_images(folder)
    if not files:
        raise EvalkitError(f"no images under {folder}")
    prompts = read_prompts(prompts_file) if prompts_file else []
    paired = [(path, prompt_of(path, folder, prompts)) for path in files]
    missing = [p for p, prompt in paired if prompt is None]
    if missing:
        raise EvalkitError(f"no prompt for {missing[0]} (give --prompts FILE or sidecar JSON files)")
    if judge:
        options = {**options, "judge": judge, "judge_url": judge_url}
    if allow_download and (name in ("pickscore", "hpsv3") or judge):
        options = {**options, "allow_download": True}  # the reward's weights, or its hf: judge's
    from evalkit.rewards.checks import check_reward

    check_reward(name, options, prompts=[(prompt, {}) for _, prompt in paired])
    scorer = build_reward(name, options)
    lines = []
    for start in range(0, len(paired), batch_size):
        chunk = paired[start : start + batch_size]
        values = scorer.score(
            [open_image(p) for p, _ in chunk], [prompt for _, prompt in chunk], [{} for _ in chunk]
        )
        for (path, prompt), value in zip(chunk, values, strict=True):
            lines.append({"image": path.relative_to(folder).as_posix(), "prompt": prompt, "score": value})
    target = out or folder / f"{name}.jsonl"
    atomic_write_bytes(target, "".join(json.dumps(line) + "\n" for line in lines).encode())
    return target, sum(line["score"] is not None for line in lines), len(lines)
