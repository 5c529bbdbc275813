"""What a run of the study depends on: the grid, the sampling budget, the learning runs."""
from __future__ import annotations

from dataclasses import dataclass

from hiper.studies.credit.estimators import ESTIMATORS
from hiper.studies.credit.task import ChainTask


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run of the study depends on (written into the JSON)."""

    subtasks: tuple[int, ...] = (2, 3, 4)
    horizons: tuple[int, ...] = (10, 20, 40, 80)
    steps: int = 2
    actions: int = 5
    slip: float = 0.2
    target_success: float = 0.5
    skill: float | None = None
    batches: int = 2000
    batch_size: int = 32
    group_size: int = 8
    critic_noise: float = 0.05
    estimators: tuple[str, ...] = tuple(ESTIMATORS)
    seeds: int = 10
    iterations: int = 200
    lr: float = 0.01
    learn_subtasks: int = 4
    learn_horizon: int = 40
    learn_skill: float = 0.5
    seed: int = 0

    def __post_init__(self):
        for name in ("batches", "batch_size", "group_size", "seeds", "iterations", "steps", "actions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.batches < 2:
            raise ValueError(f"batches: expected at least 2 (variance needs two estimates), got {self.batches}")
        if self.batch_size % self.group_size:
            raise ValueError(f"group_size: {self.group_size} must divide batch_size {self.batch_size} "
                             "(a batch is whole GRPO groups)")
        unknown = sorted(set(self.estimators) - set(ESTIMATORS))
        if unknown or not self.estimators:
            raise ValueError(f"estimators: expected some of {list(ESTIMATORS)}, got {list(self.estimators)}")
        if not self.subtasks or not self.horizons:
            raise ValueError("subtasks and horizons: expected at least one value each")
        if self.critic_noise < 0:
            raise ValueError(f"critic_noise: expected >= 0, got {self.critic_noise}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if not 0.0 < self.target_success < 1.0:
            raise ValueError(f"target_success: expected a probability in (0, 1), got {self.target_success}")
        for k in (*self.subtasks, self.learn_subtasks):
            for h in (*self.horizons, self.learn_horizon):
                ChainTask(k, self.steps, self.actions, h, self.slip)  # raises on a bad task

    def task(self, subtasks: int, horizon: int) -> ChainTask:
        return ChainTask(subtasks, self.steps, self.actions, horizon, self.slip)


FULL = StudyConfig()
QUICK = StudyConfig(subtasks=(2,), horizons=(6, 10), batches=20, batch_size=8, group_size=4, seeds=2,
                    iterations=4, learn_subtasks=2, learn_horizon=8)
