"""A small OpenAI-compatible chat-completions server backed by a local HFJudge (stdlib only).

It lets the HTTP judge path be tested offline against a real model with real log-probs, and lets users
share one loaded judge between processes. Endpoints: POST /v1/chat/completions (logprobs/top_logprobs,
temperature, top_p, seed, max_tokens), GET /v1/models, GET /health. It is not a production server: one
request runs the model at a time. `server.faults` injects failures for tests (timeouts, 500, 429, garbage);
`latency` adds a fixed wait to every answer (a real server's time per request, spent concurrently) and
`max_concurrent` answers 429 to requests beyond that many in flight, as a rate-limited endpoint does.

    python -m evalkit.judges.server --judge tiny --port 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from evalkit.judges.background import BackgroundHTTPServer
from evalkit.judges.messages import from_openai

logger = logging.getLogger(__name__)

FAULT_KINDS = {
    "timeout": "wait `fault_delay` seconds, then close the connection without a reply",
    "drop": "close the connection at once (a connection error)",
    "500": "HTTP 500 with an OpenAI-style error body",
    "503": "HTTP 503",
    "429": "HTTP 429 with Retry-After: 0",
    "garbage": "HTTP 200 whose body is not JSON",
    "bad_json": "HTTP 200 with JSON that is not a chat completion",
    "refusal": "a completion whose message is a refusal",
    "nonsense": "a completion saying something that is neither yes nor no, without logprobs",
    "no_logprobs": "the real completion with its logprobs removed",
    "text_yes": "a completion answering 'Yes.' without logprobs (a server without logprob support)",
    "empty": "a completion with empty content",
    "no_choices": "HTTP 200 with a chat completion whose `choices` list is empty",
}


class FaultInjector:
    """A queue of faults: each request takes the next one, if any (thread-safe)."""

    def __init__(self):
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self.served: list[str] = []

    def add(self, kind: str, times: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._queue.extend([kind] * times)

    def take(self) -> str | None:
        with self._lock:
            if not self._queue:
                return None
            kind = self._queue.popleft()
            self.served.append(kind)
            return kind

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class _Handler(BaseHTTPRequestHandler):
    server_version = "evalkit-judge-server/1"
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> JudgeServer:
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    @property
    def route(self) -> str:
        """The request path without its query string (servers route on the path alone)."""
        return urlsplit(self.path).path

    def do_GET(self) -> None:
        if self.route in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        elif self.route == "/v1/models":
            model = {"id": self.app.model_name, "object": "model", "owned_by": "evalkit"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.route != "/v1/chat/completions":
            self._send_error(404, f"no route {self.path}")
            return
        if self.app.api_key is not None and self.headers.get("authorization") != f"Bearer {self.app.api_key}":
            self._send_error(401, "invalid API key", kind="invalid_request_error")
            return
        self.app.count_request()
        fault = self.app.faults.take()
        if fault in ("timeout", "drop"):
            if fault == "timeout":
                self.app.closing.wait(self.app.fault_delay)
            self.close_connection = True
            return
        if fault in ("500", "503", "429"):
            headers = {"Retry-After": "0"} if fault == "429" else {}
            self._send_error(int(fault), f"injected HTTP {fault}", kind="server_error", headers=headers)
            return
        if fault == "garbage":
            self._send_raw(200, b"<html>this is not json", "application/json")
            return
        if fault == "bad_json":
            self._send_json(200, {"unexpected": True})
            return
        if fault == "no_choices":
            self._send_json(
                200, {"id": "x", "object": "chat.completion", "model": self.app.model_name, "choices": []}
            )
            return
        if not self.app.admit():
            headers = {"Retry-After": self.app.retry_after}
            self._send_error(429, "server busy: too many concurrent requests", kind="rate_limit_error",
                             headers=headers)  # fmt: skip
            return
        try:
            self._answer(body, fault)
        finally:
            self.app.leave()

    def _answer(self, body: bytes, fault: str | None) -> None:
        if self.app.latency > 0:
            self.app.closing.wait(self.app.latency)
        try:
            request = json.loads(body)
            reply = self.app.complete(request, fault)
        except _BadRequest as error:
            self._send_error(error.status, str(error), kind="invalid_request_error")
            return
        except (ValueError, KeyError, TypeError) as error:
            self._send_error(400, f"bad request: {error}", kind="invalid_request_error")
            return
        except Exception as error:  # the model failed; tell the client like a real server would
            logger.exception("judge server: model error")
            self._send_error(500, f"model error: {type(error).__name__}", kind="server_error")
            return
        self._send_json(200, reply)

    def _send_error(
        self, status: int, message: str, kind: str = "error", headers: dict | None = None
    ) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class JudgeServer(BackgroundHTTPServer):
    """Serve one HFJudge on host:port (port 0 picks a free port) in a background thread."""

    thread_name = "judge-server"

    def __init__(
        self,
        judge,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str | None = None,
        max_logprobs: int = 20,
        fault_delay: float = 2.0,
        api_key: str | None = None,
        latency: float = 0.0,
        max_concurrent: int | None = None,
        retry_after: str = "0",
    ):
        self.judge = judge
        self.model_name = model_name or judge.name
        self.max_logprobs = max_logprobs
        self.fault_delay = fault_delay
        self.api_key = api_key
        self.faults = FaultInjector()
        self.latency = latency
        self.max_concurrent = max_concurrent
        self.retry_after = retry_after  # the Retry-After of a busy 429
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rejected = 0
        self.concurrency_trace: list[int] = []  # in flight at each admitted request
        self._count_lock = threading.Lock()
        super().__init__(_Handler, host, port)

    @property
    def url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:8000/v1."""
        return f"{self.origin}/v1"

    def count_request(self) -> None:
        with self._count_lock:
            self.requests += 1

    def admit(self) -> bool:
        """Take an answering slot; False (a busy 429) when `max_concurrent` requests are in flight."""
        with self._count_lock:
            if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
                self.rejected += 1
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.concurrency_trace.append(self.in_flight)
            return True

    def leave(self) -> None:
        with self._count_lock:
            self.in_flight -= 1

    def complete(self, request: dict[str, Any], fault: str | None = None) -> dict[str, Any]:
        """A chat.completion object for one request (fault: refusal / nonsense / no_logprobs / empty)."""
        if request.get("model") != self.model_name:
            raise _BadRequest(404, f"model {request.get('model')!r} is not served here ({self.model_name!r})")
        if request.get("stream"):
            raise _BadRequest(400, "streaming is not supported")
        if int(request.get("n") or 1) != 1:
            raise _BadRequest(400, "only n=1 is supported")
        want_logprobs = bool(request.get("logprobs"))
        top_logprobs = int(request.get("top_logprobs") or 0) if want_logprobs else 0
        if top_logprobs > self.max_logprobs:
            raise _BadRequest(
                400, f"top_logprobs {top_logprobs} exceeds this server's max {self.max_logprobs}"
            )
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or 256
        temperature = request.get("temperature")
        messages = from_openai(request["messages"])
        generation = self.judge.generate(
            messages,
            max_tokens=int(max_tokens),
            temperature=float(1.0 if temperature is None else temperature),
            top_p=float(request.get("top_p") or 1.0),
            seed=int(request.get("seed") or 0),
            top_logprobs=top_logprobs,
        )
        message: dict[str, Any] = {"role": "assistant", "content": generation.text, "refusal": None}
        finish_reason = generation.finish_reason
        logprobs = None
        if want_logprobs:
            logprobs = {"content": [_token_entry(t.token, t.logprob, t.top) for t in generation.tokens]}
        if fault == "refusal":
            message.update(content=None, refusal="I'm sorry, I can't help with that.")
            logprobs = None
        elif fault == "nonsense":
            message["content"], logprobs = "Banana bread.", None
        elif fault == "no_logprobs":
            logprobs = None
        elif fault == "text_yes":
            message["content"], logprobs = "Yes.", None
        elif fault == "empty":
            message["content"], logprobs = "", None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": len(generation.tokens),
                "total_tokens": generation.prompt_tokens + len(generation.tokens),
            },
        }


def _token_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    return entry


def main(argv: list[str] | None = None) -> None:
    """Serve a judge until interrupted: `python -m evalkit.judges.server --judge hf:/path --port 8000`."""
    import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
    from evalkit.judges import load_judge

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="tiny", help="tiny or hf:<id-or-path>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", default=None, help="the name clients send as `model`")
    parser.add_argument("--max-logprobs", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--max-concurrent", type=int, default=None, help="answer 429 beyond this many")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    judge = load_judge(args.judge)
    if not hasattr(judge, "generate"):
        parser.error("only local judges (tiny, hf:...) can be served")
    server = JudgeServer(
        judge, host=args.host, port=args.port, model_name=args.model_name, max_logprobs=args.max_logprobs,
        latency=args.latency, max_concurrent=args.max_concurrent,
    )  # fmt: skip
    print(f"serving {server.model_name} at {server.url}", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
