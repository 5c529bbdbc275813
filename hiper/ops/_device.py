"""Tensor plumbing of the CUDA path: which device an op's inputs are on, inputs checked and
converted on that device, their raw pointers, and the caller's current stream.

The CUDA bindings (hiper._C.cuda_*) take integer device pointers and trust them, so every
tensor that reaches them passes through `DeviceArgs`: right device, dtype, shape and
contiguity, as csrc/bindings/arrays.h checks host arrays. Conversions follow
hiper._arrays.to_numpy: flags accept bool and uint8 as they are and turn any other number
into `!= 0`; float32 accepts any real number; int64 any integer. A conversion makes a new
tensor on the same device; nothing ever moves between devices.

torch is imported lazily: this module runs only once a CUDA tensor has been seen.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, INT64

TOKEN = np.dtype("O")  # marker kind: token ids, int64 or int32 kept as they are


def is_cuda_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.is_cuda


def _where(x: Any) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return f"a tensor on {x.device}"
    return f"host data ({type(x).__name__})"


def require_backend(device, op: str) -> None:
    """Raise RuntimeError unless this build can run CUDA ops on `device`."""
    if not _C.cuda_compiled():
        raise RuntimeError(f"{op}: got tensors on {device}, but this build of hiper has no CUDA backend (no nvcc "
                           "was found when it was built); move the inputs to the CPU, or rebuild hiper where nvcc is "
                           "available")
    if _C.cuda_device_count() <= (device.index or 0):
        raise RuntimeError(f"{op}: got tensors on {device}, but hiper's CUDA runtime sees "
                           f"{_C.cuda_device_count()} device(s) (is the driver new enough for this build?)")


class DeviceArgs:
    """Checks, converts and allocates the tensors of one op call on `device`.

    Keeps every tensor it hands out alive (`keep`), so temporaries made by a conversion
    outlive the enqueueing call; torch's caching allocator then reuses their memory only
    for work ordered after ours on the same stream.
    """

    def __init__(self, device, op: str):
        import torch

        self.torch = torch
        self.device = device
        self.op = op
        self.keep: list = []

    # --- inputs -------------------------------------------------------------------------
    def tensor(self, x: Any, name: str, kind: np.dtype, shape: tuple[int, ...] | None = None, ndim: int | None = None):
        """`x` as a contiguous tensor of `kind` on this device (shared when already so)."""
        torch = self.torch
        if not isinstance(x, torch.Tensor) or x.device != self.device:
            raise ValueError(f"{name}: expected a tensor on {self.device} like the op's other inputs, got {_where(x)}; "
                             "hiper does not move data between devices")
        x = x.detach()
        want_ndim = len(shape) if shape is not None else ndim
        if want_ndim is not None and x.dim() != want_ndim:
            raise ValueError(f"{name}: expected {want_ndim} dimension(s), got shape {tuple(x.shape)}")
        if shape is not None and tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")
        x = self._convert(x, name, kind).contiguous()
        self.keep.append(x)
        return x

    def optional(self, x: Any, name: str, kind: np.dtype, shape: tuple[int, ...] | None = None,
                 ndim: int | None = None):
        return None if x is None else self.tensor(x, name, kind, shape, ndim)

    def _convert(self, x, name: str, kind: np.dtype):
        torch = self.torch
        if x.is_complex():
            raise TypeError(f"{name}: expected a real-valued tensor, got dtype {x.dtype}")
        if kind == BOOL:
            return x if x.dtype in (torch.bool, torch.uint8) else x != 0
        if kind == FLOAT32:
            return x if x.dtype == torch.float32 else x.float()
        integer = not x.is_floating_point()
        if not integer:
            raise TypeError(f"{name}: expected integers, got dtype {x.dtype}")
        if kind == TOKEN and x.dtype in (torch.int64, torch.int32):
            return x
        return x if x.dtype == torch.int64 else x.long()

    # --- outputs ------------------------------------------------------------------------
    def empty(self, shape: tuple[int, ...], kind: np.dtype):
        torch = self.torch
        dtype = {FLOAT32: torch.float32, INT64: torch.int64, BOOL: torch.bool}[kind]
        t = torch.empty(shape, dtype=dtype, device=self.device)
        self.keep.append(t)
        return t

    def output(self, out: Any, name: str, shape: tuple[int, ...], kind: np.dtype):
        """A caller-provided output: exactly `shape` and dtype, contiguous, on this device."""
        torch = self.torch
        if not isinstance(out, torch.Tensor) or out.device != self.device:
            raise ValueError(f"{name}: expected a tensor on {self.device} like the op's inputs, got {_where(out)}")
        ok = out.dtype == torch.float32 if kind == FLOAT32 else out.dtype in (torch.bool, torch.uint8)
        if not ok:
            raise TypeError(f"{name}: expected dtype {'float32' if kind == FLOAT32 else 'bool'}, got {out.dtype}")
        if out.requires_grad:
            raise ValueError(f"{name}: output tensors must not require grad")
        if tuple(out.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(out.shape)}")
        if not out.is_contiguous():
            raise ValueError(f"{name}: output must be contiguous")
        return out

    def workspace(self, nbytes: int):
        """Scratch device memory for a launcher (from torch's caching allocator)."""
        return self.empty((max(int(nbytes), 1),), BOOL)

    # --- the call -----------------------------------------------------------------------
    @property
    def launch(self) -> dict:
        """The `device` and `stream` keywords of a _C.cuda_* call: the caller's current stream."""
        return {"device": self.device.index, "stream": self.torch.cuda.current_stream(self.device).cuda_stream}


def ptr(t) -> int:
    """Device address of a tensor (0 for None: an absent array)."""
    return 0 if t is None else t.data_ptr()
