"""TextWorld-Express (Jansen and Cote, 2022): fast, generated text games, for long horizons.

    hiper train --env twx --tasks cookingworld --game-params rooms=1,ingredients=2
    hiper eval --checkpoint RUN --env twx --tasks cookingworld --game-params rooms=1,ingredients=2

The games run in TextWorld-Express's Java simulator (`pip install textworld-express==1.1.0`,
Java 17), one JVM per process shared by every game of that process: a game is generated on the
fly from its seed (50-500 ms) and steps in 1-2 ms. A game is (task, parameters, split, seed):

    task          what the agent does (gold turns with the defaults below)
    cookingworld  read the cookbook, gather and prepare the ingredients, cook, eat (10-17)
    twc           put objects away where they belong (5-15)
    mapreader     read the map, fetch the coin from a far room, bring it back (7-11)
    coin          explore until the coin is found, take it (2-17)
    arithmetic, sorting, simonsays, peckingorder: TWX's short instruction-following games

Splits: TWX's own seed lists, `train` (seeds 0-999), `dev` (10000-10999, evaluation during
training) and `test` (20000-20999, `hiper eval`); a split never shares a game with another.

Parameters (`--game-params`, or `game_params` in YAML): comma-separated `name=value`, in TWX's own
names (numLocations=3) or hiper's short ones:

    rooms        numLocations                 ingredients  numIngredients (cookingworld)
    items        numItemsToPutAway (twc)       distractors  numDistractorItems, or mapreader's
    doors        includeDoors (0 or 1)                      maxDistractorItemsPerLocation
    distance     maxDistanceApart (mapreader)  inventory    limitInventorySize (0 or 1)

hiper's defaults keep the games small enough for a small model: one room (cookingworld, twc),
no doors, no distractors, no inventory limit; a value given replaces its default.

Reward: sparse, as in ALFWorld: 10 on the step that completes the task (`info["won"]`), else 0.
The game's own partial score (0 to 1, the share of the task's steps done) is in `info["score"]`
and logged beside it. A game also ends when the task fails (cookingworld: eating a wrong meal,
burning an ingredient). Admissible actions are listed sorted, so the same state lists them alike,
and without TWX's "examine X" for every object in view (never needed to win, half of a kitchen's
list; the game still accepts them).

The expert (`expert_turn`, for `hiper sft --env twx`) plays TWX's gold action sequence, cut into
subgoals by `hiper.envs.twx_expert.plan_subgoals` from the actions and what the game answered.
A gold sequence holds for the game's first state only: an episode that leaves it raises
ExpertError (demonstrations are played without expert noise).
"""
from __future__ import annotations

import functools
import json
import threading

from hiper.envs.base import DEFAULT_MAX_STEPS, ExpertError, Observation, Step, TextEnv
from hiper.envs.spec import EnvSpec

TASKS = ("cookingworld", "twc", "mapreader", "coin", "arithmetic", "sorting", "simonsays", "peckingorder")
SPLITS = {"train": range(0, 1000), "dev": range(10_000, 11_000), "test": range(20_000, 21_000)}
WIN_REWARD = 10.0
ROLE = "You are an expert agent playing a text game in a house."

# hiper's short parameter names -> TWX's, per task (a name a task does not know is refused).
_SHORT_NAMES = {"rooms": "numLocations", "ingredients": "numIngredients", "items": "numItemsToPutAway",
                "distractors": "numDistractorItems", "doors": "includeDoors", "distance": "maxDistanceApart",
                "inventory": "limitInventorySize"}
# Each task's parameters, with hiper's defaults (None: TWX's own default).
PARAMETERS: dict[str, dict[str, int | None]] = {
    "cookingworld": {"numLocations": 1, "numIngredients": 2, "numDistractorItems": 0, "includeDoors": 0,
                     "limitInventorySize": 0},
    "twc": {"numLocations": 1, "numItemsToPutAway": 2, "includeDoors": 0, "limitInventorySize": 0},
    "mapreader": {"numLocations": 6, "maxDistanceApart": 3, "maxDistractorItemsPerLocation": 0,
                  "includeDoors": 0, "limitInventorySize": 0},
    "coin": {"numLocations": 3, "numDistractorItems": 0, "includeDoors": 0, "limitInventorySize": 0},
    "arithmetic": {}, "sorting": {}, "simonsays": {}, "peckingorder": {},
}
_FLAGS = ("includeDoors", "limitInventorySize")  # 0 or 1


