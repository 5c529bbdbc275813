"""How well a trainer's critic predicts returns it never trained on: each value head's explained
variance on fresh held-out games.

    shares = held_out_explained_variance(trainer, episodes=32)   # {"low": 0.71, "high": 0.88, "term": 0.64}
    rollout = held_out_rollout(trainer, 32)                      # or in two steps, to read the games too
    shares = explained_variance_on(trainer, rollout)

The current policy plays `episodes` games of the held-out split (the one the evaluation inside
training plays) at the rollouts' temperature, so the returns are those of the policy the critic
values. The targets are the configured estimator's own (HAE: the low head's turn returns inside
segments, the high head's segment returns, the termination head's continuation returns), computed
from those games with the critic's values, exactly as a training step computes them, and never
trained on. A share near 1 means the head predicts its targets; 0, no better than their mean; below
0, worse. The per-step `explained_variance` in metrics.jsonl is the same statistic on each step's
own rollout, read before the critic trains on it.
"""
from __future__ import annotations

import torch

from hiper.critic import explained_variance
from hiper.distributed import LOCAL
from hiper.estimators import estimate


def held_out_explained_variance(trainer, episodes: int, seed: int = 0) -> dict[str, float | None]:
    """{head: share of its targets' variance the critic explains} on `episodes` held-out games
    (None for a head whose targets do not vary). The caller's random streams are left as they were."""
    return explained_variance_on(trainer, held_out_rollout(trainer, episodes, seed))


def held_out_rollout(trainer, episodes: int, seed: int = 0):
    """The trainer's policy on `episodes` games of its held-out split, sampled as its rollouts are
    (hiper.rollout.RolloutResult), from `seed` and without touching the caller's random streams."""
    from hiper.evaluate import play_held_out

    if trainer.critic is None:
        raise ValueError(f"estimator: {trainer.config.estimator!r} trains no critic; there is nothing to check")
    cfg = trainer.config
    _, rollout = play_held_out(trainer.actor, trainer.tokenizer, cfg.env, episodes, cfg.eval_split or None,
                               cfg.rollout_config(), seed=seed, workers=cfg.workers, data=cfg.data or None,
                               tasks=cfg.task_list(), params=cfg.game_params or None,
                               engine=trainer._rollout_engine())
    return rollout


def explained_variance_on(trainer, rollout) -> dict[str, float | None]:
    """{head: share of its targets' variance the critic explains} on a rollout it has not trained on."""
    batch = rollout.batch
    cfg = trainer.config
    width = batch.responses.shape[1]
    spans = trainer.masker(batch.responses, batch.response_mask, include_tags=True)
    with torch.no_grad():
        values = trainer.critic_values(batch, width)
    # The estimator itself, not trainer.advantages: a trainer that alters its targets (a control
    # in the tests) is judged against the true ones. One process's games: no cross-rank statistics.
    _, _, targets = estimate(cfg.estimator, batch, spans=spans, values=values, masker=trainer.masker,
                             groups=(batch.env_ids // cfg.group_size).numpy(), observations=rollout.observations,
                             hae_config=cfg.hae_config(), flat_config=cfg.flat_config(), reducer=LOCAL)
    return explained_variance(values, targets)
