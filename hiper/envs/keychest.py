"""Key and chest: a two-subgoal text game small enough for a tiny model to learn in minutes.

It is hiper's sanity environment, what CartPole is to control: a loop that cannot learn this has
a bug. Take the key, then open the chest:

    observation                                       right action   reward
    "A key lies on the table. The chest is locked."   take key       5
    "You hold the key. The chest is locked."          open chest     10, won, done

Every other admissible action wastes the turn and leaves the state (and the observation's
description of it) as it was, so the observation always says which subgoal is current. Two
turns are enough to win.

A game is a room number (named in every observation) and one order of the admissible-action
list (3 actions, 6 orders). Rooms run from 100 to 299; the test split holds every fifth (100,
105, ...), the train split the others, each with every order, so evaluation plays rooms training
never showed, written like the ones it did. (A tiny model does not carry its training over to
action orders it never saw, since it learns where the right action is listed, nor entirely to
room numbers of another length.)
The expert (`expert_turn`) names the subgoal of the current stage and its right action, for
`hiper sft`:

    hiper sft --env keychest --tiny-model --episodes 200 --expert-noise 0.5 --out runs/keychest-sft
    hiper train --env keychest --model runs/keychest-sft --max-turns 2 ...
"""
from __future__ import annotations

import itertools

from hiper.envs.base import Observation, Step, TextEnv
from hiper.envs.spec import EnvSpec

TASK = "take the key, then open the chest with it"
ACTIONS = ("take key", "open chest", "look around")
ORDERS = tuple(itertools.permutations(range(len(ACTIONS))))
SPLITS = {"train": [room for room in range(100, 300) if room % 5], "test": list(range(100, 300, 5))}
KEY_ON_TABLE = "A key lies on the table. The chest is locked."
KEY_IN_HAND = "You hold the key. The chest is locked."
KEY_REWARD, WIN_REWARD = 5.0, 10.0
# (subgoal, right action) of each stage: before and after the key is taken.
STAGES = {False: ("find the key", "take key"), True: ("open the chest", "open chest")}
ROLE = "You are an expert agent in a small room with a locked chest."


class KeyChestEnv(TextEnv):
    """One game: the room it is played in, and `order` (0-5), the permutation of the
    admissible-action list it shows."""

    name = "keychest"

    def __init__(self, room: int = 0, order: int = 0, max_steps: int = 4):
        super().__init__(max_steps)
        if not 0 <= order < len(ORDERS):
            raise ValueError(f"order: expected 0 to {len(ORDERS) - 1}, got {order!r}")
        self.room, self.order = int(room), order
        self.actions = [ACTIONS[k] for k in ORDERS[order]]
        self.has_key = False

    def describe(self) -> str:
        return f"keychest:room {self.room}, order {self.order}"

    def _observation(self, prefix: str = "") -> Observation:
        state = KEY_IN_HAND if self.has_key else KEY_ON_TABLE
        return Observation(f"{prefix}You are in room {self.room}. {state}", TASK, list(self.actions))

    def _reset(self, seed):
        self.has_key = False
        return self._observation()

    def _step(self, action):
        if action == "take key" and not self.has_key:
            self.has_key = True
            return Step(self._observation("You take the key. "), KEY_REWARD, False, {"won": False})
        if action == "open chest" and self.has_key:
            return Step(Observation("The chest opens.", TASK, list(self.actions)), WIN_REWARD, True, {"won": True})
        return Step(self._observation("Nothing happens. "), 0.0, False, {"won": False})

    def expert_turn(self) -> tuple[str, str]:
        return STAGES[self.has_key]


def game(room: int, order: int) -> EnvSpec:
    return EnvSpec("custom", {"factory": "hiper.envs.keychest:KeyChestEnv", "room": room, "order": order})


def games(split: str) -> list[EnvSpec]:
    return [game(room, order) for order in range(len(ORDERS)) for room in SPLITS[split]]
