"""Learning curves of a run: `hiper plot RUN_DIR` reads RUN_DIR/metrics.jsonl and writes
RUN_DIR/curves.png (success rate, episode return, switch and invalid rates, losses)."""
from __future__ import annotations

import json
from pathlib import Path

PANELS = (("success_rate", "success rate"), ("episode_return", "episode return"),
          ("switch_rate", "switch rate"), ("invalid_rate", "invalid-format rate"),
          ("critic_loss", "critic loss"), ("pg_loss", "policy loss"))


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    steps = [r["step"] for r in rows]
    for ax, (key, title) in zip(axes.flat, PANELS):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows], marker="o")
        if key == "success_rate" and any("eval" in r for r in rows):
            ev = [(r["step"], r["eval"]["success_rate"]) for r in rows if "eval" in r]
            ax.plot(*zip(*ev), marker="s", label="eval")
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
