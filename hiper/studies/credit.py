"""Credit-assignment study: how well HAE and the flat baselines estimate the policy gradient
of a hierarchical policy, measured against the exact gradient.

    python -m hiper.studies.credit [--quick] [--out runs/credit]   (the CLI: `hiper bench credit`)

The task (`ChainTask`)
    K subtasks done in order, each of `steps` primitive steps, within a horizon of H turns.
    The state is the total progress s = k * steps + p (subtask k under way, p of its steps
    done). Each turn the policy makes the three decisions of HiPER's Plan-Execute format
    (SPEC §2, §11): a switch decision q ~ pi_sw(. | s, o_prev) (KEEP/SWITCH; turn 0 is
    always a boundary and makes no switch decision), on SWITCH and on turn 0 a subgoal
    o ~ pi_sg(. | s) (on KEEP o = o_prev), and a primitive action a ~ pi_act(. | s, o). The
    action advances s by one only if the subgoal is the subtask under way, the action is
    that step's correct one (one of `actions`) and the step does not slip (probability
    `slip`); otherwise nothing happens. A subgoal therefore goes stale when its subtask is
    done, and the policy has to SWITCH to the next one. Completing the last step ends the
    episode with reward 1, the only reward. At turn H the episode ends with reward 0 and
    done=True: a finite-horizon task, not a truncated one, so every value below is indexed
    by the turn t (the time left matters) and no estimator bootstraps past the end.

The policy
    Three softmax tables of logits, pi_sw over (s, o_prev), pi_sg over s and pi_act over
    (s, o): 256 parameters for K = 4 with the defaults. Gradients are w.r.t. the logits.

The truth (`solve_exactly`)
    The state space is finite, so J = P(success) and its gradient are exact, by dynamic
    programming: a backward pass gives the time-indexed values
        U_t(s, o_prev)  at the start of a turn (the flat critic; HAE's termination V^T),
        V^H_t(s)        once SWITCH is decided (HAE's high-level value),
        V^L_t(s, o)     once subgoal o is active (HAE's low-level value),
        Q_t(s, o, a)    after the action,
    a forward pass the occupancy of each decision context, and the finite-horizon
    policy-gradient theorem gives, for a softmax table, dJ/dtheta[x, j] = sum_t
    occupancy_t(x) pi(j | x) (Q_t(x, j) - V_t(x)). The tests check it against finite
    differences, and J against a brute-force walk of the decision tree.

The estimators (`ESTIMATORS`), all fed these exact values (the assumption under which
SPEC §11 claims unbiasedness). None normalises its advantages, so that bias and variance
are the advantage estimator's own: HAE's norm_adv and verl's whitening rescale a batch's
advantages by one random factor, a step-size effect left out here.
    hae        `hiper.hae_turns` with the released gamma = lam_turn = 1, lam_seg = 0.95
               (SPEC §9): switch <- A^T, subgoal <- A^H (segment starts), action <- A^L.
    token_gae  the authors' PPO (SPEC §8): the decisions are the tokens of the turn's
               response, its last token scores the episode reward, verl's token GAE with
               gamma = lam = 1 inside the turn, no bootstrap across turns. Each token's value
               is the exact value before it (U, V^H, V^L): the best critic flat PPO can have.
    turn_gae   GAE over turns, gamma = lam = 1, on the per-turn environment reward (the
               success reward on the last turn, of which U is the exact critic) with U at
               the turn start as the value; one advantage for all the turn's decisions.
    grpo       (R - mean) / (std + 1e-6) over all turns of a group of n trajectories
               (compute_mean_std_cross_steps=True); no critic. Biased and rescaled by
               construction: the baseline includes the sample itself and the std divides.
    Two controls that are not baselines of the paper: turn-level GAE with lam = 0.95
    (`turn_gae_095`) and lam = 0 (`turn_td`, one-step TD). Both are flat but bootstrap from
    the next turn's value, as HAE does at segment boundaries. With exact values every
    bootstrap is free of bias, so they separate what the hierarchy buys from what
    bootstrapping alone buys.
The gradient estimate of a batch of B trajectories is
    g = (1/B) sum over turns [A_sw grad log pi_sw(q) + A_sg grad log pi_sg(o) + A_act grad log pi_act(a)],
each term only where the turn made that decision.

The measurements (`measure_cell`)
    Every (K, H) cell of the grid is measured at one evaluation policy: fixed N(0, 0.5^2)
    logit noise (per K) plus `skill` on the right choices, the scalar skill calibrated so
    that J = 0.5 (`--target-success`). At any one fixed policy J would range from ~0 to ~1
    over the grid (0.004 to 1.0 in a trial), and near either end the gradient vanishes and
    swamps both relative metrics; calibrating keeps the cells at comparable difficulty.
    (For K = 2, H = 80 the uniform policy already succeeds more than half of the time, so
    the calibrated skill is slightly negative.) M batches of B trajectories (B = whole
    GRPO groups of n) give M estimates g_m, and
        rel_bias   ||mean g_m - g|| / ||g||, with its noise floor sqrt(tr Cov / M) / ||g||,
                   about what an unbiased estimator shows from the finite M alone, and
                   excess_bias = sqrt(max(0, rel_bias^2 - floor^2)), the bias beyond it;
        scale, direction_error
                   mean g_m = scale * g + r: a pure rescaling (GRPO's 1/std) moves the scale,
                   a wrong direction shows in ||r|| / ||g||;
        rel_var    tr Cov(g_m) / ||g||^2, per batch of B, and scaled_var = rel_var / scale^2;
        cosine     mean over batches of cos(g_m, g).
    direction_error, scaled_var and cosine do not see a rescaling, so they are fair to GRPO.
    With --critic-noise sigma > 0 the critic-based estimators are measured again on the
    same batches with a critic off by a fixed N(0, sigma^2) per value-table entry: with an
    imperfect critic, bootstrapping trades variance for bias.

The learning curves (`learning_curves`)
    From a weakly skilled policy (`learn_skill`, J ~ 0.05), Adam ascent on each
    estimator's gradient estimate, one batch of B trajectories per iteration and the same
    step size for all (Adam makes the comparison insensitive to the estimators' scales,
    GRPO's 1/std included). The critic is the exact value of the current policy, recomputed
    each iteration, and, with --critic-noise, that plus an error drawn once per run. J is
    computed exactly, so the curves carry no evaluation noise; seeds differ in sampling.

`run` prints the tables and writes into --out every number (credit.json) and, with
matplotlib (without it, a message says so), the plots variance.png (variance, cosine and
the noisy critic's bias beyond the noise floor, against the horizon) and learning.png.
The full study takes a little over a minute on two CPU cores; --quick, a second.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

import hiper

KEEP, SWITCH = 0, 1
HAE_LAM_SEG = 0.95  # the released lam_seg; gamma = lam_turn = 1 (SPEC §9)
EVAL_NOISE = 0.5  # std of the logit noise of the evaluation policy (breaks symmetries)
CHUNK_TRAJECTORIES = 8192  # trajectories sampled at once when measuring: bounds the memory
F32 = np.float32


# --------------------------------------------------------------------------- the task


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


# --------------------------------------------------------------------------- the policy


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


# --------------------------------------------------------------------------- the exact solution


class Critic(NamedTuple):
    """Time-indexed values (see the module docstring).

    start (H, S, K): U_t(s, o_prev), before the switch decision.
    high (H, S): V^H_t(s), once SWITCH is decided, before the subgoal is drawn.
    low (H, S, K): V^L_t(s, o), once subgoal o is active, before the action.
    """

    start: np.ndarray
    high: np.ndarray
    low: np.ndarray


class ExactSolution(NamedTuple):
    """success: J, the probability of success within the horizon. critic: the exact values.
    gradient: (P,) dJ/dlogits in the order of `table_shapes`."""

    success: float
    critic: Critic
    gradient: np.ndarray


def _backward_values(task: ChainTask, pi: Policy, advance: np.ndarray) -> tuple[Critic, np.ndarray]:
    """Values of every turn, last turn first; also Q_t(s, o, a) (H, S, K, A)."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    start = np.zeros((H + 1, S, K))
    high = np.zeros((H, S))
    low = np.zeros((H, S, K))
    q = np.zeros((H, S, K, task.actions))
    last_step = (np.arange(S) == S - 1)[:, None]
    for t in range(H - 1, -1, -1):
        # Advancing from s leads to the next turn at s + 1 with o as the previous subgoal,
        # except from the last step, which is success: reward 1, nothing after.
        after_advance = np.where(last_step, 1.0, np.roll(start[t + 1], -1, axis=0))
        q[t] = advance * after_advance[..., None] + (1.0 - advance) * start[t + 1][..., None]
        low[t] = (pi.action * q[t]).sum(-1)
        high[t] = (pi.subgoal * low[t]).sum(-1)
        start[t] = pi.switch[..., KEEP] * low[t] + pi.switch[..., SWITCH] * high[t][:, None]
    return Critic(start[:H], high, low), q


