"""evalkit: evaluate and improve text-to-image and unified multimodal models."""

from evalkit.compat import torchvision_cpu

__version__ = "0.1.0"

# The PyPI torchvision wheel is CUDA-linked; on a CPU-only torch it breaks every library that imports it
# lazily (diffusers, transformers, peft, mmdet). The hook is free until torchvision is imported.
torchvision_cpu.install()
