"""The trajectory layout: rows grouped by trajectory, ordered by turn, cut into segments."""
from __future__ import annotations

from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, INT64, is_tensor, optional_numpy, to_numpy
from hiper.ops._device import DeviceArgs, is_cuda_tensor, ptr, require_backend


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

    A layout lives where its rows were: built from CUDA tensors it is a
    `CudaTrajectoryLayout`, and `to(device)` copies a host layout to a GPU.
    """

    is_cuda = False

    def __init__(self, core: Any):
        self._core = core

    @property
    def core(self):
        """The compiled layout, as hiper._C ops take it."""
        return self._core

    @property
    def device(self):
        return "cpu"

    num_rows = property(lambda self: self._core.num_rows)
    num_trajectories = property(lambda self: self._core.num_trajectories)
    num_segments = property(lambda self: self._core.num_segments)
    order = property(lambda self: self._core.order)
    traj_offsets = property(lambda self: self._core.traj_offsets)
    seg_offsets = property(lambda self: self._core.seg_offsets)
    traj_seg_offsets = property(lambda self: self._core.traj_seg_offsets)
    is_boundary = property(lambda self: self._core.is_boundary)
    position = property(lambda self: self._core.position)

    def to(self, device) -> "TrajectoryLayout":
        """This layout on `device` (a torch device or its name): itself for the CPU, a
        `CudaTrajectoryLayout` for a GPU. The copies are asynchronous (no device sync)."""
        import torch

        device = torch.device(device)
        if device.type == "cpu":
            return self
        if device.type != "cuda":
            raise ValueError(f"device: expected cpu or cuda, got {device}")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        require_backend(device, "TrajectoryLayout.to")
        meta = np.full(_C.cuda_layout_meta_size, -1, np.int64)  # counts, then "no error" records
        meta[:2] = (self.num_trajectories, self.num_segments)
        arrays = {name: np.array(getattr(self, name)) for name in CudaTrajectoryLayout.ARRAYS}
        arrays["meta"] = meta
        tensors = {name: torch.from_numpy(a).to(device, non_blocking=True) for name, a in arrays.items()}
        return CudaTrajectoryLayout(tensors, self.num_rows, meta=meta.tolist())

    def __repr__(self) -> str:
        return (f"TrajectoryLayout(rows={self.num_rows}, trajectories={self.num_trajectories}, "
                f"segments={self.num_segments})")


class CudaTrajectoryLayout(TrajectoryLayout):
    """A trajectory layout in GPU memory, built by `build_layout` from CUDA tensors (or
    copied there by `TrajectoryLayout.to`). Its attributes are torch tensors on the device.

    The numbers of trajectories and segments depend on the data and stay on the device, so
    building the layout never waits for the GPU. Reading them on the host does: the
    attributes `num_trajectories`, `num_segments`, `traj_offsets`, `seg_offsets` and
    `traj_seg_offsets`, and `validate()`, copy a few bytes to the host (one
    synchronisation, once per layout). `order`, `is_boundary` and `position` do not.

    Invalid turns (negative, or repeated within a trajectory) are detected on the device and
    reported by `validate()`, which raises the same ValueError the CPU layout raises; the
    host attributes above validate first.
    """

    is_cuda = True
    ARRAYS = ("order", "traj_offsets", "seg_offsets", "traj_seg_offsets", "is_boundary", "position")

    def __init__(self, tensors: dict, num_rows: int, *, meta: list[int] | None = None):
        """`tensors`: the ARRAYS and `meta` on one device (see csrc/cuda/launchers.h);
        `meta`: its host copy when known (then nothing here waits for the GPU)."""
        self._t = tensors
        self._n = int(num_rows)
        self._meta_host = meta
        self._validated = False

    @property
    def core(self):
        raise TypeError("a CudaTrajectoryLayout has no host core: pass it to hiper's ops with CUDA tensors")

    @property
    def device(self):
        return self._t["order"].device

    @property
    def handle(self) -> tuple:
        """The layout as the hiper._C.cuda_* ops take it (see csrc/bindings/cuda_args.h)."""
        t = self._t
        return (self._n, t["order"].data_ptr(), t["traj_offsets"].data_ptr(), t["seg_offsets"].data_ptr(),
                t["traj_seg_offsets"].data_ptr(), t["meta"].data_ptr(), t["position"].data_ptr(),
                t["is_boundary"].data_ptr())

    def _meta(self) -> list[int]:
        if self._meta_host is None:
            self._meta_host = self._t["meta"].tolist()  # synchronises: the one read of the counts
        return self._meta_host

    def validate(self) -> "CudaTrajectoryLayout":
        """Raise ValueError naming `turn_idx` if a turn was negative or repeated within a
        trajectory (as the CPU layout does on construction). Synchronises once per layout."""
        if not self._validated:
            meta = self._meta()
            if meta[2] >= 0:
                raise ValueError(f"turn_idx: must be non-negative, got {meta[3]} at row {meta[2]}")
            if meta[4] >= 0:
                raise ValueError(f"turn_idx: trajectory {meta[5]} has turn {meta[6]} more than once")
            self._validated = True
        return self

    def _host_count(self, k: int) -> int:
        self.validate()
        return self._meta()[k]

    num_rows = property(lambda self: self._n)
    num_trajectories = property(lambda self: self._host_count(0))
    num_segments = property(lambda self: self._host_count(1))
    order = property(lambda self: self._t["order"])
    traj_offsets = property(lambda self: self._t["traj_offsets"][: self.num_trajectories + 1])
    seg_offsets = property(lambda self: self._t["seg_offsets"][: self.num_segments + 1])
    traj_seg_offsets = property(lambda self: self._t["traj_seg_offsets"][: self.num_trajectories + 1])
    is_boundary = property(lambda self: self._t["is_boundary"])
    position = property(lambda self: self._t["position"])

    def to(self, device) -> "TrajectoryLayout":
        import torch

        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        raise ValueError(f"device: a layout on {self.device} is not copied to {device}; build one there")

    def __repr__(self) -> str:
        return f"CudaTrajectoryLayout(rows={self.num_rows}, device={self.device})"


def check_rows(layout: TrajectoryLayout, arr: Any, name: str) -> None:
    """A per-turn array must have one row per row of the layout it is used with."""
    if arr.shape[0] != layout.num_rows:
        raise ValueError(f"{name}: expected {layout.num_rows} rows like the layout, got {arr.shape[0]}")


def factorize(ids: Any) -> np.ndarray:
    """Dense int64 codes for trajectory ids of any hashable type (strings, tuples, ints),
    numbered in order of first appearance. Integer arrays (numpy or torch) pass through."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False).reshape(-1)
    if is_tensor(ids) and not ids.is_floating_point() and not ids.is_complex():
        return ids  # integer tensors are ids already; build_layout reads them without a copy
    if is_cuda_tensor(ids):
        raise TypeError(f"traj_ids: ids on {ids.device} must be integers (factorize other ids on the host, then "
                        "move the codes to the device)")
    arr = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    return _C.factorize(arr)


