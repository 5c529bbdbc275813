"""Advantage estimators the trainer can use, on one packed rollout batch.

`hae` is HiPER's estimator (hiper.hae_pipeline, on the device of the batch's tensors).
The flat baselines follow the authors' baselines (docs/semantics.md §8), built from hiper.ops.flat:

    gae        PPO with verl's token-level GAE: every turn's last response token carries the
               turn's score, GAE runs inside each response (no cross-turn bootstrap),
               advantages whitened over all valid tokens; the critic regresses every token.
    turn_gae   GAE over the turns of a trajectory with V read at each turn's first response
               token; advantages whitened over the batch's turns (verl's masked_whiten) and
               broadcast to the response; the critic is trained at the first token only.
    grpo       no critic: (score - group mean) / (group std + eps) over all turns of a group.
    rloo       no critic: score minus the mean of the group's other samples.
    gigpo      no critic: episode-group advantage plus the step-group advantage of the
               discounted return-to-go minus the turn's invalid-action penalty, step groups
               keyed by identical observations (a turn alone in its step group gets 0).

A turn's score is its episode's total reward under the "episode" reward (the reward
manager of every flat baseline in the paper) or its own environment reward under "turn",
minus the invalid-action penalty. Groups are the rollouts of one task (`group_size` copies
of each game in the trainer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hiper.config import HAEConfig
from hiper.distributed import LOCAL, Reducer
from hiper.hae_pipeline import hae_for_responses
from hiper.ops.flat import (
    broadcast_to_tokens,
    episode_returns,
    gigpo_combine,
    gigpo_step_returns,
    group_advantages,
    last_token_scores,
    masked_whiten,
    token_gae,
    turn_gae,
)
from hiper.ops.layout import TrajectoryLayout

ESTIMATORS = ("hae", "gae", "turn_gae", "grpo", "rloo", "gigpo")
CRITIC_FREE = frozenset({"grpo", "rloo", "gigpo"})
FLAT_REWARDS = ("episode", "turn")          # what scores a turn: its episode's total, or its own reward
GIGPO_MODES = ("mean_norm", "mean_std_norm")  # GiGPO's group normalisation: centre, or z-score


def needs_critic(estimator: str) -> bool:
    check_estimator(estimator)
    return estimator not in CRITIC_FREE


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {estimator!r}")


@dataclass
class FlatConfig:
    gamma: float = 1.0
    lam: float = 1.0
    norm_adv: bool = True
    bootstrap_truncated: bool = True    # turn_gae only (token GAE never crosses a turn)
    reward: str = "episode"             # "episode" or "turn": what scores a turn
    invalid_action_penalty_coef: float = 0.1
    group_eps: float = 1e-6
    gigpo_gamma: float = 0.95
    gigpo_step_weight: float = 1.0
    gigpo_mode: str = "mean_norm"

    def __post_init__(self) -> None:
        for name in ("gamma", "lam", "gigpo_gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
        for name in ("invalid_action_penalty_coef", "group_eps", "gigpo_step_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if self.reward not in FLAT_REWARDS:
            raise ValueError(f"reward: expected one of {', '.join(FLAT_REWARDS)}, got {self.reward!r}")
        if self.gigpo_mode not in GIGPO_MODES:
            raise ValueError(f"gigpo_mode: expected one of {', '.join(GIGPO_MODES)}, got {self.gigpo_mode!r}")


@dataclass
class FlatAdvantages:
    """Token-level results, (N, L) each. returns / value_mask are None without a critic."""

    advantages: torch.Tensor
    loss_mask: torch.Tensor
    returns: torch.Tensor | None = None
    value_mask: torch.Tensor | None = None


def turn_scores(layout: TrajectoryLayout, rewards: Any, is_action_valid: Any, cfg: FlatConfig) -> np.ndarray:
    """(N,) float32 score of each turn: episode total (or own reward) - invalid penalty."""
    rewards = np.asarray(rewards, dtype=np.float32)
    if cfg.reward == "episode":
        base = episode_returns(layout, rewards)
    elif cfg.reward == "turn":
        base = rewards
    else:
        raise ValueError(f"reward: expected 'episode' or 'turn', got {cfg.reward!r}")
    valid = np.asarray(is_action_valid, dtype=np.float32)
    return (base - cfg.invalid_action_penalty_coef * np.maximum(0.0, 1.0 - valid)).astype(np.float32)


def first_token_mask(response_mask: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: each row's first valid response token."""
    first = torch.zeros_like(response_mask)
    has = response_mask.any(dim=1)
    idx = response_mask.to(torch.uint8).argmax(dim=1)
    first[has, idx[has]] = True
    return first


