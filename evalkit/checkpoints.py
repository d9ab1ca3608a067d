"""Checkpoint manifests (checkpoints/*.yaml): where weights come from and where evalkit finds them.

Lookup order: checkpoints/<name>/ (or $EVALKIT_CHECKPOINTS/<name>/), then the Hugging Face cache for hub
models. Nothing is downloaded implicitly; missing weights give one line saying how to get them.
"""

from __future__ import annotations

import shutil
import sys
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


def hub_cli() -> str | None:
    """The Hugging Face download CLI installed next to this Python (`hf` since huggingface_hub 1.0)."""
    for name in ("hf", "huggingface-cli"):
        if (Path(sys.executable).parent / name).exists() or shutil.which(name):
            return name
    return None


def _allow_patterns(spec: dict[str, Any]) -> list[str]:
    """Manifest `files` as hub download patterns (a trailing '/' means the whole folder)."""
    return [f + "*" if f.endswith("/") else f for f in spec.get("files") or []]


def fetch_command(model_id: str, *, local_dir: Path | None = None, files: list[str] | None = None) -> str:
    """The exact shell command that downloads a hub model with the CLI that is installed here."""
    cli = hub_cli()
    target = f" --local-dir {local_dir}" if local_dir is not None else ""
    if cli == "hf":
        include = "".join(f" --include '{f}'" for f in files or [])
        return f"hf download {model_id}{include}{target}"
    if cli == "huggingface-cli":
        include = "".join(f" --include '{f}'" for f in files or [])
        return f"huggingface-cli download {model_id}{include}{target}"
    args = f"'{model_id}'" + (f", local_dir='{local_dir}'" if local_dir is not None else "")
    if files:
        args += f", allow_patterns={files!r}"
    return f'python -c "from huggingface_hub import snapshot_download; snapshot_download({args})"'


def how_to_get(name: str) -> str:
    """One line: the command that fetches a manifest's weights (the hub CLI actually installed, or as written)."""
    spec = manifest(name)
    if spec.get("source") == "huggingface" and spec.get("model_id"):
        command = fetch_command(
            spec["model_id"], local_dir=_relative(CHECKPOINT_DIR / name), files=_allow_patterns(spec) or None
        )
        return f"`evalkit weights fetch {name}` or `{command}`"
    return str(spec["how_to_get"]).strip()


def _relative(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


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
            f"weights for '{name}' not found in {CHECKPOINT_DIR / name} or the Hugging Face cache; "
            f"get them with: {how_to_get(name)}"
        )
    spec = manifest(name)
    if spec.get("sha256_prefix") and path.is_file():
        from evalkit.data import sha256_of

        if not sha256_of(path).startswith(spec["sha256_prefix"]):
            raise EvalkitError(
                f"{path}: checksum does not start with {spec['sha256_prefix']}; the file is corrupt or wrong"
            )
    return path


def by_model_id(model_id: str) -> str | None:
    """The manifest that describes a hub id, if any (so its local folder is found too)."""
    for name, spec in manifests().items():
        if spec.get("model_id") == model_id:
            return name
    return None


def resolve_hub(model_id: str | Path, *, allow_download: bool = False, what: str = "model") -> Path:
    """A local folder for a hub id or path, without touching the network unless `allow_download`.

    Order: an existing path; the manifest's checkpoints/<name>/ folder; the Hugging Face cache. A miss
    raises MissingWeightsError naming the one command that fetches it, instead of a minutes-long retry loop.
    """
    path = Path(str(model_id)).expanduser()
    if path.exists():
        return path
    model_id = str(model_id)
    if model_id.startswith(("/", "./", "../", "~")):
        raise MissingWeightsError(f"{what} folder {path} does not exist")
    if model_id.count("/") != 1:
        raise MissingWeightsError(f"{what} '{model_id}' is neither a local folder nor a hub id (org/name)")
    name = by_model_id(model_id)
    if name is not None:
        found = locate(name)
        if found is not None:
            return found
    else:
        cached = _hf_cached(model_id)
        if cached is not None:
            return cached
    if allow_download:
        return fetch(name or model_id)
    hint = (
        how_to_get(name) if name else f"`{fetch_command(model_id)}` (or `evalkit weights fetch {model_id}`)"
    )
    raise MissingWeightsError(
        f"{what} '{model_id}' is not on this machine and evalkit never downloads implicitly; "
        f"get it with: {hint}, or pass --allow-download"
    )


def fetch(name_or_id: str) -> Path:
    """Download weights on explicit request: a manifest name into checkpoints/<name>/, a hub id into the
    Hugging Face cache. Returns the local path."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        raise EvalkitError("fetching weights needs huggingface_hub (pip install huggingface_hub)") from None
    if name_or_id in manifests():
        spec = manifest(name_or_id)
        if spec.get("source") != "huggingface" or not spec.get("model_id"):
            raise EvalkitError(f"'{name_or_id}' is not on the Hugging Face hub; {spec['how_to_get']}")
        target = CHECKPOINT_DIR / name_or_id
        kwargs: dict[str, Any] = {"local_dir": str(target)}
        if _allow_patterns(spec):
            kwargs["allow_patterns"] = _allow_patterns(spec)
        model_id = spec["model_id"]
    elif name_or_id.count("/") == 1:
        model_id, kwargs = name_or_id, {}
    else:
        raise did_you_mean("checkpoint", name_or_id, list(manifests()))
    try:
        return Path(snapshot_download(model_id, **kwargs))
    except Exception as error:  # noqa: BLE001 - network, auth and missing-repo errors all end here
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise MissingWeightsError(f"could not download '{model_id}': {first}") from None
