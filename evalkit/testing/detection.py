"""Tiny random GenEval evaluator models (real architectures) for offline tests and demos.

* a Mask2Former with a toy Swin backbone, built from mmdet's own GenEval config with smaller sizes and
  run through the same `MMDetDetector` as the real checkpoint;
* a toy CLIP saved with save_pretrained and loaded back by `ClipColorClassifier` like the real one.
Their outputs are random: they check the pipeline, never the scores.
"""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.paths import cache_dir

TINY_CLIP_VERSION = 1
TINY_FAVOURED_CLASSES = [0, 15, 16, 56]  # person, cat, dog, chair (COCO order)


def tiny_mask2former_config(test_scale: int = 64):
    """mmdet's Mask2Former Swin-S COCO instance config at toy width/depth, testing at `test_scale` pixels."""
    from mmengine.config import Config

    from evalkit.compat import mmcv_ext
    from evalkit.detection.mmdet import GENEVAL_CONFIG, mmdet_config_path

    mmcv_ext.install()
    cfg = Config.fromfile(str(mmdet_config_path(GENEVAL_CONFIG)))
    model = cfg.model
    model.backbone.update(
        embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, init_cfg=None
    )
    head = model.panoptic_head
    head.update(in_channels=[16, 32, 64, 128], feat_channels=32, out_channels=32, num_queries=10)
    encoder = head.pixel_decoder.encoder
    encoder.update(num_layers=1)
    encoder.layer_cfg.self_attn_cfg.update(embed_dims=32, num_heads=2, num_points=2)
    encoder.layer_cfg.ffn_cfg.update(embed_dims=32, feedforward_channels=32)
    head.pixel_decoder.positional_encoding.update(num_feats=16)
    head.positional_encoding.update(num_feats=16)
    decoder = head.transformer_decoder
    decoder.update(num_layers=2)
    decoder.layer_cfg.self_attn_cfg.update(embed_dims=32, num_heads=2)
    decoder.layer_cfg.cross_attn_cfg.update(embed_dims=32, num_heads=2)
    decoder.layer_cfg.ffn_cfg.update(embed_dims=32, feedforward_channels=32)
    model.test_cfg.update(max_per_image=20)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (test_scale, test_scale)
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    return cfg


def tiny_mask2former_checkpoint(folder: Path | None = None) -> Path:
    """Random weights of the tiny Mask2Former saved as an mmdet checkpoint (loaded back like real ones)."""
    import torch

    from evalkit.compat import mmcv_ext

    mmcv_ext.install()
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    path = Path(folder or cache_dir()) / "tiny-mask2former-v3.pth"
    if path.exists():
        return path
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(tiny_mask2former_config().model)
    # Favour a few classes (and never "no object") so that random images yield confident detections and
    # the colour and position rules run in pipeline tests.
    with torch.no_grad():
        bias = model.panoptic_head.cls_embed.bias
        bias.fill_(-4.0)
        bias[-1] = -10.0
        bias[TINY_FAVOURED_CLASSES] = 6.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    from mmdet.evaluation import get_classes

    meta = {"note": "random tiny Mask2Former", "dataset_meta": {"classes": tuple(get_classes("coco"))}}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)
    return path


def tiny_clip(folder: Path | None = None) -> Path:
    """A toy CLIP (ViT + text transformer) with a character-level tokenizer, saved with save_pretrained."""
    folder = Path(folder or cache_dir() / f"tiny-clip-v{TINY_CLIP_VERSION}")
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("-'")
    specials = ["<|startoftext|>", "<|endoftext|>"]
    vocab_list = specials + chars + [c + "</w>" for c in chars]
    tokenizer = CLIPTokenizer(
        vocab={t: i for i, t in enumerate(vocab_list)},
        merges=[],
        model_max_length=77,
        pad_token="<|endoftext|>",
    )
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab_list),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    CLIPModel(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder
