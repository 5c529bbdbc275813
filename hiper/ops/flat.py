"""Flat advantage estimators: the baselines HiPER is measured against (docs/semantics.md §8), on the
same per-turn rows and trajectory layout as HAE, backed by the compiled core.

    turn_gae            GAE over the turns of each trajectory (the authors' `turn_gae`)
    token_gae           verl's token-level GAE inside each response row (the authors' PPO)
    masked_whiten       verl's advantage whitening over all valid tokens
    episode_returns     every turn scored with its episode's total reward (verl's "episode"
                        reward manager, which every flat baseline of the paper uses)
    group_advantages    GRPO (z-score), RLOO (leave-one-out) and plain centring per group
    gigpo_advantages    GiGPO: episode groups plus step groups keyed by identical observations
    gigpo_step_returns  GiGPO's step returns (discounted, minus the invalid-action penalty)

Arguments are numpy arrays or CPU torch tensors; results come back in the caller's
framework, float32, row-aligned with the input. Recurrences and statistics run in float64.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, INT64, Allocator, optional_numpy, to_numpy
from hiper.ops.layout import TrajectoryLayout, check_rows, factorize
from hiper.ops.types import FlatOutputs

# Accepted names of the per-group transforms, mapped to the core's.
_GROUP_MODES = {"grpo": "zscore", "zscore": "zscore", "mean_std_norm": "zscore",
                "rloo": "leave_one_out", "leave_one_out": "leave_one_out",
                "center": "center", "mean_norm": "center"}


def turn_gae(layout: TrajectoryLayout, rewards: Any, dones: Any, values: Any = None, *, gamma: float = 1.0,
             lam: float = 1.0, bootstrap_truncated: bool = False) -> FlatOutputs:
    """GAE over the turns of each trajectory: A_t = r_t + g (1-d_t) V_{t+1} - V_t
    + g lam (1-d_t) A_{t+1}, R_t = A_t + V_t.

    values: (N,) V read at each turn's first response token, or None (zero: R_t is then the
    discounted return-to-go). A trajectory whose last turn is not done is truncated; with
    bootstrap_truncated the value past its end is V(last turn), as HAE bootstraps.
    """
    r = to_numpy(rewards, "rewards", FLOAT32, ndim=1)
    check_rows(layout, r, "rewards")
    d = to_numpy(dones, "dones", BOOL, ndim=1)
    check_rows(layout, d, "dones")
    v = optional_numpy(values, "values", FLOAT32, ndim=1)
    if v is not None:
        check_rows(layout, v, "values")
    alloc = Allocator(rewards)
    (adv, adv_view), (ret, ret_view) = alloc.empty(r.shape, FLOAT32), alloc.empty(r.shape, FLOAT32)
    _C.turn_gae(layout.core, r, d, v, float(gamma), float(lam), bool(bootstrap_truncated), adv_view, ret_view)
    return FlatOutputs(adv, ret)


def token_gae(token_rewards: Any, values: Any, response_mask: Any, *, gamma: float = 1.0,
              lam: float = 1.0) -> FlatOutputs:
    """verl's token-level GAE, each (N, L) row on its own: the recursion runs over the
    tokens under `response_mask` (others are skipped, their rewards and values unread, and
    get 0), with no value past the row's last valid token. With right-padded responses and
    values zeroed on padding this is exactly verl's `compute_gae_advantage_return`."""
    r = to_numpy(token_rewards, "token_rewards", FLOAT32, ndim=2)
    v = to_numpy(values, "values", FLOAT32, ndim=2)
    m = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
    for name, arr in (("values", v), ("response_mask", m)):
        if arr.shape != r.shape:
            raise ValueError(f"{name}: expected shape {tuple(r.shape)} like token_rewards, got {tuple(arr.shape)}")
    alloc = Allocator(token_rewards)
    (adv, adv_view), (ret, ret_view) = alloc.empty(r.shape, FLOAT32), alloc.empty(r.shape, FLOAT32)
    _C.token_gae(r, v, m, float(gamma), float(lam), adv_view, ret_view)
    return FlatOutputs(adv, ret)


