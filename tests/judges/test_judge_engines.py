"""vllm: and sglang: judges on CPU: the pure conversions with engine outputs shaped like the real APIs,
and the whole judge over stand-in engines that answer from the tiny Qwen2-VL (P(yes) equals hf:'s).

The real engines need a GPU; bench/judge_engines_gpu.sh checks them where one is available."""

from __future__ import annotations

import importlib.util
import math
import sys
from types import SimpleNamespace

import pytest
from engine_fakes import CompletionOutput, Logprob, RequestOutput, SamplingParams, TinySGLang, TinyVLLM
from first_hour_helpers import one_line
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.judges import engine_io
from evalkit.judges.base import JudgeFailure, YesNoAnswer

QUESTIONS = ["Is there a red cat in the image?", "Are there two cars?", "Is the clock blue?"]
IMAGE = Image.new("RGB", (48, 40), (200, 30, 30))


def _decode(token_id: int) -> str:
    return f"<{token_id}>"


# ------------------------------------------------------------------------------------------ requests


def test_yes_no_request_puts_the_image_first_and_asks_for_log_probs() -> None:
    request = engine_io.yes_no_request(IMAGE, "Is it red?", system_prompt="Judge.", top_logprobs=5)
    system, user = request["messages"]
    assert system == {"role": "system", "content": "Judge."}
    assert [part["type"] for part in user["content"]] == ["image", "text"]
    assert (request["temperature"], request["max_tokens"], request["top_logprobs"]) == (0.0, 1, 5)
    plain = engine_io.yes_no_request(IMAGE, "Is it red?", system_prompt=None, top_logprobs=0)
    assert "logprobs" not in plain and len(plain["messages"]) == 1


@pytest.mark.parametrize(
    ("request_fields", "vllm", "sglang"),
    [
        (
            {
                "temperature": 0.0,
                "top_p": 1.0,
                "max_tokens": 1,
                "seed": 0,
                "logprobs": True,
                "top_logprobs": 20,
            },
            {"temperature": 0.0, "top_p": 1.0, "max_tokens": 1, "logprobs": 20, "seed": 0},
            {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 1},
        ),
        (  # AlphaGRPO's request: top-5 log-probs of every token, 10 tokens
            {"max_tokens": 10, "temperature": 0.0, "top_p": 0.9, "logprobs": True, "top_logprobs": 5},
            {"temperature": 0.0, "top_p": 0.9, "max_tokens": 10, "logprobs": 5},
            {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 10},
        ),
        (  # sampled chat without log-probs: the seed reaches both engines
            {"temperature": 1.0, "top_p": 0.95, "max_completion_tokens": 300, "seed": 7},
            {"temperature": 1.0, "top_p": 0.95, "max_tokens": 300, "logprobs": None, "seed": 7},
            {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 300, "sampling_seed": 7},
        ),
    ],
)
def test_sampling_parameters_per_engine(request_fields, vllm, sglang) -> None:
    assert engine_io.vllm_sampling(request_fields) == vllm
    assert engine_io.sglang_sampling(request_fields) == sglang


def test_vllm_messages_carry_pil_images_and_keep_wire_parts() -> None:
    url_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [{"type": "image", "image": IMAGE}, url_part, {"type": "text", "text": "q"}],
        },
    ]
    conversation = engine_io.to_vllm_messages(messages)
    assert conversation[0] == {"role": "system", "content": "s"}
    parts = conversation[1]["content"]
    assert parts[0] == {"type": "image_pil", "image_pil": IMAGE} and parts[1] == url_part
    assert parts[2] == {"type": "text", "text": "q"}


def test_sglang_inputs_render_the_template_over_image_placeholders() -> None:
    request = engine_io.yes_no_request(IMAGE, "Is it red?", system_prompt=None, top_logprobs=5)
    seen = []
    prompt, images = engine_io.sglang_inputs(request, lambda messages: seen.append(messages) or "PROMPT")
    assert prompt == "PROMPT" and images == [IMAGE]
    assert seen[0][0]["content"][0] == {"type": "image"}


# ------------------------------------------------------------------------------------------ replies


def _vllm_output(
    position: dict[int, Logprob] | None, token: int, text: str, finish="length"
) -> RequestOutput:
    choice = CompletionOutput(0, text, [token], None, None if position is None else [position], finish)
    return RequestOutput("0", None, [1, 2, 3, 4], [choice], num_cached_tokens=3)


