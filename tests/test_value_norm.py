"""The critic's value normalisation (hiper.value_norm), its explained variance and critic warm-up,
alone and in the loop."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hiper.critic import critic_ready, explained_variance
from hiper.trainer import Trainer, TrainConfig
from hiper.value_norm import DECAY, MIN_STD, ValueNorm

from numerics import assert_close

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def keychest_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(env="keychest", split="train", tiny_model=True, model=TOKENIZER, envs=4, steps=2, max_turns=2,
                  max_new_tokens=8, micro_batch_size=4, mini_batch_size=8, engine="hf", progress=False,
                  run_dir=str(tmp_path / "run"), actor_lr=1e-3, critic_lr=1e-3, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def test_the_first_update_takes_the_batch_statistics_exactly():
    norm = ValueNorm(3, adaptive=True)
    norm.update(means=[2.0, 10.0, -1.0], squares=[4.0 + 4.0, 100.0 + 9.0, 1.0], seen=[True, True, True])
    assert_close(norm.shift, torch.tensor([2.0, 10.0, -1.0], dtype=torch.float64), atol=1e-12, name="shift")
    # The third head's targets were all equal: its spread is the floor, not zero.
    assert_close(norm.scale, torch.tensor([2.0, 3.0, MIN_STD], dtype=torch.float64), atol=1e-12, name="scale")
    heads = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
    assert_close(norm.to_returns(heads), torch.tensor([[2.0, 10.0, -1.0], [4.0, 7.0, -1.0 + 2 * MIN_STD]]),
                 atol=1e-6, name="to_returns")
    returns = torch.tensor([3.0, 7.5])
    for head in range(3):
        back = norm.to_returns(torch.stack([norm.to_heads(returns, head)] * 3, -1))[..., head]
        assert_close(back, returns, atol=1e-5, name=f"round trip, head {head}")


def test_later_updates_are_a_debiased_running_average_and_unseen_heads_keep_theirs():
    norm = ValueNorm(2, adaptive=True)
    norm.update([1.0, 5.0], [1.0, 25.0], [True, True])
    norm.update([3.0, 0.0], [9.0, 0.0], [True, False])
    w1, w2 = DECAY * (1 - DECAY), 1 - DECAY                 # the two steps' weights, then debiased
    mean = (w1 * 1.0 + w2 * 3.0) / (w1 + w2)
    square = (w1 * 1.0 + w2 * 9.0) / (w1 + w2)
    assert_close(norm.shift, torch.tensor([mean, 5.0], dtype=torch.float64), atol=1e-12, name="shift")
    assert_close(norm.scale, torch.tensor([(square - mean ** 2) ** 0.5, MIN_STD], dtype=torch.float64),
                 atol=1e-12, name="scale")


def test_only_learned_statistics_are_saved_and_a_fixed_scale_is_not_learned():
    fixed = ValueNorm(3, scale=10.0)
    assert fixed.state_dict() == {}
    fixed.update([1.0] * 3, [2.0] * 3, [True] * 3)
    assert_close(fixed.to_returns(torch.ones(3)), torch.full((3,), 10.0), atol=0.0, name="fixed scale")
    assert set(ValueNorm(3, adaptive=True).state_dict()) == {"shift", "scale", "first_moment", "second_moment",
                                                             "weight"}
    with pytest.raises(ValueError, match="value_scale"):
        ValueNorm(3, scale=10.0, adaptive=True)
    with pytest.raises(ValueError, match="^value_scale: value_norm"):
        TrainConfig(value_norm=True, value_scale=10.0)


def test_in_the_loop_values_read_the_running_mean_of_each_heads_targets(tmp_path):
    """Heads held at zero (critic_lr 0): after step 1 every value HAE reads at step 2 is its head's
    mean target of step 1, the critic regressed onto targets standardised by that step's statistics
    with its clip centred on the heads' outputs before the update, and a checkpoint carries the
    statistics into a resumed run."""
    import hiper.trainer as trainer_module

    # A shared critic: its values come from the actor's forward (hiper.trainer's second path to the
    # heads), and its checkpoint holds the heads and the statistics only.
    trainer = Trainer(keychest_config(tmp_path, value_norm=True, critic_lr=0.0, shared_critic=True))
    seen = {"values": [], "targets": [], "regressed": [], "clip_centre": []}
    real_loss = trainer_module.clipped_value_loss

    def advantages(rollout, spans, values):
        seen["values"].append(values.clone())
        out = Trainer.advantages(trainer, rollout, spans, values)
        seen["targets"].append({head: ret[mask].double() for head, ret, mask, _ in out[2]})
        return out

    def recording_loss(values, old_values, returns, mask, clip, token_count=None):
        seen["regressed"].append(returns[mask].detach().clone())
        seen["clip_centre"].append(old_values[mask].detach().clone())
        return real_loss(values, old_values, returns, mask, clip, token_count=token_count)

    trainer.advantages = advantages
    trainer_module.clipped_value_loss = recording_loss
    try:
        trainer.train_step()
        first = seen["targets"][0]
        assert set(first) == {0, 1, 2}
        means = torch.tensor([first[h].mean() for h in range(3)], dtype=torch.float64)
        stds = torch.tensor([first[h].var(unbiased=False).sqrt().clamp_min(MIN_STD) for h in range(3)],
                            dtype=torch.float64)
        assert_close(trainer.critic.norm.shift, means, atol=1e-9, name="shift after step 1")
        assert_close(trainer.critic.norm.scale, stds, atol=1e-9, name="scale after step 1")
        assert means.abs().max() > 0.01  # rewards and penalties moved the mean off zero: a test with teeth
        standardised = torch.cat([(first[h] - means[h]) / stds[h] for h in range(3)]).float()
        assert_close(torch.cat(seen["regressed"]).sort().values, standardised.sort().values, atol=1e-4,
                     name="the critic's regression targets")
        assert bool((seen["values"][0] == 0).all())  # before any update the heads read zero
        # The clip is centred on the heads' outputs before the update (zero), not on the old values
        # re-expressed in the new units (-mean / std), which would stop all learning but towards the shift.
        assert bool((torch.cat(seen["clip_centre"]) == 0).all())
        second = trainer.train_step()
    finally:
        trainer_module.clipped_value_loss = real_loss
    assert_close(seen["values"][1], means.float().expand_as(seen["values"][1]), atol=1e-5,
                 name="values read at step 2")
    # The step's explained variance is of the values it read (the constant means) against its own targets.
    # (A head whose targets did not vary has none: a random tiny model's turns all score alike.)
    checked = 0
    for head, name in enumerate(("low", "high", "term")):
        targets = seen["targets"][1][head]
        spread = float(targets.var(unbiased=False))
        if spread < 1e-12:
            assert second["explained_variance"][name] is None, name
            continue
        expected = 1.0 - float((targets - means[head]).var(unbiased=False)) / spread
        assert second["explained_variance"][name] == pytest.approx(expected, abs=1e-5), name
        checked += 1
    assert checked >= 1
    saved = trainer.critic.norm.state_dict()
    trainer.save_checkpoint()
    resumed = Trainer(keychest_config(tmp_path, value_norm=True, critic_lr=0.0, shared_critic=True, steps=3))
    resumed.load_checkpoint()
    for key, tensor in saved.items():
        assert torch.equal(resumed.critic.norm.state_dict()[key], tensor), key


def test_critic_warmup_holds_the_actor_still_while_the_critic_learns(tmp_path):
    trainer = Trainer(keychest_config(tmp_path, critic_warmup=1))
    actor0 = {k: v.clone() for k, v in trainer.actor.state_dict().items()}
    critic0 = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    metrics = trainer.train_step()
    assert all(torch.equal(actor0[k], v) for k, v in trainer.actor.state_dict().items())
    assert any(not torch.equal(critic0[k], v) for k, v in trainer.critic.state_dict().items())
    assert metrics["pg_loss"] == 0.0 and metrics["timings"]["actor_update"] == 0.0
    trainer.train_step()
    assert any(not torch.equal(actor0[k], v) for k, v in trainer.actor.state_dict().items())


def test_explained_variance_per_head():
    targets_low = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    values = torch.zeros(1, 4, 3)
    values[..., 0] = targets_low + torch.tensor([[0.5, -0.5, 0.5, -0.5]])   # residual variance 0.25 of 1.25
    values[..., 1] = 2.5                                                   # the targets' mean: explains nothing
    values[..., 2] = -targets_low                                          # worse than the mean
    everywhere = torch.ones(1, 4, dtype=torch.bool)
    constant = torch.tensor([[True, False, False, False]])                 # one target: no spread to explain
    targets = [(0, targets_low, everywhere, 1.0), (1, targets_low, everywhere, 1.0), (2, targets_low, everywhere, 1.0)]
    ev = explained_variance(values, targets)
    assert ev["low"] == pytest.approx(1 - 0.25 / 1.25) and ev["high"] == pytest.approx(0.0)
    assert ev["term"] == pytest.approx(1 - 4.0)                            # residual 2 t: Var(2 t) = 4 Var(t)
    assert explained_variance(values, [(0, targets_low, constant, 1.0)]) == {"low": None}


def test_critic_epochs_sets_the_critics_passes_apart_from_the_actors(tmp_path):
    """critic_epochs 3 with ppo_epochs 1 and one mini-batch: three critic optimiser steps, one actor step."""
    trainer = Trainer(keychest_config(tmp_path, critic_epochs=3, ppo_epochs=1, envs=2, mini_batch_size=64))
    counts = {"critic": 0, "actor": 0}
    for name, optimiser in (("critic", trainer.critic_opt), ("actor", trainer.actor_opt)):
        real_step = optimiser.step

        def counted(*args, _name=name, _step=real_step, **kwargs):
            counts[_name] += 1
            return _step(*args, **kwargs)

        optimiser.step = counted
    trainer.train_step()
    assert counts == {"critic": 3, "actor": 1}


def test_the_actor_waits_for_a_critic_that_explains_its_targets(tmp_path):
    """min_explained_variance: no step whose fresh rollout the critic explains less than asked
    moves the actor (1.0: never, short of a perfect critic); the critic trains regardless."""
    assert critic_ready({"low": 0.5, "high": None, "term": 0.3}, 0.3)
    assert not critic_ready({"low": 0.5, "high": 0.8, "term": 0.29}, 0.3)
    trainer = Trainer(keychest_config(tmp_path, min_explained_variance=1.0))
    actor0 = {k: v.clone() for k, v in trainer.actor.state_dict().items()}
    critic0 = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    for _ in range(2):
        assert trainer.train_step()["actor_updated"] is False
    assert all(torch.equal(actor0[k], v) for k, v in trainer.actor.state_dict().items())
    assert any(not torch.equal(critic0[k], v) for k, v in trainer.critic.state_dict().items())
    # 0 (the default) means always, even when a head explains less than nothing (a negative share).
    always = Trainer(keychest_config(tmp_path / "always", critic_lr=0.0))
    torch.manual_seed(0)   # values that vary at random, unrelated to the targets: negative shares
    always.critic.heads.linear.weight.data.normal_(0.0, 10.0)
    metrics = always.train_step()
    assert min(v for v in metrics["explained_variance"].values() if v is not None) < 0
    assert metrics["actor_updated"] is True
    with pytest.raises(ValueError, match="^min_explained_variance: must be in"):
        TrainConfig(min_explained_variance=1.5)