def flat_advantages(estimator: str, layout: TrajectoryLayout, *, rewards: Any, dones: Any, is_action_valid: Any,
                    response_mask: torch.Tensor, values: torch.Tensor | None = None, groups: Any = None,
                    anchors: Any = None, config: FlatConfig | None = None,
                    reducer: Reducer = LOCAL) -> FlatAdvantages:
    """Advantages of a flat baseline for rows laid out by `layout`.

    response_mask: (N, L) bool. values: (N, L) float critic values (gae, turn_gae).
    groups: (N,) task group of every row (grpo, rloo, gigpo), global across ranks.
    anchors: (N,) hashable observation of every turn (gigpo).
    reducer: when these rows are one rank's share of a data-parallel batch, the statistics
        over the whole batch (whitening, normalisation, groups) are taken across ranks.
    """
    check_estimator(estimator)
    if estimator == "hae":
        raise ValueError("estimator: 'hae' is computed by hae_advantages (hiper.hae_pipeline)")
    cfg = config or FlatConfig()
    resp = response_mask.bool()
    scores = turn_scores(layout, rewards, is_action_valid, cfg)
    if estimator in ("gae", "turn_gae") and values is None:
        raise ValueError(f"values: estimator {estimator!r} needs critic values")
    if estimator in ("grpo", "rloo", "gigpo") and groups is None:
        raise ValueError(f"groups: estimator {estimator!r} needs the task group of every row")

    if estimator == "gae":
        token_rewards = last_token_scores(torch.from_numpy(scores), resp)
        adv, ret = token_gae(token_rewards, values.float(), resp, gamma=cfg.gamma, lam=cfg.lam)
        if cfg.norm_adv:
            full_adv, rows = reducer.gather(adv.numpy())
            full_mask, _ = reducer.gather(resp.numpy())
            adv = torch.from_numpy(masked_whiten(full_adv, full_mask)[rows].copy())
        return FlatAdvantages(adv, resp, ret, resp)

    if estimator == "turn_gae":
        first = first_token_mask(resp)
        v = (values.float() * first).sum(dim=1)
        adv, ret = turn_gae(layout, torch.from_numpy(scores), torch.as_tensor(np.asarray(dones, dtype=bool)), v,
                            gamma=cfg.gamma, lam=cfg.lam, bootstrap_truncated=cfg.bootstrap_truncated)
        if cfg.norm_adv:  # verl's masked_whiten over the turns of the whole batch, as the authors whiten
            full_adv, rows = reducer.gather(adv.numpy())
            adv = torch.from_numpy(masked_whiten(full_adv, np.ones(full_adv.shape, dtype=bool))[rows].copy())
        return FlatAdvantages(broadcast_to_tokens(adv, resp), resp, broadcast_to_tokens(ret, first), first)

    # Group estimators: the statistics need every row of a group, wherever it was rolled out.
    full_scores, rows = reducer.gather(scores)
    full_groups, _ = reducer.gather(np.asarray(groups))
    if estimator == "gigpo":
        if anchors is None:
            raise ValueError("anchors: estimator 'gigpo' needs the observation of every turn")
        # The invalid-action penalty reaches the step part too: the authors subtract it from
        # each turn's own discounted step return (apply_invalid_action_penalty on step_rewards).
        valid = np.asarray(is_action_valid, dtype=np.float32)
        penalty = (cfg.invalid_action_penalty_coef * np.maximum(0.0, 1.0 - valid)).astype(np.float32)
        step_return = gigpo_step_returns(layout, np.asarray(rewards, dtype=np.float32), np.asarray(dones, dtype=bool),
                                         gamma=cfg.gigpo_gamma, step_penalty=penalty)
        full_steps, _ = reducer.gather(step_return)
        full_anchors, _ = reducer.gather(np.asarray(anchors, dtype=object))
        adv = gigpo_combine(full_scores, full_steps, full_groups, full_anchors, step_weight=cfg.gigpo_step_weight,
                            mode=cfg.gigpo_mode, eps=cfg.group_eps)
    else:
        adv = group_advantages(full_scores, full_groups, mode=estimator, eps=cfg.group_eps)
    return FlatAdvantages(broadcast_to_tokens(torch.from_numpy(np.ascontiguousarray(adv[rows])), resp), resp)