def masked_whiten(x: Any, mask: Any, *, eps: float = 1e-8):
    """verl's `masked_whiten`: (x - mean) / sqrt(var + eps) with the mean and the unbiased
    variance over the masked elements of the whole batch; 0 outside the mask (verl leaves
    values there that no loss reads). Fewer than two masked elements: variance 0.

    x, mask: (N, L) token values (PPO's advantages), or (N,) per-turn values (turn-level
    GAE's advantages, whitened over turns).
    """
    a = to_numpy(x, "x", FLOAT32)
    if a.ndim not in (1, 2):
        raise ValueError(f"x: expected shape (N,) or (N, L), got {tuple(a.shape)}")
    m = to_numpy(mask, "mask", BOOL)
    if m.shape != a.shape:
        raise ValueError(f"mask: expected shape {tuple(a.shape)} like x, got {tuple(m.shape)}")
    result, view = Allocator(x).empty(a.shape, FLOAT32)
    as_rows = a.shape if a.ndim == 2 else (a.shape[0], 1)  # the core takes (N, L); (N,) is (N, 1)
    _C.whiten(a.reshape(as_rows), m.reshape(as_rows), float(eps), view.reshape(as_rows))
    return result


def episode_returns(layout: TrajectoryLayout, rewards: Any):
    """(N,) float32: each row receives the sum of its trajectory's rewards."""
    r = to_numpy(rewards, "rewards", FLOAT32, ndim=1)
    check_rows(layout, r, "rewards")
    result, view = Allocator(rewards).empty(r.shape, FLOAT32)
    _C.episode_totals(layout.core, r, view)
    return result


def first_turns(layout: TrajectoryLayout) -> np.ndarray:
    """(N,) bool: the first turn of every trajectory. As `samples` of `group_advantages`,
    each trajectory counts once in its group's statistics (verl's
    compute_mean_std_cross_steps=False) instead of once per turn."""
    flags = np.zeros(layout.num_rows, dtype=bool)
    flags[layout.order[layout.traj_offsets[:-1]]] = True
    return flags


def _dense_groups(groups: Any, name: str) -> tuple[np.ndarray, int]:
    codes = to_numpy(factorize(groups), name, INT64, ndim=1)
    if codes.size == 0:
        return codes, 0
    if codes.min() < 0:
        raise ValueError(f"{name}: integer group ids must be >= 0, got {int(codes.min())}")
    uniques, dense = np.unique(codes, return_inverse=True)
    return dense.astype(np.int64, copy=False).reshape(-1), int(uniques.size)


def group_advantages(scores: Any, groups: Any, *, mode: str = "grpo", samples: Any = None, eps: float = 1e-6,
                     singleton: str = "keep"):
    """Per-row advantages from per-group statistics of per-row scores.

    groups: (N,) group of every row (integers or any hashables), e.g. the prompt / game
        uid shared by the n rollouts of one task.
    mode: "grpo" ((x - mean) / (std + eps), unbiased std), "rloo" (n/(n-1) (x - mean): x
        minus the mean of the other samples) or "center" (x - mean).
    samples: (N,) bool rows entering the statistics (None: all; `first_turns(layout)`: one
        sample per trajectory). Every row receives an advantage.
    singleton: a group with a single sample either keeps x ("keep": mean 0 and std 1, so x
        is divided by 1 + eps under "grpo"), as verl's GRPO and RLOO do, or gets 0 ("zero":
        its own score is the mean), as GiGPO's step groups do.
    """
    if mode not in _GROUP_MODES:
        raise ValueError(f"mode: expected one of {sorted(_GROUP_MODES)}, got {mode!r}")
    if singleton not in ("keep", "zero"):
        raise ValueError(f"singleton: expected 'keep' or 'zero', got {singleton!r}")
    s = to_numpy(scores, "scores", FLOAT32, ndim=1)
    dense, num_groups = _dense_groups(groups, "groups")
    if dense.shape[0] != s.shape[0]:
        raise ValueError(f"groups: expected {s.shape[0]} rows like scores, got {dense.shape[0]}")
    smp = optional_numpy(samples, "samples", BOOL, ndim=1)
    result, view = Allocator(scores).empty(s.shape, FLOAT32)
    _C.group_normalize(s, dense, num_groups, smp, _GROUP_MODES[mode], singleton, float(eps), view)
    return result


def gigpo_step_returns(layout: TrajectoryLayout, step_rewards: Any, dones: Any, *, gamma: float = 0.95,
                       step_penalty: Any = None):
    """GiGPO's per-turn step returns, (N,) float32: the discounted return-to-go of
    `step_rewards` (per-turn environment rewards, discount `gamma`), minus each turn's own
    `step_penalty` (N,), which is not discounted into earlier turns. This is the authors'
    order: `compute_step_discounted_returns` on the raw rewards, then
    `apply_invalid_action_penalty` subtracting coef * (1 - is_action_valid) from each row's
    step return. None: no penalty."""
    returns = turn_gae(layout, step_rewards, dones, None, gamma=gamma, lam=1.0).returns
    if step_penalty is None:
        return returns
    penalty = to_numpy(step_penalty, "step_penalty", FLOAT32, ndim=1)
    check_rows(layout, penalty, "step_penalty")
    if not np.isfinite(penalty).all():
        raise ValueError("step_penalty: contains NaN or infinity")
    out = to_numpy(returns, "returns", FLOAT32)  # a view of the fresh result, in place
    np.subtract(out, penalty, out=out)
    return returns


