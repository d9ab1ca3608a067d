"""Which device a model goes to: one rule for generators, judges, detectors and reward models.

Under `torchrun --nproc-per-node N` (or `accelerate launch`) every process sees every GPU of its node and
is told its place by `LOCAL_RANK`, so a process that put its models on `cuda` would stack all N copies on
GPU 0. Here a missing device, or a bare `cuda` (`--device cuda`), means this process's own GPU,
`cuda:$LOCAL_RANK`; an explicit index (`cuda:1`), `cpu`, `mps` or `auto` (a model spread over the visible
GPUs by accelerate) is used as given.
"""

from __future__ import annotations

import os

from evalkit.errors import EvalkitError


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK; 0 when not launched by one)."""
    text = os.environ.get("LOCAL_RANK", "").strip()
    if not text:
        return 0
    try:
        rank = int(text)
    except ValueError:
        raise EvalkitError(
            f"$LOCAL_RANK={text!r} is not an integer; unset it or set it as torchrun does"
        ) from None
    if rank < 0:
        raise EvalkitError(f"$LOCAL_RANK={rank} is negative; unset it or set it as torchrun does")
    return rank


def gpu_index(rank: int, visible: int) -> int:
    """The GPU of local rank `rank` among `visible` GPUs.

    A launcher that shows each process only its own GPU (CUDA_VISIBLE_DEVICES per task, as SLURM's
    --gpus-per-task=1 does) leaves one visible GPU: that one. More processes than GPUs on a node would
    share GPUs unevenly, so that is refused.
    """
    if rank < visible:
        return rank
    if visible == 1:
        return 0
    raise EvalkitError(
        f"LOCAL_RANK={rank} but this node shows {visible} GPUs; start at most {visible} processes per node "
        f"(torchrun --nproc-per-node {visible}) or pass --device"
    )


def default_device() -> str:
    """`cuda:$LOCAL_RANK` when CUDA is available, else `cpu`."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{gpu_index(local_rank(), torch.cuda.device_count())}"


def resolve_device(device: str | None) -> str:
    """The device to load on: None and a bare "cuda" mean this process's GPU; anything else as given."""
    if device is None:
        return default_device()
    text = str(device).strip()
    if text == "cuda":
        import torch

        if torch.cuda.is_available():
            return f"cuda:{gpu_index(local_rank(), torch.cuda.device_count())}"
    return text
