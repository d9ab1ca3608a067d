"""Local transformers judge on a tiny random Qwen2-VL: prefix KV-cache reuse, P(yes), chat, reply cache."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.judges import JudgeFailure, ReplyCache, load_judge
from evalkit.testing.judges import TINY_QWEN2VL_CONFIG, config_hash, tiny_qwen2vl_path

# The Qwen2-VL processor's video processor needs torchvision (importable on CPU through evalkit's hook).
if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torchvision") is None:
    pytest.skip(
        "transformers and torchvision are needed for the tiny Qwen2-VL judge", allow_module_level=True
    )

from evalkit.judges.hf import HFJudge  # noqa: E402

QUESTIONS = [
    "Is there a red cat in the image? Answer Yes or No.",
    "Are there two cars?",
    "yes",
    "Does the image show a dog? Please answer yes or no. Is the text readable? Is the apple on the left?",
    "Is the clock blue?",
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_qwen2vl_path(tmp_path_factory.getbasetemp() / "tiny-qwen2vl")


@pytest.fixture(scope="module")
def judge(tiny_path) -> HFJudge:
    return HFJudge.from_pretrained(str(tiny_path), name="tiny-qwen2vl", device="cpu")


def noise_image(seed: int, size=(120, 90)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_tiny_folder_is_saved_and_loaded_through_from_pretrained(tiny_path, judge: HFJudge) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (tiny_path / name).exists(), name
    assert type(judge.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(judge.processor).__name__ == "Qwen2VLProcessor"
    assert judge.snapshot.startswith("sha256:")
    assert len(config_hash()) == 12 and config_hash({**TINY_QWEN2VL_CONFIG, "seed": 1}) != config_hash()
    # A second call finds the built folder instead of rebuilding it.
    assert tiny_qwen2vl_path(tiny_path) == tiny_path


def test_yes_no_token_variants_are_all_single_tokens(judge: HFJudge) -> None:
    config = judge.config()
    assert {t.strip() for t in config["yes_tokens"]} == {"yes", "Yes", "YES"}
    assert {t.strip() for t in config["no_tokens"]} == {"no", "No", "NO"}
    assert len(judge.yes_ids) == 6 and len(judge.no_ids) == 6


def test_prefix_cache_matches_full_forward(judge: HFJudge) -> None:
    image = noise_image(0)
    judge.stats.clear()
    fast = judge.p_yes_with_prefix_cache(image, QUESTIONS)
    assert judge.stats["prefix_forwards"] == 1 and judge.stats["suffix_forwards"] == 1
    assert judge.stats["prefix_fallbacks"] == 0
    naive = [judge.p_yes_full_forward(image, q) for q in QUESTIONS]
    assert fast == pytest.approx(naive, abs=1e-5)
    assert all(0.0 < p < 1.0 for p in fast)
    # The questions differ, so the answers differ: the suffixes really were read at their own last token.
    assert len({round(p, 9) for p in fast}) == len(QUESTIONS)


def test_batches_smaller_than_the_question_list_give_the_same_answers(tiny_path, judge: HFJudge) -> None:
    image = noise_image(1, size=(64, 100))
    small = HFJudge(judge.model, judge.processor, name="tiny", batch_size=2)
    values = small.yes_probability(image, QUESTIONS)
    assert small.stats["suffix_forwards"] == 3  # 5 questions in batches of 2
    assert values == pytest.approx(judge.yes_probability(image, QUESTIONS), abs=1e-5)


def test_system_prompt_changes_the_prefix_and_still_matches(judge: HFJudge) -> None:
    image = noise_image(2)
    with_system = HFJudge(judge.model, judge.processor, name="tiny", system_prompt="You are a careful judge.")
    fast = with_system.yes_probability(image, QUESTIONS[:3])
    naive = [with_system.p_yes_full_forward(image, q) for q in QUESTIONS[:3]]
    assert fast == pytest.approx(naive, abs=1e-5)
    assert fast != pytest.approx(judge.yes_probability(image, QUESTIONS[:3]), abs=1e-7)


def test_empty_question_list(judge: HFJudge) -> None:
    assert judge.yes_probability(noise_image(3), []) == []


def test_cache_hits_skip_the_model(tmp_path, judge: HFJudge) -> None:
    cache = ReplyCache(tmp_path / "judge_cache.sqlite")
    cached = HFJudge(judge.model, judge.processor, name="tiny", snapshot=judge.snapshot, cache=cache)
    image = noise_image(4)
    first = cached.yes_probability(image, QUESTIONS[:3])
    assert cached.stats["prefix_forwards"] == 1
    second = cached.answer_yes_no(image, QUESTIONS[:3])
    assert [a.p_yes for a in second] == first and all(a.cached for a in second)
    assert cached.stats["prefix_forwards"] == 1  # no new forward
    # Only the new question runs; the prefix is computed once for it.
    cached.yes_probability(image, QUESTIONS[:4])
    assert cached.stats["prefix_forwards"] == 2 and cached.stats["cache_hits"] == 6
    # Another image is another key.
    cached.yes_probability(noise_image(5), QUESTIONS[:1])
    assert cached.stats["prefix_forwards"] == 3
    assert len(cache) == 5


def test_chat_generates_and_caches_greedy_replies(tmp_path, judge: HFJudge) -> None:
    cached = HFJudge(judge.model, judge.processor, name="tiny", cache=tmp_path / "c.sqlite", max_tokens=6)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": noise_image(6)}, {"type": "text", "text": "Describe."}],
        }
    ]
    reply = cached.chat(messages)
    assert isinstance(reply, str) and reply.strip()
    assert cached.stats["generations"] == 1
    assert cached.chat(messages) == reply and cached.stats["generations"] == 1
    # Other decoding parameters are another key.
    cached.chat(messages, temperature=1.0, seed=3)
    assert cached.stats["generations"] == 2
    with pytest.raises(TypeError, match="unknown decoding"):
        cached.chat(messages, temprature=1.0)


def test_chat_rejected_by_the_parser_is_a_failure_and_not_cached(tmp_path, judge: HFJudge) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite")
    cached = HFJudge(judge.model, judge.processor, name="tiny", cache=cache, max_tokens=4)

    def reject(text: str) -> None:
        raise ValueError("no score found")

    with pytest.raises(JudgeFailure, match="unparseable reply: no score found"):
        cached.chat([{"role": "user", "content": "Score it."}], validate=reject)
    assert len(cache) == 0 and cached.stats["failures"] == 1


def test_generate_reports_token_logprobs(judge: HFJudge) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": noise_image(7)}, {"type": "text", "text": "Hi"}],
        }
    ]
    generation = judge.generate(messages, max_tokens=3, top_logprobs=5)
    assert 1 <= len(generation.tokens) <= 3 and generation.finish_reason in ("stop", "length")
    first = generation.tokens[0]
    assert len(first.top) == 5 and first.top[0][1] >= first.top[-1][1]
    assert first.logprob == pytest.approx(first.top[0][1])  # greedy picks the most likely token
    # The first token's distribution is the plain forward's.
    logits = judge.next_token_logits(messages)
    assert float(logits.log_softmax(-1).max()) == pytest.approx(first.logprob, abs=1e-5)


def test_load_judge_tiny_spec(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path))
    judge = load_judge("tiny", cache_path=tmp_path / "cache.sqlite", batch_size=4)
    assert judge.name == "tiny-qwen2vl" and judge.batch_size == 4
    assert isinstance(judge.cache, ReplyCache)
    assert (tmp_path / "tiny-qwen2vl").is_dir()
    assert judge.config()["backend"] == "hf"


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_prefix_cache_matches_full_forward_on_other_qwen_vl_architectures(arch: str) -> None:
    from evalkit.testing.judges import build_tiny_vlm

    model, processor = build_tiny_vlm(arch)
    judge = HFJudge(model, processor, name=f"tiny-{arch}")
    image = noise_image(8)
    fast = judge.yes_probability(image, QUESTIONS[:3])
    assert judge.stats["prefix_forwards"] == 1 and judge.stats["prefix_fallbacks"] == 0
    assert fast == pytest.approx([judge.p_yes_full_forward(image, q) for q in QUESTIONS[:3]], abs=1e-5)
