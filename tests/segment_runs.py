"""The runs of tests/test_learning_segments.py, each in a process of its own with one thread, so
that two run at once on two cores. A run trains the warm start with HAE (or one of the controls,
each of which breaks one piece of it) and reports what the test's assertions read."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from controls import NegatedAdvantages, SegmentLevelZeroed, ShuffledTargets
from hiper.critic_check import held_out_explained_variance
from hiper.trainer import Trainer, TrainConfig

DOORS = 1
PARAMS = f"doors={DOORS}"  # 5 for each key, 10 for the chest
LAST_HALL = f"hall {DOORS + 1} of {DOORS + 1}"
MAX_TURNS = 2 * DOORS + 2      # no turn to waste: a wrong sub-goal loses the chest
MAX_NEW_TOKENS = 40
RIGHT_PLAN = "get through door"  # how every right sub-goal before the last hall begins

TRAINERS = {"hae": Trainer, "negated": NegatedAdvantages, "shuffled": ShuffledTargets,
            "segment_zeroed": SegmentLevelZeroed}


def run_config(run_dir, seed: int, steps: int) -> TrainConfig:
    """HAE on keychest with one door. The keychest learning test's loop (tests/test_learning.py),
    with 12 episodes a step, four PPO epochs over each (two were too slow to learn in three steps;
    a larger learning rate, 5e-4, broke the policy) in mini-batches of 8 rows, and value_norm: each
    head learns its targets standardised, so that it keeps up with returns whose scale it does not
    know at first; two critic passes."""
    return TrainConfig(env="keychest", game_params=PARAMS, estimator="hae", seed=seed, norm_adv=False,
                       value_norm=True, critic_epochs=2, envs=12, steps=steps, max_turns=MAX_TURNS,
                       max_new_tokens=MAX_NEW_TOKENS, temperature=0.5, actor_lr=2e-4, critic_lr=2e-3, ppo_epochs=4,
                       kl_coef=0.0, entropy_coeff=0.0, mini_batch_size=8, micro_batch_size=8,
                       freeze_embeddings=True, gradient_checkpointing=False, engine="hf", save_every=0,
                       progress=False, device="cpu", run_dir=str(run_dir), overwrite=True)


def what_it_does(result, tokenizer) -> dict:
    """Of held-out games played (a hiper.rollout.RolloutResult): the success rate and the share of
    turns before the last hall whose sub-goal is not to get through the door (the planning errors)."""
    from hiper.format import parse_turn

    batch = result.batch
    texts = tokenizer.batch_decode([row[mask] for row, mask in zip(batch.responses, batch.response_mask.bool())])
    wrong = [not parse_turn(text).subgoal.strip().startswith(RIGHT_PLAN)
             for observation, text in zip(result.observations, texts) if LAST_HALL not in observation]
    return {"success": result.success_rate, "plan_errors": sum(wrong) / max(1, len(wrong))}


def play(policy, tokenizer, episodes: int, seed: int):
    """Held-out games at the evaluation temperature (hiper.evaluate's, 0.4), from `seed`."""
    from hiper.evaluate import play_held_out
    from hiper.rollout import RolloutConfig

    config = RolloutConfig.for_env("keychest", max_turns=MAX_TURNS, max_new_tokens=MAX_NEW_TOKENS, temperature=0.4)
    return play_held_out(policy, tokenizer, "keychest", episodes, None, config, seed=seed, params=PARAMS)[1]


def train_and_measure(job: tuple[str, str, str, int, int, int, int]) -> dict:
    """One run, in a worker process: (trainer name, warm start directory, run directory, seed,
    steps, held-out games, critic-check games) -> what the held-out games show after it."""
    name, warm_start, run_dir, seed, steps, episodes, critic_episodes = job
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hiper.models import prepare_tokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(warm_start))
    model = AutoModelForCausalLM.from_pretrained(warm_start)
    run = TRAINERS[name](run_config(Path(run_dir) / name, seed, steps), model=model, tokenizer=tokenizer)
    for _ in range(steps):
        run.train_step()
    report = what_it_does(play(run.actor, tokenizer, episodes, seed), tokenizer)
    # The critic is judged on games sampled as the rollouts it learnt from are (temperature 0.5).
    report["explained_variance"] = held_out_explained_variance(run, critic_episodes, seed + 1)
    report["pid"] = os.getpid()
    return report
