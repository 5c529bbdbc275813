"""hiper.critic_check: each value head's explained variance on fresh held-out games. Whether the
statistic tells a learnt critic from a broken one is shown in tests/test_learning_segments.py (the
shuffled-targets control); here, what it plays and what it refuses."""
from __future__ import annotations

from pathlib import Path

import pytest

from hiper.critic_check import held_out_explained_variance, held_out_rollout
from hiper.trainer import Trainer, TrainConfig

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def tiny_trainer(tmp_path, **overrides) -> Trainer:
    values = dict(env="keychest", tiny_model=True, model=TOKENIZER, envs=2, steps=1, max_turns=2, max_new_tokens=8,
                  micro_batch_size=2, mini_batch_size=4, run_dir=str(tmp_path / "run"))
    values.update(overrides)
    return Trainer(TrainConfig(**values))


def test_plays_the_held_out_games_from_its_own_seed(tmp_path):
    import torch

    trainer = tiny_trainer(tmp_path)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    games = held_out_rollout(trainer, 3, seed=5)
    assert torch.equal(torch.rand(1), before)  # the caller's stream is left as it was
    assert len(games.episodes) == 3 and games.batch.num_rows == sum(e.turns for e in games.episodes)
    again = held_out_rollout(trainer, 3, seed=5)
    assert torch.equal(again.batch.responses, games.batch.responses)  # the same games, sampled alike
    shares = held_out_explained_variance(trainer, 3)
    assert set(shares) == {"low", "high", "term"}


def test_refuses_what_has_no_critic_or_no_games(tmp_path):
    with pytest.raises(ValueError, match="^estimator: 'grpo' trains no critic"):
        held_out_explained_variance(tiny_trainer(tmp_path, estimator="grpo", group_size=2), 2)
    with pytest.raises(ValueError, match="^episodes: need at least one game"):
        held_out_explained_variance(tiny_trainer(tmp_path), 0)
