"""Paper figures from run folders and training folders: PNG (300 dpi) and PDF (embedded TrueType fonts).

    radar(headline_scores(run_dirs), out / "radar")              # one polygon per model, one axis per benchmark
    category_bars(category_intervals(run_dirs), out / "bars")    # bootstrap 95% CI whiskers (report/stats.py)
    srr_gain({label: srr_round_series(run_dir)}, out / "srr")    # score after each SRR round
    training_curves(train_dirs, out / "curves")                  # metrics.jsonl: rewards, KL, clip fraction

Every function takes plain numbers (so a figure can be made from anything) and a `*_from_runs` style
helper reads them from disk. Figures are drawn with matplotlib's object API (no pyplot state), so the
library is safe to call from any thread or notebook.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

# Small serif text as in two-column papers; TrueType (42) fonts in PDFs, as venues ask (no Type 3).
PAPER_STYLE: dict[str, Any] = {
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],
    "mathtext.fontset": "dejavuserif",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}
COLUMN_WIDTH_IN = 3.3  # one column of a two-column paper
PAGE_WIDTH_IN = 6.9

# The headline of each benchmark on a 0-100 scale: (table column, factor to percent).
HEADLINES: dict[str, tuple[str, float]] = {
    "geneval": ("Overall", 100.0),
    "tiif": ("Overall (short)", 1.0),
    "dpg": ("Overall", 1.0),
    "wise": ("Overall", 100.0),
    "gedit": ("G_O", 10.0),
}
BENCH_NAMES = {"geneval": "GenEval", "tiif": "TIIF", "dpg": "DPG", "wise": "WISE", "gedit": "GEdit"}


def _mpl():
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise EvalkitError("plots need matplotlib: pip install 'evalkit[report]'") from None
    return matplotlib, Figure


def _figure(width: float, height: float, **kwargs: Any):
    _, Figure = _mpl()
    return Figure(figsize=(width, height), **kwargs)


def save(fig, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf; returns both paths."""
    matplotlib, _ = _mpl()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    with matplotlib.rc_context(PAPER_STYLE):
        for path in paths:
            fig.savefig(path, dpi=300, metadata={"Creator": "evalkit"} if path.suffix == ".pdf" else None)
    return paths


def _styled(draw):
    """Run a drawing function under the paper style (fonts are resolved when text is created)."""
    matplotlib, _ = _mpl()
    with matplotlib.rc_context(PAPER_STYLE):
        return draw()


