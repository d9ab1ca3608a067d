"""Helpers shared by the first-hour tests (issue 12): no network, one-line errors, free local ports."""

from __future__ import annotations

import socket


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
