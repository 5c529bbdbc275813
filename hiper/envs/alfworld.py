"""ALFWorld (text engine): the paper's benchmark.

Games are `game.tw-pddl` files under `<data>/json_2.1.1/<split>/<task folder>/<trial>/`. The
data root is the `data` argument (a directory holding json_2.1.1/, or "sample" for the small
sample shipped with hiper: one game per task type of the train and valid_unseen splits), else
`$ALFWORLD_DATA`. Nothing falls back to the sample silently: with neither, `resolve_data` says
how to unpack the full data (`hiper prepare-data ARCHIVE DEST`, which calls
`prepare_data(archive, dest)`, or ALFWorld's own `alfworld-download`).

Reward: 10 on the step that reaches the goal (`info["won"]`), else 0 (docs/semantics.md §2.5). The task type of every game
(pick_and_place_simple, look_at_obj_in_light, ...) is read from its folder name, so success
can be reported per type.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

from hiper.envs.base import DEFAULT_MAX_STEPS, ExpertError, Observation, Step, TextEnv

SPLITS = ("train", "valid_seen", "valid_unseen", "valid_train")
TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
              "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place",
              "pick_and_place_with_movable_recep")
SAMPLE_ROOT = Path(__file__).parent / "data" / "alfworld_sample"
_TASK_PREFIX = "Your task is to: "
WIN_REWARD = 10.0  # the reward of the winning step, as in the HiPER setup (docs/semantics.md §2.5)


def _auto_default() -> Path:
    """Where importing the alfworld package points ALFWORLD_DATA when it is unset (whether or
    not anything was downloaded there): not a choice the user made."""
    return (Path.home() / ".cache" / "alfworld").resolve()


def resolve_data(data: str | os.PathLike | None = None) -> Path:
    """The directory holding json_2.1.1/: `data` ("sample": the packaged sample), else
    $ALFWORLD_DATA. Raises FileNotFoundError naming what was looked at, and how to get the data."""
    if data is not None and str(data) == "sample":
        return SAMPLE_ROOT
    if data is not None and str(data) != "":
        root, name = Path(data), f"data: {data}"
    else:
        env = os.environ.get("ALFWORLD_DATA")
        if not env or (Path(env).resolve() == _auto_default() and not (Path(env) / "json_2.1.1").is_dir()):
            raise FileNotFoundError(
                "ALFWORLD_DATA: not set. Unpack ALFWorld's game files with `hiper prepare-data ARCHIVE DEST` "
                "(ARCHIVE: e.g. alfworld_tw-pddl_all_splits.tar.xz) and export the ALFWORLD_DATA it prints, or "
                "choose hiper's 12 packaged sample games explicitly with --data sample")
        root, name = Path(env), f"ALFWORLD_DATA: {env}"
    if not (root / "json_2.1.1").is_dir():
        raise FileNotFoundError(f"{name} holds no json_2.1.1/ directory (point it at the directory that "
                                "`hiper prepare-data` printed, or use --data sample)")
    return root


def task_type_of(game_file: str | os.PathLike) -> str:
    """The task type, from the task folder `<task_type>-<Object>-<MovableRecep>-<Target>-<scene>`."""
    return Path(game_file).parent.parent.name.split("-")[0]


def traj_data_for(task_folder: str) -> dict:
    """The `traj_data.json` fields ALFWorld's hand-coded expert reads, rebuilt from the task
    folder's name (the game files alone do not carry them)."""
    task_type, obj, mrecep, target, _scene = task_folder.split("-")
    sliced = obj.endswith("Sliced")
    look = task_type == "look_at_obj_in_light"
    return {"task_type": task_type,
            "pddl_params": {"object_target": obj[: -len("Sliced")] if sliced else obj, "object_sliced": sliced,
                            "mrecep_target": "" if mrecep == "None" else mrecep,
                            "parent_target": "" if look else target, "toggle_target": target if look else ""}}