# ------------------------------------------------------------------------------------------------ runs
def _run_info(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / "run.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError as e:
        raise EvalkitError(f"{run_dir}: no {Path(e.filename).name}; score the run first") from None
    return info, summary


def run_label(info: Mapping[str, Any]) -> str:
    label = str(info.get("label") or info.get("model"))
    srr = (info.get("generation") or {}).get("srr")
    if srr:
        label += f" +SRR(K={srr['rounds']}, {srr['gate']})"
    return label


def headline_scores(run_dirs: Sequence[Path]) -> dict[str, dict[str, float | None]]:
    """{model label: {benchmark: headline on 0-100}} from run folders (one run per model and benchmark)."""
    scores: dict[str, dict[str, float | None]] = {}
    for run_dir in run_dirs:
        info, summary = _run_info(run_dir)
        bench = summary.get("benchmark") or str(summary["protocol"]).split("@")[0]
        if bench not in HEADLINES:
            raise EvalkitError(f"{run_dir}: no headline column known for benchmark '{bench}'")
        column, factor = HEADLINES[bench]
        label = run_label(info)
        if bench in scores.setdefault(label, {}):
            raise EvalkitError(
                f"two {bench} runs for '{label}' ({run_dir}); give one run per model and benchmark"
            )
        value = summary["table"].get(column)
        scores[label][bench] = None if value is None else float(value) * factor
    return scores


# ------------------------------------------------------------------------------------------------ radar
def radar(
    scores: Mapping[str, Mapping[str, float | None]],
    stem: Path,
    *,
    limit: float = 100.0,
    title: str | None = None,
) -> list[Path]:
    """One polygon per model over the benchmarks any model has; a missing score is drawn at the centre
    and marked 'n/a' in the legend, never interpolated."""
    axes_names = list(dict.fromkeys(b for values in scores.values() for b in values))
    if len(axes_names) < 3:
        raise EvalkitError(f"a radar chart needs at least 3 benchmarks, got {len(axes_names)}: {axes_names}")

    def draw():
        fig = _figure(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 1.05)
        ax = fig.add_subplot(projection="polar")
        angles = [2 * math.pi * i / len(axes_names) for i in range(len(axes_names))]
        ax.set_xticks(angles, [BENCH_NAMES.get(b, b) for b in axes_names])
        ax.set_ylim(0, limit)
        ax.set_yticks([limit * f for f in (0.25, 0.5, 0.75)], [f"{limit * f:g}" for f in (0.25, 0.5, 0.75)])
        ax.tick_params(axis="y", labelsize=6, colors="0.4")
        ax.grid(color="0.85", linewidth=0.5)
        for label, values in scores.items():
            points = [values.get(b) for b in axes_names]
            missing = [BENCH_NAMES.get(b, b) for b, v in zip(axes_names, points, strict=True) if v is None]
            radii = [0.0 if v is None else v for v in points]
            name = label + (f" (n/a: {', '.join(missing)})" if missing else "")
            (line,) = ax.plot(angles + angles[:1], radii + radii[:1], linewidth=1.2, label=name)
            ax.fill(angles + angles[:1], radii + radii[:1], alpha=0.12, color=line.get_color())
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
        if title:
            ax.set_title(title, pad=12)
        return fig

    return save(_styled(draw), stem)


# ------------------------------------------------------------------------------------------------ bars
Whisker = tuple[float | None, float | None, float | None]  # (estimate, low, high)


def _whisker(value: Any) -> Whisker:
    """An Interval (report/stats.py), an (estimate, low, high) tuple, or a bare number."""
    if value is None or isinstance(value, int | float):
        return (value, None, None)
    if hasattr(value, "estimate"):
        return (value.estimate, value.low, value.high)
    estimate, low, high = value
    return (estimate, low, high)


def category_bars(
    values: Mapping[str, Mapping[str, Any]], stem: Path, *, ylabel: str = "score", title: str | None = None
) -> list[Path]:
    """Grouped bars: categories on x, one bar per run, whiskers from each value's interval."""
    categories = list(dict.fromkeys(c for per in values.values() for c in per))
    if not categories:
        raise EvalkitError("no categories to plot")

    def draw():
        width = min(PAGE_WIDTH_IN, max(COLUMN_WIDTH_IN, 0.45 * len(categories) * max(1, len(values))))
        fig = _figure(width, 2.2)
        ax = fig.add_subplot()
        n = max(1, len(values))
        bar = 0.8 / n
        for i, (label, per) in enumerate(values.items()):
            xs, heights, err_lo, err_hi = [], [], [], []
            for j, cat in enumerate(categories):
                estimate, low, high = _whisker(per.get(cat))
                if estimate is None:
                    continue
                xs.append(j - 0.4 + bar * (i + 0.5))
                heights.append(estimate)
                err_lo.append(0.0 if low is None else max(0.0, estimate - low))
                err_hi.append(0.0 if high is None else max(0.0, high - estimate))
            ax.bar(xs, heights, bar * 0.92, label=label, yerr=[err_lo, err_hi],
                   error_kw={"elinewidth": 0.8, "capsize": 1.5, "capthick": 0.8})  # fmt: skip
        ax.set_xticks(
            range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0, ha="right"
        )
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False, ncol=min(3, n), loc="lower center", bbox_to_anchor=(0.5, 1.0))
        if title:
            ax.set_title(title, pad=18)
        return fig

    return save(_styled(draw), stem)


def category_intervals(run_dirs: Sequence[Path], **options: Any) -> dict[str, dict[str, Any]]:
    """{run label: {table column: Interval}} with the benchmark's official aggregation, bootstrapped
    over prompts and images (report/stats.py; `options` go to its bootstrap: resamples, seed, level)."""
    from evalkit.report.stats import run_ci

    out: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        info, summary = _run_info(run_dir)
        label = run_label(info)
        if label in out:
            label = f"{label} [{Path(run_dir).name}]"
        intervals = run_ci(Path(run_dir), **options)
        out[label] = {c: intervals[c] for c in summary["table"] if c in intervals}
    return out


# ------------------------------------------------------------------------------------------------ SRR
def srr_round_series(run_dir: Path) -> list[float]:
    """Mean per-round signal over a run's images: the gate's oracle verdict (1/0) or its reward, taken
    after round r (an image that stopped earlier keeps its last value). Needs a gate that recorded one."""
    samples = Path(run_dir) / "samples"
    per_image: list[list[float]] = []
    for marker in sorted(samples.glob("*/*.srr.json")):
        summary = json.loads(marker.read_text())
        k = marker.name.split(".")[0]
        values = []
        for step in summary.get("history", []):
            side = marker.with_name(f"{k}.r{step['round']}.json")
            gate = json.loads(side.read_text()).get("gate", {}) if side.exists() else {}
            if isinstance(gate.get("oracle"), dict):
                values.append(float(bool(gate["oracle"].get("correct"))))
            elif gate.get("reward") is not None:
                values.append(float(gate["reward"]))
            elif gate.get("self_check") is not None:
                values.append(float(gate["self_check"]))
        if values:
            per_image.append(values + [values[-1]] * (summary.get("rounds", 0) + 1 - len(values)))
    if not per_image:
        raise EvalkitError(
            f"{run_dir}: no SRR round carries a gate signal (oracle, reward or self check); "
            "run SRR with --srr-gate oracle or self"
        )
    rounds = max(map(len, per_image))
    padded = [v + [v[-1]] * (rounds - len(v)) for v in per_image]
    return [sum(v[r] for v in padded) / len(padded) for r in range(rounds)]


