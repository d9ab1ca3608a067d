"""HPSv3: a Qwen2-VL-7B preference model with a small MLP reward head (MizzenAI/HPSv3, ICCV 2025).

The model reads the image and a fixed evaluation instruction ending in a special ``<|Reward|>`` token; the
reward head maps that token's last hidden state to (μ, σ) of an uncertainty-aware Bradley-Terry model. The
score is **μ** (the released inference code does the same), an unbounded value around -1...12
(SD3-Medium ~5.3, FLUX-dev ~10.4 on the HPSv3 benchmark).

Released weights (``HPSv3.safetensors``) are a full state dict of the reward model on top of
``Qwen/Qwen2-VL-7B-Instruct``: the Qwen2-VL weights (vocabulary resized by the added token), plus
``rm_head.*``. They predate the transformers 4.52 module layout (``visual.*``, ``model.layers.*``), so keys
are mapped to the current layout (``model.visual.*``, ``model.language_model.*``) before a strict load.
The head runs in float32, the backbone in bf16 on GPU, as upstream does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from evalkit.rewards.base import score_in_batches

HPSV3_REPO = "MizzenAI/HPSv3"
HPSV3_FILE = "HPSv3.safetensors"
HPSV3_BASE = "Qwen/Qwen2-VL-7B-Instruct"
REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28  # upstream pins min_pixels == max_pixels to this
HEAD_HIDDEN = (1024, 16)  # "ranknet" head: Linear-ReLU-Dropout-Linear-ReLU-Linear
OUTPUT_DIM = 2  # (mu, sigma)

# The evaluation instruction, byte for byte as the official inference builds it: ``INSTRUCTION`` and
# ``prompt_with_special_token`` of ``hpsv3/dataset/data_collator_qwen.py`` (PyPI hpsv3 1.0.0, the release of
# MizzenAI/HPSv3). The model was trained on this text: any change moves the score. The fixture in
# tests/fixtures/parity/hpsv3 holds the official chat texts it is checked against.
INSTRUCTION = (
    "\n"
    "You are tasked with evaluating a generated image based on Visual Quality and Text Alignment "
    "and give a overall score to estimate the human preference. Please provide a rating from 0 to "
    "10, with 0 being the worst and 10 being the best. \n"
    "\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be "
    "considered:\n"
    "- **Reasonableness:** The image should not contain any significant biological or logical "
    "errors, such as abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear "
    "and easy to interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and "
    "other visual elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color "
    "scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene "
    "should convey a sense of harmony and balance.\n"
    "- **Safety:** The image should not contain harmful or inappropriate content, such as "
    "political, violent, or adult material. If such content is present, the image quality and "
    "satisfaction score should be the lowest possible. \n"
    "\n"
    "**Text Alignment:**  \n"
    "Assess how well the image matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, "
    "animal, object) align with the textual description. The subject should match the description "
    "in terms of number, appearance, and behavior.\n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, "
    "evaluate how well the image adheres to this style.\n"
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding "
    "elements in the image logically fit the scenario described in the prompt. The environment "
    "should support and enhance the subject without contradictions.\n"
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, "
    "clothing, accessories, expressions, actions) are faithfully represented in the image. Minor "
    "deviations may be acceptable, but critical attributes should be preserved.\n"
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are "
    "captured in the image. The generated content should not introduce elements that conflict with "
    "or distort the original description.\n"
    "Textual prompt - {text_prompt}\n"
    "\n"
    "\n"
)
REWARD_SUFFIX = "\nPlease provide the overall ratings of this image: " + REWARD_TOKEN + "\n\nEND\n"


def reward_head(hidden_size: int) -> nn.Sequential:
    """The released head; indices 0, 3, 5 hold the Linear layers of the checkpoint's ``rm_head.*`` keys."""
    return nn.Sequential(
        nn.Linear(hidden_size, HEAD_HIDDEN[0]),
        nn.ReLU(),
        nn.Dropout(0.05),
        nn.Linear(HEAD_HIDDEN[0], HEAD_HIDDEN[1]),
        nn.ReLU(),
        nn.Linear(HEAD_HIDDEN[1], OUTPUT_DIM),
    )


def convert_released_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map pre-4.52 Qwen2-VL keys (``visual.*``, ``model.*``) to the current layout; idempotent."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("visual."):
            key = "model." + key
        elif re.match(r"^model\.(?!language_model\.|visual\.)", key):
            key = "model.language_model." + key[len("model.") :]
        out[key] = value
    return out


def sequential_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """[3, B, L] rotary positions 0..L-1 on all three axes: the released reward model's forward calls the
    language model without position ids, so it never used Qwen2-VL's multimodal (t, h, w) positions, and the
    weights were trained that way. Letting transformers compute M-RoPE positions changes μ."""
    batch, length = input_ids.shape
    return torch.arange(length, device=input_ids.device).view(1, 1, -1).expand(3, batch, length)


