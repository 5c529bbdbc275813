"""Sequential float64 flat estimators, one trajectory, row and token at a time (docs/semantics.md §8).

The oracle the compiled flat estimators are tested against, written the way verl and the
authors' code state them (dictionaries of group scores, per-token reverse loops).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from hiper.reference.hae_loops import group_trajectories


def turn_gae(traj_ids, turn_idx, rewards, dones, values=None, *, gamma=1.0, lam=1.0, bootstrap_truncated=False):
    n = len(rewards)
    adv, ret = np.zeros(n), np.zeros(n)
    for rows in group_trajectories(traj_ids, turn_idx).values():
        v = [0.0 if values is None else float(values[row]) for row in rows]
        next_value = v[-1] if bootstrap_truncated else 0.0
        next_adv = 0.0
        for pos in reversed(range(len(rows))):
            row = rows[pos]
            not_done = 0.0 if dones[row] else 1.0
            a = float(rewards[row]) + gamma * not_done * next_value - v[pos] + gamma * lam * not_done * next_adv
            adv[row], ret[row] = a, a + v[pos]
            next_value, next_adv = v[pos], a
    return adv, ret


def token_gae(token_rewards, values, response_mask, *, gamma=1.0, lam=1.0):
    """verl's compute_gae_advantage_return with masked tokens skipped (verl >= 0.4)."""
    n, length = np.shape(token_rewards)
    adv, ret = np.zeros((n, length)), np.zeros((n, length))
    for i in range(n):
        next_value, last_gae = 0.0, 0.0
        for t in reversed(range(length)):
            if not response_mask[i][t]:
                continue
            delta = float(token_rewards[i][t]) + gamma * next_value - float(values[i][t])
            last_gae = delta + gamma * lam * last_gae
            adv[i, t], ret[i, t] = last_gae, last_gae + float(values[i][t])
            next_value = float(values[i][t])
    return adv, ret


def token_gae_unmasked(token_rewards, values, response_mask, *, gamma=1.0, lam=1.0):
    """The older verl loop (the authors' PPO baseline): every position of the row, values
    zeroed outside the response mask; equal to `token_gae` on right-padded rows."""
    r = np.asarray(token_rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64) * np.asarray(response_mask)
    n, length = r.shape
    adv = np.zeros((n, length))
    last_gae = np.zeros(n)
    for t in reversed(range(length)):
        next_values = v[:, t + 1] if t < length - 1 else 0.0
        delta = r[:, t] + gamma * next_values - v[:, t]
        last_gae = delta + gamma * lam * last_gae
        adv[:, t] = last_gae
    return adv * np.asarray(response_mask), (adv + v) * np.asarray(response_mask)


def masked_whiten(x, mask, eps=1e-8):
    """verl's masked_whiten over every masked element, of (N, L) tokens or (N,) turns."""
    flat_x, flat_mask = np.ravel(x), np.ravel(mask)
    vals = [float(v) for v, m in zip(flat_x, flat_mask) if m]
    out = np.zeros(len(flat_x))
    if vals:
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
        for k, (v, m) in enumerate(zip(flat_x, flat_mask)):
            if m:
                out[k] = (float(v) - mean) / math.sqrt(var + eps)
    return out.reshape(np.shape(x))


def episode_returns(traj_ids, turn_idx, rewards):
    out = np.zeros(len(rewards))
    for rows in group_trajectories(traj_ids, turn_idx).values():
        total = sum(float(rewards[row]) for row in rows)
        for row in rows:
            out[row] = total
    return out


def group_advantages(scores, groups, mode="grpo", samples=None, eps=1e-6, singleton="keep"):
    """verl's compute_grpo_outcome_advantage / compute_rloo_outcome_advantage on per-row scores.
    A single-sample group has mean 0 ("keep", verl) or its sample's score ("zero", GiGPO's
    step_norm_reward), and std 1."""
    id2score = defaultdict(list)
    for i, g in enumerate(groups):
        if samples is None or samples[i]:
            id2score[g].append(float(scores[i]))
    out = np.zeros(len(scores))
    for i, g in enumerate(groups):
        vals = id2score.get(g, [])
        n = len(vals)
        if n <= 1:
            mean = vals[0] if singleton == "zero" and vals else 0.0
            std = 1.0
        else:
            mean = sum(vals) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        x = float(scores[i])
        if mode == "grpo":
            out[i] = (x - mean) / (std + eps)
        elif mode == "rloo":
            out[i] = x * n / (n - 1) - mean * n / (n - 1) if n > 1 else x - mean
        elif mode == "center":
            out[i] = x - mean
        else:
            raise ValueError(mode)
    return out


def gigpo_advantages(traj_ids, turn_idx, scores, step_rewards, dones, groups, anchors, *, gamma=0.95,
                     step_weight=1.0, mode="mean_norm", eps=1e-6, step_penalty=None):
    """The authors' GiGPO: step returns discounted first, then each row's own penalty
    subtracted (apply_invalid_action_penalty on step_rewards); step groups of one turn
    score 0 (step_norm_reward)."""
    how = "center" if mode == "mean_norm" else "grpo"
    episode = group_advantages(scores, groups, how, eps=eps)
    _, step_return = turn_gae(traj_ids, turn_idx, step_rewards, dones, None, gamma=gamma, lam=1.0)
    if step_penalty is not None:
        for row in range(len(step_return)):
            step_return[row] -= float(step_penalty[row])
    step_groups = [(g, a) for g, a in zip(groups, anchors)]
    return episode + step_weight * group_advantages(step_return, step_groups, how, eps=eps, singleton="zero")