def parse_params(task: str, text: str | None) -> str:
    """TWX's parameter string for `task`: hiper's defaults updated by `text` ("rooms=2,doors=1"),
    with every name checked against the task's parameters (ValueError naming the bad one)."""
    if task not in TASKS:
        raise ValueError(f"tasks: TextWorld-Express has the tasks {', '.join(TASKS)}; got {task!r}")
    values = dict(PARAMETERS[task])
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        name = _SHORT_NAMES.get(name, name)
        if task == "mapreader" and name == "numDistractorItems":
            name = "maxDistractorItemsPerLocation"
        if not sep or name not in values:
            known = sorted({short for short, long in _SHORT_NAMES.items() if long in values} | set(values))
            raise ValueError(f"game_params: {task} takes {', '.join(known) or 'no parameters'} as name=value; "
                             f"got {item.strip()!r}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"game_params: {name} must be an integer, got {value!r}") from None
        if number < 0 or (name in _FLAGS and number > 1) or (name == "numLocations" and number < 1):
            raise ValueError(f"game_params: {name} out of range, got {number}")
        values[name] = number
    return ",".join(f"{name}={value}" for name, value in values.items() if value is not None)


# ---------------------------------------------------------------------------------------------
# One JVM per process
# ---------------------------------------------------------------------------------------------

_jvm_lock = threading.Lock()
_jvm = None  # the TextWorldExpressEnv that owns this process's JVM; games get interfaces of their own on it


def _new_game_interface():
    """A fresh game simulator (TWX's PythonInterface) in this process's shared JVM, started on
    first use (about a second); the JVM ends with the process."""
    global _jvm
    with _jvm_lock:
        if _jvm is None:
            import shutil

            try:
                from textworld_express import TextWorldExpressEnv
            except ImportError as exc:
                raise ImportError("env: twx needs TextWorld-Express: pip install textworld-express==1.1.0 "
                                  "(and Java 17)") from exc
            if shutil.which("java") is None:
                raise FileNotFoundError("env: twx needs Java (17 or newer) on PATH to run TextWorld-Express")
            _jvm = TextWorldExpressEnv()
        return _jvm._gateway.jvm.textworldexpress.runtime.PythonInterface()


class TwxEnv(TextEnv):
    """One TextWorld-Express game: `task` with its parameter string `params` (parse_params's
    form), generated from `seed` of split `split`. The spec names the game completely: reset's
    seed argument is not used (a game plays the same every time it is reset)."""

    name = "twx"

    def __init__(self, task: str, seed: int, split: str = "train", params: str | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS, expert: bool = False):
        super().__init__(max_steps)
        if split not in SPLITS:
            raise ValueError(f"split: TextWorld-Express has the splits {', '.join(SPLITS)}; got {split!r}")
        self.task_name, self.seed, self.split = task, int(seed), split
        self.params = parse_params(task, params)
        self.expert = expert
        self._game = None
        self._plan: list[tuple[str, str]] = []   # (subgoal, gold action) per gold turn
        self._on_path = True                      # every action so far was the gold one
        self._task_text = ""

    def describe(self) -> str:
        return f"twx:{self.task_name} {self.split} seed {self.seed} ({self.params})"

    def _answer(self, text: str) -> dict:
        return json.loads(text)

    def _observation(self, answer: dict, text: str | None = None) -> Observation:
        # "examine X" for every object in view is half of a kitchen's list and never needed to win:
        # left out of the list (the game still accepts it), the prompt is ~100 tokens shorter.
        actions = sorted(a for a in set(answer["validActions"]) if not a.startswith("examine "))
        return Observation((text if text is not None else answer["observation"]).strip(), self._task_text, actions)

    def _reset(self, seed):
        if self._game is None:
            self._game = _new_game_interface()
            self._game.load(self.task_name, self.params)
        answer = self._answer(self._game.generateNewGameJSON(self.seed, self.split, self.expert))
        self._task_text = str(self._game.getTaskDescription()).strip()
        self._on_path, self._plan = True, []
        if self.expert:
            from hiper.envs.twx_expert import plan_subgoals

            gold = [str(a) for a in self._game.getGoldActionSequence()]
            self._plan = plan_subgoals(self._replay(gold))
            # The replay played the game on: generate it afresh (same seed, same game).
            answer = self._answer(self._game.generateNewGameJSON(self.seed, self.split, True))
        return self._observation(answer)

    def _replay(self, actions: list[str]) -> list[tuple[str, str]]:
        """(action, the game's answer) of each action played from the current state."""
        return [(action, self._answer(self._game.stepJSON(action))["observation"].strip()) for action in actions]

    def _step(self, action):
        if self._game is None:
            raise RuntimeError(f"{self.describe()}: step before reset")
        turn = self.steps - 1
        if self._on_path and (turn >= len(self._plan) or action != self._plan[turn][1]):
            self._on_path = False
        answer = self._answer(self._game.stepJSON(action))
        won = bool(answer["tasksuccess"])
        done = won or bool(answer["taskfailure"])
        info = {"won": won, "score": float(answer["score"]), "failed": bool(answer["taskfailure"])}
        return Step(self._observation(answer), WIN_REWARD if won else 0.0, done, info)

    def expert_turn(self) -> tuple[str, str]:
        if not self.expert:
            raise ExpertError(f"{self.describe()}: built without its expert (expert=True)")
        if not self._on_path:
            raise ExpertError(f"{self.describe()}: the episode left the gold path; TWX's expert cannot re-plan")
        if self.steps >= len(self._plan):
            raise ExpertError(f"{self.describe()}: the gold path is played out")
        return self._plan[self.steps]

    def close(self) -> None:
        self._game = None  # the JVM object is released with the last reference; the JVM stays for the next game


@functools.lru_cache(maxsize=None)
def check_params_with_the_game(task: str, resolved: str) -> None:
    """TextWorld-Express's own limits (e.g. twc puts away at most 4 items in one room): its game
    generator refuses a parameter set with a message, checked once per (task, parameters) so a
    bad one fails before any model is built, not at the first reset."""
    refusal = str(_new_game_interface().load(task, resolved) or "").strip()
    if refusal:
        raise ValueError(f"game_params: TextWorld-Express refuses {task} with {resolved}: {refusal}")


def games(split: str, task: str, params: str | None, max_steps: int) -> list[EnvSpec]:
    """Every game of a split for one task and parameter string, in seed order."""
    if split not in SPLITS:
        raise ValueError(f"split: TextWorld-Express has the splits {', '.join(SPLITS)}; got {split!r}")
    resolved = parse_params(task, params)
    check_params_with_the_game(task, resolved)
    return [EnvSpec("twx", {"task": task, "seed": seed, "split": split, "params": resolved, "max_steps": max_steps})
            for seed in SPLITS[split]]
