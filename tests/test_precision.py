"""`precision auto`: bf16 autocast where the hardware multiplies bf16 natively, fp32 elsewhere,
and the run's banner says which and why."""
from __future__ import annotations

import pytest
import torch

from hiper import precision, run_log
from hiper.precision import resolve_bf16

from test_lean_update import tiny_trainer

CPU = torch.device("cpu")


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given feature flags, with no HIPER_CPU_BF16 override."""
    monkeypatch.delenv(precision.OVERRIDE_VARIABLE, raising=False)

    def pretend(*flags):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset(flags))

    return pretend


@pytest.mark.parametrize("feature", ["avx512_bf16", "amx_bf16", "bf16"])
def test_auto_is_bf16_on_a_cpu_that_multiplies_it_natively(cpu_flags, feature):
    cpu_flags("sse2", "avx2", "avx512f", feature)
    used, why = resolve_bf16("auto", CPU)
    assert used and feature in why


def test_auto_is_fp32_on_a_cpu_without_native_bf16(cpu_flags):
    cpu_flags("sse2", "avx2", "avx512f", "avx512bw")  # AVX-512 alone is not enough
    used, why = resolve_bf16("auto", CPU)
    assert not used and why == "auto: no native bf16 matmul on this CPU"
    used, why = resolve_bf16("bf16", CPU)  # asked for: honoured, with a warning in the reason
    assert used and "emulates" in why
    assert resolve_bf16("fp32", CPU) == (False, "asked for")


def test_the_environment_overrides_the_cpu_flags(cpu_flags, monkeypatch):
    cpu_flags("avx512_bf16")
    monkeypatch.setenv(precision.OVERRIDE_VARIABLE, "0")
    assert not resolve_bf16("auto", CPU)[0]
    cpu_flags()
    monkeypatch.setenv(precision.OVERRIDE_VARIABLE, "1")
    assert resolve_bf16("auto", CPU)[0]
    monkeypatch.setenv(precision.OVERRIDE_VARIABLE, "yes")
    with pytest.raises(ValueError, match="HIPER_CPU_BF16: expected 0 or 1"):
        resolve_bf16("auto", CPU)
    with pytest.raises(ValueError, match="precision: expected one of"):
        resolve_bf16("half", CPU)


def test_this_machines_flags_are_read():
    """Whatever this CPU is, its flags come back as a set of names (empty where unreadable)."""
    precision._cpu_flags.cache_clear()
    flags = precision._cpu_flags()
    assert isinstance(flags, frozenset) and all(isinstance(flag, str) and " " not in flag for flag in flags)


def test_the_trainer_autocasts_by_the_rule_and_its_banner_says_why(tmp_path, cpu_flags):
    cpu_flags("avx512_bf16")
    native = tiny_trainer(tmp_path / "native", steps=1)
    assert native.bf16 and native.autocast.fast_dtype == torch.bfloat16
    assert "bf16 autocast (auto: the CPU multiplies bf16 natively (avx512_bf16))" in "\n".join(run_log.banner(native, False))
    cpu_flags("avx2")
    plain = tiny_trainer(tmp_path / "plain", steps=1)
    assert not plain.bf16
    assert "float32 weights, fp32 compute (auto: no native bf16 matmul on this CPU)" in "\n".join(
        run_log.banner(plain, False))
