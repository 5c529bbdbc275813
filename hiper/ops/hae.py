"""Per-turn Hierarchical Advantage Estimation: reward shaping, HAE recurrences and
advantage normalisation (docs/semantics.md §4.1-§4.5, §4.7).

Every function takes per-turn rows in any order (numpy arrays or torch tensors; one row
per trajectory turn) and returns results in the caller's framework, row-aligned with the
input. float32 in and out; the recurrences accumulate in float64.

CUDA tensors (with a layout built from them) run on their GPU, on the current stream, and
the results stay there; the ops do not wait for the GPU (see hiper.ops._cuda for what the
device path does not check). Inputs must all be on one device.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, Allocator, optional_numpy, out_view, to_numpy, token_ids
from hiper.config import HAEConfig
from hiper.ops._device import is_cuda_tensor
from hiper.ops.layout import TrajectoryLayout, build_layout, check_rows, factorize
from hiper.ops.types import TURN_OUTPUTS, HAETurnOutputs


def shape_rewards(
    layout: TrajectoryLayout,
    rewards: Any,
    *,
    is_new_subgoal: Any = None,
    is_action_valid: Any = None,
    subgoal_changed: Any = None,
    keep_penalty: float = 0.0,
    keep_penalty_mode: str = "fixed",
    invalid_action_penalty_coef: float = 0.0,
    keep_consistency_penalty: float = 0.0,
    out: Any = None,
):
    """Shaped per-turn rewards (docs/semantics.md §4.1), (N,) float32.

    r = rewards + keep penalty on KEEP turns (is_new_subgoal False; "fixed": keep_penalty
    each, "normalized": keep_penalty / T each in a T > 1 turn trajectory)
    - invalid_action_penalty_coef * max(0, 1 - is_action_valid)
    + keep_consistency_penalty on KEEP turns after the first whose `subgoal_changed` is set.

    `is_action_valid` is a per-turn float (1 valid, 0 invalid) or bool; None means all
    valid. `subgoal_changed` comes from `subgoal_changed()` or a span masker.
    """
    if layout.is_cuda:
        from hiper.ops import _cuda

        return _cuda.shape_rewards(layout, rewards, is_new_subgoal, is_action_valid, subgoal_changed, keep_penalty,
                                   keep_penalty_mode, invalid_action_penalty_coef, keep_consistency_penalty, out)
    r = to_numpy(rewards, "rewards", FLOAT32, ndim=1)
    check_rows(layout, r, "rewards")
    switch = optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1)
    valid = optional_numpy(is_action_valid, "is_action_valid", FLOAT32, ndim=1)
    changed = optional_numpy(subgoal_changed, "subgoal_changed", BOOL, ndim=1)
    alloc = Allocator(rewards)
    if out is None:
        result, view = alloc.empty(r.shape, FLOAT32)
    else:
        result, view = out, out_view(out, "out", r.shape, FLOAT32)
    _C.shape_rewards(layout.core, r, switch, valid, changed, float(keep_penalty), keep_penalty_mode,
                     float(invalid_action_penalty_coef), float(keep_consistency_penalty), view)
    return result


def hae_turns(
    layout: TrajectoryLayout,
    rewards: Any,
    dones: Any,
    v_low: Any,
    v_high: Any,
    v_term: Any = None,
    *,
    gamma: float = 1.0,
    lam_turn: float = 1.0,
    lam_seg: float = 0.95,
    bootstrap_truncated: bool = False,
) -> HAETurnOutputs:
    """HAE recurrences on shaped per-turn rewards (docs/semantics.md §4.3-§4.5).

    Args:
        layout: from `build_layout` over the same rows.
        rewards: (N,) float32 shaped rewards.
        dones: (N,) bool; a trajectory whose last turn is not done is truncated.
        v_low, v_high: (N,) float32 low-level V^L(s_t, o_t) and high-level V^H(s_t) values
            (V^H is read on segment-start rows only).
        v_term: (N,) float32 termination-head values, or None (no termination advantage).
        gamma, lam_turn, lam_seg: discount and the two GAE lambdas.
        bootstrap_truncated: bootstrap truncated episodes from V^L(last turn) (turn level)
            and V^H(start of the last segment) (segment level and termination returns).
    Returns:
        HAETurnOutputs, row-aligned with the inputs. Non-finite rewards or values raise
        ValueError naming the argument (on the host path).
    """
    if layout.is_cuda:
        from hiper.ops import _cuda

        return _cuda.hae_turns(layout, rewards, dones, v_low, v_high, v_term, gamma=gamma, lam_turn=lam_turn,
                               lam_seg=lam_seg, bootstrap_truncated=bootstrap_truncated)
    r = to_numpy(rewards, "rewards", FLOAT32, ndim=1)
    check_rows(layout, r, "rewards")
    arrays = {}
    for name, value in (("dones", dones), ("v_low", v_low), ("v_high", v_high), ("v_term", v_term)):
        if value is None:
            arrays[name] = None
            continue
        arrays[name] = to_numpy(value, name, BOOL if name == "dones" else FLOAT32, ndim=1)
        check_rows(layout, arrays[name], name)
    alloc = Allocator(rewards)
    outs = [alloc.empty(r.shape, FLOAT32) for _ in range(6)]
    _C.hae(layout.core, r, arrays["dones"], arrays["v_low"], arrays["v_high"], arrays["v_term"],
           float(gamma), float(lam_turn), float(lam_seg), bool(bootstrap_truncated), *(view for _, view in outs))
    return HAETurnOutputs(*(res for res, _ in outs), alloc.wrap(layout.is_boundary.copy()))


def normalize_advantages(adv: Any, include: Any = None, *, eps: float = 1e-8, out: Any = None):
    """(adv - mean) / (std + eps) on the rows where `include` is set (all rows when None);
    mean and population std over those rows, each turn counted once (docs/semantics.md §4.7). Other rows
    are returned unchanged, as is everything when no row is included. (N,) float32."""
    if is_cuda_tensor(adv):
        from hiper.ops import _cuda

        return _cuda.normalize_advantages(adv, include, eps, out)
    x = to_numpy(adv, "adv", FLOAT32, ndim=1)
    inc = optional_numpy(include, "include", BOOL, ndim=1)
    if inc is not None and inc.shape != x.shape:
        raise ValueError(f"include: expected {x.shape[0]} rows like adv, got {inc.shape[0]}")
    if out is None:
        result, view = Allocator(adv).empty(x.shape, FLOAT32)
    else:
        result, view = out, out_view(out, "out", x.shape, FLOAT32)
    count, mean, std = _C.masked_moments(x, inc)
    if count == 0:
        np.copyto(view, x)
    else:
        _C.normalize(x, inc, mean, std, float(eps), view)
    return result


def subgoal_changed(
    layout: TrajectoryLayout, responses: Any, subgoal_mask: Any, response_mask: Any, *, requires_both: bool = True
):
    """Per-turn flag for the keep-consistency penalty: the token ids under
    (subgoal_mask & response_mask) differ from those of the trajectory's previous turn.

    With requires_both, turns where either sequence is empty are not flagged; without it,
    an empty current subgoal always counts as changed (the authors' rule). Turn 0 is never
    flagged. responses: (N, L) int64 or int32; masks: (N, L) bool. Returns (N,) bool.
    """
    if layout.is_cuda:
        from hiper.ops import _cuda

        return _cuda.subgoal_changed(layout, responses, subgoal_mask, response_mask, requires_both)
    tok = token_ids(responses, "responses")
    check_rows(layout, tok, "responses")
    sub = to_numpy(subgoal_mask, "subgoal_mask", BOOL, ndim=2)
    resp = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
    for name, arr in (("subgoal_mask", sub), ("response_mask", resp)):
        if arr.shape != tok.shape:
            raise ValueError(f"{name}: expected shape {tuple(tok.shape)} like responses, got {tuple(arr.shape)}")
    alloc = Allocator(responses)
    result, view = alloc.empty((tok.shape[0],), BOOL)
    _C.subgoal_changed(layout.core, tok, sub, resp, bool(requires_both), view)
    return result


def hae_core(
    layout: TrajectoryLayout,
    rewards: Any,
    dones: Any,
    v_low: Any,
    v_high: Any,
    v_term: Any = None,
    *,
    is_new_subgoal: Any = None,
    is_action_valid: Any = None,
    subgoal_changed: Any = None,
    config: HAEConfig | None = None,
    credited_low: Any = None,
    credited_high: Any = None,
    credited_term: Any = None,
) -> HAETurnOutputs:
    """Reward shaping, HAE recurrences and (if config.norm_adv) normalisation over a
    prebuilt layout, in one call into the core. Arguments as in `hae`."""
    cfg = config if config is not None else HAEConfig()
    if layout.is_cuda:
        from hiper.ops import _cuda

        return _cuda.hae_core(layout, rewards, dones, v_low, v_high, v_term, is_new_subgoal=is_new_subgoal,
                              is_action_valid=is_action_valid, subgoal_changed=subgoal_changed, cfg=cfg,
                              credited_low=credited_low, credited_high=credited_high, credited_term=credited_term)
    r = to_numpy(rewards, "rewards", FLOAT32, ndim=1)
    check_rows(layout, r, "rewards")
    arrays = {}
    for name, value, dtype in (("is_new_subgoal", is_new_subgoal, BOOL), ("is_action_valid", is_action_valid, FLOAT32),
                               ("subgoal_changed", subgoal_changed, BOOL), ("dones", dones, BOOL),
                               ("v_low", v_low, FLOAT32), ("v_high", v_high, FLOAT32), ("v_term", v_term, FLOAT32),
                               ("credited_low", credited_low, BOOL), ("credited_high", credited_high, BOOL),
                               ("credited_term", credited_term, BOOL)):
        arrays[name] = optional_numpy(value, name, dtype, ndim=1)
        if arrays[name] is not None:
            check_rows(layout, arrays[name], name)
    alloc = Allocator(rewards)
    shaped = np.empty(r.shape, FLOAT32)
    outs = [alloc.empty(r.shape, FLOAT32) for _ in range(6)]
    _C.hae_pipeline(layout=layout.core, config=cfg, rewards=r, shaped=shaped, **arrays,
                    **{name: view for name, (_, view) in zip(TURN_OUTPUTS, outs)})
    return HAETurnOutputs(*(res for res, _ in outs), alloc.wrap(layout.is_boundary.copy()))


def hae(
    traj_ids: Any,
    turn_idx: Any,
    rewards: Any,
    dones: Any,
    v_low: Any,
    v_high: Any,
    v_term: Any = None,
    *,
    is_new_subgoal: Any = None,
    is_action_valid: Any = None,
    subgoal_changed: Any = None,
    config: HAEConfig | None = None,
    credited_low: Any = None,
    credited_high: Any = None,
    credited_term: Any = None,
    validate: bool = True,
) -> HAETurnOutputs:
    """Per-turn HAE in one call: layout, reward shaping, recurrences and (if
    config.norm_adv) normalisation.

    Args:
        traj_ids: (N,) trajectory ids: integers, or any hashables (factorised).
        turn_idx: (N,) int turn index within the trajectory (>= 0, unique per trajectory).
        rewards: (N,) float environment reward of each turn.
        dones: (N,) bool.
        v_low, v_high, v_term: (N,) float values of the low, high and termination heads
            (v_term None: two-head critic, no termination advantage).
        is_new_subgoal: (N,) bool SWITCH flags (None: every turn KEEP).
        is_action_valid: (N,) float or bool format-validity (for the invalid-action penalty).
        subgoal_changed: (N,) bool (for the keep-consistency penalty).
        config: HAEConfig (defaults when None).
        credited_low / credited_high / credited_term: (N,) bool, the turns each advantage
            lands on, over which normalisation statistics are taken (defaults: every turn /
            segment starts / every turn). With token masks, the drop-in passes the turns
            whose span is non-empty, as the authors do.
        validate: with CUDA tensors, check the turns (negative, repeated) before computing,
            which waits for the GPU once; False skips the check and the wait, and invalid
            turns then give meaningless results instead of an error. The host path always
            checks.
    Returns:
        HAETurnOutputs; advantages normalised when config.norm_adv, returns never.
    """
    layout = build_layout(factorize(traj_ids), turn_idx, is_new_subgoal, validate=validate)
    return hae_core(layout, rewards, dones, v_low, v_high, v_term, is_new_subgoal=is_new_subgoal,
                    is_action_valid=is_action_valid, subgoal_changed=subgoal_changed, config=config,
                    credited_low=credited_low, credited_high=credited_high, credited_term=credited_term)

