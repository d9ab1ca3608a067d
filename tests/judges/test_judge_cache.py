"""Reply cache, message helpers, yes/no parsing and judge specs (no model needed)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from fixture_paths import REPO
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.judges import BACKENDS, ReplyCache, load_judge
from evalkit.judges.base import p_yes_from_logprobs, parse_yes_no, yes_no_of_token
from evalkit.judges.cache import SCHEMA_VERSION, cache_key
from evalkit.judges.messages import (
    data_url_to_image,
    from_openai,
    image_sha256,
    image_to_data_url,
    messages_fingerprint,
    split_images,
    to_openai,
)

PROJECT = REPO


def test_cache_key_is_deterministic_and_sensitive_to_every_part() -> None:
    parts = dict(
        kind="yes_probability",
        backend="openai",
        model="m",
        snapshot="s",
        prompt="p",
        images=["i"],
        decoding={"temperature": 0.0, "seed": 0},
    )
    key = cache_key(**parts)
    assert key == cache_key(**dict(reversed(list(parts.items()))))
    assert len(key) == 64 and SCHEMA_VERSION >= 1
    for name, other in [
        ("model", "m2"),
        ("snapshot", "s2"),
        ("prompt", "p2"),
        ("images", ["j"]),
        ("decoding", {"temperature": 1.0, "seed": 0}),
    ]:
        assert cache_key(**{**parts, name: other}) != key, name


def test_cache_round_trip_and_counts(tmp_path) -> None:
    cache = ReplyCache(tmp_path / "sub" / "judge_cache.sqlite")
    assert cache.get("k") is None
    cache.put("k", {"p_yes": 0.25, "source": "logprobs"})
    assert cache.get("k") == {"p_yes": 0.25, "source": "logprobs"}
    cache.put("k", {"p_yes": 0.5})  # replacing is allowed (same key, same content in practice)
    assert cache.get("k") == {"p_yes": 0.5} and len(cache) == 1
    assert (cache.hits, cache.misses) == (2, 1)
    cache.close()
    assert ReplyCache(tmp_path / "sub" / "judge_cache.sqlite").get("k") == {"p_yes": 0.5}


def test_cache_is_safe_for_threads_and_processes(tmp_path) -> None:
    path = tmp_path / "judge_cache.sqlite"
    cache = ReplyCache(path)
    script = (
        "import sys; from evalkit.judges.cache import ReplyCache\n"
        "cache = ReplyCache(sys.argv[1])\n"
        "for i in range(150): cache.put(f'{sys.argv[2]}-{i}', {'i': i})\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"proc{n}"], cwd=PROJECT) for n in range(2)
    ]

    def write(name: str) -> None:
        for i in range(100):
            cache.put(f"{name}-{i}", {"i": i})
            assert cache.get(f"{name}-{i}") == {"i": i}

    threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(worker.wait(timeout=60) == 0 for worker in workers)
    assert len(cache) == 2 * 150 + 2 * 100
    assert cache._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_image_hash_depends_on_pixels_only() -> None:
    red = Image.new("RGB", (8, 6), (255, 0, 0))
    assert image_sha256(red) == image_sha256(data_url_to_image(image_to_data_url(red)))
    assert image_sha256(red) != image_sha256(Image.new("RGB", (8, 6), (254, 0, 0)))
    assert image_sha256(red) != image_sha256(Image.new("RGB", (6, 8), (255, 0, 0)))


def test_wire_format_round_trip_keeps_pixels_and_fingerprint() -> None:
    image = Image.effect_noise((16, 12), 40).convert("RGB")
    messages = [
        {"role": "system", "content": "Be strict."},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Cat?"}]},
    ]
    wire = to_openai(messages)
    assert wire[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    back = from_openai(wire)
    assert image_sha256(back[1]["content"][0]["image"]) == image_sha256(image)
    assert messages_fingerprint(back) == messages_fingerprint(messages) == messages_fingerprint(wire)
    stripped, images = split_images(wire)
    assert stripped[1]["content"][0] == {"type": "image"} and len(images) == 1
    changed = [
        messages[0],
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Dog?"}]},
    ]
    assert messages_fingerprint(changed) != messages_fingerprint(messages)
    with pytest.raises(ValueError, match="data URLs"):
        data_url_to_image("https://example.com/cat.png")


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("Yes", "yes"),
        (" yes", "yes"),
        ("YES", "yes"),
        ("\u0120Yes", "yes"),
        ("\u2581No", "no"),
        ("no", "no"),
        (" NO", "no"),
        ("Yesterday", None),
        ("not", None),
        ("", None),
    ],
)
def test_yes_no_token_spellings(token: str, kind: str | None) -> None:
    assert yes_no_of_token(token) == kind


@pytest.mark.parametrize(
    ("reply", "word"),
    [("Yes.", "yes"), ("**No**, there is no cat", "no"), ("  yes", "yes"), ("Maybe", None), ("", None)],
)
def test_parse_yes_no(reply: str, word: str | None) -> None:
    assert parse_yes_no(reply) == word


def test_p_yes_from_logprobs_sums_spellings_in_log_space() -> None:
    import math

    value = p_yes_from_logprobs({"yes": [math.log(0.2), math.log(0.1)], "no": [math.log(0.3)]})
    assert value == pytest.approx(0.5)
    assert p_yes_from_logprobs({"yes": [-2000.0], "no": [-2001.0]}) == pytest.approx(1 / (1 + math.exp(-1)))
    assert p_yes_from_logprobs({"yes": [-1.0], "no": []}) == 1.0
    assert p_yes_from_logprobs({"yes": [], "no": []}) is None


def test_load_judge_rejects_unknown_and_incomplete_specs() -> None:
    with pytest.raises(EvalkitError, match="did you mean 'openai'"):
        load_judge("opneai:gpt-4o")
    with pytest.raises(EvalkitError, match="needs a model"):
        load_judge("hf:")
    with pytest.raises(EvalkitError, match="--judge-url"):
        load_judge("azure:gpt-4o")
    assert set(BACKENDS) == {"hf", "openai", "azure", "vllm", "sglang", "tiny"}


def test_load_judge_hf_reports_missing_weights(tmp_path) -> None:
    from evalkit.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_judge(f"hf:{tmp_path}/no-such-model")


def test_load_judge_openai_spec(tmp_path, monkeypatch) -> None:
    pytest.importorskip("openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = load_judge(
        "openai:Qwen2.5-VL-72B-Instruct",
        url="http://127.0.0.1:9/v1",
        cache_path=tmp_path / "c.sqlite",
        temperature=0.0,
        concurrency=4,
    )
    config = judge.config()
    assert config["model"] == "Qwen2.5-VL-72B-Instruct" and config["concurrency"] == 4
    assert config["base_url"] == "http://127.0.0.1:9/v1" and judge.cache is not None
