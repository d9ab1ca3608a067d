"""Every registered model declares its capabilities without loading (the registry probe agrees with the
class), and the tiny ones draw through the Generator contract."""

from __future__ import annotations

import pytest
from PIL import Image

from evalkit import registry
from evalkit.generators.base import GenerationRequest, Generator, ModelSpec

CAPABILITIES = {"edit", "think", "refine", "self_check"}
NAMES = sorted(registry.entries("models"))


@pytest.mark.parametrize("name", NAMES)
def test_capabilities_are_known_before_loading(name):
    known = registry.lookup("models", name).probe(ModelSpec(name=name))
    assert set(known) <= CAPABILITIES and all(v is None or isinstance(v, bool) for v in known.values())


def _tiny_bagel(tmp_path) -> str:
    import torch

    from evalkit.bagel.loading import save_pretrained
    from evalkit.testing.bagel import random_pipeline, tiny_config

    return str(
        save_pretrained(random_pipeline(tiny_config(), seed=0), tmp_path / "bagel", dtype=torch.float32)
    )


TINY = {  # registry name -> (path, options) that load a tiny real-architecture model offline
    "tiny-sd3": lambda tmp: (None, {"height": 64, "width": 64, "num_inference_steps": 2}),
    "tiny-sd3-edit": lambda tmp: (None, {"height": 64, "width": 64, "num_inference_steps": 2}),
    "bagel": lambda tmp: (_tiny_bagel(tmp), {"num_timesteps": 2, "resolution": 64}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_generators_keep_the_contract(name, tmp_path):
    path, options = TINY[name](tmp_path)
    spec = ModelSpec(name=name, path=path, options=options, device="cpu", dtype="fp32")
    generator = registry.lookup("models", name).load()(spec)
    assert isinstance(generator, Generator) and isinstance(generator.config(), dict)
    probe = registry.lookup("models", name).probe(spec)
    declared = {**type(generator).declared(), "edit": generator.supports_edit}
    assert {k: v for k, v in probe.items() if v is not None} == {
        k: declared[k] for k in probe if probe[k] is not None
    }
    (made,) = generator.generate([GenerationRequest(prompt="a red cube", seed=1)])
    assert isinstance(made.image, Image.Image) and made.seconds >= 0
    if generator.supports_edit:
        (edited,) = generator.generate(
            [GenerationRequest(prompt="make it blue", seed=1, input_image=made.image)]
        )
        assert isinstance(edited.image, Image.Image)
    if generator.can_refine:
        assert isinstance(generator.refine(made.image, "a red cube", seed=2).image, Image.Image)
