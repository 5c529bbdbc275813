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
A longer game, `--game-params doors=K` (K = 1 to 9): K locked doors before the chest, one hall
each, a key on every hall's table that opens that hall's door (or the chest, in the last hall).
Each hall is one subgoal ("get through door 2", then "open the chest") and two turns (take the
key, open), so a win is K + 1 segments of two turns, 2K + 2 turns in all (`--max-turns` above
that leaves turns to waste). `key_reward=R` sets the reward for taking a key (5 by default; 0 makes the game's
only reward the 10 for opening the chest: sparse and delayed). The admissible actions add "open
door" and come in any of 24 orders.

The expert (`expert_turn`) names the subgoal of the current stage and its right action, for
`hiper sft`:

    hiper sft --env keychest --tiny-model --episodes 200 --expert-noise 0.5 --out runs/keychest-sft
    hiper train --env keychest --model runs/keychest-sft --max-turns 2 ...
"""
from __future__ import annotations

import itertools
import math

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
# The game with doors (module docstring).
MAX_DOORS = 9
CORRIDOR_TASK = "go through every locked door with the key of its hall, then open the chest with the last key"
CORRIDOR_ACTIONS = ("take key", "open door", "open chest", "look around")
CORRIDOR_ORDERS = tuple(itertools.permutations(range(len(CORRIDOR_ACTIONS))))
PARAMS = {"doors": (int, "an integer"), "key_reward": (float, "a number")}  # name: (type, what it expects)


class KeyChestEnv(TextEnv):
    """One game: the room it is played in, `order` (the permutation of the admissible-action
    list it shows), and its `doors` (0: the two-turn game) and `key_reward`."""

    name = "keychest"

    def __init__(self, room: int = 0, order: int = 0, max_steps: int = 4, doors: int = 0,
                 key_reward: float = KEY_REWARD):
        super().__init__(max_steps)
        if not isinstance(doors, int) or not 0 <= doors <= MAX_DOORS:
            raise ValueError(f"doors: expected an integer from 0 to {MAX_DOORS}, got {doors!r}")
        actions, orders = (CORRIDOR_ACTIONS, CORRIDOR_ORDERS) if doors else (ACTIONS, ORDERS)
        if not 0 <= order < len(orders):
            raise ValueError(f"order: expected 0 to {len(orders) - 1}, got {order!r}")
        self.room, self.order, self.doors, self.key_reward = int(room), order, doors, float(key_reward)
        self.actions = [actions[k] for k in orders[order]]
        self.task = CORRIDOR_TASK if doors else TASK
        self.hall, self.has_key = 0, False

    def describe(self) -> str:
        doors = f", {self.doors} doors" if self.doors else ""
        return f"keychest:room {self.room}, order {self.order}{doors}"

    def _observation(self, prefix: str = "") -> Observation:
        if not self.doors:
            state = KEY_IN_HAND if self.has_key else KEY_ON_TABLE
            return Observation(f"{prefix}You are in room {self.room}. {state}", TASK, list(self.actions))
        lock = "The door is locked." if self.hall < self.doors else "The chest is locked."
        holding = "You hold the key." if self.has_key else "A key lies on the table."
        where = f"You are in room {self.room}, hall {self.hall + 1} of {self.doors + 1}."
        return Observation(f"{prefix}{where} {holding} {lock}", self.task, list(self.actions))

    def _reset(self, seed):
        self.hall, self.has_key = 0, False
        return self._observation()

    def _step(self, action):
        if action == "take key" and not self.has_key:
            self.has_key = True
            return Step(self._observation("You take the key. "), self.key_reward, False, {"won": False})
        if action == "open door" and self.has_key and self.hall < self.doors:
            self.hall, self.has_key = self.hall + 1, False  # the key stays in its door
            return Step(self._observation("The door opens and you walk through. "), 0.0, False, {"won": False})
        if action == "open chest" and self.has_key and self.hall == self.doors:
            return Step(Observation("The chest opens.", self.task, list(self.actions)), WIN_REWARD, True,
                        {"won": True})
        return Step(self._observation("Nothing happens. "), 0.0, False, {"won": False})

    def expert_turn(self) -> tuple[str, str]:
        if not self.doors:
            return STAGES[self.has_key]
        last = self.hall == self.doors
        subgoal = "open the chest" if last else f"get through door {self.hall + 1}"
        return subgoal, ("open chest" if last else "open door") if self.has_key else "take key"

    def expert_mistakes(self) -> list[tuple[str, str]]:
        """The planning errors of the demonstrations' plan_noise, each of which wastes the turn:
        before the last hall, heading for the chest too early or looking for another way round
        the door; in the two-turn game, the other stage's plan. Two errors, not one, so that a
        policy fine-tuned on them still ranks the right sub-goal first while it picks a wrong one
        often (a single error made half the time is a coin flip that sampling at a low
        temperature turns into always or never)."""
        if not self.doors:
            return [STAGES[not self.has_key]]
        if self.hall == self.doors or self.has_key:
            return []
        return [("open the chest", "open chest"), ("look for another way", "look around")]


def parse_params(text: str | None) -> dict:
    """{"doors": K, "key_reward": R} of a game-params string "doors=3,key_reward=0" (either may
    be left out); an unknown name or a bad value is refused in one line naming it."""
    params = {"doors": 0, "key_reward": KEY_REWARD}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in PARAMS:
            raise ValueError(f"game_params: keychest takes {', '.join(PARAMS)}; got {name!r}")
        kind, expected = PARAMS[name]
        try:
            params[name] = kind(value.strip())
        except ValueError:
            raise ValueError(f"game_params: {name} expects {expected}, got {value.strip()!r}") from None
    if not 0 <= params["doors"] <= MAX_DOORS:
        raise ValueError(f"game_params: doors expects 0 to {MAX_DOORS}, got {params['doors']}")
    if not math.isfinite(params["key_reward"]):
        raise ValueError(f"game_params: key_reward expects a finite number, got {params['key_reward']}")
    return params


def game(room: int, order: int, doors: int = 0, key_reward: float = KEY_REWARD) -> EnvSpec:
    kwargs = {"factory": "hiper.envs.keychest:KeyChestEnv", "room": room, "order": order}
    if doors:  # the two-turn game's specs stay as they were
        kwargs.update(doors=doors, key_reward=key_reward)
    elif key_reward != KEY_REWARD:
        kwargs.update(key_reward=key_reward)
    return EnvSpec("custom", kwargs)


def games(split: str, params: str | None = None) -> list[EnvSpec]:
    p = parse_params(params)
    orders = CORRIDOR_ORDERS if p["doors"] else ORDERS
    return [game(room, order, **p) for order in range(len(orders)) for room in SPLITS[split]]
