"""The wheel: built offline from a copy of the project, it carries every manifest and bundled file, and a
non-editable install of it in a fresh virtualenv lists the benchmarks with their protocols."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from fixture_paths import REPO

pytestmark = pytest.mark.slow

# What the wheel build needs from the project (checkpoints/<name>/ holds weights: never copied).
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "evalkit",
    "benchmarks",
    "reward_ablation",
)
MANIFEST_FOLDERS = {
    "benchmarks": ("*.yaml",),
    "checkpoints": ("*.yaml",),
    "reward_ablation": ("**/*.yaml", "*.jsonl"),
}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "manifests")


def _bundled_package_files() -> list[str]:
    """Non-Python files inside evalkit/ (prompts, viewer assets...), as wheel paths."""
    return sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "evalkit").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    (src / "checkpoints").mkdir()
    for manifest in (REPO / "checkpoints").glob("*.yaml"):
        shutil.copy2(manifest, src / "checkpoints" / manifest.name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run([*cmd, "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (whl,) = out.glob("evalkit-*.whl")
    return whl


def test_wheel_carries_manifests_and_bundled_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        f"evalkit/manifests/{folder}/{p.relative_to(REPO / folder)}"
        for folder, patterns in MANIFEST_FOLDERS.items()
        for pattern in patterns
        for p in sorted((REPO / folder).glob(pattern))
    ]
    assert any("/benchmarks/" in e for e in expected) and any("/checkpoints/" in e for e in expected)
    assert any(e.endswith("tiny-dvreward-questions.jsonl") for e in expected)  # the tiny specs' DVReward file
    expected += _bundled_package_files()
    missing = [e for e in expected if e not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    assert not [n for n in names if "/checkpoints/" in n and not n.endswith(".yaml")]  # never weights


def test_installed_wheel_lists_protocols_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    # evalkit's dependencies from this environment, without its editable evalkit (no .pth processing there)
    (site / "evalkit_test_deps.pth").write_text(f"{Path(yaml.__file__).resolve().parents[1]}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    done = subprocess.run([*pip, str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EVALKIT_CHECKPOINTS")}
    run = subprocess.run(
        [env_dir / "bin" / "evalkit", "ls", "benchmarks"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import evalkit.paths as p; print(p.PROTOCOL_DIR); print(p.CHECKPOINT_MANIFEST_DIR)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    ).stdout.split()  # fmt: skip
    assert all(Path(d).is_relative_to(site) for d in where), where  # the wheel's copies, not the checkout
    listed = " ".join(run.stdout.split())
    for manifest in sorted((REPO / "benchmarks").glob("*.yaml")):
        for protocol in yaml.safe_load(manifest.read_text()).get("protocols", {}):
            assert protocol in listed, f"{protocol} (from {manifest.name}) missing from `evalkit ls`"
