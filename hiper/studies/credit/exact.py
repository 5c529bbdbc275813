"""The truth: J = P(success), the exact time-indexed values and dJ/dlogits.

The state space is finite, so J and its gradient are exact, by dynamic programming: a
backward pass gives the time-indexed values
    U_t(s, o_prev)  at the start of a turn (the flat critic; HAE's termination V^T),
    V^H_t(s)        once SWITCH is decided (HAE's high-level value),
    V^L_t(s, o)     once subgoal o is active (HAE's low-level value),
    Q_t(s, o, a)    after the action,
a forward pass the occupancy of each decision context, and the finite-horizon
policy-gradient theorem gives, for a softmax table, dJ/dtheta[x, j] = sum_t
occupancy_t(x) pi(j | x) (Q_t(x, j) - V_t(x)). The tests check it against finite
differences, and J against a brute-force walk of the decision tree.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hiper.studies.credit.policy import Policy, make_policy, skilled_logits
from hiper.studies.credit.task import KEEP, SWITCH, ChainTask


class Critic(NamedTuple):
    """Time-indexed values (see the module docstring).

    start (H, S, K): U_t(s, o_prev), before the switch decision.
    high (H, S): V^H_t(s), once SWITCH is decided, before the subgoal is drawn.
    low (H, S, K): V^L_t(s, o), once subgoal o is active, before the action.
    """

    start: np.ndarray
    high: np.ndarray
    low: np.ndarray


class ExactSolution(NamedTuple):
    """success: J, the probability of success within the horizon. critic: the exact values.
    gradient: (P,) dJ/dlogits in the order of `table_shapes`."""

    success: float
    critic: Critic
    gradient: np.ndarray


def _backward_values(task: ChainTask, pi: Policy, advance: np.ndarray) -> tuple[Critic, np.ndarray]:
    """Values of every turn, last turn first; also Q_t(s, o, a) (H, S, K, A)."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    start = np.zeros((H + 1, S, K))
    high = np.zeros((H, S))
    low = np.zeros((H, S, K))
    q = np.zeros((H, S, K, task.actions))
    last_step = (np.arange(S) == S - 1)[:, None]
    for t in range(H - 1, -1, -1):
        # Advancing from s leads to the next turn at s + 1 with o as the previous subgoal,
        # except from the last step, which is success: reward 1, nothing after.
        after_advance = np.where(last_step, 1.0, np.roll(start[t + 1], -1, axis=0))
        q[t] = advance * after_advance[..., None] + (1.0 - advance) * start[t + 1][..., None]
        low[t] = (pi.action * q[t]).sum(-1)
        high[t] = (pi.subgoal * low[t]).sum(-1)
        start[t] = pi.switch[..., KEEP] * low[t] + pi.switch[..., SWITCH] * high[t][:, None]
    return Critic(start[:H], high, low), q


def _occupancies(task: ChainTask, pi: Policy, advance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability that turn t makes each decision in each context: a switch decision in
    (s, o_prev) (H, S, K; none on turn 0), a subgoal draw in s (H, S), an action in (s, o)
    (H, S, K)."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    at_switch = np.zeros((H, S, K))
    at_subgoal = np.zeros((H, S))
    at_action = np.zeros((H, S, K))
    p_advance = (pi.action * advance).sum(-1)
    at_subgoal[0, 0] = 1.0
    for t in range(H):
        if t > 0:
            at_subgoal[t] = (at_switch[t] * pi.switch[..., SWITCH]).sum(-1)
        at_action[t] = at_switch[t] * pi.switch[..., KEEP] + at_subgoal[t][:, None] * pi.subgoal
        if t + 1 < H:
            moved = at_action[t] * p_advance
            at_switch[t + 1] = at_action[t] - moved
            at_switch[t + 1, 1:] += moved[:-1]  # moving on from the last step is success: gone
    return at_switch, at_subgoal, at_action


def solve_exactly(task: ChainTask, pi: Policy) -> ExactSolution:
    """J, the exact time-indexed values and dJ/dlogits by dynamic programming."""
    advance = task.advance_prob()
    critic, q = _backward_values(task, pi, advance)
    at_switch, at_subgoal, at_action = _occupancies(task, pi, advance)
    # Softmax tables: dJ/dtheta[x, j] = sum_t occupancy_t(x) pi(j | x) (Q_t(x, j) - V_t(x)).
    q_switch = np.stack([critic.low, np.broadcast_to(critic.high[..., None], critic.low.shape)], axis=-1)
    g_switch = (at_switch[..., None] * pi.switch * (q_switch - critic.start[..., None])).sum(0)
    g_subgoal = (at_subgoal[..., None] * pi.subgoal * (critic.low - critic.high[..., None])).sum(0)
    g_action = (at_action[..., None] * pi.action * (q - critic.low[..., None])).sum(0)
    gradient = np.concatenate([g_switch.ravel(), g_subgoal.ravel(), g_action.ravel()])
    return ExactSolution(float(critic.high[0, 0]), critic, gradient)


def success_probability(task: ChainTask, logits: np.ndarray) -> float:
    """J(logits), exactly (the backward pass alone)."""
    critic, _ = _backward_values(task, make_policy(task, logits), task.advance_prob())
    return float(critic.high[0, 0])


def calibrated_skill(task: ChainTask, target: float, noise_logits: np.ndarray,
                     low: float = -5.0, high: float = 15.0) -> float:
    """The skill s at which the policy `noise_logits + s * (right choices)` succeeds with
    probability `target`, by bisection (J grows with s)."""
    right = skilled_logits(task, 1.0)

    def success(skill: float) -> float:
        return success_probability(task, noise_logits + skill * right)

    if not success(low) <= target <= success(high):
        raise ValueError(f"target success {target} is out of reach for {task}: J ranges over "
                         f"[{success(low):.3g}, {success(high):.3g}] (a longer horizon or fewer steps helps)")
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if success(mid) < target else (low, mid)
    return 0.5 * (low + high)


def critic_error(task: ChainTask, sigma: float, rng: np.random.Generator) -> Critic:
    """An N(0, sigma^2) error per value-table entry, drawn once: added to the exact values
    it makes a critic that is wrong the same way on every visit, as a fitted one is."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    return Critic(*(sigma * rng.standard_normal(shape) for shape in ((H, S, K), (H, S), (H, S, K))))


def with_error(critic: Critic, error: Critic | None) -> Critic:
    return critic if error is None else Critic(*(v + e for v, e in zip(critic, error)))
