"""Type stub for hiper._C, the compiled core. Functions take numpy arrays of exact dtypes
(checked: float32, int64, bool/uint8 flags) and write into caller-provided outputs."""
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

def cuda_compiled() -> bool: ...
def cuda_device_count() -> int: ...
def factorize(ids: Sequence[Any]) -> npt.NDArray[np.int64]: ...

class Layout:
    num_rows: int
    num_trajectories: int
    num_segments: int
    order: npt.NDArray[np.int64]
    traj_offsets: npt.NDArray[np.int64]
    seg_offsets: npt.NDArray[np.int64]
    traj_seg_offsets: npt.NDArray[np.int64]
    is_boundary: npt.NDArray[np.bool_]
    position: npt.NDArray[np.int64]

def build_layout(traj_ids: np.ndarray, turn_idx: np.ndarray, is_new_subgoal: np.ndarray | None = None) -> Layout: ...
def shape_rewards(layout: Layout, rewards: np.ndarray, is_new_subgoal: np.ndarray | None,
                  is_action_valid: np.ndarray | None, subgoal_changed: np.ndarray | None, keep_penalty: float,
                  keep_penalty_mode: str, invalid_action_penalty_coef: float, keep_consistency_penalty: float,
                  out: np.ndarray) -> None: ...
def hae(layout: Layout, rewards: np.ndarray, dones: np.ndarray, v_low: np.ndarray, v_high: np.ndarray,
        v_term: np.ndarray | None, gamma: float, lam_turn: float, lam_seg: float, bootstrap_truncated: bool,
        adv_low: np.ndarray, ret_low: np.ndarray, adv_high: np.ndarray, ret_high: np.ndarray,
        adv_term: np.ndarray, ret_term: np.ndarray) -> None: ...
def hae_pipeline(layout: Layout, rewards: np.ndarray, is_new_subgoal: np.ndarray | None,
                 is_action_valid: np.ndarray | None, subgoal_changed: np.ndarray | None, keep_penalty: float,
                 keep_penalty_mode: str, invalid_action_penalty_coef: float, keep_consistency_penalty: float,
                 dones: np.ndarray, v_low: np.ndarray, v_high: np.ndarray, v_term: np.ndarray | None, gamma: float,
                 lam_turn: float, lam_seg: float, bootstrap_truncated: bool, normalize: bool,
                 credited_low: np.ndarray | None, credited_high: np.ndarray | None,
                 credited_term: np.ndarray | None, shaped: np.ndarray, adv_low: np.ndarray, ret_low: np.ndarray,
                 adv_high: np.ndarray, ret_high: np.ndarray, adv_term: np.ndarray,
                 ret_term: np.ndarray) -> tuple[tuple[int, float, float], ...]: ...
def subgoal_changed(layout: Layout, responses: np.ndarray, subgoal_mask: np.ndarray, response_mask: np.ndarray,
                    requires_both: bool, out: np.ndarray) -> None: ...
def masked_moments(x: np.ndarray, include: np.ndarray | None) -> tuple[int, float, float]: ...
def normalize(x: np.ndarray, include: np.ndarray | None, mean: float, std: float, eps: float,
              out: np.ndarray) -> None: ...
# flat baselines (flat_bindings.cpp)
def turn_gae(layout: Layout, rewards: np.ndarray, dones: np.ndarray, values: np.ndarray | None, gamma: float,
             lam: float, bootstrap_truncated: bool, advantages: np.ndarray, returns: np.ndarray) -> None: ...
def token_gae(token_rewards: np.ndarray, values: np.ndarray, response_mask: np.ndarray, gamma: float, lam: float,
              advantages: np.ndarray, returns: np.ndarray) -> None: ...
def episode_totals(layout: Layout, rewards: np.ndarray, out: np.ndarray) -> None: ...
def group_normalize(scores: np.ndarray, groups: np.ndarray, num_groups: int, samples: np.ndarray | None, mode: str,
                    eps: float, out: np.ndarray) -> None: ...
def whiten(x: np.ndarray, mask: np.ndarray, eps: float, out: np.ndarray) -> tuple[int, float, float]: ...
def row_scan(response_mask: np.ndarray, action_mask: np.ndarray | None = None,
             subgoal_mask: np.ndarray | None = None, switch_mask: np.ndarray | None = None,
             value_mask_low: np.ndarray | None = None, value_mask_high: np.ndarray | None = None,
             value_mask_term: np.ndarray | None = None) -> dict[str, np.ndarray]: ...
def token_outputs(response_mask: np.ndarray, action_mask: np.ndarray | None, subgoal_mask: np.ndarray | None,
                  switch_mask: np.ndarray | None, value_mask_low: np.ndarray | None,
                  value_mask_high: np.ndarray | None, value_mask_term: np.ndarray | None, is_boundary: np.ndarray,
                  adv_low: np.ndarray, adv_high: np.ndarray, adv_term: np.ndarray, ret_low: np.ndarray,
                  ret_high: np.ndarray, ret_term: np.ndarray, high_on_subgoal: bool, high_on_switch: bool,
                  term_on_switch: bool, **outputs: np.ndarray | None) -> None: ...
