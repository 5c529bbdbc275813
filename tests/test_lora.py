"""LoRA through PEFT: the actor trains adapters only, the reference is the base model with the
adapters off (no copy), the critic has its own adapters on the same base weights, checkpoints
hold adapters and heads (kilobytes for a tiny model), resume restores them, and `hiper eval` /
`hiper export` read a LoRA checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hiper import checkpoint
from hiper.cli import main
from hiper.models import CRITIC_ADAPTER, tiny_random_model
from hiper.trainer import Trainer, TrainConfig

pytest.importorskip("peft")

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def lora_trainer(run_dir: Path, **overrides) -> Trainer:
    values = dict(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=TOKENIZER, envs=1,
                  steps=1, max_turns=1, max_new_tokens=6, micro_batch_size=2, mini_batch_size=4, run_dir=str(run_dir),
                  actor_lr=1e-2, critic_lr=1e-2, lora_rank=4, gradient_checkpointing=False)
    values.update(overrides)
    return Trainer(TrainConfig(**values))


def perturb_adapters(trainer: Trainer, seed: int = 0) -> None:
    """Nonzero adapters (PEFT starts B at zero, where the adapted model is the base model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainer.actor_parameters + trainer.critic.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.randint(5, 2000, (2, 12), generator=torch.Generator().manual_seed(0))


def test_the_actor_trains_adapters_only_and_the_reference_is_the_base_model(tmp_path):
    trainer = lora_trainer(tmp_path)
    base = tiny_random_model(trainer.tokenizer, seed=0)  # the weights the run started from
    assert trainer.reference is None  # no second copy of the weights
    trained = {id(p) for p in trainer.actor_parameters}
    assert trained and all("lora_" in n and ".default." in n for n, p in trainer.actor.named_parameters()
                            if id(p) in trained)
    assert {id(p) for group in trainer.actor_opt.param_groups for p in group["params"]} == trained
    # The critic: heads and its own adapter set, on the actor's decoder (the same base weights).
    assert trainer.critic.backbone is trainer.actor.get_decoder() and trainer.critic.adapter == CRITIC_ADAPTER
    critic_trained = trainer.critic.trainable_parameters()
    assert len(critic_trained) == len(trainer.actor_parameters) + 2 and not trained & {id(p) for p in critic_trained}
    perturb_adapters(trainer)
    assert not torch.allclose(logits(trainer.actor, IDS), logits(base, IDS))
    with trainer._reference_policy() as reference:
        torch.testing.assert_close(logits(reference, IDS), logits(base, IDS))
    adapted = trainer.actor.get_base_model().state_dict()
    for name, weight in base.state_dict().items():  # adapters never touch the base weights
        assert torch.equal(adapted[name.replace("_proj.weight", "_proj.base_layer.weight")], weight), name
    # The critic's adapters change its values, and leave the policy's adapters active afterwards.
    mask = torch.ones_like(IDS)
    values = trainer.critic.values(IDS, mask, 4)
    with trainer.actor.disable_adapter():
        assert not torch.allclose(trainer.critic.values(IDS, mask, 4), values)
    assert trainer.actor.active_adapter == "default"


def test_a_lora_step_trains_the_adapters_and_saves_megabytes_not_the_model(tmp_path, monkeypatch):
    trainer = lora_trainer(tmp_path, kl_coef=0.0)
    monkeypatch.setattr(Trainer, "_reference_policy", lambda self: pytest.fail("a reference pass without KL"))
    base = {n: p.detach().clone() for n, p in trainer.actor.named_parameters() if "lora_" not in n}
    before = [p.detach().clone() for p in trainer.actor_parameters + trainer.critic.trainable_parameters()]
    (metrics,) = trainer.train(log=None)
    assert torch.isfinite(torch.tensor([metrics["critic_loss"], metrics["pg_loss"]])).all()
    after = trainer.actor_parameters + trainer.critic.trainable_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    for name, p in trainer.actor.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base[name]), name
    ckpt = checkpoint.open_checkpoint(tmp_path)
    assert ckpt.is_lora and not (ckpt.path / "actor" / "model.safetensors").exists()
    assert set(ckpt.critic_state()) == {k for k in trainer.critic.state_dict() if ".critic." in k or "heads" in k}
    tensors = ["actor/adapter_model.safetensors", "critic.safetensors", "trainer_state.safetensors"]
    assert sum(ckpt.manifest["files"][name]["bytes"] for name in tensors) < 1_000_000


