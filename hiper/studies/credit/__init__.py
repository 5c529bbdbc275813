"""Credit-assignment study: how well HAE and the flat baselines estimate the policy gradient
of a hierarchical policy, measured against the exact gradient.

    python -m hiper.studies.credit [--quick] [--out runs/credit]   (the CLI: `hiper bench credit`)

A synthetic hierarchical task small enough to solve exactly: K subtasks done in order within
H turns, a tabular policy making HiPER's three decisions each turn (switch, subgoal, action),
success the only reward. Against its exact gradient, each advantage estimator's batch
gradient estimates are measured for bias, variance and direction over a grid of (K, H), and
Adam ascent on them gives learning curves. One module per part:

    task         `ChainTask`, the task and its dynamics
    policy       `Policy`, the three softmax tables over a flat logit vector
    exact        `solve_exactly`: J, the time-indexed values (the critic) and dJ/dlogits by
                 dynamic programming; the calibration of a policy to a target J
    sampling     `sample_rollouts`: episodes, all trajectories stepped together
    estimators   `ESTIMATORS`: HAE, the authors' flat baselines and two controls, each
                 crediting every decision of every turn
    gradients    `batch_gradients`: credit x grad log pi, summed per batch
    statistics   `gradient_stats`: bias, variance, scale, direction and cosine
    config       `StudyConfig` and its presets FULL and QUICK
    measurement  `measure_cell`: every estimator on one (K, H) cell, at a calibrated policy
    learning     `learning_curves`: exact J along Adam ascent on each estimator's estimates
    report, plots, cli
                 the printed tables, the figures and the command line (`run`)

The full study takes a little over a minute on two CPU cores; --quick, a second.
"""
from hiper.studies.credit.cli import add_arguments, config_from_args, main, run
from hiper.studies.credit.config import FULL, QUICK, StudyConfig
from hiper.studies.credit.estimators import (
    ESTIMATORS,
    HAE_LAM_SEG,
    Credit,
    Estimator,
    TurnBatch,
    grpo_credit,
    hae_credit,
    prepare,
    token_gae_credit,
    turn_gae_credit,
)
from hiper.studies.credit.exact import (
    Critic,
    ExactSolution,
    calibrated_skill,
    critic_error,
    solve_exactly,
    success_probability,
    with_error,
)
from hiper.studies.credit.gradients import batch_gradients
from hiper.studies.credit.learning import Adam, learning_curves, train
from hiper.studies.credit.measurement import (
    CHUNK_TRAJECTORIES,
    EVAL_NOISE,
    Cell,
    evaluation_logits,
    grid_cells,
    measure_cell,
)
from hiper.studies.credit.plots import plot_learning, plot_variance
from hiper.studies.credit.policy import Policy, make_policy, num_params, skilled_logits, table_shapes
from hiper.studies.credit.report import format_learning, format_table
from hiper.studies.credit.sampling import Rollout, sample_rollouts
from hiper.studies.credit.statistics import gradient_stats
from hiper.studies.credit.task import KEEP, SWITCH, ChainTask

__all__ = [
    "CHUNK_TRAJECTORIES", "ESTIMATORS", "EVAL_NOISE", "FULL", "HAE_LAM_SEG", "KEEP", "QUICK", "SWITCH", "Adam",
    "Cell", "ChainTask", "Credit", "Critic", "Estimator", "ExactSolution", "Policy", "Rollout", "StudyConfig",
    "TurnBatch", "add_arguments", "batch_gradients", "calibrated_skill", "config_from_args", "critic_error",
    "evaluation_logits", "format_learning", "format_table", "gradient_stats", "grid_cells", "grpo_credit",
    "hae_credit", "learning_curves", "main", "make_policy", "measure_cell", "num_params", "plot_learning",
    "plot_variance", "prepare", "run", "sample_rollouts", "skilled_logits", "solve_exactly", "success_probability",
    "table_shapes", "token_gae_credit", "train", "turn_gae_credit", "with_error",
]
