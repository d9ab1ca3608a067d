"""GenEval: protocols `geneval` (553 short prompts) and `geneval@long` (BAGEL's rewritten prompts).

4 images per prompt; Mask2Former finds objects, CLIP names colours, and the official rules
(`geneval_rules.py`) decide each image. The table has the six task accuracies and their unweighted mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from evalkit import data
from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.benchmarks.geneval_rules import (
    RELATIONS,
    TAGS,
    DetectedObject,
    GenEvalOptions,
    details_of,
    evaluate,
    select_objects,
    summarize,
)
from evalkit.errors import DataError

COLUMNS = {
    "single_object": "Single Obj.",
    "two_object": "Two Obj.",
    "counting": "Counting",
    "colors": "Colors",
    "position": "Position",
    "color_attr": "Color Attri.",
}


def load_object_names(data_dir: Path) -> list[str]:
    path = data.require_file(data_dir, "geneval/object_names.txt", "geneval")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != 80:
        raise DataError(f"{path}: expected the 80 COCO class names, found {len(names)}")
    return names


def _check_metadata(meta: Any, classnames: set[str]) -> str | None:
    """What is wrong with one evaluation_metadata line, or None."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("tag") not in TAGS:
        return f"unknown tag {meta.get('tag')!r}"
    if not isinstance(meta.get("prompt"), str):
        return "missing 'prompt'"
    clauses = meta.get("include")
    if not isinstance(clauses, list) or not clauses:
        return "missing 'include' list"
    for clause in clauses + list(meta.get("exclude", [])):
        if not isinstance(clause, dict) or clause.get("class") not in classnames:
            return f"unknown class in clause {clause!r}"
        if not isinstance(clause.get("count"), int) or clause["count"] < 1:
            return f"bad count in clause {clause!r}"
    for i, clause in enumerate(clauses):
        if "position" in clause:
            relation, target = clause["position"]
            if relation not in RELATIONS or not isinstance(target, int) or not 0 <= target < i:
                return f"bad position {clause['position']!r}"
    return None


def load_metadata(path: Path, classnames: list[str]) -> list[dict[str, Any]]:
    """Read and validate evaluation_metadata(.jsonl); the error names the file and line."""
    known = set(classnames)
    lines = []
    for lineno, meta in data.read_json_lines(path):
        problem = _check_metadata(meta, known)
        if problem:
            raise DataError(f"{path}:{lineno}: malformed GenEval metadata: {problem}")
        lines.append(meta)
    return lines


