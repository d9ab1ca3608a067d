"""Model options are typed dataclasses with help text, checked before any model loads."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from evalkit import registry
from evalkit.errors import EvalkitError
from evalkit.options import parse_options

WITH_OPTIONS = sorted(name for name, entry in registry.MODELS.items() if entry.options)


def _schema(name: str):
    module, attr = registry.MODELS[name].options.split(":")
    return getattr(importlib.import_module(module), attr)


def test_every_registered_model_declares_its_options():
    assert sorted(registry.MODELS) == WITH_OPTIONS
    for name in WITH_OPTIONS:
        fields = dataclasses.fields(_schema(name))
        assert fields and all(f.metadata.get("help") for f in fields), name


def test_declared_options_are_the_ones_the_adapters_read():
    from evalkit.generators import bagel, diffusers_t2i

    bagel_fields = {f.name for f in dataclasses.fields(bagel.BagelOptions)}
    assert bagel_fields == bagel.SETTING_KEYS | bagel.MODEL_OPTION_KEYS | {"variant"}
    diffusers_fields = {f.name for f in dataclasses.fields(diffusers_t2i.DiffusersOptions)}
    assert diffusers_fields == diffusers_t2i.PIPELINE_KEYS | diffusers_t2i.EDIT_KEYS | {
        "height", "width", "batch_size", "lora", "think"
    }  # fmt: skip


def test_values_from_the_command_line_are_typed():
    from evalkit.generators.bagel import BagelOptions

    parsed = parse_options(BagelOptions, {"num_timesteps": "3", "cfg_interval": "[0.4, 1.0]"}, owner="bagel")
    assert parsed.num_timesteps == 3 and parsed.cfg_interval == (0.4, 1.0)
    assert parse_options(BagelOptions, {"cfg_text_scale": 4}, owner="bagel").cfg_text_scale == 4.0
    with pytest.raises(EvalkitError, match="did you mean 'num_timesteps'"):
        parse_options(BagelOptions, {"num_timestep": 3}, owner="bagel")
    with pytest.raises(EvalkitError, match="num_timesteps='many' is not int"):
        parse_options(BagelOptions, {"num_timesteps": "many"}, owner="bagel")
    with pytest.raises(EvalkitError, match="use one of"):
        parse_options(BagelOptions, {"variant": "fast"}, owner="alphagrpo")


def test_cli_refuses_bad_options_before_any_work(cli, data_dir, tmp_path):
    for option, expected in (
        ("num_inference_step=2", "did you mean 'num_inference_steps'"),
        ("num_inference_steps=abc", "num_inference_steps='abc' is not int"),
        ("resolution=64", "unknown tiny-sd3 option 'resolution'"),
    ):
        code, _, err = cli("run", "geneval", "-m", "tiny-sd3", "-o", option, "--detector", "tiny",
                           "--data-dir", data_dir, "--runs-dir", tmp_path)  # fmt: skip
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_ls_lists_a_models_options_with_help(cli):
    code, out, err = cli("ls", "models", "bagel", env={"COLUMNS": "200"})
    assert code == 0, err
    assert "num_timesteps" in out and "flow-matching steps" in out
    code, _, err = cli("ls", "rewards", "pickscore")
    assert code == 2 and "evalkit ls models pickscore" in err
