"""Sampled episodes of the task under a policy, all trajectories stepped together turn by turn."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hiper.studies.credit.policy import Policy
from hiper.studies.credit.task import SWITCH, ChainTask


class Rollout(NamedTuple):
    """Sampled turns, one row per turn, ordered by (trajectory, turn).

    trajectory, turn, state, prev_subgoal (0 on turn 0, unused there), subgoal (the active
    o_t), action: (N,) int64. switched (N,) bool: a subgoal was drawn this turn (turn 0 or
    SWITCH). reward (N,) float32: 1 on the success turn. done (N,) bool: success or turn H-1.
    """

    trajectory: np.ndarray
    turn: np.ndarray
    state: np.ndarray
    prev_subgoal: np.ndarray
    switched: np.ndarray
    subgoal: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    num_trajectories: int


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of (n, k) probabilities."""
    u = rng.random((probs.shape[0], 1))
    return np.minimum((probs.cumsum(axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1)


def sample_rollouts(task: ChainTask, pi: Policy, n: int, rng: np.random.Generator) -> Rollout:
    """n independent episodes, stepped together turn by turn."""
    if n < 1:
        raise ValueError(f"n: expected at least 1 trajectory, got {n}")
    H, S = task.horizon, task.num_states
    need, correct = task.needed_subgoal(), task.correct_action()
    names = ("state", "prev_subgoal", "switched", "subgoal", "action", "success", "alive")
    cols = {name: np.zeros((n, H), dtype=bool if name in ("switched", "success", "alive") else np.int64)
            for name in names}
    state = np.zeros(n, dtype=np.int64)
    prev = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for t in range(H):
        switched = np.ones(n, dtype=bool) if t == 0 else rng.random(n) < pi.switch[state, prev, SWITCH]
        subgoal = np.where(switched, _categorical(pi.subgoal[state], rng), prev)
        action = _categorical(pi.action[state, subgoal], rng)
        advance = (subgoal == need[state]) & (action == correct[state]) & (rng.random(n) >= task.slip)
        success = advance & (state == S - 1)
        for name, value in zip(names, (state, prev, switched, subgoal, action, success, alive)):
            cols[name][:, t] = value
        alive = alive & ~success
        state = np.minimum(state + advance, S - 1)
        prev = subgoal
    keep = cols.pop("alive")
    turn = np.broadcast_to(np.arange(H), (n, H))[keep]
    success = cols.pop("success")[keep]
    return Rollout(
        trajectory=np.broadcast_to(np.arange(n)[:, None], (n, H))[keep],
        turn=turn,
        reward=success.astype(np.float32),
        done=success | (turn == H - 1),
        num_trajectories=n,
        **{name: col[keep] for name, col in cols.items()},
    )
