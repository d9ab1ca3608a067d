"""Tiny real-architecture models through the real loading paths: SD3, Mask2Former (mmdet) and CLIP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evalkit.benchmarks.geneval.rules import DetectedObject
from evalkit.generators.base import GenerationRequest, ModelSpec


@pytest.fixture(scope="module")
def tiny_sd3():
    from evalkit.generators.diffusers_t2i import build

    return build(ModelSpec(name="tiny-sd3", device="cpu", options={"num_inference_steps": 2}))


def test_tiny_sd3_batch_equals_one_at_a_time(tiny_sd3):
    requests = [
        GenerationRequest(prompt=p, seed=s)
        for p, s in [("a photo of a cat", 1), ("two dogs", 2), ("a red car", 3)]
    ]
    batched = tiny_sd3.generate(requests)
    single = [tiny_sd3.generate([r])[0] for r in requests]
    for a, b in zip(batched, single, strict=True):
        assert a.image.size == (64, 64)
        np.testing.assert_allclose(np.asarray(a.image, float), np.asarray(b.image, float), atol=1)
    assert not np.array_equal(np.asarray(batched[0].image), np.asarray(batched[1].image))
    again = tiny_sd3.generate([requests[0]])[0]
    assert np.array_equal(np.asarray(again.image), np.asarray(single[0].image))  # same seed, same image


def test_tiny_sd3_round_trips_through_save_and_from_pretrained(tmp_path):
    import torch

    from evalkit.testing.sd3 import tiny_sd3_pipeline

    first = tiny_sd3_pipeline(tmp_path / "p")
    assert (tmp_path / "p" / "model_index.json").exists()
    second = tiny_sd3_pipeline(tmp_path / "p")
    for (name, a), (_, b) in zip(
        first.transformer.state_dict().items(), second.transformer.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_generator_config_is_recorded(tiny_sd3):
    config = tiny_sd3.config()
    assert config["pipeline"] == "StableDiffusion3Pipeline" and config["num_inference_steps"] == 2
    assert config["height"] == config["width"] == 64


def test_object_crop_masks_onto_grey_then_crops():
    from evalkit.detection.color import object_crop

    image = Image.new("RGB", (20, 10), (255, 0, 0))
    mask = np.zeros((10, 20), bool)
    mask[2:6, 4:8] = True
    crop = object_crop(image, DetectedObject(np.array([2, 0, 12, 10, 0.9]), mask))
    assert crop.size == (10, 10)
    pixels = np.asarray(crop)
    assert tuple(pixels[3, 4]) == (255, 0, 0)  # inside the mask (x=6 in the image)
    assert tuple(pixels[8, 8]) == (0x99, 0x99, 0x99)  # outside: #999
    with pytest.raises(ValueError, match="mask shape"):
        object_crop(image, DetectedObject(np.array([0, 0, 5, 5, 0.9]), np.zeros((3, 3), bool)))


def test_colour_classifier_batched_equals_one_at_a_time(tmp_path):
    from evalkit.detection.color import ClipColorClassifier
    from evalkit.testing.detection import tiny_clip

    clf = ClipColorClassifier(tiny_clip(tmp_path / "clip"), batch_size=3)
    rng = np.random.RandomState(0)
    jobs = []
    for i in range(4):
        image = Image.fromarray(rng.randint(0, 255, (48, 48, 3), dtype=np.uint8))
        objs = [DetectedObject(np.array([j * 5, j * 4, 30 + j, 40, 0.9])) for j in range(i % 3 + 1)]
        jobs.append((image, objs, ["cat", "dog"][i % 2]))
    batched = clf.classify(jobs)
    assert [len(x) for x in batched] == [1, 2, 3, 1]
    assert batched == [clf.classify([job])[0] for job in jobs]
    from evalkit.benchmarks.geneval.rules import COLORS

    assert all(c in COLORS for colours in batched for c in colours)


def test_tiny_detector_loads_its_checkpoint_and_is_deterministic(tmp_path, data_dir):
    from evalkit.benchmarks.geneval.data import load_object_names
    from evalkit.detection.mmdet import MMDetDetector
    from evalkit.testing.detection import tiny_mask2former_checkpoint, tiny_mask2former_config

    names = load_object_names(data_dir)
    ckpt = tiny_mask2former_checkpoint(tmp_path)
    images = [
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (64, 48, 3), dtype=np.uint8))
        for i in range(3)
    ]
    a = MMDetDetector(tiny_mask2former_config(), ckpt, names, batch_size=2).detect(images)
    b = MMDetDetector(tiny_mask2former_config(), ckpt, names, batch_size=1).detect(images)
    assert len(a) == 3
    for da, db in zip(a, b, strict=True):
        assert set(da) == set(db) and set(da) <= set(names)
        for cls in da:
            np.testing.assert_allclose(da[cls].boxes, db[cls].boxes, atol=1e-4)
            assert da[cls].boxes.shape[1] == 5
            assert da[cls].masks[0].shape == (64, 48) and da[cls].masks[0].dtype == bool


def test_detector_postprocess_is_bit_identical_to_mmdets(tmp_path, data_dir):
    """evalkit's deduplicated Mask2Former post-processing gives mmdet's boxes, scores and masks exactly,
    whatever the image size (odd sizes too) or thread count (same batches: the network's batched forward
    itself is only close to batch 1, see above)."""
    import torch

    from evalkit.benchmarks.geneval.data import load_object_names
    from evalkit.detection.mmdet import MMDetDetector
    from evalkit.testing.detection import tiny_mask2former_checkpoint, tiny_mask2former_config

    names, ckpt = load_object_names(data_dir), tiny_mask2former_checkpoint(tmp_path)
    fast = MMDetDetector(tiny_mask2former_config(), ckpt, names, batch_size=3)
    official = MMDetDetector(tiny_mask2former_config(), ckpt, names, batch_size=3, postprocess="mmdet")
    assert fast._fast_postprocess() and not official._fast_postprocess()
    with torch.no_grad():  # favour a few classes so that several (query, class) pairs share a query
        for det in (fast, official):
            bias = det.model.panoptic_head.cls_embed.bias
            bias.fill_(-4.0)
            bias[[0, 15, 16]] = 6.0
    threads = torch.get_num_threads()
    try:
        for n_threads, (h, w) in [(1, (64, 48)), (2, (97, 131)), (2, (128, 128))]:
            torch.set_num_threads(n_threads)
            rng = np.random.RandomState(h)
            images = [Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(4)]
            for mine, theirs in zip(fast.detect(images), official.detect(images), strict=True):
                assert list(mine) == list(theirs) and mine
                for cls in mine:
                    assert np.array_equal(mine[cls].boxes, theirs[cls].boxes)  # boxes + score column
                    assert len(mine[cls].masks) == len(theirs[cls].masks) > 0
                    for a, b in zip(mine[cls].masks, theirs[cls].masks, strict=True):
                        assert a.dtype == b.dtype == bool and np.array_equal(a, b)
    finally:
        torch.set_num_threads(threads)


def test_mask_boxes_equal_mmdets_mask2bbox():
    import torch
    from mmdet.structures.mask import mask2bbox

    from evalkit.detection.mmdet import _mask_boxes

    masks = torch.rand(6, 17, 23) > 0.97
    masks[0] = False  # empty: zeros
    masks[1] = False
    masks[1, 16, 22] = True  # one corner pixel
    masks[2] = True
    assert torch.equal(_mask_boxes(masks.float()), mask2bbox(masks))