def hae_advantages(batch, spans, values: torch.Tensor, masker, config: HAEConfig,
                   head_coefs: tuple[float, float, float] = (1.0, 1.0, 1.0), reducer: Reducer = LOCAL):
    """HAE on a packed rollout batch: (token advantages, loss mask, critic targets).

    spans: the masker's output for batch.responses (with include_tags=True); values:
    (N, L, 3) low / high / term head values. Critic targets are (head, returns, mask, coef),
    one per head, at the positions its values are read (docs/semantics.md §4.2). Runs where
    batch.responses are (hiper.hae_pipeline), and the results are there.
    """
    hae = hae_for_responses(
        batch.responses, batch.response_mask, {"low": values[..., 0], "high": values[..., 1], "term": values[..., 2]},
        traj_ids=batch.env_ids, turn_idx=batch.turn_idx, dones=batch.dones, rewards=batch.rewards,
        is_action_valid=batch.is_action_valid, masker=masker, config=config, spans=spans, reducer=reducer)
    out, vmasks, resp = hae.outputs, hae.value_masks, batch.response_mask
    loss_mask = (out["hae_lo_mask"] | out["hae_hi_mask"] | out["hae_term_mask"]) & resp
    targets = [(0, out["returns_low"], vmasks.value_mask_low & resp, head_coefs[0]),
               (1, out["returns_high"], vmasks.value_mask_high & resp, head_coefs[1]),
               (2, out["returns_term"], vmasks.value_mask_term & resp, head_coefs[2])]
    return out["advantages"], loss_mask, targets


def estimate(estimator: str, batch, *, spans, values: torch.Tensor | None, masker, groups: Any, observations: Any,
             hae_config: HAEConfig, flat_config: FlatConfig,
             head_coefs: tuple[float, float, float] = (1.0, 1.0, 1.0), reducer: Reducer = LOCAL):
    """Any estimator on a packed rollout batch: (token advantages, loss mask, critic targets).

    batch: a hiper.buffer.PackedBatch (or any object with its fields); spans: the masker's
    output with include_tags=True; values: (N, L, 3) critic values (None without a critic);
    groups: (N,) global task ids; observations: (N,) the text each turn saw (GiGPO).
    Critic targets are (head, returns, mask, coef) tuples, empty without a critic.
    """
    check_estimator(estimator)
    if estimator == "hae":
        return hae_advantages(batch, spans, values, masker, hae_config, head_coefs=head_coefs, reducer=reducer)
    flat = flat_advantages(estimator, batch.layout, rewards=batch.rewards.numpy(), dones=batch.dones.numpy(),
                           is_action_valid=batch.is_action_valid.numpy(), response_mask=batch.response_mask,
                           values=None if values is None else values[..., 0], groups=groups, anchors=observations,
                           config=flat_config, reducer=reducer)
    resp = batch.response_mask
    targets = [] if flat.returns is None else [(0, flat.returns, flat.value_mask & resp, 1.0)]
    return flat.advantages, flat.loss_mask & resp, targets
