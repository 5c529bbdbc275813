"""Vectorised pure-PyTorch twins of the flat estimators (hiper.ops.flat).

The benchmark's "plain PyTorch" baseline and a second oracle for the tests. Like the HAE
twin: no Python loop over rows, turns or tokens; recurrences run as log-depth reverse
scans (`reverse_linear_scan`) over sorted turns or flattened tokens, group statistics as
index_add reductions. Everything in float64.
"""
from __future__ import annotations

import torch

from hiper.reference.hae_torch import TorchLayout, reverse_linear_scan


# Gathers and scatters use index_select / scatter_ rather than x[idx]: advanced indexing
# goes through a parallel kernel whose thread wake-up costs milliseconds on a busy machine.
def _sorted(lay: TorchLayout, x: torch.Tensor) -> torch.Tensor:
    return x.index_select(0, lay.order)


def _unsort(lay: TorchLayout, x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x).scatter_(0, lay.order, x)


def turn_gae(lay: TorchLayout, rewards, dones, values, gamma: float, lam: float, bootstrap_truncated: bool):
    """(advantages, returns) per row; values None means zero."""
    n = rewards.numel()
    r = _sorted(lay, rewards).double()
    d = _sorted(lay, dones).double()
    v = _sorted(lay, values).double() if values is not None else torch.zeros(n, dtype=torch.float64)
    is_last = torch.ones(n, dtype=torch.bool)
    is_last[:-1] = lay.new_traj[1:]
    v_next = torch.zeros(n, dtype=torch.float64)
    v_next[:-1] = v[1:]
    v_next = torch.where(is_last, v if bootstrap_truncated else torch.zeros_like(v), v_next)
    delta = r + gamma * (1 - d) * v_next - v
    span = int(lay.traj_len.max()) if n else 0
    adv = reverse_linear_scan(delta, torch.where(is_last, 0.0, gamma * lam * (1 - d)), span)
    return _unsort(lay, adv), _unsort(lay, adv + v)


def token_gae(token_rewards, values, response_mask, gamma: float, lam: float):
    """verl's masked token-level GAE, (N, L) each, 0 outside the mask."""
    n, length = token_rewards.shape
    m = response_mask.reshape(-1)
    valid = m.double()
    row_end = torch.zeros(n, length, dtype=torch.bool)
    row_end[:, -1] = True
    row_end = row_end.reshape(-1)
    v = values.reshape(-1).double() * valid
    # The value of the next valid token of the same row: scan that copies V at valid
    # tokens and passes the one after along through masked ones.
    pass_on = torch.where(m, 0.0, 1.0).double()
    pass_on[row_end] = 0.0
    carry = reverse_linear_scan(v, pass_on, length)
    v_next = torch.zeros_like(v)
    v_next[:-1] = carry[1:]
    v_next[row_end] = 0.0
    delta = (token_rewards.reshape(-1).double() + gamma * v_next - v) * valid
    coef = torch.where(m, torch.tensor(gamma * lam, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    coef[row_end] = 0.0
    adv = reverse_linear_scan(delta, coef, length) * valid
    return adv.view(n, length), ((adv + v) * valid).view(n, length)


def masked_whiten(x, mask, eps: float = 1e-8):
    """verl's masked_whiten (unbiased variance), 0 outside the mask."""
    w = mask.double()
    count = w.sum()
    mean = (x.double() * w).sum() / count.clamp_min(1)
    var = (((x.double() - mean) * w) ** 2).sum() / (count - 1).clamp_min(1)
    if int(count) < 2:
        var = torch.zeros((), dtype=torch.float64)
    return torch.where(mask, (x.double() - mean) * torch.rsqrt(var + eps), 0.0)


def episode_returns(lay: TorchLayout, rewards):
    r = _sorted(lay, rewards).double()
    totals = torch.zeros(lay.traj_len.numel(), dtype=torch.float64).index_add_(0, lay.traj_of, r)
    return _unsort(lay, totals.index_select(0, lay.traj_of))


def group_advantages(scores, groups, mode: str, samples=None, eps: float = 1e-6, singleton: str = "keep"):
    """GRPO ("grpo"), RLOO ("rloo") or centring ("center") per group; groups dense int64.
    A single-sample group has mean 0 ("keep") or its sample's score ("zero"), and std 1."""
    s = scores.double()
    w = torch.ones_like(s) if samples is None else samples.double()
    num = int(groups.max()) + 1 if groups.numel() else 0
    count = torch.zeros(num, dtype=torch.float64).index_add_(0, groups, w)
    mean = torch.zeros(num, dtype=torch.float64).index_add_(0, groups, s * w) / count.clamp_min(1)
    sq = torch.zeros(num, dtype=torch.float64).index_add_(0, groups, ((s - mean.index_select(0, groups)) ** 2) * w)
    std = torch.sqrt(sq / (count - 1).clamp_min(1))
    n = count.index_select(0, groups)
    single = n <= 1
    row_mean = mean.index_select(0, groups)
    mu = torch.where(single, 0.0, row_mean) if singleton == "keep" else row_mean
    if mode == "grpo":
        return (s - mu) / (torch.where(single, 1.0, std.index_select(0, groups)) + eps)
    if mode == "rloo":
        return torch.where(single, s - mu, (s - mu) * n / (n - 1).clamp_min(1))
    if mode == "center":
        return s - mu
    raise ValueError(f"mode: unknown {mode!r}")


def gigpo_advantages(lay: TorchLayout, scores, step_rewards, dones, groups, anchors, gamma: float,
                     step_weight: float, mode: str, eps: float = 1e-6, step_penalty=None):
    """groups and anchors: dense int64 codes; step_penalty: (N,) subtracted from each turn's
    own discounted step return (None: none)."""
    how = "center" if mode == "mean_norm" else "grpo"
    episode = group_advantages(scores, groups, how, eps=eps)
    _, step_return = turn_gae(lay, step_rewards, dones, None, gamma, 1.0, False)
    if step_penalty is not None:
        step_return = step_return - step_penalty.double()
    step_groups = torch.unique(groups * (int(anchors.max()) + 1) + anchors, return_inverse=True)[1]
    return episode + step_weight * group_advantages(step_return, step_groups, how, eps=eps, singleton="zero")
