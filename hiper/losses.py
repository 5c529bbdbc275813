"""PPO losses as HiPER trains with them (SPEC §5-§6). Every loss is a token-mean over its mask.

    policy:  max(-A r, -A clip(r, 1 - eps, 1 + eps)), and for A < 0 at most -c A (dual clip)
    value:   max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2)   (no 0.5 factor)
    kl:      low-variance estimator k3 = exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10]
"""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over mask (0 when the mask is empty)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip_ratio: float = 0.2, clip_ratio_c: float = 3.0) -> tuple[torch.Tensor, dict]:
    ratio = torch.exp(logp - old_logp)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    clipped = torch.maximum(loss1, loss2)
    dual = torch.minimum(clipped, -advantages * clip_ratio_c)
    per_token = torch.where(advantages < 0, dual, clipped)
    stats = {"clip_frac": masked_mean((loss2 > loss1).float(), mask).item(),
             "approx_kl": masked_mean(old_logp - logp, mask).item()}
    return masked_mean(per_token, mask), stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.5) -> torch.Tensor:
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    d = ref_logp - logp
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
