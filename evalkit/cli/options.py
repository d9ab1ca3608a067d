"""Typed CLI options shared by the command modules (typer `Annotated` aliases) and `key=value` parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.errors import EvalkitError

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="sd35m, tiny-sd3, diffusers:<id-or-path>, ...")]
ProtocolOpt = Annotated[
    str | None, typer.Option(help="protocol id, e.g. geneval@long (default: the benchmark's)")
]
LimitOpt = Annotated[int | None, typer.Option(help="only the first N samples (quick runs)")]
SeedOpt = Annotated[int, typer.Option(help="global seed; per-image seeds derive from it")]
RunsDirOpt = Annotated[Path, typer.Option(help="where run folders live")]
DataDirOpt = Annotated[Path | None, typer.Option(help="benchmark data folder (default $EVALKIT_DATA)")]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="generator option key=value")]
ScoreOptionOpt = Annotated[list[str] | None, typer.Option("--score-option", help="scorer option key=value")]
DetectorOpt = Annotated[str | None, typer.Option(help="GenEval detector backend: mmdet (official) or tiny")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda:$LOCAL_RANK if any)")]
DtypeOpt = Annotated[str | None, typer.Option(help="bf16, fp16 or fp32")]
BatchOpt = Annotated[int, typer.Option(help="images per generator/scorer call")]
BenchOptionOpt = Annotated[
    list[str] | None,
    typer.Option("--bench-option", help="benchmark option key=value (split=test, subset=...)"),
]
CompatOpt = Annotated[
    str | None, typer.Option(help="DPG: `official` reproduces the official scorer's quirks")
]
JudgeOpt = Annotated[
    str | None,
    typer.Option(
        help="hf:<id-or-path>, openai:<model>, azure:<deployment>, vllm:/sglang:<id-or-path> or tiny"
    ),
]
JudgeUrlOpt = Annotated[str | None, typer.Option(help="base URL of an OpenAI-compatible judge server")]
AllowDownloadOpt = Annotated[
    bool, typer.Option(help="fetch missing hf: judge or reward weights from the Hugging Face hub")
]
JudgeOptionOpt = Annotated[list[str] | None, typer.Option("--judge-option", help="judge option key=value")]
RescoreOpt = Annotated[
    bool,
    typer.Option(
        help="score every image again; the old records stay in force until the new ones are complete"
    ),
]
RetryFailedOpt = Annotated[
    bool,
    typer.Option(
        "--retry-failed/--no-retry-failed",
        help="judge again the images whose judging failed (default); --no-retry-failed keeps those records",
    ),
]
ThinkOpt = Annotated[bool, typer.Option(help="ask generators that support it to think before drawing")]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse (numbers, booleans, lists), else strings."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise EvalkitError(f"option '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        options[key.strip()] = _parse_value(value)
    return options
