"""hiper's ops as PyTorch custom operators: `torch.ops.hiper.*`.

    import hiper.library            # registers the ops (importing hiper alone does not need torch)
    adv, ret = torch.ops.hiper.turn_gae(traj_ids, turn_idx, rewards, dones, values, 0.99, 0.95, False)

Every op is a `torch.library.custom_op` with a fake (meta) implementation, so it traces
under `torch.compile` (fullgraph) and `torch.export`, and passes `torch.library.opcheck`.
The ops take tensors only: trajectory ids as int64 (use `hiper.factorize` first for
strings), the layout rebuilt inside each op from (traj_ids, turn_idx[, is_new_subgoal])
(linear time, cheap next to any op that reads it). Outputs are new tensors, never views of
inputs. No op has a gradient: advantages and masks are targets, not functions to
differentiate.

Stateful objects stay Python objects: a `SpanMasker` (a tokenizer's vocabulary table) is
passed to `span_masks` by the integer handle `masker_handle(masker)` returns, and the
`TrajectoryBuffer` is a growable container, not an op.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import Tensor

from hiper import ops as _ops
from hiper.config import HAEConfig
from hiper.masks import SpanMasker

_F32, _I64, _BOOL = torch.float32, torch.int64, torch.bool


def _empty(like: Tensor, shape, dtype) -> Tensor:
    return like.new_empty(shape, dtype=dtype)


# ----------------------------------------------------------------------------- layout
@torch.library.custom_op("hiper::build_layout", mutates_args=())
def build_layout(traj_ids: Tensor, turn_idx: Tensor, is_new_subgoal: Optional[Tensor] = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(order, traj_offsets, seg_offsets, traj_seg_offsets, is_boundary, position); see
    hiper.TrajectoryLayout."""
    lay = _ops.build_layout(traj_ids, turn_idx, is_new_subgoal)
    # Host layouts hold (read-only) numpy arrays, device layouts tensors: new tensors either way.
    return tuple(_fresh(getattr(lay, name)) for name in
                 ("order", "traj_offsets", "seg_offsets", "traj_seg_offsets", "is_boundary", "position"))


def _fresh(x) -> Tensor:
    return x.clone() if isinstance(x, Tensor) else torch.from_numpy(x.copy())


@build_layout.register_fake
def _(traj_ids, turn_idx, is_new_subgoal=None):
    ctx = torch.library.get_ctx()
    n = traj_ids.shape[0]
    trajs_plus_one = ctx.new_dynamic_size()
    segs_plus_one = ctx.new_dynamic_size()
    return (_empty(traj_ids, (n,), _I64), _empty(traj_ids, (trajs_plus_one,), _I64),
            _empty(traj_ids, (segs_plus_one,), _I64), _empty(traj_ids, (trajs_plus_one,), _I64),
            _empty(traj_ids, (n,), _BOOL), _empty(traj_ids, (n,), _I64))


# ----------------------------------------------------------------------------- HAE per turn
@torch.library.custom_op("hiper::shape_rewards", mutates_args=())
def shape_rewards(traj_ids: Tensor, turn_idx: Tensor, rewards: Tensor, is_new_subgoal: Optional[Tensor],
                  is_action_valid: Optional[Tensor], subgoal_changed: Optional[Tensor], keep_penalty: float,
                  keep_penalty_mode: str, invalid_action_penalty_coef: float,
                  keep_consistency_penalty: float) -> Tensor:
    lay = _ops.build_layout(traj_ids, turn_idx, is_new_subgoal)
    return _ops.shape_rewards(lay, rewards, is_new_subgoal=is_new_subgoal, is_action_valid=is_action_valid,
                              subgoal_changed=subgoal_changed, keep_penalty=keep_penalty,
                              keep_penalty_mode=keep_penalty_mode,
                              invalid_action_penalty_coef=invalid_action_penalty_coef,
                              keep_consistency_penalty=keep_consistency_penalty)


@shape_rewards.register_fake
def _(traj_ids, turn_idx, rewards, *args):
    return _empty(rewards, rewards.shape, _F32)


_TURN_OUT = 6  # adv_low, ret_low, adv_high, ret_high, adv_term, ret_term (+ is_boundary)