def srr_gain(
    series: Mapping[str, Sequence[float | None]], stem: Path, *, ylabel: str = "score"
) -> list[Path]:
    """Score after each SRR round (round 0 = the first pass), with the gain over round 0 labelled."""
    if not series:
        raise EvalkitError("no SRR series to plot")

    def draw():
        fig = _figure(COLUMN_WIDTH_IN, 2.2)
        ax = fig.add_subplot()
        for label, values in series.items():
            rounds = [r for r, v in enumerate(values) if v is not None]
            ys = [float(values[r]) for r in rounds]  # type: ignore[arg-type]
            (line,) = ax.plot(rounds, ys, marker="o", markersize=3, linewidth=1.2, label=label)
            if len(ys) > 1 and rounds[0] == 0:
                gain = ys[-1] - ys[0]
                ax.annotate(f"{gain:+.3g}", (rounds[-1], ys[-1]), textcoords="offset points", xytext=(4, 0),
                            va="center", fontsize=7, color=line.get_color())  # fmt: skip
        ax.set_xlabel("SRR round")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(max(len(v) for v in series.values())))
        ax.legend(frameon=False)
        return fig

    return save(_styled(draw), stem)


# ------------------------------------------------------------------------------------------------ training
PANELS: list[tuple[str, Any]] = [
    ("reward", lambda k: k == "reward_mean" or k.startswith("reward/")),
    ("KL", lambda k: k in ("kl", "approx_kl") or k.endswith("_kl") or k.endswith("kl_loss")),
    ("clip fraction", lambda k: "clipfrac" in k),
]


def read_metrics(train_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl of a GRPO (Flow-GRPO: per epoch) or AlphaGRPO (per step) training folder."""
    path = Path(train_dir) / "metrics.jsonl"
    if not path.exists():
        raise EvalkitError(f"{train_dir} has no metrics.jsonl; give a training output folder")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not all(k.startswith("eval/") or k in ("epoch", "step") for k in r)]
    if not rows:
        raise EvalkitError(f"{path} holds no training steps yet")
    return rows


def _x_key(rows: list[dict[str, Any]]) -> str:
    return "epoch" if "epoch" in rows[0] else "step"


def training_curves(
    train_dirs: Sequence[Path], stem: Path, labels: Sequence[str] | None = None
) -> list[Path]:
    """Rewards (mean and per reward model), KL and clip fraction against epoch/step, one colour per run."""
    runs = [(labels[i] if labels else Path(d).name, read_metrics(Path(d))) for i, d in enumerate(train_dirs)]
    panels = []
    for title, wanted in PANELS:
        keys = list(
            dict.fromkeys(
                k
                for _, rows in runs
                for r in rows
                for k, v in r.items()
                if wanted(k) and isinstance(v, int | float)
            )
        )
        if keys:
            panels.append((title, keys))
    if not panels:
        raise EvalkitError("metrics.jsonl has no reward, KL or clip-fraction columns")

    from matplotlib.ticker import MaxNLocator

    def draw():
        fig = _figure(min(PAGE_WIDTH_IN, 2.3 * len(panels)), 2.0, layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        colors = [f"C{i}" for i in range(len(runs))]
        styles = ["-", "--", ":", "-."]
        for ax, (title, keys) in zip(axes, panels, strict=True):
            for color, (label, rows) in zip(colors, runs, strict=True):
                x_key = _x_key(rows)
                for style, key in zip(styles * 4, keys, strict=False):
                    points = [(r[x_key], r[key]) for r in rows if isinstance(r.get(key), int | float)]
                    if points:
                        xs, ys = zip(*points, strict=True)
                        name = label if len(keys) == 1 else f"{label}: {key}"
                        ax.plot(xs, ys, style, color=color, linewidth=1.1, label=name)
            ax.set_title(title)
            ax.set_xlabel(_x_key(runs[0][1]))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(frameon=False, fontsize=6)
        return fig

    return save(_styled(draw), stem)
