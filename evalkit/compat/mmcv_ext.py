"""Let mmdet import on mmcv-lite, which ships no compiled `mmcv._ext`.

Mask2Former (GenEval's detector) only needs mmcv's pure-PyTorch ops on CPU; detectors that need compiled
ops (NMS, RoIAlign) raise a clear NotImplementedError when they are called.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types


class _MissingOps(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(
                f"mmcv._ext.{name} is a compiled op and mmcv-lite has none; install full mmcv for this detector"
            )

        return missing


def install() -> bool:
    """Register the stub if the compiled extension is absent. Returns True when the stub is in use."""
    try:
        import mmcv._ext  # noqa: F401

        return False
    except ImportError:
        stub = _MissingOps("mmcv._ext")
        # A spec whose loader is None tells mmengine this is not a full mmcv build.
        stub.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
        sys.modules["mmcv._ext"] = stub
        return True
