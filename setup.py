"""Build step: the manifests kept at the top of the project ship inside the wheel.

Protocol manifests (`benchmarks/`), checkpoint manifests (`checkpoints/*.yaml`) and the reward-ablation specs
(`reward_ablation/`) stay where the project layout puts them; the wheel carries copies under
`evalkit/manifests/<folder>/`, which `evalkit.paths` reads when evalkit runs from an installed wheel.
Everything else is configured in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# folder -> globs of the files the wheel carries (checkpoints/<name>/ holds weights: never packaged);
# the tiny ablation specs name their DVReward questions file relative to themselves
BUNDLED = {
    "benchmarks": ("*.yaml",),
    "checkpoints": ("*.yaml",),
    "reward_ablation": ("**/*.yaml", "*.jsonl"),
}


class BuildPyWithManifests(build_py):
    """build_py plus the top-level manifests copied into the built package."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for folder, patterns in BUNDLED.items():
            for src in sorted(p for pattern in patterns for p in (root / folder).glob(pattern)):
                dest = (
                    Path(self.build_lib) / "evalkit" / "manifests" / folder / src.relative_to(root / folder)
                )
                self.mkpath(str(dest.parent))
                self.copy_file(str(src), str(dest))


setup(cmdclass={"build_py": BuildPyWithManifests})
