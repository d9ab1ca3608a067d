"""GenEval's detector through mmdet 3.x (Mask2Former Swin-S, COCO instance segmentation).

Runs on mmcv-lite: Mask2Former needs only mmcv's pure-PyTorch ops on CPU, and a stub stands in for the
compiled extension that mmcv-lite lacks. The official GenEval checkpoint's training run is published in
mmdet 3.x format as `..._20220504_001756-c9d0c4f2.pth` (checkpoints/geneval-mask2former.yaml).

Mask2Former's instance post-processing (upsample every query's mask twice, sigmoid, threshold, boxes) is
most of the detector's CPU time, and mmdet repeats it for every (query, class) pair of the top 100 although
several pairs share a query. `postprocess="evalkit"` does that work once per distinct query on CPU, with
mmdet's own operations on the same rows, so boxes, scores and masks are bit-identical to mmdet's
(`postprocess="mmdet"`, what the official `inference_detector` runs; tests/generators/ compare them).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evalkit.compat import mmcv_ext
from evalkit.detection.base import ClassDetections, ImageDetections

GENEVAL_CONFIG = "mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py"


def mmdet_config_path(relative: str) -> Path:
    """Configs ship inside the mmdet wheel under mmdet/.mim/configs."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs" / relative


class MMDetDetector:
    """Any mmdet 3.x instance-segmentation (or box) model; images are batched through `inference_detector`."""

    def __init__(
        self,
        config,
        checkpoint: str | Path | None,
        classnames: list[str],
        *,
        device: str = "cpu",
        batch_size: int = 8,
        name: str = "mmdet",
        postprocess: str = "evalkit",
    ):
        mmcv_ext.install()
        from mmdet.apis import init_detector
        from mmengine.config import Config

        cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
        cfg.model.backbone.init_cfg = None  # never download ImageNet weights; the checkpoint has them all
        with warnings.catch_warnings():  # mmdet resets the warning filters to "once" and warns about defaults
            warnings.simplefilter("ignore")
            self.model = init_detector(cfg, str(checkpoint) if checkpoint else None, device=device)
        self.classnames = classnames
        self.batch_size = batch_size
        self.name = name
        if postprocess not in ("evalkit", "mmdet"):
            raise ValueError(f"postprocess must be 'evalkit' or 'mmdet', got {postprocess!r}")
        self.postprocess = postprocess  # does not change results, so not in config()
        self._config = {
            "backend": "mmdet",
            "name": name,
            "config": str(config) if not isinstance(config, Config) else "<in-memory>",
            "checkpoint": str(checkpoint) if checkpoint else None,
        }
        n_model = self.model.dataset_meta.get("classes") if self.model.dataset_meta else None
        if n_model is not None and len(n_model) != len(classnames):
            raise ValueError(
                f"detector has {len(n_model)} classes but {len(classnames)} class names were given"
            )

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _test_pipeline(self):
        """The model's own test pipeline, reading arrays instead of files (as `inference_detector` does)."""
        from mmcv.transforms import Compose

        steps = copy.deepcopy(self.model.cfg.test_dataloader.dataset.pipeline)
        steps[0].type = "mmdet.LoadImageFromNDArray"
        return Compose(steps)

    def detect(self, images: list[Image.Image]) -> list[ImageDetections]:
        """Images go through the network `batch_size` at a time (`inference_detector` loops one by one)."""
        import torch
        from mmengine.dataset import pseudo_collate

        pipeline = self._test_pipeline()
        out: list[ImageDetections] = []
        for start in range(0, len(images), self.batch_size):
            # mmdet expects BGR arrays, as cv2 reads files in the official script
            inputs = [
                pipeline(
                    {
                        "img": np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1]),
                        "img_id": start + i,
                    }
                )
                for i, im in enumerate(images[start : start + self.batch_size])
            ]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                if self._fast_postprocess():
                    out.extend(self._maskformer_detect(pseudo_collate(inputs)))
                    continue
                results = self.model.test_step(pseudo_collate(inputs))
            out.extend(self._to_classes(r.pred_instances) for r in results)
        return out

    def _fast_postprocess(self) -> bool:
        """Mask2Former/MaskFormer instance segmentation on CPU (where row reductions are per-row serial,
        so fewer rows give the same sums; CUDA splits reductions by the number of rows)."""
        from mmdet.models.detectors import MaskFormer
        from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead

        if self.postprocess != "evalkit" or not isinstance(self.model, MaskFormer):
            return False
        fusion = self.model.panoptic_fusion_head
        cfg = fusion.test_cfg or {}
        return (
            type(fusion) is MaskFormerFusionHead
            and bool(cfg.get("instance_on", False))
            and not cfg.get("panoptic_on", True)
            and not cfg.get("semantic_on", False)
            and next(self.model.parameters()).device.type == "cpu"
        )

    def _maskformer_detect(self, batch: dict) -> list[ImageDetections]:
        """`test_step` up to the head's logits, then `_instances` per image (mmdet's predict, deduplicated)."""
        model = self.model
        data = model.data_preprocessor(batch, False)
        samples = data["data_samples"]
        cls_all, masks_all = model.panoptic_head(model.extract_feat(data["inputs"]), samples)
        pad_shape = samples[0].metainfo["batch_input_shape"]
        return [
            self._instances(cls, masks, sample.metainfo, pad_shape)
            for cls, masks, sample in zip(cls_all[-1], masks_all[-1], samples, strict=True)
        ]

    def _instances(self, mask_cls, mask_pred, meta: dict, pad_shape) -> ImageDetections:
        """MaskFormerHead.predict's upsampling + MaskFormerFusionHead.predict(rescale=True) with
        instance_postprocess, computed once per distinct query of the top-k (class, query) pairs."""
        import torch
        import torch.nn.functional as F

        fusion = self.model.panoptic_fusion_head
        max_per_image = fusion.test_cfg.get("max_per_image", 100)
        num_queries = mask_cls.shape[0]
        scores = F.softmax(mask_cls, dim=-1)[:, :-1]
        labels = torch.arange(fusion.num_classes, device=mask_cls.device)
        labels = labels.unsqueeze(0).repeat(num_queries, 1).flatten(0, 1)
        top_scores, top = scores.flatten(0, 1).topk(max_per_image, sorted=False)
        top_labels = labels[top]
        thing = top_labels < fusion.num_things_classes
        top_scores, top_labels = top_scores[thing], top_labels[thing]
        queries, inverse = torch.unique(top[thing] // fusion.num_classes, return_inverse=True)
        # per-plane bilinear upsampling: the selected planes come out as in mmdet's all-query call
        masks = F.interpolate(
            mask_pred[queries][None], size=tuple(pad_shape), mode="bilinear", align_corners=False
        )[0]
        height, width = meta["img_shape"][:2]
        masks = F.interpolate(
            masks[:, :height, :width][:, None],
            size=tuple(meta["ori_shape"][:2]),
            mode="bilinear",
            align_corners=False,
        )[:, 0]
        positive = masks > 0
        binary = positive.float()
        weighted = masks.sigmoid_().mul_(binary).flatten(1)  # in place: the same values, no new buffers
        if len(queries) == 1 and len(inverse) > 1:
            # mmdet summed >= 2 rows, one row per thread; a single row would be split across threads
            sums = torch.cat([weighted, weighted]).sum(1)[:1]
        else:
            sums = weighted.sum(1)
        mask_scores = sums / (binary.flatten(1).sum(1) + 1e-6)
        det_scores = top_scores * mask_scores[inverse]
        planes = positive.numpy()  # one mask per distinct query, shared (read-only) by its instances
        return self._group(
            _mask_boxes(binary)[inverse].numpy(),
            det_scores.float().numpy(),
            top_labels.numpy(),
            [planes[j] for j in inverse.tolist()],
        )

    def _to_classes(self, inst) -> ImageDetections:
        boxes = inst.bboxes.detach().float().cpu().numpy()
        scores = inst.scores.detach().float().cpu().numpy()
        labels = inst.labels.detach().cpu().numpy()
        masks = inst.masks.detach().cpu().numpy().astype(bool) if "masks" in inst else None
        return self._group(boxes, scores, labels, masks)

    def _group(self, boxes, scores, labels, masks) -> ImageDetections:
        """Per class name: boxes with the score as a fifth column, and masks, in detector order."""
        per_class: ImageDetections = {}
        for label in np.unique(labels):
            idx = np.nonzero(labels == label)[0]
            per_class[self.classnames[int(label)]] = ClassDetections(
                boxes=np.concatenate([boxes[idx], scores[idx, None]], axis=1),
                masks=None if masks is None else [masks[i] for i in idx],
            )
        return per_class


def _mask_boxes(binary) -> Any:
    """mmdet's `mask2bbox` of 0/1 float masks (tight [x1, y1, x2 + 1, y2 + 1] boxes, zeros for empty masks),
    vectorised; a float max finds a row or column's pixels faster than a bool `any`."""
    import torch

    n, height, width = binary.shape
    cols, rows = binary.amax(dim=1) > 0, binary.amax(dim=2) > 0
    boxes = torch.zeros((n, 4), dtype=torch.float32)
    found = cols.any(dim=1) & rows.any(dim=1)
    first_col = cols.int().argmax(dim=1)
    last_col = width - cols.flip(1).int().argmax(dim=1)
    first_row = rows.int().argmax(dim=1)
    last_row = height - rows.flip(1).int().argmax(dim=1)
    stacked = torch.stack([first_col, first_row, last_col, last_row], dim=1).float()
    boxes[found] = stacked[found]
    return boxes
