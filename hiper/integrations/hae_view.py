"""HAE on a batch given as plain arrays: one adapter for every caller that is not a verl batch.

`compute_hae_advantage` reads a verl-style batch (`.batch` of (N, L) tensors, with the value
heads and the masks where each head is read, and `.non_tensor_batch` of per-turn arrays).
Callers that hold their rows in other containers (verl's DataProto through the registered
estimator, hiper's own packed rollouts) hand the pieces to `hae_for_responses`, which derives
the span masks and the value masks, builds that view and returns the token-level outputs.
It runs on the host: inputs on a GPU are copied over, and the outputs are CPU tensors.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from hiper.config import HAEConfig
from hiper.masks import SpanMasker, SpanMasks, segment_starts

HEADS = ("low", "high", "term")

# What compute_hae_advantage writes, (N, L) each.
OUTPUT_KEYS = ("advantages", "advantages_low", "advantages_high", "advantages_term", "returns_low", "returns_high",
               "returns_term", "hae_lo_mask", "hae_hi_mask", "hae_term_mask")


class HAEResult(NamedTuple):
    """outputs: compute_hae_advantage's token-level outputs by key (OUTPUT_KEYS), CPU tensors.
    value_masks: the masker's value_mask_low / value_mask_high / value_mask_term, (N, L) bool
    on the CPU: where each value head is read, hence where its returns are its targets."""

    outputs: dict[str, Any]
    value_masks: SpanMasks


def _value_heads(values: Any) -> dict[str, Any]:
    """{head: (N, L) values} from one shared head or a mapping of heads ("term" optional)."""
    import torch

    if isinstance(values, torch.Tensor):
        return {h: values for h in HEADS}  # a single value head stands in for all three
    if not isinstance(values, Mapping):
        raise TypeError(f"values: expected an (N, L) tensor or a mapping of heads {HEADS}, "
                        f"got {type(values).__name__}")
    unknown = set(values) - set(HEADS)
    if unknown or not {"low", "high"} <= set(values):
        raise ValueError(f"values: expected the heads 'low' and 'high' (and optionally 'term'), got {sorted(values)}")
    return dict(values)


def _per_turn(name: str, value: Any, n: int, dtype: Any = None) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows like responses, got shape {arr.shape}")
    return arr


def hae_for_responses(responses: Any, response_mask: Any, values: Any, *, traj_ids: Any, turn_idx: Any, dones: Any,
                      rewards: Any, masker: SpanMasker, config: HAEConfig, spans: SpanMasks | None = None,
                      is_action_valid: Any = None, reducer: Any = None) -> HAEResult:
    """Hierarchical advantages of N turns, one response each.

    Args:
        responses: (N, L) token ids; response_mask: (N, L) bool (or 0/1 integers).
        values: the critic's (N, L) outputs: one tensor, shared by the three HAE values (a
            single value head), or a mapping with the heads "low", "high" and optionally
            "term" (without it, no termination advantage is computed).
        traj_ids: (N,) trajectory of each turn, any hashable values; turn_idx: (N,) its index
            in the trajectory; dones: (N,) bool, the trajectory ended at this turn; rewards:
            (N,) the turn's environment reward.
        masker: the policy tokenizer's SpanMasker.
        config: HAEConfig.
        spans: the masker's output for these responses with include_tags=True (the span masks
            and the switch decisions), when the caller already has it; computed otherwise.
        is_action_valid: optional (N,) validity of each turn's action (the invalid-action
            penalty); reducer: as in compute_hae_advantage, for one rank's share of a batch.
    Returns:
        HAEResult.
    """
    import torch

    from hiper.integrations.verl import compute_hae_advantage

    if not isinstance(config, HAEConfig):
        raise TypeError(f"config: expected hiper.HAEConfig, got {type(config).__name__}")
    responses, response_mask = torch.as_tensor(responses).cpu(), torch.as_tensor(response_mask).cpu().bool()
    if responses.dim() != 2:
        raise ValueError(f"responses: expected (N, L) token ids, got shape {tuple(responses.shape)}")
    if response_mask.shape != responses.shape:
        raise ValueError(f"response_mask: expected the shape of responses {tuple(responses.shape)}, "
                         f"got {tuple(response_mask.shape)}")
    n = responses.shape[0]
    heads = {h: torch.as_tensor(v).detach().float().cpu() for h, v in _value_heads(values).items()}
    for h, v in heads.items():
        if v.dim() != 2 or v.shape[0] != n:
            raise ValueError(f"values[{h!r}]: expected ({n}, L) like responses, got shape {tuple(v.shape)}")
    traj = _per_turn("traj_ids", traj_ids, n)
    turn = _per_turn("turn_idx", turn_idx, n, np.int64)
    meta = {"traj_uid": traj, "turn_idx": turn, "dones": _per_turn("dones", dones, n, bool),
            "rewards": _per_turn("rewards", rewards, n, np.float32)}
    if is_action_valid is not None:
        meta["is_action_valid"] = _per_turn("is_action_valid", is_action_valid, n, np.float32)
    if spans is None:
        spans = masker(responses, response_mask, include_tags=True)
    switch = spans.is_new_subgoal.numpy()
    meta["switch"] = switch

    # The high value is read at segment starts: the first turn of each trajectory or a SWITCH.
    boundary = torch.from_numpy(segment_starts(traj, turn, switch))
    value_masks = masker(responses, response_mask, is_boundary=boundary,
                         outputs=("value_mask_high", "value_mask_low", "value_mask_term"))
    view = SimpleNamespace(
        batch={"responses": responses, "response_mask": response_mask,
               **{getattr(config, f"value_key_{h}"): v for h, v in heads.items()},
               "value_mask_low": value_masks.value_mask_low, "value_mask_high": value_masks.value_mask_high,
               # compute_hae_advantage takes the term head only together with its mask.
               **({"value_mask_term": value_masks.value_mask_term} if "term" in heads else {})},
        non_tensor_batch=meta)
    compute_hae_advantage(view, config, spans.action_mask, spans.subgoal_mask, spans.switch_mask, reducer=reducer)
    return HAEResult({key: view.batch[key] for key in OUTPUT_KEYS}, value_masks)
