"""What a LoRA checkpoint records of the base model its adapters were trained on, and the check
that refuses to attach them to another one.

A LoRA checkpoint holds adapters only; loading it rebuilds the base from the run's config (the
model path or Hub name, or the tiny random model's seed). Adapters attached to other base
weights load without complaint and compute something else, so the checkpoint records its base:

    {"source": the resolved model path or Hub name ("tiny" for the tiny random model),
     "tiny_model": {"hidden_size", "layers", "heads", "seed"} for the tiny model, else None,
     "sha256": weights_sha256(base)}

weights_sha256 hashes the base model's state dict before any adapter is added: for each entry
in sorted order of its name, the name (UTF-8), its shape (as text, e.g. "(64, 32)"), and its
values as float32 in C order, little-endian. Float32 rather than the stored dtype, so that a
base loaded in bf16 and one loaded in fp32 from the same bf16 file hash the same; tied weights
(an output layer sharing the embeddings) appear under each of their names.
"""
from __future__ import annotations

import hashlib

import torch

__all__ = ["check_base", "describe_base", "weights_sha256"]


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of `model`'s state dict as the module docstring says (a model without adapters)."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("ascii"))
        digest.update(tensor.numpy().astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def describe_base(model: torch.nn.Module, *, tiny_model: bool, seed: int) -> dict:
    """The record of base model `model` (before adapters) for a LoRA checkpoint."""
    config = model.config
    tiny = ({"hidden_size": config.hidden_size, "layers": config.num_hidden_layers,
             "heads": config.num_attention_heads, "seed": seed} if tiny_model else None)
    source = "tiny" if tiny_model else str(getattr(config, "_name_or_path", "") or type(model).__name__)
    return {"source": source, "tiny_model": tiny, "sha256": weights_sha256(model)}


def check_base(recorded: dict | None, found: dict, *, argument: str) -> None:
    """Refuses, naming `argument`, a base (`found`: describe_base of the base rebuilt to load onto)
    other than the one `recorded` in the checkpoint; a checkpoint written before bases were
    recorded holds none, and is taken as it is."""
    if not recorded or found["sha256"] == recorded.get("sha256"):
        return

    def what(record: dict) -> str:
        tiny = record.get("tiny_model")
        if tiny:
            return (f"the tiny model of width {tiny['hidden_size']}, {tiny['layers']} layers, {tiny['heads']} heads, "
                    f"seed {tiny['seed']}")
        return str(record.get("source"))

    raise ValueError(f"{argument}: its LoRA adapters were trained on {what(recorded)} (weights SHA-256 "
                     f"{str(recorded.get('sha256'))[:12]}...), but the base rebuilt here is {what(found)} "
                     f"({found['sha256'][:12]}...); they would compute something else on it")
