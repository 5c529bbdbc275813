"""Vectorised pure-PyTorch twins of the compiled HAE ops.

No Python loop over rows, turns or tokens: rows are sorted once with two stable argsorts,
segment recurrences run as log-depth reverse scans (a loop over log2 of the longest
segment), and token outputs are broadcasts under masks. It mirrors the compiled ops one by
one, for readability, and is a second oracle for the tests; the benchmark's PyTorch baseline
is hiper.reference.hae_torch_fast, the whole estimator written for speed. Everything runs on
the inputs' device (CPU or GPU), so the GPU benchmark times the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hiper.config import HAEConfig


@dataclass
class TorchLayout:
    """Rows sorted by (trajectory, turn); all index tensors are int64, in sorted positions."""

    order: torch.Tensor          # (N,) row of each sorted position
    new_traj: torch.Tensor       # (N,) bool: position starts a trajectory
    boundary: torch.Tensor       # (N,) bool: position starts a segment
    traj_of: torch.Tensor        # (N,) dense trajectory index of each position
    seg_of: torch.Tensor         # (N,) segment index of each position
    traj_len: torch.Tensor       # (T,) turns per trajectory
    seg_start: torch.Tensor      # (S,) first position of each segment
    seg_end: torch.Tensor        # (S,) last position of each segment
    seg_has_next: torch.Tensor   # (S,) bool: another segment follows in the same trajectory
    max_seg_len: int
    max_segs_per_traj: int


def build_layout(traj_ids: torch.Tensor, turn_idx: torch.Tensor, is_new_subgoal: torch.Tensor) -> TorchLayout:
    n, dev = traj_ids.numel(), traj_ids.device
    order = torch.argsort(turn_idx, stable=True)
    order = order[torch.argsort(traj_ids[order], stable=True)]
    traj_sorted, turn_sorted = traj_ids[order], turn_idx[order]
    new_traj = torch.ones(n, dtype=torch.bool, device=dev)
    new_traj[1:] = traj_sorted[1:] != traj_sorted[:-1]
    if bool(((turn_sorted[1:] == turn_sorted[:-1]) & ~new_traj[1:]).any()):
        raise ValueError("turn_idx: a trajectory has the same turn more than once")
    boundary = new_traj | is_new_subgoal[order]
    traj_of = torch.cumsum(new_traj, 0) - 1
    seg_of = torch.cumsum(boundary, 0) - 1
    traj_len = torch.bincount(traj_of, minlength=int(traj_of[-1]) + 1 if n else 0)
    seg_start = torch.nonzero(boundary).flatten()
    seg_end = torch.cat([seg_start[1:] - 1, torch.tensor([n - 1], device=dev)]) if n else seg_start
    seg_has_next = torch.zeros(seg_start.numel(), dtype=torch.bool, device=dev)
    seg_has_next[:-1] = ~new_traj[seg_start[1:]]
    segs_per_traj = torch.bincount(traj_of[seg_start]) if n else torch.zeros(0, dtype=torch.long, device=dev)
    return TorchLayout(order, new_traj, boundary, traj_of, seg_of, traj_len, seg_start, seg_end, seg_has_next,
                       int((seg_end - seg_start + 1).max()) if n else 0,
                       int(segs_per_traj.max()) if n else 0)


def reverse_linear_scan(x: torch.Tensor, coef: torch.Tensor, span: int) -> torch.Tensor:
    """y_p = x_p + coef_p * y_{p+1} (y past the end = 0), where coef_p = 0 cuts the chain.

    Log-depth doubling: after the step with shift s, y_p sums the terms of positions
    p..p+2s-1. `span` bounds the longest chain, so ceil(log2(span)) steps suffice.
    """
    y, a = x.clone(), coef.clone()
    shift = 1
    while shift < span:
        y[:-shift] = y[:-shift] + a[:-shift] * y[shift:]
        a[:-shift] = a[:-shift] * a[shift:]
        shift *= 2
    return y


def shape_rewards(lay: TorchLayout, rewards, is_new_subgoal, is_action_valid, subgoal_changed, cfg: HAEConfig):
    """Shaped rewards in sorted positions (docs/semantics.md §4.1)."""
    r = rewards[lay.order].double()
    keep = ~is_new_subgoal[lay.order]
    if cfg.keep_penalty != 0.0:
        if cfg.keep_penalty_mode == "fixed":
            r = r + keep * cfg.keep_penalty
        else:
            turns = lay.traj_len[lay.traj_of]
            n_keep = torch.zeros_like(lay.traj_len).index_add_(0, lay.traj_of, keep.long())[lay.traj_of]
            per_keep = cfg.keep_penalty * (n_keep / turns) / n_keep.clamp_min(1)
            r = r + torch.where(keep & (turns > 1), per_keep, 0.0)
    if is_action_valid is not None and cfg.invalid_action_penalty_coef != 0.0:
        r = r - cfg.invalid_action_penalty_coef * (1.0 - is_action_valid[lay.order].double()).clamp_min(0.0)
    if subgoal_changed is not None:
        r = r + (keep & ~lay.new_traj & subgoal_changed[lay.order]) * cfg.keep_consistency_penalty
    return r


def hae_turns(lay: TorchLayout, r, dones, v_low, v_high, v_term, cfg: HAEConfig):
    """Per-turn (A^L, R^L, A^H, R^H, A^T, G^T) in *row* order, float64 (docs/semantics.md §4.3-§4.5)."""
    g, n, dev = cfg.gamma, r.numel(), r.device
    d = dones[lay.order].double()
    vl, vh = v_low[lay.order].double(), v_high[lay.order].double()
    start, end, has_next = lay.seg_start, lay.seg_end, lay.seg_has_next
    next_start = torch.where(has_next, end + 1, 0)
    end_done = d[end] > 0
    boot = torch.where(has_next, vh[next_start], vh[start] if cfg.bootstrap_truncated else torch.zeros_like(vh[start]))
    boundary_value = torch.where(end_done, 0.0, boot)

    # Turn level: next value inside the segment, the boundary bootstrap at its end.
    is_end = torch.zeros(n, dtype=torch.bool, device=dev)
    is_end[end] = True
    v_next = torch.zeros(n, dtype=torch.float64, device=dev)
    v_next[:-1] = vl[1:]
    end_next = torch.where(has_next, vh[next_start], vl[end] if cfg.bootstrap_truncated else torch.zeros_like(vl[end]))
    v_next[end] = end_next
    delta = r + g * (1 - d) * v_next - vl
    adv_low = reverse_linear_scan(delta, torch.where(is_end, 0.0, g * cfg.lam_turn * (1 - d)), lay.max_seg_len)

    # Discounted reward-to-go inside each segment: its start value is the segment return.
    to_go = reverse_linear_scan(r, torch.where(is_end, 0.0, torch.full_like(r, g)), lay.max_seg_len)
    seg_len = (end - start + 1).double()
    g_d = torch.pow(torch.tensor(g, dtype=torch.float64, device=dev), seg_len)
    end_not_done = (~end_done).double()
    seg_delta = to_go[start] + g_d * end_not_done * boundary_value - vh[start]
    adv_seg = reverse_linear_scan(seg_delta, torch.where(has_next, g_d * cfg.lam_seg * end_not_done, 0.0),
                                  lay.max_segs_per_traj)

    out = {}
    inv = torch.empty_like(lay.order)
    inv[lay.order] = torch.arange(n, device=dev)
    out["adv_low"] = adv_low[inv]
    out["ret_low"] = (adv_low + vl)[inv]
    high = torch.zeros(n, dtype=torch.float64, device=dev)
    high_ret = torch.zeros(n, dtype=torch.float64, device=dev)
    high[start] = adv_seg
    high_ret[start] = adv_seg + vh[start]
    out["adv_high"], out["ret_high"] = high[inv], high_ret[inv]
    if v_term is not None:
        # G^T_t = to_go_t + g^(e - t + 1) * B_k
        pos_from_end = (end[lay.seg_of] - torch.arange(n, device=dev) + 1).double()
        g_t = torch.tensor(g, dtype=torch.float64, device=dev)
        term_ret = to_go + torch.pow(g_t, pos_from_end) * boundary_value[lay.seg_of]
        out["ret_term"] = term_ret[inv]
        out["adv_term"] = (term_ret - v_term[lay.order].double())[inv]
    else:
        out["ret_term"] = out["adv_term"] = torch.zeros(n, dtype=torch.float64, device=dev)
    out["is_boundary"] = lay.boundary[inv]
    return out


def normalize(adv: torch.Tensor, include: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(adv - mean) / (std + eps) on included rows, statistics over them (population std)."""
    count = include.sum()
    if int(count) == 0:
        return adv
    w = include.to(adv.dtype)
    mean = (adv * w).sum() / count
    std = torch.sqrt((((adv - mean) * w) ** 2).sum() / count)
    return torch.where(include, (adv - mean) / (std + eps), adv)


