"""`hiper plan`: its parameter counts equal the models' own, and its bytes per rank equal the
tensors the trainer allocates."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hiper import plan
from hiper.models import CRITIC_ADAPTER, DEFAULT_LORA_TARGETS
from hiper.plan import Architecture, Setting, rank_bytes

from test_lean_update import tiny_trainer


@pytest.mark.parametrize("name", sorted(plan.KNOWN_MODELS))
def test_parameter_counts_equal_the_models_built_by_transformers(name):
    """The architecture's arithmetic against the model transformers builds from the same
    configuration (on the meta device: no memory, no download)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(plan.KNOWN_MODELS[name])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert plan.architecture(name).parameters() == sum(p.numel() for p in model.parameters())


def test_the_published_sizes():
    assert plan.architecture("HuggingFaceTB/SmolLM2-135M-Instruct").parameters() == 134_515_008
    assert round(plan.architecture("qwen2.5-1.5b").parameters() / 1e9, 2) == 1.54
    assert round(plan.architecture("Qwen/Qwen2.5-7B-Instruct").parameters() / 1e9, 2) == 7.62
    assert plan.architecture("smollm2-135m").lora_parameters(16) == 4_884_480  # "4.88M trained" in the banner


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimiser_bytes(optimiser) -> int:
    return tensor_bytes(t for state in optimiser.state.values() for key, t in state.items() if key != "step")


@pytest.mark.parametrize("lora_rank,shared_critic", [(0, False), (0, True), (4, False)])
def test_the_bytes_are_the_trainers_tensors(tmp_path, lora_rank, shared_critic):
    trainer = tiny_trainer(tmp_path, steps=1, lora_rank=lora_rank, shared_critic=shared_critic, kl_coef=0.01)
    arch = Architecture.from_config(trainer.actor.config.to_dict())
    # The planner's adapters sit on every projection of a layer, as the trainer's default targets do.
    assert set(DEFAULT_LORA_TARGETS.split(",")) == set(arch.linear_shapes())
    named = dict(trainer.actor.named_parameters())
    # With LoRA the critic's adapters sit in the actor's model beside the actor's: split by name.
    critic_adapters = [p for n, p in named.items() if f".{CRITIC_ADAPTER}." in n]
    assert arch.parameters() == sum(p.numel() for n, p in named.items() if "lora_" not in n)
    trainer.train_step()  # creates the optimisers' state
    want = rank_bytes(arch, Setting(gpus=1, lora_rank=lora_rank, shared_critic=shared_critic), "ddp")
    assert want["actor weights"] == tensor_bytes(named.values()) - tensor_bytes(critic_adapters)
    assert want["actor optimiser state"] == optimiser_bytes(trainer.actor_opt)
    assert want["actor gradients"] == tensor_bytes(trainer.actor_parameters)
    reference = tensor_bytes(trainer.reference.parameters()) if trainer.reference is not None else 0
    assert want["reference"] == reference
    heads_and_copies = [p for p in trainer.critic.parameters() if not any(p is q for q in named.values())]
    assert want["critic weights"] == tensor_bytes(heads_and_copies) + tensor_bytes(critic_adapters)
    assert want["critic gradients"] == tensor_bytes(trainer.critic.trainable_parameters())
    assert want["critic optimiser state"] == optimiser_bytes(trainer.critic_opt)


def test_fsdp_shards_what_ddp_replicates():
    arch = plan.architecture("qwen2.5-7b")
    ddp = rank_bytes(arch, Setting(gpus=8), "ddp")
    fsdp = rank_bytes(arch, Setting(gpus=8), "fsdp")
    for part in ("actor weights", "actor gradients", "actor optimiser state", "reference", "critic weights"):
        assert fsdp[part] == pytest.approx(ddp[part] / 8)
    assert fsdp["activations (one micro-batch)"] == ddp["activations (one micro-batch)"]
    assert fsdp["gathered layers (fsdp)"] > 0 == ddp["gathered layers (fsdp)"]
    # The rollout holds weights and optimiser state beside vLLM, not gradients or activations.
    peaks = plan.phases(rank_bytes(arch, Setting(gpus=8, vllm_share=0.3), "fsdp"))
    assert peaks["update"] - peaks["rollout"] == pytest.approx(
        fsdp["actor gradients"] + fsdp["critic gradients"] + fsdp["activations (one micro-batch)"]
        + fsdp["gathered layers (fsdp)"] - 0.3 * 80 * plan.GB)


def test_the_command_says_what_fits_and_refuses_what_it_cannot_know():
    run = subprocess.run([sys.executable, "-m", "hiper", "plan", "--model", "qwen2.5-7b", "--gpus", "8",
                          "--gpu-memory", "80", "--vllm-share", "0.3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "ddp does not fit" in run.stdout and "fsdp fits" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "hiper", "plan", "--model", "gpt-5"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("hiper: error: --model:")
    assert len(bad.stderr.strip().splitlines()) == 1
