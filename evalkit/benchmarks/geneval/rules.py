"""GenEval's per-image rules, exactly as the official `evaluate_images.py` applies them.

Pure Python + numpy: the detector and the colour classifier are passed in, so the same rules serve the
live path (Mask2Former + CLIP) and the re-score path (`evalkit score geneval --detections`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
RELATIONS = ["left of", "right of", "above", "below"]
TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


@dataclass(frozen=True)
class GenEvalOptions:
    """The official constants (`--options key=value` in the official script)."""

    threshold: float = 0.3  # detection score must be strictly greater
    counting_threshold: float = 0.9  # replaces `threshold` for every class when tag == "counting"
    max_objects: int = 16  # per class, after sorting by score
    max_overlap: float = 1.0  # NMS IoU; 1.0 disables NMS
    position_threshold: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectedObject:
    """One kept detection: [x1, y1, x2, y2, score], its mask (live path) and its colour (re-score path)."""

    box: np.ndarray
    mask: np.ndarray | None = None
    color: str | None = None


# (image index unused here) -> colours of `objects` for object class `classname`
ColorFn = Callable[[list[DetectedObject], str], list[str]]


def _iou_plus_one(a: np.ndarray, b: np.ndarray) -> float:
    """IoU with the "+1 pixel" area convention the official NMS uses."""

    def area(x1: float, y1: float, x2: float, y2: float) -> float:
        return max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0.0


def select_objects(
    boxes: np.ndarray, masks: list | None, colors: list[str | None] | None, conf: float, opts: GenEvalOptions
) -> list[DetectedObject]:
    """Threshold (strict >), sort by score descending, cap at max_objects, then greedy NMS if enabled.

    `np.argsort(...)[::-1]` is the official ordering, ties included.
    """
    if len(boxes) == 0:
        return []
    order = np.argsort(boxes[:, 4])[::-1]
    order = order[boxes[order, 4] > conf][: opts.max_objects].tolist()
    kept: list[DetectedObject] = []
    while order:
        best = order.pop(0)
        kept.append(
            DetectedObject(
                box=boxes[best],
                mask=None if masks is None else masks[best],
                color=None if colors is None else colors[best],
            )
        )
        if opts.max_overlap != 1:
            order = [i for i in order if _iou_plus_one(boxes[best], boxes[i]) < opts.max_overlap]
    return kept


def relative_position(a: DetectedObject, b: DetectedObject, position_threshold: float) -> list[str]:
    """Relations of A relative to B (image y grows downward), in the fixed order of RELATIONS."""
    box_a = np.asarray(a.box[:4], dtype=np.float64).reshape(2, 2)
    box_b = np.asarray(b.box[:4], dtype=np.float64).reshape(2, 2)
    offset = box_a.mean(axis=0) - box_b.mean(axis=0)
    size_a = np.abs(box_a[1] - box_a[0])
    size_b = np.abs(box_b[1] - box_b[0])
    revised = np.maximum(np.abs(offset) - position_threshold * (size_a + size_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return []
    dx, dy = revised / np.linalg.norm(offset)
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return [rel for rel in RELATIONS if found[rel]]


def evaluate(
    objects: dict[str, list[DetectedObject]],
    metadata: dict[str, Any],
    classify_colors: ColorFn,
    opts: GenEvalOptions,
) -> tuple[bool, str]:
    """Include clauses are ANDed, exclude clauses ORed; colour and position look only at the top-`count`."""
    correct = True
    reasons: list[str] = []
    matched_groups: list[list[DetectedObject] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        matched = True
        found = objects.get(cls, [])[:count]
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = classify_colors(found, cls)
                n_right = colors.count(req["color"])
                if n_right < count:
                    correct = matched = False
                    present = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    reasons.append(
                        f"expected {req['color']} {cls}>={count}, found {n_right} {req['color']}; and {present}"
                    )
            if "position" in req and matched:
                relation, target = req["position"]
                if matched_groups[target] is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for obj in found:
                        for target_obj in matched_groups[target]:
                            true_rels = relative_position(obj, target_obj, opts.position_threshold)
                            if relation not in true_rels:
                                correct = matched = False
                                reasons.append(
                                    f"expected {cls} {relation} target, found {' and '.join(true_rels)} target"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls, count = req["class"], req["count"]
        if len(objects.get(cls, [])) >= count:
            correct = False
            reasons.append(f"expected {cls}<{count}, found {len(objects[cls])}")
    return correct, "\n".join(reasons)


def details_of(objects: dict[str, list[DetectedObject]]) -> dict[str, list[list[float]]]:
    """The official `details` column: kept boxes per class, in kept order."""
    return {cls: [[float(v) for v in obj.box] for obj in objs] for cls, objs in objects.items()}


def score_detections(line: dict[str, Any], opts: GenEvalOptions = GenEvalOptions()) -> dict[str, Any]:
    """Re-score one image from recorded detections (the `--detections` JSONL format).

    `line` = {"metadata": ..., "width": W, "height": H, "detections": {class: [{box, score, color}]}}.
    """
    metadata = line["metadata"]
    conf = opts.counting_threshold if metadata["tag"] == "counting" else opts.threshold
    objects: dict[str, list[DetectedObject]] = {}
    for cls, dets in line.get("detections", {}).items():
        boxes = np.array([[*d["box"], d["score"]] for d in dets], dtype=np.float64).reshape(-1, 5)
        kept = select_objects(boxes, None, [d.get("color") for d in dets], conf, opts)
        if kept:
            objects[cls] = kept

    def recorded_colors(objs: list[DetectedObject], cls: str) -> list[str]:
        missing = [o for o in objs if o.color is None]
        if missing:
            raise ValueError(f"detection of '{cls}' has no 'color' but the prompt asks for one")
        return [o.color for o in objs]

    correct, reason = evaluate(objects, metadata, recorded_colors, opts)
    return {"correct": correct, "reason": reason, "details": details_of(objects)}
