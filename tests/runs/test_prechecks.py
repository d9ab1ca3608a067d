"""Checks made before any model loads: scoring data files, SRR requirements, writable run folders (issue 12)."""

from __future__ import annotations

import shutil

import pytest
from first_hour_helpers import one_line

from evalkit.errors import EvalkitError


# ------------------------------------------------------------------------------------------ before work
def test_prechecks_find_missing_scoring_files_before_generation(data_dir, tmp_path) -> None:
    from evalkit.benchmarks.dpg import DPG
    from evalkit.benchmarks.tiif import TIIF
    from evalkit.prechecks import check_before_work, check_scoring_inputs

    for folder in ("tiif_bench/testmini_prompts", "tiif_bench/testmini_eval_prompts", "dpg_bench/prompts"):
        shutil.copytree(data_dir / folder, tmp_path / folder)
    tiif = TIIF(tmp_path, protocol="tiif")  # prompts present, judge prompts not
    samples = tiif.samples()[:2]
    with pytest.raises(EvalkitError, match="judge prompt missing.*evalkit data fetch tiif") as info:
        check_scoring_inputs(tiif)
    one_line(info.value)
    from evalkit import data

    data.fetch("tiif", tmp_path, mirror=f"file://{data_dir}")  # installs the shipped judge prompts
    check_scoring_inputs(tiif)
    with pytest.raises(EvalkitError, match="scored by a judge"):
        check_before_work(tiif, samples)
    dpg = DPG(tmp_path)
    with pytest.raises(EvalkitError, match="dpg_bench.csv"):
        check_before_work(dpg, dpg.samples()[:1], judge="tiny")


def test_prechecks_refuse_srr_and_unwritable_folders_before_work(tmp_path) -> None:
    from evalkit.benchmarks.base import Sample
    from evalkit.prechecks import check_model_can, check_srr, check_writable

    with pytest.raises(EvalkitError, match="tiny-sd3 cannot refine"):
        check_model_can("tiny-sd3", {}, {"refine"})
    with pytest.raises(EvalkitError, match="cannot edit"):
        check_model_can("tiny-sd3", {}, {"edit"})
    check_model_can("tiny-sd3-edit", {}, {"edit"})
    samples = [Sample(id="0", prompt="a cat", metadata={})]
    with pytest.raises(EvalkitError, match="cannot refine"):
        check_srr("tiny-sd3", {}, rounds=1, gate="all", samples=samples)
    with pytest.raises(EvalkitError, match="unknown SRR gate"):
        check_srr("bagel", {}, rounds=1, gate="selfish", samples=samples)
    with pytest.raises(
        EvalkitError, match="self cannot decide.*needs questions|self cannot decide.*no questions"
    ):
        check_srr("bagel", {}, rounds=1, gate="self", samples=samples, reward_judge="tiny")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(EvalkitError, match="is not a folder"):
        check_writable(blocker / "runs")
    check_writable(tmp_path / "new" / "runs")
