"""DPG-Bench: official parity (compat='official'), the intended default, CSV schema, grids, scorer."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT
from fixture_paths import SHARED
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.benchmarks.dpg import DPG
from evalkit.benchmarks.dpg.aggregate import group_records, summarize
from evalkit.benchmarks.dpg.data import CSV_COLUMNS, DPGImageError, load_questions, merge_grid, split_grid
from evalkit.benchmarks.dpg.official import score_folder
from evalkit.benchmarks.dpg.scorer import score_cell
from evalkit.errors import DataError
from evalkit.judges.base import JudgeFailure

FIXTURES = FIXTURE_ROOT / "dpg_bench"
DATA = SHARED / "benchmarks"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared DPG fixtures absent")
needs_data = pytest.mark.skipif(not (DATA / "dpg_bench").is_dir(), reason="shared DPG data absent")
# Every run the fixture's expected.json holds (one per pic_num setting), whatever it names them.
RUNS = (
    sorted(json.loads((FIXTURES / "expected.json").read_text()))
    if (FIXTURES / "expected.json").is_file()
    else []
)


def run_fixture(compat: str, run: str) -> tuple[dict[str, Any], int]:
    """Score the fixture folder with the VQA answer table; also count the questions asked."""
    table = json.loads((FIXTURES / "vqa_answers.json").read_text())
    spec = json.loads((FIXTURES / "expected.json").read_text())[run]
    items = load_questions(FIXTURES / "dpg_synthetic.csv", compat)
    asked = [0]

    def answers_for(file_name: str):
        def answer(cell_index: int, cell: Image.Image, props) -> list[str]:
            asked[0] += len(props)
            return [table["answers"][file_name][str(cell_index)][str(p.pid)] for p in props]

        return answer

    result = score_folder(
        FIXTURES / "images", items, answers_for, spec["pic_num"], spec["resolution"], compat
    )
    return result, asked[0]


@needs_fixtures
@pytest.mark.parametrize("run", RUNS)
def test_official_mode_matches_fixture(run: str) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())[run]
    got, asked = run_fixture("official", run)
    assert set(got["failed_images"]) == set(expected["failed_images"])
    assert set(got["per_image"]) == set(expected["per_image"])
    for name, exp in expected["per_image"].items():
        assert got["per_image"][name]["cell_scores"] == pytest.approx(exp["crop_scores"], abs=1e-6), name
        assert got["per_image"][name]["score"] == pytest.approx(exp["score"], abs=1e-6), name
    assert got["dpg_score"] == pytest.approx(expected["dpg_score"], abs=1e-6)
    for level in ("l1_category_scores", "l2_category_scores"):
        assert set(got[level]) == set(expected[level])
        for cat, value in expected[level].items():
            assert got[level][cat] == pytest.approx(value, abs=1e-6), (level, cat)
    assert asked == expected["n_vqa_calls"]


def _independent_default_categories(run: str) -> dict[str, float]:
    """L2 scores recomputed directly: every row, zeroing in row order, all cells pooled."""
    table = json.loads((FIXTURES / "vqa_answers.json").read_text())["answers"]
    pic_num = json.loads((FIXTURES / "expected.json").read_text())[run]["pic_num"]
    with (FIXTURES / "dpg_synthetic.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    sums: dict[str, list[float]] = {}
    for file_name, cells in table.items():
        item_rows = [r for r in rows if r["item_id"] == file_name.split(".")[0]]
        for k in range(pic_num):
            if not item_rows:
                continue
            scores = {
                int(r["proposition_id"]): float(cells[str(k)][r["proposition_id"]] == "yes")
                for r in item_rows
            }
            for r in item_rows:
                parents = [int(p) for p in r["dependency"].split(",") if int(p) != 0]
                if any(scores[p] == 0 for p in parents):
                    scores[int(r["proposition_id"])] = 0.0
            for r in item_rows:
                acc = sums.setdefault(r["tuple"].split("(")[0].strip(), [0.0, 0])
                acc[0] += scores[int(r["proposition_id"])]
                acc[1] += 1
    return {c: 100 * s / n for c, (s, n) in sums.items()}


@needs_fixtures
@pytest.mark.parametrize("run", RUNS)
def test_default_differs_only_where_the_official_quirks_bite(run: str) -> None:
    official, _ = run_fixture("official", run)
    default, asked = run_fixture("default", run)
    # 1. the dropped first CSV row: the first item's image is scored by default, skipped officially
    assert set(default["failed_images"]) == {"not_in_csv.png"}
    assert set(default["per_image"]) - set(official["per_image"]) == {"273.png"}
    # every other image scores the same (zeroing in row order is the intended behaviour too)
    for name, result in official["per_image"].items():
        assert default["per_image"][name]["cell_scores"] == pytest.approx(result["cell_scores"]), name
    assert default["per_image"]["drawtext29.png"]["score"] == pytest.approx(0.2)
    n = len(official["per_image"])
    expected_overall = (official["dpg_score"] * n + 100 * default["per_image"]["273.png"]["score"]) / (n + 1)
    assert default["dpg_score"] == pytest.approx(expected_overall)
    # 2. categories: all cells, after zeroing (not the last cell before zeroing)
    assert default["l2_category_scores"] == pytest.approx(_independent_default_categories(run))
    assert default["l2_category_scores"] != pytest.approx(official["l2_category_scores"])
    # 3. the first item is asked in full on every cell
    table = json.loads((FIXTURES / "vqa_answers.json").read_text())
    assert asked > 0 and "273.png" in table["answers"]


# ----------------------------------------------------------------------------------------- CSV schema


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in CSV_COLUMNS})
    return path


def row(item: str, pid: int, dep: str, tup: str, q: str) -> dict[str, str]:
    return {
        "item_id": item,
        "text": f"prompt {item}",
        "proposition_id": str(pid),
        "dependency": dep,
        "tuple": tup,
        "question_natural_language": q,
    }


SMALL = [
    row("a1", 1, "0", "entity - whole (cat)", "Is there a cat?"),
    row("a1", 2, "1", "attribute - color (cat, black)", "Is the cat black?"),
    row("b2", 1, "0", "entity - whole (dog)", "Is there a dog?"),
    row("b2", 2, "0", "global - (photo)", "Is this a photo?"),
    row("b2", 3, "1,2", "relation - spatial (dog, sofa, on)", "Is the dog on the sofa?"),
]


def test_default_loading_keeps_every_row(tmp_path: Path) -> None:
    items = load_questions(write_csv(tmp_path / "q.csv", SMALL))
    assert [p.pid for p in items["a1"].propositions] == [1, 2]
    assert items["b2"].propositions[2].parents == (1, 2)
    assert items["b2"].propositions[1].l2 == "global -" and items["b2"].propositions[1].l1 == "global"


def test_official_loading_drops_the_first_row(tmp_path: Path) -> None:
    items = load_questions(write_csv(tmp_path / "q.csv", SMALL), compat="official")
    assert [p.pid for p in items["a1"].propositions] == [2]


def test_official_non_contiguous_item_keeps_last_block(tmp_path: Path) -> None:
    rows = [SMALL[0], SMALL[2], SMALL[1], row("a1", 3, "0", "entity - whole (hat)", "Is there a hat?")]
    official = load_questions(write_csv(tmp_path / "q.csv", [SMALL[4], *rows]), compat="official")
    assert [p.pid for p in official["a1"].propositions] == [2, 3]  # the later block replaced the earlier one
    default = load_questions(write_csv(tmp_path / "d.csv", rows))
    assert [p.pid for p in default["a1"].propositions] == [1, 2, 3]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (row("a1", 3, "x", "entity - whole (cat)", "Q?"), r"q\.csv:4: dependency 'x'"),
        (row("a1", "z", "0", "entity - whole (cat)", "Q?"), r"q\.csv:4: proposition_id 'z'"),  # type: ignore[arg-type]
        (row("a1", 3, "7", "entity - whole (cat)", "Q?"), r"depends on missing \[7\]"),
        (row("a1", 2, "0", "entity - whole (cat)", "Q?"), r"q\.csv:4: duplicate proposition_id 2"),
    ],
)
def test_malformed_rows_are_data_errors(tmp_path: Path, bad: dict[str, str], match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_questions(write_csv(tmp_path / "q.csv", [*SMALL[:2], bad]))


def test_wrong_header_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("item_id,question\n1,Q?\n")
    with pytest.raises(DataError, match=r"q\.csv:1: expected columns"):
        load_questions(path)


def test_official_pandas_type_quirks(tmp_path: Path) -> None:
    numeric_ids = [
        row("10", 1, "0", "entity - whole (a)", "A?"),
        row("10", 2, "1,0", "entity - whole (b)", "B?"),
        row("11", 1, "0", "entity - whole (c)", "C?"),
    ]
    items = load_questions(write_csv(tmp_path / "n.csv", numeric_ids), compat="official")
    assert "11" not in items  # ids became numbers: no image file name can match
    assert "11" in load_questions(write_csv(tmp_path / "d.csv", numeric_ids))
    single_deps = [row("a", 1, "0", "entity - whole (a)", "A?"), row("a", 2, "1", "entity - whole (b)", "B?")]
    with pytest.raises(DataError, match="all-integer dependency"):
        load_questions(write_csv(tmp_path / "s.csv", single_deps), compat="official")


# --------------------------------------------------------------------------------------------- grids


def test_grid_split_and_merge_roundtrip() -> None:
    cells = [Image.new("RGB", (6, 6), c) for c in ("red", "green", "blue", "white")]
    grid = merge_grid(cells)
    assert grid.size == (12, 12)
    back = split_grid(grid)
    assert [im.getpixel((0, 0)) for im in back] == [im.getpixel((0, 0)) for im in cells]
    assert len(split_grid(grid, pic_num=1)) == 1


# -------------------------------------------------------------------------------------------- scorer


class FakeVQA:
    """yes_probability from a per-question table; a JudgeFailure for a marked cell colour."""

    name = "fake-vqa"

    def __init__(self, probs: dict[str, float], fail_colour: tuple[int, int, int] | None = None):
        self.probs, self.fail_colour, self.calls = probs, fail_colour, 0

    def config(self) -> dict[str, Any]:
        return {"model": "fake-vqa"}

    def chat(self, messages: list[dict[str, Any]], *, validate: Any = None, **decoding: Any) -> str:
        raise JudgeFailure("not used")

    def yes_probability(self, image: Image.Image, questions: list[str]) -> list[float]:
        self.calls += 1
        if self.fail_colour is not None and image.getpixel((0, 0)) == self.fail_colour:
            raise JudgeFailure("HTTP 500")
        return [self.probs[q] for q in questions]


def _bench(tmp_path: Path) -> DPG:
    root = tmp_path / "dpg_bench"
    root.mkdir()
    lines = [json.dumps({"item_id": i, "text": f"prompt {i}"}) for i in ("a1", "b2", "c3")]
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    write_csv(root / "dpg_bench.csv", SMALL)
    return DPG(tmp_path)


PROBS = {
    "Is there a cat?": 0.9,
    "Is the cat black?": 0.7,
    "Is there a dog?": 0.2,
    "Is this a photo?": 0.8,
    "Is the dog on the sofa?": 0.9,
}


def test_grid_scorer_with_fake_judge_counts_failures(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    samples = bench.samples()
    assert [s.id for s in samples] == ["a1", "b2", "c3"]
    judge = FakeVQA(PROBS, fail_colour=(0, 0, 255))
    scorer = bench.make_scorer(judge=judge, input="grid")
    ok_grid = merge_grid([Image.new("RGB", (4, 4), "red")] * 4)
    bad_grid = merge_grid([Image.new("RGB", (4, 4), c) for c in ("red", "red", "blue", "red")])
    records = scorer.score_images(samples, [ok_grid, bad_grid, ok_grid])
    assert records[0]["failed"] is False and records[0]["score"] == 1.0
    assert records[1]["failed"] is True and records[1]["reason"] == "HTTP 500"
    assert records[2]["failed"] is True and "no questions" in records[2]["reason"]
    out = bench.aggregate(records)
    assert out["n_failed"] == 2 and out["n_images_scored"] == 1
    assert out["Overall"] == 100.0 and out["Entity"] == 100.0 and out["Attribute"] == 100.0
    assert out["Global"] is None and out["table"]["Overall"] == 100.0
    # a dog answered 'no' zeroes the child relation on every cell
    (rec,) = scorer.score_images([Sample(id="b2", prompt="p", metadata={"item_id": "b2"})], [ok_grid])
    assert rec["cell_scores"] == [pytest.approx(1 / 3)] * 4


def test_cell_records_aggregate_like_grids(tmp_path: Path) -> None:
    """The pipeline scores each of the 4 generated images as one record; aggregate combines them."""
    bench = _bench(tmp_path)
    assert bench.images_per_sample == 4
    judge = FakeVQA(PROBS, fail_colour=(0, 0, 255))
    cell_scorer = bench.make_scorer(judge=judge)
    colours = {"a1": ["red"] * 4, "b2": ["red", "red", "blue", "red"]}
    records = []
    for sample in bench.samples()[:2]:
        for k, colour in enumerate(colours[sample.id]):
            (rec,) = cell_scorer.score_images([sample], [Image.new("RGB", (4, 4), colour)])
            records.append({"sample_id": sample.id, "k": k, **rec})
    assert sum(r["failed"] for r in records) == 1
    out = bench.aggregate(records)
    assert out["failed_samples"] == ["b2"] and out["n_failed"] == 1
    assert out["Overall"] == 100.0 and out["n_images_scored"] == 1


@needs_fixtures
@pytest.mark.parametrize("compat", ["official", "default"])
def test_fixture_as_cell_records_gives_the_grid_numbers(compat: str) -> None:
    table = json.loads((FIXTURES / "vqa_answers.json").read_text())
    items = load_questions(FIXTURES / "dpg_synthetic.csv", compat)
    grid, _ = run_fixture(compat, "pic_num_4")
    records = []
    for name in table["images"]:
        cells = table["answers"].get(name, {})
        item = items.get(name.split(".")[0])
        for k in range(4):
            rec: dict[str, Any] = {"sample_id": name, "k": k}
            try:
                if item is None:
                    raise DPGImageError("no item")
                answer = lambda _k, _c, props, cells=cells, k=k: [cells[str(k)][str(p.pid)] for p in props]  # noqa: E731
                rec.update(failed=False, **score_cell(item, Image.new("RGB", (2, 2)), answer, k))
            except DPGImageError as e:
                rec.update(failed=True, reason=str(e))
            records.append(rec)
    results, failed = group_records(records, compat)
    out = summarize(results, len(failed))
    assert set(failed) == set(grid["failed_images"])
    assert out["Overall"] == pytest.approx(grid["dpg_score"])
    assert out["l2_category_scores"] == pytest.approx(grid["l2_category_scores"])


def test_benchmark_protocol_and_compat(tmp_path: Path) -> None:
    assert DPG(tmp_path).protocol == "dpg"
    assert DPG(tmp_path, compat="official").protocol == "dpg@official"
    assert DPG(tmp_path, protocol="dpg@official").compat == "official"
    with pytest.raises(DataError, match="dpg_bench.csv"):
        DPG(tmp_path).make_scorer(judge=FakeVQA({}))


@needs_data
def test_prompts_from_canonical_layout(tmp_path: Path) -> None:
    samples = DPG(DATA).samples()
    assert len(samples) == 1065 and len({s.id for s in samples}) == 1065
    (tmp_path / "dpg_bench").mkdir()
    bad = tmp_path / "dpg_bench" / "prompts.jsonl"
    shutil.copyfile(DATA / "dpg_bench" / "prompts.jsonl", bad)
    bad.chmod(0o644)
    lines = bad.read_text().splitlines()
    lines[4] = '{"item_id": 5'
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"prompts\.jsonl:5"):
        DPG(tmp_path).samples()


# ------------------------------------------------------------------------------------- tiny judge


def test_tiny_judge_end_to_end(tmp_path: Path, tiny_judge) -> None:
    bench = _bench(tmp_path)
    scorer = bench.make_scorer(judge=tiny_judge)
    sample = bench.samples()[1]
    records = []
    for k in range(4):
        (rec,) = scorer.score_images([sample], [Image.new("RGB", (32, 32), (60 * k, 0, 0))])
        records.append({"sample_id": sample.id, "k": k, **rec})
    assert not any(r["failed"] for r in records)
    out = bench.aggregate(records)
    assert out["n_images_scored"] == 1 and 0.0 <= out["Overall"] <= 100.0
