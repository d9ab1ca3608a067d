"""Sample ids from data files become safe folder names: nothing is written outside the run folder."""

from __future__ import annotations

from PIL import Image

from evalkit.runs import MAX_NAME, Run, safe_name

HOSTILE = ["/etc/passwd", "../../escape", "..", ".", "a/../../b", "nul\0byte", "x" * 5000, "C:\\win", "", "~"]


def test_hostile_ids_stay_inside_the_run_folder(tmp_path):
    run = Run(tmp_path / "runs" / "r")
    image = Image.new("RGB", (4, 4))
    for sample_id in HOSTILE:
        run.save_image(sample_id, 0, image, {"id": sample_id})
        assert run.has_image(sample_id, 0)
        assert run.image_path(sample_id, 0).parent.parent == run.root / "samples"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(run.root in p.parents for p in written)
    folders = {run.sample_dir(s) for s in HOSTILE}
    assert len(folders) == len(HOSTILE)  # distinct ids never share a folder


def test_safe_names_are_short_stable_and_keep_ordinary_ids():
    for sample_id in ["00001", "0001_abc", "animals-12", "a.b"]:
        assert safe_name(sample_id) == sample_id
    for sample_id in HOSTILE:
        name = safe_name(sample_id)
        assert 0 < len(name) <= MAX_NAME
        assert "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")
        assert name == safe_name(sample_id)
    assert safe_name("a/b") != safe_name("a_b")
