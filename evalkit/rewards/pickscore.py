"""PickScore: a CLIP-H model fine-tuned on Pick-a-Pic human preferences (yuvalkirstain/PickScore_v1).

Score = ``exp(logit_scale) * cos(text_embedding, image_embedding)`` for each (image, its prompt) pair, i.e.
the diagonal of CLIP's logit matrix. Raw values of modern T2I models lie around 21-24.

Normalisation: ``normalize="none"`` (default) returns that raw score, the number papers report.
``normalize="flow_grpo"`` divides it by 26, as Flow-GRPO's PickScore reward does ("norm to 0-1", ~0.83-0.92);
this is what the reward-ablation configs train with, so weighted sums with other [0, 1] rewards stay
balanced. GRPO advantages themselves are invariant to the scale of a single reward.

Preprocessing is the PIL path the official snippet ran on (transformers 4.x ``CLIPProcessor``): PIL bicubic
resize of the shortest side, centre crop, rescale, normalise. transformers 5 defaults to a torchvision tensor
backend whose resize differs (scores moved by ~1e-2), so the image processor is loaded with ``backend="pil"``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from PIL import Image

from evalkit.rewards.base import score_in_batches

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
FLOW_GRPO_SCALE = 26.0


def _projected(output: Any) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is the projected embedding; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class PickScoreScorer:
    name = "pickscore"

    def __init__(
        self,
        model: str = PICKSCORE_MODEL,
        processor: str | None = PICKSCORE_PROCESSOR,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        normalize: Literal["none", "flow_grpo"] = "none",
        batch_size: int = 16,
        allow_download: bool = False,
    ):
        from evalkit.checkpoints import resolve_hub
        from evalkit.errors import EvalkitError

        if normalize not in ("none", "flow_grpo"):
            raise EvalkitError(f"PickScore normalize must be 'none' or 'flow_grpo', got {normalize!r}")
        # Both resolved before either loads: a missing one is one line, not a hub retry loop.
        model_path = resolve_hub(model, allow_download=allow_download, what="PickScore model")
        processor_path = resolve_hub(
            processor or model, allow_download=allow_download, what="PickScore processor"
        )
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from evalkit.devices import resolve_device

        self.device = torch.device(resolve_device(device))
        dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self.image_processor = AutoImageProcessor.from_pretrained(
            str(processor_path), backend="pil", local_files_only=True
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(processor_path), local_files_only=True)
        self.model = (
            CLIPModel.from_pretrained(str(model_path), dtype=dtype, local_files_only=True)
            .to(self.device)
            .eval()
        )
        self.model_id = str(model)
        self.normalize = normalize
        self.batch_size = batch_size

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_id, "normalize": self.normalize}

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """[B, 3, 224, 224] float32 pixels as the official PIL preprocessing makes them."""
        return self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")[
            "pixel_values"
        ]

    @torch.no_grad()
    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        text_inputs = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        pixel_values = self.pixel_values(images).to(self.device, self.model.dtype)
        image_embs = _projected(self.model.get_image_features(pixel_values=pixel_values)).float()
        text_embs = _projected(
            self.model.get_text_features(
                input_ids=text_inputs["input_ids"].to(self.device),
                attention_mask=text_inputs["attention_mask"].to(self.device),
            )
        ).float()
        image_embs = image_embs / image_embs.norm(dim=-1, keepdim=True)
        text_embs = text_embs / text_embs.norm(dim=-1, keepdim=True)
        scores = self.model.logit_scale.float().exp() * (text_embs * image_embs).sum(dim=-1)
        if self.normalize == "flow_grpo":
            scores = scores / FLOW_GRPO_SCALE
        return scores.cpu().tolist()

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[float | None]:
        return score_in_batches(self._score_batch, images, prompts, self.batch_size)
