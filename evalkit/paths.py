"""Where evalkit looks for its manifests, data and weights.

Manifests live at the top of the project (`benchmarks/`, `checkpoints/*.yaml`, `reward_ablation/`); an
installed wheel carries copies in `evalkit/manifests/` (see setup.py), which win when present.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
BUNDLED_DIR = PACKAGE_DIR / "manifests"  # only in a built wheel; a source checkout reads PROJECT_ROOT
INSTALLED = BUNDLED_DIR.is_dir()


def manifest_dir(folder: str) -> Path:
    """`benchmarks`, `checkpoints` or `reward_ablation`: the wheel's copy, else the source checkout's."""
    bundled = BUNDLED_DIR / folder
    return bundled if bundled.is_dir() else PROJECT_ROOT / folder


def cache_dir() -> Path:
    """Where evalkit keeps things it builds itself (tiny models, decompositions)."""
    return Path(os.environ.get("EVALKIT_CACHE", Path.home() / ".cache" / "evalkit")).expanduser()


PROTOCOL_DIR = manifest_dir("benchmarks")
CHECKPOINT_MANIFEST_DIR = manifest_dir("checkpoints")
# Weights: checkpoints/<name>/ of the checkout; an installed wheel has no checkout, so the user cache.
CHECKPOINT_DIR = Path(
    os.environ.get(
        "EVALKIT_CHECKPOINTS", cache_dir() / "checkpoints" if INSTALLED else PROJECT_ROOT / "checkpoints"
    )
)
# The 8 GenEval prompts of `make demo`, shipped in the package (protocol_data/SOURCE.md): works offline.
DEMO_DATA_DIR = PACKAGE_DIR / "protocol_data" / "demo"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The benchmark data folder: --data-dir, then $EVALKIT_DATA, then ~/.cache/evalkit/data."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("EVALKIT_DATA"):
        return Path(os.environ["EVALKIT_DATA"]).expanduser()
    return Path.home() / ".cache" / "evalkit" / "data"
