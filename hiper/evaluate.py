"""Evaluation: a policy plays held-out episodes; success overall and per task type.

`evaluate(model, tokenizer, env="alfworld", episodes=10, split="valid_unseen")` plays games
spread evenly over the split (so every task type is represented) and samples with
temperature 0.4, as the authors validate, and reports the success rate overall and per task
type (ALFWorld), average turns, switches per episode and the invalid-format rate.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def evaluate(model, tokenizer, env: str = "alfworld", episodes: int = 10, split: str = "valid_unseen",
             max_turns: int = 50, max_new_tokens: int = 512, temperature: float = 0.4, workers: int = 0) -> dict:
    from hiper.envs import EnvPool
    from hiper.rollout import RolloutConfig, RolloutEngine
    from hiper.trainer import env_specs

    specs = env_specs(env, episodes, split, max_turns, spread=True)
    config = RolloutConfig(max_turns=max_turns, max_new_tokens=max_new_tokens, temperature=temperature)
    with EnvPool(specs, num_workers=workers) as pool:
        result = RolloutEngine(model, tokenizer, pool, config).run()
    per_type = defaultdict(list)
    for spec, ep in zip(specs, result.episodes):
        kind = ep.info.get("task_type") or spec.kind
        per_type[kind].append(ep.won)
    turns = sum(e.turns for e in result.episodes)
    return {
        "episodes": len(result.episodes),
        "success_rate": result.success_rate,
        "success_by_type": {k: float(np.mean(v)) for k, v in sorted(per_type.items())},
        "episodes_by_type": {k: len(v) for k, v in sorted(per_type.items())},
        "avg_turns": turns / max(1, len(result.episodes)),
        "switches_per_episode": float(np.mean([e.switches for e in result.episodes])),
        "invalid_rate": sum(e.invalid for e in result.episodes) / max(1, turns),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }
