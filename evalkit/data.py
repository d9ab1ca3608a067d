"""Benchmark data: protocol manifests, checksummed files, and `evalkit data fetch`."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import DataError, did_you_mean
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


PACKAGE_DATA = Path(__file__).resolve().parent / "protocol_data"


def shipped_copy(rel: str) -> Path | None:
    """A manifest file evalkit ships as protocol data (evalkit/protocol_data/, see its SOURCE.md)."""
    path = PACKAGE_DATA / rel
    return path if path.is_file() else None


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url}: {str(reason).strip()[:200]}; check the network or --mirror"
        ) from None


def mirrored(url: str, rel: str, mirror: str | None) -> str:
    """The URL of a manifest file: its pinned upstream URL, or `mirror/<data-dir path>` for a copy laid out
    like the data folder (file:///path or http://host/...)."""
    return f"{mirror.rstrip('/')}/{rel}" if mirror else url


@dataclass
class FetchResult:
    downloaded: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)  # copied from evalkit's protocol data
    present: list[str] = field(default_factory=list)  # already in place with the right checksum
    exported: int = 0  # rows of a hub dataset written (GEdit-Bench)

    def line(self, benchmark: str, target: Path) -> str:
        parts = [f"{len(self.downloaded)} downloaded", f"{len(self.present)} already present"]
        if self.installed:
            parts.append(f"{len(self.installed)} judge-prompt/protocol file(s) installed")
        if self.exported:
            parts.append(f"{self.exported} dataset rows exported")
        return f"{benchmark}: {', '.join(parts)}; all files verified in {target}"


def fetch(benchmark: str, data_dir: Path, *, timeout: float = 60.0, mirror: str | None = None) -> FetchResult:
    """Put every file of the benchmark's manifest in place, each verified against its checksum: downloads
    at the pinned revisions (or from `mirror`), protocol data shipped with evalkit, and hub datasets via
    `datasets`. Anything still missing afterwards is an error, never a silent success."""
    spec = manifest(benchmark)
    result = FetchResult()
    for rel, entry in spec.get("files", {}).items():
        path = Path(data_dir) / rel
        if path.exists() and _matches(entry, path.read_bytes()):
            result.present.append(rel)
            continue
        shipped = shipped_copy(rel)
        if entry.get("url"):
            body = _download(mirrored(entry["url"], rel, mirror), timeout)
            source = entry["url"]
        elif shipped is not None:
            body, source = shipped.read_bytes(), f"evalkit protocol data ({entry.get('extracted_from', rel)})"
        else:
            continue
        if not _matches(entry, body):
            raise DataError(f"checksum mismatch for {rel} from {source}; the file was not kept")
        atomic_write_bytes(path, body)
        (result.downloaded if entry.get("url") else result.installed).append(rel)
    if spec.get("hub_dataset"):
        result.exported = fetch_hub_dataset(spec["hub_dataset"], Path(data_dir), mirror=mirror)
    missing = not_fetchable(benchmark, data_dir)
    if missing:
        raise DataError(
            f"{benchmark}: still missing after fetch: {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return result


def fetch_hub_dataset(entry: dict[str, Any], data_dir: Path, *, mirror: str | None = None) -> int:
    """Load a Hugging Face dataset (`datasets`) and export it with the benchmark's exporter into the data
    folder. With a file:// mirror the dataset is read from `<mirror>/<hub id>/` (parquet/json files)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"fetching {entry['id']} needs `datasets` (pip install 'evalkit[judge]')") from None
    source: str = entry["id"]
    if mirror:
        if not mirror.startswith("file://"):
            raise DataError(
                "hub datasets mirror only from a local folder (file://...); set HF_ENDPOINT for a hub mirror"
            )
        source = str(Path(mirror.removeprefix("file://")) / entry["id"])
        if not Path(source).is_dir():
            raise DataError(f"no copy of {entry['id']} under {source}")
    import importlib

    module, _, attr = entry["exporter"].partition(":")
    exporter = getattr(importlib.import_module(module), attr)
    try:
        rows = datasets.load_dataset(
            source, split=entry.get("split", "train"), revision=entry.get("revision")
        )
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo: all one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(f"could not load dataset {entry['id']}: {first}") from None
    dest = Path(data_dir) / entry["into"]
    count = int(exporter(rows, dest))
    _record_hub_source(entry, rows, dest, count, mirror)
    return count


def _record_hub_source(entry: dict[str, Any], rows: Any, dest: Path, count: int, mirror: str | None) -> None:
    """What was fetched, written beside the export: with an unpinned revision the dataset fingerprint and
    the checksum of the exported file are the only way to tell later whether two copies are the same."""
    check = dest / entry["check"]
    source = {
        "dataset": entry["id"],
        "split": entry.get("split", "train"),
        "revision": entry.get("revision"),
        "mirror": mirror,
        "fingerprint": getattr(rows, "_fingerprint", None),
        "rows": count,
        entry["check"]: {"sha256": hashlib.sha256(check.read_bytes()).hexdigest()},
    }
    atomic_write_bytes(dest / "SOURCE.json", (json.dumps(source, indent=2) + "\n").encode())


def not_fetchable(benchmark: str, data_dir: Path) -> list[str]:
    """Manifest files (and hub-dataset exports) that are still missing from the data folder."""
    spec = manifest(benchmark)
    missing = [
        f"{rel} (from {entry.get('extracted_from') or entry.get('url')})"
        for rel, entry in spec.get("files", {}).items()
        if not (Path(data_dir) / rel).exists()
    ]
    hub = spec.get("hub_dataset")
    if hub and not (Path(data_dir) / hub["into"] / hub["check"]).exists():
        missing.append(f"{hub['into']}/{hub['check']} (from the dataset {hub['id']})")
    return missing
