"""A fault-injecting HTTP proxy for OpenAI-compatible judges: reliability tests and `bench/reliability.py`.

It sits between evalkit and any chat-completions server and, for a seeded random share of requests
(`rate`), answers itself with a fault instead of forwarding: HTTP 500/503, a hang (no reply until the
client gives up), a body that is not JSON, a completion without choices, or one with empty content.
Everything else is forwarded unchanged. `injected` counts the faults by kind, `forwarded` the rest.

    proxy = FaultProxy(server.url, rate=0.3, seed=0).start()   # then point the judge at proxy.url
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from evalkit.judges.background import BackgroundHTTPServer

FAULTS = ("500", "503", "hang", "garbage", "no_choices", "empty")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def proxy(self) -> FaultProxy:
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._forward(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        fault = self.proxy.draw()
        if fault is None:
            self._forward(body)
        elif fault == "hang":
            self.proxy.closing.wait(self.proxy.hang_s)
            self.close_connection = True
        elif fault in ("500", "503"):
            error = {"error": {"message": f"injected {fault}", "type": "server_error", "code": int(fault)}}
            self._send(int(fault), json.dumps(error).encode())
        elif fault == "garbage":
            self._send(200, b"\x00<html>not json")
        else:
            self._send(200, json.dumps(_completion(body, fault)).encode())

    def _forward(self, body: bytes) -> None:
        parts = urlsplit(self.proxy.upstream)
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=self.proxy.upstream_timeout
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError:
            self._send(502, b'{"error": {"message": "upstream unreachable", "code": 502}}')
            return
        finally:
            connection.close()
        self.proxy.count("forwarded")
        self._send(response.status, data, response.getheader("content-type") or "application/json")

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _completion(body: bytes, fault: str) -> dict[str, Any]:
    """A syntactically valid chat completion that carries no answer."""
    try:
        model = json.loads(body).get("model", "unknown")
    except (ValueError, AttributeError):
        model = "unknown"
    choice = {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
    choices = [] if fault == "no_choices" else [choice]
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": choices,
    }


class FaultProxy(BackgroundHTTPServer):
    """Forward to `upstream` (an OpenAI base URL); inject a fault into a `rate` share of POSTs."""

    thread_name = "fault-proxy"

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.3,
        kinds: tuple[str, ...] = FAULTS,
        seed: int = 0,
        hang_s: float = 2.0,
        upstream_timeout: float = 120.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        unknown = set(kinds) - set(FAULTS)
        if unknown or not 0.0 <= rate <= 1.0:
            raise ValueError(f"faults must be among {FAULTS} and 0 <= rate <= 1")
        self.upstream = upstream.rstrip("/")
        self.rate, self.kinds, self.hang_s = rate, tuple(kinds), hang_s
        self.upstream_timeout = upstream_timeout
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        super().__init__(_ProxyHandler, host, port)

    @property
    def url(self) -> str:
        """The proxy's base URL, with the upstream's path (e.g. http://127.0.0.1:PORT/v1)."""
        return f"{self.origin}{urlsplit(self.upstream).path}"

    def draw(self) -> str | None:
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            return kind

    def count(self, what: str) -> None:
        with self._lock:
            self.forwarded += what == "forwarded"
