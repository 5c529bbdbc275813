"""The whole HAE estimator written for speed in eager PyTorch: the benchmark's baseline for
what the compiled core is worth (benchmarks/bench_hae.py, docs/performance.md).

Same inputs and outputs as the verl drop-in (hiper.integrations.verl.compute_hae_advantage):
a verl-style batch in, the ten (N, L) token outputs of docs/semantics.md §4.8 out. Where
hiper.reference.hae_torch mirrors the compiled ops one by one (a second oracle), this module
is arranged as a PyTorch user who cared about speed would arrange it:

- Host metadata stays on the host until it is one sorted layout: trajectory ids become
  codes through one dict built in C (no per-row Python), rows are sorted with one argsort of
  a (trajectory, turn) key.
- Per-turn work runs on the N turns in sorted order, float64, as few whole-batch ops as the
  recurrences allow: the three turn-level recurrences (A^L, the segment return, G^T) share
  one log-depth reverse scan over a stacked (3, N) tensor; the segment-level A^H is one
  more scan over the segments; the three normalisations are one batched reduction.
- Token work (the cost: ~1.8M tokens at 128 trajectories) is as few passes as eager PyTorch
  allows: each mask ANDed with the response once and reused for the value reads, the
  returns and the outputs; products through the masks' uint8 views and row reductions over
  int64 words, where PyTorch has vectorised kernels (its bool kernels are scalar loops).

No Python loop over rows, turns or tokens; the only loop is over the log2 steps of a scan.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping

import numpy as np
import torch

from hiper.config import HAEConfig

MASK_KEYS = ("hae_lo_mask", "hae_hi_mask", "hae_term_mask")
FLOAT_KEYS = ("advantages", "advantages_low", "advantages_high", "advantages_term", "returns_low", "returns_high",
              "returns_term")


def reverse_scan(x: torch.Tensor, coef: torch.Tensor, span: int) -> torch.Tensor:
    """y_p = x_p + coef_p * y_{p+1} along the last dimension (y past the end = 0); coef_p = 0
    cuts the chain. Log-depth doubling: after the step with shift s, y_p holds the terms of
    p..p+2s-1, so ceil(log2(span)) steps cover chains of up to `span` elements."""
    y, a = x.clone(), coef.clone()
    shift = 1
    while shift < span:
        # Right-hand sides are built before the slice is written: the slices overlap.
        y[..., :-shift] = torch.addcmul(y[..., :-shift], a[..., :-shift], y[..., shift:])
        if 2 * shift < span:
            a[..., :-shift] = a[..., :-shift] * a[..., shift:]
        shift *= 2
    return y


def _trajectory_codes(uids: Any) -> np.ndarray:
    """(N,) int64 codes below N, one per trajectory id, so that code * turns stays far from
    overflow. Integer ids are ranked by one sort; other ids (strings) go through one dict
    built by C iteration: each id's code is its last row."""
    uids = np.asarray(uids)
    if uids.dtype.kind in "iu":
        return np.unique(uids, return_inverse=True)[1].astype(np.int64).reshape(-1)
    ids = uids.tolist()
    index = dict(zip(ids, range(len(ids))))
    return np.fromiter(map(index.__getitem__, ids), np.int64, count=len(ids))


