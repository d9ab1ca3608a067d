"""A crash mid-append leaves a torn last line: reads skip it with a warning, the next append repairs it."""

from __future__ import annotations

import json
import logging

import pytest

from evalkit.errors import EvalkitError
from evalkit.runs import Run, append_jsonl, read_jsonl, repair_tail


def _records(n: int) -> list[dict]:
    return [{"id": f"s{i}/0", "sample_id": f"s{i}", "k": 0, "score": i, "reply": "é" * i} for i in range(n)]


def test_every_truncation_of_the_last_record_is_repaired(tmp_path, caplog):
    """Cut the file at every byte offset of its last line: reads never fail, appends start clean."""
    source = tmp_path / "whole.jsonl"
    records = _records(3)
    for r in records:
        append_jsonl(source, r)
    data = source.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    extra = {"id": "new/0", "sample_id": "new", "k": 0, "score": 9}
    for offset in range(last_start, len(data) + 1):
        path = tmp_path / f"cut{offset}.jsonl"
        path.write_bytes(data[:offset])
        complete = offset >= len(data) - 1  # only the newline (or nothing) is missing
        kept = records if complete else records[:-1]
        with caplog.at_level(logging.WARNING, logger="evalkit.runs"):
            caplog.clear()
            assert read_jsonl(path) == kept
            torn = last_start < offset < len(data) - 1
            assert ("torn" in caplog.text) == torn, offset
        append_jsonl(path, extra)
        assert read_jsonl(path) == [*kept, extra]
        assert path.read_bytes().endswith(b"\n") and b"\n\n" not in path.read_bytes()


def test_nul_padding_after_power_loss_is_cut(tmp_path):
    path = tmp_path / "records.jsonl"
    for r in _records(2):
        append_jsonl(path, r)
    with open(path, "ab") as f:
        f.write(b"\0" * 37)
    assert len(read_jsonl(path)) == 2
    assert repair_tail(path) == 37
    append_jsonl(path, {"id": "x"})
    assert [r["id"] for r in read_jsonl(path)] == ["s0/0", "s1/0", "x"]


def test_damage_before_the_last_line_is_an_error_with_the_fix(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a"}\n{broken\n{"id": "c"}\n')
    with pytest.raises(EvalkitError, match=r"records.jsonl:2: corrupt record.*delete that line"):
        read_jsonl(path)
    path.write_bytes(b'{"id": "a"}\n\xff\xfe\n{"id": "c"}\n')
    with pytest.raises(EvalkitError, match="records.jsonl:2"):
        read_jsonl(path)


def test_run_records_survive_a_torn_shard_file(tmp_path):
    run = Run(tmp_path / "r")
    run.root.mkdir()
    for r in _records(2):
        run.append_record(r)
    with open(run.root / "records.jsonl", "a") as f:
        f.write(json.dumps(_records(3)[2])[:10])
    assert [r["id"] for r in run.records()] == ["s0/0", "s1/0"]
    run.append_record(_records(3)[2])
    assert [r["id"] for r in run.records()] == ["s0/0", "s1/0", "s2/0"]


def test_a_later_record_of_an_image_supersedes_an_earlier_one(tmp_path):
    run = Run(tmp_path / "r")
    run.root.mkdir()
    run.append_record({"id": "a/0", "sample_id": "a", "k": 0, "failed": True, "reason": "http 500"})
    run.append_record({"id": "a/0", "sample_id": "a", "k": 0, "failed": False, "score": 1})
    assert run.records() == [{"id": "a/0", "sample_id": "a", "k": 0, "failed": False, "score": 1}]


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
    ],
)
def test_corrupt_run_json_and_summary_are_one_line_errors(tmp_path, content, problem):
    run = Run(tmp_path / "r")
    run.root.mkdir()
    (run.root / "run.json").write_bytes(content)
    (run.root / "summary.json").write_bytes(content)
    with pytest.raises(EvalkitError, match=f"run.json {problem}"):
        run.info()
    with pytest.raises(EvalkitError, match=f"summary.json {problem}.*evalkit score"):
        run.summary()
    from evalkit.report.tables import build_table

    with pytest.raises(EvalkitError, match=problem):
        build_table([run.root])
