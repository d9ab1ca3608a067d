"""`evalkit judge serve`: a vLLM or SGLang server for a judge, and the flags that use it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.console import out

judge_app = typer.Typer(no_args_is_help=True, help="Judges: serve one for many evaluation processes.")


@judge_app.command("serve")
def judge_serve(
    model: Annotated[str, typer.Argument(help="hub id (org/name) or local folder of the judge's weights")],
    backend: Annotated[str, typer.Option(help="vllm or sglang")] = "vllm",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    host: Annotated[
        str,
        typer.Option(help="interface to listen on; 0.0.0.0 serves other nodes (URL uses this host's name)"),
    ] = "127.0.0.1",
    gpus: Annotated[
        str | None,
        typer.Option(
            help="GPU ids as in CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default: one GPU, the first visible)"
        ),
    ] = None,
    data_parallel: Annotated[
        bool, typer.Option(help="one model replica per GPU instead of one replica sharded over them")
    ] = False,
    served_name: Annotated[
        str | None, typer.Option(help="the model name clients send (default: MODEL as given)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the server to load the model")] = 1800.0,
    log: Annotated[
        Path | None, typer.Option(help="the server's log file (default: in the temp folder)")
    ] = None,
    allow_download: Annotated[
        bool, typer.Option(help="fetch missing weights from the Hugging Face hub first")
    ] = False,
    server_arg: Annotated[
        list[str] | None, typer.Option("--server-arg", help="extra argument for the server, repeatable")
    ] = None,
) -> None:
    """Start a vLLM or SGLang OpenAI-compatible server (prefix caching, log-probs), wait until it answers,
    print its URL and the `--judge openai:... --judge-url ...` flags; Ctrl-C stops it."""
    from evalkit.judges import serve as serving

    if backend not in serving.BACKENDS:
        from evalkit.errors import did_you_mean

        raise did_you_mean("server backend", backend, list(serving.BACKENDS))
    serving.require_server_package(backend)
    from evalkit.checkpoints import resolve_hub

    path = resolve_hub(model, allow_download=allow_download, what="judge")
    spec = serving.ServeSpec(
        backend=backend,
        model_path=str(path),
        served_name=served_name or model,
        host=host,
        port=port,
        gpus=gpus,
        data_parallel=data_parallel,
        extra_args=tuple(server_arg or ()),
    )
    code = serving.serve(spec, timeout=timeout, log_path=log, say=_say)
    raise typer.Exit(code)


def _say(line: str) -> None:
    import sys

    out.print(line, markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()  # a wrapper script reading the URL must see it while the server runs
