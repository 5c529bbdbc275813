"""The advantage estimators under study, each crediting every decision of every turn.

All are fed the critic's values (exact ones: the assumption under which docs/semantics.md §11 claims
unbiasedness). None normalises its advantages, so that bias and variance are the advantage
estimator's own: HAE's norm_adv and verl's whitening rescale a batch's advantages by one
random factor, a step-size effect left out here.
    hae        `hiper.hae_turns` with the released gamma = lam_turn = 1, lam_seg = 0.95
               (docs/semantics.md §9): switch <- A^T, subgoal <- A^H (segment starts), action <- A^L.
    token_gae  the authors' PPO (docs/semantics.md §8): the decisions are the tokens of the turn's
               response, its last token scores the episode reward, verl's token GAE with
               gamma = lam = 1 inside the turn, no bootstrap across turns. Each token's value
               is the exact value before it (U, V^H, V^L): the best critic flat PPO can have.
    turn_gae   GAE over turns, gamma = lam = 1, on the per-turn environment reward (the
               success reward on the last turn, of which U is the exact critic) with U at
               the turn start as the value; one advantage for all the turn's decisions.
    grpo       (R - mean) / (std + 1e-6) over all turns of a group of n trajectories
               (compute_mean_std_cross_steps=True); no critic. Biased and rescaled by
               construction: the baseline includes the sample itself and the std divides.
    Two controls that are not baselines of the paper: turn-level GAE with lam = 0.95
    (`turn_gae_095`) and lam = 0 (`turn_td`, one-step TD). Both are flat but bootstrap from
    the next turn's value, as HAE does at segment boundaries. With exact values every
    bootstrap is free of bias, so they separate what the hierarchy buys from what
    bootstrapping alone buys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

import hiper
from hiper.studies.credit.exact import Critic
from hiper.studies.credit.sampling import Rollout

HAE_LAM_SEG = 0.95  # the released lam_seg; gamma = lam_turn = 1 (docs/semantics.md §9)


class TurnBatch(NamedTuple):
    """A rollout with what every estimator reads from it: its layout, the critic's values
    at each turn's decision points (float32) and each turn's episode reward."""

    rollout: Rollout
    layout: hiper.TrajectoryLayout
    v_start: np.ndarray  # U_t(s_t, o_{t-1}) before the switch decision
    v_high: np.ndarray  # V^H_t(s_t)
    v_low: np.ndarray  # V^L_t(s_t, o_t)
    v_turn: np.ndarray  # the value at the start of the turn: U_t, or V^H_0 on turn 0
    episode_reward: np.ndarray


def prepare(rollout: Rollout, critic: Critic) -> TurnBatch:
    """Read the critic at every turn once, for all the estimators of a batch."""
    ro = rollout
    layout = hiper.build_layout(ro.trajectory, ro.turn, ro.switched)
    v_start = critic.start[ro.turn, ro.state, ro.prev_subgoal].astype(np.float32)
    v_high = critic.high[ro.turn, ro.state].astype(np.float32)
    v_low = critic.low[ro.turn, ro.state, ro.subgoal].astype(np.float32)
    v_turn = np.where(ro.turn == 0, v_high, v_start)
    return TurnBatch(ro, layout, v_start, v_high, v_low, v_turn, hiper.episode_returns(layout, ro.reward))


class Credit(NamedTuple):
    """The advantage credited to each decision of each turn, (N,). Entries of decisions the
    turn did not make (a switch on turn 0, a subgoal on KEEP turns) are ignored."""

    switch: np.ndarray
    subgoal: np.ndarray
    action: np.ndarray


# Every estimator maps (batch, GRPO group size) to a Credit; only GRPO reads the group size.


def _turn_credit(adv) -> Credit:
    """One advantage for all the decisions of a turn."""
    adv = np.asarray(adv, dtype=np.float64)
    return Credit(adv, adv, adv)


def hae_credit(batch: TurnBatch, group_size: int) -> Credit:
    """HAE: A^T to the switch, A^H to the subgoal (segment starts), A^L to the action. The
    termination value V^T is the value before the switch decision, U_t(s, o_prev)."""
    ro = batch.rollout
    out = hiper.hae_turns(batch.layout, ro.reward, ro.done, batch.v_low, batch.v_high, batch.v_start,
                          gamma=1.0, lam_turn=1.0, lam_seg=HAE_LAM_SEG)
    return Credit(*(np.asarray(a, dtype=np.float64) for a in (out.adv_term, out.adv_high, out.adv_low)))


def token_gae_credit(batch: TurnBatch, group_size: int) -> Credit:
    """The authors' PPO: tokens [switch?][subgoal?][action] left-aligned in each turn's row,
    the episode reward on the last one, token GAE with gamma = lam = 1 within the row."""
    ro = batch.rollout
    rows = np.arange(ro.turn.size)
    has_switch, has_subgoal = ro.turn > 0, ro.switched
    at_subgoal = has_switch.astype(np.int64)
    at_action = at_subgoal + has_subgoal
    values = np.zeros((rows.size, 3), dtype=np.float32)
    values[has_switch, 0] = batch.v_start[has_switch]
    values[rows[has_subgoal], at_subgoal[has_subgoal]] = batch.v_high[has_subgoal]
    values[rows, at_action] = batch.v_low
    mask = np.arange(3)[None, :] <= at_action[:, None]
    rewards = hiper.last_token_scores(batch.episode_reward, mask)
    adv = np.asarray(hiper.token_gae(rewards, values, mask, gamma=1.0, lam=1.0).advantages, dtype=np.float64)
    return Credit(adv[:, 0], adv[rows, at_subgoal], adv[rows, at_action])


def turn_gae_credit(batch: TurnBatch, group_size: int, lam: float = 1.0) -> Credit:
    """Turn-level GAE with gamma = 1, broadcast to the turn's decisions. lam = 1 is the
    baseline; lam < 1 bootstraps from the next turns' values (the controls)."""
    ro = batch.rollout
    return _turn_credit(hiper.turn_gae(batch.layout, ro.reward, ro.done, batch.v_turn, lam=lam).advantages)


def grpo_credit(batch: TurnBatch, group_size: int) -> Credit:
    """GRPO over consecutive groups of `group_size` trajectories, statistics over all turns."""
    groups = batch.rollout.trajectory // group_size
    return _turn_credit(hiper.group_advantages(batch.episode_reward, groups, mode="grpo"))


@dataclass(frozen=True)
class Estimator:
    """An advantage estimator under study: its key (JSON, --estimators), printed label,
    credit function, and whether it reads the critic (the noisy-critic variant)."""

    key: str
    label: str
    credit: Callable[[TurnBatch, int], Credit]
    uses_critic: bool = True


ESTIMATORS = {e.key: e for e in (
    Estimator("hae", "HAE", hae_credit),
    Estimator("token_gae", "flat GAE (token, PPO)", token_gae_credit),
    Estimator("turn_gae", "turn GAE", turn_gae_credit),
    Estimator("grpo", "GRPO", grpo_credit, uses_critic=False),
    Estimator("turn_gae_095", "turn GAE lam=0.95 (control)", partial(turn_gae_credit, lam=0.95)),
    Estimator("turn_td", "turn TD, lam=0 (control)", partial(turn_gae_credit, lam=0.0)),
)}