def test_vllm_output_keeps_the_top_k_best_first_and_the_sampled_token() -> None:
    # top-2 requested; the sampled token (id 9) ranks below them, as vLLM adds it to the mapping
    position = {
        5: Logprob(math.log(0.2), 2, "No"),
        4: Logprob(math.log(0.7), 1, None),  # no decoded text: decoded from the id
        9: Logprob(math.log(0.01), 7, " maybe"),
    }
    completion = engine_io.completion_from_vllm(
        _vllm_output(position, 9, " maybe"), model="judge", top_logprobs=2, decode=_decode
    )
    choice = completion["choices"][0]
    entry = choice["logprobs"]["content"][0]
    assert entry["token"] == " maybe" and entry["logprob"] == pytest.approx(math.log(0.01))
    assert [(alt["token"], round(math.exp(alt["logprob"]), 6)) for alt in entry["top_logprobs"]] == [
        ("<4>", 0.7),
        ("No", 0.2),
    ]
    assert choice["message"]["content"] == " maybe" and choice["finish_reason"] == "length"
    assert completion["usage"]["prompt_tokens"] == 4
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert completion["model"] == "judge"


def test_vllm_output_without_requested_log_probs_and_aborted_requests() -> None:
    completion = engine_io.completion_from_vllm(
        _vllm_output(None, 4, "Yes", finish="stop"), model="m", top_logprobs=None, decode=_decode
    )
    assert completion["choices"][0]["logprobs"] is None
    assert engine_io.yes_no_answer(completion) == YesNoAnswer(1.0, "text", "m")
    with pytest.raises(JudgeFailure, match="aborted"):
        engine_io.completion_from_vllm(
            _vllm_output(None, 4, "", "abort"), model="m", top_logprobs=None, decode=_decode
        )


def test_sglang_output_decodes_ids_and_tolerates_missing_alternatives() -> None:
    output = {
        "text": "Yes it is",
        "meta_info": {
            "finish_reason": {"type": "stop", "matched": 2},
            "prompt_tokens": 11,
            "completion_tokens": 3,
            "cached_tokens": 8,
            "output_token_logprobs": [(math.log(0.6), 7, None), (-0.1, 8, " it"), (-0.2, 9, None)],
            "output_top_logprobs": [
                [(math.log(0.3), 6, "No"), (math.log(0.6), 7, None)],  # not sorted: sorted here
                None,
                [(-0.2, 9, None)],
            ],
        },
    }
    completion = engine_io.completion_from_sglang(output, model="m", top_logprobs=5, decode=_decode)
    entries = completion["choices"][0]["logprobs"]["content"]
    assert [entry["token"] for entry in entries] == ["<7>", " it", "<9>"]
    assert [alt["token"] for alt in entries[0]["top_logprobs"]] == ["<7>", "No"]
    assert entries[1]["top_logprobs"] == []
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    aborted = {"text": "", "meta_info": {"finish_reason": {"type": "abort", "message": "too long"}}}
    with pytest.raises(JudgeFailure, match="aborted the request: too long"):
        engine_io.completion_from_sglang(aborted, model="m", top_logprobs=None, decode=_decode)


def _completion(top: list[tuple[str, float]], token: tuple[str, float], text: str = "Yes") -> dict:
    entry = {
        "token": token[0],
        "logprob": token[1],
        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
    }
    return engine_io.chat_completion(
        model="m", text=text, finish_reason="length", logprobs=[entry], prompt_tokens=1, completion_tokens=1
    )


def test_p_yes_sums_spellings_and_counts_the_sampled_token() -> None:
    top = [("Yes", math.log(0.4)), (" yes", math.log(0.1)), ("No", math.log(0.25)), ("Maybe", math.log(0.2))]
    answer = engine_io.yes_no_answer(_completion(top, ("Yes", math.log(0.4))))
    assert answer.p_yes == pytest.approx(0.5 / 0.75) and answer.source == "logprobs"
    # the sampled token is outside the alternatives: it still counts
    answer = engine_io.yes_no_answer(_completion([("Maybe", -0.1)], ("▁No", math.log(0.3)), "No"))
    assert answer.p_yes == 0.0
    with pytest.raises(JudgeFailure, match="no yes/no token among the top 2"):
        engine_io.yes_no_answer(_completion([("Maybe", -0.1)], ("Perhaps", -3.0), "Perhaps"))
    no_logprobs = engine_io.chat_completion(
        model="m", text="Banana.", finish_reason="stop", logprobs=None, prompt_tokens=1, completion_tokens=1
    )
    with pytest.raises(JudgeFailure, match="unparseable"):
        engine_io.yes_no_answer(no_logprobs)


