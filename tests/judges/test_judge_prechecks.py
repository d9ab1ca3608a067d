"""Judge specs are checked before work: backend name, hf: weights on disk, an HTTP server that accepts a
connection (issue 12)."""

from __future__ import annotations

import socket
import time

import pytest
from first_hour_helpers import free_port, one_line

from evalkit.errors import EvalkitError


def test_http_judge_reachability_is_checked_with_one_connect() -> None:
    from evalkit.judges import check_judge

    port = free_port()  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(EvalkitError, match=f"cannot connect to 127.0.0.1:{port}") as info:
        check_judge("openai:judge-model", url=f"http://127.0.0.1:{port}/v1")
    assert time.perf_counter() - started < 10
    one_line(info.value)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_judge("openai:judge-model", url=f"http://127.0.0.1:{server.getsockname()[1]}/v1")
    with pytest.raises(EvalkitError, match="did you mean 'openai'"):
        check_judge("opneai:judge-model")
    with pytest.raises(EvalkitError, match="azure: judges need --judge-url"):
        check_judge("azure:deployment")