def test_resume_restores_adapters_heads_and_optimisers(tmp_path):
    first = lora_trainer(tmp_path)
    perturb_adapters(first, seed=1)
    for p in first.actor_parameters + first.critic.trainable_parameters():
        p.grad = torch.ones_like(p)
    first.actor_opt.step()
    first.critic_opt.step()
    first.step = 3
    first.save_checkpoint()
    resumed = lora_trainer(tmp_path)
    resumed.load_checkpoint()
    assert resumed.step == 3
    # zip() stops at the shorter list: the lengths are checked first, or an empty resumed state would pass.
    saved = first.actor_parameters + first.critic.trainable_parameters()
    loaded = resumed.actor_parameters + resumed.critic.trainable_parameters()
    assert len(loaded) == len(saved) > 0
    for a, b in zip(saved, loaded):
        assert torch.equal(a, b)
    for name, opt_a, opt_b in (("actor", first.actor_opt, resumed.actor_opt),
                               ("critic", first.critic_opt, resumed.critic_opt)):
        saved_states, resumed_states = len(opt_a.state), len(opt_b.state)
        assert resumed_states == saved_states > 0, f"{name}: {resumed_states} of {saved_states} optimiser states back"
        for a, b in zip(opt_a.state.values(), opt_b.state.values()):
            assert a.keys() == b.keys()
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    with pytest.raises(ValueError, match="lora_rank"):
        lora_trainer(tmp_path, lora_rank=0).load_checkpoint()


def test_eval_and_export_load_a_lora_checkpoint(tmp_path, capsys):
    trainer = lora_trainer(tmp_path / "run")
    perturb_adapters(trainer, seed=2)
    trainer.save_checkpoint()
    expected = logits(trainer.actor, IDS)
    model, tokenizer = checkpoint.load_policy(tmp_path / "run")  # what `hiper eval --checkpoint RUN` loads
    torch.testing.assert_close(logits(model, IDS), expected)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]) == 0
    merged_dir = tmp_path / "merged"
    assert (merged_dir / "config.json").is_file() and not (merged_dir / "adapter_config.json").exists()
    merged, _ = checkpoint.load_policy(tmp_path / "merged")
    assert not hasattr(merged, "peft_config")
    torch.testing.assert_close(logits(merged, IDS), expected, rtol=1e-4, atol=1e-4)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]) == 1
    assert "--out" in capsys.readouterr().err


def test_lora_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="lora_dropout"):
        TrainConfig(lora_dropout=1.0)
    with pytest.raises(ValueError, match="lora_rank"):
        TrainConfig(lora_rank=-1)
    with pytest.raises(ValueError, match="lora_alpha"):
        TrainConfig(lora_alpha=0.0)
    with pytest.raises(ValueError, match="lora_targets"):
        TrainConfig(lora_targets=" , ")
    with pytest.raises(ValueError, match="lora_targets: .* no modules named qkv"):
        lora_trainer(tmp_path, lora_targets="q_proj,qkv")


def test_the_base_of_a_lora_checkpoint_is_loaded_from_local_files_only(tmp_path, monkeypatch):
    """A run on a Hub model keeps only its adapters: evaluating it loads the base from the local
    cache and never asks the network (a missing base is an error, not a download)."""
    from types import SimpleNamespace

    from hiper import models

    trainer = lora_trainer(tmp_path / "run")
    trainer.save_checkpoint()
    ckpt = checkpoint.open_checkpoint(tmp_path / "run")
    monkeypatch.setattr(checkpoint.Checkpoint, "training_state",
                        lambda self: SimpleNamespace(config={"model": "someone/some-model", "tiny_model": False},
                                                     base=None))
    asked = []

    def load(name, **kwargs):
        asked.append((name, kwargs))
        return tiny_random_model(trainer.tokenizer, seed=0), None  # the base the run's adapters were made on

    monkeypatch.setattr(models, "load", load)
    ckpt.load_actor()
    assert asked and asked[0][0] == "someone/some-model" and asked[0][1].get("local_files_only") is True
