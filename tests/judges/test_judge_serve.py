"""`evalkit judge serve`: the server command line per backend, and the whole lifecycle (readiness wait,
printed flags that work, clean stop on SIGINT, a server dying while it starts) against the project's own
OpenAI-compatible server standing in for vLLM/SGLang ($EVALKIT_JUDGE_SERVE_COMMAND, tests only)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from first_hour_helpers import free_port

from evalkit.judges.serve import COMMAND_ENV, MAX_LOGPROBS, ServeSpec, server_command

PY = sys.executable


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(
    ("backend", "gpus", "data_parallel", "program", "parallel_flag", "size", "visible"),
    [
        ("vllm", None, False, ["vllm", "serve"], "--tensor-parallel-size", "1", None),
        ("vllm", "0,1,2,3", False, ["vllm", "serve"], "--tensor-parallel-size", "4", "0,1,2,3"),
        ("vllm", "4, 5", True, ["vllm", "serve"], "--data-parallel-size", "2", "4,5"),
        ("sglang", None, False, ["-m", "sglang.launch_server"], "--tp-size", "1", None),
        ("sglang", "2,3", False, ["-m", "sglang.launch_server"], "--tp-size", "2", "2,3"),
        (
            "sglang",
            "0,1,2,3,4,5,6,7",
            True,
            ["-m", "sglang.launch_server"],
            "--dp-size",
            "8",
            "0,1,2,3,4,5,6,7",
        ),
    ],
)
def test_server_command_line_per_backend(backend, gpus, data_parallel, program, parallel_flag, size, visible):
    spec = ServeSpec(
        backend=backend,
        model_path="/models/qwen2.5-vl-7b",
        served_name="Qwen/Qwen2.5-VL-7B-Instruct",
        host="0.0.0.0",
        port=8123,
        gpus=gpus,
        data_parallel=data_parallel,
        extra_args=("--max-model-len", "8192"),
    )
    argv, env = server_command(spec)
    if backend == "vllm":
        assert Path(argv[0]).name == program[0] and argv[1] == program[1] and argv[2] == spec.model_path
        assert "--enable-prefix-caching" in argv and _after(argv, "--max-logprobs") == str(MAX_LOGPROBS)
        assert _after(argv, "--seed") == "0"
    else:
        assert argv[0] == PY and argv[1:3] == program and _after(argv, "--model-path") == spec.model_path
        assert "--disable-radix-cache" not in argv  # SGLang's prefix cache stays on
        assert _after(argv, "--random-seed") == "0"
    assert _after(argv, "--served-model-name") == spec.served_name
    assert (_after(argv, "--host"), _after(argv, "--port")) == ("0.0.0.0", "8123")
    assert _after(argv, parallel_flag) == size
    assert argv[-2:] == ["--max-model-len", "8192"]
    assert env == ({"CUDA_VISIBLE_DEVICES": visible} if visible else {})


def test_missing_server_package_is_one_line_exit_2(cli, monkeypatch) -> None:
    monkeypatch.delenv(COMMAND_ENV, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("vllm", "sglang") else real(name, *a)
    )
    for backend in ("vllm", "sglang"):
        code, out, err = cli("judge", "serve", "--backend", backend, "Qwen/Qwen2.5-VL-7B-Instruct")
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and f"pip install {backend}" in err and "--judge openai:" in err
    code, _, err = cli("judge", "serve", "--backend", "vlm", "x/y")
    assert code == 2 and "did you mean 'vllm'" in err


def _serve(tmp_path: Path, command: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, COMMAND_ENV: command}
    argv = [PY, "-m", "evalkit.cli", "judge", "serve", "--backend", "vllm", str(tmp_path), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_serve_waits_prints_working_flags_and_stops_on_sigint(tmp_path) -> None:
    from PIL import Image

    from evalkit.judges import YesNoAnswer, load_judge

    port = free_port()
    stand_in = f"{shlex.quote(PY)} -m evalkit.judges.server --judge tiny --host {{host}} --port {{port}} --model-name {{served_name}}"
    log = tmp_path / "server.log"
    process = _serve(
        tmp_path,
        stand_in,
        "--port",
        str(port),
        "--served-name",
        "judge-7b",
        "--log",
        str(log),
        "--timeout",
        "120",
    )
    lines = []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
        if line.startswith("use: "):
            break
    assert lines and lines[-1].startswith("use: "), (lines, process.stderr.read())  # type: ignore[union-attr]
    ready = next(line for line in lines if "server ready at" in line)
    server_pid = int(ready.split("(pid ")[1].rstrip(")"))
    flags = shlex.split(lines[-1].removeprefix("use: "))
    assert flags == ["--judge", "openai:judge-7b", "--judge-url", f"http://127.0.0.1:{port}/v1"]
    judge = load_judge(flags[1], url=flags[3], timeout=30.0, max_retries=0)  # exactly what was printed
    (answer,) = judge.answer_yes_no(Image.new("RGB", (32, 32), (200, 30, 30)), ["Is it red?"])
    assert isinstance(answer, YesNoAnswer) or "yes/no" in answer.reason  # the random model answered
    assert "serving judge-7b" in log.read_text()

    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped the vllm server" in out
    assert _closed(port)
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


@pytest.mark.slow
def test_server_dying_while_starting_is_one_line_with_its_log_tail(tmp_path) -> None:
    script = tmp_path / "dies.py"
    script.write_text(
        "import sys, time\nprint('loading weights', flush=True)\ntime.sleep(0.5)\n"
        "print('torch.OutOfMemoryError: CUDA out of memory', file=sys.stderr)\nsys.exit(3)\n"
    )
    started = time.monotonic()
    process = _serve(tmp_path, f"{shlex.quote(PY)} {shlex.quote(str(script))}", "--port", str(free_port()))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith(
        "error: the judge server exited with code 3 while starting"
    )
    assert "loading weights | torch.OutOfMemoryError: CUDA out of memory" in err
    assert "Traceback" not in err and time.monotonic() - started < 30


@pytest.mark.slow
def test_server_that_never_answers_is_stopped_after_the_timeout(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "silent.py"
    script.write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    process = _serve(
        tmp_path,
        f"{shlex.quote(PY)} {shlex.quote(str(script))}",
        "--port",
        str(free_port()),
        "--timeout",
        "2",
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and err.count("\n") == 1 and "did not answer" in err and "--timeout" in err
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
