"""Decomposition through a real OpenAI-compatible HTTP round trip, strict parsing, caching, and the CLI."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.dvreward.decompose import (
    QUALITY_INSTRUCTIONS,
    REVIEW_INSTRUCTIONS,
    SEMANTIC_INSTRUCTIONS,
    Decomposer,
    load_json_reply,
    parse_quality_reply,
    parse_review_reply,
    parse_semantic_reply,
    read_prompts,
)
from evalkit.dvreward.format import read_jsonl, write_jsonl
from evalkit.judges import JudgeFailure, ReplyCache, load_judge

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed for the HTTP decomposition tests", allow_module_level=True)

from evalkit.cli.dvreward import dvreward_app  # noqa: E402
from evalkit.judges.hf import Generation  # noqa: E402
from evalkit.judges.server import JudgeServer  # noqa: E402

PROMPT = "a red cat on a sofa"


class ScriptedLLM:
    """What JudgeServer serves: replies chosen by the instructions in the system turn, like an LLM would."""

    name = "scripted-llm"

    def __init__(self):
        self.garbage: dict[str, int] = {}  # step -> how many unparseable replies to give first
        self.seen: list[tuple[str, dict, int]] = []

    def generate(self, messages, *, max_tokens, temperature, top_p, seed, top_logprobs) -> Generation:
        system, payload = messages[0]["content"], json.loads(messages[-1]["content"])
        step = {
            SEMANTIC_INSTRUCTIONS: "semantic",
            REVIEW_INSTRUCTIONS: "review",
            QUALITY_INSTRUCTIONS: "quality",
        }[system]
        self.seen.append((step, payload, seed))
        if self.garbage.get(step, 0) > 0:
            self.garbage[step] -= 1
            text = "Sure! Here are your questions:\n1. Is there a cat?"
        else:
            text = getattr(self, step)(payload)
        return Generation(text, "stop", [], 10)

    def semantic(self, payload) -> str:
        facts = {"cat": "Is there a cat?", "cat is red": "Is the cat red?", "sofa": "Is there a sofa?"}
        facts["sunny"] = "Is it sunny?"
        body = json.dumps({"questions": [{"fact": f, "question": q} for f, q in facts.items()]})
        return f"```json\n{body}\n```"

    def review(self, payload) -> str:
        results = []
        for q in payload["questions"]:
            tag = "attribute" if "red" in q else "Environment" if "sunny" in q else "Existence"
            valid = "sunny" not in q and "nothing" not in payload["prompt"]
            results.append({"question": q, "is_valid": valid, "tag": tag, "reason": "..."})
        return json.dumps({"results": results})

    def quality(self, payload) -> str:
        assert "Is it sunny?" not in payload["semantic_questions"]
        items = [
            {"question": "Does the cat have plausible anatomy?", "aspect": "Anatomy"},
            {"question": "Is the sofa fabric realistic?", "aspect": "texture"},
        ]
        return json.dumps({"questions": items})


@pytest.fixture
def llm_server():
    scripted = ScriptedLLM()
    with JudgeServer(scripted) as server:
        yield server, scripted


def http_llm(server, **options):
    return load_judge("openai:scripted-llm", url=server.url, max_retries=0, timeout=10, **options)


def test_decomposition_over_http_is_validated_tagged_and_cached(llm_server, tmp_path) -> None:
    server, scripted = llm_server
    cache = tmp_path / "decompositions.sqlite"
    result = Decomposer(http_llm(server), cache=cache).decompose(PROMPT)
    assert [(q.question, q.tag, q.is_valid) for q in result.semantic_questions] == [
        ("Is there a cat?", "Existence", True),
        ("Is the cat red?", "Attribute", True),
        ("Is there a sofa?", "Existence", True),
        ("Is it sunny?", "Environment", False),
    ]
    assert [(q.question_type, q.tag) for q in result.quality_questions] == [
        ("quality", "Anatomy"),
        ("quality", "Texture"),
    ]
    assert server.requests == 3
    # Same prompt and LLM configuration: served from SQLite, no request.
    again = Decomposer(http_llm(server), cache=ReplyCache(cache)).decompose(PROMPT)
    assert again.to_dict() == result.to_dict() and server.requests == 3
    # Another LLM configuration is another key.
    Decomposer(http_llm(server), cache=cache, temperature=0.0).decompose(PROMPT)
    assert server.requests == 6


def test_an_unparseable_reply_is_retried_then_recorded_as_a_failure(llm_server, tmp_path) -> None:
    server, scripted = llm_server
    scripted.garbage["review"] = 1
    decomposer = Decomposer(http_llm(server), cache=tmp_path / "c.sqlite", max_attempts=2)
    assert len(decomposer.decompose(PROMPT).semantic_questions) == 4
    assert [seed for step, _, seed in scripted.seen if step == "review"] == [
        0,
        1,
    ]  # retried with another seed
    scripted.garbage["semantic"] = 5
    results = decomposer.decompose_many(["a dog", "a bird"], workers=2)
    assert all(isinstance(r, JudgeFailure) for r in results)
    assert (
        "semantic questions: unparseable reply" in results[0].reason
        and "after 2 attempts" in results[0].reason
    )
    assert len(ReplyCache(tmp_path / "c.sqlite")) == 1  # only the successful prompt was cached


def test_a_prompt_without_any_valid_question_is_redrafted_then_fails(llm_server, tmp_path) -> None:
    server, scripted = llm_server
    with pytest.raises(JudgeFailure, match="no semantic question was valid in 2 drafts"):
        Decomposer(http_llm(server), cache=tmp_path / "c.sqlite", max_attempts=2).decompose("nothing at all")
    assert [(step, seed) for step, _, seed in scripted.seen] == [
        ("semantic", 0),
        ("review", 0),
        ("semantic", 2),
        ("review", 2),
    ]


def test_reply_parsing_is_strict() -> None:
    assert load_json_reply('```json\n{"a": 1}\n```') == {"a": 1}
    with pytest.raises(ValueError, match="not JSON"):
        load_json_reply('Here you go: {"a": 1}')
    with pytest.raises(ValueError, match="not a question"):
        parse_semantic_reply('{"questions": [{"question": "There is a cat."}]}')
    with pytest.raises(ValueError, match="no questions"):
        parse_semantic_reply('{"questions": []}')
    assert parse_semantic_reply(
        '{"questions": [{"question": "Is  it red?"}, {"question": "Is it red?"}]}'
    ) == ["Is it red?"]
    good = '{"results": [{"question": "Is it red?", "is_valid": true, "tag": "COUNT"}]}'
    assert parse_review_reply(good, ["Is it red?"]) == [(True, "Count")]
    for bad, message in [
        (good.replace("COUNT", "Colour"), "not one of"),
        (good.replace("true", '"true"'), "is_valid"),
        (good.replace("Is it red?", "Is it blue?"), "echo"),
        ('{"results": []}', "0 results for 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_review_reply(bad, ["Is it red?"])
    with pytest.raises(ValueError, match="aspect"):
        parse_quality_reply('{"questions": [{"question": "Is it sharp?", "aspect": "Sharpness"}]}')


def test_prompts_are_read_from_text_or_jsonl(tmp_path) -> None:
    (tmp_path / "p.txt").write_text("a cat\n\n a dog \n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a cat", "tag": "x"}\n{"prompt": "a dog"}\n')
    assert read_prompts(tmp_path / "p.txt") == read_prompts(tmp_path / "p.jsonl") == ["a cat", "a dog"]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_decompose_writes_alphagrpo_jsonl_and_reports_failures(llm_server, tmp_path) -> None:
    server, scripted = llm_server
    (tmp_path / "prompts.txt").write_text(f"{PROMPT}\na blue car\n")
    out = tmp_path / "questions.jsonl"
    args = ["decompose", str(tmp_path / "prompts.txt"), "--out", str(out), "--llm", "openai:scripted-llm"]
    args += ["--llm-url", server.url, "--cache", str(tmp_path / "c.sqlite"), "--workers", "1"]
    args += ["--llm-option", "max_retries=0"]
    result = CliRunner().invoke(dvreward_app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["prompt"] for line in lines] == [PROMPT, "a blue car"]
    assert set(lines[0]) == {"prompt", "semantic_questions", "quality_questions", "original_index"}
    assert lines[1]["original_index"] == 1
    assert set(lines[0]["semantic_questions"][0]) == {"question_type", "question", "is_valid", "tag"}
    scripted.garbage["quality"] = 10
    (tmp_path / "prompts.txt").write_text(f"{PROMPT}\na green bus\n")
    result = CliRunner().invoke(dvreward_app, args + ["--max-attempts", "1"])
    assert result.exit_code == 1
    assert [d.prompt for d in read_jsonl(out)] == [PROMPT]  # cached one kept, failed one not written
    (failure,) = [json.loads(x) for x in (tmp_path / "questions.failures.jsonl").read_text().splitlines()]
    assert failure["prompt"] == "a green bus" and failure["reason"].startswith("quality questions")


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="the tiny judge needs torchvision"
)
def test_cli_score_writes_rewards_and_details_with_the_tiny_judge(tmp_path) -> None:
    from evalkit.dvreward import Decomposition, Question

    images = tmp_path / "images"
    (images / "7").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, prompt in (("a", PROMPT), ("b", "not in the file")):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{name}.png")
        (images / f"{name}.json").write_text(json.dumps({"prompt": prompt}))
    Image.new("RGB", (32, 32)).save(images / "7" / "0.png")  # no sidecar, index 7 not in the file
    decomposition = Decomposition(
        PROMPT,
        [
            Question("Is there a cat?", "semantic", "Existence"),
            Question("Is the cat red?", "semantic", "Attribute"),
        ],
        [Question("Is the image sharp?", "quality", "Texture")],
    )
    write_jsonl(tmp_path / "q.jsonl", [decomposition, Decomposition("a dog", [], [])])
    args = ["score", "--images", str(images), "--questions", str(tmp_path / "q.jsonl"), "--judge", "tiny"]
    result = CliRunner().invoke(dvreward_app, args)
    assert result.exit_code == 0, result.output
    lines = {x["image"]: x for x in map(json.loads, (images / "dvreward.jsonl").read_text().splitlines())}
    assert list(lines) == ["7/0.png", "a.png", "b.png"]
    assert lines["b.png"]["reward"] is None and lines["b.png"]["failure"] == "no questions for this prompt"
    assert lines["7/0.png"]["failure"] == "no prompt for this image"
    scored = lines["a.png"]
    assert 0.0 <= scored["reward"] <= 1.0 and [q["source"] for q in scored["questions"]] == ["logprobs"] * 3
    s = [q["score"] for q in scored["questions"]]
    assert scored["reward"] == pytest.approx(((s[0] + s[1]) / 2 * s[2]) ** 0.5)
    assert (images / "judge_cache.sqlite").exists()
