"""The training loop makes a policy better, and this test can tell when it does not.

A tiny Llama with SmolLM2's tokenizer first learns the Plan-Execute format by supervised
fine-tuning (hiper.sft) on demonstrations of keychest (hiper/envs/keychest.py: take the key, then
open the chest) from a noisy expert (hiper.demos, expert_noise): it writes the format and the
subgoals, but picks the right action only about half the time. Then `Trainer.train` runs the whole
loop (rollout, span masks, critic values, advantages, critic and PPO updates) for a few steps:
with HAE, with the flat GRPO baseline, and with HAE whose advantages have their sign flipped, the
control, identical but for the direction of the update. Each policy plays the same held-out
evaluation episodes (the test split: rooms training never showed), sampled from the same seed,
before and after.

Measured with these settings, SEED 0 (held-out success on the 48 evaluation games, before -> after
5 steps), and the time of those three runs and the warm start alone on two idle cores of the
development machine (4 min; the critic's test at the end of the file adds about 2.5):

    HAE                    0.333 -> 0.896
    GRPO (groups of 4)     0.333 -> 0.938
    HAE, flipped (control) 0.333 -> 0.000

The threshold (+0.3) is about four standard errors of a 48-game success rate near 0.5, and the
control falls instead. Larger learning rates (1e-3, 3e-4) learned in two steps and then, on some
seeds, broke the tiny policy's format (every turn invalid): the settings here are stable ones.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from controls import NegatedAdvantages, ShuffledTargets
from hiper import demos
from hiper.evaluate import evaluate
from hiper.models import prepare_tokenizer, tiny_random_model
from hiper.rollout import RolloutConfig
from hiper.sft import SFTConfig, sft
from hiper.trainer import Trainer, TrainConfig

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")

SEED = 0
MAX_TURNS = 2           # no turn to waste: a win is "take key" then "open chest"
MAX_NEW_TOKENS = 40     # a well-formed turn is about 31 tokens
TEMPERATURE = 0.5       # of the rollouts: at 1.0 the tiny model's tail breaks the format now and then
EVAL_EPISODES = 48      # evaluate() samples at its own low temperature (0.4), from a fixed seed
STEPS = 5               # of 16 episodes each
IMPROVEMENT = 0.3       # what the success rate must gain (seed noise: see the module docstring)


@pytest.fixture(scope="module")
def tokenizer():
    return prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


def fine_tuned(tokenizer, seed: int = SEED, *, params: str | None = None,
               max_turns: int = 3) -> tuple[torch.nn.Module, list[float]]:
    """The warm start: a tiny model fine-tuned on 200 episodes of a noisy expert (a random other
    action half the time, lost episodes kept) of keychest (with game `params`, episodes of up
    to `max_turns`); (the model, its SFT losses)."""
    model = tiny_random_model(tokenizer, hidden_size=128, layers=2, seed=seed)
    played = demos.collect("keychest", "train", 200, max_turns=max_turns, expert_noise=0.5, seed=seed,
                           keep_lost=True, params=params)
    pairs = demos.render(played, tokenizer, RolloutConfig.for_env("keychest"))
    return model, sft(model, tokenizer, pairs, SFTConfig(steps=200, batch_size=8, micro_batch_size=8, lr=5e-3,
                                                         seed=seed))


def run_config(estimator: str, run_dir, seed: int = SEED, *, whitened: bool = False) -> TrainConfig:
    """The loop's settings. Two PPO epochs over each step's 16 episodes at a small learning rate:
    larger steps of Adam (whose first updates are sign-like, every weight moving by the full
    rate) knock the tiny policy off its format. The token embeddings stay as fine-tuning left
    them (freeze_embeddings). HAE's advantages are not whitened over the batch (norm_adv false,
    the authors whiten): when most of 16 episodes win, their spread is mostly the critic's error,
    and whitening made that error a full-size push against the winning actions on 2 of 7 seeds
    (docs/learning/stability.md). `whitened`: the recipe as it was before, which the published
    runs of docs/learning/ used."""
    return TrainConfig(env="keychest", estimator=estimator, group_size=4 if estimator == "grpo" else 1, seed=seed,
                       norm_adv=whitened,  # docs/learning/stability.md, "Whitening over few turns"
                       envs=16, steps=STEPS, max_turns=MAX_TURNS, max_new_tokens=MAX_NEW_TOKENS,
                       temperature=TEMPERATURE, actor_lr=2e-4, critic_lr=2e-3, ppo_epochs=2, kl_coef=0.0,
                       entropy_coeff=0.0, mini_batch_size=16, micro_batch_size=16, freeze_embeddings=True,
                       gradient_checkpointing=False, engine="hf", save_every=0, progress=False, device="cpu",
                       run_dir=str(run_dir), overwrite=True)


@pytest.fixture(scope="module")
def warm_start(tokenizer):
    """(the fine-tuned policy, its evaluation success rate)."""
    model, losses = fine_tuned(tokenizer)
    # The floor is the noisy expert's own entropy (about 1 nat per 31-token turn): what remains to
    # learn is which action to take.
    assert losses[-1] < 0.1, losses[-10:]
    return model, success_rate(model, tokenizer)


def success_rate(model, tokenizer, seed: int = SEED) -> float:
    """Wins over EVAL_EPISODES distinct held-out games (hiper.evaluate: a fixed seed and low temperature)."""
    return evaluate(model, tokenizer, "keychest", EVAL_EPISODES, max_turns=MAX_TURNS, max_new_tokens=MAX_NEW_TOKENS,
                    seed=seed)["success_rate"]


def train(warm_start, tokenizer, tmp_path, estimator: str, trainer=Trainer) -> float:
    """The evaluation success rate after a short run of the loop (run_config) from the warm start."""
    start = warm_start[0]
    config = run_config(estimator, tmp_path / estimator)
    run = trainer(config, model=copy.deepcopy(start), tokenizer=tokenizer)
    run.train(log=None)
    # freeze_embeddings: the table is as it was, while the layers above it moved.
    assert torch.equal(run.actor.get_input_embeddings().weight, start.get_input_embeddings().weight)
    assert not torch.equal(run.actor.model.layers[0].mlp.up_proj.weight, start.model.layers[0].mlp.up_proj.weight)
    return success_rate(run.actor, tokenizer)


@pytest.mark.parametrize("estimator", ["hae", "grpo"])
def test_training_raises_the_success_rate(warm_start, tokenizer, tmp_path, estimator):
    before = warm_start[1]
    after = train(warm_start, tokenizer, tmp_path, estimator)
    print(f"{estimator}: held-out success {before:.3f} -> {after:.3f}")
    assert after >= before + IMPROVEMENT, f"{estimator}: success {before:.2f} -> {after:.2f}"


def test_flipped_advantages_do_not(warm_start, tokenizer, tmp_path):
    before = warm_start[1]
    after = train(warm_start, tokenizer, tmp_path, "hae", trainer=NegatedAdvantages)
    print(f"flipped hae: held-out success {before:.3f} -> {after:.3f}")
    assert after <= before, f"control: success {before:.2f} -> {after:.2f}"


# ---------------------------------------------------------------------------- the critic
CRITIC_STEPS = 5        # critic-only steps on the warm start's own rollouts (the actor held still)
CRITIC_EPOCHS = 8       # the critic's passes over each step's rollout
EXPLAINED = 0.2         # the share of its targets' variance each head must explain (measured: 0.37-0.67)


def critic_explained_variance(warm_start, tokenizer, tmp_path, trainer=Trainer) -> dict[str, float]:
    """Each head's explained variance on fresh rollouts (read before the critic trains on them),
    averaged over the last two of CRITIC_STEPS critic-only steps."""
    config = run_config("hae", tmp_path / trainer.__name__, SEED)
    config.steps, config.critic_warmup, config.critic_epochs, config.value_norm = (CRITIC_STEPS, CRITIC_STEPS,
                                                                                   CRITIC_EPOCHS, True)
    metrics = trainer(config, model=copy.deepcopy(warm_start[0]), tokenizer=tokenizer).train(log=None)
    return {head: sum(m["explained_variance"][head] for m in metrics[-2:]) / 2 for head in ("low", "high", "term")}


def test_the_critic_learns_what_each_head_is_asked(warm_start, tokenizer, tmp_path):
    """The value heads explain a share of their targets' variance on rollouts they have not seen,
    and with the targets shuffled they do not (the control that fails the assertion).

    A success rate cannot catch a broken critic here: with the recipe above the heads explain
    almost none of their targets' variance while HAE still learns (docs/learning/stability.md),
    so the critic is held to the statistic it moves. Measured at SEED 0, value_norm and 8 critic
    passes a step, the actor held still: low 0.67, high 0.53, term 0.37; targets shuffled: -0.01,
    -0.06, -0.11."""
    learned = critic_explained_variance(warm_start, tokenizer, tmp_path)
    shuffled = critic_explained_variance(warm_start, tokenizer, tmp_path, trainer=ShuffledTargets)
    print(f"explained variance: {learned}; targets shuffled: {shuffled}")
    for head in ("low", "high", "term"):
        assert learned[head] >= EXPLAINED, (head, learned)
        assert shuffled[head] < EXPLAINED, (head, shuffled)
