"""Our own BAGEL (MoT) runtime: official checkpoint layout, PyTorch SDPA, batched generation.

from evalkit import bagel
pipe = bagel.load("checkpoints/bagel")  # official BAGEL-7B-MoT folder
out = pipe.generate_image("a red cube", height=1024, width=1024, num_timesteps=50, timestep_shift=3.0,
                          cfg_text_scale=4.0, cfg_img_scale=1.0, cfg_interval=(0.4, 1.0),
                          cfg_renorm_type="global", cfg_renorm_min=0.0, seed=0)
out.image, out.think
"""

from evalkit.bagel.config import BagelConfig, LLMConfig, VAEConfig, ViTConfig
from evalkit.bagel.loading import load, save_pretrained
from evalkit.bagel.pipeline import BagelOutput, BagelPipeline

__all__ = [
    "BagelConfig",
    "BagelOutput",
    "BagelPipeline",
    "LLMConfig",
    "VAEConfig",
    "ViTConfig",
    "load",
    "save_pretrained",
]
