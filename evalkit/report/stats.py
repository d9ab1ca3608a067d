"""Bootstrap confidence intervals and paired significance tests for benchmark numbers.

A headline number is whatever a benchmark's *official* aggregation makes of its records (GenEval: the
mean of six task accuracies; WISE: a weighted mean of category means; DPG: pooled category points...),
so the bootstrap never averages records itself: it resamples prompts (the records' ``sample_id``), and
within each drawn prompt its images (two-level resampling, where a prompt has several images), then
hands the resampled records to that same aggregation. Intervals are percentile intervals; the seed is
fixed, so a table is reproducible to the last digit.

API (used by tables and plots)::

    intervals = bootstrap_ci(records, aggregate)          # {column: Interval}
    tests = paired_bootstrap(records_a, records_b, aggregate)  # {column: PairedTest}
    interval = mean_ci([[0.1, 0.3], [0.9]])               # per-prompt lists of per-image values
    intervals = run_ci(run_dir)                           # a run folder, its benchmark's own aggregate
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.errors import EvalkitError

RESAMPLES = 1000  # bootstrap replicates (Efron & Tibshirani: ~1000 for percentile intervals)
SEED = 0  # fixed: the same records always give the same interval
LEVEL = 0.95

Record = Mapping[str, Any]
Aggregate = Callable[[list[Record]], Mapping[str, float | None]]


@dataclass(frozen=True)
class Interval:
    """A number with its bootstrap percentile interval; `n` prompts and `n_images` images behind it."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    n_images: int
    level: float = LEVEL
    resamples: int = RESAMPLES

    @property
    def half_width(self) -> float | None:
        """Half the interval's width: what a table prints as ``±``."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedTest:
    """Difference b - a on the prompts both runs share, its interval and two-sided bootstrap p-value."""

    delta: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n: int
    resamples: int = RESAMPLES


def describe(
    resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED, two_level: bool = True
) -> str:
    """One sentence for a table footnote saying how the intervals were computed."""
    images = " and the images of each prompt" if two_level else ""
    return (
        f"±: half-width of the {level:.0%} bootstrap percentile interval ({resamples} resamples of the prompts"
        f"{images}, official aggregation recomputed on each, seed {seed})"
    )


def significance_marker(p_value: float | None) -> str:
    """'**' for p < 0.01, '*' for p < 0.05, '' otherwise (explained in the table footnote)."""
    if p_value is None:
        return ""
    return "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


# -- resampling ---------------------------------------------------------------------------------------
def _group(records: Sequence[Record], unit: str) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        if unit not in r:
            raise EvalkitError(f"a record has no '{unit}' field; cannot resample by {unit}")
        groups.setdefault(str(r[unit]), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r.get("k", 0))
    return groups


def _slim(records: list[Record], aggregate: Aggregate) -> list[Record]:
    """Records with nested metadata pre-encoded as JSON text (GenEval keys prompts by it, re-encoding it
    on every replicate); used only where the aggregate of the whole set is unchanged by it."""
    if not any(isinstance(r.get("metadata"), dict) for r in records):
        return records
    slim = [
        {**r, "metadata": json.dumps(r["metadata"])} if isinstance(r.get("metadata"), dict) else r
        for r in records
    ]
    try:
        same = aggregate(slim) == aggregate(records)
    except (KeyError, TypeError, AttributeError):
        same = False
    return slim if same else records


@dataclass
class Bootstrap:
    """Aggregates of `resamples` replicates of one run's records over a fixed list of prompts.

    Replicate b draws its prompts and its image picks from seed (seed, b) alone, so two runs bootstrapped
    over the same prompts get the same draws: their replicate differences are a paired bootstrap
    (prompt for prompt, and image k for image k where both have as many images, i.e. the same seeds).
    """

    estimate: Mapping[str, float | None]
    replicates: list[Mapping[str, float | None]]
    keys: list[str]
    n_images: int
    resamples: int
    seed: int
    images: bool

    def interval(self, column: str, level: float = LEVEL) -> Interval:
        low, high = _percentiles([r[column] for r in self.replicates if r.get(column) is not None], level)
        value = self.estimate.get(column)
        return Interval(value, low, high, len(self.keys), self.n_images, level, self.resamples)

    def intervals(self, level: float = LEVEL) -> dict[str, Interval]:
        return {col: self.interval(col, level) for col in self.estimate}


def resample(
    records: Sequence[Record],
    aggregate: Aggregate,
    *,
    keys: Sequence[str] | None = None,
    unit: str = "sample_id",
    images: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Bootstrap:
    """Bootstrap replicates of `aggregate` over the prompts `keys` (default: every prompt of `records`).

    `unit` names the record field that identifies a prompt; `images` also resamples the images of each
    drawn prompt (two-level bootstrap). Every drawn copy of a prompt gets its own `unit` value, so
    aggregations that group by sample (DPG's grids) see copies as separate prompts; drawn images are
    renumbered k = 0..m-1.
    """
    if resamples < 1:
        raise EvalkitError(f"the bootstrap needs at least 1 resample, got {resamples}")
    grouped = _group(records, unit)
    keys = sorted(grouped) if keys is None else list(keys)
    missing = [k for k in keys if k not in grouped]
    if missing:
        raise EvalkitError(f"no records for prompt(s) {', '.join(missing[:3])}; cannot resample them")
    if not keys:
        raise EvalkitError("no prompts to resample")
    chosen = [r for k in keys for r in grouped[k]]
    slim = _slim(chosen, aggregate)
    if slim is not chosen:
        grouped = _group(slim, unit)
    groups = [grouped[k] for k in keys]
    flat = [r for g in groups for r in g]
    names = [str(r[unit]) for r in flat]
    sizes = np.array([len(g) for g in groups])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    width = int(sizes.max())
    slot = np.arange(width)
    reps = []
    for b in range(resamples):
        rng = np.random.default_rng([seed, b])
        order = rng.integers(0, len(groups), len(groups))
        m = sizes[order][:, None]
        if images and width > 1:
            # one column per image slot, drawn in order: runs with fewer images share the first columns
            u = np.stack([rng.random(len(groups)) for _ in range(width)], axis=1)
            picks = (u * m).astype(int)
        else:
            picks = np.broadcast_to(slot, (len(groups), width))
        mask = slot[None, :] < m
        index = (starts[order][:, None] + picks)[mask].tolist()
        pos = np.broadcast_to(np.arange(len(groups))[:, None], mask.shape)[mask].tolist()
        ks = np.broadcast_to(slot, mask.shape)[mask].tolist()
        drawn = [{**flat[i], unit: f"{names[i]}~{p}", "k": k} for i, p, k in zip(index, pos, ks, strict=True)]
        reps.append(aggregate(drawn))
    return Bootstrap(aggregate(chosen), reps, keys, len(chosen), resamples, seed, images)


def _percentiles(values: list[float], level: float) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    records: Sequence[Record],
    aggregate: Aggregate,
    *,
    unit: str = "sample_id",
    images: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """{column: Interval} for every column `aggregate` returns (its estimate = aggregate(records)).

    Replicates in which a column is undefined (None) are left out of that column's interval.
    """
    boot = resample(records, aggregate, unit=unit, images=images, resamples=resamples, seed=seed)
    return boot.intervals(level)


def compare(a: Bootstrap, b: Bootstrap, level: float = LEVEL) -> dict[str, PairedTest]:
    """Paired test of b - a from two bootstraps over the same prompts with the same seed.

    p-value: two-sided, from the replicate differences centred on the observed one (the null shifted to
    zero): p = (1 + #{|d* - d| >= |d|}) / (1 + resamples). Identical runs give p = 1.
    """
    if a.keys != b.keys or a.seed != b.seed or a.resamples != b.resamples or a.images != b.images:
        raise EvalkitError("a paired bootstrap needs both runs resampled over the same prompts and seed")
    out = {}
    for col in b.estimate:
        ea, eb = a.estimate.get(col), b.estimate.get(col)
        if ea is None or eb is None:
            out[col] = PairedTest(None, None, None, None, len(a.keys), a.resamples)
            continue
        delta = eb - ea
        diffs = [
            rb[col] - ra[col]  # type: ignore[operator]
            for ra, rb in zip(a.replicates, b.replicates, strict=True)
            if ra.get(col) is not None and rb.get(col) is not None
        ]
        low, high = _percentiles(diffs, level)
        extreme = sum(1 for d in diffs if abs(d - delta) >= abs(delta) - 1e-12)
        p = (1 + extreme) / (1 + len(diffs)) if diffs else None
        out[col] = PairedTest(delta, low, high, p, len(a.keys), a.resamples)
    return out


def shared_prompts(a: Sequence[Record], b: Sequence[Record], unit: str = "sample_id") -> list[str]:
    """The prompts both record sets have, sorted (what a paired comparison may use)."""
    return sorted({str(r[unit]) for r in a} & {str(r[unit]) for r in b})


def paired_bootstrap(
    records_a: Sequence[Record],
    records_b: Sequence[Record],
    aggregate: Aggregate,
    aggregate_b: Aggregate | None = None,
    *,
    unit: str = "sample_id",
    images: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, PairedTest]:
    """Paired bootstrap of b - a over the prompts both runs scored (the same draws for both)."""
    keys = shared_prompts(records_a, records_b, unit)
    if not keys:
        raise EvalkitError("the two runs share no prompts; a paired comparison is impossible")
    opts: dict[str, Any] = {
        "keys": keys,
        "unit": unit,
        "images": images,
        "resamples": resamples,
        "seed": seed,
    }
    return compare(
        resample(records_a, aggregate, **opts), resample(records_b, aggregate_b or aggregate, **opts), level
    )


def mean_ci(
    groups: Sequence[Sequence[float]],
    *,
    images: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """Interval of the plain mean of per-prompt means, from one list of per-image values per prompt
    (for plots of quantities that have no official aggregation, e.g. one category's accuracy)."""
    records = [{"sample_id": str(i), "k": k, "v": v} for i, vs in enumerate(groups) for k, v in enumerate(vs)]

    def prompt_mean(rs: list[Record]) -> dict[str, float | None]:
        by: dict[str, list[float]] = {}
        for r in rs:
            by.setdefault(r["sample_id"], []).append(float(r["v"]))
        return {"mean": sum(sum(v) / len(v) for v in by.values()) / len(by) if by else None}

    return bootstrap_ci(records, prompt_mean, images=images, resamples=resamples, seed=seed, level=level)[
        "mean"
    ]


# -- run folders ------------------------------------------------------------------------------------
def official_aggregate(info: Mapping[str, Any]) -> Aggregate:
    """The table aggregation of a run's benchmark (from its run.json), built without its data files."""
    from evalkit import registry

    bench_name = info.get("benchmark") or str(info["protocol"]).split("@")[0]
    cls = registry.lookup("benchmarks", bench_name).load()
    options = dict(info.get("bench_options") or {})
    try:
        bench = cls(Path("/nonexistent-evalkit-data"), protocol=info["protocol"], **options)
    except (EvalkitError, OSError):
        # Benchmarks that read their prompt list when built (GenEval) aggregate from records alone.
        bench = object.__new__(cls)
        bench.protocol = info["protocol"]
        vars(bench).update(options)

    def aggregate(records: list[Record]) -> Mapping[str, float | None]:
        return bench.aggregate(list(records))["table"]

    return aggregate


def run_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records a run's summary is made of (merged file and unmerged shards)."""
    from evalkit.runs import Run

    return Run(Path(run_dir)).records()


def run_ci(run_dir: Path, **options: Any) -> dict[str, Interval]:
    """{column: Interval} for a scored run folder, using its benchmark's official aggregation."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise EvalkitError(f"{run_dir} is not an evalkit run (no run.json)")
    info = json.loads(path.read_text())
    records = run_records(Path(run_dir))
    if not records:
        raise EvalkitError(f"{run_dir} has no records; run `evalkit score {run_dir}` first")
    return bootstrap_ci(records, official_aggregate(info), **options)