def test_engine_replies_feed_the_alphagrpo_protocol_unchanged() -> None:
    from evalkit.dvreward.alphagrpo import question_score

    top = [("Yes", math.log(0.6)), ("No", math.log(0.2)), ("yes.", math.log(0.1))]
    assert question_score(_completion(top, ("Yes", math.log(0.6)))) == pytest.approx(0.7 / 0.9)


# ------------------------------------------------------------------------------------------ judges


@pytest.fixture
def fake_vllm(monkeypatch):
    """`from vllm import SamplingParams` inside the engine class finds the stand-in."""
    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(SamplingParams=SamplingParams))


def _vllm_judge(hf, **options):
    from evalkit.judges.engine import EngineJudge, VLLMEngine

    llm = TinyVLLM(hf)
    engine = VLLMEngine(llm, model="tiny-qwen2vl", settings={"dtype": "float32"})
    return EngineJudge(engine, name="tiny-qwen2vl", snapshot="s1", **options), llm


@pytest.mark.slow
def test_vllm_judge_matches_the_local_judge_in_one_batch(tiny_judge, fake_vllm, tmp_path) -> None:
    vocab = len(tiny_judge.tokenizer)
    judge, llm = _vllm_judge(tiny_judge, top_logprobs=vocab, cache=tmp_path / "cache.sqlite")
    answers = judge.answer_yes_no(IMAGE, QUESTIONS)
    expected = [tiny_judge.p_yes_full_forward(IMAGE, question) for question in QUESTIONS]
    assert [answer.p_yes for answer in answers] == pytest.approx(expected, abs=1e-6)
    assert all(answer.source == "logprobs" and answer.snapshot == "tiny-qwen2vl" for answer in answers)
    assert len(llm.calls) == 1 and len(llm.calls[0]) == len(QUESTIONS)  # one engine call for the image
    assert all(conv[0]["content"][0]["type"] == "image_pil" for conv in llm.calls[0])  # image first
    again = judge.answer_yes_no(IMAGE, QUESTIONS)
    assert len(llm.calls) == 1 and all(answer.cached for answer in again)
    assert judge.config()["backend"] == "vllm" and judge.config()["engine"] == {"dtype": "float32"}