@torch.library.custom_op("hiper::hae_turns", mutates_args=())
def hae_turns(traj_ids: Tensor, turn_idx: Tensor, is_new_subgoal: Optional[Tensor], rewards: Tensor,
              dones: Tensor, v_low: Tensor, v_high: Tensor, v_term: Optional[Tensor], gamma: float,
              lam_turn: float, lam_seg: float, bootstrap_truncated: bool
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """HAE recurrences on shaped rewards: hiper.hae_turns as a tuple."""
    lay = _ops.build_layout(traj_ids, turn_idx, is_new_subgoal)
    return tuple(_ops.hae_turns(lay, rewards, dones, v_low, v_high, v_term, gamma=gamma, lam_turn=lam_turn,
                                lam_seg=lam_seg, bootstrap_truncated=bootstrap_truncated))


@hae_turns.register_fake
def _(traj_ids, turn_idx, is_new_subgoal, rewards, *args):
    n = rewards.shape[0]
    return tuple(_empty(rewards, (n,), _F32) for _ in range(_TURN_OUT)) + (_empty(rewards, (n,), _BOOL),)


@torch.library.custom_op("hiper::hae", mutates_args=())
def hae(traj_ids: Tensor, turn_idx: Tensor, rewards: Tensor, dones: Tensor, v_low: Tensor, v_high: Tensor,
        v_term: Optional[Tensor], is_new_subgoal: Optional[Tensor], is_action_valid: Optional[Tensor],
        subgoal_changed: Optional[Tensor], gamma: float, lam_turn: float, lam_seg: float, norm_adv: bool,
        bootstrap_truncated: bool, keep_penalty: float, keep_penalty_mode: str, invalid_action_penalty_coef: float,
        keep_consistency_penalty: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Shaping, recurrences and normalisation in one op: hiper.hae as a tuple."""
    cfg = HAEConfig(gamma=gamma, lam_turn=lam_turn, lam_seg=lam_seg, norm_adv=norm_adv,
                    bootstrap_truncated=bootstrap_truncated, keep_penalty=keep_penalty,
                    keep_penalty_mode=keep_penalty_mode, invalid_action_penalty_coef=invalid_action_penalty_coef,
                    keep_consistency_penalty=keep_consistency_penalty)
    return tuple(_ops.hae(traj_ids, turn_idx, rewards, dones, v_low, v_high, v_term, is_new_subgoal=is_new_subgoal,
                          is_action_valid=is_action_valid, subgoal_changed=subgoal_changed, config=cfg))


@hae.register_fake
def _(traj_ids, turn_idx, rewards, *args):
    n = rewards.shape[0]
    return tuple(_empty(rewards, (n,), _F32) for _ in range(_TURN_OUT)) + (_empty(rewards, (n,), _BOOL),)


@torch.library.custom_op("hiper::normalize_advantages", mutates_args=())
def normalize_advantages(adv: Tensor, include: Optional[Tensor], eps: float) -> Tensor:
    return _ops.normalize_advantages(adv, include, eps=eps)


@normalize_advantages.register_fake
def _(adv, include, eps):
    return _empty(adv, adv.shape, _F32)


@torch.library.custom_op("hiper::subgoal_changed", mutates_args=())
def subgoal_changed(traj_ids: Tensor, turn_idx: Tensor, responses: Tensor, subgoal_mask: Tensor,
                    response_mask: Tensor, requires_both: bool) -> Tensor:
    lay = _ops.build_layout(traj_ids, turn_idx)
    return _ops.subgoal_changed(lay, responses, subgoal_mask, response_mask, requires_both=requires_both)


@subgoal_changed.register_fake
def _(traj_ids, turn_idx, responses, *args):
    return _empty(responses, (responses.shape[0],), _BOOL)


# ----------------------------------------------------------------------------- token level
@torch.library.custom_op("hiper::row_scan", mutates_args=())
def row_scan(response_mask: Tensor, action_mask: Optional[Tensor], subgoal_mask: Optional[Tensor],
             switch_mask: Optional[Tensor], value_mask_low: Optional[Tensor], value_mask_high: Optional[Tensor],
             value_mask_term: Optional[Tensor], values_low: Optional[Tensor], values_high: Optional[Tensor],
             values_term: Optional[Tensor]) -> list[Tensor]:
    """hiper.row_scan's fields as a list; an absent value head gives an empty (0,) tensor."""
    s = _ops.row_scan(response_mask, action_mask, subgoal_mask, switch_mask, value_mask_low, value_mask_high,
                      value_mask_term, values_low=values_low, values_high=values_high, values_term=values_term)
    return [v if v is not None else torch.empty(0, dtype=_F32, device=response_mask.device) for v in s]


@row_scan.register_fake
def _(response_mask, action_mask, subgoal_mask, switch_mask, vml, vmh, vmt, values_low, values_high, values_term):
    n = response_mask.shape[0]
    out = [_empty(response_mask, (n,), _I64)] + [_empty(response_mask, (n,), _BOOL) for _ in range(3)]
    out += [_empty(response_mask, (n,), _I64) for _ in range(3)]
    out += [_empty(response_mask, (n,) if v is not None else (0,), _F32) for v in (values_low, values_high, values_term)]
    return out


@torch.library.custom_op("hiper::hae_token_outputs", mutates_args=())
def hae_token_outputs(adv_low: Tensor, ret_low: Tensor, adv_high: Tensor, ret_high: Tensor, adv_term: Tensor,
                      ret_term: Tensor, is_boundary: Tensor, response_mask: Tensor, action_mask: Optional[Tensor],
                      subgoal_mask: Optional[Tensor], switch_mask: Optional[Tensor],
                      value_mask_low: Optional[Tensor], value_mask_high: Optional[Tensor],
                      value_mask_term: Optional[Tensor], assign_high_to_subgoal: bool, assign_high_to_switch: bool,
                      assign_term_to_switch: bool) -> list[Tensor]:
    """hiper.hae_token_outputs with every output, in HAETokenOutputs order (7 float, 4 bool)."""
    turns = _ops.HAETurnOutputs(adv_low, ret_low, adv_high, ret_high, adv_term, ret_term, is_boundary)
    out = _ops.hae_token_outputs(turns, response_mask, action_mask=action_mask, subgoal_mask=subgoal_mask,
                                 switch_mask=switch_mask, value_mask_low=value_mask_low,
                                 value_mask_high=value_mask_high, value_mask_term=value_mask_term,
                                 assign_high_to_subgoal=assign_high_to_subgoal,
                                 assign_high_to_switch=assign_high_to_switch,
                                 assign_term_to_switch=assign_term_to_switch)
    return list(out)


@hae_token_outputs.register_fake
def _(adv_low, ret_low, adv_high, ret_high, adv_term, ret_term, is_boundary, response_mask, *args):
    shape = response_mask.shape
    return [_empty(response_mask, shape, _F32) for _ in range(7)] + [_empty(response_mask, shape, _BOOL)
                                                                    for _ in range(4)]


_maskers: dict[int, SpanMasker] = {}
_handles = itertools.count(1)


def masker_handle(masker: SpanMasker) -> int:
    """An integer handle for `masker` that `span_masks` accepts (the masker stays alive
    until `release_masker`)."""
    for handle, known in _maskers.items():
        if known is masker:
            return handle
    handle = next(_handles)
    _maskers[handle] = masker
    return handle


def release_masker(handle: int) -> None:
    _maskers.pop(handle, None)


@torch.library.custom_op("hiper::span_masks", mutates_args=())
def span_masks(masker: int, responses: Tensor, response_mask: Tensor, include_tags: bool,
               is_boundary: Optional[Tensor]) -> list[Tensor]:
    """[action, subgoal, switch, is_new_subgoal, value_mask_low, value_mask_term, value_mask_high]
    (value_mask_high only with is_boundary; else (0, 0))."""
    if masker not in _maskers:
        raise ValueError(f"masker: unknown handle {masker}; get one from hiper.library.masker_handle(masker)")
    names = ["action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_low", "value_mask_term"]
    if is_boundary is not None:
        names.append("value_mask_high")
    out = _maskers[masker](responses, response_mask, include_tags=include_tags, is_boundary=is_boundary,
                           outputs=tuple(names))
    result = [getattr(out, name) for name in names]
    if is_boundary is None:
        result.append(torch.zeros((0, 0), dtype=_BOOL))
    return result


@span_masks.register_fake
def _(masker, responses, response_mask, include_tags, is_boundary):
    n, length = responses.shape
    out = [_empty(responses, (n, length), _BOOL) for _ in range(3)] + [_empty(responses, (n,), _BOOL)]
    out += [_empty(responses, (n, length), _BOOL) for _ in range(2)]
    out.append(_empty(responses, (n, length) if is_boundary is not None else (0, 0), _BOOL))
    return out


# ----------------------------------------------------------------------------- flat baselines
@torch.library.custom_op("hiper::turn_gae", mutates_args=())
def turn_gae(traj_ids: Tensor, turn_idx: Tensor, rewards: Tensor, dones: Tensor, values: Optional[Tensor],
             gamma: float, lam: float, bootstrap_truncated: bool) -> tuple[Tensor, Tensor]:
    lay = _ops.build_layout(traj_ids, turn_idx)
    return tuple(_ops.turn_gae(lay, rewards, dones, values, gamma=gamma, lam=lam,
                               bootstrap_truncated=bootstrap_truncated))


@turn_gae.register_fake
def _(traj_ids, turn_idx, rewards, *args):
    return _empty(rewards, rewards.shape, _F32), _empty(rewards, rewards.shape, _F32)


@torch.library.custom_op("hiper::token_gae", mutates_args=())
def token_gae(token_rewards: Tensor, values: Tensor, response_mask: Tensor, gamma: float,
              lam: float) -> tuple[Tensor, Tensor]:
    return tuple(_ops.token_gae(token_rewards, values, response_mask, gamma=gamma, lam=lam))


@token_gae.register_fake
def _(token_rewards, values, response_mask, gamma, lam):
    return _empty(token_rewards, token_rewards.shape, _F32), _empty(token_rewards, token_rewards.shape, _F32)


@torch.library.custom_op("hiper::masked_whiten", mutates_args=())
def masked_whiten(x: Tensor, mask: Tensor, eps: float) -> Tensor:
    return _ops.masked_whiten(x, mask, eps=eps)


@masked_whiten.register_fake
def _(x, mask, eps):
    return _empty(x, x.shape, _F32)


@torch.library.custom_op("hiper::episode_returns", mutates_args=())
def episode_returns(traj_ids: Tensor, turn_idx: Tensor, rewards: Tensor) -> Tensor:
    return _ops.episode_returns(_ops.build_layout(traj_ids, turn_idx), rewards)


@episode_returns.register_fake
def _(traj_ids, turn_idx, rewards):
    return _empty(rewards, rewards.shape, _F32)


@torch.library.custom_op("hiper::group_advantages", mutates_args=())
def group_advantages(scores: Tensor, groups: Tensor, mode: str, samples: Optional[Tensor], eps: float) -> Tensor:
    return _ops.group_advantages(scores, groups, mode=mode, samples=samples, eps=eps)


@group_advantages.register_fake
def _(scores, groups, mode, samples, eps):
    return _empty(scores, scores.shape, _F32)


@torch.library.custom_op("hiper::gigpo_advantages", mutates_args=())
def gigpo_advantages(traj_ids: Tensor, turn_idx: Tensor, scores: Tensor, step_rewards: Tensor, dones: Tensor,
                     groups: Tensor, anchors: Tensor, gamma: float, step_weight: float, mode: str,
                     eps: float, step_penalty: Tensor | None = None) -> Tensor:
    """anchors: int64 observation codes (e.g. hiper.factorize of the observation texts);
    step_penalty: (N,) subtracted from each turn's own step return (the authors' invalid-action
    penalty, coef * (1 - is_action_valid)), or None."""
    lay = _ops.build_layout(traj_ids, turn_idx)
    return _ops.gigpo_advantages(lay, scores, step_rewards, dones, groups, anchors, gamma=gamma,
                                 step_weight=step_weight, mode=mode, eps=eps, step_penalty=step_penalty)


@gigpo_advantages.register_fake
def _(traj_ids, turn_idx, scores, *args):
    return _empty(scores, scores.shape, _F32)


OPS = (build_layout, shape_rewards, hae_turns, hae, normalize_advantages, subgoal_changed, row_scan,
       hae_token_outputs, span_masks, turn_gae, token_gae, masked_whiten, episode_returns, group_advantages,
       gigpo_advantages)
