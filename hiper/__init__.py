"""hiper: hierarchical plan-execute reinforcement learning (HiPER) for multi-turn LLM agents.

The compiled core (hiper._C, C++ with an optional CUDA backend) implements the trajectory
layout, reward shaping, Hierarchical Advantage Estimation and its token-level outputs; the
functions below take numpy arrays or torch tensors and return the caller's type. Given CUDA
tensors (see has_cuda()), the HAE ops run on their GPU and their results stay there.
"""
from hiper import _C
from hiper import format  # noqa: F401 - public submodule, kept out of __all__ (it would shadow format())
from hiper.config import HAEConfig
from hiper.masks import SpanMasker, SpanMasks
from hiper.threads import apply_environment as _apply_thread_environment
from hiper.threads import get_num_threads, set_num_threads
from hiper.ops import (
    CudaTrajectoryLayout,
    FlatOutputs,
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
    HAETokenOutputs,
    HAETurnOutputs,
    RowSummary,
    TrajectoryLayout,
    build_layout,
    factorize,
    hae,
    hae_token_outputs,
    hae_turns,
    normalize_advantages,
    row_scan,
    shape_rewards,
    subgoal_changed,
)

__version__ = "0.1.0"

_apply_thread_environment()  # HIPER_NUM_THREADS


def has_cuda() -> bool:
    """True when this build contains the CUDA backend and a CUDA device is usable."""
    return bool(_C.cuda_compiled()) and _C.cuda_device_count() > 0


__all__ = [
    "CudaTrajectoryLayout",
    "FlatOutputs",
    "HAEConfig",
    "HAETokenOutputs",
    "HAETurnOutputs",
    "RowSummary",
    "SpanMasker",
    "SpanMasks",
    "TrajectoryLayout",
    "__version__",
    "broadcast_to_tokens",
    "build_layout",
    "episode_returns",
    "factorize",
    "first_turns",
    "get_num_threads",
    "gigpo_advantages",
    "gigpo_combine",
    "gigpo_step_returns",
    "group_advantages",
    "hae",
    "hae_token_outputs",
    "hae_turns",
    "has_cuda",
    "last_token_scores",
    "masked_whiten",
    "normalize_advantages",
    "row_scan",
    "set_num_threads",
    "shape_rewards",
    "subgoal_changed",
    "token_gae",
    "turn_gae",
]
