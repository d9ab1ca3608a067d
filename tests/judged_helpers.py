"""Helpers for the judged end-to-end tests: a data folder in the canonical layout, and a scripted VLM.

The data folder links TIIF-Bench and WISE from ../shared/benchmarks and builds what is not available on
this machine in the official schemas: a small DPG-Bench question CSV (next to the real prompts) and a
small GEdit-Bench-EN local copy (data.jsonl + images, with the real VIEScore judge prompts).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fixture_paths import SHARED
from PIL import Image

from evalkit.benchmarks.dpg.data import CSV_COLUMNS
from evalkit.generators.base import Generator
from evalkit.judges.base import JudgeFailure

BENCHMARKS = SHARED / "benchmarks"

# (item_id, proposition_id, dependency, tuple, question). Item "0"'s first row is the only global
# question: the official scorer drops the first CSV row, so under dpg@official the Global column is
# empty, while the default protocol scores it. "1,2" keeps pandas from reading dependency as integers,
# and the COCO item keeps item_id from being all-numeric (both would break the official scorer).
DPG_ROWS = [
    ("0", 1, "0", "global - (photo)", "Is this a photo?"),
    ("0", 2, "0", "entity - whole (cabbage)", "Are there cabbages?"),
    ("0", 3, "2", "attribute - color (cabbage, green)", "Are the cabbages green?"),
    ("0", 4, "2", "other - count (cabbage, ==8)", "Are there eight cabbages?"),
    ("1", 1, "0", "entity - whole (truck)", "Is there a truck?"),
    ("1", 2, "1", "attribute - color (truck, red)", "Is the truck red?"),
    ("1", 3, "0", "entity - whole (shore)", "Is there a shore?"),
    ("1", 4, "1,3", "relation - spatial (truck, shore, on)", "Is the truck on the shore?"),
    ("COCOval2014000000010363", 1, "0", "entity - whole (dog)", "Is there a dog?"),
]

GEDIT_ROWS = [
    ("background_change", "bg001", "Change the background to a beach.", True, (40, 56)),
    ("color_alter", "col001", "Make the car blue.", False, (48, 48)),
    ("subject-add", "add001", "Add a cat on the sofa.", True, (56, 40)),
]


def noise_image(seed: int, size: tuple[int, int] = (48, 48)) -> Image.Image:
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def write_dpg_csv(path: Path, prompts: dict[str, str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for item_id, pid, dependency, tuple_text, question in DPG_ROWS:
            broad, detailed = (part.strip() for part in tuple_text.split("(")[0].split("-", 1))
            writer.writerow(
                [item_id, prompts[item_id], "", pid, dependency, broad, detailed, tuple_text, question]
            )


def build_data_dir(root: Path) -> Path:
    """<root>/data with tiif_bench and wise linked, dpg_bench (real prompts + small CSV) and gedit_bench."""
    data = root / "data"
    data.mkdir(parents=True)
    for name in ("tiif_bench", "wise"):
        (data / name).symlink_to(BENCHMARKS / name, target_is_directory=True)
    dpg = data / "dpg_bench"
    dpg.mkdir()
    (dpg / "prompts.jsonl").symlink_to(BENCHMARKS / "dpg_bench" / "prompts.jsonl")
    prompts = {}
    for line in (BENCHMARKS / "dpg_bench" / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prompts[row["item_id"]] = row["text"]
    write_dpg_csv(dpg / "dpg_bench.csv", prompts)
    gedit = data / "gedit_bench"
    (gedit / "images").mkdir(parents=True)
    (gedit / "judge_prompts").symlink_to(BENCHMARKS / "gedit_bench" / "judge_prompts")
    with (gedit / "data.jsonl").open("w", encoding="utf-8") as f:
        for i, (task, key, instruction, intersection, size) in enumerate(GEDIT_ROWS):
            noise_image(100 + i, size).save(gedit / "images" / f"{key}.png")
            row = {
                "task_type": task,
                "key": key,
                "instruction": instruction,
                "instruction_language": "en",
                "Intersection_exist": intersection,
                "input_image": f"images/{key}.png",
            }
            f.write(json.dumps(row) + "\n")
        zh = {**row, "key": "zh001", "instruction": "把车变成蓝色", "instruction_language": "cn"}
        f.write(json.dumps(zh, ensure_ascii=False) + "\n")  # not part of the EN protocol
    return data


@dataclass
class ScriptedGeneration:
    """What JudgeServer reads from a judge's generate(): the reply text and token counts."""

    text: str
    finish_reason: str = "stop"
    tokens: list[Any] = field(default_factory=list)
    prompt_tokens: int = 1


class ScriptedVLM:
    """A stand-in judge model behind the real JudgeServer: a fixed reply, or reply(text, images) of the
    request (images as decoded by the server).

    It lets the HTTP path (client, retries, faults, cache, parsing, aggregation) be checked end to end
    with replies whose scores are known; the tiny random VLM's replies are noise that never parses.
    """

    def __init__(self, name: str, reply: str | Callable[[str, list[Image.Image]], str]):
        self.name, self.reply, self.calls = name, reply, 0

    def generate(self, messages: list[dict[str, Any]], **decoding: Any) -> ScriptedGeneration:
        self.calls += 1
        if isinstance(self.reply, str):
            return ScriptedGeneration(self.reply)
        texts: list[str] = []
        images: list[Image.Image] = []
        for message in messages:
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            texts += [part["text"] for part in parts if part.get("type") == "text"]
            images += [part["image"] for part in parts if part.get("type") == "image"]
        return ScriptedGeneration(self.reply("\n".join(texts), images))


class ThinkingGenerator(Generator):
    """A generator that declares a think mode (as unified models do): its think text comes back with
    each image, saying where the request for thinking came from."""

    name = "thinker"
    supports_think = True
    supports_edit = False

    def __init__(self, spec: Any):
        self.spec = spec
        self.requests: list[Any] = []

    def config(self) -> dict[str, Any]:
        return {"model": self.name, "options": dict(self.spec.options)}

    def generate(self, requests: list[Any]) -> list[Any]:
        from evalkit.generators.base import Generation

        self.requests += requests
        out = []
        for r in requests:
            source = (
                "model option"
                if self.spec.options.get("think")
                else "request"
                if r.options.get("think")
                else None
            )
            out.append(
                Generation(image=noise_image(r.seed % 1000, (16, 16)), think=source and f"plan ({source})")
            )
        return out


def build_thinker(spec: Any) -> ThinkingGenerator:
    return ThinkingGenerator(spec)


class FakeJudge:
    """Scripted replies; a JudgeFailure instance in the script is raised instead of returned."""

    name = "fake"

    def __init__(self, replies: list[Any]):
        self.replies = list(replies)
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def config(self) -> dict[str, Any]:
        return {"model": "fake"}

    def yes_probability(self, image: Image.Image, questions: list[str]) -> list[float]:
        raise JudgeFailure("not used")

    def chat(self, messages: list[dict[str, Any]], *, validate: Any = None, **decoding: Any) -> str:
        self.calls.append((messages, decoding))
        reply = self.replies.pop(0)
        if isinstance(reply, JudgeFailure):
            raise reply
        return reply
