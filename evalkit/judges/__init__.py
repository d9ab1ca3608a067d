"""MLLM judges: a local transformers VLM or an OpenAI-compatible HTTP server, behind one interface.

    judge = load_judge("hf:Qwen/Qwen2.5-VL-7B-Instruct", cache_path=run_dir / "judge_cache.sqlite")
    judge = load_judge("openai:Qwen2.5-VL-72B-Instruct", url="http://node12:8000/v1")
    judge = load_judge("vllm:Qwen/Qwen2.5-VL-7B-Instruct")  # in-process vLLM engine (needs `pip install vllm`)
    judge = load_judge("tiny")  # a random tiny Qwen2-VL for tests; its numbers mean nothing

Importing this package does not import torch or openai; backends load them when built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.judges.base import DetailedJudge, Judge, JudgeFailure, YesNoAnswer
from evalkit.judges.cache import ReplyCache

__all__ = [
    "BACKENDS",
    "DetailedJudge",
    "Judge",
    "JudgeFailure",
    "ReplyCache",
    "YesNoAnswer",
    "check_judge",
    "load_judge",
]

BACKENDS = {
    "hf": "hf:<hub-id-or-local-folder>  local transformers VLM (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ...)",
    "openai": "openai:<model> --judge-url URL  OpenAI-compatible (vLLM, SGLang, OpenAI); $OPENAI_API_KEY",
    "azure": "azure:<deployment> --judge-url ENDPOINT  Azure OpenAI; key in $AZURE_OPENAI_API_KEY",
    "vllm": "vllm:<hub-id-or-local-folder>  in-process vLLM engine, prefix caching (needs vllm installed)",
    "sglang": "sglang:<hub-id-or-local-folder>  in-process SGLang engine, radix cache (needs sglang installed)",
    "tiny": "tiny  random tiny Qwen2-VL built offline (tests and demos only)",
}


def load_judge(
    spec: str,
    *,
    url: str | None = None,
    cache_path: Path | None = None,
    allow_download: bool = False,
    **decoding: Any,
) -> Judge:
    """Build a judge from a CLI spec. Extra keywords go to the backend (temperature, max_tokens, seed,
    system_prompt, and backend options such as device/dtype/batch_size or concurrency/timeout/max_retries).
    """
    import evalkit  # noqa: F401 - the torchvision compat hook must be in place before transformers loads
    from evalkit.errors import EvalkitError, did_you_mean

    backend, _, target = spec.partition(":")
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise did_you_mean("judge backend", backend, list(BACKENDS))
    options = dict(decoding)
    check_options(backend, options)
    if cache_path is not None:
        options["cache"] = ReplyCache(cache_path)
    if backend == "tiny":
        from evalkit.testing.judges import load_tiny_judge

        return load_tiny_judge(**options)
    if not target:
        raise EvalkitError(f"judge spec '{spec}' needs a model after '{backend}:' ({BACKENDS[backend]})")
    if backend == "hf":
        from evalkit.judges.hf import HFJudge

        if url is not None:
            raise EvalkitError("--judge-url is for openai:/azure: judges; hf: judges run locally")
        return HFJudge.from_pretrained(target, allow_download=allow_download, **options)
    if backend in ENGINE_BACKENDS:
        from evalkit.judges import engine

        if url is not None:
            raise EvalkitError(
                f"--judge-url is for openai:/azure: judges; {backend}: judges run in this process"
            )
        load = engine.load_vllm_judge if backend == "vllm" else engine.load_sglang_judge
        return load(target, allow_download=allow_download, **options)
    from evalkit.judges.openai_http import OpenAIJudge

    if backend == "azure":
        import os

        if url is None:
            raise EvalkitError("azure: judges need --judge-url (the Azure OpenAI endpoint)")
        options.setdefault("azure_api_version", os.environ.get("OPENAI_API_VERSION", "2024-10-21"))
    return OpenAIJudge(target, base_url=url, **options)


ENGINE_BACKENDS = ("vllm", "sglang")
CREDENTIAL_OPTIONS = ("api_key", "api-key", "apikey", "key", "token", "password", "secret")


def option_names(backend: str) -> list[str]:
    """The keyword options a backend accepts (from its constructor), for did-you-mean errors."""
    import inspect

    if backend == "openai" or backend == "azure":
        from evalkit.judges.openai_http import OpenAIJudge

        functions = [OpenAIJudge.__init__]
    elif backend in ENGINE_BACKENDS:  # evalkit.judges.engine imports no engine package
        from evalkit.judges import engine

        load = engine.load_vllm_judge if backend == "vllm" else engine.load_sglang_judge
        functions = [load, engine.EngineJudge.__init__]
    else:
        from evalkit.judges.hf import HFJudge

        functions = [HFJudge.from_pretrained, HFJudge.__init__]
    names: set[str] = set()
    skip = () if backend in ("openai", "azure") else ("snapshot",)  # hf: read from the weights
    for function in functions:
        for param in inspect.signature(function).parameters.values():
            if param.kind is param.KEYWORD_ONLY and param.name not in ("cache", "name", *skip):
                names.add(param.name)
    if backend == "azure":
        names.add("azure_api_version")
    return sorted(names)


def check_spec(spec: str, options: dict[str, Any]) -> None:
    """Check a judge spec's backend and options without loading anything."""
    from evalkit.errors import did_you_mean

    backend = spec.partition(":")[0].strip().lower()
    if backend not in BACKENDS:
        raise did_you_mean("judge backend", backend, list(BACKENDS))
    check_options(backend, options)


