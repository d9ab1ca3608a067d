"""The run folder's hash covers the benchmark data each sample uses (prompt, metadata, input image):
changed data is never matched to images or records made from the old data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fixture_paths import BENCHMARKS
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.errors import EvalkitError
from evalkit.runs import data_fingerprint, sample_fingerprint

if not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)


def test_every_part_of_a_sample_changes_its_fingerprint(tmp_path):
    image = tmp_path / "in.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(image)
    base = Sample("1", "a cat", {"tag": "single_object"}, image)
    fingerprints = {sample_fingerprint(base)}
    fingerprints.add(sample_fingerprint(Sample("1", "a dog", {"tag": "single_object"}, image)))
    fingerprints.add(sample_fingerprint(Sample("1", "a cat", {"tag": "counting"}, image)))
    fingerprints.add(sample_fingerprint(Sample("2", "a cat", {"tag": "single_object"}, image)))
    Image.new("RGB", (4, 4), (9, 9, 9)).save(image)
    fingerprints.add(sample_fingerprint(base))
    assert len(fingerprints) == 5
    assert data_fingerprint([base]) == data_fingerprint([base])


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="diffusers is needed")
def test_an_edited_prompt_gets_a_new_run_folder_and_old_runs_refuse_to_score(tmp_path):
    from evalkit.evaluator import evaluate, score_run

    data = tmp_path / "data" / "geneval"
    data.mkdir(parents=True)
    (data / "object_names.txt").symlink_to(BENCHMARKS / "geneval" / "object_names.txt")
    lines = (
        (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    )
    (data / "evaluation_metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = {
        "runs_dir": tmp_path / "runs",
        "data_dir": tmp_path / "data",
        "limit": 1,
        "show_progress": False,
    }
    first = evaluate("geneval", "tiny-sd3", stages=("generate",), **common)
    edited = json.loads(lines[1])
    edited["prompt"] = "a photo of something else entirely"
    (data / "evaluation_metadata.jsonl").write_text(
        lines[0] + "\n" + json.dumps(edited) + "\n", encoding="utf-8"
    )
    second = evaluate("geneval", "tiny-sd3", stages=("generate",), **common)
    assert Path(second.run_dir) != Path(first.run_dir)
    with pytest.raises(EvalkitError, match="data changed"):
        score_run(
            first.run_dir, data_dir=tmp_path / "data", score_options={"detector": "tiny"}, show_progress=False
        )
