"""Sequential float64 HAE, one trajectory and one turn at a time (docs/semantics.md §3-§4).

The oracle the compiled core is tested against, and the "Python loops" baseline of the
benchmark. Readability over speed: every quantity is computed the way the method defines
it, with nothing vectorised across turns.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np


def group_trajectories(traj_ids, turn_idx) -> dict[Any, list[int]]:
    """trajectory id -> its row indices sorted by turn."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for row, tid in enumerate(traj_ids):
        groups[tid].append(row)
    return {tid: sorted(rows, key=lambda r: turn_idx[r]) for tid, rows in groups.items()}


def segments_of(rows: list[int], switch) -> list[tuple[int, int]]:
    """(first, last) positions of each segment: turn 0 and every SWITCH turn start one."""
    starts = [0] + [p for p in range(1, len(rows)) if switch[rows[p]]]
    ends = [s - 1 for s in starts[1:]] + [len(rows) - 1]
    return list(zip(starts, ends))


def shape_rewards(traj_ids, turn_idx, rewards, switch, *, is_action_valid=None, subgoal_changed=None,
                  keep_penalty=0.0, keep_penalty_mode="fixed", invalid_action_penalty_coef=0.0,
                  keep_consistency_penalty=0.0) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64).copy()
    for rows in group_trajectories(traj_ids, turn_idx).values():
        keep_rows = [row for row in rows if not switch[row]]
        if keep_penalty_mode == "fixed":
            per_keep = keep_penalty
        elif len(rows) > 1 and keep_rows:
            per_keep = keep_penalty * (len(keep_rows) / len(rows)) / len(keep_rows)
        else:
            per_keep = 0.0
        for pos, row in enumerate(rows):
            keep = not switch[row]
            if keep:
                r[row] += per_keep
            if is_action_valid is not None:
                r[row] -= invalid_action_penalty_coef * max(0.0, 1.0 - float(is_action_valid[row]))
            if keep and pos >= 1 and subgoal_changed is not None and subgoal_changed[row]:
                r[row] += keep_consistency_penalty
    return r


def hae_turns(traj_ids, turn_idx, switch, rewards, dones, v_low, v_high, v_term=None, *,
              gamma=1.0, lam_turn=1.0, lam_seg=0.95, bootstrap_truncated=False) -> dict[str, np.ndarray]:
    """Per-turn A^L, R^L, A^H, R^H (segment starts), A^T, G^T and the boundary flags."""
    n = len(rewards)
    out = {k: np.zeros(n) for k in ("adv_low", "ret_low", "adv_high", "ret_high", "adv_term", "ret_term")}
    out["is_boundary"] = np.zeros(n, dtype=bool)
    for rows in group_trajectories(traj_ids, turn_idx).values():
        segs = segments_of(rows, switch)
        next_seg_adv = 0.0
        for k in range(len(segs) - 1, -1, -1):
            s, e = segs[k]
            start, end = rows[s], rows[e]
            out["is_boundary"][start] = True
            has_next = k + 1 < len(segs)
            nxt = rows[segs[k + 1][0]] if has_next else None
            end_done = bool(dones[end])
            if end_done:
                boundary_value = 0.0
            elif has_next:
                boundary_value = float(v_high[nxt])
            elif bootstrap_truncated:
                boundary_value = float(v_high[start])
            else:
                boundary_value = 0.0

            # Turn level, inside the segment only.
            next_adv = 0.0
            for pos in range(e, s - 1, -1):
                row = rows[pos]
                not_done = 0.0 if dones[row] else 1.0
                if pos < e:
                    v_next = float(v_low[rows[pos + 1]])
                elif has_next:
                    v_next = float(v_high[nxt])
                elif bootstrap_truncated:
                    v_next = float(v_low[row])
                else:
                    v_next = 0.0
                delta = rewards[row] + gamma * not_done * v_next - v_low[row]
                adv = delta + gamma * lam_turn * not_done * next_adv
                out["adv_low"][row] = adv
                out["ret_low"][row] = adv + v_low[row]
                next_adv = adv

            # Segment level: semi-Markov step of d turns.
            d = e - s + 1
            seg_return = sum(gamma ** j * rewards[rows[s + j]] for j in range(d))
            end_not_done = 0.0 if end_done else 1.0
            target = seg_return + gamma ** d * end_not_done * boundary_value
            seg_adv = target - v_high[start] + gamma ** d * lam_seg * end_not_done * next_seg_adv
            out["adv_high"][start] = seg_adv
            out["ret_high"][start] = seg_adv + v_high[start]
            next_seg_adv = seg_adv

            # Termination: return of continuing this segment to its end, then B_k.
            if v_term is not None:
                ret = boundary_value
                for pos in range(e, s - 1, -1):
                    row = rows[pos]
                    ret = rewards[row] + gamma * ret
                    out["ret_term"][row] = ret
                    out["adv_term"][row] = ret - v_term[row]
    return out


def normalize(adv, include=None, eps=1e-8) -> np.ndarray:
    adv = np.asarray(adv, dtype=np.float64).copy()
    rows = [i for i in range(len(adv)) if include is None or include[i]]
    if not rows:
        return adv
    mean = sum(adv[i] for i in rows) / len(rows)
    std = math.sqrt(sum((adv[i] - mean) ** 2 for i in rows) / len(rows))
    for i in rows:
        adv[i] = (adv[i] - mean) / (std + eps)
    return adv


