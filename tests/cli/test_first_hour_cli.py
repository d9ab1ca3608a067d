"""The first hour through the CLI (issue 12): every user error below is one line, exit 2, found before any
model loads or image is made. Today's behaviour for each was a traceback, a hub retry loop, a random judge,
or a failure after every image had been generated."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from first_hour_helpers import free_port
from PIL import Image

from evalkit import checkpoints


def _one_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def images(tmp_path):
    """A folder of two images and their prompts (what `evalkit score DIR --reward` reads)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, color in enumerate(("red", "blue")):
        Image.new("RGB", (16, 16), color).save(folder / f"{i}.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue square\n")
    return folder, prompts


def test_reward_weights_are_not_downloaded_implicitly(cli, images, no_network):
    folder, prompts = images
    started = time.perf_counter()
    code, _, err = cli("score", folder, "--reward", "pickscore", "--prompts", prompts)
    assert time.perf_counter() - started < 30  # not a 145 s retry loop (imports included)
    assert f"{checkpoints.hub_cli()} download yuvalkirstain/PickScore_v1" in _one_line(code, err)
    assert "--allow-download" in err and not (folder / "pickscore.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reward", "viescore"], "computed by a judge"),
        (["--reward", "dvreward"], "computed by a judge"),  # no random default judge
        (["--reward", "pickscore", "--reward-option", "normalise=flow_grpo"], "did you mean 'normalize'"),
        (["--reward", "dvreward", "--judge", "tiny"], "no questions for 2 of 2 prompts"),
        (["--reward", "dvreward", "--judge", "hf:SomeOrg/Some-VL"], "download SomeOrg/Some-VL"),
        (["--reward", "viescore", "--judge", "opneai:x"], "did you mean 'openai'"),
    ],
)
def test_reward_user_errors_are_one_line(cli, images, no_network, args, message):
    folder, prompts = images
    code, _, err = cli("score", folder, "--prompts", prompts, *args)
    assert message in _one_line(code, err)
    assert not list(folder.glob("*.jsonl"))


def _nothing_made(runs):
    return not list(runs.rglob("*.png"))


def test_srr_on_a_model_that_cannot_refine_is_refused_before_generation(cli, data_dir, tmp_path):
    runs = tmp_path / "runs"
    args = ["run", "geneval", "--model", "tiny-sd3", "--detector", "tiny", "--limit", 1]
    code, _, err = cli(*args, "--srr", 1, "--data-dir", data_dir, "--runs-dir", runs)
    assert "cannot refine" in _one_line(code, err) and _nothing_made(runs)


def test_self_gate_without_questions_is_refused_before_work(cli, data_dir, tmp_path):
    runs = tmp_path / "runs"
    code, _, err = cli(
        "run", "geneval", "--model", "bagel", "--limit", 1, "--srr", 1, "--srr-gate", "self",
        "--srr-judge", "tiny", "--data-dir", data_dir, "--runs-dir", runs,
    )  # fmt: skip
    assert "self cannot decide" in _one_line(code, err) and _nothing_made(runs)


@pytest.mark.parametrize(
    ("bench", "folders", "message"),
    [
        ("tiif", ["tiif_bench/testmini_prompts", "tiif_bench/testmini_eval_prompts"], "judge prompt missing"),
        ("dpg", ["dpg_bench/prompts"], "dpg_bench.csv"),
    ],
)
def test_missing_scoring_files_are_found_before_generation(cli, data_dir, tmp_path, bench, folders, message):
    data, runs = tmp_path / "data", tmp_path / "runs"
    for folder in folders:
        shutil.copytree(data_dir / folder, data / folder)
    code, _, err = cli(
        "run", bench, "--model", "tiny-sd3", "--judge", "tiny", "--limit", 1, "--data-dir", data,
        "--runs-dir", runs,
    )  # fmt: skip
    assert message in _one_line(code, err) and _nothing_made(runs)


def test_judge_name_and_server_are_checked_before_generation(cli, data_dir, tmp_path):
    runs = tmp_path / "runs"
    base = ["run", "tiif", "--model", "tiny-sd3", "--limit", 1, "--data-dir", data_dir, "--runs-dir", runs]
    code, _, err = cli(*base, "--judge", "opneai:gpt")
    assert "did you mean 'openai'" in _one_line(code, err)
    port = free_port()
    code, _, err = cli(*base, "--judge", "openai:gpt", "--judge-url", f"http://127.0.0.1:{port}/v1")
    assert f"cannot connect to 127.0.0.1:{port}" in _one_line(code, err)
    assert _nothing_made(runs)


def test_an_unwritable_runs_folder_is_refused_before_work(cli, data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = cli(
        "run", "geneval", "--model", "tiny-sd3", "--detector", "tiny", "--limit", 1, "--data-dir", data_dir,
        "--runs-dir", blocker / "runs",
    )  # fmt: skip
    assert "is not a folder" in _one_line(code, err)


def test_a_run_remembers_its_data_folder(cli, data_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(data_dir / "geneval", data / "geneval")
    runs = tmp_path / "runs"
    code, out, err = cli(
        "gen", "geneval", "--model", "tiny-sd3", "--limit", 1, "--data-dir", data, "--runs-dir", runs
    )
    assert code == 0, err
    (info_file,) = runs.rglob("run.json")
    assert json.loads(info_file.read_text())["data_dir"] == str(data.resolve())
    run_dir = info_file.parent
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "nowhere"))  # the default would not find the data
    code, out, err = cli("score", run_dir, "--detector", "tiny")
    assert code == 0, err
    assert "Overall" in out


def test_data_fetch_and_weights_fetch_failures_are_one_line(cli, tmp_path):
    code, _, err = cli(
        "data", "fetch", "gedit", "--data-dir", tmp_path / "d", "--mirror", f"file://{tmp_path}"
    )
    assert "no copy of stepfun-ai/GEdit-Bench" in _one_line(code, err)
    code, _, err = cli("weights", "fetch", "pickscor")
    assert "did you mean 'pickscore'" in _one_line(code, err)
