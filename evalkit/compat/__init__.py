"""Shims that let the PyPI wheels of torchvision and mmcv-lite work next to a CPU-only torch."""