def build_layout(traj_ids: Any, turn_idx: Any, is_new_subgoal: Any = None, *, validate: bool = True
                 ) -> TrajectoryLayout:
    """Group per-turn rows into trajectories and segments.

    Args:
        traj_ids: (N,) integer trajectory ids (int64 after conversion; use `factorize` for
            strings or other hashables).
        turn_idx: (N,) integer turn index within the trajectory; >= 0 and unique per
            trajectory (gaps are allowed: only the order matters).
        is_new_subgoal: (N,) bool, optional. True where the turn chose SWITCH. Turn 0 of a
            trajectory always starts a segment, whatever its flag.
        validate: CUDA inputs only (host layouts are always checked): check the turns before
            returning, which waits for the GPU once. With False the build is asynchronous and
            `validate()` (or reading a count) reports invalid turns later.
    Returns:
        A TrajectoryLayout, or a CudaTrajectoryLayout on the inputs' GPU for CUDA tensors.
    Raises:
        ValueError naming `turn_idx` for negative or duplicate turns, or on length mismatch.
    """
    for x in (traj_ids, turn_idx):
        if is_cuda_tensor(x):
            layout = _build_on_device(traj_ids, turn_idx, is_new_subgoal, x.device)
            return layout.validate() if validate else layout
    ids = to_numpy(traj_ids, "traj_ids", INT64, ndim=1)
    turns = to_numpy(turn_idx, "turn_idx", INT64, ndim=1)
    if turns.shape != ids.shape:
        raise ValueError(f"turn_idx: expected {ids.shape[0]} rows like traj_ids, got {turns.shape[0]}")
    switch = optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1)
    if switch is not None and switch.shape != ids.shape:
        raise ValueError(f"is_new_subgoal: expected {ids.shape[0]} rows like traj_ids, got {switch.shape[0]}")
    return TrajectoryLayout(_C.build_layout(ids, turns, switch))


def _build_on_device(traj_ids: Any, turn_idx: Any, is_new_subgoal: Any, device) -> CudaTrajectoryLayout:
    """build_layout's CUDA path: the layout built on `device`, not validated (see
    CudaTrajectoryLayout.validate). Here rather than in hiper.ops._cuda, which builds on the
    layout types: the layout sits below every op that takes one."""
    require_backend(device, "build_layout")
    a = DeviceArgs(device, "build_layout")
    ids = a.tensor(traj_ids, "traj_ids", INT64, ndim=1)
    n = ids.shape[0]
    turns = a.tensor(turn_idx, "turn_idx", INT64, (n,))
    switch = a.optional(is_new_subgoal, "is_new_subgoal", BOOL, (n,))
    t = {name: a.empty((n + 1,) if name.endswith("offsets") else (n,), BOOL if name == "is_boundary" else INT64)
         for name in CudaTrajectoryLayout.ARRAYS}
    t["meta"] = a.empty((_C.cuda_layout_meta_size,), INT64)
    workspace = a.workspace(_C.cuda_layout_workspace_bytes(n=n, device=a.device.index) if n else 0)
    _C.cuda_build_layout(n=n, traj_ids=ptr(ids), turn_idx=ptr(turns), is_new_subgoal=ptr(switch),
                         **{name: ptr(t[name]) for name in (*CudaTrajectoryLayout.ARRAYS, "meta")},
                         workspace=ptr(workspace), workspace_bytes=workspace.numel(), **a.launch)
    return CudaTrajectoryLayout(t, n)
