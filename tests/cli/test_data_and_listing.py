"""Data manifests and fetching (against a local server), protocols, and torch-free listing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from evalkit import data
from evalkit.errors import DataError


@pytest.fixture
def file_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (random port) for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _manifest(tmp_path: Path, monkeypatch, files: dict) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    spec = {
        "benchmark": "toy",
        "files": files,
        "protocols": {"toy": {"prompts": "toy/p.jsonl", "images_per_prompt": 1}},
    }
    (manifests / "toy.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr("evalkit.data.PROTOCOL_DIR", manifests)


def test_fetch_downloads_and_verifies(cli, tmp_path, monkeypatch, file_server):
    root, url = file_server
    body = b'{"prompt": "a cat"}\n'
    (root / "p.jsonl").write_bytes(body)
    _manifest(
        tmp_path,
        monkeypatch,
        {"toy/p.jsonl": {"url": f"{url}/p.jsonl", "sha256": hashlib.sha256(body).hexdigest()}},
    )
    code, out, err = cli("data", "fetch", "toy", "--data-dir", tmp_path / "data")
    assert code == 0, err
    assert (tmp_path / "data" / "toy" / "p.jsonl").read_bytes() == body
    assert data.verify(tmp_path / "data", "toy") == {"toy/p.jsonl": "ok"}
    code, _, _ = cli("data", "verify", "toy", "--data-dir", tmp_path / "data")
    assert code == 0


def test_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch, file_server):
    root, url = file_server
    (root / "p.jsonl").write_bytes(b"tampered\n")
    _manifest(tmp_path, monkeypatch, {"toy/p.jsonl": {"url": f"{url}/p.jsonl", "sha256": "0" * 64}})
    with pytest.raises(DataError, match="checksum mismatch"):
        data.fetch("toy", tmp_path / "data")
    assert not (tmp_path / "data" / "toy" / "p.jsonl").exists()
    assert data.verify(tmp_path / "data", "toy") == {"toy/p.jsonl": "missing"}


def test_shipped_checksums_match_the_official_copies(data_dir):
    assert set(data.verify(data_dir, "geneval").values()) == {"ok"}


def test_long_protocol_keeps_the_rules_and_changes_the_prompts(data_dir):
    from evalkit.benchmarks.geneval import GenEval

    short, long = GenEval(data_dir, "geneval"), GenEval(data_dir, "geneval@long")
    assert len(short.samples()) == len(long.samples()) == 553
    for a, b in zip(short.samples(), long.samples(), strict=True):
        assert a.id == b.id
        assert {k: v for k, v in a.metadata.items() if k != "prompt"} == {
            k: v for k, v in b.metadata.items() if k != "prompt"
        }
    assert short.samples()[0].prompt != long.samples()[0].prompt
    assert {s.metadata["tag"] for s in short.samples()} == set(
        ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
    )


def test_unknown_protocol_suggests(cli, data_dir):
    code, _, err = cli("run", "geneval@lng", "--model", "tiny-sd3", "--data-dir", data_dir)
    assert code == 2 and "did you mean 'geneval@long'" in err


def test_ls_does_not_import_torch():
    code = (
        "import sys\n"
        "from evalkit.cli import main\n"
        "sys.argv = ['evalkit', 'ls']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'ls imported torch'\n"
        "print('OK')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "tiny-sd3" in result.stdout and "geneval@long" in result.stdout


def test_ls_unknown_kind(cli):
    code, _, err = cli("ls", "model")
    assert code == 2 and "did you mean 'models'" in err


def test_doctor_reports_data_and_missing_weights(cli, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("evalkit.checkpoints.CHECKPOINT_DIR", tmp_path / "ckpt")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code, out, err = cli("doctor", "--data-dir", data_dir)
    assert code == 0, err
    assert "torch: 2." in out
    weights = next(line for line in out.splitlines() if "weights:" in line)
    assert "sd35m" in weights and "evalkit weights fetch" in weights
    assert "data geneval:" in out and "all files ok" in out.split("data geneval:")[1].splitlines()[0]
    dpg = out.split("data dpg:")[1].splitlines()[0]
    assert "missing" in dpg and "dpg_bench/dpg_bench.csv" in dpg
    assert len(out.splitlines()) <= 12  # a summary, one line per topic


def test_doctor_on_an_empty_machine_is_short_with_one_next_step_per_problem(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("evalkit.checkpoints.CHECKPOINT_DIR", tmp_path / "ckpt")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code, out, err = cli("doctor", "--data-dir", tmp_path / "empty")
    lines = out.splitlines()
    assert code == 0, err
    assert len(lines) <= 12, out
    problems = [line for line in lines if line.startswith("--")]
    assert problems and all(line.count("->") == 1 for line in problems)
    assert any("evalkit data fetch tiif" in line for line in problems)
