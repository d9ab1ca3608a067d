"""evalkit: evaluate and improve text-to-image and unified multimodal models.

    import evalkit
    result = evalkit.evaluate("geneval", "tiny-sd3", limit=8, score_options={"detector": "tiny"})
"""

from typing import Any

from evalkit.compat import torchvision_cpu

__version__ = "0.1.0"
__all__ = ["EvalResult", "SRROptions", "evaluate", "merge_run", "score_run"]

# The PyPI torchvision wheel is CUDA-linked; on a CPU-only torch it breaks every library that imports it
# lazily (diffusers, transformers, peft, mmdet). The hook is free until torchvision is imported.
torchvision_cpu.install()


def __getattr__(name: str) -> Any:
    """The entry points load on first use, so `import evalkit` (and `evalkit ls`) stays light."""
    if name in __all__:
        from evalkit import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'evalkit' has no attribute {name!r}")
