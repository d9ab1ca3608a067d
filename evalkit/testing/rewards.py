"""Tiny random-weight PickScore (CLIP) and HPSv3 (Qwen2-VL + head) checkpoints, built offline.

They have the real architectures at toy sizes and are written in the real on-disk formats (CLIP with
`save_pretrained`; HPSv3 as a Qwen2-VL base folder plus a flat `HPSv3.safetensors` in the released,
pre-transformers-4.52 key layout), so the scorers load them through their real loading code. Scores from them
are pipeline checks only. Built once per config into the evalkit cache (`$EVALKIT_CACHE`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from evalkit.paths import cache_dir

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "photo",
    "picture",
    "with",
    "on",
    "in",
    "red",
    "blue",
    "green",
    "cat",
    "dog",
    "car",
    "bird",
    "table",
    "two",
    "three",
]
QWEN_SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|endoftext|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_PIXELS = 56 * 56  # HPSv3 pixel budget for the tiny model (the real one is 256*28*28)
_VERSION = "1"


def _folder(name: str, folder: Path | None) -> Path:
    if folder is not None:
        return Path(folder)
    digest = hashlib.sha256(f"{name}-{_VERSION}-{WORDS}".encode()).hexdigest()[:12]
    return cache_dir() / f"tiny-{name}-{digest}"


def _publish(tmp: Path, folder: Path) -> None:
    """Move a finished build into place (another process may have won the race: keep theirs)."""
    try:
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def clip_tokenizer():
    from transformers import CLIPTokenizer

    chars = sorted({c for w in WORDS for c in w})
    tokens = (
        ["<|startoftext|>", "<|endoftext|>"]
        + chars
        + [c + "</w>" for c in chars]
        + [w + "</w>" for w in WORDS]
    )
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token="<|endoftext|>")


def tiny_pickscore(folder: Path | None = None) -> Path:
    """A folder holding a tiny CLIPModel and its CLIPProcessor (30 px images)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = _folder("pickscore", folder)
    if (folder / "config.json").exists():
        return folder
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=30,
            patch_size=6,
        ),
        projection_dim=16,
    )  # fmt: skip
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPModel(config).save_pretrained(tmp)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    _publish(tmp, folder)
    return folder


def qwen2vl_processor(extra_text: str = ""):
    """A tiny byte-level BPE Qwen2-VL processor with the Qwen chat special tokens."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2Tokenizer, Qwen2VLImageProcessorPil, Qwen2VLProcessor, Qwen2VLVideoProcessor

    bpe = ByteLevelBPETokenizer()
    corpus = [extra_text, " ".join(WORDS), "user assistant system"] * 3
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS})
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=28 * 28, max_pixels=1024 * 1024
    )
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def to_released_layout(state: dict) -> dict:
    """Current transformers Qwen2-VL keys -> the pre-4.52 layout HPSv3.safetensors was saved in."""
    out = {}
    for key, value in state.items():
        if key.startswith("model.visual."):
            key = key[len("model.") :]
        elif key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model.") :]
        out[key] = value.contiguous()
    return out


def tiny_hpsv3(folder: Path | None = None) -> tuple[Path, Path]:
    """(base folder, checkpoint file): a tiny Qwen2-VL base and a random HPSv3 checkpoint for it."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from evalkit.rewards.hpsv3 import HPSV3_FILE, INSTRUCTION, REWARD_TOKEN, _reward_model_class

    folder = _folder("hpsv3", folder)
    if (folder / HPSV3_FILE).exists():
        return folder / "base", folder / HPSV3_FILE
    processor = qwen2vl_processor(INSTRUCTION)
    tok = processor.tokenizer
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 2, 2]},
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, mlp_ratio=2,
        ),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )  # fmt: skip
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Qwen2VLForConditionalGeneration(config).save_pretrained(tmp / "base")
        processor.save_pretrained(tmp / "base")
        # The trained reward model: base + <|Reward|> (vocabulary resized) + head, all weights random.
        tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        torch.manual_seed(1)
        reward_model = _reward_model_class()(config)
        reward_model.resize_token_embeddings(len(tok))
    save_file(to_released_layout(reward_model.state_dict()), tmp / HPSV3_FILE)
    _publish(tmp, folder)
    return folder / "base", folder / HPSV3_FILE
