"""GenEval's detector through mmdet 3.x (Mask2Former Swin-S, COCO instance segmentation).

Runs on mmcv-lite: Mask2Former needs only mmcv's pure-PyTorch ops on CPU, and a stub stands in for the
compiled extension that mmcv-lite lacks. The official GenEval checkpoint's training run is published in
mmdet 3.x format as `..._20220504_001756-c9d0c4f2.pth` (checkpoints/geneval-mask2former.yaml).
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
                results = self.model.test_step(pseudo_collate(inputs))
            out.extend(self._to_classes(r.pred_instances) for r in results)
        return out

    def _to_classes(self, inst) -> ImageDetections:
        boxes = inst.bboxes.detach().float().cpu().numpy()
        scores = inst.scores.detach().float().cpu().numpy()
        labels = inst.labels.detach().cpu().numpy()
        masks = inst.masks.detach().cpu().numpy().astype(bool) if "masks" in inst else None
        per_class: ImageDetections = {}
        for label in np.unique(labels):
            idx = np.nonzero(labels == label)[0]
            per_class[self.classnames[int(label)]] = ClassDetections(
                boxes=np.concatenate([boxes[idx], scores[idx, None]], axis=1),
                masks=None if masks is None else [masks[i] for i in idx],
            )
        return per_class
