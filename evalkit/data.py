"""Benchmark data: protocol manifests, checksummed files, and `evalkit data fetch`."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import DataError, EvalkitError, did_you_mean
from evalkit.paths import PROTOCOL_DIR
from evalkit.runs import atomic_write_bytes


def manifests() -> dict[str, dict[str, Any]]:
    """Every benchmark manifest (benchmarks/*.yaml), by benchmark name."""
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(PROTOCOL_DIR.glob("*.yaml"))}


def manifest(benchmark: str) -> dict[str, Any]:
    """The YAML manifest of a benchmark: its files (url + sha256) and protocols."""
    path = PROTOCOL_DIR / f"{benchmark}.yaml"
    if not path.exists():
        known = [p.stem for p in PROTOCOL_DIR.glob("*.yaml")]
        raise did_you_mean("benchmark", benchmark, known)
    return yaml.safe_load(path.read_text())


def protocol(protocol_id: str) -> dict[str, Any]:
    """Look up `geneval@long` -> its manifest entry (plus the benchmark name and the manifest's files)."""
    benchmark = protocol_id.split("@", 1)[0]
    spec = manifest(benchmark)
    protocols = spec["protocols"]
    if protocol_id not in protocols:
        raise did_you_mean(f"{benchmark} protocol", protocol_id, list(protocols))
    return {"id": protocol_id, "benchmark": benchmark, **protocols[protocol_id]}


def read_json_lines(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; invalid JSON is a DataError naming file:line."""
    rows = []
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
    return rows


def read_text_file(path: Path) -> str:
    """A UTF-8 text file; a directory, an unreadable file or other bytes are one DataError with the fix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a file; pass the file itself") from None
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte {e.start}); re-save the file as UTF-8"
        ) from None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require_file(data_dir: Path, relpath: str, benchmark: str) -> Path:
    """A data file that must exist; the error says how to get it."""
    path = Path(data_dir) / relpath
    if not path.exists():
        raise DataError(
            f"missing {path}; run `evalkit data fetch {benchmark}` or point --data-dir/EVALKIT_DATA at a copy"
        )
    return path


def git_blob_of(body: bytes) -> str:
    """The id git gives a file's content (for files whose upstream publishes only that)."""
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


def _matches(entry: dict[str, Any], body: bytes) -> bool:
    if entry.get("sha256"):
        return hashlib.sha256(body).hexdigest() == entry["sha256"]
    if entry.get("git_blob"):
        return git_blob_of(body) == entry["git_blob"]
    return True


def verify(data_dir: Path, benchmark: str) -> dict[str, str]:
    """Check every manifest file under data_dir: 'ok', 'missing' or 'checksum mismatch'."""
    status = {}
    for rel, entry in manifest(benchmark).get("files", {}).items():
        path = Path(data_dir) / rel
        if not path.exists():
            status[rel] = "missing"
        elif not _matches(entry, path.read_bytes()):
            status[rel] = "checksum mismatch"
        else:
            status[rel] = "ok"
    return status


def fetch(benchmark: str, data_dir: Path, *, timeout: float = 60.0) -> list[Path]:
    """Download the benchmark's files at their pinned revisions; verify each checksum before keeping it."""
    spec = manifest(benchmark)
    files = spec.get("files", {})
    if not files:
        raise EvalkitError(f"{benchmark}: {spec.get('fetch_note', 'no downloadable files in its manifest')}")
    written = []
    for rel, entry in files.items():
        path = Path(data_dir) / rel
        if not entry.get("url") or (path.exists() and _matches(entry, path.read_bytes())):
            continue
        try:
            with urllib.request.urlopen(entry["url"], timeout=timeout) as resp:
                body = resp.read()
        except OSError as e:
            raise DataError(f"could not download {entry['url']}: {e}") from None
        if not _matches(entry, body):
            raise DataError(f"checksum mismatch for {entry['url']}; the file was not kept")
        atomic_write_bytes(path, body)
        written.append(path)
    return written


def not_fetchable(benchmark: str, data_dir: Path) -> list[str]:
    """Manifest files evalkit cannot download (extracted from code upstream) that are still missing."""
    return [
        f"{rel} (from {entry['extracted_from']})"
        for rel, entry in manifest(benchmark).get("files", {}).items()
        if not entry.get("url") and not (Path(data_dir) / rel).exists()
    ]
