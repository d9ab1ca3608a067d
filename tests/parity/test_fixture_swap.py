"""Parity tests run unchanged on another fixture set of the same layout (as the hidden set will be).

A synthetic second set is derived from the visible one with different case ids, file names, question texts,
image names, case order and case count; the parity tests are then run on it in a subprocess through
EVALKIT_SHARED_FIXTURES / EVALKIT_PARITY_FIXTURES with EVALKIT_REQUIRE_FIXTURES=1. A test that named a case
or hard-coded one of its values would fail or run the wrong cases here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fixture_paths import (
    FIXTURES,
    PARITY,
    PARITY_FIXTURES_ENV,
    REPO,
    REQUIRE_ENV,
    SHARED_FIXTURES_ENV,
    TESTS,
    need,
)


def derive_flow_grpo(src: Path, dst: Path) -> list[str]:
    """SDE cases renamed, reordered (reversed) and one dropped; tensor files renamed to match."""
    data = json.loads((src / "sde_step_cases.json").read_text())
    (dst / "tensors").mkdir(parents=True)
    kept = []
    for i, case in enumerate(reversed(data["cases"][1:])):
        new_id, new_file = f"synthetic_{i:02d}", f"tensors/synthetic_{i:02d}.safetensors"
        shutil.copy(src / case["tensor_file"], dst / new_file)
        kept.append({**case, "case_id": new_id, "tensor_file": new_file})
    (dst / "sde_step_cases.json").write_text(json.dumps({**data, "cases": kept}))
    shutil.copy(src / "stat_tracker_cases.json", dst / "stat_tracker_cases.json")
    return [c["case_id"] for c in kept]


def _rename_questions(value, prefix: str):
    if isinstance(value, dict):
        return {
            (prefix + k if k.startswith("[") else k): _rename_questions(v, prefix) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rename_questions(v, prefix) for v in value]
    if isinstance(value, str) and value.startswith("["):
        return prefix + value
    return value


def derive_dvreward(src: Path, dst: Path) -> list[str]:
    """DVReward cases with new ids and every question text changed (metadata and reply keys alike)."""
    data = json.loads((src / "cases" / "dvreward.json").read_text())
    cases = []
    for i, case in enumerate(data["cases"][::-1]):
        renamed = {**case, "case_id": f"synthetic_dv_{i}"}
        renamed["metadata"] = _rename_questions(case["metadata"], "(syn) ")
        renamed["replies"] = {"(syn) " + k: v for k, v in case["replies"].items()}
        cases.append(renamed)
    (dst / "cases").mkdir(parents=True)
    (dst / "cases" / "dvreward.json").write_text(json.dumps({**data, "cases": cases}))
    return [c["case_id"] for c in cases]


def derive_pickscore(src: Path, dst: Path) -> list[str]:
    """PickScore with renamed images, the pixel cases reordered and one prompt dropped."""
    data = json.loads((src / "cases.json").read_text())
    shutil.copytree(src / data["model"], dst / "weights")
    (dst / "images").mkdir(parents=True)
    names = {}
    for i, case in enumerate(data["pixels"]):
        names[case["image"]] = f"picture_{len(data['pixels']) - i}.png"
        shutil.copy(src / "images" / case["image"], dst / "images" / names[case["image"]])
    runs = [{**r, "images": [names[n] for n in r["images"]]} for r in data["runs"][1:]]
    pixels = [{**c, "image": names[c["image"]]} for c in data["pixels"][::-1]]
    (dst / "cases.json").write_text(json.dumps({**data, "model": "weights", "runs": runs, "pixels": pixels}))
    return [Path(c["image"]).stem for c in pixels]


def _pytest(files: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", *args, *files],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_parity_tests_run_unchanged_on_a_second_fixture_set(tmp_path):
    for path in (FIXTURES / "flow_grpo", FIXTURES / "alphagrpo", PARITY / "pickscore"):
        need(path, "visible fixture set to derive the synthetic one from")
    shared, parity = tmp_path / "shared_fixtures", tmp_path / "parity"
    expected = derive_flow_grpo(FIXTURES / "flow_grpo", shared / "flow_grpo")
    expected += derive_dvreward(FIXTURES / "alphagrpo", shared / "alphagrpo")
    expected += derive_pickscore(PARITY / "pickscore", parity / "pickscore")
    env = {SHARED_FIXTURES_ENV: str(shared), PARITY_FIXTURES_ENV: str(parity), REQUIRE_ENV: "1"}
    files = [
        str(TESTS / "grpo" / "test_grpo_sde.py"),
        str(TESTS / "alphagrpo" / "test_alphagrpo_dvreward.py"),
        str(TESTS / "parity" / "test_pickscore_parity.py"),
    ]
    collected = _pytest(files, env, "--collect-only")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    for case_id in expected:
        assert f"[{case_id}]" in collected.stdout, case_id
    for visible in ("sde_case_", "v_dv_", "img0"):
        assert visible not in collected.stdout
    run = _pytest(files, env, "-x")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " skipped" not in run.stdout.splitlines()[-1]
