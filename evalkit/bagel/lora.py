"""LoRA adapters on BAGEL (AlphaGRPO): load a PEFT adapter folder and merge it into the weights.

Our module names equal the official ones, so adapters trained on the official `Bagel` module (keys
`base_model.model.language_model.model.layers.{L}.self_attn.q_proj.lora_A.weight`, ...) apply directly.
Merging removes the LoRA layers, so inference runs at base-model speed.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.bagel.pipeline import BagelPipeline

# AlphaGRPO trains both MoT experts' attention projections and MLPs (config/bagel.py).
ALPHAGRPO_TARGET_MODULES = (
    r"language_model\.model\.layers\.\d+\."
    r"(self_attn\.[qkvo]_proj(_moe_gen)?|mlp(_moe_gen)?\.(gate_proj|up_proj|down_proj))"
)


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def merge_lora(pipe: BagelPipeline, adapter: str | Path) -> BagelPipeline:
    """Apply the adapter with peft and merge it (`merge_and_unload`), in place; returns the pipeline."""
    from peft import PeftModel  # evalkit/__init__ has installed the torchvision hook peft needs

    merged = PeftModel.from_pretrained(pipe.model, str(adapter)).merge_and_unload()
    pipe.model = merged.eval()
    return pipe