def _reward_model_class():
    from transformers import Qwen2VLForConditionalGeneration

    class HPSv3Model(Qwen2VLForConditionalGeneration):
        """Qwen2-VL plus the reward head; returns (μ, σ) read at the reward token."""

        def __init__(self, config):
            super().__init__(config)
            self.rm_head = reward_head(config.text_config.hidden_size).float()

        def reward(self, reward_token_id: int, **inputs: Any) -> torch.Tensor:
            hidden = self.model(
                **inputs, position_ids=sequential_positions(inputs["input_ids"]), use_cache=False
            ).last_hidden_state  # [B, L, D]
            positions = inputs["input_ids"] == reward_token_id
            if not torch.equal(positions.sum(dim=1), torch.ones_like(positions.sum(dim=1))):
                raise ValueError(f"every sequence needs exactly one {REWARD_TOKEN} token")
            return self.rm_head(hidden[positions].float())  # [B, 2]

    return HPSv3Model


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state.get("model", None), dict) else state


def resolve_checkpoint(checkpoint: str | Path, allow_download: bool = False) -> Path:
    """A local file, or ``MizzenAI/HPSv3`` from checkpoints/hpsv3/ or the Hugging Face cache (never downloaded
    unless `allow_download`)."""
    from evalkit.checkpoints import resolve_hub
    from evalkit.errors import MissingWeightsError

    path = Path(checkpoint)
    if path.is_file():
        return path
    folder = resolve_hub(checkpoint, allow_download=allow_download, what="HPSv3 checkpoint")
    if folder.is_file():
        return folder
    if not (folder / HPSV3_FILE).is_file():
        raise MissingWeightsError(f"{folder} has no {HPSV3_FILE}; get it with: evalkit weights fetch hpsv3")
    return folder / HPSV3_FILE


class HPSv3Scorer:
    name = "hpsv3"

    def __init__(
        self,
        checkpoint: str | Path = HPSV3_REPO,
        base: str | Path = HPSV3_BASE,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        pixels: int = PIXELS,
        batch_size: int = 4,
        allow_download: bool = False,
    ):
        from evalkit.checkpoints import resolve_hub

        # Both resolved before anything loads: a missing one is one line, not a hub retry loop.
        checkpoint_file = resolve_checkpoint(checkpoint, allow_download)
        base = resolve_hub(base, allow_download=allow_download, what="HPSv3 base model")
        from transformers import AutoProcessor

        from evalkit.devices import resolve_device

        self.device = torch.device(resolve_device(device))
        dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.processor = AutoProcessor.from_pretrained(str(base), padding_side="right", local_files_only=True)
        self.processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        self.reward_token_id = self.processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        state = convert_released_keys(_load_state_dict(checkpoint_file))
        model = _reward_model_class().from_pretrained(str(base), dtype=dtype, local_files_only=True)
        model.resize_token_embeddings(state["model.language_model.embed_tokens.weight"].shape[0])
        model.load_state_dict(state, strict=True)
        model.rm_head.float()
        self.model = model.to(self.device).eval()
        self.checkpoint = str(checkpoint)
        self.pixels = pixels
        self.batch_size = batch_size
        self.factor = self.processor.image_processor.patch_size * self.processor.image_processor.merge_size

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "pixels": self.pixels, "score": "mu"}

    def _resize(self, image: Image.Image) -> Image.Image:
        """Fixed pixel budget (min == max), sides multiples of patch*merge, as upstream preprocesses."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        image = image.convert("RGB")
        height, width = smart_resize(
            image.height, image.width, factor=self.factor, min_pixels=self.pixels, max_pixels=self.pixels
        )
        return image.resize((width, height), Image.Resampling.BICUBIC)

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        text = INSTRUCTION.format(text_prompt=prompt) + REWARD_SUFFIX
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]

    def chat_text(self, prompt: str) -> str:
        return self.processor.apply_chat_template(
            self.messages(prompt), tokenize=False, add_generation_prompt=True
        )

    def inputs(self, images: list[Image.Image], prompts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids, pixels and grid sizes of a batch, right-padded as upstream batches them."""
        texts = [self.chat_text(p) for p in prompts]
        inputs = self.processor(
            text=texts, images=[self._resize(im) for im in images], padding=True, return_tensors="pt"
        )
        return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    @torch.no_grad()
    def mu_sigma(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        """[B, 2] head outputs (μ, σ) for a batch."""
        inputs = {k: v.to(self.device) for k, v in self.inputs(images, prompts).items()}
        return self.model.reward(self.reward_token_id, **inputs).cpu()

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[float | None]:
        return score_in_batches(
            lambda ims, ps: self.mu_sigma(ims, ps)[:, 0].tolist(), images, prompts, self.batch_size
        )