def subgoal_changed(traj_ids, turn_idx, responses, subgoal_mask, response_mask, requires_both=True) -> np.ndarray:
    n = len(traj_ids)
    changed = np.zeros(n, dtype=bool)
    for rows in group_trajectories(traj_ids, turn_idx).values():
        for pos in range(1, len(rows)):
            cur, prev = rows[pos], rows[pos - 1]
            cur_ids = responses[cur][subgoal_mask[cur] & response_mask[cur]].tolist()
            prev_ids = responses[prev][subgoal_mask[prev] & response_mask[prev]].tolist()
            if requires_both and (not cur_ids or not prev_ids):
                continue
            changed[cur] = not cur_ids or cur_ids != prev_ids
    return changed


def value_positions(value_mask, response_mask) -> np.ndarray:
    """Where a head is read: first position of value_mask & response_mask, else the last
    valid token (count - 1, at least 0)."""
    pos = np.zeros(len(response_mask), dtype=np.int64)
    for i in range(len(response_mask)):
        hits = np.flatnonzero(value_mask[i] & response_mask[i])
        pos[i] = hits[0] if len(hits) else max(int(response_mask[i].sum()) - 1, 0)
    return pos


def compute_hae_advantage(batch: dict, non_tensor: dict, cfg, action_mask=None, subgoal_mask=None,
                          switch_mask=None) -> dict[str, np.ndarray]:
    """The whole estimator on a verl-style batch (numpy (N, L) arrays in `batch`, per-turn
    arrays in `non_tensor`), returning every key the drop-in writes, in float64 / bool."""
    resp = np.asarray(batch["response_mask"]).astype(bool)
    responses = np.asarray(batch["responses"])
    n, length = resp.shape
    traj = list(non_tensor["traj_uid"])
    turn = np.asarray(non_tensor["turn_idx"]).astype(np.int64)
    dones = np.asarray(non_tensor["dones"]).astype(bool)
    switch = np.asarray(non_tensor["switch"]).astype(bool)
    rewards = np.asarray(non_tensor["rewards"]).astype(np.float64)

    act = resp.copy() if action_mask is None else np.asarray(action_mask).astype(bool) & resp
    sub = np.zeros_like(resp) if subgoal_mask is None else np.asarray(subgoal_mask).astype(bool) & resp
    sw = np.zeros_like(resp) if switch_mask is None else np.asarray(switch_mask).astype(bool) & resp

    valid = None
    if cfg.invalid_action_penalty_coef != 0.0 and "is_action_valid" in non_tensor:
        valid = np.asarray(non_tensor["is_action_valid"]).astype(np.float64)
    changed = None
    if cfg.keep_consistency_penalty != 0.0 and subgoal_mask is not None:
        changed = subgoal_changed(traj, turn, responses, sub, resp, cfg.keep_consistency_requires_both)
    r = shape_rewards(traj, turn, rewards, switch, is_action_valid=valid, subgoal_changed=changed,
                      keep_penalty=cfg.keep_penalty, keep_penalty_mode=cfg.keep_penalty_mode,
                      invalid_action_penalty_coef=cfg.invalid_action_penalty_coef,
                      keep_consistency_penalty=cfg.keep_consistency_penalty)

    def pick(key, mask_key):
        values = np.asarray(batch[key], dtype=np.float64)
        pos = value_positions(np.asarray(batch[mask_key]).astype(bool), resp)
        return values[np.arange(n), pos]

    v_low = pick(cfg.value_key_low, "value_mask_low")
    v_high = pick(cfg.value_key_high, "value_mask_high") if cfg.value_key_high in batch else v_low
    has_term = cfg.value_key_term in batch and "value_mask_term" in batch
    v_term = pick(cfg.value_key_term, "value_mask_term") if has_term else None

    t = hae_turns(traj, turn, switch, r, dones, v_low, v_high, v_term, gamma=cfg.gamma, lam_turn=cfg.lam_turn,
                  lam_seg=cfg.lam_seg, bootstrap_truncated=cfg.bootstrap_truncated)
    boundary = t["is_boundary"][:, None]
    hi = np.zeros_like(resp)
    if cfg.assign_high_to_subgoal:
        hi |= sub & boundary
    if cfg.assign_high_to_switch:
        hi |= sw & boundary
    lo = act
    term = sw.copy() if (cfg.assign_term_to_switch and has_term) else np.zeros_like(resp)

    adv_low, adv_high, adv_term = t["adv_low"], t["adv_high"], t["adv_term"]
    if cfg.norm_adv:
        adv_low = normalize(adv_low, lo.any(axis=1))
        adv_high = normalize(adv_high, hi.any(axis=1))
        if has_term:
            adv_term = normalize(adv_term, term.any(axis=1))

    def vmask(key):
        return np.asarray(batch[key]).astype(bool) & resp if key in batch else np.zeros_like(resp)

    out = {
        "advantages_low": adv_low[:, None] * lo,
        "advantages_high": adv_high[:, None] * hi,
        "advantages_term": adv_term[:, None] * term if has_term else np.zeros((n, length)),
        "returns_low": t["ret_low"][:, None] * vmask("value_mask_low"),
        "returns_high": t["ret_high"][:, None] * vmask("value_mask_high"),
        "returns_term": t["ret_term"][:, None] * vmask("value_mask_term") if has_term else np.zeros((n, length)),
        "hae_lo_mask": lo,
        "hae_hi_mask": hi,
        "hae_term_mask": term,
    }
    out["advantages"] = out["advantages_low"] + out["advantages_high"] + out["advantages_term"]
    return out
