"""The environment protocol every hiper environment follows.

    env.reset(seed) -> Observation(text, task, admissible_actions)
    env.step(action) -> Step(observation, reward, done, info)   # info["won"]: bool

Episodes end when the game says so or after `max_steps` actions (50 by default, as in the
paper); the step that hits the cap returns done=True with info["truncated"] = True.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_STEPS = 50


@dataclass
class Observation:
    text: str
    task: str
    admissible_actions: list[str]


@dataclass
class Step:
    observation: Observation
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class ExpertError(RuntimeError):
    """An environment's expert has no action for the current state: it cannot recover from an action
    it did not choose, or it gave up. A demonstration that meets it is dropped, not patched."""


class TextEnv(abc.ABC):
    """A text environment played one action at a time."""

    name: str = "text"

    def __init__(self, max_steps: int = DEFAULT_MAX_STEPS):
        if max_steps <= 0:
            raise ValueError(f"max_steps: expected a positive number, got {max_steps}")
        self.max_steps = max_steps
        self.steps = 0

    def reset(self, seed: int | None = None) -> Observation:
        self.steps = 0
        return self._reset(seed)

    def step(self, action: str) -> Step:
        if not isinstance(action, str):
            raise TypeError(f"action: expected str, got {type(action).__name__}")
        self.steps += 1
        result = self._step(action)
        result.info.setdefault("won", False)
        result.info["truncated"] = not result.done and self.steps >= self.max_steps
        result.done = result.done or result.info["truncated"]
        return result

    @abc.abstractmethod
    def _reset(self, seed: int | None) -> Observation: ...

    @abc.abstractmethod
    def _step(self, action: str) -> Step: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        """Which game this is (for error messages and logs)."""
        return self.name

    def expert_turn(self) -> tuple[str, str]:
        """What the environment's expert does now, as (subgoal, action): the natural-language
        sub-goal of the phase of its plan the next action serves, and that action (one of the
        current admissible actions). `hiper.demos` plays experts for supervised warm starts;
        SWITCH is written on the turn the subgoal changes. Raises ExpertError when the expert cannot
        go on from this state. Environments without an expert keep this default."""
        raise NotImplementedError(f"{self.describe()}: this environment has no expert to demonstrate with")

    def expert_mistakes(self) -> list[tuple[str, str]]:
        """The planning errors the expert's demonstrations may show in this state (hiper.demos,
        plan_noise), each as (subgoal, action): a wrong sub-goal and the action that pursues it, so
        that the error is in the plan and the action follows from it. Empty where the state has
        none; environments without such errors keep this default, which has none anywhere."""
        return []