def pick_values(values: torch.Tensor, value_mask: torch.Tensor, response_mask: torch.Tensor,
                response_length: torch.Tensor) -> torch.Tensor:
    """values[i, first position of value_mask & response_mask], else at the last valid token."""
    m = value_mask & response_mask
    pos = torch.where(m.any(dim=1), m.to(torch.uint8).argmax(dim=1), (response_length - 1).clamp_min(0))
    return values.gather(1, pos.view(-1, 1)).view(-1)


def subgoal_changed(lay: TorchLayout, responses, subgoal_mask, response_mask, requires_both: bool) -> torch.Tensor:
    """Per-row flag: masked subgoal ids differ from the previous turn's (in row order)."""
    m = subgoal_mask & response_mask
    count = m.sum(dim=1)
    width = int(count.max()) if count.numel() else 0
    # Compact each row's masked ids to the left: the k-th masked token goes to column k;
    # unmasked tokens go to a spill column that is dropped.
    rank = torch.where(m, torch.cumsum(m, dim=1) - 1, width)
    packed = torch.full((m.shape[0], width + 1), -1, dtype=responses.dtype, device=responses.device)
    packed.scatter_(1, rank, responses)
    packed = packed[:, :width]
    cur, prev = lay.order[1:], lay.order[:-1]
    differ = (count[cur] != count[prev]) | (packed[cur] != packed[prev]).any(dim=1) | (count[cur] == 0)
    if requires_both:
        differ &= (count[cur] > 0) & (count[prev] > 0)
    flag = torch.zeros(m.shape[0], dtype=torch.bool, device=m.device)
    flag[cur] = differ & ~lay.new_traj[1:]
    return flag


