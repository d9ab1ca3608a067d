"""What `--model`, `--judge`, `--reward` and benchmark names refer to.

Entries are "module:attribute" strings resolved only when used, so `evalkit ls` never imports torch.
A plugin is one registry line here, or, out of tree, the same "module:attribute" string declared by an
installed package as an entry point (see `plugins`).
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
    # models: "module:function" taking the ModelSpec and returning {"edit": bool | None, "think": ...}
    # without loading weights, so a run that needs a capability fails before any work; None = unknown
    capabilities: str | None = None
    needs_judge: bool = False  # rewards computed by an MLLM judge: refused without one, before any work
    # models: "module:Dataclass" of the `--option` keys (typed, with help), checked before loading
    options: str | None = None

    def load(self) -> Any:
        return _resolve(self.target)

    def check_options(self, name: str, values: dict[str, Any]) -> Any:
        """The options parsed into the entry's dataclass; unknown keys and bad values are one line."""
        if self.options is None:
            return None
        from evalkit.options import parse_options

        return parse_options(_resolve(self.options), values, owner=name)

    def probe(self, spec: Any) -> dict[str, bool | None]:
        """What the model can do, as far as is known before loading it (empty when unknown)."""
        return _resolve(self.capabilities)(spec) if self.capabilities else {}


def _resolve(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


_DIFFUSERS = "evalkit.generators.diffusers_t2i:build"
_DIFFUSERS_CAPS = "evalkit.generators.diffusers_t2i:capabilities"
_DIFFUSERS_OPTIONS = "evalkit.generators.diffusers_t2i:DiffusersOptions"
_BAGEL = "evalkit.generators.bagel:build"
_BAGEL_CAPS = "evalkit.generators.bagel:capabilities"
_BAGEL_OPTIONS = "evalkit.generators.bagel:BagelOptions"


MODELS: dict[str, Entry] = {
    "sd35m": Entry(
        _DIFFUSERS,
        "Stable Diffusion 3.5 Medium (512px, 40 steps, CFG 4.5)",
        _DIFFUSERS_CAPS,
        options=_DIFFUSERS_OPTIONS,
    ),
    "tiny-sd3": Entry(
        _DIFFUSERS,
        "tiny random SD3 pipeline (offline tests and demo)",
        _DIFFUSERS_CAPS,
        options=_DIFFUSERS_OPTIONS,
    ),
    "tiny-sd3-edit": Entry(
        _DIFFUSERS,
        "tiny random SD3 that also edits (StableDiffusion3Img2ImgPipeline, same components)",
        _DIFFUSERS_CAPS,
        options=_DIFFUSERS_OPTIONS,
    ),
    "diffusers": Entry(
        _DIFFUSERS,
        "any diffusers pipeline: diffusers:<hub id or path> (edits when it takes an `image`)",
        _DIFFUSERS_CAPS,
        options=_DIFFUSERS_OPTIONS,
    ),
    "bagel": Entry(
        _BAGEL, "BAGEL-7B-MoT on evalkit's own runtime (bagel:<folder>)", _BAGEL_CAPS, options=_BAGEL_OPTIONS
    ),
    "alphagrpo": Entry(
        _BAGEL,
        "AlphaGRPO: BAGEL + merged LoRA (--option variant=rt2i|srr)",
        _BAGEL_CAPS,
        options=_BAGEL_OPTIONS,
    ),
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

_REWARDS = "evalkit.rewards.factory:"
REWARDS: dict[str, Entry] = {
    "pickscore": Entry(_REWARDS + "pickscore", "PickScore (CLIP-H): logit-scaled cosine"),
    "hpsv3": Entry(_REWARDS + "hpsv3", "HPSv3: Qwen2-VL + reward head, mu"),
    "viescore": Entry(
        _REWARDS + "viescore", "VIEScore on any judge: O = sqrt(min SC * min PQ)", needs_judge=True
    ),
    "unifiedreward": Entry(
        _REWARDS + "unifiedreward", "UnifiedReward pointwise 'Final Score' / 5", needs_judge=True
    ),
    "dvreward": Entry(
        _REWARDS + "dvreward", "DVReward: decomposed yes/no questions, MLLM-verified", needs_judge=True
    ),
    "dvreward@alphagrpo": Entry(
        _REWARDS + "dvreward_alphagrpo",
        "DVReward as AlphaGRPO's reward function computes it (OpenAI-compatible judge)",
        needs_judge=True,
    ),
    "brightness": Entry(_REWARDS + "brightness", "mean brightness (trainer sanity checks)"),
}

KINDS = {"models": MODELS, "benchmarks": BENCHMARKS, "judges": JUDGES, "rewards": REWARDS}
PLUGIN_KINDS = ("models", "benchmarks", "rewards")  # judges are specs (`hf:<id>`...), see evalkit.judges


def plugins(kind: str) -> dict[str, Entry]:
    """Out-of-tree plugins of installed packages, e.g. in their pyproject.toml:

        [project.entry-points."evalkit.benchmarks"]
        toy = "toy_package.toy:ToyBenchmark"

    (groups `evalkit.models`, `evalkit.benchmarks`, `evalkit.rewards`; the value is a registry line's
    target). Read from package metadata; nothing is imported until the entry is used.
    """
    from importlib.metadata import entry_points

    if kind not in PLUGIN_KINDS:
        return {}
    found = {}
    for ep in entry_points(group=f"evalkit.{kind}"):
        source = ep.dist.name if ep.dist is not None else "an installed package"
        found[ep.name] = Entry(ep.value, f"plugin from {source}")
    return found


def entries(kind: str) -> dict[str, Entry]:
    """Everything registered of a kind: evalkit's own lines, then plugins (which never replace them)."""
    own = KINDS[kind]
    return {**own, **{name: e for name, e in plugins(kind).items() if name not in own}}


def lookup(kind: str, name: str) -> Entry:
    table = KINDS[kind] if name in KINDS[kind] else entries(kind)
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
    if model not in entries("models") and os.path.isdir(model):
        return "diffusers", model
    lookup("models", model)
    return model, None
