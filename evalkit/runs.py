"""Run folders: layout, atomic writes, append-only records, resume, provenance and sharding.

runs/<protocol id>/<model>-<config hash>/
    run.json                 config, versions, git sha, protocol id, seeds
    samples/<id>/<k>.png     images (+ <k>.json: think text, timing, seed)
    records.jsonl            one scored record per image (append-only)
    records.rank<r>.jsonl    per-rank records of a sharded run, until `merge_shards`
    summary.json             aggregated scores
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.errors import EvalkitError

RECORDS = "records.jsonl"


def stable_hash(obj: Any, length: int = 8) -> str:
    """A short hash of a JSON-serialisable object that does not depend on key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


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
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        if not 0 <= rank < world:
            raise EvalkitError(f"invalid shard RANK={rank} WORLD_SIZE={world}")
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
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line and fsync, so a killed process loses at most the line being written."""
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read records; a torn last line (process killed mid-write) is ignored and will be redone."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise EvalkitError(f"{path}:{i + 1}: corrupt record ({e.msg})") from None
    return records


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


def provenance() -> dict[str, Any]:
    return {
        "versions": versions(),
        "git_sha": _git_sha(),
        "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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
        return json.loads(self.info_path.read_text())

    def write_info(self, info: dict[str, Any]) -> None:
        """Create or update run.json; generation settings may never change under an existing run."""
        if self.info_path.exists():
            old = json.loads(self.info_path.read_text())
            if "generation" in info and old.get("generation") != info["generation"]:
                raise EvalkitError(
                    f"{self.root}: run.json has different generation settings; use a new run dir"
                )
            info = {**old, **info, "history": old.get("history", []) + [provenance()]}
        else:
            info = {**info, "history": [provenance()]}
        atomic_write_json(self.info_path, info)

    # -- images --------------------------------------------------------------------------------------
    def image_path(self, sample_id: str, k: int) -> Path:
        return self.root / "samples" / sample_id / f"{k}.png"

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
        return json.loads(path.read_text()) if path.exists() else {}

    # -- records -------------------------------------------------------------------------------------
    def records_path(self, shard: Shard = Shard()) -> Path:
        if shard.world_size == 1:
            return self.root / RECORDS
        return self.root / f"records.rank{shard.rank}.jsonl"

    def shard_record_files(self) -> list[Path]:
        return sorted(self.root.glob("records.rank*.jsonl"))

    def records(self) -> list[dict[str, Any]]:
        """Every record of the run: merged file plus any shard files not merged yet (first one wins)."""
        seen: dict[str, dict[str, Any]] = {}
        for path in [self.root / RECORDS, *self.shard_record_files()]:
            for rec in read_jsonl(path):
                seen.setdefault(rec["id"], rec)
        return sorted(seen.values(), key=lambda r: (r["sample_id"], r["k"]))

    def append_record(self, record: dict[str, Any], shard: Shard = Shard()) -> None:
        append_jsonl(self.records_path(shard), record)

    def merge_shards(self) -> int:
        """Fold per-rank record files into records.jsonl (sorted), then remove them. Returns #records."""
        records = self.records()
        shard_files = self.shard_record_files()
        if shard_files:
            body = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
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
        return json.loads(path.read_text())
