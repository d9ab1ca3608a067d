"""Run folders: layout, atomic writes, append-only records, resume, provenance and sharding.

runs/<protocol id>/<model>-<config hash>/
    run.json                 config, versions, git sha, protocol id, seeds
    samples/<id>/<k>.png     images (+ <k>.json: think text, timing, seed)
    records.jsonl            one scored record per image (append-only)
    records.rank<r>.jsonl    per-rank records of a sharded run, until `merge_shards`
    records.rescore-<hash>[.rank<r>].jsonl   records a rescore stages (per rank under torchrun) until
                             `commit_rescore` makes them current
    summary.json             aggregated scores
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit import redact
from evalkit.errors import EvalkitError

logger = logging.getLogger(__name__)

RECORDS = "records.jsonl"
MAX_NAME = 100  # characters of a sample folder name; longer ids are cut and suffixed with their hash
_SAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
_SHARD_FILE = re.compile(r"records\.rank\d+\.jsonl")


def stable_hash(obj: Any, length: int = 8) -> str:
    """A short hash of a JSON-serialisable object that does not depend on key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def safe_name(sample_id: Any) -> str:
    """A file name for a sample id that stays inside its folder on every OS.

    Ids come from data files: "/etc", "../x", "a\\0b" or a 10 kB string must not become paths. Safe,
    short ids are used as they are (existing runs keep their layout); any other id keeps its safe
    characters, cut to `MAX_NAME`, plus a hash of the full id, so two ids never share a folder.
    """
    text = str(sample_id)
    cleaned = _SAFE.sub("_", text).lstrip(".") or "_"
    if cleaned == text and len(text) <= MAX_NAME:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned[: MAX_NAME - 13]}~{digest}"


