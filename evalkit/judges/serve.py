"""`evalkit judge serve`: start a vLLM or SGLang OpenAI-compatible server for a judge and say how to use it.

Many evaluation processes (torchrun ranks, several runs, several nodes) share one judge through a server;
the engines batch their concurrent requests and reuse cached prefixes (the image comes first in every
evalkit judge request). This module builds the server's command line, starts it in its own process
group with its output in a log file, waits until `/v1/models` lists the served model, and stops the whole
group cleanly (SIGINT, then SIGTERM, then SIGKILL) when evalkit is interrupted. A server that dies while
starting is one line with the end of its log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError

BACKENDS = ("vllm", "sglang")
# Tests only: a stand-in server command, formatted with {host}, {port}, {served_name} and {model_path}.
COMMAND_ENV = "EVALKIT_JUDGE_SERVE_COMMAND"
MAX_LOGPROBS = 20  # evalkit's HTTP judge asks for the top 20 by default; AlphaGRPO for the top 5


@dataclass(frozen=True)
class ServeSpec:
    """What to serve and where. `gpus` are device ids as in CUDA_VISIBLE_DEVICES ("0,1,2,3")."""

    backend: str
    model_path: str
    served_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    gpus: str | None = None
    data_parallel: bool = False
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpu_count(self) -> int:
        return len([g for g in (self.gpus or "").split(",") if g.strip()]) or 1


def server_command(spec: ServeSpec) -> tuple[list[str], dict[str, str]]:
    """The server's argv and the environment variables it needs on top of ours.

    Both engines get prefix caching (vLLM's flag; SGLang's radix cache is on unless disabled), log-probs up
    to `MAX_LOGPROBS`, the served name evalkit's `--judge openai:NAME` sends, a fixed seed, and one engine
    replica sharded over the GPUs (tensor parallel) or, with `data_parallel`, one replica per GPU.
    """
    if spec.backend not in BACKENDS:
        from evalkit.errors import did_you_mean

        raise did_you_mean("server backend", spec.backend, list(BACKENDS))
    n = str(spec.gpu_count)
    served_at = ["--served-model-name", spec.served_name, "--host", spec.host, "--port", str(spec.port)]
    if spec.backend == "vllm":
        parallel = ["--data-parallel-size", n] if spec.data_parallel else ["--tensor-parallel-size", n]
        argv = [
            _vllm_executable(),
            "serve",
            spec.model_path,
            *served_at,
            "--enable-prefix-caching",
            "--max-logprobs",
            str(MAX_LOGPROBS),
            "--seed",
            "0",
            *parallel,
        ]
    else:
        parallel = ["--dp-size", n] if spec.data_parallel else ["--tp-size", n]
        argv = [
            sys.executable,
            "-m",
            "sglang.launch_server",
            "--model-path",
            spec.model_path,
            *served_at,
            "--random-seed",
            "0",
            *parallel,
        ]
    env = {"CUDA_VISIBLE_DEVICES": ",".join(g.strip() for g in spec.gpus.split(","))} if spec.gpus else {}
    return [*argv, *spec.extra_args], env


def _vllm_executable() -> str:
    """The `vllm` script of this Python's environment (evalkit may run without the venv activated)."""
    beside = Path(sys.executable).with_name("vllm")
    return str(beside) if beside.exists() else "vllm"


def override_command(spec: ServeSpec) -> list[str] | None:
    """The test-only stand-in command from $EVALKIT_JUDGE_SERVE_COMMAND, if set."""
    template = os.environ.get(COMMAND_ENV)
    if not template:
        return None
    values = {
        "host": spec.host,
        "port": spec.port,
        "served_name": spec.served_name,
        "model_path": spec.model_path,
    }
    return [part.format(**values) for part in shlex.split(template)]


