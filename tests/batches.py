"""Random verl-style HAE batches for the tests: trajectories of random length with random
SWITCH/KEEP choices, dones, truncations and token spans (some missing), rows shuffled."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Batch:
    batch: dict = field(default_factory=dict)           # (N, L) torch tensors
    non_tensor_batch: dict = field(default_factory=dict)  # (N,) numpy arrays
    action_mask: torch.Tensor | None = None
    subgoal_mask: torch.Tensor | None = None
    switch_mask: torch.Tensor | None = None

    def numpy_batch(self) -> dict:
        return {k: v.numpy() for k, v in self.batch.items()}


def _span(rng, lo, hi):
    """A random [start, end) inside [lo, hi), possibly empty."""
    if hi <= lo:
        return lo, lo
    a, b = sorted(rng.integers(lo, hi + 1, size=2))
    return int(a), int(b)


def make_batch(seed: int, *, num_traj: int = 12, max_turns: int = 9, length: int = 24, p_switch: float = 0.4,
               p_done: float = 0.7, p_mid_done: float = 0.05, p_missing_span: float = 0.15,
               string_uids: bool = True, shuffle: bool = True, vocab: int = 7, with_term: bool = True) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_turns + 1, size=num_traj)
    traj, turn, done = [], [], []
    for t, T in enumerate(lengths):
        start = int(rng.integers(0, 3)) if rng.random() < 0.2 else 0  # turns need not start at 0
        for k in range(T):
            traj.append(t)
            turn.append(start + k)
            last = k == T - 1
            done.append(bool(rng.random() < p_done) if last else bool(rng.random() < p_mid_done))
    n = len(traj)
    perm = rng.permutation(n) if shuffle else np.arange(n)
    traj = np.asarray(traj)[perm]
    turn = np.asarray(turn)[perm]
    done = np.asarray(done)[perm]

    resp_len = rng.integers(0, length + 1, size=n)
    resp_len[rng.random(n) < 0.5] = length  # many rows fill the row
    response_mask = np.arange(length)[None, :] < resp_len[:, None]
    act = np.zeros((n, length), bool)
    sub = np.zeros((n, length), bool)
    sw = np.zeros((n, length), bool)
    vml = np.zeros((n, length), bool)
    vmh = np.zeros((n, length), bool)
    vmt = np.zeros((n, length), bool)
    for i in range(n):
        L = int(resp_len[i])
        cuts = np.sort(rng.integers(0, L + 1, size=3)) if L else np.zeros(3, int)
        for mask, (lo, hi) in ((sw, (0, cuts[0])), (sub, (cuts[0], cuts[1])), (act, (cuts[1], L))):
            if rng.random() > p_missing_span:
                a, b = _span(rng, lo, hi)
                mask[i, a:b] = True
        if rng.random() < 0.1:  # stray bits beyond the response: must be ignored
            sw[i, rng.integers(0, length)] = True
        for vm in (vml, vmh, vmt):
            r = rng.random()
            if r < 0.8:
                vm[i, rng.integers(0, length)] = True
            elif r < 0.9:
                vm[i, rng.integers(0, length, size=2)] = True
    responses = rng.integers(0, vocab, size=(n, length))
    # Make KEEP subgoals often repeat the previous turn's tokens exactly.
    switch = rng.random(n) < p_switch

    uids = np.array([f"traj-{t:04d}" for t in traj], dtype=object) if string_uids else traj
    b = Batch()
    b.batch = {
        "responses": torch.from_numpy(responses),
        "response_mask": torch.from_numpy(response_mask.astype(np.int64)),
        "value_low": torch.randn(n, length, generator=torch.Generator().manual_seed(seed)),
        "value_high": torch.randn(n, length, generator=torch.Generator().manual_seed(seed + 1)),
        "value_mask_low": torch.from_numpy(vml),
        "value_mask_high": torch.from_numpy(vmh),
    }
    if with_term:
        b.batch["value_term"] = torch.randn(n, length, generator=torch.Generator().manual_seed(seed + 2))
        b.batch["value_mask_term"] = torch.from_numpy(vmt)
    b.non_tensor_batch = {
        "traj_uid": uids,
        "turn_idx": turn,
        "dones": done,
        "switch": switch,
        "rewards": (rng.random(n) < 0.2) * 10.0 + rng.normal(0, 0.1, n),
        "is_action_valid": (rng.random(n) < 0.8).astype(np.float32),
    }
    b.action_mask = torch.from_numpy(act)
    b.subgoal_mask = torch.from_numpy(sub)
    b.switch_mask = torch.from_numpy(sw)
    _repeat_subgoals(b, rng)
    return b


def _repeat_subgoals(b: Batch, rng) -> None:
    """On some KEEP turns copy the previous turn's subgoal span so the consistency check sees equal ids."""
    meta = b.non_tensor_batch
    order = np.lexsort((meta["turn_idx"], np.asarray([hash(u) for u in meta["traj_uid"]])))
    resp, sub, rmask = b.batch["responses"], b.subgoal_mask, b.batch["response_mask"].bool()
    for a, c in zip(order[:-1], order[1:]):
        if meta["traj_uid"][a] != meta["traj_uid"][c] or meta["switch"][c] or rng.random() < 0.3:
            continue
        src = torch.nonzero(sub[a] & rmask[a]).flatten()
        if len(src) == 0 or len(src) > int(rmask[c].sum()):
            continue
        sub[c] = False
        sub[c, : len(src)] = True
        resp[c, : len(src)] = resp[a, src]
