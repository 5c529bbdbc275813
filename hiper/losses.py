"""PPO losses as HiPER trains with them (docs/semantics.md §5-§6), with veRL's formulas.

    policy:  max(-A r, -A clip(r, 1 - eps, 1 + eps)), and for A < 0 at most -c A (dual clip),
             r = exp(clamp(logp - old_logp, -20, 20))
    value:   max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2)   (no 0.5 factor)
    kl:      low-variance estimator k3 = exp(d) - d - 1 with d = clamp(ref - logp, -20, 20),
             then clamped to [-10, 10]
    entropy: -sum_v p_v log p_v of each position's distribution

Every loss is a token mean over its mask. Under gradient accumulation a micro-batch passes
`token_count`, the mask's token count over the whole mini-batch: the micro-batch losses then
add up to the mini-batch's token mean, so every token weighs the same whatever the
micro-batch it falls in (veRL's token-mean over the mini-batch).
"""
from __future__ import annotations

import torch

# exp(20) ~ 4.9e8: far beyond any ratio that survives the PPO clip, and far below float32's
# overflow at exp(88.7), where an inf would turn the clamp's zero gradient into NaN.
LOG_RATIO_LIMIT = 20.0
KL_LIMIT = 10.0


def masked_mean(x: torch.Tensor, mask: torch.Tensor, token_count: float | torch.Tensor | None = None) -> torch.Tensor:
    """Sum of x over mask divided by `token_count` (default: the mask's own count); 0 when
    there is nothing to average. A given count may be fractional (a global count shared out
    over data-parallel ranks)."""
    mask = mask.to(x.dtype)
    count = mask.sum() if token_count is None else torch.as_tensor(token_count, dtype=x.dtype, device=x.device)
    return (x * mask).sum() / torch.where(count > 0, count, torch.ones_like(count))


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip_ratio: float = 0.2, clip_ratio_c: float = 3.0,
                    token_count: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(token-mean dual-clip PPO surrogate, stats); stats are float token means over the same
    mask and `token_count`: clip_frac (share of tokens where the ratio clip binds) and
    approx_kl (mean old_logp - logp)."""
    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    clipped = torch.maximum(loss1, loss2)
    dual = torch.minimum(clipped, -advantages * clip_ratio_c)
    per_token = torch.where(advantages < 0, dual, clipped)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean((loss2 > loss1).to(logp.dtype), mask, token_count).item(),
                 "approx_kl": masked_mean(-log_ratio, mask, token_count).item()}
    return masked_mean(per_token, mask, token_count), stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.5, token_count: float | torch.Tensor | None = None) -> torch.Tensor:
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask, token_count)


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref). The log-ratio is clamped *before* exp: a gap
    above ~88 would overflow to inf in float32, and the outer clamp's zero gradient times
    that inf is NaN."""
    d = (ref_logp - logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return (torch.exp(d) - d - 1.0).clamp(-KL_LIMIT, KL_LIMIT)


def entropy_from_logprobs(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution given its log-probabilities over the last dimension."""
    return -(logprobs.exp() * logprobs).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension, in float32 at least."""
    return entropy_from_logprobs(torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1))
