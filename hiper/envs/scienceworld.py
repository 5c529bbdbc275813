"""ScienceWorld (Java): long-horizon science tasks with subtask scores.

`info["score"]` is the task's 0-100 progress score (subtasks completed), the reward of a step
its increase, and `info["won"]` is set when the task is completed (score 100). The
admissible actions are ScienceWorld's valid action-object combinations for the state; they
can run into the thousands once the agent holds things, so the observation lists at most
`max_listed_actions` of them (any valid command still works; `info["num_valid_actions"]`
says how many there were).

The expert (`expert_turn`) is the task's gold path, followed by position, with sub-goals from
`hiper.envs.scienceworld_expert`. ScienceWorld cannot re-plan: after an action off the path
(other than one that only looks, such as "look around") `expert_turn` raises ExpertError. The
gold path's commands are valid, but need not be among the listed actions (the list is cut, and
the path also answers ScienceWorld's "which one?" questions with a number).
"""
from __future__ import annotations

from hiper.envs.base import DEFAULT_MAX_STEPS, ExpertError, Observation, Step, TextEnv


SPLITS = ("train", "dev", "test")


def variations(task: str, split: str) -> list[int]:
    """The variations of `task` in ScienceWorld's own train / dev / test lists (disjoint).

    Asking needs the Java simulator (seconds), so the lists of every task are read once and
    cached in $HIPER_CACHE/scienceworld/variations-<version>.json."""
    import json
    from importlib.metadata import version

    from hiper.files import cache_file, replace_json

    if split not in SPLITS:
        raise ValueError(f"split: ScienceWorld has the splits {', '.join(SPLITS)}; got {split!r}")
    path = cache_file(f"scienceworld/variations-{version('scienceworld')}.json")
    table = json.loads(path.read_text()) if path.is_file() else {}
    if task not in table:
        table[task] = _read_variations(task)
        replace_json(path, table)
    return list(table[task][split])


def _read_variations(task: str) -> dict[str, list[int]]:
    from scienceworld import ScienceWorldEnv as Backend

    env = Backend("", envStepLimit=10)
    try:
        names = list(env.get_task_names())
        if task not in names:
            raise ValueError(f"tasks: unknown ScienceWorld task {task!r}; expected one of {', '.join(names)}")
        env.load(task, 0, "easy")
        return {"train": env.get_variations_train(), "dev": env.get_variations_dev(),
                "test": env.get_variations_test()}
    finally:
        env.close()


def task_names() -> list[str]:
    from scienceworld import ScienceWorldEnv

    env = ScienceWorldEnv("", envStepLimit=10)
    try:
        return list(env.get_task_names())
    finally:
        env.close()


class ScienceWorldEnv(TextEnv):
    name = "scienceworld"
    # Its admissible list is the first `max_listed_actions` of ~1,000 valid commands; more are accepted.
    lists_every_action = False

    def __init__(self, task: str = "boil", variation: int = 0, simplification: str = "easy",
                 max_steps: int = DEFAULT_MAX_STEPS, max_listed_actions: int = 60):
        super().__init__(max_steps)
        self.max_listed_actions = max_listed_actions
        self.task, self.variation, self.simplification = task, variation, simplification
        self._env = None
        self._score = 0
        self._gold: list[str] = []
        self._gold_subgoals: list[str] = []
        self._gold_done = 0          # how many gold actions the episode has taken, in order
        self._off_path: str | None = None  # the first action that left the gold path

    def describe(self) -> str:
        return f"scienceworld:{self.task}#{self.variation}"

    def gold_actions(self) -> list[str]:
        return list(self._env.get_gold_action_sequence())

    def _reset(self, seed: int | None) -> Observation:
        from scienceworld import ScienceWorldEnv as Backend

        if self._env is None:
            self._env = Backend("", envStepLimit=self.max_steps + 1)
        self._env.load(self.task, self.variation, self.simplification, generateGoldPath=True)
        obs, info = self._env.reset()
        self._score = 0
        self._gold, self._gold_subgoals, self._gold_done, self._off_path = self.gold_actions(), [], 0, None
        self._task_text = self._env.get_task_description()
        return Observation(obs.strip(), self._task_text, list(info["valid"])[: self.max_listed_actions])

    def _step(self, action: str) -> Step:
        from hiper.envs.scienceworld_expert import only_looks

        if self._off_path is None:  # where the episode stands on the gold path, for the expert
            if self._gold_done < len(self._gold) and action == self._gold[self._gold_done]:
                self._gold_done += 1
            elif not only_looks(action):
                self._off_path = action
        obs, _, done, info = self._env.step(action)
        score = max(int(info["score"]), 0)
        reward = float(score - self._score)
        self._score = score
        won = score >= 100
        observation = Observation(obs.strip(), self._task_text, list(info["valid"])[: self.max_listed_actions])
        return Step(observation, reward, bool(done) or won,
                    {"won": won, "score": score, "max_score": 100, "num_valid_actions": len(info["valid"])})

    def expert_turn(self) -> tuple[str, str]:
        from hiper.envs.scienceworld_expert import gold_subgoals

        if self._env is None:
            raise RuntimeError(f"{self.describe()}: reset() the environment before asking its expert")
        if self._off_path is not None:
            raise ExpertError(f"{self.describe()}: the gold path cannot recover from {self._off_path!r} "
                              "(ScienceWorld has no planner to re-plan from here)")
        if not self._gold_subgoals:
            self._gold_subgoals = gold_subgoals(self._gold)
        if self._gold_done >= len(self._gold):
            raise ExpertError(f"{self.describe()}: the gold path is used up and the task is not done")
        return self._gold_subgoals[self._gold_done], self._gold[self._gold_done]

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
