"""Array plumbing between the public API and the compiled core.

The core takes numpy arrays. Callers may hand torch tensors (CPU), DLPack producers or
anything numpy can read; a tensor of the expected dtype is shared with the core through ``Tensor.numpy()``,
never copied. Outputs come back in the caller's framework: torch in, torch out. (CUDA tensors
take the ops' device path, hiper/ops/_device.py and _cuda.py; one reaching these host helpers
is on the wrong device for the call.)

torch is not imported here: if the caller has not imported it, no argument can be a tensor.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

FLOAT32 = np.dtype(np.float32)
INT64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)


def _torch():
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str, dtype: np.dtype, ndim: int | None = None) -> np.ndarray:
    """A C-contiguous numpy array of `dtype` sharing memory with `x` whenever `x` already
    has that dtype and layout. Flags (`dtype` bool) accept bool and uint8 as they are and
    convert anything else with ``!= 0``."""
    if (type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous
            and (ndim is None or x.ndim == ndim)):
        return x  # the common case, kept cheap: this runs for every argument of every op
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor like the op's other inputs, got one on {x.device}; "
                             "hiper does not move data between devices (and runs this op on the GPU only when its "
                             "inputs, or the layout it is given, are there)")
        x = x.detach()
        if x.dtype in (_torch().bfloat16, _torch().float16):
            x = x.float()  # numpy has no bfloat16; these only carry values, read once
        arr = x.contiguous().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        # Any DLPack producer (JAX, CuPy, TensorFlow, ...): shared, not copied, when on the CPU.
        if x.__dlpack_device__()[0] != 1:  # kDLCPU
            raise ValueError(f"{name}: expected a CPU array, got one on DLPack device {x.__dlpack_device__()}")
        arr = np.from_dlpack(x)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"{name}: cannot be read as an array ({exc})") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {tuple(arr.shape)}")
    if dtype == BOOL:
        if arr.dtype not in (BOOL, np.dtype(np.uint8)):
            if arr.dtype == object:
                arr = arr.astype(np.bool_)
            elif arr.dtype.kind in "biuf":
                arr = arr != 0
            else:
                raise TypeError(f"{name}: expected a boolean array, got dtype {arr.dtype}")
    elif arr.dtype != dtype:
        if arr.dtype == object:
            try:
                arr = arr.astype(dtype)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name}: cannot convert object array to {dtype} ({exc})") from exc
        elif arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        elif dtype.kind in "iu" and arr.dtype.kind == "f":
            raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
        else:
            arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def token_ids(x: Any, name: str) -> np.ndarray:
    """(N, L) token ids as int64 or int32 (shared, not copied); other integer types are converted."""
    if is_tensor(x) and x.dtype == _torch().int32:
        return to_numpy(x, name, np.dtype(np.int32), ndim=2)
    if isinstance(x, np.ndarray) and x.dtype == np.int32:
        return to_numpy(x, name, np.dtype(np.int32), ndim=2)
    return to_numpy(x, name, INT64, ndim=2)


def optional_numpy(x: Any, name: str, dtype: np.dtype, ndim: int | None = None) -> np.ndarray | None:
    return None if x is None else to_numpy(x, name, dtype, ndim)


class Allocator:
    """Allocates outputs in the framework of a reference input (torch or numpy) and hands
    the core numpy views of them."""

    def __init__(self, like: Any):
        self.torch = _torch() if is_tensor(like) else None

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        if self.torch is not None:
            t = self.torch.empty(shape, dtype=self.torch.from_numpy(np.empty(0, dtype)).dtype)
            return t, t.numpy()
        a = np.empty(shape, dtype)
        return a, a

    def wrap(self, arr: np.ndarray):
        """Return a core-produced numpy array in the caller's framework (no copy unless it
        is read-only, which torch tensors cannot be)."""
        if self.torch is None:
            return arr
        return self.torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def out_view(out: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """numpy view of a caller-provided output; must already have the exact dtype, shape and layout."""
    if is_tensor(out):
        if out.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor like the op's inputs, got one on {out.device}")
        if out.requires_grad:
            raise ValueError(f"{name}: output tensors must not require grad")
        if not out.is_contiguous():
            raise ValueError(f"{name}: output must be contiguous")
        view = out.numpy()
    elif isinstance(out, np.ndarray):
        view = out
    else:
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(out).__name__}")
    ok_dtype = view.dtype == dtype or (dtype == BOOL and view.dtype == np.uint8)
    if not ok_dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {view.dtype}")
    if tuple(view.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(view.shape)}")
    if not view.flags.c_contiguous:
        raise ValueError(f"{name}: output must be C-contiguous")
    return view
