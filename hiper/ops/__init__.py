"""Public ops over per-turn rows, backed by the compiled core (hiper._C)."""
from hiper.ops.layout import TrajectoryLayout, build_layout, factorize
from hiper.ops.hae import HAETurnOutputs, hae, hae_turns, normalize_advantages, shape_rewards, subgoal_changed
from hiper.ops.tokens import HAETokenOutputs, RowSummary, hae_token_outputs, row_scan

__all__ = [
    "HAETokenOutputs",
    "HAETurnOutputs",
    "RowSummary",
    "TrajectoryLayout",
    "build_layout",
    "factorize",
    "hae",
    "hae_token_outputs",
    "hae_turns",
    "normalize_advantages",
    "row_scan",
    "shape_rewards",
    "subgoal_changed",
]
