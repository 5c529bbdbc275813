"""The result types of the ops and of the span masker, and the names of their fields.

Kept apart from the code that makes them, so that the host ops (hiper.ops.hae, tokens,
hiper.masks) and their CUDA twins (hiper.ops._cuda) both import them from below: this module
imports nothing of hiper's. Each type is also importable where it has always been
(hiper.HAETurnOutputs, hiper.ops.hae.HAETurnOutputs, hiper.masks.SpanMasks, ...).
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["FLOAT_OUTPUTS", "MASK_NAMES", "MASK_OUTPUTS", "FlatOutputs", "HAETokenOutputs", "HAETurnOutputs",
           "RowSummary", "SpanMasks", "TOKEN_MASKS", "TURN_OUTPUTS"]


class FlatOutputs(NamedTuple):
    """advantages and returns (critic targets), same shape as the estimator's rewards."""

    advantages: Any
    returns: Any


class HAETurnOutputs(NamedTuple):
    """Per-turn HAE results, each (N,) float32 except is_boundary (bool).

    adv_low / ret_low: turn-level advantage A^L and return target R^L on every turn.
    adv_high / ret_high: segment-level A^H and R^H on segment-start rows, 0 elsewhere.
    adv_term / ret_term: termination A^T and target G^T (0 without a termination head).
    is_boundary: the row starts a segment.
    """

    adv_low: Any
    ret_low: Any
    adv_high: Any
    ret_high: Any
    adv_term: Any
    ret_term: Any
    is_boundary: Any


# The per-turn results of HAE, without is_boundary.
TURN_OUTPUTS = ("adv_low", "ret_low", "adv_high", "ret_high", "adv_term", "ret_term")


class RowSummary(NamedTuple):
    """Per-row facts read off (N, L) masks, each (N,).

    response_length: valid response tokens (int64).
    has_action / has_subgoal / has_switch: the span (ANDed with the response mask) is non-empty.
    pos_low / pos_high / pos_term: where each value head is read: the first position of
        (value_mask & response_mask), else the last valid token max(length - 1, 0).
    value_low / value_high / value_term: float32 head values at those positions, when the
        head's (N, L) outputs were given (else None).
    """

    response_length: Any
    has_action: Any
    has_subgoal: Any
    has_switch: Any
    pos_low: Any
    pos_high: Any
    pos_term: Any
    value_low: Any = None
    value_high: Any = None
    value_term: Any = None


class HAETokenOutputs(NamedTuple):
    """(N, L) token-level HAE outputs. Float ones are float32, masks bool.

    advantages = advantages_low + advantages_high + advantages_term.
    returns_*: the per-turn return targets at the value_mask_* positions, 0 elsewhere.
    lo_mask / hi_mask / term_mask: where each advantage lands; loss_mask their union.
    Outputs not requested are None.
    """

    advantages: Any = None
    advantages_low: Any = None
    advantages_high: Any = None
    advantages_term: Any = None
    returns_low: Any = None
    returns_high: Any = None
    returns_term: Any = None
    lo_mask: Any = None
    hi_mask: Any = None
    term_mask: Any = None
    loss_mask: Any = None


FLOAT_OUTPUTS = ("advantages", "advantages_low", "advantages_high", "advantages_term",
                 "returns_low", "returns_high", "returns_term")
MASK_OUTPUTS = ("lo_mask", "hi_mask", "term_mask", "loss_mask")


class SpanMasks(NamedTuple):
    """Masker outputs; (N, L) bool masks and (N,) bool `is_new_subgoal`. Unrequested ones are None.

    action_mask / subgoal_mask / switch_mask: token spans of the blocks (with or without the
        tags), within the response mask; action falls back to the whole response.
    is_new_subgoal: the switch block says anything but KEEP (missing or empty means KEEP).
    value_mask_high / value_mask_low / value_mask_term: where the value heads are read.
    """

    action_mask: Any = None
    subgoal_mask: Any = None
    switch_mask: Any = None
    is_new_subgoal: Any = None
    value_mask_high: Any = None
    value_mask_low: Any = None
    value_mask_term: Any = None


# The (N, L) masks of SpanMasks, in the order the span masker's kernels write them.
MASK_NAMES = ("action_mask", "subgoal_mask", "switch_mask", "value_mask_high", "value_mask_low", "value_mask_term")
# The same masks in the order the token ops (row_scan, hae_token_outputs) take them.
TOKEN_MASKS = ("action_mask", "subgoal_mask", "switch_mask", "value_mask_low", "value_mask_high", "value_mask_term")
