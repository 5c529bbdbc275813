"""Which precision the forward passes run in (TrainConfig.precision).

`auto` picks bf16 autocast where the hardware multiplies bf16 natively, fp32 elsewhere:
- a GPU: when torch says the device supports bf16;
- a CPU: when it has AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (Arm). Without
  them torch emulates bf16 matmuls by converting to fp32 and back, which is slower than fp32
  itself; with them, a training step of SmolLM2 on 2 cores took 73 s against 152 s in fp32
  (docs/training.md).

The CPU's features are read from /proc/cpuinfo (Linux) or sysctl (macOS). Where that is wrong
(a container that hides the flags, or a test that must not depend on the machine), the
environment variable HIPER_CPU_BF16=1 or 0 says it instead.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

from hiper.train_config import PRECISIONS

OVERRIDE_VARIABLE = "HIPER_CPU_BF16"
# Feature flags of native bf16 multiplication, as /proc/cpuinfo names them (x86 "flags",
# Arm "Features").
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where they cannot be read)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
        return frozenset()
    if platform.system() == "Darwin":
        try:
            answer = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                    timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        return frozenset({"bf16"}) if answer == "1" else frozenset()
    return frozenset()


def cpu_bf16_feature() -> str | None:
    """The feature that makes this CPU multiply bf16 natively ("amx_bf16", "avx512_bf16",
    "bf16", or "HIPER_CPU_BF16=1"), or None."""
    told = os.environ.get(OVERRIDE_VARIABLE, "").strip()
    if told:
        if told not in ("0", "1"):
            raise ValueError(f"{OVERRIDE_VARIABLE}: expected 0 or 1, got {told!r}")
        return f"{OVERRIDE_VARIABLE}=1" if told == "1" else None
    flags = _cpu_flags()
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def resolve_bf16(precision: str, device: torch.device) -> tuple[bool, str]:
    """(whether the forward passes run under bf16 autocast, why), for the banner."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ValueError(f"precision: bf16 asked for, but {torch.cuda.get_device_name(device)} does not support it")
        if precision == "auto":
            return supported, "auto: the GPU supports bf16" if supported else "auto: the GPU has no bf16"
        return precision == "bf16", "asked for"
    if device.type != "cpu":
        return precision == "bf16", "asked for" if precision != "auto" else f"auto: fp32 on {device.type}"
    feature = cpu_bf16_feature()
    if precision == "auto":
        if feature is not None:
            return True, f"auto: the CPU multiplies bf16 natively ({feature})"
        return False, "auto: no native bf16 matmul on this CPU"
    if precision == "bf16" and feature is None:
        return True, "asked for; this CPU emulates bf16 matmuls, slower than fp32"
    return precision == "bf16", "asked for"
