"""`evalkit doctor`: what this machine can run, and what is missing."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def checks(data_dir: Path | None = None) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) for torch/CUDA, optional packages, weights and data."""
    from evalkit import checkpoints, data, paths

    results: list[tuple[str, bool, str]] = []
    try:
        import torch

        cuda = torch.cuda.is_available()
        detail = f"{torch.__version__}, " + (
            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if cuda else "CPU only"
        )
        results.append(("torch", True, detail))
    except ImportError:
        results.append(("torch", False, "not installed (run `make setup`)"))
    for pkg in ("diffusers", "transformers", "mmdet", "openai", "peft"):
        version = _version(pkg)
        results.append((pkg, version is not None, version or "not installed"))
    for name in checkpoints.manifests():
        path = checkpoints.locate(name)
        results.append((f"weights {name}", path is not None, str(path) if path else "missing"))
    root = paths.data_dir(data_dir)
    for bench_file in sorted(paths.PROTOCOL_DIR.glob("*.yaml")):
        status = data.verify(root, bench_file.stem)
        ok = bool(status) and all(s == "ok" for s in status.values())
        detail = f"{root}: " + (
            ", ".join(f"{k} {v}" for k, v in status.items() if v != "ok") or "all files ok"
        )
        results.append((f"data {bench_file.stem}", ok, detail))
    return results
