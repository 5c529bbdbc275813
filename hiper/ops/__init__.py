"""Public ops over per-turn rows, backed by the compiled core (hiper._C)."""
from hiper.ops.layout import CudaTrajectoryLayout, TrajectoryLayout, build_layout, factorize
from hiper.ops.flat import (
    broadcast_to_tokens,
    episode_returns,
    first_turns,
    gigpo_advantages,
    gigpo_combine,
    gigpo_step_returns,
    group_advantages,
    last_token_scores,
    masked_whiten,
    token_gae,
    turn_gae,
)
from hiper.ops.hae import hae, hae_turns, normalize_advantages, shape_rewards, subgoal_changed
from hiper.ops.tokens import hae_token_outputs, row_scan
from hiper.ops.types import FlatOutputs, HAETokenOutputs, HAETurnOutputs, RowSummary

__all__ = [
    "CudaTrajectoryLayout",
    "FlatOutputs",
    "HAETokenOutputs",
    "HAETurnOutputs",
    "RowSummary",
    "TrajectoryLayout",
    "broadcast_to_tokens",
    "build_layout",
    "episode_returns",
    "factorize",
    "first_turns",
    "gigpo_advantages",
    "gigpo_combine",
    "gigpo_step_returns",
    "group_advantages",
    "hae",
    "hae_token_outputs",
    "hae_turns",
    "last_token_scores",
    "masked_whiten",
    "normalize_advantages",
    "row_scan",
    "shape_rewards",
    "subgoal_changed",
    "token_gae",
    "turn_gae",
]
