"""What `--model`, `--judge`, `--reward` and benchmark names refer to.

Entries are "module:attribute" strings resolved only when used, so `evalkit ls` never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from evalkit.errors import did_you_mean
from evalkit.judges import BACKENDS as JUDGE_BACKENDS


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:attribute"
    summary: str

    def load(self) -> Any:
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)


MODELS: dict[str, Entry] = {
    "sd35m": Entry(
        "evalkit.generators.diffusers_t2i:build", "Stable Diffusion 3.5 Medium (512px, 40 steps, CFG 4.5)"
    ),
    "tiny-sd3": Entry(
        "evalkit.generators.diffusers_t2i:build", "tiny random SD3 pipeline (offline tests and demo)"
    ),
    "diffusers": Entry(
        "evalkit.generators.diffusers_t2i:build", "any diffusers T2I pipeline: diffusers:<hub id or path>"
    ),
    "bagel": Entry("evalkit.generators.bagel:build", "BAGEL-7B-MoT on evalkit's own runtime (bagel:<folder>)"),
    "alphagrpo": Entry("evalkit.generators.bagel:build", "AlphaGRPO: BAGEL + merged LoRA (--option variant=rt2i|srr)"),
}

BENCHMARKS: dict[str, Entry] = {
    "geneval": Entry(
        "evalkit.benchmarks.geneval:GenEval", "GenEval: Mask2Former + CLIP rules, 4 images per prompt"
    ),
    "tiif": Entry("evalkit.benchmarks.tiif:TIIF", "TIIF-Bench: yes/no questions per prompt, MLLM judge"),
    "wise": Entry("evalkit.benchmarks.wise:WISE", "WISE: world knowledge, MLLM judge (WiScore)"),
    "dpg": Entry("evalkit.benchmarks.dpg:DPG", "DPG-Bench: dependency-linked VQA on a 2x2 grid"),
    "gedit": Entry("evalkit.benchmarks.gedit:GEdit", "GEdit-Bench-EN: image editing, VIEScore judge"),
}

JUDGES: dict[str, Entry] = {
    name: Entry("evalkit.judges:load_judge", text) for name, text in JUDGE_BACKENDS.items()
}

REWARDS: dict[str, Entry] = {
    "geneval": Entry(
        "evalkit.benchmarks.geneval:build_geneval_scorer", "GenEval correctness (1/0) as a reward"
    ),
}

KINDS = {"models": MODELS, "benchmarks": BENCHMARKS, "judges": JUDGES, "rewards": REWARDS}


def lookup(kind: str, name: str) -> Entry:
    table = KINDS[kind]
    if name not in table:
        raise did_you_mean(kind.rstrip("s"), name, list(table))
    return table[name]


def parse_model(model: str) -> tuple[str, str | None]:
    """`sd35m` -> ("sd35m", None); `diffusers:org/name` -> ("diffusers", "org/name"); an existing folder is
    treated as a diffusers pipeline."""
    import os

    if ":" in model:
        name, path = model.split(":", 1)
        lookup("models", name)
        return name, path
    if model not in MODELS and os.path.isdir(model):
        return "diffusers", model
    lookup("models", model)
    return model, None
