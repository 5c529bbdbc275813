"""Evaluation: a policy plays held-out episodes; success overall and per task type.

`evaluate(model, tokenizer, env="alfworld", episodes=10)` plays distinct games spread evenly
over the environment's held-out split (ALFWorld valid_unseen, TextWorld valid, ScienceWorld
dev; see hiper.envs.registry), so every task type is represented and every call plays the same
games. It samples with temperature 0.4, as the authors validate, from its own random stream
(`seed`; the caller's stream is left as it was, so evaluating inside a training run changes
nothing about the run; but a vLLM engine samples from a stream of its own, which the evaluation
inside a vLLM run advances), and reports the success rate overall and per task type, average turns,
switches per episode and the invalid-format rate.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def evaluate(model, tokenizer, env: str = "alfworld", episodes: int = 10, split: str | None = None,
             max_turns: int = 50, max_new_tokens: int = 512, temperature: float = 0.4, workers: int = 0,
             data: str | None = None, tasks=None, seed: int = 0, progress: bool = False, engine=None,
             params: str | None = None, max_prompt_length: int = 2048) -> dict:
    """The report of playing `episodes` held-out games; `progress` shows a bar of the turns on stderr;
    `engine` samples them (hiper.engines: a name, resolved for `model` by resolve_engine, or an
    engine; None: Hugging Face generate on `model`); a prompt longer than `max_prompt_length`
    tokens is an error."""
    from hiper.envs.registry import family
    from hiper.rollout import RolloutConfig

    config = RolloutConfig.for_env(env, max_turns=max_turns, max_new_tokens=max_new_tokens,
                                   max_prompt_length=max_prompt_length, temperature=temperature)
    specs, result = play_held_out(model, tokenizer, env, episodes, split, config, seed=seed, workers=workers,
                                  data=data, tasks=tasks, params=params, progress=progress, engine=engine)
    task_type = family(env).task_type
    per_type = defaultdict(list)
    for spec, ep in zip(specs, result.episodes):
        per_type[task_type(spec)].append(ep.won)
    turns = sum(e.turns for e in result.episodes)
    return {
        "split": split or family(env).eval_split,
        "episodes": len(result.episodes),
        "success_rate": result.success_rate,
        "success_by_type": {k: float(np.mean(v)) for k, v in sorted(per_type.items())},
        "episodes_by_type": {k: len(v) for k, v in sorted(per_type.items())},
        "avg_turns": turns / max(1, len(result.episodes)),
        "switches_per_episode": float(np.mean([e.switches for e in result.episodes])),
        "invalid_rate": sum(e.invalid for e in result.episodes) / max(1, turns),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


def play_held_out(model, tokenizer, env: str, episodes: int, split: str | None, config, *, seed: int = 0,
                  workers: int = 0, data: str | None = None, tasks=None, params: str | None = None,
                  progress: bool = False, engine=None):
    """(the games, the hiper.rollout.RolloutResult) of `episodes` distinct held-out games played
    with the rollout `config`, sampled from `seed` without touching the caller's random streams;
    what `evaluate` reports on and hiper.critic_check judges the critic on."""
    import torch

    from hiper.envs import EnvPool
    from hiper.envs.registry import evaluation_specs
    from hiper.rollout import RolloutEngine

    specs = evaluation_specs(env, split, episodes, max_turns=config.max_turns, data=data, tasks=tasks, params=params)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), EnvPool(specs, num_workers=workers) as pool:
        torch.manual_seed(seed)
        return specs, RolloutEngine(model, tokenizer, pool, config, progress=progress, engine=engine).run()
