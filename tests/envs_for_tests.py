"""Small environments for the pool tests (importable by spawned worker processes)."""
import os
import time

from hiper.envs.base import Observation, Step, TextEnv


class CountingEnv(TextEnv):
    """Wins after `goal` steps of the action "inc". The action "sleep S" takes S seconds (a stuck game),
    "raise" raises and `crash_on` kills the process. Closing takes `close_seconds`."""

    name = "counting"

    def __init__(self, goal: int = 3, crash_on: str | None = None, max_steps: int = 50, close_seconds: float = 0):
        super().__init__(max_steps)
        self.goal, self.crash_on, self.close_seconds, self.count = goal, crash_on, close_seconds, 0

    def _reset(self, seed):
        self.count = 0 if seed is None else seed
        return Observation(f"count {self.count}", "count to the goal", ["inc", "noop"])

    def _step(self, action):
        if action == self.crash_on:
            os._exit(3)  # a hard crash of the worker process
        if action.startswith("sleep "):
            time.sleep(float(action.split()[1]))
        if action == "raise":
            raise RuntimeError("the environment broke")
        self.count += action == "inc"
        won = self.count >= self.goal
        return Step(Observation(f"count {self.count}", "count to the goal", ["inc", "noop"]), float(won), won,
                    {"won": won})

    def close(self):
        time.sleep(self.close_seconds)
