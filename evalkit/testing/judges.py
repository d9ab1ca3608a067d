"""A tiny, randomly initialised Qwen2-VL judge for offline tests and demos.

It has the real Qwen2-VL architecture (vision tower with 2x2 patch merging, M-RoPE text decoder) at toy
sizes, a byte-level BPE tokenizer trained in memory with single tokens for Yes/No, a Qwen-style chat
template and the real processor. It is saved with `save_pretrained` and loaded back through the same
`from_pretrained` path as real weights. Its answers are noise: numbers from it are pipeline checks only.

The Qwen2-VL processor needs torchvision (for its video processor); `import evalkit` installs the hook
that makes the PyPI torchvision wheel import on a CPU-only torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from evalkit.paths import cache_dir

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Words judges say and ask; every Yes/No spelling must end up as a single token.
_CORPUS = (
    "Yes No yes no YES NO Yes. No. yes, no, "
    "Answer Yes or No. Please answer yes or no. Is there a red cat in the image? Does the image show a dog? "
    "Are there two cars? Is the apple on the left of the cup? Is the text readable? "
    "You are a helpful assistant. You are a careful judge of images. system user assistant "
    "Score the image from 0 to 2. consistency realism aesthetic quality reasoning explanation "
    "red orange yellow green blue purple pink brown black white cat dog car bus clock cup chair table"
)

# A Qwen-style template written for evalkit: system/user/assistant turns, images as vision pads.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)

TINY_QWEN2VL_CONFIG = {
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
    },
    "vision": {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    # 112x112 pixels at most: 64 patches → 16 image tokens, so a forward takes milliseconds.
    "image": {"min_pixels": 56 * 56, "max_pixels": 112 * 112},
    "vocab_size": 512,
    "seed": 0,
    "format": 1,  # bump when the build changes in a way the config does not show
}


def config_hash(config: dict | None = None) -> str:
    config = TINY_QWEN2VL_CONFIG if config is None else config
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def default_folder(config: dict | None = None) -> Path:
    return cache_dir() / "tiny-qwen2vl" / config_hash(config)


def build_tokenizer(vocab_size: int):
    """A Qwen2 byte-level BPE tokenizer trained in memory on a small judge corpus."""
    import tokenizers
    from transformers import Qwen2TokenizerFast

    bpe = tokenizers.ByteLevelBPETokenizer()
    spellings = [w for word in ("yes", "no") for w in (word, word.title(), word.upper())]
    lines = [_CORPUS, _CORPUS.lower(), _CORPUS.upper()] + 4 * [*spellings, *[" " + w for w in spellings]]
    bpe.train_from_iterator(lines, vocab_size=vocab_size - len(SPECIAL_TOKENS), min_frequency=1)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2TokenizerFast(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, config: dict):
    """The real Qwen2-VL processor (image + video processors) around the in-memory tokenizer."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    vision = config["vision"]
    sizes = {"patch_size": vision["patch_size"], "merge_size": vision["spatial_merge_size"]}
    sizes["temporal_patch_size"] = vision["temporal_patch_size"]
    image_processor = Qwen2VLImageProcessor(**sizes, **config["image"])
    video_processor = Qwen2VLVideoProcessor(**sizes)
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, config: dict):
    """A randomly initialised Qwen2VLForConditionalGeneration whose special ids match the tokenizer."""
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    eos, pad = ids("<|im_end|>"), ids("<|endoftext|>")
    text_config = {**config["text"], "vocab_size": len(tokenizer), "bos_token_id": None}
    model_config = Qwen2VLConfig(
        text_config={**text_config, "eos_token_id": eos, "pad_token_id": pad},
        vision_config=dict(config["vision"]),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(config["seed"])
    model = Qwen2VLForConditionalGeneration(model_config).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    return model


def save_tiny_qwen2vl(folder: str | os.PathLike, config: dict | None = None) -> Path:
    """Build the tiny judge and write it with save_pretrained (model, processor, tokenizer, template)."""
    config = TINY_QWEN2VL_CONFIG if config is None else config
    tokenizer = build_tokenizer(config["vocab_size"])
    processor = build_processor(tokenizer, config)
    model = build_model(tokenizer, config)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_qwen2vl_path(folder: str | os.PathLike | None = None, config: dict | None = None) -> Path:
    """The folder of the tiny judge, built once per config hash (atomically, so parallel tests may race)."""
    target = Path(folder) if folder is not None else default_folder(config)
    if (target / "config.json").exists() and (target / "processor_config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        save_tiny_qwen2vl(scratch, config)
        try:
            os.replace(scratch, target)
        except OSError:  # another process finished first; its folder is identical
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_tiny_judge(**options):
    """The tiny Qwen2-VL as an HFJudge, loaded from its saved folder through from_pretrained."""
    from evalkit.judges.hf import HFJudge

    options.setdefault("device", "cpu")
    return HFJudge.from_pretrained(str(tiny_qwen2vl_path()), name="tiny-qwen2vl", **options)


TINY_ARCHITECTURES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def build_tiny_vlm(arch: str = "qwen2_vl", seed: int = 0):
    """(model, processor) of a tiny random Qwen2-VL, Qwen2.5-VL or Qwen3-VL, in memory (not saved).

    They share the tokenizer and chat template; what differs is the architecture the judge must handle
    (Qwen2.5-VL's windowed vision attention, Qwen3-VL's 16-pixel patches, deepstack and interleaved M-RoPE).
    """
    import torch
    import transformers

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; known: {TINY_ARCHITECTURES}")
    config = TINY_QWEN2VL_CONFIG
    tokenizer = build_tokenizer(config["vocab_size"])
    if arch == "qwen2_vl":
        torch.manual_seed(seed)
        return build_model(tokenizer, {**config, "seed": seed}), build_processor(tokenizer, config)
    ids = tokenizer.convert_tokens_to_ids
    special = {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }
    text = {
        **{k: v for k, v in config["text"].items() if k != "rope_parameters"},
        "vocab_size": len(tokenizer),
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64}
    vision |= {"spatial_merge_size": 2, "temporal_patch_size": 2}
    if arch == "qwen2_5_vl":
        patch = 14
        model_config = transformers.Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": rope},
            vision_config={**vision, "patch_size": patch, "window_size": 56, "fullatt_block_indexes": [1]},
            **special,
        )
        model_class, processor_class = transformers.Qwen2_5_VLForConditionalGeneration, "Qwen2_5_VLProcessor"
        video_processor = transformers.Qwen2VLVideoProcessor(
            patch_size=patch, merge_size=2, temporal_patch_size=2
        )
    else:
        patch = 16
        model_config = transformers.Qwen3VLConfig(
            text_config={**text, "head_dim": 16, "rope_parameters": {**rope, "mrope_interleaved": True}},
            vision_config={
                **vision,
                "patch_size": patch,
                "num_position_embeddings": 64,
                "deepstack_visual_indexes": [0],
            },
            **special,
        )
        model_class, processor_class = transformers.Qwen3VLForConditionalGeneration, "Qwen3VLProcessor"
        video_processor = transformers.Qwen3VLVideoProcessor(
            patch_size=patch, merge_size=2, temporal_patch_size=2
        )
    image_processor = transformers.Qwen2VLImageProcessor(
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(4 * patch) ** 2,
        max_pixels=(8 * patch) ** 2,
    )
    processor = getattr(transformers, processor_class)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    return model_class(model_config).eval(), processor
