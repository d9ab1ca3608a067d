"""GRPOConfig turns YAML/--set text into the declared types, and refuses what is not a number."""

import pytest

from evalkit.grpo.config import GRPOConfig
from evalkit.grpo.launch import parse_config


def test_set_learning_rate_without_a_dot_reaches_the_optimizer_as_a_float():
    # YAML 1.1 reads `3e-4` as a string; AdamW would crash on it.
    config = parse_config(None, ["learning_rate=3e-4", "num_steps=12", "beta=0"], [])
    assert config.learning_rate == pytest.approx(3e-4) and isinstance(config.learning_rate, float)
    assert config.num_steps == 12 and isinstance(config.num_steps, int)
    assert isinstance(config.beta, float)


def test_config_file_numbers_as_text_are_converted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("adam_epsilon: 1e-8\nclip_range: 1e-5\ngroup_size: '4'\n")
    config = parse_config(str(path), [], [])
    assert config.adam_epsilon == pytest.approx(1e-8)
    assert config.clip_range == pytest.approx(1e-5)
    assert config.group_size == 4


@pytest.mark.parametrize(
    "values",
    [{"learning_rate": "fast"}, {"num_steps": "ten"}, {"num_steps": 10.5}, {"beta": True}],
)
def test_values_that_are_not_numbers_are_refused_with_the_field_name(values):
    name = next(iter(values))
    with pytest.raises(ValueError, match=name):
        GRPOConfig(**values)
