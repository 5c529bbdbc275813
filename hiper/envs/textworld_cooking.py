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

from hiper.envs.base import DEFAULT_MAX_STEPS, Observation, Step, TextEnv


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
    """A TextWorld game file (.z8 / .ulx). `walkthrough()` gives the winning command list."""

    name = "textworld"

    def __init__(self, game_file: str | os.PathLike, max_steps: int = DEFAULT_MAX_STEPS):
        super().__init__(max_steps)
        self.game_file = Path(game_file)
        if not self.game_file.is_file():
            raise FileNotFoundError(f"TextWorld game not found: {self.game_file}")
        self._env = None
        self._task = ""
        self._score = 0

    @classmethod
    def cooking(cls, game: CookingGame = CookingGame(), max_steps: int = DEFAULT_MAX_STEPS) -> "TextWorldEnv":
        return cls(generate(game), max_steps)

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
        import textworld

        with warnings.catch_warnings():
            # Jericho cannot detect score changes in generated games; TextWorld tracks the
            # score from its own game state, so the warning does not apply here.
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            if self._env is None:
                infos = textworld.EnvInfos(admissible_commands=True, won=True, lost=True, score=True,
                                           max_score=True, objective=True)
                self._env = textworld.start(str(self.game_file), request_infos=infos)
            state = self._env.reset()
        self._task = (state["objective"] or "").strip()
        self._score = 0
        self.max_score = state["max_score"]
        return self._observation(state)

    def _step(self, action: str) -> Step:
        state, score, done = self._env.step(action)
        reward = float(score - self._score)
        self._score = score
        info = {"won": bool(state["won"]), "lost": bool(state["lost"]), "score": score,
                "max_score": state["max_score"]}
        return Step(self._observation(state), reward, bool(done), info)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
