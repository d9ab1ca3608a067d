"""`evalkit data fetch` against local fake sources (file:// and an HTTP server on 127.0.0.1), shipped demo
prompts and judge prompts (issue 12)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from first_hour_helpers import free_port, one_line

from evalkit.errors import EvalkitError


# ------------------------------------------------------------------------------------------ demo data
def test_demo_prompts_ship_in_the_package_and_match_upstream() -> None:
    from evalkit import data, paths
    from evalkit.benchmarks.geneval import GenEval

    samples = GenEval(paths.DEMO_DATA_DIR, protocol="geneval").samples()
    assert len(samples) == 8  # `make demo` runs --limit 8
    pinned = data.manifest("geneval")["files"]["geneval/object_names.txt"]["sha256"]
    assert data.sha256_of(paths.DEMO_DATA_DIR / "geneval" / "object_names.txt") == pinned
    source = (paths.DEMO_DATA_DIR.parent / "SOURCE.md").read_text()
    shipped = paths.DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl"
    assert data.sha256_of(shipped) in source
    full = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "geneval"
    if (full / "evaluation_metadata.jsonl").exists():  # the subset is upstream's first lines, byte for byte
        lines = (full / "evaluation_metadata.jsonl").read_text().splitlines(keepends=True)
        assert shipped.read_text() == "".join(lines[: len(samples)])


# ------------------------------------------------------------------------------------------ data fetch
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/mirror (laid out like a data folder)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _copy_manifest_files(benchmark: str, source: Path, mirror: Path) -> int:
    from evalkit import data

    n = 0
    for rel, entry in data.manifest(benchmark)["files"].items():
        if entry.get("url") and (source / rel).exists():
            (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / rel, mirror / rel)
            n += 1
    return n


def test_data_fetch_from_a_local_http_mirror_verifies_and_installs_judge_prompts(
    local_server, tmp_path, data_dir
) -> None:
    from evalkit import data

    mirror, url = local_server
    for benchmark in ("tiif", "wise", "geneval"):
        if not _copy_manifest_files(benchmark, data_dir, mirror):
            pytest.skip("no shared benchmark copy to serve")
        target = tmp_path / "data"
        result = data.fetch(benchmark, target, mirror=url, timeout=10)
        assert result.downloaded and data.verify(target, benchmark) == {
            rel: "ok" for rel in data.manifest(benchmark)["files"]
        }
        assert not data.not_fetchable(benchmark, target)
        if benchmark != "geneval":  # judge prompts come from evalkit's protocol data, checksummed
            assert result.installed and all("judge_prompts" in rel for rel in result.installed)
        again = data.fetch(benchmark, target, mirror=url, timeout=10)
        assert not again.downloaded and len(again.present) == len(data.manifest(benchmark)["files"])


def test_data_fetch_failures_areone_line(local_server, tmp_path) -> None:
    from evalkit import data

    mirror, url = local_server
    with pytest.raises(EvalkitError, match="could not download") as info:  # file not on the mirror: 404
        data.fetch("geneval", tmp_path / "data", mirror=url, timeout=5)
    one_line(info.value)
    first = next(iter(data.manifest("geneval")["files"]))
    (mirror / first).parent.mkdir(parents=True)
    (mirror / first).write_text("not the official file\n")
    with pytest.raises(EvalkitError, match="checksum mismatch") as info:
        data.fetch("geneval", tmp_path / "data", mirror=f"file://{mirror}", timeout=5)
    one_line(info.value)
    assert not (tmp_path / "data" / first).exists()
    port = free_port()
    started = time.perf_counter()
    with pytest.raises(EvalkitError, match="could not download") as info:
        data.fetch("geneval", tmp_path / "data", mirror=f"http://127.0.0.1:{port}", timeout=5)
    assert time.perf_counter() - started < 10
    one_line(info.value)


def test_data_fetch_gedit_exports_the_dataset_and_never_reports_an_empty_success(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from evalkit import data
    from evalkit.benchmarks.gedit import GEdit

    hub_id = data.manifest("gedit")["hub_dataset"]["id"]
    with pytest.raises(EvalkitError, match=f"no copy of {hub_id}"):
        data.fetch("gedit", tmp_path / "data", mirror=f"file://{tmp_path / 'empty'}")
    rows = {
        "task_type": ["color_alter", "style_change"],
        "key": ["k1", "k2"],
        "instruction": ["make it red", "make it a sketch"],
        "instruction_language": ["en", "en"],
        "input_image": [Image.new("RGB", (8, 8), "blue"), Image.new("RGB", (8, 8), "white")],
        "input_image_raw": [Image.new("RGB", (8, 8), "blue"), Image.new("RGB", (8, 8), "white")],
        "Intersection_exist": [True, False],
    }
    features = datasets.Features(
        {
            **{
                k: datasets.Value("string")
                for k in ("task_type", "key", "instruction", "instruction_language")
            },
            "input_image": datasets.Image(),
            "input_image_raw": datasets.Image(),
            "Intersection_exist": datasets.Value("bool"),
        }
    )
    folder = tmp_path / "mirror" / hub_id
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train.parquet"))
    target = tmp_path / "data"
    result = data.fetch("gedit", target, mirror=f"file://{tmp_path / 'mirror'}")
    n_prompts = len(data.manifest("gedit")["files"])  # judge prompts: installed by the failed try above
    assert result.exported == 2 and len(result.installed) + len(result.present) == n_prompts
    samples = GEdit(target).samples()
    assert [s.prompt for s in samples] == rows["instruction"] and all(s.input_image.exists() for s in samples)
    assert not data.not_fetchable("gedit", target)
    source = json.loads(
        (target / "gedit_bench" / "SOURCE.json").read_text()
    )  # unpinned: say what was fetched
    exported = (target / "gedit_bench" / "data.jsonl").read_bytes()
    assert source["dataset"] == hub_id and source["rows"] == 2 and source["fingerprint"]
    assert source["data.jsonl"]["sha256"] == hashlib.sha256(exported).hexdigest()


def test_the_demo_runs_on_the_shipped_prompts_alone(tmp_path, monkeypatch) -> None:
    """`make demo` on a machine without a data folder: the packaged prompts are enough (no network)."""
    import evalkit
    from evalkit import paths

    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "no-data-here"))
    result = evalkit.evaluate(
        "geneval", "tiny-sd3", limit=1, data_dir=paths.DEMO_DATA_DIR, runs_dir=tmp_path / "runs",
        score_options={"detector": "tiny"}, show_progress=False,
    )  # fmt: skip
    assert result.summary["n_scored"] == result.summary["n_planned"] == 4 and "Overall" in result.table
