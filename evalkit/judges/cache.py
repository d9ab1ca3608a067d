"""A content-addressed SQLite cache of judge replies.

Changing a table must never re-judge, and a killed run must not pay twice for the replies it already got.
A reply is stored under sha256(schema version, backend, model, snapshot, prompt hash, image hashes,
decoding parameters), so any change to what the judge would see gives a new key. Only complete, parsed
replies are written; failures are never cached, so they are retried on the next run. The database runs
in WAL mode with a busy timeout, so several processes (shards of one run) can share one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from evalkit import redact

SCHEMA_VERSION = 1

_CREATE = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(**parts: Any) -> str:
    """sha256 over the canonical JSON of the key parts plus the cache schema version."""
    payload = json.dumps({"schema": SCHEMA_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class ReplyCache:
    """Judge replies by content key. Thread-safe (one connection per thread) and multi-process safe."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self.hits = 0
        self.misses = 0
        with self._connect() as connection:
            connection.execute(_CREATE)

    def _connect(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self._timeout_s, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply, or None. Counts hits and misses."""
        row = self._connect().execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        with self._lock:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store a complete, parsed reply (a JSON-serialisable dict)."""
        text = redact.dumps(value, sort_keys=True, ensure_ascii=False)
        connection = self._connect()
        with connection:  # one transaction; retried by SQLite's busy handler while another process writes
            connection.execute(
                "INSERT OR REPLACE INTO replies (key, value, created) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"ReplyCache({str(self.path)!r}, hits={self.hits}, misses={self.misses})"


def open_cache(cache: ReplyCache | str | os.PathLike | None) -> ReplyCache | None:
    """Accept a ReplyCache, a path, or None (no caching)."""
    if cache is None or isinstance(cache, ReplyCache):
        return cache
    return ReplyCache(cache)
