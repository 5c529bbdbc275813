"""Rollout engines: what samples the policy's responses each turn.

    engine = hiper.engines.make_engine("auto", model, tokenizer, max_model_len=2560)
    RolloutEngine(model, tokenizer, pool, config, engine=engine)
    ...                                   # after every update of the policy:
    engine.sync_weights(model)

- "hf": Hugging Face `generate` on the policy itself (always available; nothing to sync).
- "vllm": vLLM (optional: scripts/install_vllm.sh), faster, with its own copy of the weights.
- "auto": vllm when it can be imported, else hf.
"""
from __future__ import annotations

from hiper.engines.base import Engine, Generation, SamplingSettings

ENGINES = ("auto", "hf", "vllm")

__all__ = ["ENGINES", "Engine", "Generation", "SamplingSettings", "make_engine", "resolve_engine"]


def resolve_engine(name: str) -> str:
    """"hf" or "vllm" for `name`; "auto" is vllm when vLLM is importable, else hf."""
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")
    if name == "auto":
        from hiper.engines.vllm import is_available

        return "vllm" if is_available() else "hf"
    return name


def make_engine(name: str, model, tokenizer, *, max_model_len: int, **vllm_options) -> Engine:
    """The engine `name` (auto, hf or vllm) for `model`; `max_model_len` (prompt + response tokens)
    and `vllm_options` (dtype, gpu_memory_utilization, seed, enforce_eager) set up the vLLM engine."""
    if resolve_engine(name) == "hf":
        from hiper.engines.hf import HFEngine

        return HFEngine(model, tokenizer)
    from hiper.engines.vllm import VLLMEngine

    return VLLMEngine(model, tokenizer, max_model_len=max_model_len, **vllm_options)
