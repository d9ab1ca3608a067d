"""GenEval per-image scorer: the detector finds objects, CLIP names colours, the official rules decide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Sample, SampleScorer
from evalkit.benchmarks.geneval.data import load_object_names
from evalkit.benchmarks.geneval.rules import (
    DetectedObject,
    GenEvalOptions,
    details_of,
    evaluate,
    select_objects,
)


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
            result = {"correct": correct, "reason": reason, "details": details_of(objects)}
            # The colours CLIP named, per class, for its first boxes in `details` (for the sample viewer).
            named = {cls: names for (j, cls, _), names in colours.items() if j == i}
            results.append({**result, "colors": named} if named else result)
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
    from evalkit.devices import resolve_device

    device = resolve_device(device)
    classnames = load_object_names(data_dir)
    if detector == "tiny":
        from evalkit.testing.detection import tiny_clip, tiny_mask2former_checkpoint, tiny_mask2former_config

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