def prepare_data(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpacks an archive of ALFWorld game files (`.tar.xz` with `alfworld/json_2.1.1/...`)
    into `dest` and writes the `traj_data.json` the expert needs beside every game. Returns
    the data root to use as `ALFWORLD_DATA`. Does nothing when already prepared."""
    dest = Path(dest)
    root = dest / "alfworld"
    marker = root / ".hiper-prepared"
    if marker.is_file():
        return root
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    for game in root.glob("json_2.1.1/*/*/*/game.tw-pddl"):
        traj = game.parent / "traj_data.json"
        if not traj.is_file():
            traj.write_text(json.dumps(traj_data_for(game.parent.parent.name)))
    marker.write_text("ok\n")
    return root


def list_games(split: str = "valid_unseen", root: str | os.PathLike | None = None,
               task_types: tuple[str, ...] | None = None) -> list[Path]:
    """Sorted game files of a split under `root` (see `resolve_data`). Raises FileNotFoundError
    saying where it looked."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    base = resolve_data(root)
    games = sorted((base / "json_2.1.1" / split).glob("*/*/game.tw-pddl"))
    if task_types is not None:
        unknown = sorted(set(task_types) - set(TASK_TYPES))
        if unknown:
            raise ValueError(f"tasks: unknown ALFWorld task types {unknown}; expected some of {', '.join(TASK_TYPES)}")
        games = [g for g in games if task_type_of(g) in task_types]
    if not games:
        sample = " (hiper's sample holds a few train and valid_unseen games only)" if base == SAMPLE_ROOT else ""
        raise FileNotFoundError(
            f"no ALFWorld games for split {split!r} under {base / 'json_2.1.1' / split}{sample}. Set ALFWORLD_DATA "
            "to the directory holding json_2.1.1/ (ALFWorld's download, or `hiper prepare-data ARCHIVE DEST` on an "
            "archive of the game files)")
    return games


class AlfworldEnv(TextEnv):
    """One ALFWorld game. Its expert is ALFWorld's hand-coded one (see `hiper.envs.alfworld_expert`):
    `expert_turn()` gives its (subgoal, action). `expert=True` runs it from the start and adds its
    next action to every step's info (`info["expert_action"]`); otherwise the first `expert_turn()`
    starts it and lets it follow the episode so far (kept for that: the game states it saw)."""

    name = "alfworld"

    def __init__(self, game_file: str | os.PathLike, max_steps: int = DEFAULT_MAX_STEPS, expert: bool = False):
        super().__init__(max_steps)
        self.game_file = Path(game_file)
        if not self.game_file.is_file():
            raise FileNotFoundError(f"ALFWorld game not found: {self.game_file}")
        self.task_type = task_type_of(self.game_file)
        self.expert = expert
        self._env = None
        self._task = ""
        self._expert = None
        self._seed = 0
        self._history: list[tuple[str | None, object]] = []  # (action, state after it), for a late expert

    def describe(self) -> str:
        return f"alfworld:{self.game_file.parent.parent.name}/{self.game_file.parent.name}"

    def _make(self):
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        # The expert reads the game's facts ("holds agent apple 1", "ishot apple 1"); asking for
        # them costs no measurable time, so they are there should an expert start late.
        infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=True, extras=["gamefile"])
        return textworld.start(str(self.game_file), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])

    def _observation(self, state) -> Observation:
        actions = [a for a in state["admissible_commands"] if a != "help"]
        return Observation(state["feedback"].strip(), self._task, actions)

    def _info(self, state) -> dict:
        info = {"won": bool(state["won"]), "task_type": self.task_type}
        if self._expert is not None:
            info["expert_action"] = self._expert.action
        return info

    def _reset(self, seed: int | None) -> Observation:
        if self._env is None:
            self._env = self._make()
            if self.expert:
                self._expert = self._new_expert()
        state = self._env.reset()
        # The expert's own random choices (which of two apples) follow the episode's seed.
        self._seed = 0 if seed is None else seed
        self._history = [(None, state)] if self._expert is None else []
        if self._expert is not None:
            self._expert.start(state, self._seed)
        text = state["feedback"]
        match = re.search(re.escape(_TASK_PREFIX) + r"(.*)", text)
        self._task = match.group(1).strip() if match else ""
        self.last_info = self._info(state)
        return self._observation(state)

    def _step(self, action: str) -> Step:
        state, _, done = self._env.step(action)
        if self._expert is not None:
            self._expert.observe(state, action)
        else:
            self._history.append((action, state))
        info = self._info(state)
        self.last_info = info
        return Step(self._observation(state), WIN_REWARD if info["won"] else 0.0, bool(done) or info["won"], info)

    def _new_expert(self):
        from hiper.envs.alfworld_expert import HandCodedExpert

        return HandCodedExpert(self.game_file)

    def expert_turn(self) -> tuple[str, str]:
        if self._env is None:
            raise RuntimeError(f"{self.describe()}: reset() the environment before asking its expert")
        if self._expert is None:
            # A late start: the expert follows the episode from its first state, as if it had been there.
            self._expert = self._new_expert()
            (_, first), *steps = self._history
            self._expert.start(first, self._seed)
            for action, state in steps:
                self._expert.observe(state, action)
            self._history = []
        if self._expert.action is None:
            raise ExpertError(f"{self.describe()}: {self._expert.failure}")
        return self._expert.subgoal, self._expert.action

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
