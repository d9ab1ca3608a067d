"""Weights are never downloaded implicitly: a miss is one line with the installed CLI's fetch command; reward
options and judge-based rewards are checked before anything loads (issue 12)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from first_hour_helpers import one_line

from evalkit import checkpoints
from evalkit.errors import EvalkitError, MissingWeightsError


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("reward", ["pickscore", "hpsv3"])
def test_missing_reward_weights_fail_fast_with_the_fetch_command(no_network, reward) -> None:
    import transformers  # noqa: F401 - import time is not what is measured

    import evalkit.rewards.hpsv3  # noqa: F401
    import evalkit.rewards.pickscore  # noqa: F401
    from evalkit.rewards.factory import build_reward as build_scorer

    started = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        build_scorer(reward, {})
    assert time.perf_counter() - started < 10
    text = one_line(info.value)
    cli = checkpoints.hub_cli()
    assert cli and f"{cli} download " in text  # the hub CLI actually installed, with its exact syntax
    assert "evalkit weights fetch" in text and "--allow-download" in text


def test_installed_hub_cli_is_the_one_named() -> None:
    cli = checkpoints.hub_cli()
    assert cli is not None and shutil.which(cli) or (Path(__import__("sys").executable).parent / cli).exists()
    assert checkpoints.fetch_command("org/model").split()[0] == cli


def test_missing_hf_judge_fails_fast_with_the_fetch_command(no_network) -> None:
    import transformers  # noqa: F401 - import time is not what is measured

    from evalkit.judges import check_judge, load_judge

    for attempt in (
        lambda: load_judge("hf:SomeOrg/Some-VL-7B"),
        lambda: check_judge("hf:SomeOrg/Some-VL-7B"),
    ):
        started = time.perf_counter()
        with pytest.raises(MissingWeightsError) as info:
            attempt()
        assert time.perf_counter() - started < 10
        assert f"{checkpoints.hub_cli()} download SomeOrg/Some-VL-7B" in one_line(info.value)


def test_reward_weights_are_found_in_the_checkpoints_folder_without_network(no_network) -> None:
    from evalkit.rewards.factory import build_reward as build_scorer
    from evalkit.testing.rewards import tiny_pickscore

    folder = tiny_pickscore()
    for name in ("pickscore", "pickscore-processor"):  # what the manifests name
        shutil.copytree(folder, no_network / "ckpt" / name)
    scorer = build_scorer("pickscore", {"device": "cpu"})
    assert scorer.config()["model"] == "yuvalkirstain/PickScore_v1"


def test_explicit_fetch_failures_are_one_line(no_network, monkeypatch) -> None:
    with pytest.raises(EvalkitError) as info:
        checkpoints.fetch("geneval-mask2former")  # not on the hub: says how to get it
    assert "wget" in one_line(info.value)
    with pytest.raises(EvalkitError) as info:
        checkpoints.fetch("pickscor")
    assert "did you mean 'pickscore'" in one_line(info.value)


# ------------------------------------------------------------------------------------------ rewards
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("pickscore", {"normalise": "flow_grpo"}, "did you mean 'normalize'"),
        ("pickscore", {"normalize": "z"}, "normalize='z' is not one of"),
        ("unifiedreward", {"judge": "tiny", "prompt": "x"}, "prompt='x' is not one of"),
        ("viescore", {}, "computed by a judge"),
        ("dvreward", {}, "computed by a judge"),
        ("dvreward", {"judge": "hff:x"}, "did you mean 'hf'"),
        ("brightness", {"x": 1}, "unknown brightness option 'x'"),
    ],
)
def test_reward_user_errors_are_one_line_before_anything_loads(name, options, message) -> None:
    from evalkit.rewards.factory import build_reward as build_scorer

    with pytest.raises(EvalkitError, match=message) as info:
        build_scorer(name, options)
    one_line(info.value)


def test_dvreward_has_no_default_judge_and_needs_questions_for_every_prompt(tmp_path) -> None:
    from evalkit.rewards.checks import check_reward

    with pytest.raises(TypeError):  # no default judge in the factory either
        from evalkit.rewards.dvreward import build_dvreward

        build_dvreward()  # type: ignore[call-arg]
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"prompt": "a cat", "semantic_questions": [{"question_type": "semantic", "question": "Is there a '
        'cat?", "is_valid": true, "tag": "Existence"}], "quality_questions": []}\n'
    )
    check_reward("dvreward", {"judge": "tiny", "questions": str(questions)}, prompts=[("a cat", {})])
    with pytest.raises(EvalkitError, match="no questions for 1 of 2 prompts"):
        check_reward(
            "dvreward", {"judge": "tiny", "questions": str(questions)}, prompts=[("a cat", {}), ("a dog", {})]
        )
    with pytest.raises(EvalkitError, match="does not exist"):
        check_reward("dvreward", {"judge": "tiny", "questions": str(tmp_path / "none.jsonl")})
    inline = {
        "semantic_questions": [
            {"question_type": "semantic", "question": "Dog?", "is_valid": True, "tag": "Existence"}
        ]
    }
    check_reward("dvreward", {"judge": "tiny"}, prompts=[("a dog", inline)])  # questions in the metadata


def test_tiny_ablation_spec_has_questions_for_its_prompts_and_a_small_eval_limit() -> None:
    from evalkit import paths
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.grpo.ablate import spec_path
    from evalkit.grpo.ablation import load_ablation_spec
    from evalkit.rewards.checks import check_reward

    spec = load_ablation_spec(spec_path("tiny-sd3"))
    assert spec.eval_limit is not None and spec.eval_limit <= 8
    prompts = read_prompts(paths.DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl")
    for run in spec.rewards:  # what `ablate-reward` checks before training: DVReward covers every prompt
        check_reward(run.name, run.scorer, prompts=[(p, {}) for p in prompts])
