"""A two-subgoal text game small enough for a tiny model to learn in a test: take the key, then
open the chest.

    observation                                   right action   reward
    "A key lies on the table. The chest is..."     take key       0
    "You hold the key. The chest is locked."       open chest     10, won, done

Every other admissible action wastes the turn and leaves the state (and the observation's
description of it) as it was, so the observation always tells which subgoal is current. An
episode is capped at `max_steps` turns; two are enough.

`KEY_CHEST` is the game family (train and test splits of the same game, with the actions listed
in different orders) and `demonstrations` renders scripted episodes exactly as the rollout
prompts the policy, for a supervised warm start.
"""
from __future__ import annotations

import random

from hiper.envs import EnvSpec
from hiper.envs.base import Observation, Step, TextEnv
from hiper.envs.registry import Family

TASK = "take the key, then open the chest with it"
ACTIONS = ("take key", "open chest", "look around")
KEY_ON_TABLE = "A key lies on the table. The chest is locked."
KEY_IN_HAND = "You hold the key. The chest is locked."
WIN_REWARD = 10.0
# The subgoals a demonstration writes, and the right action under each.
SUBGOALS = {False: ("find the key", "take key"), True: ("open the chest", "open chest")}


class KeyChestEnv(TextEnv):
    """The game; `order` rotates the list of admissible actions (the games of a split differ by it)."""

    name = "key_chest"

    def __init__(self, order: int = 0, max_steps: int = 4):
        super().__init__(max_steps)
        self.actions = list(ACTIONS[order % 3:] + ACTIONS[:order % 3])
        self.has_key = False

    def _observation(self, prefix: str = "") -> Observation:
        return Observation(prefix + (KEY_IN_HAND if self.has_key else KEY_ON_TABLE), TASK, list(self.actions))

    def _reset(self, seed):
        self.has_key = False
        return self._observation()

    def _step(self, action):
        if action == "take key" and not self.has_key:
            self.has_key = True
            return Step(self._observation("You take the key. "), 0.0, False, {"won": False})
        if action == "open chest" and self.has_key:
            return Step(Observation("The chest opens.", TASK, list(self.actions)), WIN_REWARD, True, {"won": True})
        return Step(self._observation("Nothing happens. "), 0.0, False, {"won": False})


def key_chest(order: int) -> EnvSpec:
    return EnvSpec("custom", {"factory": "learning_env:KeyChestEnv", "order": order})


KEY_CHEST = Family("key_chest", {"train": [key_chest(k) for k in range(3)], "test": [key_chest(k) for k in range(3)]},
                   role="You are an expert agent in a small room with a locked chest.")


def demonstrations(tokenizer, episodes: int, right_prob: float, seed: int = 0, max_steps: int = 4,
                   history_length: int = 2) -> list[tuple[str, str]]:
    """(prompt, response) pairs of scripted episodes, rendered as the rollout renders them for
    the KEY_CHEST family. The script writes the format perfectly (SWITCH with a new subgoal when
    the stage changes, KEEP otherwise) but picks the right action only with probability
    `right_prob` (a wrong one otherwise): a policy well below the ceiling for RL to improve."""
    from hiper.format import PlanExecuteState, build_prompt, format_turn, parse_turn, render_prompt
    from hiper.rollout import RolloutConfig

    rng = random.Random(seed)
    config = RolloutConfig.for_env("learning_env:KEY_CHEST")
    end = tokenizer.eos_token
    pairs = []
    for episode in range(episodes):
        env = KeyChestEnv(order=episode % 3, max_steps=max_steps)
        observation = env.reset()
        state = PlanExecuteState(task=observation.task, history_length=history_length)
        done, stage = False, None
        while not done:
            subgoal, right = SUBGOALS[env.has_key]
            switch = "KEEP" if stage == env.has_key else "SWITCH"
            action = right if rng.random() < right_prob else rng.choice([a for a in ACTIONS if a != right])
            response = format_turn(switch, subgoal, action)
            prompt = render_prompt(tokenizer, build_prompt(state, observation.text, observation.admissible_actions,
                                                           config.env, role=config.role))
            pairs.append((prompt, response + end))
            stage = env.has_key
            state.record(observation.text, parse_turn(response))
            step = env.step(action)
            observation, done = step.observation, step.done
    return pairs
