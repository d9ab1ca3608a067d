"""A minimal W3C WebDriver client for headless Chromium through chromedriver, on the standard library only.

Enough for the viewer's browser test: open a file:// page, run a script, click, type, read the console
log and take a screenshot. chromedriver listens on a free local port; nothing leaves the machine.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def find_browser() -> tuple[str, str] | None:
    """(browser binary, chromedriver) when both are installed, else None."""
    driver = shutil.which("chromedriver")
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chromium:
    """One headless browser session; use as a context manager."""

    def __init__(self, browser: str, driver: str, width: int = 1400, height: int = 1000):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"]  # fmt: skip
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        try:
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})[
                "sessionId"
            ]
        except BaseException:
            self._stop_driver()
            raise

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/status", timeout=2) as r:
                    if json.load(r)["value"].get("ready"):
                        return
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                time.sleep(0.1)
        raise RuntimeError("chromedriver did not start")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                payload = json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read().decode(errors='replace')}") from None
        return payload.get("value")

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run `script` as a function body in the page; `return` gives its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self._call("POST", self._s("/element"), {"using": "css selector", "value": css})
        return found[ELEMENT]

    def click(self, css: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/click"))

    def type(self, css: str, text: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/value"), {"text": text})

    def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (level, message)."""
        return self._call("POST", self._s("/se/log"), {"type": "browser"})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", self._s("/screenshot"))))
        return path

    def close(self) -> None:
        try:
            self._call("DELETE", self._s(""))
        finally:
            self._stop_driver()

    def _stop_driver(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
