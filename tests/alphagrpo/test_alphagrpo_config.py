"""Presets: every official preset in the fixture resolves to the official values; overrides are checked."""

from __future__ import annotations

import json

import pytest
from alphagrpo_fixtures import ROOT

from evalkit.errors import EvalkitError
from evalkit.grpo.alphagrpo import config as presets

PRESETS = ROOT / "config_presets.json"


def _official() -> dict:
    return json.loads(PRESETS.read_text())["presets"] if PRESETS.exists() else {}


@pytest.mark.parametrize("name", list(_official()))
def test_preset_resolves_to_official_values(name, tmp_path):
    want = _official()[name]
    got = presets.resolve(name)
    assert json.loads(json.dumps(got)) == want
    path = presets.write_resolved(got, tmp_path)
    assert json.loads(path.read_text()) == want


def test_overrides_apply_recompute_and_fail_loudly():
    cfg = presets.resolve("alphagrpo_t2iThink", presets.parse_overrides(["sample.num_steps=8", "seed=1"]))
    assert cfg["sample"]["num_steps"] == 8 and cfg["seed"] == 1
    assert cfg["train"]["num_train_timesteps"] == cfg["_derived"]["num_train_timesteps"] == 5
    cfg = presets.resolve("alphagrpo_reflect", presets.parse_overrides(["train.learning_rate=1e-4"]))
    assert cfg["train"]["learning_rate"] == 1e-4
    with pytest.raises(EvalkitError, match="did you mean 'train.learning_rate'"):
        presets.resolve("alphagrpo_reflect", {"train.learning_rat": 1.0})
    with pytest.raises(EvalkitError, match="expected a number"):
        presets.resolve("alphagrpo_reflect", {"train.learning_rate": "fast"})
    with pytest.raises(EvalkitError, match="did you mean 'alphagrpo_reflect'"):
        presets.resolve("alphagrpo_reflekt")
    with pytest.raises(EvalkitError, match="key=value"):
        presets.parse_overrides(["train.learning_rate"])