def check_options(backend: str, options: dict[str, Any]) -> None:
    """Refuse a credential given as an option (it would end up in shell history and run.json) and any
    option the backend does not know, with the closest known name."""
    from evalkit.errors import EvalkitError, did_you_mean

    for name in options:
        if name.lower().replace("-", "_") in CREDENTIAL_OPTIONS or "api_key" in name.lower().replace(
            "-", "_"
        ):
            if name == "api_key_env":
                continue
            raise EvalkitError(
                f"judge option '{name}' would put a credential on the command line and in run.json; "
                "export it as $OPENAI_API_KEY (or name the variable with --judge-option api_key_env=NAME)"
            )
    known = option_names(backend)
    for name in options:
        if name not in known:
            raise did_you_mean(f"{backend} judge option", name, known)


def check_judge(
    spec: str, *, url: str | None = None, allow_download: bool = False, timeout: float = 5.0
) -> None:
    """Everything about a judge spec that can be checked before any model loads or image is made: the
    backend name, an hf: judge's weights on disk, an HTTP judge's server accepting a connection.
    Raises EvalkitError (one line, with the fix)."""
    from evalkit.errors import EvalkitError, did_you_mean

    backend, _, target = spec.partition(":")
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise did_you_mean("judge backend", backend, list(BACKENDS))
    if backend == "tiny":
        return
    if not target:
        raise EvalkitError(f"judge spec '{spec}' needs a model after '{backend}:' ({BACKENDS[backend]})")
    if backend == "hf":
        if url is not None:
            raise EvalkitError("--judge-url is for openai:/azure: judges; hf: judges run locally")
        if not allow_download:
            from evalkit.checkpoints import resolve_hub

            resolve_hub(target, what="judge")
        return
    if backend in ENGINE_BACKENDS:
        from evalkit.judges.engine import require_engine

        if url is not None:
            raise EvalkitError(
                f"--judge-url is for openai:/azure: judges; {backend}: judges run in this process"
            )
        require_engine(backend)
        if not allow_download:
            from evalkit.checkpoints import resolve_hub

            resolve_hub(target, what="judge")
        return
    if backend == "azure" and url is None:
        raise EvalkitError("azure: judges need --judge-url (the Azure OpenAI endpoint)")
    check_reachable(url or "https://api.openai.com/v1", timeout=timeout, what=f"judge server for '{spec}'")


def check_reachable(url: str, *, timeout: float = 5.0, what: str = "server") -> None:
    """One TCP connect to the URL's host and port (no request, no credentials sent)."""
    import socket
    from urllib.parse import urlsplit

    from evalkit.errors import EvalkitError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EvalkitError(f"{what}: '{url}' is not an http(s) URL (e.g. http://localhost:8000/v1)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise EvalkitError(
            f"{what}: cannot connect to {parts.hostname}:{port} ({reason}); start the server or fix --judge-url"
        ) from None
