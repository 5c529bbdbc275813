"""`hiper plan`: what one rank of a training run holds in GPU memory, with and without sharding.

    hiper plan --model qwen2.5-7b --gpus 8 --gpu-memory 80
    hiper plan --model runs/my-sft --gpus 2 --gpu-memory 24 --lora-rank 16 --shared-critic

For each way of spreading the run over the GPUs (`ddp`: every rank holds everything; `fsdp`:
parameters, gradients and optimiser state sharded over the ranks, each decoder layer gathered
while it runs) it adds up, per rank, in the trainer's own layout:

- the actor's weights: float32 master weights (4 bytes per parameter; bf16 autocast computes in
  bf16 but keeps them), its gradients (4 bytes per trained parameter) and AdamW's two moments
  (8 bytes per trained parameter). With LoRA only the adapters are trained; the base is frozen;
- the reference policy of the KL term: a float32 copy of the actor for full fine-tuning, nothing
  with LoRA (the same model with its adapters off) or without a KL term;
- the critic: a copy of the backbone trained like the actor (the default), its own adapters on
  the actor's base (LoRA), or three linear heads on the actor's backbone (`--shared-critic`);
- activations of one micro-batch under activation checkpointing: the hidden state at every
  layer boundary, one layer's working set, and the float32 logits and log-softmax of the
  vocabulary projection (hiper keeps that projection in float32);
- under fsdp, the two decoder layers gathered at a time (the one running and the one prefetched);
- the vLLM engine's share while it generates (`--vllm-share` of the GPU), which it gives back
  during the update when it sleeps.

A run fits when both phases do: the update (everything but vLLM) and the rollout (the trainer's
state, without gradients or activations, beside vLLM's share). The arithmetic is checked against
the tensors the trainer actually allocates (tests/test_plan.py). Models are described by their
configuration: a local model directory, or one of KNOWN_MODELS (the architectures of the paper's
models and hiper's default, so that no download is needed).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from hiper.flags import COUNT, NOT_NEGATIVE, bounded

GB = 1e9
FP32, BF16 = 4, 2
ADAMW_STATE = 8  # two float32 moments per trained parameter
CRITIC_HEADS = 3

# Architectures (Hugging Face config fields) of the paper's models and hiper's offline default.
KNOWN_MODELS = {
    "smollm2-135m": {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True},
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "intermediate_size": 8960,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "qwen2.5-7b": {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "intermediate_size": 18944,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "tie_word_embeddings": False},
}
ALIASES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m", "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
           "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b"}
# Attention projections with a bias, by architecture (Qwen2 biases q, k and v).
QKV_BIAS = {"qwen2": True, "llama": False}


@dataclass(frozen=True)
class Architecture:
    """The sizes of a decoder-only transformer of the Llama family (Llama, Qwen2, Mistral)."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, config: dict) -> "Architecture":
        try:
            return cls(hidden=int(config["hidden_size"]), layers=int(config["num_hidden_layers"]),
                       intermediate=int(config["intermediate_size"]), heads=int(config["num_attention_heads"]),
                       kv_heads=int(config.get("num_key_value_heads") or config["num_attention_heads"]),
                       vocab=int(config["vocab_size"]), tied=bool(config.get("tie_word_embeddings", False)),
                       qkv_bias=bool(config.get("attention_bias", QKV_BIAS.get(config.get("model_type"), False))))
        except KeyError as exc:
            raise ValueError(f"model: its configuration has no {exc.args[0]!r}; hiper plan knows decoder-only "
                             "models of the Llama family (Llama, Qwen2, Mistral)") from None

    @property
    def kv_width(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one decoder layer."""
        h, kv, i = self.hidden, self.kv_width, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_parameters(self) -> int:
        weights = sum(a * b for a, b in self.linear_shapes().values())
        bias = self.hidden + 2 * self.kv_width if self.qkv_bias else 0
        return weights + bias + 2 * self.hidden  # two RMSNorm weights

    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * self.layer_parameters() + self.hidden  # + the final norm

    def lora_parameters(self, rank: int) -> int:
        """Trained parameters of rank-`rank` adapters on every projection of every layer (the
        trainer's default lora_targets)."""
        return self.layers * sum(rank * (a + b) for a, b in self.linear_shapes().values())


def architecture(model: str) -> Architecture:
    """The architecture of a KNOWN_MODELS name (or its Hub name) or of a local model directory."""
    name = ALIASES.get(model, model).lower()
    if name in KNOWN_MODELS:
        return Architecture.from_config(KNOWN_MODELS[name])
    config = Path(model) / "config.json"
    if not config.is_file():
        raise ValueError(f"model: {model!r} is neither a model directory with a config.json nor one of "
                         f"{', '.join(KNOWN_MODELS)} (no download is made)")
    return Architecture.from_config(json.loads(config.read_text()))


@dataclass(frozen=True)
class Setting:
    """What the run trains and how (the trainer's flags of the same names)."""

    gpus: int = 1
    gpu_memory_gb: float = 80.0
    lora_rank: int = 0
    shared_critic: bool = False
    kl: bool = True
    micro_batch_tokens: int = 8192
    vllm_share: float = 0.0


def rank_bytes(arch: Architecture, setting: Setting, parallel: str) -> dict[str, float]:
    """Bytes per rank of each part of a run (module docstring), for parallel "ddp" or "fsdp"."""
    if parallel not in ("ddp", "fsdp"):
        raise ValueError(f"parallel: expected ddp or fsdp, got {parallel!r}")
    shards = setting.gpus if parallel == "fsdp" else 1
    p = arch.parameters()
    lora = setting.lora_rank > 0
    trained = arch.lora_parameters(setting.lora_rank) if lora else p
    heads = CRITIC_HEADS * (arch.hidden + 1)
    if setting.shared_critic:
        critic_weights, critic_trained = heads, heads
    elif lora:
        critic_weights = critic_trained = arch.lora_parameters(setting.lora_rank) + heads
    else:
        critic_weights = critic_trained = p + heads
    parts = {
        "actor weights": FP32 * (p + (trained if lora else 0)) / shards,
        "actor gradients": FP32 * trained / shards,
        "actor optimiser state": ADAMW_STATE * trained / shards,
        "reference": FP32 * p / shards if setting.kl and not lora else 0.0,
        "critic weights": FP32 * critic_weights / shards,
        "critic gradients": FP32 * critic_trained / shards,
        "critic optimiser state": ADAMW_STATE * critic_trained / shards,
    }
    tokens = setting.micro_batch_tokens
    layer_working_set = tokens * (4 * arch.hidden + 2 * arch.intermediate) * BF16
    parts["activations (one micro-batch)"] = (tokens * arch.hidden * FP32 * arch.layers + layer_working_set
                                              + 2 * tokens * arch.vocab * FP32)
    parts["gathered layers (fsdp)"] = 2 * FP32 * arch.layer_parameters() if parallel == "fsdp" else 0.0
    parts["vLLM share (rollout only)"] = setting.vllm_share * setting.gpu_memory_gb * GB
    return parts


# What each phase holds: the update everything but vLLM; the rollout the weights and optimiser
# state that stay resident, beside vLLM (gradients, activations and gathered layers are gone).
UPDATE_ONLY = ("actor gradients", "critic gradients", "activations (one micro-batch)", "gathered layers (fsdp)")
ROLLOUT_ONLY = ("vLLM share (rollout only)",)


def phases(parts: dict[str, float]) -> dict[str, float]:
    """Peak bytes of the update and of the rollout (UPDATE_ONLY, ROLLOUT_ONLY)."""
    return {"update": sum(v for k, v in parts.items() if k not in ROLLOUT_ONLY),
            "rollout": sum(v for k, v in parts.items() if k not in UPDATE_ONLY)}


def report(model: str, setting: Setting) -> list[str]:
    """The table `hiper plan` prints."""
    arch = architecture(model)
    per = {mode: rank_bytes(arch, setting, mode) for mode in ("ddp", "fsdp")}
    lora = f", LoRA rank {setting.lora_rank}" if setting.lora_rank else ", full fine-tuning"
    critic = "shared critic" if setting.shared_critic else "separate critic"
    lines = [f"{model}: {arch.parameters() / 1e9:.2f}B parameters{lora}, {critic}, on {setting.gpus} GPU(s) of "
             f"{setting.gpu_memory_gb:g} GB; GB per rank:",
             f"{'':40s}{'ddp':>10s}{'fsdp':>10s}"]
    for part in per["ddp"]:
        lines.append(f"{part:40s}{per['ddp'][part] / GB:10.2f}{per['fsdp'][part] / GB:10.2f}")
    peaks = {mode: phases(per[mode]) for mode in per}
    for phase in ("update", "rollout"):
        lines.append(f"{'peak during the ' + phase:40s}{peaks['ddp'][phase] / GB:10.2f}{peaks['fsdp'][phase] / GB:10.2f}")
    verdicts = []
    for mode, peak in peaks.items():
        worst = max(peak.values()) / GB
        verdicts.append(f"{mode} {'fits' if worst <= setting.gpu_memory_gb else 'does not fit'} ({worst:.1f} GB)")
    lines.append("; ".join(verdicts) + ". Not counted: the CUDA context, allocator fragmentation, "
                                        "and rollout-time activations outside vLLM.")
    return lines


GB_AMOUNT = bounded(float, "> 0", lambda v: v > 0)
SHARE = bounded(float, "in [0, 1)", lambda v: 0 <= v < 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help=f"a model directory (its config.json) or one of {', '.join(KNOWN_MODELS)}")
    parser.add_argument("--gpus", type=COUNT, default=1, help="ranks the run is spread over")
    parser.add_argument("--gpu-memory", type=GB_AMOUNT, default=80.0, help="GB of memory per GPU")
    parser.add_argument("--lora-rank", type=NOT_NEGATIVE, default=0,
                        help="LoRA rank on every projection (0: full fine-tuning)")
    parser.add_argument("--shared-critic", action="store_true", help="value heads on the actor's backbone")
    parser.add_argument("--no-kl", action="store_true", help="no KL term, so no reference policy")
    parser.add_argument("--micro-batch-tokens", type=COUNT, default=8192, help="tokens of one forward pass")
    parser.add_argument("--vllm-share", type=SHARE, default=0.0,
                        help="share of each GPU that vLLM takes while it generates (its gpu_memory_utilization)")


def main(args: argparse.Namespace) -> int:
    setting = Setting(gpus=args.gpus, gpu_memory_gb=args.gpu_memory, lora_rank=args.lora_rank,
                      shared_critic=args.shared_critic, kl=not args.no_kl, micro_batch_tokens=args.micro_batch_tokens,
                      vllm_share=args.vllm_share)
    print("\n".join(report(args.model, setting)))
    return 0
