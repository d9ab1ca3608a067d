"""Run store invariants: seeds, atomic/append-only records, torn lines, provenance rules, sharding."""

from __future__ import annotations

import json

import pytest

from evalkit.errors import EvalkitError
from evalkit.runs import Run, Shard, append_jsonl, read_jsonl, sample_seed, stable_hash


def test_sample_seed_depends_only_on_its_inputs():
    seeds = {sample_seed(42, "geneval", f"{i:05d}", k) for i in range(100) for k in range(4)}
    assert len(seeds) == 400  # distinct per image
    assert sample_seed(42, "geneval", "00007", 3) == sample_seed(42, "geneval", "00007", 3)
    assert sample_seed(42, "geneval", "00007", 3) != sample_seed(43, "geneval", "00007", 3)
    assert sample_seed(42, "geneval", "00007", 3) != sample_seed(42, "tiif", "00007", 3)
    assert all(0 <= s < 2**31 for s in seeds)


def test_shards_partition_the_samples(monkeypatch):
    items = list(range(10))
    parts = [Shard(r, 3).select(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert Shard.from_env() == Shard(1, 2)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(EvalkitError, match="invalid shard"):
        Shard.from_env()


def test_torn_last_line_is_ignored_but_corruption_elsewhere_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"id": "a"})
    append_jsonl(path, {"id": "b"})
    with open(path, "a") as f:
        f.write('{"id": "c", "sco')  # killed mid-write
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    path.write_text('{"id": "a"}\n{broken\n{"id": "c"}\n')
    with pytest.raises(EvalkitError, match="records.jsonl:2"):
        read_jsonl(path)


def test_generation_settings_cannot_change_under_a_run(tmp_path):
    run = Run(tmp_path / "r")
    run.write_info({"generation": {"model": "a"}, "protocol": "geneval"})
    run.write_info({"limit": 3})  # other keys merge
    info = run.info()
    assert info["limit"] == 3 and len(info["history"]) == 2
    with pytest.raises(EvalkitError, match="different generation settings"):
        run.write_info({"generation": {"model": "b"}})


def test_run_folder_name_hashes_the_generation_config(tmp_path):
    a = Run.for_config(tmp_path, "geneval", "diffusers:org/model", {"steps": 40})
    b = Run.for_config(tmp_path, "geneval", "diffusers:org/model", {"steps": 50})
    assert a.root != b.root and a.root.name.startswith("diffusers_org_model-")
    assert stable_hash({"x": 1, "y": 2}) == stable_hash({"y": 2, "x": 1})


def test_merge_prefers_nothing_and_loses_nothing(tmp_path):
    run = Run(tmp_path)
    for rank in (0, 1):
        for i in range(rank, 6, 2):
            run.append_record({"id": f"{i:05d}/0", "sample_id": f"{i:05d}", "k": 0, "v": i}, Shard(rank, 2))
    assert len(run.records()) == 6
    assert run.merge_shards() == 6
    merged = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["v"] for r in merged] == list(range(6))
    assert not list(tmp_path.glob("records.rank*"))


def _rec(image: str, scorer: str, **extra) -> dict:
    sample, k = image.split("/")
    return {"id": image, "sample_id": sample, "k": int(k), "scorer_hash": scorer, **extra}


def test_a_rescore_staged_by_any_world_size_is_committed_whole_and_its_backups_stay_dead(tmp_path):
    run = Run(tmp_path)
    for image in ("a/0", "b/0", "c/0"):
        run.append_record(_rec(image, "old"))
    run.append_record(_rec("c/0", "old", late=True), Shard(1, 2))  # an unmerged shard file
    # an interrupted one-process rescore, resumed by 2 ranks, then by 3 (rank 2 retries a failure)
    append_jsonl(run.rescore_path("new"), _rec("a/0", "new"))
    append_jsonl(run.rescore_path("new", Shard(1, 2)), _rec("b/0", "new", failed=True))
    append_jsonl(run.rescore_path("new", Shard(0, 3)), _rec("c/0", "new"))
    append_jsonl(run.rescore_path("new", Shard(2, 3)), _rec("b/0", "new"))
    append_jsonl(run.rescore_path("other"), _rec("a/0", "other"))  # another rescore's staging: untouched
    staged = run.staged_records("new")
    assert [(r["id"], r.get("failed")) for r in staged] == [("a/0", None), ("b/0", None), ("c/0", None)]
    assert run.commit_rescore("new") == 3
    assert read_jsonl(run.root / "records.jsonl") == staged
    assert run.records() == staged  # the backed-up shard file is not read as a live one
    assert run.rescore_files("new") == [] and run.rescore_files("other") == [run.rescore_path("other")]
    # a second commit within the same second keeps both backups
    append_jsonl(run.rescore_path("new"), _rec("a/0", "new"))
    run.commit_rescore("new")
    assert len(list(run.root.glob("records.2*.bak.jsonl"))) == 2
