"""An HTTP server that answers from a daemon thread: the lifecycle the local judge server and the fault
proxy share (start, close, `with`), so that tests and benchmarks run both inside their own process."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class BackgroundHTTPServer:
    """Listens on host:port (port 0 picks a free one) from construction; `start()` answers from a daemon
    thread. `close()` sets `closing` first, so handlers waiting on it (a hang, added latency) return at
    once, then stops the server and joins the thread. Handlers reach this object as `self.server.owner`."""

    thread_name = "http-server"

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str, port: int):
        self.closing = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        """http://HOST:PORT with the port actually bound."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