@pytest.mark.slow
def test_sglang_judge_renders_the_same_prompt_as_the_local_judge(tiny_judge) -> None:
    from evalkit.judges.engine import EngineJudge, SGLangEngine

    engine = TinySGLang(tiny_judge)
    wrapped = SGLangEngine(engine, tiny_judge.processor, model="tiny-qwen2vl", settings={"dtype": "float32"})
    judge = EngineJudge(wrapped, name="tiny-qwen2vl", top_logprobs=len(tiny_judge.tokenizer))
    answers = judge.answer_yes_no(IMAGE, QUESTIONS)
    expected = [tiny_judge.p_yes_full_forward(IMAGE, question) for question in QUESTIONS]
    assert [answer.p_yes for answer in answers] == pytest.approx(expected, abs=1e-6)
    assert len(engine.prompts) == len(QUESTIONS) and all("<|image_pad|>" in p for p in engine.prompts)
    text_only = {"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 1, "temperature": 0.0}
    reply = judge.chat_completion(**text_only)  # no image anywhere: image_data is None, not [None]
    assert engine.image_data[-1] is None and reply["choices"][0]["logprobs"] is None


@pytest.mark.slow
def test_engine_judge_raw_completions_feed_the_alphagrpo_reward(tiny_judge, fake_vllm) -> None:
    from evalkit.rewards.dvreward_alphagrpo import AlphaGRPOProtocolReward

    judge, _ = _vllm_judge(tiny_judge, top_logprobs=5)
    answers = judge.answer_yes_no(IMAGE, QUESTIONS)  # top-5 of a random model: a value or a failure each
    assert all(isinstance(answer, YesNoAnswer | JudgeFailure) for answer in answers)
    message = {"role": "user", "content": [{"type": "image", "image": IMAGE}, {"type": "text", "text": "Hi"}]}
    raw = judge.chat_completion(
        model="ignored", messages=[message], max_tokens=1, logprobs=True, top_logprobs=5
    )
    assert len(raw["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5
    reward = AlphaGRPOProtocolReward(judge)  # accepted: the engine judge speaks chat completions
    assert reward.official.model == "tiny-qwen2vl"


class CannedEngine:
    """Replies with fixed texts, recording the requests it got."""

    backend = "vllm"

    def __init__(self, *texts: str):
        self.texts = list(texts)
        self.requests: list[dict] = []

    def config(self) -> dict:
        return {"dtype": "bfloat16"}

    def complete(self, requests):
        self.requests.extend(requests)
        return [
            engine_io.chat_completion(
                model="m",
                text=self.texts.pop(0),
                finish_reason="stop",
                logprobs=None,
                prompt_tokens=3,
                completion_tokens=2,
            )
            for _ in requests
        ]


def test_engine_judge_chat_caches_only_parsed_replies_and_reports_engine_errors(tmp_path) -> None:
    from evalkit.judges.base import UnparseableReply
    from evalkit.judges.engine import EngineJudge

    engine = CannedEngine("no score here", "Final Score: 4", "unused")
    judge = EngineJudge(engine, name="m", system_prompt="Be strict.", cache=tmp_path / "c.sqlite")
    message = {
        "role": "user",
        "content": [{"type": "image", "image": IMAGE}, {"type": "text", "text": "Rate."}],
    }

    def validate(text: str) -> None:
        if "Final Score" not in text:
            raise ValueError("no Final Score")

    with pytest.raises(UnparseableReply):
        judge.chat([message], validate=validate, temperature=0.7)
    assert judge.chat([message], validate=validate, temperature=0.7) == "Final Score: 4"  # asked again
    assert judge.chat([message], validate=validate, temperature=0.7) == "Final Score: 4"  # from the cache
    assert len(engine.requests) == 2
    first = engine.requests[0]
    assert first["messages"][0] == {"role": "system", "content": "Be strict."}
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.7, 512, 0)
    with pytest.raises(TypeError, match="unknown decoding options"):
        judge.chat([message], top_k=3)

    def broken(requests):
        raise RuntimeError("CUDA out of memory")

    engine.complete = broken
    failures = judge.answer_yes_no(Image.new("RGB", (8, 8)), QUESTIONS[:2])
    assert [f.reason for f in failures] == ["vllm engine error: RuntimeError: CUDA out of memory"] * 2
    assert judge.stats["failures"] == 3


def test_chat_validator_that_raises_judge_failure_is_an_unparseable_reply(tmp_path) -> None:
    """Every judge shares one chat(): a validator's JudgeFailure, like its ValueError, makes the reply an
    UnparseableReply (the caller gets the text through `ask`), counted and never cached."""
    from evalkit.judges.base import JudgeFailure, UnparseableReply, ask
    from evalkit.judges.engine import EngineJudge

    engine = CannedEngine("odd", "odd")
    judge = EngineJudge(engine, name="m", cache=tmp_path / "c.sqlite")

    def validate(text: str) -> None:
        raise JudgeFailure("no verdict")

    message = {"role": "user", "content": "Rate."}
    with pytest.raises(UnparseableReply, match="unparseable reply: no verdict"):
        judge.chat([message], validate=validate)
    assert ask(judge, [message], validate) == "odd"  # asked again: nothing was cached
    assert len(engine.requests) == 2 and judge.stats["failures"] == 2


# ------------------------------------------------------------------------------------------ specs


@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_missing_engine_package_is_one_line_before_any_model_loads(backend, monkeypatch) -> None:
    from evalkit.judges import check_judge, load_judge

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == backend else real(name, *a)
    )
    for call in (
        lambda: load_judge(f"{backend}:Qwen/Qwen2.5-VL-7B-Instruct"),
        lambda: check_judge(f"{backend}:x/y"),
    ):
        with pytest.raises(EvalkitError) as info:
            call()
        text = one_line(info.value)
        assert f"pip install {backend}" in text and f"evalkit judge serve --backend {backend}" in text
        assert "--judge openai:" in text
    with pytest.raises(EvalkitError, match="did you mean 'tensor_parallel_size'"):
        load_judge("vllm:x/y", tensor_paralel_size=2)
    with pytest.raises(EvalkitError, match=f"--judge-url is for openai:/azure: judges; {backend}:"):
        check_judge(f"{backend}:x/y", url="http://127.0.0.1:1/v1")
    monkeypatch.setenv("WORLD_SIZE", "8")  # under torchrun: one server for all ranks instead
    with pytest.raises(EvalkitError, match="one of 8 processes") as info:
        check_judge(f"{backend}:x/y")
    assert f"evalkit judge serve --backend {backend}" in one_line(info.value)


def test_engine_backends_are_listed() -> None:
    from evalkit import registry

    judges = registry.entries("judges")
    assert {"vllm", "sglang"} <= set(judges)
