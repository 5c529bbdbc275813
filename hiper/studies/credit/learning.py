"""Learning curves: exact J along Adam ascent on each estimator's gradient estimates.

From a weakly skilled policy (`learn_skill`, J ~ 0.05), one batch of B trajectories per
iteration and the same step size for all (Adam makes the comparison insensitive to the
estimators' scales, GRPO's 1/std included). The critic is the exact value of the current
policy, recomputed each iteration, and, with --critic-noise, that plus an error drawn once
per run. J is computed exactly, so the curves carry no evaluation noise; seeds differ in
sampling.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from hiper.studies.credit.config import StudyConfig
from hiper.studies.credit.estimators import ESTIMATORS, Estimator, prepare
from hiper.studies.credit.exact import critic_error, solve_exactly, success_probability, with_error
from hiper.studies.credit.gradients import batch_gradients
from hiper.studies.credit.policy import make_policy, skilled_logits
from hiper.studies.credit.sampling import sample_rollouts
from hiper.studies.credit.task import ChainTask


class Adam:
    """Adam ascent on a flat parameter vector."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = self.v = None
        self.t = 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(grad), np.zeros_like(grad)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad**2
        m_hat, v_hat = self.m / (1 - self.b1**self.t), self.v / (1 - self.b2**self.t)
        return params + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train(cfg: StudyConfig, task: ChainTask, estimator: Estimator, rng: np.random.Generator,
          critic_noise: float = 0.0) -> np.ndarray:
    """Exact J after each of cfg.iterations policy-gradient steps (iterations + 1 values).
    The critic is the exact value of the current policy, plus, with critic_noise > 0, an
    error drawn once per run."""
    logits = skilled_logits(task, cfg.learn_skill)
    error = critic_error(task, critic_noise, rng) if critic_noise > 0 else None
    opt = Adam(cfg.lr)
    curve = np.empty(cfg.iterations + 1)
    for it in range(cfg.iterations + 1):
        pi = make_policy(task, logits)
        exact = solve_exactly(task, pi)
        curve[it] = exact.success
        if it == cfg.iterations:
            break
        rollout = sample_rollouts(task, pi, cfg.batch_size, rng)
        credit = estimator.credit(prepare(rollout, with_error(exact.critic, error)), cfg.group_size)
        logits = opt.step(logits, batch_gradients(task, pi, rollout, credit, cfg.batch_size)[0])
    return curve


def learning_curves(cfg: StudyConfig) -> dict:
    """Curves of every estimator over cfg.seeds seeds, with the exact critic and (if
    cfg.critic_noise) the noisy one; seed i samples the same way for every estimator."""
    task = cfg.task(cfg.learn_subtasks, cfg.learn_horizon)
    noise_levels = {"exact": 0.0, **({"noisy": cfg.critic_noise} if cfg.critic_noise > 0 else {})}
    curves: dict[str, dict[str, list]] = {}
    for critic_name, sigma in noise_levels.items():
        for key in cfg.estimators:
            if critic_name == "exact" or ESTIMATORS[key].uses_critic:
                runs = [train(cfg, task, ESTIMATORS[key], np.random.default_rng([cfg.seed, 1, seed]), sigma)
                        for seed in range(cfg.seeds)]
                curves.setdefault(critic_name, {})[key] = np.stack(runs).tolist()
    return {"task": asdict(task), "optimum": success_probability(task, skilled_logits(task, 30.0)),
            "curves": curves}
