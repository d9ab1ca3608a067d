"""`evalkit dvreward decompose|score`: decompose prompts into questions, verify images with a judge.

Importing this module loads no torch; models load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.options import parse_options
from evalkit.console import err, out
from evalkit.console import progress as _progress

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
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.dvreward.files import decompose_file
    from evalkit.judges import load_judge

    n = len(read_prompts(prompts))
    model = load_judge(llm, url=llm_url, **parse_options(llm_option))
    bar, advance = _progress("decompose", n)
    with bar:
        result = decompose_file(
            prompts, out_file, model, cache=cache, temperature=temperature, max_attempts=max_attempts,
            workers=workers, progress=advance,
        )  # fmt: skip
    out.print(f"{result.done}/{result.total} prompts decomposed -> {out_file}")
    if result.failures_file is not None:
        failed = result.total - result.done
        err.print(f"{failed} failed (not written; re-run to retry): {result.failures_file}", markup=False)
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
    import contextlib

    from evalkit.dvreward.files import verify_folder

    with contextlib.ExitStack() as stack:
        steps: list = []

        def start(total: int) -> None:  # the bar appears once the judge has loaded
            bar, advance = _progress("verify", total)
            stack.enter_context(bar)
            steps.append(advance)

        result = verify_folder(
            images, questions, judge, judge_url=judge_url, judge_options=parse_options(judge_option),
            method=method, allow_partial=allow_partial, official_system_prompt=official_system_prompt,
            out_file=out_file, cache=cache, on_start=start, progress=lambda n: steps[0](n),
        )  # fmt: skip
    out.print(
        f"{result.scored}/{result.total} images scored, mean DVReward ({method}) {result.mean:.4f} "
        f"-> {result.out_file}"
    )
    if result.scored < result.total:
        err.print(
            f"{result.total - result.scored} abstained (see 'failure' in {result.out_file})", markup=False
        )