def _sort_rows(codes: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Row order sorted by (trajectory, turn); refuses a repeated (trajectory, turn)."""
    turn_min = int(turn.min())
    codes = codes - int(codes.min())
    key = codes * (int(turn.max()) - turn_min + 1) + (turn - turn_min)
    order = np.argsort(key)
    sorted_key = key[order]
    if bool((sorted_key[1:] == sorted_key[:-1]).any()):
        raise ValueError("turn_idx: a trajectory has the same turn more than once")
    return order


def _flags(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.bool else x.bool()


# PyTorch's reductions over bool rows (any, max, argmax, sum) run a scalar loop, ~10x slower
# than its vectorised integer reductions (torch 2.x on x86-64, measured). Where a row is a whole
# number of 8-byte words, the mask is read as int64 words instead: a word is non-zero iff one
# of its eight flags is set, and on a little-endian machine its lowest set byte is the first
# of them.
def _words(mask: torch.Tensor) -> torch.Tensor | None:
    if (sys.byteorder == "little" and mask.dim() == 2 and mask.shape[1] % 8 == 0 and mask.shape[1] > 0
            and mask.is_contiguous() and mask.storage_offset() % 8 == 0):
        return mask.view(torch.int64)
    return None


def _any_row(mask: torch.Tensor) -> torch.Tensor:
    words = _words(mask)
    return mask.any(dim=1) if words is None else words.amax(dim=1) > 0


def _first_true(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: whether `mask` has a set flag, and the first one's position (0 when none)."""
    words = _words(mask)
    if words is None:
        has, pos = mask.view(torch.uint8).max(dim=1)
        return has > 0, pos
    word = (words != 0).view(torch.uint8).argmax(dim=1)  # the first non-zero word (argmax: first maximum)
    bits = words.gather(1, word[:, None]).view(-1)
    has = bits != 0
    lowest = bits & -bits  # the lowest set bit: bit 8k of the word's flag k (flags are 0/1 bytes)
    byte = torch.log2(torch.where(has, lowest, 1).double()).long() >> 3
    return has, word * 8 + byte


def _to_float(mask: torch.Tensor, dest: torch.Tensor | None = None) -> torch.Tensor:
    """The 0/1 mask as float32: converted from its uint8 view (bool to float has no vectorised
    kernel; uint8 to float has)."""
    flags = mask.view(torch.uint8)
    return flags.to(torch.float32) if dest is None else dest.copy_(flags)


def _on_rows(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """mask & rows[:, None], as a uint8 product: broadcasting a bool AND along rows runs a
    scalar kernel (~30x slower here)."""
    return (mask.view(torch.uint8) * rows.view(torch.uint8)[:, None]).view(torch.bool)


def _first_on(mask: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
    """Per row, the first position of `mask` (already ANDed with the response), else the last
    valid token, max(count - 1, 0) (docs/semantics.md §4.2)."""
    has, pos = _first_true(mask)
    if bool(has.all()):
        return pos
    length = resp.view(torch.uint8).sum(dim=1, dtype=torch.int32)  # int32: its sum kernel is vectorised
    return torch.where(has, pos, (length.long() - 1).clamp_min(0))


def _subgoal_ids(sub: torch.Tensor, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the number of subgoal tokens and their ids packed to the left (padded with -1).
    Only the columns some subgoal touches are read (subgoals sit near a response's start)."""
    n = sub.shape[0]
    cols = torch.nonzero(sub.view(torch.uint8).amax(dim=0)).flatten() if n else sub.new_zeros(0)
    if cols.numel() == 0:
        return torch.zeros(n, dtype=torch.int64, device=sub.device), responses.new_full((n, 0), -1)
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    window = sub[:, lo:hi]
    rank = torch.cumsum(window, dim=1)
    count = rank[:, -1]
    # The k-th subgoal id of a row goes to column k; other ids to a spill column, then dropped.
    slot = torch.where(window, rank - 1, hi - lo)
    packed = responses.new_full((n, hi - lo + 1), -1)
    packed.scatter_(1, slot, responses[:, lo:hi])
    return count, packed[:, : int(count.max())]


def _changed(count: torch.Tensor, packed: torch.Tensor, order: torch.Tensor, new_traj: torch.Tensor,
             requires_both: bool) -> torch.Tensor:
    """Per sorted position: the subgoal ids differ from the previous turn's (docs/semantics.md
    §4.1.3); never on a trajectory's first turn."""
    changed = torch.zeros(order.shape[0], dtype=torch.bool, device=order.device)
    if order.shape[0] < 2:
        return changed
    cur, prev = order[1:], order[:-1]
    differ = (count[cur] != count[prev]) | (packed[cur] != packed[prev]).any(dim=1) | (count[cur] == 0)
    if requires_both:
        differ &= (count[cur] > 0) & (count[prev] > 0)
    changed[1:] = differ & ~new_traj[1:]
    return changed


def compute_hae_advantage(batch: Mapping[str, Any], non_tensor: Mapping[str, Any], cfg: HAEConfig,
                          action_mask: Any = None, subgoal_mask: Any = None, switch_mask: Any = None,
                          out: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """HAE on a verl-style batch; returns the drop-in's ten keys, (N, L) on the batch's device.

    batch: (N, L) tensors: response_mask, the value heads under cfg.value_key_low/high/term
    (high and term optional; term only with value_mask_term), value_mask_low/high/term and,
    for the keep-consistency penalty, responses. non_tensor: (N,) traj_uid, turn_idx, dones,
    switch, rewards and optionally is_action_valid. out: preallocated (N, L) tensors for any
    of the keys (float32, or bool for the masks), written in place."""
    out = dict(out or {})
    resp = _flags(batch["response_mask"])
    n, length = resp.shape
    dev = resp.device
    f64 = dict(dtype=torch.float64, device=dev)

    # ---- Layout, on the host where the metadata is (docs/semantics.md §3).
    codes = _trajectory_codes(non_tensor["traj_uid"])
    turn = np.asarray(non_tensor["turn_idx"]).astype(np.int64)
    order_np = _sort_rows(codes, turn)
    sorted_codes = codes[order_np]
    new_traj_np = np.ones(n, dtype=bool)
    new_traj_np[1:] = sorted_codes[1:] != sorted_codes[:-1]
    has_valid = cfg.invalid_action_penalty_coef != 0.0 and "is_action_valid" in non_tensor
    meta = np.stack([np.asarray(non_tensor["rewards"]).astype(np.float32).astype(np.float64),
                     np.asarray(non_tensor["dones"]).astype(np.float64),
                     np.asarray(non_tensor["switch"]).astype(np.float64),
                     np.asarray(non_tensor["is_action_valid"]).astype(np.float32).astype(np.float64)
                     if has_valid else np.ones(n)])[:, order_np]
    traj_starts = np.flatnonzero(new_traj_np)
    max_traj_len = int(np.diff(np.append(traj_starts, n)).max()) if n else 0
    order = torch.from_numpy(order_np).to(dev)
    new_traj = torch.from_numpy(new_traj_np).to(dev)
    reward, done, switch, valid = torch.from_numpy(meta).to(dev)
    keep = switch == 0
    boundary = new_traj | ~keep

    # ---- Token masks, each ANDed with the response once and reused below.
    act = resp.clone() if action_mask is None else _flags(action_mask) & resp
    sub = None if subgoal_mask is None else _flags(subgoal_mask) & resp
    sw = None if switch_mask is None else _flags(switch_mask) & resp
    has_high = cfg.value_key_high in batch.keys()
    has_term = cfg.value_key_term in batch.keys() and "value_mask_term" in batch.keys()
    value_masks = {h: _flags(batch[f"value_mask_{h}"]) & resp if f"value_mask_{h}" in batch.keys() else None
                   for h in ("low", "high", "term")}
    if not has_term:
        value_masks["term"] = None  # a term mask without its head credits nothing
    for head, present in (("low", True), ("high", has_high)):
        if present and value_masks[head] is None:
            raise KeyError(f"value_mask_{head}: required with the {head} value head")

    def read(key: str, head: str) -> torch.Tensor:
        pos = _first_on(value_masks[head], resp)
        return batch[key].detach().gather(1, pos.view(-1, 1)).view(-1).float()

    v_low = read(cfg.value_key_low, "low")
    v_high = read(cfg.value_key_high, "high") if has_high else v_low
    v_term = read(cfg.value_key_term, "term") if has_term else None

    # ---- Reward shaping in sorted order (docs/semantics.md §4.1).
    r = reward
    if cfg.keep_penalty != 0.0:
        if cfg.keep_penalty_mode == "fixed":
            r = r + keep * cfg.keep_penalty
        else:
            traj_of = torch.cumsum(new_traj, 0) - 1
            turns = torch.bincount(traj_of)[traj_of].double()
            n_keep = torch.bincount(traj_of, weights=keep.double())[traj_of]
            r = r + torch.where(keep & (turns > 1), cfg.keep_penalty * (n_keep / turns) / n_keep, 0.0)
    if has_valid:
        r = r - cfg.invalid_action_penalty_coef * (1.0 - valid).clamp_min(0.0)
    if cfg.keep_consistency_penalty != 0.0 and sub is not None:
        if "responses" not in batch.keys():
            raise ValueError("responses: required for the keep-consistency penalty")
        count, packed = _subgoal_ids(sub, batch["responses"])
        changed = _changed(count, packed, order, new_traj, cfg.keep_consistency_requires_both)
        r = r + (keep & changed) * cfg.keep_consistency_penalty
    r = r.float().double()  # the shaped reward is a float32, as the core stores it

    # ---- Recurrences over sorted turns (docs/semantics.md §4.3-§4.5).
    g = cfg.gamma
    vl, vh = v_low[order].double(), v_high[order].double()
    not_done = 1.0 - done
    starts = torch.nonzero(boundary).flatten()
    ends = torch.cat([starts[1:] - 1, starts.new_tensor([n - 1])])
    seg_len = ends - starts + 1
    is_end = torch.zeros(n, dtype=torch.bool, device=dev)
    is_end[ends] = True
    has_next = torch.zeros(n, dtype=torch.bool, device=dev)  # at a segment end: another segment follows
    has_next[:-1] = ~new_traj[1:]
    vh_next, vl_next = torch.zeros(n, **f64), torch.zeros(n, **f64)
    vh_next[:-1], vl_next[:-1] = vh[1:], vl[1:]
    start_of = starts[torch.cumsum(boundary, 0) - 1]
    truncated_value = vh[start_of] if cfg.bootstrap_truncated else torch.zeros(n, **f64)
    bootstrap = torch.where(done > 0, 0.0, torch.where(has_next, vh_next, truncated_value))  # B_k at its end
    v_next = torch.where(is_end, torch.where(has_next, vh_next, vl if cfg.bootstrap_truncated else 0.0), vl_next)
    delta = r + g * not_done * v_next - vl
    chain = torch.where(is_end, 0.0, g)
    scans = reverse_scan(torch.stack([delta, r, r + torch.where(is_end, g * bootstrap, 0.0)]),
                         torch.stack([chain * (cfg.lam_turn * not_done), chain, chain]), int(seg_len.max()))
    adv_low, to_go, term_ret = scans

    g_d = torch.pow(torch.tensor(g, **f64), seg_len.double())
    end_not_done = not_done[ends]
    v_start = vh[starts]
    seg_delta = to_go[starts] + g_d * end_not_done * bootstrap[ends] - v_start
    seg_adv = reverse_scan(seg_delta, torch.where(has_next[ends], g_d * cfg.lam_seg * end_not_done, 0.0),
                           max_traj_len)

    per_turn = torch.zeros(6, n, **f64)  # sorted order: A^L, A^H, A^T, R^L, R^H, R^T
    per_turn[0], per_turn[3] = adv_low, adv_low + vl
    per_turn[1, starts], per_turn[4, starts] = seg_adv, seg_adv + v_start
    if v_term is not None:
        per_turn[2], per_turn[5] = term_ret - v_term[order].double(), term_ret
    rows = torch.empty_like(per_turn)
    rows[:, order] = per_turn
    rows = rows.float()
    boundary_row = torch.empty_like(boundary)
    boundary_row[order] = boundary

    # ---- Token spans (docs/semantics.md §4.6) and their rows' credit for normalisation.
    term_on_switch = cfg.assign_term_to_switch and v_term is not None and sw is not None
    hi = None
    if cfg.assign_high_to_subgoal and sub is not None:
        hi = _on_rows(sub, boundary_row)
    if cfg.assign_high_to_switch and sw is not None:
        hi = _on_rows(sw, boundary_row) if hi is None else hi | _on_rows(sw, boundary_row)
    adv = rows[:3]
    if cfg.norm_adv:
        none = torch.zeros(n, dtype=torch.bool, device=dev)
        has_sub = _any_row(sub) if sub is not None and cfg.assign_high_to_subgoal else none
        has_sw = _any_row(sw) if sw is not None else none
        credited = torch.stack([_any_row(act),
                                boundary_row & ((cfg.assign_high_to_subgoal & has_sub)
                                                | (cfg.assign_high_to_switch & has_sw)),
                                has_sw & term_on_switch])
        # (x - mean) / (std + eps) over the credited turns, in float64 on the float32 values.
        x, w = adv.double(), credited.double()
        count = w.sum(dim=1, keepdim=True)
        mean = (x * w).sum(dim=1, keepdim=True) / count
        std = torch.sqrt((((x - mean) * w) ** 2).sum(dim=1, keepdim=True) / count)
        adv = torch.where(credited, (x - mean) * (1.0 / (std + 1e-8)), x).float()

    def product(key: str, mask: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
        """value broadcast along the row times the 0/1 mask. Two vectorised passes (convert, then
        multiply in place) beat every one-kernel form here: torch.mul(bool, float) converts
        the mask through a scalar copy first, torch.where runs a slower kernel."""
        dest = out.get(key)
        if mask is None:
            return torch.zeros(n, length, dtype=torch.float32, device=dev) if dest is None else dest.zero_()
        return _to_float(mask, dest).mul_(value[:, None])

    def flag_out(key: str, mask: torch.Tensor | None) -> torch.Tensor:
        dest = out.get(key)
        if mask is None:
            return torch.zeros(n, length, dtype=torch.bool, device=dev) if dest is None else dest.zero_()
        return mask if dest is None else dest.copy_(mask)

    term = sw if term_on_switch else None
    res = {
        "advantages_low": product("advantages_low", act, adv[0]),
        "advantages_high": product("advantages_high", hi, adv[1]),
        "advantages_term": product("advantages_term", term, adv[2]),
    }
    total = out.get("advantages")
    if total is None:
        total = res["advantages_low"] + res["advantages_high"]
    else:
        torch.add(res["advantages_low"], res["advantages_high"], out=total)
    if term is not None:
        total += res["advantages_term"]
    res["advantages"] = total
    for k, head in enumerate(("low", "high", "term")):
        res[f"returns_{head}"] = product(f"returns_{head}", value_masks[head], rows[3 + k])
    res["hae_lo_mask"] = flag_out("hae_lo_mask", act)
    res["hae_hi_mask"] = flag_out("hae_hi_mask", hi)
    res["hae_term_mask"] = flag_out("hae_term_mask", term)
    return {key: res[key] for key in FLOAT_KEYS + MASK_KEYS}
