"""Load (and save) BAGEL checkpoints in the official folder layout.

    llm_config.json   Qwen2 config; q/k-norm, untied head and MoT layers are implied
    vit_config.json   SigLIP config; the last layer is dropped at load time
    ema.safetensors   all BAGEL weights with the official key names (bf16 or fp32)
    ae.safetensors    FLUX autoencoder
    tokenizer.json    Qwen2 tokenizer (vocab.json / merges.txt / tokenizer_config.json alongside)

Weights are materialised straight from the files (modules are built on the meta device), so loading the
14B-parameter release does not first allocate random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from evalkit.bagel.autoencoder import AutoEncoder
from evalkit.bagel.config import (
    BagelConfig,
    bagel_sizes_from_shapes,
    read_llm_config,
    read_vit_config,
    vae_config_from_shapes,
)
from evalkit.bagel.model import Bagel
from evalkit.bagel.pipeline import BagelPipeline
from evalkit.bagel.tokenizer import BagelTokenizer
from evalkit.errors import MissingWeightsError

REQUIRED_FILES = ("llm_config.json", "vit_config.json", "ema.safetensors", "ae.safetensors", "tokenizer.json")
HOW_TO_GET = "huggingface-cli download ByteDance-Seed/BAGEL-7B-MoT --local-dir checkpoints/bagel"


def _shapes(path: Path) -> dict[str, torch.Size]:
    with safe_open(str(path), framework="pt") as f:
        return {k: torch.Size(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def read_config(folder: Path, vae_transform=None, vit_transform=None, vit_min_size=None) -> BagelConfig:
    """Everything not in the json files is recovered from tensor shapes.

    Image transforms default to the official ratios: VAE long edge = the latent table's pixel size, short
    edge at least half of it; ViT long edge = the ViT table's pixel size, short edge at least
    min(224, half of it). Pass them (or just `vit_min_size`) to reproduce other settings (AlphaGRPO's
    eval scripts use a ViT short-edge minimum of 378).
    """
    llm, vit = read_llm_config(folder / "llm_config.json"), read_vit_config(folder / "vit_config.json")
    vae = vae_config_from_shapes(_shapes(folder / "ae.safetensors"))
    sizes = bagel_sizes_from_shapes(_shapes(folder / "ema.safetensors"), vae.z_channels)
    cfg = BagelConfig(llm=llm, vit=vit, vae=vae, **sizes)
    vae_max = cfg.max_latent_size * cfg.pixels_per_token
    vit_max = cfg.vit_max_num_patch_per_side * vit.patch_size
    cfg.vae_transform = tuple(vae_transform or (vae_max, vae_max // 2, cfg.pixels_per_token))
    cfg.vit_transform = tuple(vit_transform or (vit_max, min(224, vit_max // 2), vit.patch_size))
    if vit_min_size is not None:
        cfg.vit_transform = (cfg.vit_transform[0], int(vit_min_size), cfg.vit_transform[2])
    return cfg


def _check_folder(folder: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (folder / name).exists()]
    if missing:
        raise MissingWeightsError(
            f"BAGEL weights not found in {folder} (missing {', '.join(missing)}); get them with: {HOW_TO_GET}"
        )


def _resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") or device == "auto" else torch.float32
    return {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }[dtype]


def _load_weights(
    module: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, device: str
) -> None:
    state = {
        k: v.to(device=device, dtype=dtype) for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")
    }
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the BAGEL layout: missing={missing[:5]} unexpected={unexpected[:5]}"
        )


def load(
    path: str | Path,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    *,
    vae_transform: tuple[int, int, int] | None = None,
    vit_transform: tuple[int, int, int] | None = None,
    vit_min_size: int | None = None,
    num_gpus: int | None = None,
) -> BagelPipeline:
    """Load an official-layout BAGEL folder; `device="auto"` spreads the decoder layers over `num_gpus`
    (default: all visible) GPUs with accelerate (untested here: no GPU in CI).

    The default dtype is bf16 on GPU and fp32 on CPU; the autoencoder always runs in fp32.
    """
    folder = Path(path).expanduser()
    _check_folder(folder)
    from evalkit.devices import resolve_device

    device = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, device)
    cfg = read_config(folder, vae_transform, vit_transform, vit_min_size)
    main_device = "cuda:0" if device == "auto" else device
    with torch.device("meta"):
        model, vae = Bagel(cfg), AutoEncoder(cfg.vae)
    load_device = "cpu" if device == "auto" else device
    _load_weights(
        model, load_file(str(folder / "ema.safetensors"), device=load_device), torch_dtype, load_device
    )
    _load_weights(
        vae, load_file(str(folder / "ae.safetensors"), device=main_device), torch.float32, main_device
    )
    if device == "auto":
        model = _dispatch(model, num_gpus)
    return BagelPipeline(model, vae, BagelTokenizer.from_folder(folder))


SMALL_MODULES = (
    "language_model.model.embed_tokens",
    "language_model.model.norm",
    "language_model.model.norm_moe_gen",
    "language_model.lm_head",
    "vit_model",
    "connector",
    "vit_pos_embed",
    "time_embedder",
    "vae2llm",
    "llm2vae",
    "latent_pos_embed",
)


def balanced_device_map(num_layers: int, num_gpus: int) -> dict[str, int]:
    """Whole decoder layers split evenly over the GPUs; embeddings, heads and the ViT on GPU 0.

    Every step moves only hidden states between GPUs; each layer's KV cache stays on its layer's GPU.
    """
    per_gpu = -(-num_layers // num_gpus)
    device_map = {name: 0 for name in SMALL_MODULES}
    for layer in range(num_layers):
        device_map[f"language_model.model.layers.{layer}"] = layer // per_gpu
    return device_map


def _dispatch(model: Bagel, num_gpus: int | None = None) -> Bagel:
    """Multi-GPU placement of a model loaded on the CPU (accelerate hooks move activations)."""
    from accelerate import dispatch_model

    num_gpus = num_gpus or torch.cuda.device_count()
    device_map = balanced_device_map(model.config.llm.num_hidden_layers, num_gpus)
    return dispatch_model(model, device_map=device_map)


# ---------------------------------------------------------------------- writing the official layout


def _llm_json(cfg: BagelConfig, tokenizer: BagelTokenizer) -> dict:
    c = cfg.llm
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "vocab_size": c.vocab_size,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos,
        "eos_token_id": tokenizer.eos,
        "max_position_embeddings": 32768,
        "torch_dtype": "bfloat16",
    }


def _vit_json(cfg: BagelConfig) -> dict:
    v = cfg.vit
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": v.hidden_size,
        "intermediate_size": v.intermediate_size,
        "num_hidden_layers": v.num_hidden_layers + 1,
        "num_attention_heads": v.num_attention_heads,
        "patch_size": v.patch_size,
        "image_size": v.image_size,
    }


def save_pretrained(pipe: BagelPipeline, folder: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a pipeline in the official layout (used for tiny test checkpoints and LoRA-merged exports)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = pipe.config
    (folder / "llm_config.json").write_text(json.dumps(_llm_json(cfg, pipe.tokenizer), indent=2))
    (folder / "vit_config.json").write_text(json.dumps(_vit_json(cfg), indent=2))
    (folder / "config.json").write_text(json.dumps({"name": ["BAGEL-evalkit-export"]}))
    ema = {k: v.detach().to("cpu", dtype).contiguous() for k, v in pipe.model.state_dict().items()}
    save_file(ema, str(folder / "ema.safetensors"))
    ae = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in pipe.vae.state_dict().items()}
    save_file(ae, str(folder / "ae.safetensors"))
    pipe.tokenizer.tokenizer.save(str(folder / "tokenizer.json"))
    return folder
