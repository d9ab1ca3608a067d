"""Where evalkit looks for its manifests, data and weights."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DIR = PROJECT_ROOT / "benchmarks"
CHECKPOINT_DIR = Path(os.environ.get("EVALKIT_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The benchmark data folder: --data-dir, then $EVALKIT_DATA, then ~/.cache/evalkit/data."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("EVALKIT_DATA"):
        return Path(os.environ["EVALKIT_DATA"]).expanduser()
    return Path.home() / ".cache" / "evalkit" / "data"


def cache_dir() -> Path:
    """Where evalkit keeps things it builds itself (tiny models, decompositions)."""
    return Path(os.environ.get("EVALKIT_CACHE", Path.home() / ".cache" / "evalkit")).expanduser()
