"""Bias and variance of every estimator on each (K, H) cell of the grid.

Every cell is measured at one evaluation policy: fixed N(0, 0.5^2) logit noise (per K) plus
`skill` on the right choices, the scalar skill calibrated so that J = 0.5
(--target-success). At any one fixed policy J would range from ~0 to ~1 over the grid
(0.004 to 1.0 in a trial), and near either end the gradient vanishes and swamps both
relative metrics; calibrating keeps the cells at comparable difficulty. (For K = 2, H = 80
the uniform policy already succeeds more than half of the time, so the calibrated skill is
slightly negative.) M batches of B trajectories (B = whole GRPO groups of n) give M
estimates g_m, compared with the exact gradient by `gradient_stats`. With --critic-noise
sigma > 0 the critic-based estimators are measured again on the same batches with a critic
off by a fixed N(0, sigma^2) per value-table entry: with an imperfect critic,
bootstrapping trades variance for bias.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hiper.studies.credit.config import StudyConfig
from hiper.studies.credit.estimators import ESTIMATORS, prepare
from hiper.studies.credit.exact import calibrated_skill, critic_error, solve_exactly, with_error
from hiper.studies.credit.gradients import batch_gradients
from hiper.studies.credit.policy import make_policy, skilled_logits
from hiper.studies.credit.sampling import sample_rollouts
from hiper.studies.credit.statistics import gradient_stats
from hiper.studies.credit.task import ChainTask

EVAL_NOISE = 0.5  # std of the logit noise of the evaluation policy (breaks symmetries)
CHUNK_TRAJECTORIES = 8192  # trajectories sampled at once when measuring: bounds the memory


def evaluation_logits(cfg: StudyConfig, task: ChainTask) -> tuple[np.ndarray, float]:
    """The evaluation policy of a cell and its skill: fixed N(0, EVAL_NOISE^2) logits (drawn
    per number of subtasks, so the cells of one K share them) plus `skill` on the right
    choices, calibrated to cfg.target_success unless cfg.skill fixes it."""
    noise = skilled_logits(task, 0.0, np.random.default_rng([cfg.seed, task.subtasks]), noise=EVAL_NOISE)
    skill = cfg.skill if cfg.skill is not None else calibrated_skill(task, cfg.target_success, noise)
    return noise + skill * skilled_logits(task, 1.0), skill


class Cell(NamedTuple):
    """One (K, H) point of the grid with its evaluation policy."""

    task: ChainTask
    logits: np.ndarray
    skill: float


def grid_cells(cfg: StudyConfig) -> list[Cell]:
    """The grid, K-major, each cell with its calibrated evaluation policy. Raises ValueError
    before any sampling if a cell cannot reach the target success."""
    tasks = [cfg.task(k, h) for k in cfg.subtasks for h in cfg.horizons]
    return [Cell(task, *evaluation_logits(cfg, task)) for task in tasks]


def measure_cell(cfg: StudyConfig, cell: Cell, rng: np.random.Generator) -> dict:
    """Bias/variance/cosine of every estimator on one cell, at its evaluation policy; the
    noisy-critic variant on the same batches."""
    task, skill = cell.task, cell.skill
    pi = make_policy(task, cell.logits)
    exact = solve_exactly(task, pi)
    critics = {"exact": exact.critic}
    if cfg.critic_noise > 0:
        critics["noisy"] = with_error(exact.critic, critic_error(task, cfg.critic_noise, rng))
    estimates: dict[tuple[str, str], list[np.ndarray]] = {}
    turns = segments = 0
    per_chunk = max(1, CHUNK_TRAJECTORIES // cfg.batch_size)
    for first in range(0, cfg.batches, per_chunk):
        rollout = sample_rollouts(task, pi, min(per_chunk, cfg.batches - first) * cfg.batch_size, rng)
        turns, segments = turns + rollout.turn.size, segments + int(rollout.switched.sum())
        for critic_name, critic in critics.items():
            batch = prepare(rollout, critic)
            for key in cfg.estimators:
                est = ESTIMATORS[key]
                if critic_name == "exact" or est.uses_critic:
                    credit = est.credit(batch, cfg.group_size)
                    grads = batch_gradients(task, pi, rollout, credit, cfg.batch_size)
                    estimates.setdefault((critic_name, key), []).append(grads)
    results: dict[str, dict] = {}
    for (critic_name, key), parts in estimates.items():
        results.setdefault(critic_name, {})[key] = gradient_stats(np.concatenate(parts), exact.gradient)
    trajectories = cfg.batches * cfg.batch_size
    return {"subtasks": task.subtasks, "horizon": task.horizon, "skill": skill, "success": exact.success,
            "grad_norm": float(np.linalg.norm(exact.gradient)), "mean_turns": turns / trajectories,
            "mean_segments": segments / trajectories, "results": results}
