"""The study's printed tables."""
from __future__ import annotations

import numpy as np

from hiper.studies.credit.estimators import ESTIMATORS


def format_table(cells: list[dict], estimators: tuple[str, ...], critic: str = "exact") -> str:
    """One row per (cell, estimator): the cell's skill, J, mean turns and segments per
    trajectory, then relative bias and its noise floor, scale and direction error (the
    bias split into its part along the truth and across it), relative variance, the
    same divided by scale^2, and cosine."""
    head = (f"{'K':>2} {'H':>3} {'skill':>5} {'J':>5} {'turns':>5} {'segs':>5}  {'estimator':<30} "
            f"{'rel.bias':>8} {'(floor)':>7} {'scale':>5} {'dir.err':>7} {'rel.var':>7} {'/scale2':>7} {'cosine':>6}")
    lines = [head, "-" * len(head)]
    for cell in cells:
        lead = (f"{cell['subtasks']:>2} {cell['horizon']:>3} {cell['skill']:>5.2f} {cell['success']:>5.2f} "
                f"{cell['mean_turns']:>5.1f} {cell['mean_segments']:>5.1f}")
        for key in (k for k in estimators if k in cell["results"].get(critic, {})):
            r = cell["results"][critic][key]
            scaled = "-" if r["scaled_var"] is None else f"{r['scaled_var']:.3g}"
            lines.append(f"{lead}  {ESTIMATORS[key].label:<30} {r['rel_bias']:>8.3f} {r['bias_floor']:>7.3f} "
                         f"{r['scale']:>5.2f} {r['direction_error']:>7.3f} {r['rel_var']:>7.3g} {scaled:>7} "
                         f"{r['cosine']:>6.3f}")
            lead = " " * len(lead)
    return "\n".join(lines)


def format_learning(learning: dict, critic: str) -> str:
    """Mean +- std over seeds of the exact J at a few iterations, one row per estimator."""
    curves = learning["curves"][critic]
    iterations = len(next(iter(curves.values()))[0]) - 1
    marks = sorted({0, iterations // 8, iterations // 4, iterations // 2, iterations})
    lines = [f"{'estimator':<30}" + "".join(f"{'it ' + str(m):>14}" for m in marks)]
    for key, runs in curves.items():
        runs = np.asarray(runs)
        lines.append(f"{ESTIMATORS[key].label:<30}"
                     + "".join(f"{runs[:, m].mean():>8.3f}+-{runs[:, m].std():.3f}" for m in marks))
    return "\n".join(lines)
