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
    """(name, ok, detail) for torch/CUDA, optional packages, weights and data: one line per topic, and
    each problem's detail ends with the one next step that fixes it."""
    from evalkit import paths

    results: list[tuple[str, bool, str]] = []
    try:
        import torch

        cuda = torch.cuda.is_available()
        detail = f"{torch.__version__}, " + (
            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if cuda else "CPU only"
        )
        results.append(("torch", True, detail))
    except ImportError:
        results.append(("torch", False, "not installed -> run `make setup`"))
    versions = {pkg: _version(pkg) for pkg in ("diffusers", "transformers", "mmdet", "openai", "peft")}
    found = ", ".join(f"{p} {v}" for p, v in versions.items() if v)
    missing = [p for p, v in versions.items() if not v]
    if missing:
        results.append(
            ("packages", False, f"{found}; missing {', '.join(missing)} -> pip install -e '.[all]'")
        )
    else:
        results.append(("packages", True, found))
    results.append(_engines_line())
    results.append(_weights_line())
    root = paths.data_dir(data_dir)
    for bench_file in sorted(paths.PROTOCOL_DIR.glob("*.yaml")):
        results.append(_data_line(root, bench_file.stem))
    return results


def _engines_line() -> tuple[str, bool, str]:
    """vLLM / SGLang for `vllm:` and `sglang:` judges; optional, so a missing one is not a failure."""
    found = {pkg: _version(pkg) for pkg in ("vllm", "sglang")}
    installed = ", ".join(f"{p} {v}" for p, v in found.items() if v)
    if installed:
        return ("judge engines", True, f"{installed} (vllm:/sglang: judges, `evalkit judge serve`)")
    return (
        "judge engines",
        True,
        "none (optional) -> `pip install vllm` or `pip install sglang` for in-process judges, "
        "or serve a judge elsewhere and use --judge openai:MODEL --judge-url URL",
    )


def _weights_line() -> tuple[str, bool, str]:
    from evalkit import checkpoints

    names = list(checkpoints.manifests())
    missing = [name for name in names if checkpoints.locate(name) is None]
    if not missing:
        return ("weights", True, f"all {len(names)} found")
    return (
        "weights",
        False,
        f"{len(names) - len(missing)} of {len(names)} found; missing {', '.join(missing)} "
        "-> `evalkit weights fetch NAME` for the ones you use (tiny models need none)",
    )


def _data_line(root: Path, benchmark: str) -> tuple[str, bool, str]:
    from evalkit import data

    status = data.verify(root, benchmark)
    missing = [rel for rel, state in status.items() if state == "missing"]
    wrong = [rel for rel, state in status.items() if state == "checksum mismatch"]
    hub_missing = [m for m in data.not_fetchable(benchmark, root) if m.split(" ")[0] not in status]
    name = f"data {benchmark}"
    if not missing and not wrong and not hub_missing:
        return (name, True, f"{root}: all files ok")
    spec = data.manifest(benchmark).get("files", {})
    manual = [rel for rel in missing if not spec[rel].get("url") and data.shipped_copy(rel) is None]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {len(status)} files missing (e.g. {missing[0]})")
    if wrong:
        parts.append(f"{len(wrong)} with a wrong checksum")
    if hub_missing:
        parts.append("dataset not exported")
    if manual:
        step = f"copy {manual[0]} into place ({spec[manual[0]].get('extracted_from', 'see the manifest')})"
    else:
        step = f"`evalkit data fetch {benchmark}`"
    return (name, False, f"{root}: {', '.join(parts)} -> {step}")