def gigpo_advantages(layout: TrajectoryLayout, scores: Any, step_rewards: Any, dones: Any, groups: Any,
                     anchors: Any, *, gamma: float = 0.95, step_weight: float = 1.0, mode: str = "mean_norm",
                     eps: float = 1e-6, samples: Any = None, step_penalty: Any = None):
    """GiGPO: A = A_episode + step_weight * A_step, (N,) float32.

    A_episode: `scores` (each turn's episode score) normalised within its episode group.
    A_step: the step returns (`gigpo_step_returns`: discounted return-to-go of the per-turn
    environment rewards `step_rewards`, minus `step_penalty`, e.g. the invalid-action
    penalty coef * (1 - is_action_valid)) normalised within its step group: the turns of
    one episode group whose observations (`anchors`, any hashables such as the observation
    text) are identical. A turn alone in its step group gets A_step = 0 (its own return is
    the mean). Grouping is a hash, not the authors' pairwise comparison: linear in N.
    mode: "mean_norm" (centre) or "mean_std_norm" (z-score), for both levels.
    """
    step_return = gigpo_step_returns(layout, step_rewards, dones, gamma=gamma, step_penalty=step_penalty)
    return gigpo_combine(scores, step_return, groups, anchors, step_weight=step_weight, mode=mode, eps=eps,
                         samples=samples)


def gigpo_combine(scores: Any, step_returns: Any, groups: Any, anchors: Any, *, step_weight: float = 1.0,
                  mode: str = "mean_norm", eps: float = 1e-6, samples: Any = None):
    """GiGPO from per-turn step returns already computed (`gigpo_step_returns`): the part
    that needs every row of a group, so a data-parallel trainer runs it on the rows
    gathered from all ranks."""
    if mode not in ("mean_norm", "mean_std_norm"):
        raise ValueError(f"mode: expected 'mean_norm' or 'mean_std_norm', got {mode!r}")
    episode = group_advantages(scores, groups, mode=mode, samples=samples, eps=eps)
    group_codes, _ = _dense_groups(groups, "groups")
    anchor_codes, num_anchors = _dense_groups(anchors, "anchors")
    if anchor_codes.shape[0] != group_codes.shape[0]:
        raise ValueError(f"anchors: expected {group_codes.shape[0]} rows like groups, got {anchor_codes.shape[0]}")
    step_groups = group_codes * max(num_anchors, 1) + anchor_codes
    step = group_advantages(step_returns, step_groups, mode=mode, eps=eps, singleton="zero")
    return episode + float(step_weight) * step


def last_token_scores(turn_scores: Any, response_mask: Any):
    """(N, L) float32 token rewards: each row's score on its last valid response token, 0
    elsewhere (rows without a valid token get nothing), as verl's reward managers place it."""
    s = to_numpy(turn_scores, "turn_scores", FLOAT32, ndim=1)
    m = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
    if m.shape[0] != s.shape[0]:
        raise ValueError(f"response_mask: expected {s.shape[0]} rows like turn_scores, got {m.shape[0]}")
    result, view = Allocator(turn_scores).empty(m.shape, FLOAT32)
    view.fill(0.0)
    mb = m if m.dtype == np.bool_ else m != 0
    has_token = mb.any(axis=1)
    last = m.shape[1] - 1 - np.argmax(mb[:, ::-1], axis=1)
    rows = np.nonzero(has_token)[0]
    view[rows, last[rows]] = s[rows]
    return result


def broadcast_to_tokens(turn_values: Any, response_mask: Any):
    """(N, L) float32: each row's value on all its valid response tokens, 0 elsewhere."""
    v = to_numpy(turn_values, "turn_values", FLOAT32, ndim=1)
    m = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
    if m.shape[0] != v.shape[0]:
        raise ValueError(f"response_mask: expected {v.shape[0]} rows like turn_values, got {m.shape[0]}")
    result, view = Allocator(turn_values).empty(m.shape, FLOAT32)
    np.multiply(v[:, None], m if m.dtype == np.bool_ else m != 0, out=view)
    return result
