"""DVReward on files: decompose a prompts file into a questions JSONL, verify a folder of images against
it. What `evalkit dvreward decompose|score` call; both write atomically and never score a failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

Progress = Callable[[int], None]


def _noop(_: int) -> None:
    pass


@dataclass
class Decomposed:
    done: int
    total: int
    failures_file: Path | None  # the prompts that failed (not written to the output; re-run to retry)


def decompose_file(
    prompts: Path,
    out_file: Path,
    llm: Any,
    *,
    cache: Path | None = None,
    temperature: float = 0.3,
    max_attempts: int = 3,
    workers: int = 4,
    progress: Progress = _noop,
) -> Decomposed:
    """Decompose every prompt of `prompts` with the LLM judge `llm`; failures go to <out>.failures.jsonl."""
    from evalkit.dvreward.decompose import Decomposer, default_cache_path, read_prompts
    from evalkit.dvreward.format import write_jsonl
    from evalkit.judges import JudgeFailure
    from evalkit.runs import atomic_write_bytes

    texts = read_prompts(prompts)
    decomposer = Decomposer(
        llm, cache=cache or default_cache_path(), temperature=temperature, max_attempts=max_attempts
    )
    results = decomposer.decompose_many(texts, workers=workers, progress=progress)
    done = [r for r in results if not isinstance(r, JudgeFailure)]
    write_jsonl(out_file, done)  # type: ignore[arg-type]
    failures = [
        {"original_index": i, "prompt": texts[i], "reason": r.reason}
        for i, r in enumerate(results)
        if isinstance(r, JudgeFailure)
    ]
    failures_file = out_file.with_name(out_file.stem + ".failures.jsonl")
    if failures:
        body = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
        atomic_write_bytes(failures_file, body.encode())
    elif failures_file.exists():
        failures_file.unlink()
    return Decomposed(len(done), len(texts), failures_file if failures else None)


@dataclass
class Verified:
    out_file: Path
    scored: int
    total: int
    mean: float  # NaN when nothing was scored


def verify_folder(
    images: Path,
    questions: Path,
    judge: str,
    *,
    judge_url: str | None = None,
    judge_options: dict[str, Any] | None = None,
    method: str = "geometric",
    allow_partial: bool = False,
    official_system_prompt: bool = True,
    out_file: Path | None = None,
    cache: Path | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Verified:
    """Verify every image under `images` against its prompt's questions; one JSON line per image with the
    details (an image without a prompt or questions abstains, with the reason)."""
    from evalkit.dvreward.format import read_jsonl
    from evalkit.dvreward.verify import VERIFIER_SYSTEM_PROMPT, Verification
    from evalkit.reward_folder import IMAGE_SUFFIXES, find_images, open_image, prompt_of
    from evalkit.rewards.factory import build_reward
    from evalkit.runs import atomic_write_bytes

    if not images.is_dir():
        raise EvalkitError(f"no such folder: {images}")
    decompositions = read_jsonl(questions)
    files = find_images(images)
    if not files:
        raise EvalkitError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}")
    options = dict(judge_options or {})
    default_system = VERIFIER_SYSTEM_PROMPT if official_system_prompt else None
    settings = dict(judge=judge, judge_url=judge_url, questions=questions, method=method,
                    allow_partial=allow_partial, cache_path=cache or images / "judge_cache.sqlite")  # fmt: skip
    settings["system_prompt"] = options.pop("system_prompt", default_system)
    reward = build_reward("dvreward", {**settings, **options})
    if on_start is not None:
        on_start(len(files))
    prompts = [d.prompt for d in decompositions]
    lines = []
    for path in files:
        prompt = prompt_of(path, images, prompts)
        if prompt is None:
            result = Verification(None, None, None, method, (), "no prompt for this image")
        else:
            result = reward.verify([open_image(path)], [prompt])[0]
        lines.append({"image": path.relative_to(images).as_posix(), "prompt": prompt, **result.to_dict()})
        (progress or _noop)(1)
    target = out_file or images / "dvreward.jsonl"
    atomic_write_bytes(
        target, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    )
    scored = [line["reward"] for line in lines if line["reward"] is not None]
    mean = sum(scored) / len(scored) if scored else float("nan")
    return Verified(target, len(scored), len(lines), mean)
