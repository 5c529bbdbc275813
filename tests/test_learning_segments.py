"""HAE on a game of several multi-turn segments: it learns, each of its parts does its job, and
this test can tell when one does not.

The game is keychest with one locked door (tests/segment_runs.py): two segments of two turns,
"get through door 1" (take key, open door) then "open the chest" (take key, open chest), 5 for
each key and 10 at the chest, and no turn to spare. The warm start is a tiny model fine-tuned on
an expert that errs in its plans (hiper.demos, plan_noise): where it sets a new sub-goal before
the last hall, it often heads for the chest too early or looks for another way round the door,
acts on that sub-goal and wastes the turn, which costs the chest. The fine-tuned policy makes
those errors; what it learns about its sub-goals shows in what it does.

From the same warm start, in two processes of one thread each, the loop trains for STEPS steps
with HAE and with three controls, each breaking one piece. Every run is then measured on
held-out games (rooms training never showed), and each assertion guards one piece:

    assertion                                   guards                control that must fail it
    held-out success rises by RISE              the update's sign     advantages negated
    the low and high heads explain EXPLAINED    the critic            value targets shuffled
      of their targets' variance, held out
    planning errors fall to PLAN_ERRORS of      the segment level     segment-level advantage zeroed
      their warm-start rate                       (A^H on sub-goals)

The segment level is held to the statistic it moves, the share of turns before the last hall
whose sub-goal is not the door's: A^H is the only advantage on sub-goal tokens, while the success
rate can also rise through the turn-level advantage, which pushes the action that follows a wrong
sub-goal towards the right one (the game is then won with the wrong sub-goal written). The critic
is held to its explained variance on held-out games (hiper.critic_check), which shuffled targets
leave near zero or below. The keys' rewards give every state its own return, so the heads have
something to explain however well the policy plays.

Measured with these settings, SEED 0 (held-out success and planning errors on the 32 evaluation
games; explained variance of the low / high / termination heads on 16 games sampled as the
rollouts are):

    run                          success  planning errors  explained variance
    warm start                   0.50     0.23
    HAE                          0.75     0.09             0.72 / 0.49 / 0.05
    advantages negated           0.00     1.00             -0.13 / 0.23 / -0.03
    value targets shuffled       0.25     0.15             -0.01 / 0.00 / -0.00
    segment-level A^H zeroed     0.00     0.42             0.33 / 0.22 / -0.02

Two findings the assertions do not rest on. What the policy does with shuffled targets depends on
the shuffle: another permutation of the same targets gave success 0.94 and planning errors 0.03
(explained variance 0.00 / 0.00 / 0.02), so a run with a broken critic can still learn, which is
why the critic is held to its explained variance and not to the success rate. And with the
segment-level advantage zeroed the policy lost every game (so did it with an earlier version of
this test's settings), where only its sub-goals were expected to stop improving; why is not yet
understood.

The file takes 7 to 8 minutes on two idle cores (the warm start 2.5, the four runs the rest), more
than the 6 it was meant to fit: with two PPO epochs instead of four it took 6, and HAE gained 0.09.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import segment_runs
from hiper import demos
from hiper.models import prepare_tokenizer, tiny_random_model
from hiper.rollout import RolloutConfig
from hiper.sft import SFTConfig, sft

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
SEED = 0
PLAN_NOISE = 0.55
STEPS = 3
EVAL_EPISODES = 32     # held-out games (at the evaluation temperature, 0.4)
CRITIC_EPISODES = 16   # held-out games the critic is judged on (sampled as the rollouts are)
RISE = 0.15            # held-out success must gain this much
EXPLAINED = 0.3        # the least share of its targets' variance the low and high heads must explain
PLAN_ERRORS = 0.5      # planning errors must fall to this fraction of the warm start's rate


@pytest.fixture(scope="module")
def tokenizer():
    return prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


@pytest.fixture(scope="module")
def warm_start(tokenizer, tmp_path_factory):
    """(model directory, its held-out report): a tiny model fine-tuned on 200 episodes of the
    planning-error expert (lost episodes kept)."""
    model = tiny_random_model(tokenizer, hidden_size=128, layers=2, seed=SEED)
    played = demos.collect("keychest", "train", 200, max_turns=segment_runs.MAX_TURNS, plan_noise=PLAN_NOISE,
                           seed=SEED, keep_lost=True, params=segment_runs.PARAMS)
    pairs = demos.render(played, tokenizer, RolloutConfig.for_env("keychest"))
    losses = sft(model, tokenizer, pairs, SFTConfig(steps=200, batch_size=8, micro_batch_size=8, lr=5e-3, seed=SEED))
    assert losses[-1] < 0.1, losses[-10:]
    out = tmp_path_factory.mktemp("segments") / "warm-start"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out), segment_runs.what_it_does(segment_runs.play(model, tokenizer, EVAL_EPISODES, SEED), tokenizer)


@pytest.fixture(scope="module")
def runs(warm_start, tmp_path_factory):
    """{trainer name: its report after STEPS steps}: the runs in processes of one thread each, two
    at a time (four at once on two cores took longer)."""
    root = tmp_path_factory.mktemp("segment-runs")
    jobs = [(name, warm_start[0], str(root), SEED, STEPS, EVAL_EPISODES, CRITIC_EPISODES)
            for name in segment_runs.TRAINERS]
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        reports = dict(zip(segment_runs.TRAINERS, pool.map(segment_runs.train_and_measure, jobs)))
    print(json.dumps({"warm_start": warm_start[1], **reports}))  # the figures of the docstring (pytest -s)
    return reports


def rises(before: dict, after: dict) -> bool:
    return after["success"] >= before["success"] + RISE


def critic_explains(after: dict) -> bool:
    """The low and high heads each explain EXPLAINED of their targets' variance. The termination
    head is not asked: in STEPS steps it explained 0.05 to 0.19 of its targets (with shuffled
    targets, 0.02), too close to nothing to guard anything."""
    shares = after["explained_variance"]
    return all(shares[head] is not None and shares[head] >= EXPLAINED for head in ("low", "high"))


def plans_improve(before: dict, after: dict) -> bool:
    return after["plan_errors"] <= PLAN_ERRORS * before["plan_errors"]


def test_the_warm_start_errs_in_its_plans(warm_start):
    _, before = warm_start
    assert before["plan_errors"] >= 0.15 and before["success"] <= 1 - RISE, before


def test_hae_learns_with_every_part_doing_its_job(warm_start, runs):
    _, before = warm_start
    after = runs["hae"]
    assert rises(before, after), (before, after)
    assert critic_explains(after), after["explained_variance"]
    assert plans_improve(before, after), (before, after)


def test_negated_advantages_fail_the_success_assertion(warm_start, runs):
    _, before = warm_start
    assert not rises(before, runs["negated"]), (before, runs["negated"])


def test_shuffled_value_targets_fail_the_critic_assertion(runs):
    assert not critic_explains(runs["shuffled"]), runs["shuffled"]["explained_variance"]


def test_a_zeroed_segment_level_fails_the_planning_assertion(warm_start, runs):
    _, before = warm_start
    assert not plans_improve(before, runs["segment_zeroed"]), (before, runs["segment_zeroed"])
