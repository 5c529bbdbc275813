"""End-to-end training steps with a tiny random model on real environments."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hiper.cli import main
from hiper.trainer import Trainer, TrainConfig

from numerics import assert_close

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=TOKENIZER, envs=2, steps=1,
                  max_turns=2, max_new_tokens=8, micro_batch_size=2, mini_batch_size=4, run_dir=str(tmp_path / "run"),
                  actor_lr=1e-3, critic_lr=1e-3)
    values.update(overrides)
    return TrainConfig(**values)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("env", ["alfworld", "textworld"])
def test_one_training_step_end_to_end(tmp_path, monkeypatch, env):
    monkeypatch.setenv("HIPER_CACHE", str(tmp_path / "cache"))
    trainer = Trainer(tiny_config(tmp_path, env=env, envs=1 if env == "textworld" else 2, split="train"))
    actor0, critic0 = snapshot(trainer.actor), snapshot(trainer.critic.heads)
    (metrics,) = trainer.train(log=None)
    for key in ("critic_loss", "pg_loss", "entropy", "kl"):
        assert torch.isfinite(torch.tensor(metrics[key])), key
    # The tiny random model never writes the format: every turn is invalid and penalised, and it still trains.
    assert metrics["invalid_rate"] == 1.0 and metrics["loss_tokens"] > 0
    assert any(not torch.equal(actor0[k], v) for k, v in trainer.actor.state_dict().items())
    assert any(not torch.equal(critic0[k], v) for k, v in trainer.critic.heads.state_dict().items())
    ckpt = Path(trainer.config.run_dir) / "checkpoint"
    assert (ckpt / "actor" / "model.safetensors").is_file() and (ckpt / "critic.safetensors").is_file()
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "MANIFEST.json").is_file()
    line = json.loads((Path(trainer.config.run_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert line["step"] == 1 and "timings" in line and 0 < line["compiled_fraction"] < 0.05


@pytest.mark.parametrize("estimator", ["gae", "turn_gae", "grpo", "rloo", "gigpo"])
def test_flat_baselines_train_end_to_end(tmp_path, estimator):
    trainer = Trainer(tiny_config(tmp_path, estimator=estimator, envs=4, group_size=2, max_turns=2))
    assert (trainer.critic is None) == (estimator in ("grpo", "rloo", "gigpo"))
    actor0 = snapshot(trainer.actor)
    critic0 = snapshot(trainer.critic) if trainer.critic is not None else None
    (metrics,) = trainer.train(log=None)
    assert metrics["rows"] >= 4 and metrics["loss_tokens"] > 0
    for key in ("critic_loss", "pg_loss", "entropy", "kl"):
        assert torch.isfinite(torch.tensor(metrics[key])), key
    assert any(not torch.equal(actor0[k], v) for k, v in trainer.actor.state_dict().items())
    if critic0 is not None:
        assert metrics["critic_loss"] > 0
        assert any(not torch.equal(critic0[k], v) for k, v in trainer.critic.state_dict().items())
    # Checkpoints and resume work without a critic too.
    resumed = Trainer(tiny_config(tmp_path, estimator=estimator, envs=4, group_size=2, max_turns=2, steps=2))
    resumed.train(resume=True, log=None)
    assert resumed.step == 2


def test_group_size_repeats_each_game():
    from hiper.envs.registry import training_specs

    specs = training_specs("alfworld", "valid_unseen", 6, 0, group_size=3, data="sample")
    games = [s.kwargs["game_file"] for s in specs]
    assert games[0] == games[1] == games[2] != games[3] == games[4] == games[5]
    with pytest.raises(ValueError, match="group_size"):
        training_specs("alfworld", "valid_unseen", 5, 0, group_size=2, data="sample")
    with pytest.raises(ValueError, match="group_size"):
        TrainConfig(group_size=0)
    with pytest.raises(ValueError, match="estimator"):
        TrainConfig(estimator="ppo")


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", steps=2))
    straight.train(log=None)
    first = Trainer(tiny_config(tmp_path / "b", steps=1))
    first.train(log=None)
    resumed = Trainer(tiny_config(tmp_path / "b", steps=2))
    resumed.train(resume=True, log=None)
    assert resumed.step == straight.step == 2
    for (name, a), b in zip(straight.actor.state_dict().items(), resumed.actor.state_dict().values()):
        assert_close(b, a, atol=0.0, name=f"actor {name}")
    for (name, a), b in zip(straight.critic.state_dict().items(), resumed.critic.state_dict().values()):
        assert_close(b, a, atol=0.0, name=f"critic {name}")


def test_shared_critic_trains_heads_only(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, shared_critic=True, kl_coef=0.0))
    assert trainer.critic.backbone is trainer.actor.get_decoder()
    assert len(trainer.critic.trainable_parameters()) == 2  # weight and bias of the heads
    (metrics,) = trainer.train(log=None)
    assert torch.isfinite(torch.tensor(metrics["critic_loss"]))


def test_cli_train_and_eval(tmp_path, capsys):
    run = tmp_path / "cli"
    assert main(["train", "--env", "alfworld", "--split", "valid_unseen", "--data", "sample", "--tiny-model", "true",
                 "--model", TOKENIZER,
                 "--envs", "1", "--steps", "1", "--max-turns", "2", "--max-new-tokens", "8",
                 "--run-dir", str(run)]) == 0
    assert (run / "checkpoint" / "actor").is_dir()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "checkpoint"), "--data", "sample", "--episodes", "2", "--max-turns", "2",
                 "--max-new-tokens", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and 0.0 <= report["success_rate"] <= 1.0
    assert sum(report["episodes_by_type"].values()) == 2 and report["invalid_rate"] == 1.0


def test_bad_config():
    from hiper.trainer import config_from_dict

    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({"lr": 1.0})


def test_plot_and_tensorboard(tmp_path):
    pytest.importorskip("matplotlib")
    trainer = Trainer(tiny_config(tmp_path, steps=1, save_every=0))
    trainer.train(log=None)
    assert main(["plot", trainer.config.run_dir]) == 0
    assert (Path(trainer.config.run_dir) / "curves.png").stat().st_size > 1000
    if pytest.importorskip("tensorboard"):
        assert any((Path(trainer.config.run_dir) / "tensorboard").iterdir())


@pytest.mark.slow
def test_smollm2_training_step(tmp_path):
    """The offline default model through one step (slow: minutes on a CPU; not in CI)."""
    trainer = Trainer(TrainConfig(env="alfworld", split="valid_unseen", data="sample", envs=2, steps=1, max_turns=2,
                                  max_new_tokens=48, run_dir=str(tmp_path / "run")))
    (metrics,) = trainer.train(log=None)
    assert torch.isfinite(torch.tensor(metrics["critic_loss"])) and metrics["rows"] > 0


def test_evaluation_games_spread_over_task_types():
    from hiper.envs.alfworld import SAMPLE_ROOT, task_type_of
    from hiper.envs.registry import evaluation_specs

    specs = evaluation_specs("alfworld", "valid_unseen", 3, data="sample")
    types = {task_type_of(s.kwargs["game_file"]) for s in specs}
    assert len(types) == 3 and all(str(SAMPLE_ROOT) in s.kwargs["game_file"] for s in specs)


def test_value_scale_reads_values_and_fits_targets_in_the_critics_units(tmp_path, monkeypatch):
    """value_scale s: HAE reads the critic's outputs times s, and the critic regresses onto returns / s
    (its old values / s for the clip): the same fit as at s = 1 on returns s times smaller."""
    import hiper.trainer as trainer_module

    seen = {}
    real_loss = trainer_module.clipped_value_loss

    def recording_loss(values, old_values, returns, mask, clip, token_count=None):
        seen.setdefault("old", []).append(old_values[mask].detach().clone())
        seen.setdefault("returns", []).append(returns[mask].detach().clone())
        return real_loss(values, old_values, returns, mask, clip, token_count=token_count)

    monkeypatch.setattr(trainer_module, "clipped_value_loss", recording_loss)
    trainer = Trainer(tiny_config(tmp_path, env="keychest", split="train", data="", value_scale=10.0, critic_lr=0.0))
    with torch.no_grad():  # the heads start at zero: give them outputs a scale can be seen on
        for parameter in trainer.critic.heads.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1 + 0.2)

    def advantages(rollout, spans, values):
        seen["values"] = values.clone()
        seen["raw"] = trainer._forward_all(rollout.batch, trainer.critic.head_outputs,
                                           rollout.batch.responses.shape[1])
        out = Trainer.advantages(trainer, rollout, spans, values)
        seen["targets"] = [ret[mask] for _, ret, mask, _ in out[2]]
        return out

    trainer.advantages = advantages
    trainer.train(log=None)
    # Same forward twice, scaled by 10: float32 rounding of values of about 1, times 10.
    assert_close(seen["values"], seen["raw"] * 10.0, atol=1e-5, rtol=1e-6, name="values HAE reads")
    # The critic's loss saw the targets and old values divided by the scale (3 heads, one epoch).
    # (sorted: the loss sees them per micro-batch and head, the estimator per head over the batch)
    assert_close(torch.cat(seen["returns"]).sort().values, (torch.cat(seen["targets"]) / 10.0).sort().values,
                 atol=0.0, rtol=1e-6, name="critic targets")
    assert seen["raw"].abs().max() > 0.05
    # The old values of the clip are the critic's own outputs (values / 10), not the values HAE read.
    old, raw = torch.cat(seen["old"]), seen["raw"].flatten()
    assert torch.isclose(old[:, None], raw[None, :], atol=1e-6, rtol=0).any(1).all()


def test_a_run_that_writes_no_valid_turn_says_so_once_with_the_fix(tmp_path, capsys):
    """The tiny random model never writes the format: the log says so once, naming hiper sft."""
    from hiper.run_log import no_valid_turn_hint

    assert main(["train", "--env", "keychest", "--tiny-model", "--model", TOKENIZER, "--envs", "2", "--steps", "2",
                 "--max-turns", "2", "--max-new-tokens", "6", "--save-every", "0", "--progress", "false", "--engine", "hf",
                 "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and all("invalid 1.00" in line for line in steps)
    assert out.count(no_valid_turn_hint("keychest")) == 1
    assert "hiper sft --env keychest" in no_valid_turn_hint("keychest")
