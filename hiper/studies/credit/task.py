"""The synthetic hierarchical task: K subtasks of `steps` primitive steps, done in order.

The state is the total progress s = k * steps + p (subtask k under way, p of its steps
done). Each turn the policy makes the three decisions of HiPER's Plan-Execute format
(docs/semantics.md §2, §11): a switch decision q ~ pi_sw(. | s, o_prev) (KEEP/SWITCH; turn 0 is always a
boundary and makes no switch decision), on SWITCH and on turn 0 a subgoal o ~ pi_sg(. | s)
(on KEEP o = o_prev), and a primitive action a ~ pi_act(. | s, o). The action advances s by
one only if the subgoal is the subtask under way, the action is that step's correct one (one
of `actions`) and the step does not slip (probability `slip`); otherwise nothing happens. A
subgoal therefore goes stale when its subtask is done, and the policy has to SWITCH to the
next one. Completing the last step ends the episode with reward 1, the only reward. At turn
H the episode ends with reward 0 and done=True: a finite-horizon task, not a truncated one,
so every value is indexed by the turn t (the time left matters) and no estimator bootstraps
past the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEEP, SWITCH = 0, 1


@dataclass(frozen=True)
class ChainTask:
    """K = `subtasks` subtasks of `steps` primitive steps each, done in order within `horizon`
    turns; `actions` primitive actions, one of which advances each step; a correct step slips
    (does nothing) with probability `slip`. See the module docstring."""

    subtasks: int
    steps: int = 2
    actions: int = 5
    horizon: int = 20
    slip: float = 0.2

    def __post_init__(self):
        for name in ("subtasks", "steps", "horizon"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.actions < 2:
            raise ValueError(f"actions: expected at least 2 (one action leaves nothing to learn), got {self.actions}")
        if not 0.0 <= self.slip < 1.0:
            raise ValueError(f"slip: expected a probability in [0, 1), got {self.slip}")

    @property
    def num_states(self) -> int:
        """S: progress values 0..S-1 before success."""
        return self.subtasks * self.steps

    def needed_subgoal(self) -> np.ndarray:
        """(S,) the subgoal that makes progress at each state: the subtask under way."""
        return np.arange(self.num_states) // self.steps

    def correct_action(self) -> np.ndarray:
        """(S,) the action that advances each step. Which one is immaterial (the tables are
        indexed by the state); cycling through them keeps the action choice non-trivial."""
        return np.arange(self.num_states) % self.actions

    def advance_prob(self) -> np.ndarray:
        """(S, K, A) probability that action a under subgoal o advances state s."""
        s = np.arange(self.num_states)[:, None, None]
        o = np.arange(self.subtasks)[None, :, None]
        a = np.arange(self.actions)[None, None, :]
        right = (o == self.needed_subgoal()[s]) & (a == self.correct_action()[s])
        return right * (1.0 - self.slip)