def require_server_package(backend: str) -> None:
    """Refuse a backend whose package is not installed, before anything starts (the test-only stand-in
    command needs none)."""
    if os.environ.get(COMMAND_ENV):
        return
    if importlib.util.find_spec(backend) is None:
        raise EvalkitError(
            f"--backend {backend} needs the {backend} package, which is not installed here: `pip install "
            f"{backend}` (on the GPU machine that will serve the judge), or use an OpenAI-compatible server "
            "that is already running with --judge openai:MODEL --judge-url URL"
        )


def public_host(host: str) -> str:
    """The host name clients should use: this machine's name when the server listens on all interfaces."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def evalkit_flags(served_name: str, url: str) -> str:
    return f"--judge openai:{served_name} --judge-url {url}"


class ServerProcess:
    """One server process in its own process group, its output in `log_path`."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.argv = argv
        self.env = env
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                    start_new_session=True,  # Ctrl-C reaches evalkit only; evalkit stops the group
                )
            except OSError as error:
                raise EvalkitError(f"cannot start `{self.argv[0]}`: {error.strerror or error}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def tail(self, lines: int = 6, width: int = 600) -> str:
        """The last non-empty lines of the log, joined into one line."""
        try:
            text = self.log_path.read_bytes()[-65536:].decode("utf-8", "replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        joined = " | ".join(kept)
        return joined if len(joined) <= width else "..." + joined[-width:]

    def wait_ready(self, base_url: str, served_name: str, timeout: float, poll: float = 0.5) -> None:
        """Until GET {base_url}/models lists `served_name`. Raises EvalkitError when the process exits first
        (with the end of its log) or the time runs out (the server is stopped)."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.exit_code()
            if code is not None:
                raise EvalkitError(
                    f"the judge server exited with code {code} while starting; end of {self.log_path}: "
                    f"{self.tail() or '(empty log)'}"
                )
            if _lists_model(base_url, served_name):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise EvalkitError(
                    f"the judge server did not answer {base_url}/models within {timeout:g}s and was stopped; "
                    f"raise --timeout for a large model, or see {self.log_path}: {self.tail(3)}"
                )
            time.sleep(poll)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGINT to the group (what Ctrl-C would send), then SIGTERM, then SIGKILL; the exit code."""
        if self.process is None:
            return None
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace / 2), (signal.SIGKILL, grace / 2)):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers the server left behind, if any
        return self.process.poll()


def _lists_model(base_url: str, served_name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as response:
            if response.status != 200:
                return False
            models = json.loads(response.read() or b"{}").get("data") or []
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return any(isinstance(m, dict) and m.get("id") == served_name for m in models)


def serve(
    spec: ServeSpec,
    *,
    timeout: float = 1800.0,
    log_path: Path | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Start the server, wait until it serves, report the URL and evalkit flags, and serve until
    interrupted (Ctrl-C or SIGTERM), then stop it. Returns 0 after a clean stop; raises EvalkitError when
    the server cannot start or dies while serving."""
    require_server_package(spec.backend)
    argv = override_command(spec)
    env: dict[str, str] = {}
    if argv is None:
        argv, env = server_command(spec)
    if log_path is None:
        log_path = Path(tempfile.gettempdir()) / f"evalkit-judge-serve-{spec.backend}-{spec.port}.log"
    server = ServerProcess(argv, env, log_path)
    local_url = f"http://{'127.0.0.1' if spec.host in ('0.0.0.0', '::', '') else spec.host}:{spec.port}/v1"
    url = f"http://{public_host(spec.host)}:{spec.port}/v1"
    say(f"starting the {spec.backend} server for {spec.served_name} (log: {log_path})")
    try:
        server.start()
        server.wait_ready(local_url, spec.served_name, timeout)
        say(f"{spec.backend} server ready at {url} (pid {server.pid})")
        say(f"use: {evalkit_flags(spec.served_name, url)}")
        say("Ctrl-C stops the server")
        code = server.process.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        server.stop()
        say(f"stopped the {spec.backend} server")
        return 0
    except BaseException:
        server.stop()
        raise
    raise EvalkitError(
        f"the judge server exited with code {code} while serving; end of {log_path}: {server.tail()}"
    )
