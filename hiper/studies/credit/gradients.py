"""Policy-gradient estimates from credited decisions. The estimate of a batch of B trajectories is
    g = (1/B) sum over turns [A_sw grad log pi_sw(q) + A_sg grad log pi_sg(o) + A_act grad log pi_act(a)],
each term only where the turn made that decision."""
from __future__ import annotations

import numpy as np

from hiper.studies.credit.estimators import Credit
from hiper.studies.credit.policy import Policy
from hiper.studies.credit.sampling import Rollout
from hiper.studies.credit.task import ChainTask


def _score_sums(batch_of: np.ndarray, feature: np.ndarray, choice: np.ndarray, weight: np.ndarray,
                probs: np.ndarray, num_batches: int) -> np.ndarray:
    """Per batch, sum_i weight_i grad log softmax(choice_i | feature_i) for one table of
    probabilities (F, C): grad_theta[f, :] log pi(j | f) = onehot(j) - pi(. | f). (M, F*C)."""
    F, C = probs.shape
    cell = batch_of * F + feature
    picked = np.bincount(cell * C + choice, weights=weight, minlength=num_batches * F * C)
    total = np.bincount(cell, weights=weight, minlength=num_batches * F)
    grad = picked.reshape(num_batches, F, C) - total.reshape(num_batches, F, 1) * probs[None]
    return grad.reshape(num_batches, F * C)


def batch_gradients(task: ChainTask, pi: Policy, rollout: Rollout, credit: Credit, batch_size: int) -> np.ndarray:
    """(M, P) gradient estimates, one per batch of `batch_size` consecutive trajectories:
    (1/B) sum over the batch's turns of credit x grad log pi, for each decision."""
    ro = rollout
    if ro.num_trajectories % batch_size:
        raise ValueError(f"batch_size: {batch_size} does not divide the {ro.num_trajectories} trajectories")
    M, K = ro.num_trajectories // batch_size, task.subtasks
    batch_of = ro.trajectory // batch_size
    parts = (  # (context index, choice, credit where the decision was made, probabilities)
        (ro.state * K + ro.prev_subgoal, ro.switched.astype(np.int64), credit.switch * (ro.turn > 0), pi.switch),
        (ro.state, ro.subgoal, credit.subgoal * ro.switched, pi.subgoal),
        (ro.state * K + ro.subgoal, ro.action, credit.action, pi.action),
    )
    return np.concatenate([
        _score_sums(batch_of, feature, choice, np.asarray(weight, np.float64) / batch_size,
                    probs.reshape(-1, probs.shape[-1]), M)
        for feature, choice, weight, probs in parts], axis=1)
