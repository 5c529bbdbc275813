"""Configuration of Hierarchical Advantage Estimation."""
from __future__ import annotations

import math
from dataclasses import dataclass

KEEP_PENALTY_MODES = ("fixed", "normalized")


@dataclass
class HAEConfig:
    """Hyperparameters of HAE, with the authors' field names (docs/semantics.md §4, §9).

    gamma, lam_turn, lam_seg: discount, turn-level GAE lambda, segment-level GAE lambda.
    norm_adv: normalise each advantage over the turns it lands on (docs/semantics.md §4.7).
    bootstrap_truncated: bootstrap a truncated episode (last turn not done) from its own
        values instead of zero (docs/semantics.md §4.3-§4.5).
    keep_penalty / keep_penalty_mode: reward added to KEEP turns, "fixed" (every KEEP turn)
        or "normalized" (keep_penalty / T on each KEEP turn of a T-turn trajectory, T > 1).
    invalid_action_penalty_coef: subtracted from the reward of format-invalid turns.
    keep_consistency_penalty / keep_consistency_requires_both: reward added to KEEP turns
        whose subgoal tokens differ from the previous turn's.
    assign_high_to_switch / assign_high_to_subgoal / assign_term_to_switch: which token
        spans receive the segment-level and termination advantages (docs/semantics.md §4.6).
    value_key_low / value_key_high / value_key_term: batch keys of the value heads' outputs.
    """

    gamma: float = 1.0
    lam_turn: float = 1.0
    lam_seg: float = 0.95
    value_key_low: str = "value_low"
    value_key_high: str = "value_high"
    value_key_term: str = "value_term"
    assign_high_to_switch: bool = False
    assign_high_to_subgoal: bool = True
    assign_term_to_switch: bool = True
    norm_adv: bool = False
    bootstrap_truncated: bool = False
    keep_penalty: float = 0.0
    keep_penalty_mode: str = "fixed"
    invalid_action_penalty_coef: float = 0.0
    keep_consistency_penalty: float = 0.0
    keep_consistency_requires_both: bool = True

    def __post_init__(self) -> None:
        for name in ("gamma", "lam_turn", "lam_seg"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
        for name in ("keep_penalty", "invalid_action_penalty_coef", "keep_consistency_penalty"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if self.keep_penalty_mode not in KEEP_PENALTY_MODES:
            raise ValueError(f"keep_penalty_mode: expected one of {KEEP_PENALTY_MODES}, got {self.keep_penalty_mode!r}")
