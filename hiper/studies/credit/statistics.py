"""How M gradient estimates g_m compare with the exact gradient g.

    rel_bias   ||mean g_m - g|| / ||g||, with its noise floor sqrt(tr Cov / M) / ||g||,
               about what an unbiased estimator shows from the finite M alone, and
               excess_bias = sqrt(max(0, rel_bias^2 - floor^2)), the bias beyond it;
    scale, direction_error
               mean g_m = scale * g + r: a pure rescaling (GRPO's 1/std) moves the scale,
               a wrong direction shows in ||r|| / ||g||;
    rel_var    tr Cov(g_m) / ||g||^2, per batch of B, and scaled_var = rel_var / scale^2;
    cosine     mean over batches of cos(g_m, g).
direction_error, scaled_var and cosine do not see a rescaling, so they are fair to GRPO.
"""
from __future__ import annotations

import numpy as np


def gradient_stats(estimates: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """Bias, variance and alignment of M gradient estimates (M, P) against the truth (P,)."""
    M = estimates.shape[0]
    if M < 2:
        raise ValueError("gradient_stats: needs at least 2 estimates")
    norm = float(np.linalg.norm(truth))
    if norm == 0.0:
        raise ValueError("gradient_stats: the true gradient is 0; relative errors are undefined")
    mean = estimates.mean(axis=0)
    trace_cov = float(estimates.var(axis=0, ddof=1).sum())
    bias = float(np.linalg.norm(mean - truth))
    scale = float(mean @ truth) / norm**2
    lengths = np.linalg.norm(estimates, axis=1)
    cos = np.divide(estimates @ truth, lengths * norm, out=np.zeros(M), where=lengths > 0)
    floor = float(np.sqrt(trace_cov / M)) / norm
    return {
        "rel_bias": bias / norm,
        "bias_floor": floor,
        # The bias beyond what the finite M explains: an estimate of the true bias's size.
        "excess_bias": float(np.sqrt(max(0.0, (bias / norm) ** 2 - floor**2))),
        # ||mean - truth||^2 over its expectation for an unbiased estimator: ~1 if unbiased.
        "bias_ratio": bias**2 / (trace_cov / M) if trace_cov > 0 else None,
        # Scale-free: E g = scale * truth + (a part orthogonal to the truth, of relative
        # size direction_error). GRPO's 1/std shows in the scale, not in the direction.
        "scale": scale,
        "direction_error": float(np.linalg.norm(mean - scale * truth)) / norm,
        "rel_var": trace_cov / norm**2,
        "scaled_var": trace_cov / (scale * norm) ** 2 if scale != 0 else None,
        "cosine": float(cos.mean()),
        "cosine_se": float(cos.std(ddof=1) / np.sqrt(M)),
    }
