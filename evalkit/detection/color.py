"""GenEval's colour classifier: CLIP zero-shot over 10 colours with the three official templates.

Each object is composited onto a solid #999 background through its mask, then cropped to its box, as the
official script does. transformers' CLIPModel with `openai/clip-vit-large-patch14` holds the same weights as
open_clip's `ViT-L-14` / `openai` that the official script loads. Crops from many images are encoded in one
batch; the zero-shot weights are built once per object class.

Pixels are made as open_clip's transform makes them (``openclip_pixels``): PIL bicubic resize of the shortest
side, then torchvision's centre crop, whose offset is ``round((size - crop) / 2)`` (Python's round: half to
even), not transformers' truncating crop or its tensor-backend resize. The official run wraps text and image
encoding in clip_benchmark's ``torch.cuda.amp.autocast()`` (fp16 on a GPU, nothing on a CPU); so does this
classifier on CUDA devices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.geneval.rules import COLORS, DetectedObject

TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")


def object_crop(
    image: Image.Image, obj: DetectedObject, bgcolor: str = "#999", crop: bool = True
) -> Image.Image:
    """The official crop: masked object on a solid background (or the original image), cut to its box."""
    image = image.convert("RGB")
    if obj.mask is not None:
        if tuple(obj.mask.shape) != (image.height, image.width):
            raise ValueError(f"mask shape {obj.mask.shape} does not match image size {image.size}")
        blank = image.copy() if bgcolor == "original" else Image.new("RGB", image.size, color=bgcolor)
        image = Image.composite(image, blank, Image.fromarray(obj.mask))
    if crop:
        image = image.crop(tuple(float(v) for v in obj.box[:4]))
    return image


def openclip_pixels(image: Image.Image, size: int, crop: int, mean: list[float], std: list[float]) -> Any:
    """[3, crop, crop] float32 pixels exactly as open_clip's Resize/CenterCrop/ToTensor/Normalize make them."""
    import numpy as np
    import torch

    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)  # torchvision's size rule for an int size
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (pixels - mean_t) / std_t


class ClipColorClassifier:
    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        bgcolor: str = "#999",
        crop: bool = True,
    ):
        import torch
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        self.torch = torch
        self.device = device
        self.model = CLIPModel.from_pretrained(model_path).to(device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(model_path)
        self.processor = CLIPImageProcessor.from_pretrained(model_path)
        self.batch_size = batch_size
        self.bgcolor = bgcolor
        self.crop = crop
        self._weights: dict[str, Any] = {}
        self._config = {
            "clip": str(model_path),
            "bgcolor": bgcolor,
            "crop": crop,
            "templates": list(TEMPLATES),
        }

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _autocast(self):
        """clip_benchmark's ``torch.cuda.amp.autocast()``: fp16 on CUDA, a no-op elsewhere."""
        torch = self.torch
        return torch.autocast("cuda", dtype=torch.float16, enabled=str(self.device).startswith("cuda"))

    def pixel_values(self, crops: list[Image.Image]) -> Any:
        """[N, 3, H, W] pixels of the crops, as the official open_clip transform makes them."""
        proc = self.processor
        size = proc.size["shortest_edge"] if "shortest_edge" in proc.size else min(proc.size.values())
        crop = proc.crop_size["height"]
        return self.torch.stack(
            [openclip_pixels(c, size, crop, list(proc.image_mean), list(proc.image_std)) for c in crops]
        )

    def _class_weights(self, cls: str):
        """(10, D) zero-shot weights: per colour, the normalised mean of its normalised template embeddings."""
        if cls not in self._weights:
            torch = self.torch
            texts = [t.format(c=c, cls=cls) for c in COLORS for t in TEMPLATES]
            tok = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").to(
                self.device
            )
            with torch.no_grad(), self._autocast():
                emb = self.model.get_text_features(**tok)
            emb = getattr(emb, "pooler_output", emb).float()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            emb = emb.view(len(COLORS), len(TEMPLATES), -1).mean(dim=1)
            self._weights[cls] = emb / emb.norm(dim=-1, keepdim=True)
        return self._weights[cls]

    def logits(self, jobs: list[tuple[Image.Image, list[DetectedObject], str]]) -> list[Any]:
        """Per job, [objects, 10] logits ``100 * cos(crop, colour)``; crops batched across jobs."""
        torch = self.torch
        crops = [object_crop(img, obj, self.bgcolor, self.crop) for img, objs, _ in jobs for obj in objs]
        owners = [cls for _, objs, cls in jobs for _ in objs]
        rows = []
        for start in range(0, len(crops), self.batch_size):
            pixels = self.pixel_values(crops[start : start + self.batch_size]).to(self.device)
            with torch.no_grad(), self._autocast():
                f = self.model.get_image_features(pixel_values=pixels)
                f = getattr(f, "pooler_output", f)
                f = f / f.norm(dim=-1, keepdim=True)
                owned = owners[start : start + self.batch_size]
                rows += [
                    100.0 * feat @ self._class_weights(cls).T.to(feat.dtype)
                    for feat, cls in zip(f, owned, strict=True)
                ]
        out, i = [], 0
        for _, objs, _ in jobs:
            out.append(
                torch.stack([r.float().cpu() for r in rows[i : i + len(objs)]])
                if objs
                else torch.zeros(0, len(COLORS))
            )
            i += len(objs)
        return out

    def classify(self, jobs: list[tuple[Image.Image, list[DetectedObject], str]]) -> list[list[str]]:
        """For each (image, objects, class) job, the argmax colour of every object."""
        return [[COLORS[int(k)] for k in job.argmax(dim=1)] for job in self.logits(jobs)]
