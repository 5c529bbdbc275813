"""Type stub for hiper._C, the compiled core. Functions take numpy arrays of exact dtypes
(checked: float32, int64, bool/uint8 flags) and write into caller-provided outputs."""
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

def cuda_compiled() -> bool: ...
def cuda_device_count() -> int: ...
# Threads of the CPU loops (csrc/cpu/parallel.h); use hiper.set_num_threads / get_num_threads.
def set_num_threads(n: int | None) -> None: ...
def get_num_threads() -> int: ...
def loop_threads(n: int, work: int) -> int: ...
def get_parallel_grain() -> int: ...
def set_parallel_grain(grain: int | None) -> None: ...  # tests and measurements only
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
# `config`: a hiper.HAEConfig (or an object with its attributes), whose scalars the binding reads
# in one place (csrc/bindings/params.h, read_hae_config), for the host and the CUDA pipeline alike.
def hae_pipeline(*, layout: Layout, config: Any, rewards: np.ndarray, is_new_subgoal: np.ndarray | None,
                 is_action_valid: np.ndarray | None, subgoal_changed: np.ndarray | None, dones: np.ndarray,
                 v_low: np.ndarray, v_high: np.ndarray, v_term: np.ndarray | None, credited_low: np.ndarray | None,
                 credited_high: np.ndarray | None, credited_term: np.ndarray | None, shaped: np.ndarray,
                 adv_low: np.ndarray, ret_low: np.ndarray, adv_high: np.ndarray, ret_high: np.ndarray,
                 adv_term: np.ndarray, ret_term: np.ndarray) -> tuple[tuple[int, float, float], ...]: ...
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
                    singleton: str, eps: float, out: np.ndarray) -> None: ...
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

# CUDA builds only (absent otherwise; see cuda_compiled()). Device arrays are passed as integer
# pointers (tensor.data_ptr(), 0 when absent) of tensors checked by hiper/ops/_cuda.py, with the
# device index and the caller's current stream; each call only enqueues work on that stream.
# `layout` is CudaTrajectoryLayout.handle: (n, order, traj_offsets, seg_offsets,
# traj_seg_offsets, meta, position, is_boundary).
LayoutHandle = tuple[int, int, int, int, int, int, int, int]
cuda_layout_meta_size: int

def cuda_layout_workspace_bytes(*, n: int, device: int) -> int: ...
def cuda_build_layout(*, n: int, traj_ids: int, turn_idx: int, is_new_subgoal: int, order: int, traj_offsets: int,
                      seg_offsets: int, traj_seg_offsets: int, is_boundary: int, position: int, meta: int,
                      workspace: int, workspace_bytes: int, device: int, stream: int) -> None: ...
def cuda_pipeline_workspace_bytes(*, device: int) -> int: ...
def cuda_normalize_workspace_bytes(*, device: int) -> int: ...
def cuda_shape_rewards(*, layout: LayoutHandle, rewards: int, is_new_subgoal: int, is_action_valid: int,
                       subgoal_changed: int, keep_penalty: float, keep_penalty_mode: str,
                       invalid_action_penalty_coef: float, keep_consistency_penalty: float, out: int, device: int,
                       stream: int) -> None: ...
def cuda_hae(*, layout: LayoutHandle, rewards: int, dones: int, v_low: int, v_high: int, v_term: int, gamma: float,
             lam_turn: float, lam_seg: float, bootstrap_truncated: bool, adv_low: int, ret_low: int, adv_high: int,
             ret_high: int, adv_term: int, ret_term: int, device: int, stream: int) -> None: ...
def cuda_hae_pipeline(*, layout: LayoutHandle, config: Any, rewards: int, is_new_subgoal: int, is_action_valid: int,
                      subgoal_changed: int, dones: int, v_low: int, v_high: int, v_term: int, credited_low: int,
                      credited_high: int, credited_term: int, shaped: int, adv_low: int, ret_low: int,
                      adv_high: int, ret_high: int, adv_term: int, ret_term: int, workspace: int,
                      workspace_bytes: int, device: int, stream: int) -> None: ...
def cuda_subgoal_changed(*, layout: LayoutHandle, length: int, responses: int, token_bytes: int, subgoal_mask: int,
                         response_mask: int, requires_both: bool, out: int, device: int, stream: int) -> None: ...
def cuda_normalize(*, n: int, x: int, include: int, eps: float, out: int, workspace: int, workspace_bytes: int,
                   device: int, stream: int) -> None: ...
def cuda_row_scan(*, n: int, length: int, response_mask: int, action_mask: int, subgoal_mask: int, switch_mask: int,
                  value_mask_low: int, value_mask_high: int, value_mask_term: int, values_low: int, values_high: int,
                  values_term: int, response_length: int, has_action: int, has_subgoal: int, has_switch: int,
                  pos_low: int, pos_high: int, pos_term: int, value_low: int, value_high: int, value_term: int,
                  device: int, stream: int) -> None: ...
def cuda_token_outputs_workspace_bytes(*, length: int, device: int) -> int: ...
def cuda_token_outputs(*, n: int, length: int, response_mask: int, action_mask: int, subgoal_mask: int,
                       switch_mask: int, value_mask_low: int, value_mask_high: int, value_mask_term: int,
                       is_boundary: int, adv_low: int, adv_high: int, adv_term: int, ret_low: int, ret_high: int,
                       ret_term: int, high_on_subgoal: bool, high_on_switch: bool, term_on_switch: bool,
                       advantages: int, advantages_low: int, advantages_high: int, advantages_term: int,
                       returns_low: int, returns_high: int, returns_term: int, lo_mask: int, hi_mask: int,
                       term_mask: int, loss_mask: int, workspace: int, workspace_bytes: int, device: int,
                       stream: int) -> None: ...
def cuda_span_masks_workspace_bytes(*, n: int, length: int, device: int) -> int: ...
def cuda_span_masks(*, n: int, length: int, responses: int, token_bytes: int, response_mask: int, vocab_size: int,
                    vocab_bytes: int, vocab_offsets: int, vocab_has_lt: int, include_tags: bool, is_boundary: int,
                    action_mask: int, subgoal_mask: int, switch_mask: int, value_mask_high: int, value_mask_low: int,
                    value_mask_term: int, is_new_subgoal: int, first_invalid: int, workspace: int,
                    workspace_bytes: int, device: int, stream: int) -> None: ...
def pack_rows(*, n: int, prompt_width: int, response_width: int, pad_id: int, sources: int, prompts: int,
              prompt_mask: int, responses: int, response_mask: int, input_ids: int, attention_mask: int) -> None: ...
def cuda_pack_rows(*, n: int, prompt_width: int, response_width: int, pad_id: int, sources: int, prompts: int,
                   prompt_mask: int, responses: int, response_mask: int, input_ids: int, attention_mask: int,
                   device: int, stream: int) -> None: ...
