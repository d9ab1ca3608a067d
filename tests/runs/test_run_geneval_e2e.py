"""The whole pipeline on tiny models: generate -> score -> summary, resume, sharding and bad inputs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from evalkit.runs import read_jsonl

LIMIT = 3  # 3 prompts x 4 images


def _args(data_dir: Path, runs: Path, *extra) -> list:
    return [
        "run",
        "geneval",
        "--model",
        "tiny-sd3",
        "--detector",
        "tiny",
        "--limit",
        LIMIT,
        "--data-dir",
        data_dir,
        "--runs-dir",
        runs,
        *extra,
    ]


def _run_dir(runs: Path) -> Path:
    (run_dir,) = (runs / "geneval").iterdir()
    return run_dir


def _comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in sorted(records, key=lambda r: r["id"])]


def _images(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.glob("samples/*/*.png"))}


def test_end_to_end_then_rerun_does_no_model_work(cli, data_dir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    code, out, err = cli(*_args(data_dir, runs))
    assert code == 0, err
    run_dir = _run_dir(runs)
    records = read_jsonl(run_dir / "records.jsonl")
    assert len(records) == LIMIT * 4
    assert {r["id"] for r in records} == {f"{i:05d}/{k}" for i in range(LIMIT) for k in range(4)}
    assert all(r["protocol"] == "geneval" and isinstance(r["correct"], bool) for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_scored"] == summary["n_planned"] == LIMIT * 4
    assert summary["tasks"]["single_object"]["n_images"] == LIMIT * 4
    assert list(summary["table"]) == ["Single Obj.", "Overall"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["protocol"] == "geneval" and info["generation"]["seed"] == 42
    assert info["generator"]["pipeline"] == "StableDiffusion3Pipeline"
    assert info["scoring"]["rules"]["threshold"] == 0.3
    assert "torch" in info["history"][0]["versions"] and "git_sha" in info["history"][0]
    assert "Single Obj." in out and "protocol: geneval" in out
    sidecar = json.loads((run_dir / "samples" / "00000" / "0.json").read_text())
    assert isinstance(sidecar["seed"], int)

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("a finished run must not load any model")

    monkeypatch.setattr("evalkit.generators.diffusers_t2i.build", must_not_be_called)
    monkeypatch.setattr("evalkit.benchmarks.geneval.benchmark.build_geneval_scorer", must_not_be_called)
    before = (run_dir / "records.jsonl").read_bytes()
    code, _, err = cli(*_args(data_dir, runs))
    assert code == 0, err
    assert (run_dir / "records.jsonl").read_bytes() == before


def test_interrupted_run_resumes_and_matches_uninterrupted(cli, data_dir, tmp_path, monkeypatch):
    from evalkit.benchmarks.geneval.scorer import GenEvalScorer
    from evalkit.generators.diffusers_t2i import DiffusersGenerator

    code, _, err = cli(*_args(data_dir, tmp_path / "ref"))
    assert code == 0, err
    ref_dir = _run_dir(tmp_path / "ref")

    real_generate = DiffusersGenerator.generate
    calls = {"n": 0}

    def dies_on_second_batch(self, requests):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_generate(self, requests)

    monkeypatch.setattr(DiffusersGenerator, "generate", dies_on_second_batch)
    runs = tmp_path / "runs"
    code, _, err = cli(*_args(data_dir, runs))
    assert code == 130 and "resume" in err
    run_dir = _run_dir(runs)
    first = _images(run_dir)
    assert len(first) == 4 and not (run_dir / "records.jsonl").exists()
    monkeypatch.setattr(DiffusersGenerator, "generate", real_generate)

    real_score = GenEvalScorer.score_images

    def dies_on_second_chunk(self, samples, images):
        calls["score"] = calls.get("score", 0) + 1
        if calls["score"] == 2:
            raise KeyboardInterrupt
        return real_score(self, samples, images)

    monkeypatch.setattr(GenEvalScorer, "score_images", dies_on_second_chunk)
    code, _, _ = cli(*_args(data_dir, runs, "--batch-size", 4))
    assert code == 130
    assert len(read_jsonl(run_dir / "records.jsonl")) == 4
    monkeypatch.setattr(GenEvalScorer, "score_images", real_score)
    code, _, err = cli(*_args(data_dir, runs))
    assert code == 0, err
    images = _images(run_dir)
    assert all(images[name] == data for name, data in first.items())  # finished images untouched
    assert images == _images(ref_dir)
    assert _comparable(read_jsonl(run_dir / "records.jsonl")) == _comparable(
        read_jsonl(ref_dir / "records.jsonl")
    )


def test_two_shards_give_the_same_records_as_one(cli, data_dir, tmp_path):
    code, _, err = cli(*_args(data_dir, tmp_path / "one"))
    assert code == 0, err
    one = _run_dir(tmp_path / "one")
    runs = tmp_path / "two"
    for rank in (0, 1):
        code, _, err = cli(*_args(data_dir, runs), env={"RANK": str(rank), "WORLD_SIZE": "2"})
        assert code == 0, err
        assert "evalkit merge" in err
    two = _run_dir(runs)
    assert sorted(p.name for p in two.glob("records.rank*.jsonl")) == [
        "records.rank0.jsonl",
        "records.rank1.jsonl",
    ]
    code, _, err = cli("merge", two, "--data-dir", data_dir)
    assert code == 0, err
    assert not list(two.glob("records.rank*.jsonl"))
    assert _images(two) == _images(one)
    assert _comparable(read_jsonl(two / "records.jsonl")) == _comparable(read_jsonl(one / "records.jsonl"))
    assert (
        json.loads((two / "summary.json").read_text())["table"]
        == json.loads((one / "summary.json").read_text())["table"]
    )


def test_malformed_metadata_line_is_one_clear_error(cli, data_dir, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(data_dir / "geneval", bad / "geneval")
    path = bad / "geneval" / "evaluation_metadata.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = '{"tag": "single_object", "include": [{"class": "unicorn", "count": 1}], "prompt": "x"}'
    path.write_text("\n".join(lines) + "\n")
    code, out, err = cli(*_args(bad, tmp_path / "runs"))
    assert code == 2
    assert err.strip().startswith("error:") and f"{path}:5:" in err and "unicorn" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_unknown_model_suggests_the_closest(cli, data_dir, tmp_path):
    code, _, err = cli(
        "run", "geneval", "--model", "tiny-sd4", "--data-dir", data_dir, "--runs-dir", tmp_path
    )
    assert code == 2 and "did you mean 'tiny-sd3'" in err
    code, _, err = cli(
        "run", "genevall", "--model", "tiny-sd3", "--data-dir", data_dir, "--runs-dir", tmp_path
    )
    assert code == 2 and "did you mean 'geneval'" in err


def test_missing_weights_say_how_to_get_them(cli, data_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr("evalkit.checkpoints.CHECKPOINT_DIR", tmp_path / "ckpt")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code, _, err = cli(
        "run", "geneval", "--model", "sd35m", "--limit", 1, "--data-dir", data_dir, "--runs-dir", tmp_path
    )
    assert code == 2
    assert (
        "weights for 'sd35m' not found" in err
        and re.search(r"(hf|huggingface-cli) download stabilityai/stable-diffusion-3\.5-medium", err)
    )
    assert len(err.strip().splitlines()) == 1


def test_corrupt_image_is_reported_and_finished_records_kept(cli, data_dir, tmp_path):
    runs = tmp_path / "runs"
    code, _, err = cli(*_args(data_dir, runs)[:-2], "--runs-dir", runs)
    assert code == 0, err
    run_dir = _run_dir(runs)
    records_before = read_jsonl(run_dir / "records.jsonl")
    # drop the records of the last sample, then damage one of its images
    kept = [r for r in records_before if r["sample_id"] != "00002"]
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (run_dir / "samples" / "00002" / "1.png").write_bytes(b"not a png")
    code, _, err = cli("score", run_dir, "--detector", "tiny", "--data-dir", data_dir)
    assert code == 2
    assert "corrupt image" in err and "00002/1.png" in err and len(err.strip().splitlines()) == 1
    # the images read before the damaged one (its sample's image 0) are scored and recorded too
    after = read_jsonl(run_dir / "records.jsonl")
    assert _comparable(after[: len(kept)]) == _comparable(kept)
    assert [r["id"] for r in after[len(kept) :]] == ["00002/0"]