class GenEvalScorer(SampleScorer):
    """Detector + colour classifier + official rules. Also a Scorer (1.0 correct / 0.0 wrong) for GRPO."""

    name = "geneval"

    def __init__(self, detector, color_classifier, options: GenEvalOptions = GenEvalOptions()):
        self.detector = detector
        self.colors = color_classifier
        self.options = options

    def config(self) -> dict[str, Any]:
        return {
            "detector": self.detector.config(),
            "color": self.colors.config(),
            "options": self.options.to_dict(),
        }

    def _kept_objects(self, detections, tag: str) -> dict[str, list[DetectedObject]]:
        conf = self.options.counting_threshold if tag == "counting" else self.options.threshold
        objects = {}
        for cls, det in detections.items():
            kept = select_objects(det.boxes, det.masks, None, conf, self.options)
            if kept:
                objects[cls] = kept
        return objects

    def evaluate(self, images: list[Image.Image], metadata: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Detect all images in batches, classify every colour the rules will ask for in one CLIP batch."""
        detections = self.detector.detect(images)
        per_image = [self._kept_objects(d, m["tag"]) for d, m in zip(detections, metadata, strict=True)]
        jobs, keys = [], []
        for i, (objects, meta) in enumerate(zip(per_image, metadata, strict=True)):
            for req in meta.get("include", []):
                found = objects.get(req["class"], [])[: req["count"]]
                if "color" in req and len(found) >= req["count"]:
                    jobs.append((images[i], found, req["class"]))
                    keys.append((i, req["class"], req["count"]))
        colours = dict(zip(keys, self.colors.classify(jobs), strict=True)) if jobs else {}
        results = []
        for i, (objects, meta) in enumerate(zip(per_image, metadata, strict=True)):

            def lookup(found: list[DetectedObject], cls: str, i: int = i) -> list[str]:
                return colours[(i, cls, len(found))]

            correct, reason = evaluate(objects, meta, lookup, self.options)
            results.append({"correct": correct, "reason": reason, "details": details_of(objects)})
        return results

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        results = self.evaluate(images, [s.metadata for s in samples])
        return [
            {"tag": s.metadata["tag"], "metadata": s.metadata, **r}
            for s, r in zip(samples, results, strict=True)
        ]

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float]:
        return [float(r["correct"]) for r in self.evaluate(images, metadata)]


def build_geneval_scorer(
    data_dir: Path,
    *,
    detector: str = "mmdet",
    device: str | None = None,
    batch_size: int = 8,
    options: GenEvalOptions = GenEvalOptions(),
) -> GenEvalScorer:
    """`mmdet` = the official Mask2Former Swin-S + CLIP ViT-L/14; `tiny` = random toy versions (tests)."""
    from evalkit.detection.color import ClipColorClassifier
    from evalkit.detection.mmdet import MMDetDetector
    from evalkit.generators.diffusers_t2i import default_device

    device = device or default_device()
    classnames = load_object_names(data_dir)
    if detector == "tiny":
        from evalkit.detection.tiny import tiny_clip, tiny_mask2former_checkpoint, tiny_mask2former_config

        det = MMDetDetector(
            tiny_mask2former_config(),
            tiny_mask2former_checkpoint(),
            classnames,
            device=device,
            batch_size=batch_size,
            name="tiny",
        )
        return GenEvalScorer(det, ClipColorClassifier(tiny_clip(), device=device), options)
    if detector == "mmdet":
        from evalkit.checkpoints import resolve
        from evalkit.detection.mmdet import GENEVAL_CONFIG, mmdet_config_path

        ckpt = resolve("geneval-mask2former")
        clip = resolve("clip-vit-large-patch14")
        det = MMDetDetector(
            mmdet_config_path(GENEVAL_CONFIG),
            ckpt,
            classnames,
            device=device,
            batch_size=batch_size,
            name="mask2former-swin-s",
        )
        return GenEvalScorer(det, ClipColorClassifier(clip, device=device), options)
    from evalkit.errors import did_you_mean

    raise did_you_mean("GenEval detector", detector, ["mmdet", "tiny"])


class GenEval(Benchmark):
    name = "geneval"
    columns = [*COLUMNS.values(), "Overall"]

    def __init__(self, data_dir: Path, protocol: str = "geneval"):
        spec = data.protocol(protocol)
        self.protocol = protocol
        self.data_dir = Path(data_dir)
        self.images_per_sample = int(spec["images_per_prompt"])
        self.classnames = load_object_names(self.data_dir)
        self.metadata = load_metadata(
            data.require_file(self.data_dir, spec["prompts"], "geneval"), self.classnames
        )

    def samples(self) -> list[Sample]:
        return [Sample(id=f"{i:05d}", prompt=m["prompt"], metadata=m) for i, m in enumerate(self.metadata)]

    @staticmethod
    def _split_options(options: dict[str, Any]) -> tuple[GenEvalOptions, dict[str, Any]]:
        """Rule constants (threshold, ...) vs. scorer construction options (detector, device, batch_size)."""
        fields = GenEvalOptions.__dataclass_fields__
        defaults = GenEvalOptions()
        unknown = set(options) - set(fields) - {"detector", "device", "batch_size"}
        if unknown:
            from evalkit.errors import did_you_mean

            raise did_you_mean("GenEval option", sorted(unknown)[0], [*fields, "detector"])
        rules = GenEvalOptions(
            **{k: type(getattr(defaults, k))(v) for k, v in options.items() if k in fields}
        )
        return rules, {k: v for k, v in options.items() if k not in fields}

    def scorer_config(self, **options: Any) -> dict[str, Any]:
        rules, rest = self._split_options(options)
        return {"detector": rest.get("detector", "mmdet"), "rules": rules.to_dict()}

    def make_scorer(self, **options: Any) -> GenEvalScorer:
        rules, rest = self._split_options(options)
        return build_geneval_scorer(self.data_dir, options=rules, **rest)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        summary = summarize(records)
        table = {COLUMNS[tag]: summary["tasks"][tag]["score"] for tag in COLUMNS if tag in summary["tasks"]}
        table["Overall"] = summary["overall"]
        return {"table": table, **summary}
