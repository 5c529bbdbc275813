"""Rollout engines: what samples the policy's responses each turn.

    engine = hiper.engines.make_engine("auto", model, tokenizer, max_model_len=2560)
    RolloutEngine(model, tokenizer, pool, config, engine=engine)
    ...                                   # after every update of the policy:
    engine.sync_weights(model)

- "hf": Hugging Face `generate` on the policy itself (always available; nothing to sync).
- "vllm": vLLM (optional: scripts/install_vllm.sh), faster, with its own copy of the weights.
- "auto": vllm when it can be imported, else hf; hf for a LoRA policy (vLLM serves no LoRA
  adapters here yet). `resolve_engine` is this rule, which every command follows.
"""
from __future__ import annotations

from hiper.engines.base import Engine, Generation, SamplingSettings

ENGINES = ("auto", "hf", "vllm")

__all__ = ["ENGINES", "Engine", "Generation", "SamplingSettings", "make_engine", "resolve_engine"]


def resolve_engine(name: str, *, lora: bool = False) -> str:
    """"hf" or "vllm": the engine that `name` (auto, hf or vllm) means for a policy that is, or is
    not, a base model with LoRA adapters (`lora`). The one rule of every command (hiper train,
    eval, rollout, and the evaluation inside training): auto is vLLM when it can be imported, else
    hf; a LoRA policy goes to hf, since vLLM serves no LoRA adapters here yet, and asking for vllm
    for one is an error."""
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")
    if lora:
        if name == "vllm":
            raise ValueError("engine: vllm does not serve LoRA policies yet; use hf or auto")
        return "hf"
    if name == "auto":
        from hiper.engines.vllm import is_available

        return "vllm" if is_available() else "hf"
    return name


def make_engine(name: str, model, tokenizer, *, max_model_len: int, **vllm_options) -> Engine:
    """The engine `name` (auto, hf or vllm) for `model` (resolved by `resolve_engine`, with the
    model's LoRA-ness); `max_model_len` (prompt + response tokens) and `vllm_options` (dtype,
    gpu_memory_utilization, seed, enforce_eager) set up the vLLM engine."""
    from hiper.models import is_lora

    if resolve_engine(name, lora=is_lora(model)) == "hf":
        from hiper.engines.hf import HFEngine

        return HFEngine(model, tokenizer)
    from hiper.engines.vllm import VLLMEngine

    return VLLMEngine(model, tokenizer, max_model_len=max_model_len, **vllm_options)
