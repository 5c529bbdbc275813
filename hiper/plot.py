"""Learning curves of a run: `hiper plot RUN_DIR` reads RUN_DIR/metrics.jsonl and writes
RUN_DIR/curves.png (success rate, episode return, switch and invalid rates, losses).

Runs compared: `hiper plot --compare hae=runs/hae-0,runs/hae-1 grpo=runs/grpo-0,runs/grpo-1
--out cmp.png` draws, per method, the held-out evaluation success against the step: the mean
over its runs (seeds) as a line and their minimum to maximum as a band.

Axes read as plain numbers: steps are integer ticks, tick labels carry their full value (no
`1e-5` or `+1.234` offset text beside the axis), rates keep their 0..1 range, and a series
that never changes sits in the middle of a small margin instead of an axis zoomed into float
noise.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

PANELS = (("success_rate", "success rate"), ("episode_return", "episode return"),
          ("switch_rate", "switch rate"), ("invalid_rate", "invalid-format rate"),
          ("critic_loss", "critic loss"), ("pg_loss", "policy loss"))
RATES = {"success_rate", "switch_rate", "invalid_rate"}  # fractions: drawn on their whole 0..1 range


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl. A last line a crash cut short is left out (a resumed run
    drops it too: hiper.runs.truncate_metrics); a bad line anywhere else is an error naming it."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"run_dir: no metrics.jsonl in {run_dir}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise ValueError(f"run_dir: line {number} of {path} is not JSON") from None
    return rows


def learning_curves(run_dir: str | Path):
    """The figure `plot_run` saves: one panel per metric of PANELS against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    fig.suptitle(f"{run_dir.resolve().name}: {len(rows)} step(s)")
    for ax, (key, title) in zip(axes.flat, PANELS):
        values = [_number(r.get(key)) for r in rows]
        ax.plot(steps, values, marker="o", label="train")
        if key == "success_rate" and any("eval" in r for r in rows):
            ev = [(r["step"], r["eval"]["success_rate"]) for r in rows if "eval" in r]
            ax.plot(*zip(*ev), marker="s", label="eval")
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axis in (ax.xaxis, ax.yaxis):
            _plain_numbers(axis)
        if key in RATES:
            ax.set_ylim(-0.05, 1.05)
        else:
            _margin_if_constant(ax, values)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib.pyplot as plt

    fig = learning_curves(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _plain_numbers(axis) -> None:
    """Tick labels that carry their whole value: no offset (`+1.234`), no `1e-5` multiplier."""
    from matplotlib.ticker import ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)


def _margin_if_constant(ax, values: list[float]) -> None:
    """A series with one value (e.g. a loss that stays 0) gets a symmetric margin of 5% of its
    size (at least 0.05), not an axis spanning its float rounding."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if high - low > 1e-9 * max(abs(low), abs(high), 1.0):
        return
    margin = 0.05 * max(abs(low), 1.0)
    ax.set_ylim(low - margin, high + margin)


def compare_runs(groups: dict[str, list[str | Path]], out: str | Path, title: str = "") -> Path:
    """Saves `comparison(groups, title)` to `out`."""
    import matplotlib.pyplot as plt

    fig = comparison(groups, title)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def comparison(groups: dict[str, list[str | Path]], title: str = ""):
    """One figure of the held-out success (`eval.success_rate` of metrics.jsonl) against the
    step for each group of runs: the mean over the group's runs and their min-max band. Every
    run must hold evaluations at the same steps as the others of its group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    if not groups:
        raise ValueError("compare: name at least one group, LABEL=RUN_DIR[,RUN_DIR...]")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, run_dirs in groups.items():
        curves = []
        for run_dir in run_dirs:
            evals = [(r["step"], r["eval"]["success_rate"]) for r in read_metrics(run_dir) if "eval" in r]
            if not evals:
                raise ValueError(f"compare: {run_dir} holds no evaluations (train with --eval-every N)")
            curves.append(evals)
        steps = [s for s, _ in curves[0]]
        if any([s for s, _ in c] != steps for c in curves):
            raise ValueError(f"compare: the runs of {label!r} were evaluated at different steps")
        values = np.array([[v for _, v in c] for c in curves])
        line, = ax.plot(steps, values.mean(0), marker="o", label=f"{label} (mean of {len(curves)})")
        ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _plain_numbers(ax.xaxis)
    ax.legend(loc="lower right")
    ax.set_title(title or "held-out success: mean over seeds, band from min to max")
    fig.tight_layout()
    return fig
