"""TextWorld cooking games, generated offline with `tw-make` (TextWorld bundles Inform7).

A game is defined by its generation parameters (number of recipe ingredients, objects to
take, rooms to go through, which preparation steps: open, cook, cut) and a seed, and is
generated once into the cache directory (`$HIPER_CACHE/textworld`), keyed by them. Each
recipe step the player completes scores a point: `info["score"]` / `info["max_score"]` are
the subtask scores, the reward of a step is the points it earned, and `info["won"]` is set
when the meal is eaten.
"""
from __future__ import annotations

import os
import subprocess
import warnings
import sys
from dataclasses import dataclass
from pathlib import Path

from hiper.envs.base import DEFAULT_MAX_STEPS, ExpertError, Observation, Step, TextEnv


@dataclass(frozen=True)
class CookingGame:
    recipe: int = 2       # ingredients in the recipe
    take: int = 1         # of them to find in the world
    go: int = 1           # rooms (1, 6, 9 or 12)
    open: bool = True     # containers and doors to open
    cook: bool = False    # ingredients to cook
    cut: bool = False     # ingredients to cut
    seed: int = 0

    def key(self) -> str:
        flags = "".join(c for c, on in (("o", self.open), ("c", self.cook), ("k", self.cut)) if on)
        return f"cooking-r{self.recipe}-t{self.take}-g{self.go}-{flags or 'x'}-s{self.seed}"


def cache_dir() -> Path:
    from hiper.models import cache_dir as hiper_cache

    return hiper_cache() / "textworld"


def generate(game: CookingGame, directory: str | os.PathLike | None = None) -> Path:
    """The game file for `game`, generated with tw-make on first use (seconds) and cached."""
    out_dir = Path(directory) if directory is not None else cache_dir()
    path = out_dir / f"{game.key()}.z8"
    if path.is_file():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    tw_make = Path(sys.executable).parent / "tw-make"
    cmd = [str(tw_make if tw_make.exists() else "tw-make"), "tw-cooking", "--recipe", str(game.recipe), "--take",
           str(game.take), "--go", str(game.go), "--seed", str(game.seed), "--output", str(path), "-f", "--silent"]
    cmd += [flag for flag, on in (("--open", game.open), ("--cook", game.cook), ("--cut", game.cut)) if on]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"tw-make failed for {game}: {done.stderr.strip()[-500:]}")
    return path


class TextWorldEnv(TextEnv):
    """A TextWorld game file (.z8 / .ulx). `walkthrough()` gives the winning command list of a fresh
    game; `expert_turn()` the expert's (subgoal, command) from the current state (see
    `hiper.envs.textworld_expert`). The expert needs TextWorld to plan at every step (about 8 ms):
    `expert=True` asks for it from the start, else the first `expert_turn()` restarts the game
    with it and replays the episode's commands."""

    name = "textworld"

    def __init__(self, game_file: str | os.PathLike, max_steps: int = DEFAULT_MAX_STEPS, expert: bool = False):
        super().__init__(max_steps)
        self.game_file = Path(game_file)
        if not self.game_file.is_file():
            raise FileNotFoundError(f"TextWorld game not found: {self.game_file}")
        self.expert = expert
        self._env = None
        self._task = ""
        self._score = 0
        self._state = None
        self._commands: list[str] = []  # this episode's, to replay when the expert starts late
        self._read_cookbook = False

    @classmethod
    def cooking(cls, game: CookingGame = CookingGame(), max_steps: int = DEFAULT_MAX_STEPS,
                expert: bool = False) -> "TextWorldEnv":
        return cls(generate(game), max_steps, expert)

    def describe(self) -> str:
        return f"textworld:{self.game_file.name}"

    def walkthrough(self) -> list[str]:
        import json

        meta = self.game_file.with_suffix(".json")
        return list(json.loads(meta.read_text())["metadata"]["walkthrough"]) if meta.is_file() else []

    def _observation(self, state) -> Observation:
        actions = [a for a in (state["admissible_commands"] or []) if a not in ("help", "look", "inventory")]
        actions += ["look", "inventory"]
        return Observation(state["feedback"].strip(), self._task, actions)

    def _reset(self, seed: int | None) -> Observation:
        with warnings.catch_warnings():
            # Jericho cannot detect score changes in generated games; TextWorld tracks the
            # score from its own game state, so the warning does not apply here.
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            if self._env is None:
                self._env = self._start()
            state = self._env.reset()
        self._task = (state["objective"] or "").strip()
        self._score = 0
        self.max_score = state["max_score"]
        self._state, self._commands, self._read_cookbook = state, [], False
        return self._observation(state)

    def _start(self):
        import textworld

        # The expert plans from TextWorld's winning commands and its facts (the map, for the cookbook).
        infos = textworld.EnvInfos(admissible_commands=True, won=True, lost=True, score=True, max_score=True,
                                   objective=True, policy_commands=self.expert, facts=self.expert)
        return textworld.start(str(self.game_file), request_infos=infos)

    def _step(self, action: str) -> Step:
        from hiper.envs.textworld_expert import READ_COOKBOOK

        self._read_cookbook |= action == READ_COOKBOOK and action in (self._state["admissible_commands"] or [])
        state, score, done = self._env.step(action)
        self._state = state
        self._commands.append(action)
        reward = float(score - self._score)
        self._score = score
        info = {"won": bool(state["won"]), "lost": bool(state["lost"]), "score": score,
                "max_score": state["max_score"]}
        return Step(self._observation(state), reward, bool(done), info)

    def expert_turn(self) -> tuple[str, str]:
        from hiper.envs.textworld_expert import cookbook_plan, subgoal_of

        if self._env is None or self._state is None:
            raise RuntimeError(f"{self.describe()}: reset() the environment before asking its expert")
        if not self.expert:
            self._start_expert()
        winning = list(self._state["policy_commands"] or [])
        if not winning:
            raise ExpertError(f"{self.describe()}: TextWorld has no winning plan from here (the game is lost)")
        plan = [] if self._read_cookbook else cookbook_plan(self._state["facts"])
        if plan and plan[0] not in self._state["admissible_commands"]:
            plan = []  # the cookbook cannot be reached or read as the map says: cook without it
        plan = plan or winning
        return subgoal_of(plan), plan[0]

    def _start_expert(self) -> None:
        """Restarts the game with the expert's information and replays this episode's commands
        (the game is deterministic)."""
        self._env.close()
        self.expert = True
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            self._env = self._start()
            self._state = self._env.reset()
        for command in self._commands:
            self._state, _, _ = self._env.step(command)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def from_spec(**kwargs) -> TextWorldEnv:
    """The environment an EnvSpec("textworld", kwargs) describes: a cooking game generated from
    kwargs["game"] (CookingGame's fields), or a game file (TextWorldEnv's arguments)."""
    if "game" in kwargs:
        game = kwargs.pop("game")
        return TextWorldEnv.cooking(CookingGame(**game), **kwargs)
    return TextWorldEnv(**kwargs)
