"""The tabular hierarchical policy: three softmax tables of logits, pi_sw over (s, o_prev),
pi_sg over s and pi_act over (s, o) (256 parameters for K = 4 with the defaults), kept as one
flat logit vector in the order of `table_shapes`. Gradients are w.r.t. these logits."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hiper.studies.credit.task import KEEP, SWITCH, ChainTask


class Policy(NamedTuple):
    """Probabilities of the tabular policy.

    switch (S, K, 2): pi_sw(q | s, o_prev), q in (KEEP, SWITCH).
    subgoal (S, K): pi_sg(o | s).
    action (S, K, A): pi_act(a | s, o).
    """

    switch: np.ndarray
    subgoal: np.ndarray
    action: np.ndarray


def table_shapes(task: ChainTask) -> tuple[tuple[int, ...], ...]:
    """Shapes of the logit tables (switch, subgoal, action), in the order of the flat vector."""
    S, K, A = task.num_states, task.subtasks, task.actions
    return (S, K, 2), (S, K), (S, K, A)


def num_params(task: ChainTask) -> int:
    return sum(int(np.prod(shape)) for shape in table_shapes(task))


def _split(task: ChainTask, flat: np.ndarray) -> list[np.ndarray]:
    sizes = [int(np.prod(shape)) for shape in table_shapes(task)]
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return [part.reshape(shape) for part, shape in zip(parts, table_shapes(task))]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def make_policy(task: ChainTask, logits: np.ndarray) -> Policy:
    """The policy of a flat logit vector of length `num_params(task)`."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape != (num_params(task),):
        raise ValueError(f"logits: expected shape ({num_params(task)},) for {task}, got {logits.shape}")
    return Policy(*(_softmax(table) for table in _split(task, logits)))


def skilled_logits(task: ChainTask, skill: float, rng: np.random.Generator | None = None,
                   noise: float = 0.0) -> np.ndarray:
    """Logits `skill` on the right choices (KEEP a subgoal that is under way, SWITCH a stale
    one, pick the subtask under way, the step's correct action), 0 elsewhere, plus
    N(0, noise^2) per logit. skill = noise = 0 is the uniform policy."""
    sw, sg, act = (np.zeros(shape) for shape in table_shapes(task))
    need = task.needed_subgoal()
    states = np.arange(task.num_states)
    under_way = need[:, None] == np.arange(task.subtasks)[None, :]
    sw[..., KEEP] += skill * under_way
    sw[..., SWITCH] += skill * ~under_way
    sg[states, need] += skill
    act[states, :, task.correct_action()] += skill
    flat = np.concatenate([sw.ravel(), sg.ravel(), act.ravel()])
    if noise > 0.0:
        if rng is None:
            raise ValueError("skilled_logits: noise > 0 needs an rng")
        flat = flat + noise * rng.standard_normal(flat.shape)
    return flat
