"""The study's figures: variance.png (variance, cosine and the noisy critic's bias beyond the
noise floor, against the horizon) and learning.png. matplotlib is optional (hiper[plot])."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hiper.studies.credit.estimators import ESTIMATORS

# Token and turn GAE nearly coincide: dashes and markers keep both visible.
_STYLES = {
    "hae": {"color": "C0", "marker": "o", "lw": 2.2},
    "token_gae": {"color": "C1", "marker": "s", "ls": "--"},
    "turn_gae": {"color": "C2", "marker": "^", "ls": ":"},
    "grpo": {"color": "C3", "marker": "v"},
    "turn_gae_095": {"color": "C4", "marker": "x", "lw": 1},
    "turn_td": {"color": "C7", "marker": "+", "lw": 1},
}


def load_pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_variance(plt, cells: list[dict], estimators: tuple[str, ...], path: Path) -> None:
    """Per number of subtasks (columns), against the horizon: relative variance (log) and
    cosine with exact critics and, if measured, the excess bias with the noisy critic."""
    ks = sorted({c["subtasks"] for c in cells})
    rows = [("exact", lambda r: r["rel_var"], "tr Cov(g) / |grad J|^2", True),
            ("exact", lambda r: r["cosine"], "mean cos(g, grad J)", False)]
    if any("noisy" in c["results"] for c in cells):
        rows.append(("noisy", lambda r: r["excess_bias"], "noisy critic: bias / |grad J|\nbeyond the noise floor",
                     False))
    fig, axes = plt.subplots(len(rows), len(ks), figsize=(4.2 * len(ks), 3.3 * len(rows) + 0.6), squeeze=False)
    for col, k in enumerate(ks):
        line = sorted((c for c in cells if c["subtasks"] == k), key=lambda c: c["horizon"])
        hs = [c["horizon"] for c in line]
        for ax, (critic, metric, ylabel, log_y) in zip(axes[:, col], rows):
            for key in estimators:
                if all(key in c["results"].get(critic, {}) for c in line):
                    ax.plot(hs, [metric(c["results"][critic][key]) for c in line],
                            label=ESTIMATORS[key].label, **_STYLES.get(key, {}))
            if log_y:
                ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_xticks(hs, [str(h) for h in hs])
            ax.set_xlabel("horizon H (turns)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"K = {k} subtasks")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=9)
    fig.suptitle("Per-batch gradient estimates against the exact gradient (J = success probability)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_learning(plt, learning: dict, path: Path) -> None:
    """Exact success probability vs iteration, mean +- std over seeds, one panel per critic."""
    panels = list(learning["curves"].items())
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    task = learning["task"]
    for ax, (critic, curves) in zip(axes[0], panels):
        for key, runs in curves.items():
            runs = np.asarray(runs)
            mean, std = runs.mean(0), runs.std(0)
            style = {k: v for k, v in _STYLES.get(key, {}).items() if k != "marker"}
            ax.plot(np.arange(mean.size), mean, label=ESTIMATORS[key].label, **style)
            ax.fill_between(np.arange(mean.size), mean - std, mean + std, color=style.get("color"), alpha=0.2)
        ax.axhline(learning["optimum"], color="grey", ls="--", lw=1, label="near-optimal policy")
        ax.set_title(f"{critic} critic: K = {task['subtasks']}, H = {task['horizon']}, "
                     f"{len(runs)} seeds (mean +- std)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("exact success probability J")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
