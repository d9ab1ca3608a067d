"""Make the PyPI torchvision wheel importable next to a CPU-only torch.

PyPI's torchvision 0.28 is linked against CUDA. With a CPU torch its extension fails to load, so the
`torchvision::nms` schema is never registered and `import torchvision` raises. This meta-path hook runs
only when torchvision is first imported: if the real extension loads (GPU machines) it changes nothing;
otherwise it registers the missing op schemas with a pure-PyTorch `nms`. Importing evalkit stays free of torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

_library = None  # keeps the torch.library registration alive


def _nms(boxes, scores, iou_threshold: float):
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    removed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if removed[i]:
            continue
        keep.append(i)
        inter_w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        inter_h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = inter_w * inter_h
        removed |= inter / (areas[i] + areas - inter) > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _real_extension_loads(package_dir: str) -> bool:
    import torch

    for name in os.listdir(package_dir):
        if name.startswith("_C") and name.endswith(".so"):
            try:
                torch.ops.load_library(os.path.join(package_dir, name))
                return True
            except OSError:
                return False
    return False


def _register_ops() -> None:
    global _library
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.impl("nms", _nms, "CPU")


def _patch_python_nms() -> None:
    """torchvision.ops.nms asserts the compiled ops exist before calling them; route it to ours."""
    import torch
    import torchvision.ops
    import torchvision.ops.boxes

    def nms(boxes, scores, iou_threshold):
        return torch.ops.torchvision.nms(boxes, scores, iou_threshold)

    torchvision.ops.boxes.nms = nms
    torchvision.ops.nms = nms


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        self.real.exec_module(module)
        _patch_python_nms()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.submodule_search_locations:
            return None
        import torch

        if torch.version.cuda is not None or _real_extension_loads(
            next(iter(spec.submodule_search_locations))
        ):
            return spec
        _register_ops()
        spec.loader = _PatchingLoader(spec.loader)
        return spec


_finder = _Finder()


def install() -> None:
    """Activate the hook (idempotent; a no-op once torchvision is imported)."""
    if "torchvision" not in sys.modules and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
