"""Every malformed input is one line with the fix and exit code 2, before any model loads; never a
traceback, never silently accepted. One table: (name, how to build the input, CLI arguments, expected)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fixture_paths import BENCHMARKS

if not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)

LINES = (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").read_text(encoding="utf-8").splitlines()[:3]


def _data(root: Path, lines: list[str] | bytes = LINES) -> Path:
    folder = root / "data" / "geneval"
    folder.mkdir(parents=True)
    body = lines if isinstance(lines, bytes) else "".join(line + "\n" for line in lines).encode()
    (folder / "evaluation_metadata.jsonl").write_bytes(body)
    (folder / "object_names.txt").symlink_to(BENCHMARKS / "geneval" / "object_names.txt")
    return root / "data"


def _run_dir(root: Path, run_json: bytes = b"", summary: bytes = b"") -> Path:
    run = root / "runs" / "geneval" / "tiny-sd3-0"
    run.mkdir(parents=True)
    info = {"benchmark": "geneval", "protocol": "geneval", "model": "tiny-sd3", "generation": {}}
    (run / "run.json").write_bytes(run_json or json.dumps(info).encode())
    if summary:
        (run / "summary.json").write_bytes(summary)
    return run


def _detections(root: Path, body: bytes) -> Path:
    path = root / "detections.jsonl"
    path.write_bytes(body)
    return path


def _run(root: Path, *extra: str, data: Path | None = None) -> list[str]:
    data = data or _data(root)
    return ["run", "geneval", "-m", "tiny-sd3", "--detector", "tiny", "--data-dir", str(data),
            "--runs-dir", str(root / "runs"), *extra]  # fmt: skip


GOOD_META = {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a cat"}

# (case, args builder(tmp) -> (args, env), words the one-line error must contain)
CASES: list[tuple[str, Callable[[Path], tuple[list[str], dict[str, str]]], str]] = [
    ("limit -1", lambda t: (_run(t, "--limit", "-1"), {}), "--limit"),
    ("limit 0", lambda t: (_run(t, "--limit", "0"), {}), "--limit"),
    ("batch 0", lambda t: (_run(t, "--batch-size", "0"), {}), "--batch-size"),
    ("steps -1", lambda t: (_run(t, "-o", "num_inference_steps=-1"), {}), "num_inference_steps"),
    ("steps abc", lambda t: (_run(t, "-o", "num_inference_steps=abc"), {}), "num_inference_steps"),
    ("unknown -o", lambda t: (_run(t, "-o", "num_inference_step=4"), {}), "did you mean"),
    ("score option value", lambda t: (_run(t, "--score-option", "threshold=abc"), {}), "score-option"),
    ("unknown score option", lambda t: (_run(t, "--score-option", "treshold=0.3"), {}), "did you mean"),
    ("score option no =", lambda t: (_run(t, "--score-option", "threshold"), {}), "key=value"),
    ("runs dir is a file", lambda t: (_run(t, "--runs-dir", str(_detections(t, b"x") / "r")), {}), "runs"),
    ("RANK=abc", lambda t: (_run(t), {"RANK": "abc", "WORLD_SIZE": "2"}), "RANK"),
    ("non-UTF-8 metadata", lambda t: (_run(t, data=_data(t, b'{"tag": "\xff\xfe"}\n')), {}), "UTF-8"),
    ("empty metadata", lambda t: (_run(t, data=_data(t, [])), {}), "no samples"),
    ("metadata as a directory", lambda t: (_run(t, data=_dir_as_file(t)), {}), "directory"),
    ("huge prompt", lambda t: (_run(t, data=_data(t, [json.dumps({**GOOD_META, "prompt": "a" * 200_000})])), {}),
     "prompt"),  # fmt: skip
    ("judge api_key option",
     lambda t: (_run(t, "--judge", "openai:m", "--judge-url", "http://127.0.0.1:9/v1", "--judge-option",
                     "api_key=sk-abcdef123456"), {}), "OPENAI_API_KEY"),  # fmt: skip
    ("corrupt run.json", lambda t: (["score", str(_run_dir(t, run_json=b"{oops"))], {}), "run.json"),
    ("corrupt summary.json", lambda t: (["report", str(_run_dir(t, summary=b"\xff"))], {}), "summary.json"),
    ("detections schema",
     lambda t: (["score", "geneval", "--detections", str(_detections(t, b'{"metadata": 1}\n'))], {}), "metadata"),
    ("detections non-UTF-8",
     lambda t: (["score", "geneval", "--detections", str(_detections(t, b"\xff\xfe\n"))], {}), "UTF-8"),
    ("detections directory", lambda t: (["score", "geneval", "--detections", str(t)], {}), "directory"),
]  # fmt: skip


def _dir_as_file(root: Path) -> Path:
    folder = root / "data" / "geneval" / "evaluation_metadata.jsonl"
    folder.mkdir(parents=True)
    (folder.parent / "object_names.txt").symlink_to(BENCHMARKS / "geneval" / "object_names.txt")
    return root / "data"


@pytest.mark.parametrize("case, build, words", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line_and_exit_2(cli, tmp_path, monkeypatch, case, build, words):
    import evalkit.registry as registry

    args, env = build(tmp_path)
    loaded = []
    real_load = registry.Entry.load
    models = {id(entry) for entry in registry.MODELS.values()}

    def load(entry):
        if id(entry) in models:
            loaded.append(entry)
            raise AssertionError("a model was loaded before the input was checked")
        return real_load(entry)

    monkeypatch.setattr(registry.Entry, "load", load)
    code, out, err = cli(*args, env=env)
    assert code == 2, (case, code, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert words.lower() in err.lower(), err
    assert not loaded
