"""`evalkit dvreward decompose|score`: decompose prompts into questions, verify images with a judge.

Importing this module loads no torch; models load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.options import parse_options
from evalkit.console import err, out
from evalkit.console import progress as _progress
from evalkit.errors import EvalkitError
from evalkit.reward_folder import IMAGE_SUFFIXES, find_images, open_image, prompt_of

dvreward_app = typer.Typer(
    no_args_is_help=True,
    help="DVReward: decompose prompts into yes/no questions, verify images with a judge.",
)


# ----------------------------------------------------------------------------------------- decompose
@dvreward_app.command("decompose")
def decompose(
    prompts: Annotated[Path, typer.Argument(help="prompts: .txt (one per line) or .jsonl with 'prompt'")],
    out_file: Annotated[Path, typer.Option("--out", help="output JSONL (AlphaGRPO decomposition format)")],
    llm: Annotated[str, typer.Option(help="openai:<model> (any OpenAI-compatible LLM), azure:..., hf:...")],
    llm_url: Annotated[str | None, typer.Option(help="base URL of the LLM server")] = None,
    llm_option: Annotated[list[str] | None, typer.Option(help="LLM option key=value (repeatable)")] = None,
    workers: Annotated[int, typer.Option(help="prompts decomposed concurrently")] = 4,
    temperature: Annotated[float, typer.Option(help="LLM sampling temperature")] = 0.3,
    max_attempts: Annotated[int, typer.Option(help="tries per step when a reply does not parse")] = 3,
    cache: Annotated[Path | None, typer.Option(help="decomposition cache (default ~/.cache/evalkit)")] = None,
) -> None:
    """Decompose prompts into validated, tagged semantic and quality questions (cached per prompt)."""
    from evalkit.dvreward.decompose import Decomposer, default_cache_path, read_prompts
    from evalkit.dvreward.format import write_jsonl
    from evalkit.judges import JudgeFailure, load_judge
    from evalkit.runs import atomic_write_bytes

    texts = read_prompts(prompts)
    model = load_judge(llm, url=llm_url, **parse_options(llm_option))
    decomposer = Decomposer(
        model, cache=cache or default_cache_path(), temperature=temperature, max_attempts=max_attempts
    )
    bar, advance = _progress("decompose", len(texts))
    with bar:
        results = decomposer.decompose_many(texts, workers=workers, progress=advance)
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
    out.print(f"{len(done)}/{len(texts)} prompts decomposed -> {out_file}")
    if failures:
        err.print(f"{len(failures)} failed (not written; re-run to retry): {failures_file}", markup=False)
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------- score
@dvreward_app.command("score")
def score(
    images: Annotated[Path, typer.Option(help="folder of images (searched recursively)")],
    questions: Annotated[Path, typer.Option(help="decomposition JSONL (AlphaGRPO format)")],
    judge: Annotated[str, typer.Option(help="tiny, hf:<id-or-path>, openai:<model>, azure:<deployment>")],
    judge_url: Annotated[str | None, typer.Option(help="base URL of an OpenAI-compatible judge")] = None,
    judge_option: Annotated[
        list[str] | None, typer.Option(help="judge option key=value (repeatable)")
    ] = None,
    method: Annotated[str, typer.Option(help="geometric (sqrt(SC*PQ)), mean or binary")] = "geometric",
    allow_partial: Annotated[bool, typer.Option(help="score from the answered questions")] = False,
    official_system_prompt: Annotated[
        bool, typer.Option(help="use AlphaGRPO's auditor system prompt for the judge")
    ] = True,
    out_file: Annotated[Path | None, typer.Option("--out", help="default: IMAGES/dvreward.jsonl")] = None,
    cache: Annotated[
        Path | None, typer.Option(help="judge reply cache (default: IMAGES/judge_cache.sqlite)")
    ] = None,
) -> None:
    """Verify every image against its prompt's questions; write one JSON line per image with the details."""
    from evalkit.dvreward.format import read_jsonl
    from evalkit.dvreward.verify import VERIFIER_SYSTEM_PROMPT, Verification
    from evalkit.rewards.dvreward import build_dvreward
    from evalkit.runs import atomic_write_bytes

    if not images.is_dir():
        raise EvalkitError(f"no such folder: {images}")
    decompositions = read_jsonl(questions)
    files = find_images(images)
    if not files:
        raise EvalkitError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}")
    options = parse_options(judge_option)
    default_system = VERIFIER_SYSTEM_PROMPT if official_system_prompt else None
    reward = build_dvreward(
        judge,
        judge_url=judge_url,
        questions=questions,
        method=method,
        allow_partial=allow_partial,
        cache_path=cache or images / "judge_cache.sqlite",
        system_prompt=options.pop("system_prompt", default_system),
        **options,
    )
    prompts = [d.prompt for d in decompositions]
    lines = []
    bar, advance = _progress("verify", len(files))
    with bar:
        for path in files:
            prompt = prompt_of(path, images, prompts)
            if prompt is None:
                result = Verification(None, None, None, method, (), "no prompt for this image")
            else:
                result = reward.verify([open_image(path)], [prompt])[0]
            lines.append({"image": path.relative_to(images).as_posix(), "prompt": prompt, **result.to_dict()})
            advance(1)
    target = out_file or images / "dvreward.jsonl"
    atomic_write_bytes(
        target, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    )
    scored = [line["reward"] for line in lines if line["reward"] is not None]
    mean = sum(scored) / len(scored) if scored else float("nan")
    out.print(f"{len(scored)}/{len(lines)} images scored, mean DVReward ({method}) {mean:.4f} -> {target}")
    if len(scored) < len(lines):
        err.print(f"{len(lines) - len(scored)} abstained (see 'failure' in {target})", markup=False)
