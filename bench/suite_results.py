"""One JSON line per measurement from every bench script, and the table `bench/gpu_suite.sh` prints.

Each bench takes `--json FILE` and appends rows with the same keys:
bench, config, device, ratio (what the bench compares, as "A/B"), images_per_s and peak_mem_gb (None when
the bench does not measure it), plus bench-specific details.

    python bench/suite_results.py results.jsonl     # Markdown table of every row
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def emit(path: str | None, **row: Any) -> None:
    """Append one measurement; a no-op without `--json`."""
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def peak_cuda_gb(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    columns = ["bench", "config", "device", "ratio", "ratio_of", "images_per_s", "seconds", "peak_mem_gb"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1])
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        sys.exit(f"{path}: no measurements (every bench failed?)")
    print(table(rows))


if __name__ == "__main__":
    main()
