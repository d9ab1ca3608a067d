"""GenEval scoring throughput: batched detector + CLIP vs. one image at a time (as the official script).

Both paths use the same weights and the same rules and must give identical results (verdict and reason of
every image; how many records are bit-identical, boxes and scores included, is printed too); the ratio is
printed. The one-at-a-time side is the official loop: mmdet's own
post-processing (`inference_detector`'s `test_step`, `postprocess="mmdet"`), one image per call. Each side
runs `--repeats` times, alternating, and its fastest run counts (the machine may be shared).
`--size real` uses the real Mask2Former Swin-S and CLIP ViT-L/14 architectures (random weights, biased so
objects are found and colours get classified); `--size tiny` uses the toy models.

    python bench/geneval_scoring.py --size tiny --images 32
    python bench/geneval_scoring.py --size real --images 8 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from suite_results import emit, peak_cuda_gb

import evalkit  # noqa: F401  (installs the torchvision compat hook)
from evalkit.benchmarks.geneval.data import load_metadata, load_object_names
from evalkit.benchmarks.geneval.scorer import GenEvalScorer
from evalkit.detection.color import ClipColorClassifier
from evalkit.detection.mmdet import GENEVAL_CONFIG, MMDetDetector, mmdet_config_path
from evalkit.testing.detection import TINY_FAVOURED_CLASSES, tiny_clip, tiny_mask2former_config


def real_clip(folder: Path) -> Path:
    """CLIP ViT-L/14 shapes (transformers defaults of openai/clip-vit-large-patch14), random weights."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from evalkit.testing.detection import tiny_clip as toy

    tok_src = toy(folder.parent / "tok")
    config = CLIPConfig(
        text_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "vocab_size": 49408,
        },
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "patch_size": 14,
            "image_size": 224,
        },
        projection_dim=768,
    )
    CLIPModel(config).save_pretrained(folder)
    from transformers import CLIPTokenizer

    CLIPTokenizer.from_pretrained(tok_src).save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def detector(size: str, names: list[str], device: str, batch_size: int) -> MMDetDetector:
    import torch
    from mmengine.config import Config

    cfg = (
        tiny_mask2former_config()
        if size == "tiny"
        else Config.fromfile(str(mmdet_config_path(GENEVAL_CONFIG)))
    )
    det = MMDetDetector(cfg, None, names, device=device, batch_size=batch_size)
    with torch.no_grad():  # random weights find nothing; favour a few classes so every rule path runs
        bias = det.model.panoptic_head.cls_embed.bias
        bias.fill_(-4.0)
        bias[-1] = -10.0
        bias[TINY_FAVOURED_CLASSES] = 6.0
    return det


def geneval_prompts(data_dir: Path) -> tuple[list[str], list[dict]]:
    """The official class names and metadata when present (a GPU machine may not have them)."""
    if (data_dir / "geneval" / "evaluation_metadata.jsonl").exists():
        names = load_object_names(data_dir)
        return names, load_metadata(data_dir / "geneval" / "evaluation_metadata.jsonl", names)
    names = [f"object{i}" for i in range(80)]
    meta = [
        {"tag": "colors", "include": [{"class": n, "count": 1, "color": "red"}], "prompt": f"a red {n}"}
        for n in names
    ]
    return names, meta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"),
        help="official GenEval files; without them, synthetic colour prompts over 80 placeholder classes",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (fastest counts)")
    parser.add_argument("--json", default=None, help="append the measurement to this JSONL file")
    args = parser.parse_args()

    names, meta = geneval_prompts(Path(args.data_dir))
    # colour prompts about the favoured classes, so CLIP runs on every image
    colour_meta = [m for m in meta if m["tag"] == "colors"]
    favoured = {names[i] for i in TINY_FAVOURED_CLASSES}
    colour_meta = [m for m in colour_meta if m["include"][0]["class"] in favoured] or colour_meta
    metadata = [colour_meta[i % len(colour_meta)] for i in range(args.images)]
    rng = np.random.RandomState(0)
    images = [
        Image.fromarray(rng.randint(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8))
        for _ in metadata
    ]

    with tempfile.TemporaryDirectory() as tmp:
        clip_path = tiny_clip(Path(tmp) / "clip") if args.size == "tiny" else real_clip(Path(tmp) / "clip")
        clf = ClipColorClassifier(clip_path, device=args.device)
        det = detector(args.size, names, args.device, args.batch_size)
        batched = GenEvalScorer(det, clf)
        det_single = copy.copy(det)
        det_single.batch_size = 1  # same model object, same weights
        det_single.postprocess = "mmdet"  # the official inference_detector's post-processing
        single = GenEvalScorer(det_single, clf)
        single.evaluate(images[:1], metadata[:1])  # warm-up
        batched.evaluate(images[:2], metadata[:2])

        t_loop = t_batched = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            loop = [single.evaluate([im], [m])[0] for im, m in zip(images, metadata, strict=True)]
            t_loop = min(t_loop, time.perf_counter() - t0)
            t0 = time.perf_counter()
            fast = batched.evaluate(images, metadata)
            t_batched = min(t_batched, time.perf_counter() - t0)

    verdicts = [[(r["correct"], r["reason"]) for r in rows] for rows in (loop, fast)]
    assert verdicts[0] == verdicts[1], "batched and looped results differ"
    n_same = sum(a == b for a, b in zip(loop, fast, strict=True))  # boxes, scores, colours too
    n_colour = sum(1 for r in fast if "found" in r["reason"] or r["correct"])
    print(
        f"size={args.size} device={args.device} images={args.images} ({args.image_size}px) batch={args.batch_size}"
        f" repeats={args.repeats}"
    )
    print(f"one image at a time: {args.images / t_loop:8.2f} images/s")
    print(f"batched:             {args.images / t_batched:8.2f} images/s")
    print(
        f"ratio batched/loop:  {t_loop / t_batched:8.2f}x   (identical results on {len(fast)} images, {n_colour} judged;"
        f" {n_same} records bit-identical incl. boxes and scores)"
    )
    emit(
        args.json,
        bench="geneval_scoring",
        config=f"{args.size} {args.image_size}px batch {args.batch_size}",
        device=args.device,
        ratio=t_loop / t_batched,
        ratio_of="batched / one at a time",
        images_per_s=args.images / t_batched,
        peak_mem_gb=peak_cuda_gb(args.device),
    )


if __name__ == "__main__":
    main()
