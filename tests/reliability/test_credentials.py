"""Credentials never reach disk or output: from the environment, the judge URL (user info, query) or options.

A server that echoes the request path in its errors (many do) used to put a key from the URL's query
string into records.jsonl and summary.json.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from judged_helpers import BENCHMARKS, ScriptedVLM, build_data_dir

from evalkit import redact

if not (BENCHMARKS / "wise").is_dir():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
if importlib.util.find_spec("openai") is None or importlib.util.find_spec("diffusers") is None:
    pytest.skip("openai and diffusers are needed", allow_module_level=True)

ENV_KEY = "sk-envkey-0a1b2c3d4e5f6a7b8c9d"
QUERY_KEY = "qs-secret-9f8e7d6c5b4a39281706"
USER_PASSWORD = "pw-secret-1122334455667788"
UNRELATED_TOKEN = "hf_token_value_abcdef123456"
SECRETS = (ENV_KEY, QUERY_KEY, USER_PASSWORD, UNRELATED_TOKEN)


@pytest.fixture(autouse=True)
def _fresh_registry():
    redact._reset_for_tests()
    yield
    redact._reset_for_tests()


def _written(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_no_credential_in_any_file_a_run_writes_or_prints(cli, tmp_path):
    from evalkit.judges.server import JudgeServer

    data = build_data_dir(tmp_path / "d")
    runs = tmp_path / "runs"
    vlm = ScriptedVLM("scripted-judge", "Consistency: 2\nRealism: 1\nAesthetic Quality: 1")
    env = {"OPENAI_API_KEY": ENV_KEY, "HF_TOKEN": UNRELATED_TOKEN}
    with JudgeServer(vlm, api_key=ENV_KEY) as server:
        host = server.url.split("//", 1)[1].rsplit("/v1", 1)[0]
        # a wrong path: the server answers 404 and echoes the path with its query string
        url = f"http://evalkit:{USER_PASSWORD}@{host}/wrong/v1?api-key={QUERY_KEY}"
        judge = ["--judge", "openai:scripted-judge", "--judge-url", url, "--data-dir", data]
        for option in ("max_retries=0", "concurrency=1"):
            judge += ["--judge-option", option]
        args = ["run", "wise", "--model", "tiny-sd3", "--limit", 2, "--runs-dir", runs, *judge]
        code, out, err = cli(*args, env=env)
    assert code == 0, err
    (run_dir,) = (runs / "wise@legacy").iterdir()
    records = (run_dir / "records.jsonl").read_text()
    assert "http 404" in records and "***" in records  # the echo happened, and was masked
    blob = _written(runs) + (out + err).encode()
    for secret in SECRETS:
        assert secret.encode() not in blob, secret


def test_redaction_covers_urls_headers_and_registered_values():
    redact.register("registered-secret-value")
    text = (
        "GET https://u:p4ss@host/v1?api_key=abc123xyz&x=1 failed; Authorization: Bearer sk-abcdefghijkl; "
        "registered-secret-value"
    )
    masked = redact.redact(text)
    for leak in ("p4ss", "abc123xyz", "sk-abcdefghijkl", "registered-secret-value"):
        assert leak not in masked
    assert "x=1" in masked and "host/v1" in masked
