"""A synthetic rollout batch in the verl layout: the embedded default for demos and benchmarks.

Trajectories of random length (up to `max_turns`), each turn a Plan-Execute response of
random length whose token spans are laid out as <switch>…</switch><subgoal>…</subgoal>
<action>…</action>, rows shuffled as a trainer's batch balancing would leave them. Built
with vectorised numpy: no Python loop over rows or tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class RolloutBatch:
    """verl-style container: `.batch` holds (N, L) tensors, `.non_tensor_batch` (N,) arrays."""

    batch: dict = field(default_factory=dict)
    non_tensor_batch: dict = field(default_factory=dict)
    action_mask: torch.Tensor | None = None
    subgoal_mask: torch.Tensor | None = None
    switch_mask: torch.Tensor | None = None

    @property
    def num_rows(self) -> int:
        return int(self.batch["response_mask"].shape[0])


def synthetic_rollout_batch(num_traj: int = 128, *, max_turns: int = 50, length: int = 512, seed: int = 0,
                            min_turns: int = 5, p_switch: float = 0.5, p_success: float = 0.6,
                            mean_response: int = 64, vocab: int = 49152) -> RolloutBatch:
    rng = np.random.default_rng(seed)
    turns_per_traj = rng.integers(min_turns, max_turns + 1, size=num_traj)
    n = int(turns_per_traj.sum())
    traj = np.repeat(np.arange(num_traj), turns_per_traj)
    starts = np.repeat(np.cumsum(turns_per_traj) - turns_per_traj, turns_per_traj)
    turn = np.arange(n) - starts
    last = turn == turns_per_traj[traj] - 1
    success = rng.random(num_traj) < p_success
    # Successful episodes end done with reward 10; the others hit the step cap (truncated).
    dones = last & success[traj]
    rewards = np.where(dones, 10.0, 0.0).astype(np.float32)

    resp_len = np.clip(rng.geometric(1.0 / mean_response, size=n) + 16, 16, length)
    sw_end = np.minimum(resp_len, 6)
    sub_end = np.minimum(resp_len, sw_end + rng.integers(3, 16, size=n))
    pos = np.arange(length)[None, :]
    response_mask = pos < resp_len[:, None]
    switch_mask = pos < sw_end[:, None]
    subgoal_mask = (pos >= sw_end[:, None]) & (pos < sub_end[:, None])
    action_mask = (pos >= sub_end[:, None]) & response_mask
    first_token = pos == 0
    after_subgoal = pos == np.minimum(sub_end, resp_len - 1)[:, None]

    switch = rng.random(n) < p_switch
    boundary = switch | (turn == 0)
    perm = rng.permutation(n)
    g = torch.Generator().manual_seed(seed)

    def rows(x):
        return torch.from_numpy(np.ascontiguousarray(x[perm]))

    b = RolloutBatch()
    b.batch = {
        "responses": torch.randint(0, vocab, (n, length), generator=g),
        "response_mask": rows(response_mask),
        "value_low": torch.randn(n, length, generator=g),
        "value_high": torch.randn(n, length, generator=g),
        "value_term": torch.randn(n, length, generator=g),
        "value_mask_low": rows(after_subgoal & response_mask),
        "value_mask_high": rows(first_token & boundary[:, None]),
        "value_mask_term": rows(np.broadcast_to(first_token, (n, length))),
    }
    b.non_tensor_batch = {
        "traj_uid": np.array([f"{seed:x}-{t:06d}" for t in range(num_traj)], dtype=object)[traj][perm],
        "turn_idx": turn[perm],
        "dones": dones[perm],
        "switch": switch[perm],
        "rewards": rewards[perm],
        "is_action_valid": (rng.random(n) < 0.95).astype(np.float32)[perm],
    }
    b.action_mask = rows(action_mask)
    b.subgoal_mask = rows(subgoal_mask)
    b.switch_mask = rows(switch_mask)
    return b