def compute_hae_advantage(batch: dict, non_tensor: dict, cfg: HAEConfig, action_mask=None, subgoal_mask=None,
                          switch_mask=None, out: dict | None = None) -> dict:
    """The whole estimator on a verl-style batch, in PyTorch; returns the drop-in's keys.
    `out` may hold preallocated (N, L) tensors for any key."""
    import numpy as np

    resp = batch["response_mask"].bool()
    n, length = resp.shape

    def per_turn(values, dtype):  # host metadata, moved to the batch's device
        return torch.from_numpy(np.asarray(values).astype(dtype)).to(resp.device)

    uids = non_tensor["traj_uid"]
    if isinstance(uids, np.ndarray) and uids.dtype.kind in "iu":
        traj = per_turn(uids, np.int64)
    else:
        traj = per_turn(np.unique(np.asarray(uids), return_inverse=True)[1], np.int64)
    turn = per_turn(non_tensor["turn_idx"], np.int64)
    dones = per_turn(non_tensor["dones"], bool)
    switch = per_turn(non_tensor["switch"], bool)
    rewards = per_turn(non_tensor["rewards"], np.float32)
    lay = build_layout(traj, turn, switch)

    act = resp if action_mask is None else action_mask.bool() & resp
    sub = torch.zeros_like(resp) if subgoal_mask is None else subgoal_mask.bool() & resp
    sw = torch.zeros_like(resp) if switch_mask is None else switch_mask.bool() & resp
    valid = None
    if cfg.invalid_action_penalty_coef != 0.0 and "is_action_valid" in non_tensor:
        valid = per_turn(non_tensor["is_action_valid"], np.float32)
    changed = None
    if cfg.keep_consistency_penalty != 0.0 and subgoal_mask is not None:
        changed = subgoal_changed(lay, batch["responses"], sub, resp, cfg.keep_consistency_requires_both)
    r = shape_rewards(lay, rewards, switch, valid, changed, cfg).float().double()

    length_of = resp.sum(dim=1)
    v_low = pick_values(batch[cfg.value_key_low], batch["value_mask_low"].bool(), resp, length_of)
    has_high = cfg.value_key_high in batch
    v_high = (pick_values(batch[cfg.value_key_high], batch["value_mask_high"].bool(), resp, length_of)
              if has_high else v_low)
    has_term = cfg.value_key_term in batch and "value_mask_term" in batch
    v_term = (pick_values(batch[cfg.value_key_term], batch["value_mask_term"].bool(), resp, length_of)
              if has_term else None)
    t = hae_turns(lay, r, dones, v_low, v_high, v_term, cfg)

    boundary = t["is_boundary"][:, None]
    hi = torch.zeros_like(resp)
    if cfg.assign_high_to_subgoal:
        hi = hi | (sub & boundary)
    if cfg.assign_high_to_switch:
        hi = hi | (sw & boundary)
    term = sw if (cfg.assign_term_to_switch and has_term) else torch.zeros_like(resp)
    adv_low, adv_high, adv_term = t["adv_low"].float(), t["adv_high"].float(), t["adv_term"].float()
    if cfg.norm_adv:
        # Which turns each advantage lands on, from per-row span flags (one pass per mask).
        has_sub, has_sw = sub.any(dim=1), sw.any(dim=1)
        high_rows = t["is_boundary"] & ((cfg.assign_high_to_subgoal & has_sub) | (cfg.assign_high_to_switch & has_sw))
        adv_low = normalize(adv_low, act.any(dim=1))
        adv_high = normalize(adv_high, high_rows)
        if has_term:
            adv_term = normalize(adv_term, has_sw & cfg.assign_term_to_switch)

    out = dict(out or {})

    def product(key, per_turn, mask):
        """per_turn broadcast times the 0/1 mask (the fastest of mul, where and masked_fill here)."""
        dest = out.get(key)
        if dest is None:
            return mask.to(torch.float32).mul_(per_turn[:, None])
        return torch.mul(mask, per_turn[:, None], out=dest)

    def vmask(key):
        return batch[key].bool() & resp if key in batch else torch.zeros_like(resp)

    res = {
        "advantages_low": product("advantages_low", adv_low, act),
        "advantages_high": product("advantages_high", adv_high, hi),
        "advantages_term": product("advantages_term", adv_term, term),
        "returns_low": product("returns_low", t["ret_low"].float(), vmask("value_mask_low")),
        "returns_high": product("returns_high", t["ret_high"].float(), vmask("value_mask_high")),
        "returns_term": product("returns_term", t["ret_term"].float(), vmask("value_mask_term")),
        "hae_lo_mask": act, "hae_hi_mask": hi, "hae_term_mask": term,
    }
    total = out.get("advantages")
    if total is None:
        res["advantages"] = res["advantages_low"] + res["advantages_high"] + res["advantages_term"]
    else:
        res["advantages"] = torch.add(res["advantages_low"], res["advantages_high"], out=total).add_(
            res["advantages_term"])
    return res
