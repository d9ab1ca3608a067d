"""Credentials never reach disk or output: every text evalkit writes passes through `redact`.

Secrets come from three places: the environment (variables named like *KEY*, *TOKEN*, *SECRET*,
*PASSWORD*), URLs (user info and query values, e.g. a judge URL `...?api-key=...`) and options. Code
that sees a secret registers it; `redact` then replaces every registered value, plus anything that looks
like a credential in a URL or an `Authorization: Bearer` header, with `***`. Run-folder writers
(`evalkit.runs`), the judge cache and error messages call it, so a server that echoes a key in an error
reply cannot put it into records.jsonl or summary.json.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
MIN_SECRET_LEN = 6  # shorter values ("EMPTY", "1") are not secrets and would mangle ordinary text
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s\"']+@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_-]*(?:key|token|secret|sig|signature|password|auth)[A-Za-z0-9_-]*)=)"
    r"[^&#\s\"']+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<name>Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)

_secrets: set[str] = set()
_lock = threading.Lock()
_env_seen = False


def register(value: str | None) -> None:
    """Remember a secret value (and its URL-decoded form) so that `redact` masks it everywhere."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
        return
    with _lock:
        _secrets.add(value)
        if unquote(value) != value and len(unquote(value)) >= MIN_SECRET_LEN:
            _secrets.add(unquote(value))


def register_url(url: str | None) -> None:
    """Register the password, user name and every query value of a URL."""
    if not url:
        return
    parts = urlsplit(url)
    register(parts.password)
    if parts.password:
        register(parts.username)
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        register(value)


def register_environment() -> None:
    """Register the values of environment variables whose names say they hold credentials."""
    global _env_seen
    for name, value in os.environ.items():
        if _SECRET_ENV.search(name):
            register(value)
    _env_seen = True


def redact(text: str) -> str:
    """`text` with every known secret and credential-shaped URL part replaced by `***`."""
    if not _env_seen:
        register_environment()
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['name']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['name']}{MASK}", text)


def redact_obj(obj: Any) -> Any:
    """A JSON-like object with every string redacted (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(str(k)) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps, then redaction of the text (cheaper than walking the object, same result)."""
    return redact(json.dumps(obj, **kwargs))


def _reset_for_tests() -> None:
    global _env_seen
    with _lock:
        _secrets.clear()
    _env_seen = False
