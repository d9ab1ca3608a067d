"""Checkpoint manifests (checkpoints/*.yaml): where weights come from and where evalkit finds them.

Lookup order: checkpoints/<name>/ (or $EVALKIT_CHECKPOINTS/<name>/), then the Hugging Face cache for hub
models. Nothing is downloaded implicitly; missing weights give one line saying how to get them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError, MissingWeightsError, did_you_mean
from evalkit.paths import CHECKPOINT_DIR, CHECKPOINT_MANIFEST_DIR

MANIFEST_DIR = CHECKPOINT_MANIFEST_DIR


def manifests() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(MANIFEST_DIR.glob("*.yaml"))}


def manifest(name: str) -> dict[str, Any]:
    found = manifests()
    if name not in found:
        raise did_you_mean("checkpoint", name, list(found))
    return found[name]


def _hf_cached(model_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not in the local cache"
        return None


def locate(name: str) -> Path | None:
    """The local path of a checkpoint, or None if it is not on this machine."""
    spec = manifest(name)
    folder = CHECKPOINT_DIR / name
    if spec.get("file"):
        path = folder / spec["file"]
        return path if path.exists() else None
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    if spec.get("source") == "huggingface":
        return _hf_cached(spec["model_id"])
    return None


def resolve(name: str) -> Path:
    """Like `locate`, but missing weights raise MissingWeightsError with the command that gets them."""
    path = locate(name)
    if path is None:
        spec = manifest(name)
        raise MissingWeightsError(
            f"weights for '{name}' not found in {CHECKPOINT_DIR / name}; get them with: {spec['how_to_get']}"
        )
    spec = manifest(name)
    if spec.get("sha256_prefix") and path.is_file():
        from evalkit.data import sha256_of

        if not sha256_of(path).startswith(spec["sha256_prefix"]):
            raise EvalkitError(
                f"{path}: checksum does not start with {spec['sha256_prefix']}; the file is corrupt or wrong"
            )
    return path
