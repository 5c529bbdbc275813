"""The trajectory layout: rows grouped by trajectory, ordered by turn, cut into segments."""
from __future__ import annotations

from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, INT64, is_tensor, optional_numpy, to_numpy


class TrajectoryLayout:
    """Rows (one per trajectory turn, in any order) in CSR form.

    Attributes (numpy, read-only; int64 unless said otherwise):
        order (N,): row indices in (trajectory, turn) order.
        traj_offsets (T+1,): trajectory t occupies order[traj_offsets[t]:traj_offsets[t+1]].
        seg_offsets (S+1,): segment k occupies order[seg_offsets[k]:seg_offsets[k+1]].
        traj_seg_offsets (T+1,): trajectory t owns segments traj_seg_offsets[t]..[t+1]-1.
        is_boundary (N,) bool: the row starts a segment (turn 0 or a SWITCH turn).
        position (N,): the row's 0-based position within its trajectory.
    Trajectories are ordered by ascending id.
    """

    def __init__(self, core: Any):
        self._core = core

    @property
    def core(self):
        """The compiled layout, as hiper._C ops take it."""
        return self._core

    num_rows = property(lambda self: self._core.num_rows)
    num_trajectories = property(lambda self: self._core.num_trajectories)
    num_segments = property(lambda self: self._core.num_segments)
    order = property(lambda self: self._core.order)
    traj_offsets = property(lambda self: self._core.traj_offsets)
    seg_offsets = property(lambda self: self._core.seg_offsets)
    traj_seg_offsets = property(lambda self: self._core.traj_seg_offsets)
    is_boundary = property(lambda self: self._core.is_boundary)
    position = property(lambda self: self._core.position)

    def __repr__(self) -> str:
        return (f"TrajectoryLayout(rows={self.num_rows}, trajectories={self.num_trajectories}, "
                f"segments={self.num_segments})")


def factorize(ids: Any) -> np.ndarray:
    """Dense int64 codes for trajectory ids of any hashable type (strings, tuples, ints),
    numbered in order of first appearance. Integer arrays (numpy or torch) pass through."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False).reshape(-1)
    if is_tensor(ids) and not ids.is_floating_point() and not ids.is_complex():
        return ids  # integer tensors are ids already; build_layout reads them without a copy
    arr = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    return _C.factorize(arr)


def build_layout(traj_ids: Any, turn_idx: Any, is_new_subgoal: Any = None) -> TrajectoryLayout:
    """Group per-turn rows into trajectories and segments.

    Args:
        traj_ids: (N,) integer trajectory ids (int64 after conversion; use `factorize` for
            strings or other hashables).
        turn_idx: (N,) integer turn index within the trajectory; >= 0 and unique per
            trajectory (gaps are allowed: only the order matters).
        is_new_subgoal: (N,) bool, optional. True where the turn chose SWITCH. Turn 0 of a
            trajectory always starts a segment, whatever its flag.
    Raises:
        ValueError naming `turn_idx` for negative or duplicate turns, or on length mismatch.
    """
    ids = to_numpy(traj_ids, "traj_ids", INT64, ndim=1)
    turns = to_numpy(turn_idx, "turn_idx", INT64, ndim=1)
    if turns.shape != ids.shape:
        raise ValueError(f"turn_idx: expected {ids.shape[0]} rows like traj_ids, got {turns.shape[0]}")
    switch = optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1)
    if switch is not None and switch.shape != ids.shape:
        raise ValueError(f"is_new_subgoal: expected {ids.shape[0]} rows like traj_ids, got {switch.shape[0]}")
    return TrajectoryLayout(_C.build_layout(ids, turns, switch))