def sample_fingerprint(sample: Any) -> str:
    """sha256 of what a sample feeds the model and scorer: id, prompt, metadata and input image bytes."""
    digest = hashlib.sha256()
    parts = {"id": str(sample.id), "prompt": sample.prompt, "metadata": sample.metadata}
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    if getattr(sample, "input_image", None) is not None:
        with open(sample.input_image, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(samples: list[Any]) -> str:
    """One hash over every sample's fingerprint: part of the run folder's name, so changed benchmark
    data never meets images or records made from the old data."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample_fingerprint(sample).encode())
    return digest.hexdigest()[:16]


def sample_seed(global_seed: int, benchmark: str, sample_id: str, k: int) -> int:
    """Per-image seed from (global seed, benchmark, sample id, k): independent of sharding and batch size."""
    digest = hashlib.sha256(f"{global_seed}|{benchmark}|{sample_id}|{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        """RANK/WORLD_SIZE as set by torchrun and accelerate launch."""
        values = {}
        for name, default in (("RANK", "0"), ("WORLD_SIZE", "1")):
            text = os.environ.get(name, default).strip() or default
            try:
                values[name] = int(text)
            except ValueError:
                raise EvalkitError(
                    f"${name}={text!r} is not an integer; unset it or set it as torchrun does"
                ) from None
        rank, world = values["RANK"], values["WORLD_SIZE"]
        if not 0 <= rank < world:
            raise EvalkitError(f"invalid shard RANK={rank} WORLD_SIZE={world}; need 0 <= RANK < WORLD_SIZE")
        return cls(rank, world)

    def select(self, items: list) -> list:
        return items[self.rank :: self.world_size]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON written atomically, with credentials redacted (see `evalkit.redact`)."""
    atomic_write_bytes(path, (redact.dumps(obj, indent=2, default=str) + "\n").encode())


def _torn_tail(data: bytes) -> int:
    """Where the complete lines of an append-only JSONL file end (len(data) when nothing is torn).

    A crash mid-append leaves a fragment without its newline, or (power loss on some file systems) a
    run of NUL bytes. A last line that is complete JSON but lacks only its newline is kept.
    """
    end = len(data.rstrip(b"\0"))
    cut = data.rfind(b"\n", 0, end) + 1
    tail = data[cut:end]
    if not tail.strip():
        return cut if end < len(data) or not tail else len(data)
    try:
        json.loads(tail)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return cut
    return end


def repair_tail(path: Path) -> int:
    """Cut a torn last line off an append-only file (and end a complete one with its newline), so
    the next append starts on a line of its own. Returns the number of bytes dropped."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return 0
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return 0  # every append ends with a newline: nothing torn (the fast path)
            f.seek(0)
            data = f.read()
    except FileNotFoundError:
        return 0
    keep = _torn_tail(data)
    dropped = len(data) - keep
    if dropped:
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        logger.warning("%s: dropped a torn last line (%d bytes) left by an interrupted write", path, dropped)
    if keep and not data[:keep].endswith(b"\n"):
        with open(path, "ab") as f:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
    return dropped


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line and fsync, so a killed process loses at most the line being written; a torn
    line left by an earlier crash is cut off first."""
    repair_tail(Path(path))
    line = redact.dumps(record, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read records. A torn last line (a crash mid-write) is skipped with a warning and will be redone;
    a bad line anywhere else is corruption and stops with the line number."""
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = _torn_tail(data)
    if keep < len(data.rstrip(b"\0")):
        logger.warning("%s: ignoring a torn last line (an interrupted write; it will be redone)", path)
    records = []
    for i, raw in enumerate(data[:keep].split(b"\n")):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvalkitError(
                f"{path}:{i + 1}: corrupt record ({getattr(e, 'msg', e)}); "
                f"delete that line (or the file, to score again) and re-run"
            ) from None
        if not isinstance(record, dict) or "id" not in record:
            raise EvalkitError(f"{path}:{i + 1}: not an evalkit record; delete that line and re-run")
        records.append(record)
    return records


def read_json_file(path: Path, what: str, fix: str | None = None) -> dict[str, Any]:
    """A JSON object from a file evalkit wrote; anything else is one error line with the fix."""
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = f"is not valid JSON ({getattr(e, 'msg', None) or e.reason})"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except OSError as e:
        problem = f"cannot be read ({e.strerror})"
    else:
        if isinstance(obj, dict):
            return obj
        problem = "is not a JSON object"
    hint = fix or "restore it from a backup or start a new run directory"
    raise EvalkitError(f"{path}: {what} {problem}; {hint}")


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    """Versions of everything that can change a number, without importing heavy packages."""
    from importlib import metadata

    import evalkit

    found: dict[str, str | None] = {"evalkit": evalkit.__version__, "python": platform.python_version()}
    for pkg in (
        "torch",
        "diffusers",
        "transformers",
        "accelerate",
        "peft",
        "mmdet",
        "mmcv-lite",
        "mmcv",
        "openai",
    ):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return found


def _unused(path: Path) -> Path:
    """`path`, or the same name with a counter when it exists (two backups within one second)."""
    n, candidate = 1, path
    while candidate.exists():
        candidate = path.with_name(f"{path.name.removesuffix('.bak.jsonl')}-{n}.bak.jsonl")
        n += 1
    return candidate


def provenance() -> dict[str, Any]:
    """Who wrote: versions, git sha, host, time, and the rank and world size of a sharded run."""
    entry: dict[str, Any] = {
        "versions": versions(),
        "git_sha": _git_sha(),
        "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    world = os.environ.get("WORLD_SIZE", "").strip()
    if world.isdigit() and int(world) > 1:
        entry["world_size"] = int(world)
        rank = os.environ.get("RANK", "").strip()
        entry["rank"] = int(rank) if rank.isdigit() else rank
    return entry


class Run:
    """One (protocol, model configuration) folder. Images and records are keyed by sample id and k."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def for_config(cls, runs_dir: Path, protocol: str, model: str, generation_config: dict[str, Any]) -> Run:
        """The folder is named by what changes the images, so a different judge reuses the same images."""
        safe_model = model.replace("/", "_").replace(":", "_")
        return cls(Path(runs_dir) / protocol / f"{safe_model}-{stable_hash(generation_config)}")

    # -- provenance --------------------------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    def info(self) -> dict[str, Any]:
        if not self.info_path.exists():
            raise EvalkitError(f"{self.root} is not an evalkit run (no run.json)")
        return read_json_file(self.info_path, "run.json")

    def write_info(self, info: dict[str, Any]) -> None:
        """Create or update run.json; generation settings may never change under an existing run.

        The read-modify-write holds a lock, so ranks writing side by side lose none of each other's keys.
        """
        with self._info_lock():
            self._write_info(info)

    @contextlib.contextmanager
    def _info_lock(self) -> Iterator[None]:
        import fcntl

        folder = self.root / ".lock"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "info", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _write_info(self, info: dict[str, Any]) -> None:
        if self.info_path.exists():
            old = read_json_file(self.info_path, "run.json")
            if "generation" in info and old.get("generation") != info["generation"]:
                raise EvalkitError(
                    f"{self.root}: run.json has different generation settings; use a new run dir"
                )
            info = {**old, **info, "history": old.get("history", []) + [provenance()]}
        else:
            info = {**info, "history": [provenance()]}
        atomic_write_json(self.info_path, info)

    def lock(self, purpose: str, *, shard: Shard = Shard(), exclusive: bool = False):
        """Context manager: hold the folder to write `shard` (or alone); raises RunBusy naming the holder."""
        from evalkit.runlock import lock_run

        return lock_run(self.root, purpose, exclusive=exclusive, rank=shard.rank, world_size=shard.world_size)

    # -- images --------------------------------------------------------------------------------------
    def sample_dir(self, sample_id: str) -> Path:
        """The folder of a sample's images; always directly under samples/ (see `safe_name`)."""
        return self.root / "samples" / safe_name(sample_id)

    def image_path(self, sample_id: str, k: int) -> Path:
        return self.sample_dir(sample_id) / f"{int(k)}.png"

    def has_image(self, sample_id: str, k: int) -> bool:
        return self.image_path(sample_id, k).exists()

    def save_image(self, sample_id: str, k: int, image: Image.Image, meta: dict[str, Any]) -> None:
        """Sidecar first, image last: an image on disk always has its sidecar."""
        path = self.image_path(sample_id, k)
        atomic_write_json(path.with_suffix(".json"), meta)
        import io

        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())

    def load_image(self, sample_id: str, k: int) -> Image.Image:
        path = self.image_path(sample_id, k)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise EvalkitError(f"missing image {path}; run `evalkit gen` first") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise EvalkitError(f"corrupt image {path} ({e}); delete it and re-run to regenerate it") from None

    def load_image_meta(self, sample_id: str, k: int) -> dict[str, Any]:
        path = self.image_path(sample_id, k).with_suffix(".json")
        return read_json_file(path, "image sidecar", fix="delete it and its image") if path.exists() else {}

    # -- records -------------------------------------------------------------------------------------
    def records_path(self, shard: Shard = Shard()) -> Path:
        if shard.world_size == 1:
            return self.root / RECORDS
        return self.root / f"records.rank{shard.rank}.jsonl"

    def shard_record_files(self) -> list[Path]:
        """records.rank<r>.jsonl only: a dated backup of one (records.rank0.<stamp>.bak.jsonl) is not live."""
        return sorted(p for p in self.root.glob("records.rank*.jsonl") if _SHARD_FILE.fullmatch(p.name))

    def records(self) -> list[dict[str, Any]]:
        """The current record of every image: the merged file, then shard files not merged yet; a later
        record of an image supersedes an earlier one (a failed judgement retried on resume)."""
        seen: dict[str, dict[str, Any]] = {}
        for path in [self.root / RECORDS, *self.shard_record_files()]:
            for rec in read_jsonl(path):
                seen[rec["id"]] = rec
        return sorted(seen.values(), key=lambda r: (str(r.get("sample_id")), r.get("k", 0)))

    def append_record(self, record: dict[str, Any], shard: Shard = Shard()) -> None:
        append_jsonl(self.records_path(shard), record)

    def rescore_path(self, scorer_hash: str, shard: Shard = Shard()) -> Path:
        """Where a rescore stages its records until it completes (the old records stay in force): one
        file for one process, one per rank for the ranks of a torchrun job."""
        if shard.world_size == 1:
            return self.root / f"records.rescore-{scorer_hash}.jsonl"
        return self.root / f"records.rescore-{scorer_hash}.rank{shard.rank}.jsonl"

    def rescore_files(self, scorer_hash: str) -> list[Path]:
        """Every file staging a rescore under `scorer_hash`, whatever world size wrote it."""
        ranked = re.compile(rf"records\.rescore-{re.escape(scorer_hash)}\.rank(\d+)\.jsonl")
        ranks = [(int(m.group(1)), p) for p in self.root.glob(f"records.rescore-{scorer_hash}.rank*.jsonl")
                 if (m := ranked.fullmatch(p.name))]  # fmt: skip
        one = self.rescore_path(scorer_hash)
        return ([one] if one.exists() else []) + [p for _, p in sorted(ranks)]

    def staged_records(self, scorer_hash: str) -> list[dict[str, Any]]:
        """The records a rescore under `scorer_hash` has staged so far, one per image, from one process
        and any ranks alike (an interrupted rescore resumes with another world size). A failed record
        never replaces a good one: an image is re-scored only while its record is missing or failed."""
        seen: dict[str, dict[str, Any]] = {}
        for path in self.rescore_files(scorer_hash):
            for rec in read_jsonl(path):
                old = seen.get(rec["id"])
                if old is None or old.get("failed") or not rec.get("failed"):
                    seen[rec["id"]] = rec
        return sorted(seen.values(), key=lambda r: (str(r.get("sample_id")), r.get("k", 0)))

    def commit_rescore(self, scorer_hash: str) -> int:
        """Make a completed rescore current in one rename; the old records are kept as a dated backup.

        The staged records of every process or rank are written into one file first, so at every instant
        records.jsonl is either the old or the new set and a crash here loses nothing (staging files
        left behind by a crash after the rename are committed again, unchanged, by the next rescore).
        Returns the number of records committed.
        """
        records = self.staged_records(scorer_hash)
        staging = self.rescore_files(scorer_hash)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        current = self.root / RECORDS
        if current.exists():
            os.link(current, _unused(current.with_name(f"records.{stamp}.bak.jsonl")))
        body = "".join(redact.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        atomic_write_bytes(current, body.encode())
        for path in staging:
            path.unlink()
        for path in self.shard_record_files():
            path.rename(_unused(path.with_name(f"{path.stem}.{stamp}.bak.jsonl")))
        return len(records)

    def merge_shards(self) -> int:
        """Fold per-rank record files into records.jsonl (sorted), then remove them. Returns #records."""
        records = self.records()
        shard_files = self.shard_record_files()
        if shard_files:
            body = "".join(redact.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
            atomic_write_bytes(self.root / RECORDS, body.encode())
            for path in shard_files:
                path.unlink()
        return len(records)

    # -- summary -------------------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.root / "summary.json", summary)

    def summary(self) -> dict[str, Any]:
        path = self.root / "summary.json"
        if not path.exists():
            raise EvalkitError(f"{self.root} has no summary.json; run `evalkit score` on it first")
        return read_json_file(path, "summary.json", fix="run `evalkit score` on the run to rewrite it")