def _occupancies(task: ChainTask, pi: Policy, advance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability that turn t makes each decision in each context: a switch decision in
    (s, o_prev) (H, S, K; none on turn 0), a subgoal draw in s (H, S), an action in (s, o)
    (H, S, K)."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    at_switch = np.zeros((H, S, K))
    at_subgoal = np.zeros((H, S))
    at_action = np.zeros((H, S, K))
    p_advance = (pi.action * advance).sum(-1)
    at_subgoal[0, 0] = 1.0
    for t in range(H):
        if t > 0:
            at_subgoal[t] = (at_switch[t] * pi.switch[..., SWITCH]).sum(-1)
        at_action[t] = at_switch[t] * pi.switch[..., KEEP] + at_subgoal[t][:, None] * pi.subgoal
        if t + 1 < H:
            moved = at_action[t] * p_advance
            at_switch[t + 1] = at_action[t] - moved
            at_switch[t + 1, 1:] += moved[:-1]  # moving on from the last step is success: gone
    return at_switch, at_subgoal, at_action


def solve_exactly(task: ChainTask, pi: Policy) -> ExactSolution:
    """J, the exact time-indexed values and dJ/dlogits by dynamic programming."""
    advance = task.advance_prob()
    critic, q = _backward_values(task, pi, advance)
    at_switch, at_subgoal, at_action = _occupancies(task, pi, advance)
    # Softmax tables: dJ/dtheta[x, j] = sum_t occupancy_t(x) pi(j | x) (Q_t(x, j) - V_t(x)).
    q_switch = np.stack([critic.low, np.broadcast_to(critic.high[..., None], critic.low.shape)], axis=-1)
    g_switch = (at_switch[..., None] * pi.switch * (q_switch - critic.start[..., None])).sum(0)
    g_subgoal = (at_subgoal[..., None] * pi.subgoal * (critic.low - critic.high[..., None])).sum(0)
    g_action = (at_action[..., None] * pi.action * (q - critic.low[..., None])).sum(0)
    gradient = np.concatenate([g_switch.ravel(), g_subgoal.ravel(), g_action.ravel()])
    return ExactSolution(float(critic.high[0, 0]), critic, gradient)


def success_probability(task: ChainTask, logits: np.ndarray) -> float:
    """J(logits), exactly (the backward pass alone)."""
    critic, _ = _backward_values(task, make_policy(task, logits), task.advance_prob())
    return float(critic.high[0, 0])


def calibrated_skill(task: ChainTask, target: float, noise_logits: np.ndarray,
                     low: float = -5.0, high: float = 15.0) -> float:
    """The skill s at which the policy `noise_logits + s * (right choices)` succeeds with
    probability `target`, by bisection (J grows with s)."""
    right = skilled_logits(task, 1.0)

    def success(skill: float) -> float:
        return success_probability(task, noise_logits + skill * right)

    if not success(low) <= target <= success(high):
        raise ValueError(f"target success {target} is out of reach for {task}: J ranges over "
                         f"[{success(low):.3g}, {success(high):.3g}] (a longer horizon or fewer steps helps)")
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if success(mid) < target else (low, mid)
    return 0.5 * (low + high)


def evaluation_logits(cfg: StudyConfig, task: ChainTask) -> tuple[np.ndarray, float]:
    """The evaluation policy of a cell and its skill: fixed N(0, EVAL_NOISE^2) logits (drawn
    per number of subtasks, so the cells of one K share them) plus `skill` on the right
    choices, calibrated to cfg.target_success unless cfg.skill fixes it."""
    noise = skilled_logits(task, 0.0, np.random.default_rng([cfg.seed, task.subtasks]), noise=EVAL_NOISE)
    skill = cfg.skill if cfg.skill is not None else calibrated_skill(task, cfg.target_success, noise)
    return noise + skill * skilled_logits(task, 1.0), skill


def critic_error(task: ChainTask, sigma: float, rng: np.random.Generator) -> Critic:
    """An N(0, sigma^2) error per value-table entry, drawn once: added to the exact values
    it makes a critic that is wrong the same way on every visit, as a fitted one is."""
    H, S, K = task.horizon, task.num_states, task.subtasks
    return Critic(*(sigma * rng.standard_normal(shape) for shape in ((H, S, K), (H, S), (H, S, K))))


def with_error(critic: Critic, error: Critic | None) -> Critic:
    return critic if error is None else Critic(*(v + e for v, e in zip(critic, error)))


# --------------------------------------------------------------------------- sampling


class Rollout(NamedTuple):
    """Sampled turns, one row per turn, ordered by (trajectory, turn).

    trajectory, turn, state, prev_subgoal (0 on turn 0, unused there), subgoal (the active
    o_t), action: (N,) int64. switched (N,) bool: a subgoal was drawn this turn (turn 0 or
    SWITCH). reward (N,) float32: 1 on the success turn. done (N,) bool: success or turn H-1.
    """

    trajectory: np.ndarray
    turn: np.ndarray
    state: np.ndarray
    prev_subgoal: np.ndarray
    switched: np.ndarray
    subgoal: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    num_trajectories: int


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of (n, k) probabilities."""
    u = rng.random((probs.shape[0], 1))
    return np.minimum((probs.cumsum(axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1)


def sample_rollouts(task: ChainTask, pi: Policy, n: int, rng: np.random.Generator) -> Rollout:
    """n independent episodes, stepped together turn by turn."""
    if n < 1:
        raise ValueError(f"n: expected at least 1 trajectory, got {n}")
    H, S = task.horizon, task.num_states
    need, correct = task.needed_subgoal(), task.correct_action()
    names = ("state", "prev_subgoal", "switched", "subgoal", "action", "success", "alive")
    cols = {name: np.zeros((n, H), dtype=bool if name in ("switched", "success", "alive") else np.int64)
            for name in names}
    state = np.zeros(n, dtype=np.int64)
    prev = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for t in range(H):
        switched = np.ones(n, dtype=bool) if t == 0 else rng.random(n) < pi.switch[state, prev, SWITCH]
        subgoal = np.where(switched, _categorical(pi.subgoal[state], rng), prev)
        action = _categorical(pi.action[state, subgoal], rng)
        advance = (subgoal == need[state]) & (action == correct[state]) & (rng.random(n) >= task.slip)
        success = advance & (state == S - 1)
        for name, value in zip(names, (state, prev, switched, subgoal, action, success, alive)):
            cols[name][:, t] = value
        alive = alive & ~success
        state = np.minimum(state + advance, S - 1)
        prev = subgoal
    keep = cols.pop("alive")
    turn = np.broadcast_to(np.arange(H), (n, H))[keep]
    success = cols.pop("success")[keep]
    return Rollout(
        trajectory=np.broadcast_to(np.arange(n)[:, None], (n, H))[keep],
        turn=turn,
        reward=success.astype(F32),
        done=success | (turn == H - 1),
        num_trajectories=n,
        **{name: col[keep] for name, col in cols.items()},
    )


# --------------------------------------------------------------------------- the estimators


class TurnBatch(NamedTuple):
    """A rollout with what every estimator reads from it: its layout, the critic's values
    at each turn's decision points (float32) and each turn's episode reward."""

    rollout: Rollout
    layout: hiper.TrajectoryLayout
    v_start: np.ndarray  # U_t(s_t, o_{t-1}) before the switch decision
    v_high: np.ndarray  # V^H_t(s_t)
    v_low: np.ndarray  # V^L_t(s_t, o_t)
    v_turn: np.ndarray  # the value at the start of the turn: U_t, or V^H_0 on turn 0
    episode_reward: np.ndarray


def prepare(rollout: Rollout, critic: Critic) -> TurnBatch:
    """Read the critic at every turn once, for all the estimators of a batch."""
    ro = rollout
    layout = hiper.build_layout(ro.trajectory, ro.turn, ro.switched)
    v_start = critic.start[ro.turn, ro.state, ro.prev_subgoal].astype(F32)
    v_high = critic.high[ro.turn, ro.state].astype(F32)
    v_low = critic.low[ro.turn, ro.state, ro.subgoal].astype(F32)
    v_turn = np.where(ro.turn == 0, v_high, v_start)
    return TurnBatch(ro, layout, v_start, v_high, v_low, v_turn, hiper.episode_returns(layout, ro.reward))


class Credit(NamedTuple):
    """The advantage credited to each decision of each turn, (N,). Entries of decisions the
    turn did not make (a switch on turn 0, a subgoal on KEEP turns) are ignored."""

    switch: np.ndarray
    subgoal: np.ndarray
    action: np.ndarray


# Every estimator maps (batch, GRPO group size) to a Credit; only GRPO reads the group size.


def _turn_credit(adv) -> Credit:
    """One advantage for all the decisions of a turn."""
    adv = np.asarray(adv, dtype=np.float64)
    return Credit(adv, adv, adv)


def hae_credit(batch: TurnBatch, group_size: int) -> Credit:
    """HAE: A^T to the switch, A^H to the subgoal (segment starts), A^L to the action. The
    termination value V^T is the value before the switch decision, U_t(s, o_prev)."""
    ro = batch.rollout
    out = hiper.hae_turns(batch.layout, ro.reward, ro.done, batch.v_low, batch.v_high, batch.v_start,
                          gamma=1.0, lam_turn=1.0, lam_seg=HAE_LAM_SEG)
    return Credit(*(np.asarray(a, dtype=np.float64) for a in (out.adv_term, out.adv_high, out.adv_low)))


def token_gae_credit(batch: TurnBatch, group_size: int) -> Credit:
    """The authors' PPO: tokens [switch?][subgoal?][action] left-aligned in each turn's row,
    the episode reward on the last one, token GAE with gamma = lam = 1 within the row."""
    ro = batch.rollout
    rows = np.arange(ro.turn.size)
    has_switch, has_subgoal = ro.turn > 0, ro.switched
    at_subgoal = has_switch.astype(np.int64)
    at_action = at_subgoal + has_subgoal
    values = np.zeros((rows.size, 3), dtype=F32)
    values[has_switch, 0] = batch.v_start[has_switch]
    values[rows[has_subgoal], at_subgoal[has_subgoal]] = batch.v_high[has_subgoal]
    values[rows, at_action] = batch.v_low
    mask = np.arange(3)[None, :] <= at_action[:, None]
    rewards = hiper.last_token_scores(batch.episode_reward, mask)
    adv = np.asarray(hiper.token_gae(rewards, values, mask, gamma=1.0, lam=1.0).advantages, dtype=np.float64)
    return Credit(adv[:, 0], adv[rows, at_subgoal], adv[rows, at_action])


def turn_gae_credit(batch: TurnBatch, group_size: int, lam: float = 1.0) -> Credit:
    """Turn-level GAE with gamma = 1, broadcast to the turn's decisions. lam = 1 is the
    baseline; lam < 1 bootstraps from the next turns' values (the controls)."""
    ro = batch.rollout
    return _turn_credit(hiper.turn_gae(batch.layout, ro.reward, ro.done, batch.v_turn, lam=lam).advantages)


def grpo_credit(batch: TurnBatch, group_size: int) -> Credit:
    """GRPO over consecutive groups of `group_size` trajectories, statistics over all turns."""
    groups = batch.rollout.trajectory // group_size
    return _turn_credit(hiper.group_advantages(batch.episode_reward, groups, mode="grpo"))


@dataclass(frozen=True)
class Estimator:
    """An advantage estimator under study: its key (JSON, --estimators), printed label,
    credit function, and whether it reads the critic (the noisy-critic variant)."""

    key: str
    label: str
    credit: Callable[[TurnBatch, int], Credit]
    uses_critic: bool = True


ESTIMATORS = {e.key: e for e in (
    Estimator("hae", "HAE", hae_credit),
    Estimator("token_gae", "flat GAE (token, PPO)", token_gae_credit),
    Estimator("turn_gae", "turn GAE", turn_gae_credit),
    Estimator("grpo", "GRPO", grpo_credit, uses_critic=False),
    Estimator("turn_gae_095", "turn GAE lam=0.95 (control)", partial(turn_gae_credit, lam=0.95)),
    Estimator("turn_td", "turn TD, lam=0 (control)", partial(turn_gae_credit, lam=0.0)),
)}


# --------------------------------------------------------------------------- gradient estimates


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


def gradient_stats(estimates: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """Bias, variance and alignment of M gradient estimates (M, P) against the truth (P,)."""
    M = estimates.shape[0]
    if M < 2:
        raise ValueError("gradient_stats: needs at least 2 estimates")
    norm = float(np.linalg.norm(truth))
    if norm == 0.0:
        raise ValueError("gradient_stats: the true gradient is 0; relative errors are undefined")
    mean = estimates.mean(axis=0)
    trace_cov = float(estimates.var(axis=0, ddof=1).sum())
    bias = float(np.linalg.norm(mean - truth))
    scale = float(mean @ truth) / norm**2
    lengths = np.linalg.norm(estimates, axis=1)
    cos = np.divide(estimates @ truth, lengths * norm, out=np.zeros(M), where=lengths > 0)
    floor = float(np.sqrt(trace_cov / M)) / norm
    return {
        "rel_bias": bias / norm,
        "bias_floor": floor,
        # The bias beyond what the finite M explains: an estimate of the true bias's size.
        "excess_bias": float(np.sqrt(max(0.0, (bias / norm) ** 2 - floor**2))),
        # ||mean - truth||^2 over its expectation for an unbiased estimator: ~1 if unbiased.
        "bias_ratio": bias**2 / (trace_cov / M) if trace_cov > 0 else None,
        # Scale-free: E g = scale * truth + (a part orthogonal to the truth, of relative
        # size direction_error). GRPO's 1/std shows in the scale, not in the direction.
        "scale": scale,
        "direction_error": float(np.linalg.norm(mean - scale * truth)) / norm,
        "rel_var": trace_cov / norm**2,
        "scaled_var": trace_cov / (scale * norm) ** 2 if scale != 0 else None,
        "cosine": float(cos.mean()),
        "cosine_se": float(cos.std(ddof=1) / np.sqrt(M)),
    }


# --------------------------------------------------------------------------- the study


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


# --------------------------------------------------------------------------- reporting


def format_table(cells: list[dict], estimators: tuple[str, ...], critic: str = "exact") -> str:
    """One row per (cell, estimator): the cell's skill, J, mean turns and segments per
    trajectory, then relative bias and its noise floor, scale and direction error (the
    bias split into its part along the truth and across it), relative variance, the
    same divided by scale^2, and cosine."""
    head = (f"{'K':>2} {'H':>3} {'skill':>5} {'J':>5} {'turns':>5} {'segs':>5}  {'estimator':<30} "
            f"{'rel.bias':>8} {'(floor)':>7} {'scale':>5} {'dir.err':>7} {'rel.var':>7} {'/scale2':>7} {'cosine':>6}")
    lines = [head, "-" * len(head)]
    for cell in cells:
        lead = (f"{cell['subtasks']:>2} {cell['horizon']:>3} {cell['skill']:>5.2f} {cell['success']:>5.2f} "
                f"{cell['mean_turns']:>5.1f} {cell['mean_segments']:>5.1f}")
        for key in (k for k in estimators if k in cell["results"].get(critic, {})):
            r = cell["results"][critic][key]
            scaled = "-" if r["scaled_var"] is None else f"{r['scaled_var']:.3g}"
            lines.append(f"{lead}  {ESTIMATORS[key].label:<30} {r['rel_bias']:>8.3f} {r['bias_floor']:>7.3f} "
                         f"{r['scale']:>5.2f} {r['direction_error']:>7.3f} {r['rel_var']:>7.3g} {scaled:>7} "
                         f"{r['cosine']:>6.3f}")
            lead = " " * len(lead)
    return "\n".join(lines)


def format_learning(learning: dict, critic: str) -> str:
    """Mean +- std over seeds of the exact J at a few iterations, one row per estimator."""
    curves = learning["curves"][critic]
    iterations = len(next(iter(curves.values()))[0]) - 1
    marks = sorted({0, iterations // 8, iterations // 4, iterations // 2, iterations})
    lines = [f"{'estimator':<30}" + "".join(f"{'it ' + str(m):>14}" for m in marks)]
    for key, runs in curves.items():
        runs = np.asarray(runs)
        lines.append(f"{ESTIMATORS[key].label:<30}"
                     + "".join(f"{runs[:, m].mean():>8.3f}+-{runs[:, m].std():.3f}" for m in marks))
    return "\n".join(lines)


# Token and turn GAE nearly coincide: dashes and markers keep both visible.
_STYLES = {"hae": dict(color="C0", marker="o", lw=2.2), "token_gae": dict(color="C1", marker="s", ls="--"),
           "turn_gae": dict(color="C2", marker="^", ls=":"), "grpo": dict(color="C3", marker="v"),
           "turn_gae_095": dict(color="C4", marker="x", lw=1), "turn_td": dict(color="C7", marker="+", lw=1)}


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_variance(plt, cells: list[dict], estimators: tuple[str, ...], path: Path) -> None:
    """Per number of subtasks (columns), against the horizon: relative variance (log) and
    cosine with exact critics and, if measured, the excess bias with the noisy critic."""
    ks = sorted({c["subtasks"] for c in cells})
    rows = [("exact", lambda r: r["rel_var"], "tr Cov(g) / |grad J|^2", True),
            ("exact", lambda r: r["cosine"], "mean cos(g, grad J)", False)]
    if any("noisy" in c["results"] for c in cells):
        rows.append(("noisy", lambda r: r["excess_bias"], "noisy critic: bias / |grad J|\nbeyond the noise floor", False))
    fig, axes = plt.subplots(len(rows), len(ks), figsize=(4.2 * len(ks), 3.3 * len(rows) + 0.6), squeeze=False)
    for col, k in enumerate(ks):
        line = sorted((c for c in cells if c["subtasks"] == k), key=lambda c: c["horizon"])
        hs = [c["horizon"] for c in line]
        for ax, (critic, metric, ylabel, log_y) in zip(axes[:, col], rows):
            for key in estimators:
                if all(key in c["results"].get(critic, {}) for c in line):
                    ax.plot(hs, [metric(c["results"][critic][key]) for c in line],
                            label=ESTIMATORS[key].label, **_STYLES.get(key, {}))
            if log_y:
                ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_xticks(hs, [str(h) for h in hs])
            ax.set_xlabel("horizon H (turns)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"K = {k} subtasks")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=9)
    fig.suptitle("Per-batch gradient estimates against the exact gradient (J = success probability)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_learning(plt, learning: dict, path: Path) -> None:
    """Exact success probability vs iteration, mean +- std over seeds, one panel per critic."""
    panels = list(learning["curves"].items())
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    task = learning["task"]
    for ax, (critic, curves) in zip(axes[0], panels):
        for key, runs in curves.items():
            runs = np.asarray(runs)
            mean, std = runs.mean(0), runs.std(0)
            style = {k: v for k, v in _STYLES.get(key, {}).items() if k != "marker"}
            ax.plot(np.arange(mean.size), mean, label=ESTIMATORS[key].label, **style)
            ax.fill_between(np.arange(mean.size), mean - std, mean + std, color=style.get("color"), alpha=0.2)
        ax.axhline(learning["optimum"], color="grey", ls="--", lw=1, label="near-optimal policy")
        ax.set_title(f"{critic} critic: K = {task['subtasks']}, H = {task['horizon']}, "
                     f"{len(runs)} seeds (mean +- std)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("exact success probability J")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


# StudyConfig fields settable from the command line: (field, type, help).
_FLAGS = (
    ("subtasks", _positive_int, "numbers of subtasks K of the grid"),
    ("horizons", _positive_int, "horizons H of the grid, in turns"),
    ("steps", _positive_int, "primitive steps per subtask"),
    ("actions", _positive_int, "primitive actions"),
    ("slip", float, "probability that a correct step does nothing"),
    ("target_success", float, "success probability J each cell's evaluation policy is calibrated to"),
    ("skill", float, "fix the evaluation policy's logit bonus instead of calibrating it"),
    ("batches", _positive_int, "batches M per cell"),
    ("batch_size", _positive_int, "trajectories B per batch"),
    ("group_size", _positive_int, "GRPO group size n, dividing B"),
    ("critic_noise", float, "std of the noisy critic's error, 0 to skip that variant"),
    ("seeds", _positive_int, "learning-curve seeds"),
    ("iterations", _positive_int, "learning iterations"),
    ("lr", float, "Adam step size"),
    ("learn_subtasks", _positive_int, "K of the learning task"),
    ("learn_horizon", _positive_int, "H of the learning task"),
    ("learn_skill", float, "logit bonus of the initial policy of the learning runs"),
    ("seed", int, "base random seed"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's flags. Those left out take the full study's values, or --quick's."""
    parser.add_argument("--out", default="runs/credit", help="output directory (default: runs/credit)")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration that runs in about a second")
    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, tuple) else "calibrated" if value is None else str(value)

    for name, kind, text in _FLAGS:
        full, quick = getattr(FULL, name), getattr(QUICK, name)
        default = f"default {shown(full)}" + ("" if quick == full else f"; --quick: {shown(quick)}")
        parser.add_argument("--" + name.replace("_", "-"), type=kind, nargs="+" if isinstance(full, tuple) else None,
                            help=f"{text} ({default})")
    parser.add_argument("--estimators", nargs="+", choices=list(ESTIMATORS), metavar="KEY",
                        help=f"estimators to run, of {', '.join(ESTIMATORS)} (default: all)")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The --quick or full preset, overridden by every flag given. ValueError on bad values."""
    preset = QUICK if getattr(args, "quick", False) else FULL
    given = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if getattr(args, f.name, None) is not None}
    for name in ("subtasks", "horizons", "estimators"):
        if name in given:
            given[name] = tuple(given[name])
    return replace(preset, **given)


def run(args: argparse.Namespace) -> int:
    """Run the study: print the tables, write credit.json and the plots into args.out."""
    start = time.perf_counter()
    try:
        cfg = config_from_args(args)
        grid = grid_cells(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for i, cell in enumerate(grid):
        cells.append(measure_cell(cfg, cell, np.random.default_rng([cfg.seed, 0, i])))
        print(f"measured K={cell.task.subtasks} H={cell.task.horizon} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    measured = time.perf_counter() - start
    learning = learning_curves(cfg)
    elapsed = time.perf_counter() - start

    print(f"\nGradient estimates against the exact gradient: {cfg.batches} batches of {cfg.batch_size} "
          f"trajectories per cell, exact critics, no advantage normalisation")
    print(format_table(cells, cfg.estimators))
    if cfg.critic_noise > 0:
        print(f"\nThe same batches with a noisy critic (a fixed N(0, {cfg.critic_noise}^2) error per value)")
        print(format_table(cells, cfg.estimators, critic="noisy"))
    task = learning["task"]
    for critic in learning["curves"]:
        print(f"\nLearning with the {critic} critic (K={task['subtasks']}, H={task['horizon']}, {cfg.seeds} seeds, "
              f"Adam lr {cfg.lr}, B={cfg.batch_size}): exact J, mean +- std over seeds")
        print(format_learning(learning, critic))
    print(f"(a near-optimal policy has J = {learning['optimum']:.3f})")

    record = {"config": asdict(cfg), "cells": cells, "learning": learning,
              "seconds": {"measurement": measured, "learning": elapsed - measured, "total": elapsed}}
    (out / "credit.json").write_text(json.dumps(record, indent=1))
    written = [out / "credit.json"]
    plt = _pyplot()
    if plt is None:
        print("matplotlib is not installed (pip install 'hiper[plot]'): no plots written")
    else:
        plot_variance(plt, cells, cfg.estimators, out / "variance.png")
        plot_learning(plt, learning, out / "learning.png")
        written += [out / "variance.png", out / "learning.png"]
    print(f"\nwrote {', '.join(str(p) for p in written)} ({elapsed:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hiper.studies.credit", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
