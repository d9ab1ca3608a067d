"""GenEval's colour classifier: CLIP zero-shot over 10 colours with the three official templates.

Each object is composited onto a solid #999 background through its mask, then cropped to its box, as the
official script does. transformers' CLIPModel with `openai/clip-vit-large-patch14` holds the same weights as
open_clip's `ViT-L-14` / `openai` that the official script loads. Crops from many images are encoded in one
batch; the zero-shot weights are built once per object class.
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

    def _class_weights(self, cls: str):
        """(10, D) zero-shot weights: per colour, the normalised mean of its normalised template embeddings."""
        if cls not in self._weights:
            torch = self.torch
            texts = [t.format(c=c, cls=cls) for c in COLORS for t in TEMPLATES]
            tok = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").to(
                self.device
            )
            with torch.no_grad():
                emb = self.model.get_text_features(**tok)
            emb = getattr(emb, "pooler_output", emb)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            emb = emb.view(len(COLORS), len(TEMPLATES), -1).mean(dim=1)
            self._weights[cls] = emb / emb.norm(dim=-1, keepdim=True)
        return self._weights[cls]

    def classify(self, jobs: list[tuple[Image.Image, list[DetectedObject], str]]) -> list[list[str]]:
        """For each (image, objects, class) job, the argmax colour of every object; crops batched across jobs."""
        torch = self.torch
        crops = [object_crop(img, obj, self.bgcolor, self.crop) for img, objs, _ in jobs for obj in objs]
        owners = [cls for _, objs, cls in jobs for _ in objs]
        feats = []
        for start in range(0, len(crops), self.batch_size):
            pixels = self.processor(images=crops[start : start + self.batch_size], return_tensors="pt")
            with torch.no_grad():
                f = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
            f = getattr(f, "pooler_output", f)
            feats.append(f / f.norm(dim=-1, keepdim=True))
        names: list[str] = []
        if feats:
            all_feats = torch.cat(feats)
            for feat, cls in zip(all_feats, owners, strict=True):
                names.append(COLORS[int((feat @ self._class_weights(cls).T).argmax())])
        out, i = [], 0
        for _, objs, _ in jobs:
            out.append(names[i : i + len(objs)])
            i += len(objs)
        return out
