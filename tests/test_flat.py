"""The flat baselines (SPEC §8) against the float64 loop oracle and the PyTorch twin."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hiper
from hiper.reference import flat_loops, flat_torch, hae_torch

ATOL = dict(rtol=1e-5, atol=1e-5)


def random_rows(rng, num_traj=10, max_turns=8, p_done=0.6, p_mid_done=0.05):
    traj, turn, done = [], [], []
    for t in range(num_traj):
        T = int(rng.integers(1, max_turns + 1))
        traj += [t] * T
        turn += list(range(T))
        done += [bool(rng.random() < p_mid_done) for _ in range(T - 1)] + [bool(rng.random() < p_done)]
    perm = rng.permutation(len(traj))
    n = len(traj)
    return dict(traj=np.asarray(traj)[perm], turn=np.asarray(turn)[perm], done=np.asarray(done)[perm],
                rewards=rng.normal(size=n).astype(np.float32), values=rng.normal(size=n).astype(np.float32))


def random_tokens(rng, n=9, length=13, contiguous=False):
    rewards = rng.normal(size=(n, length)).astype(np.float32)
    values = rng.normal(size=(n, length)).astype(np.float32)
    if contiguous:
        lengths = rng.integers(0, length + 1, size=n)
        mask = np.arange(length)[None, :] < lengths[:, None]
    else:
        mask = rng.random((n, length)) < 0.6
    return rewards, values, mask


def torch_layout(d):
    return hae_torch.build_layout(torch.as_tensor(d["traj"]), torch.as_tensor(d["turn"]),
                                  torch.zeros(len(d["traj"]), dtype=torch.bool))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("boot", [False, True])
def test_turn_gae_matches_oracle_and_twin(seed, with_values, boot):
    rng = np.random.default_rng(seed)
    d = random_rows(rng)
    gamma, lam = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, 1.0))
    values = d["values"] if with_values else None
    layout = hiper.build_layout(d["traj"], d["turn"])
    got = hiper.turn_gae(layout, d["rewards"], d["done"], values, gamma=gamma, lam=lam, bootstrap_truncated=boot)
    want = flat_loops.turn_gae(list(d["traj"]), d["turn"], d["rewards"], d["done"], values, gamma=gamma, lam=lam,
                               bootstrap_truncated=boot)
    np.testing.assert_allclose(got.advantages, want[0], **ATOL)
    np.testing.assert_allclose(got.returns, want[1], **ATOL)
    twin = flat_torch.turn_gae(torch_layout(d), torch.as_tensor(d["rewards"]), torch.as_tensor(d["done"]),
                               None if values is None else torch.as_tensor(values), gamma, lam, boot)
    np.testing.assert_allclose(twin[0].numpy(), want[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(twin[1].numpy(), want[1], rtol=1e-10, atol=1e-10)


def test_turn_gae_closed_form():
    # gamma = lam = 1, done at the end: A_t = sum of rewards from t on - V_t.
    layout = hiper.build_layout(np.zeros(4, np.int64), np.arange(4))
    r = np.array([1, 2, 3, 4], np.float32)
    v = np.array([0.5, 0, 1, 2], np.float32)
    out = hiper.turn_gae(layout, r, np.array([0, 0, 0, 1], bool), v)
    np.testing.assert_allclose(out.advantages, [10 - 0.5, 9, 7 - 1, 4 - 2])
    np.testing.assert_allclose(out.returns, [10, 9, 7, 4])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("contiguous", [False, True])
def test_token_gae_matches_oracle_and_twin(seed, contiguous):
    rng = np.random.default_rng(seed)
    r, v, m = random_tokens(rng, contiguous=contiguous)
    gamma, lam = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.0, 1.0))
    got = hiper.token_gae(r, v, m, gamma=gamma, lam=lam)
    want = flat_loops.token_gae(r, v, m, gamma=gamma, lam=lam)
    np.testing.assert_allclose(got.advantages, want[0], **ATOL)
    np.testing.assert_allclose(got.returns, want[1], **ATOL)
    twin = flat_torch.token_gae(torch.as_tensor(r), torch.as_tensor(v), torch.as_tensor(m), gamma, lam)
    np.testing.assert_allclose(twin[0].numpy(), want[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(twin[1].numpy(), want[1], rtol=1e-10, atol=1e-10)
    if contiguous:  # right-padded rows: identical to the older verl loop over every position
        # (there, padding carries no reward: verl's reward managers write none)
        r0 = np.where(m, r, 0).astype(np.float32)
        got = hiper.token_gae(r0, v, m, gamma=gamma, lam=lam)
        old = flat_loops.token_gae_unmasked(r0, v, m, gamma=gamma, lam=lam)
        np.testing.assert_allclose(got.advantages, old[0], **ATOL)
        np.testing.assert_allclose(got.returns, old[1], **ATOL)


def test_token_gae_ignores_masked_positions():
    rng = np.random.default_rng(0)
    r, v, m = random_tokens(rng)
    r2, v2 = r.copy(), v.copy()
    r2[~m] = 1e6
    v2[~m] = -1e6
    a, b = hiper.token_gae(r, v, m, gamma=0.9, lam=0.7), hiper.token_gae(r2, v2, m, gamma=0.9, lam=0.7)
    np.testing.assert_array_equal(a.advantages, b.advantages)
    assert not a.advantages[~m].any() and not a.returns[~m].any()


@pytest.mark.parametrize("seed", range(5))
def test_masked_whiten_matches_oracle_and_twin(seed):
    rng = np.random.default_rng(seed)
    x, _, m = random_tokens(rng)
    x = x * 3 + 5
    got = hiper.masked_whiten(x, m)
    np.testing.assert_allclose(got, flat_loops.masked_whiten(x, m), **ATOL)
    np.testing.assert_allclose(flat_torch.masked_whiten(torch.as_tensor(x), torch.as_tensor(m)).numpy(),
                               flat_loops.masked_whiten(x, m), rtol=1e-10, atol=1e-10)
    assert abs(got[m].mean()) < 1e-5 and abs(got[m].std(ddof=1) - 1) < 1e-4


def test_masked_whiten_degenerate_masks():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(hiper.masked_whiten(x, np.zeros((2, 3), bool)), np.zeros((2, 3)))
    one = np.zeros((2, 3), bool)
    one[1, 2] = True
    np.testing.assert_array_equal(hiper.masked_whiten(x, one), np.zeros((2, 3)))


@pytest.mark.parametrize("seed", range(5))
def test_episode_returns(seed):
    d = random_rows(np.random.default_rng(seed))
    layout = hiper.build_layout(d["traj"], d["turn"])
    want = flat_loops.episode_returns(list(d["traj"]), d["turn"], d["rewards"])
    np.testing.assert_allclose(hiper.episode_returns(layout, d["rewards"]), want, **ATOL)
    np.testing.assert_allclose(flat_torch.episode_returns(torch_layout(d), torch.as_tensor(d["rewards"])).numpy(),
                               want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["grpo", "rloo", "center"])
@pytest.mark.parametrize("with_samples", [False, True])
@pytest.mark.parametrize("singleton", ["keep", "zero"])
def test_group_advantages_match_oracle_and_twin(seed, mode, with_samples, singleton):
    rng = np.random.default_rng(seed)
    n = 40
    groups = rng.integers(0, 9, size=n)  # some groups have one member, some none
    scores = (rng.normal(size=n) * 4 + 2).astype(np.float32)
    samples = rng.random(n) < 0.7 if with_samples else None
    got = hiper.group_advantages(scores, groups, mode=mode, samples=samples, singleton=singleton)
    want = flat_loops.group_advantages(scores, list(groups), mode, samples=samples, singleton=singleton)
    np.testing.assert_allclose(got, want, **ATOL)
    dense = torch.as_tensor(np.unique(groups, return_inverse=True)[1].reshape(-1))
    twin = flat_torch.group_advantages(torch.as_tensor(scores), dense, mode,
                                       None if samples is None else torch.as_tensor(samples), singleton=singleton)
    np.testing.assert_allclose(twin.numpy(), want, rtol=1e-10, atol=1e-10)


def test_group_advantages_hashable_ids_and_known_values():
    scores = np.array([1, 2, 3, 10, 7], np.float32)
    groups = ["a", "a", "a", ("b", 1), "c"]
    grpo = hiper.group_advantages(scores, groups, mode="grpo")
    np.testing.assert_allclose(grpo[:3], [-1, 0, 1], rtol=1e-5)  # std of 1, 2, 3 is 1 (unbiased)
    np.testing.assert_allclose(grpo[3:], [10 / (1 + 1e-6), 7 / (1 + 1e-6)], rtol=1e-6)  # singletons: mean 0, std 1
    rloo = hiper.group_advantages(scores, groups, mode="rloo")
    np.testing.assert_allclose(rloo, [1 - 2.5, 2 - 2, 3 - 1.5, 10, 7], rtol=1e-6)  # x minus the others' mean


def test_first_turns_count_each_trajectory_once():
    layout = hiper.build_layout(np.array([5, 5, 2, 2, 2, 9]), np.array([1, 0, 2, 0, 1, 0]))
    np.testing.assert_array_equal(hiper.first_turns(layout), [False, True, False, True, False, True])
    # Trajectory 2 has 3 turns and trajectory 5 two, all scored with the episode reward:
    # per-turn samples weight trajectory 2 more; one sample per trajectory does not.
    scores = np.array([0, 0, 1, 1, 1, 0], np.float32)
    groups = np.zeros(6, np.int64)
    per_traj = hiper.group_advantages(scores, groups, mode="center", samples=hiper.first_turns(layout))
    np.testing.assert_allclose(per_traj, scores - 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mode", ["mean_norm", "mean_std_norm"])
@pytest.mark.parametrize("with_penalty", [False, True])
def test_gigpo_matches_oracle_and_twin(seed, mode, with_penalty):
    rng = np.random.default_rng(seed)
    d = random_rows(rng, num_traj=12)
    n = len(d["traj"])
    groups = d["traj"] // 4  # 3 episode groups of 4 trajectories
    anchors = np.array([f"obs-{k}" for k in rng.integers(0, 4, size=n)], dtype=object)
    penalty = (0.1 * (rng.random(n) < 0.3)).astype(np.float32) if with_penalty else None
    scores = hiper.episode_returns(hiper.build_layout(d["traj"], d["turn"]), d["rewards"])
    layout = hiper.build_layout(d["traj"], d["turn"])
    got = hiper.gigpo_advantages(layout, scores, d["rewards"], d["done"], groups, anchors, gamma=0.95, mode=mode,
                                 step_penalty=penalty)
    want = flat_loops.gigpo_advantages(list(d["traj"]), d["turn"], scores, d["rewards"], d["done"], list(groups),
                                       list(anchors), gamma=0.95, mode=mode, step_penalty=penalty)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    anchor_codes = torch.as_tensor(np.unique(anchors.astype(str), return_inverse=True)[1].reshape(-1))
    twin = flat_torch.gigpo_advantages(torch_layout(d), torch.as_tensor(scores), torch.as_tensor(d["rewards"]),
                                       torch.as_tensor(d["done"]), torch.as_tensor(groups), anchor_codes, 0.95, 1.0,
                                       mode, step_penalty=None if penalty is None else torch.as_tensor(penalty))
    np.testing.assert_allclose(twin.numpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["mean_norm", "mean_std_norm"])
def test_gigpo_step_group_of_one_turn_scores_zero(mode):
    """The authors' step_norm_reward: a step group's mean is its own return when it has one
    member, so its step advantage is 0 (GRPO's singleton rule would keep the return)."""
    got = hiper.gigpo_combine(np.array([1, 0], np.float32), np.array([1, 0], np.float32), ["g", "g"],
                              ["obs a", "obs b"], mode=mode)
    # Episode group {1, 0}: mean 0.5 (and unbiased std sqrt(0.5) under mean_std_norm); both step groups single.
    episode = 0.5 if mode == "mean_norm" else 0.5 / (np.sqrt(0.5) + 1e-6)
    np.testing.assert_allclose(got, [episode, -episode], rtol=1e-6)
    how = "center" if mode == "mean_norm" else "grpo"
    np.testing.assert_allclose(hiper.group_advantages([1.0, 0.0], ["a", "b"], mode=how, singleton="zero"), [0, 0])
    np.testing.assert_allclose(flat_loops.group_advantages([1.0, 0.0], ["a", "b"], how, singleton="zero"), [0, 0])
    twin = flat_torch.group_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 1]), how, singleton="zero")
    np.testing.assert_allclose(twin.numpy(), [0, 0])


def invalid_first_turn_rollouts():
    """Two rollouts (a, b) of one game, two turns each, all rewards 0; rollout a's first turn
    is invalid and both first turns saw the same observation. Rows: a0, a1, b0, b1."""
    traj, turn = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    return dict(traj=traj, turn=turn, rewards=np.zeros(4, np.float32), dones=np.array([False, True, False, True]),
                valid=np.array([False, True, True, True]), groups=["game"] * 4,
                anchors=["start", "a after 1", "start", "b after 1"])


def test_gigpo_step_part_carries_the_invalid_action_penalty():
    """The authors discount the step returns first, then subtract coef * invalid from each
    turn's own step return. By hand, coef 0.1, mean_norm, step weight 1:
      episode: scores [-0.1, 0, 0, 0] (episode total - penalty), mean -0.025 -> [-0.075, 0.025, 0.025, 0.025]
      step:    returns [-0.1, 0, 0, 0]; group {a0, b0} mean -0.05 -> [-0.05, 0, 0.05, 0] (a1, b1 alone: 0)
    """
    r = invalid_first_turn_rollouts()
    want = [-0.125, 0.025, 0.075, 0.025]
    layout = hiper.build_layout(r["traj"], r["turn"])
    penalty = 0.1 * (1 - r["valid"].astype(np.float32))
    scores = hiper.episode_returns(layout, r["rewards"]) - penalty
    got = hiper.gigpo_advantages(layout, scores, r["rewards"], r["dones"], r["groups"], r["anchors"],
                                 step_penalty=penalty)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hiper.gigpo_step_returns(layout, r["rewards"], r["dones"], step_penalty=penalty),
                               [-0.1, 0, 0, 0], rtol=1e-6)
    oracle = flat_loops.gigpo_advantages(list(r["traj"]), r["turn"], scores, r["rewards"], r["dones"], r["groups"],
                                         r["anchors"], step_penalty=penalty)
    np.testing.assert_allclose(oracle, want, rtol=1e-6, atol=1e-7)


def test_gigpo_trainer_path_carries_the_invalid_action_penalty():
    from hiper.estimators import FlatConfig, flat_advantages

    r = invalid_first_turn_rollouts()
    resp = torch.ones(4, 3, dtype=torch.bool)
    out = flat_advantages("gigpo", hiper.build_layout(r["traj"], r["turn"]), rewards=r["rewards"], dones=r["dones"],
                          is_action_valid=r["valid"], response_mask=resp, groups=r["groups"], anchors=r["anchors"],
                          config=FlatConfig(invalid_action_penalty_coef=0.1, gigpo_step_weight=1.0,
                                            gigpo_mode="mean_norm"))
    want = np.array([-0.125, 0.025, 0.075, 0.025], np.float32)
    np.testing.assert_allclose(out.advantages.numpy(), np.repeat(want[:, None], 3, axis=1), rtol=1e-6, atol=1e-7)


def test_turn_gae_whitens_like_verl():
    """turn_gae's advantages are whitened with verl's masked_whiten: unbiased variance, eps
    inside the square root. One trajectory with rewards [1, 0], gamma = lam = 1, V = 0:
    A = [1, 0], mean 0.5, unbiased variance 0.5 -> (A - 0.5) / sqrt(0.5 + 1e-8) = +-0.7071
    (the population std would give +-1)."""
    from hiper.estimators import FlatConfig, flat_advantages

    resp = torch.tensor([[True, True, False], [True, False, False]])
    out = flat_advantages("turn_gae", hiper.build_layout(np.array([0, 0]), np.array([0, 1])),
                          rewards=np.array([1, 0], np.float32), dones=np.array([False, True]),
                          is_action_valid=np.ones(2, bool), response_mask=resp, values=torch.zeros(2, 3),
                          config=FlatConfig(reward="turn", gamma=1.0, lam=1.0))
    half = 0.5 / np.sqrt(0.5 + 1e-8)
    np.testing.assert_allclose(out.advantages.numpy(), [[half, half, 0], [-half, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(hiper.masked_whiten(np.array([1, 0], np.float32), np.ones(2, bool)), [half, -half],
                               rtol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_masked_whiten_of_turns_matches_oracle_and_twin(seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=17) * 3 + 1).astype(np.float32)
    m = rng.random(17) < 0.7
    want = flat_loops.masked_whiten(x, m)
    np.testing.assert_allclose(hiper.masked_whiten(torch.as_tensor(x), torch.as_tensor(m)).numpy(), want, **ATOL)
    np.testing.assert_allclose(flat_torch.masked_whiten(torch.as_tensor(x), torch.as_tensor(m)).numpy(), want,
                               rtol=1e-10, atol=1e-10)
    assert hiper.masked_whiten(np.zeros(0, np.float32), np.zeros(0, bool)).shape == (0,)


def test_token_placement_helpers():
    m = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], bool)
    placed = hiper.last_token_scores(np.array([3, 4, 5], np.float32), m)
    np.testing.assert_array_equal(placed, [[0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 5, 0]])
    spread = hiper.broadcast_to_tokens(torch.tensor([3.0, 4.0, 5.0]), torch.as_tensor(m))
    assert isinstance(spread, torch.Tensor)
    np.testing.assert_array_equal(spread.numpy(), [[3, 3, 0, 0], [0, 0, 0, 0], [5, 0, 5, 0]])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), num_traj=st.integers(1, 6), max_turns=st.integers(1, 7),
       gamma=st.floats(0.0, 1.0), lam=st.floats(0.0, 1.0), boot=st.booleans())
def test_turn_gae_property(seed, num_traj, max_turns, gamma, lam, boot):
    d = random_rows(np.random.default_rng(seed), num_traj, max_turns)
    layout = hiper.build_layout(d["traj"], d["turn"])
    got = hiper.turn_gae(layout, d["rewards"], d["done"], d["values"], gamma=gamma, lam=lam, bootstrap_truncated=boot)
    want = flat_loops.turn_gae(list(d["traj"]), d["turn"], d["rewards"], d["done"], d["values"], gamma=gamma,
                               lam=lam, bootstrap_truncated=boot)
    np.testing.assert_allclose(got.advantages, want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda lay: hiper.turn_gae(lay, np.zeros(3, np.float32), np.zeros(2, bool)), "dones"),
    (lambda lay: hiper.turn_gae(lay, np.zeros(3, np.float32), np.zeros(3, bool), gamma=1.5), "gamma"),
    (lambda lay: hiper.turn_gae(lay, np.array([0, np.nan, 0], np.float32), np.zeros(3, bool)), "rewards"),
    (lambda lay: hiper.token_gae(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), np.ones((2, 3), bool)),
     "values"),
    (lambda lay: hiper.group_advantages(np.zeros(3, np.float32), [0, 1], mode="grpo"), "groups"),
    (lambda lay: hiper.group_advantages(np.zeros(2, np.float32), [0, 1], mode="ppo"), "mode"),
    (lambda lay: hiper.group_advantages(np.zeros(2, np.float32), np.array([0, -1]), mode="grpo"), "groups"),
    (lambda lay: hiper.masked_whiten(np.zeros((2, 3), np.float32), np.ones((3, 2), bool)), "mask"),
    (lambda lay: hiper.masked_whiten(np.zeros((2, 3, 1), np.float32), np.ones((2, 3, 1), bool)), "x"),
    (lambda lay: hiper.group_advantages(np.zeros(2, np.float32), [0, 1], singleton="drop"), "singleton"),
    (lambda lay: hiper.gigpo_step_returns(lay, np.zeros(3, np.float32), np.zeros(3, bool),
                                          step_penalty=np.zeros(2, np.float32)), "step_penalty"),
    (lambda lay: hiper.gigpo_step_returns(lay, np.zeros(3, np.float32), np.zeros(3, bool),
                                          step_penalty=np.array([0, np.nan, 0], np.float32)), "step_penalty"),
    (lambda lay: hiper.gigpo_advantages(lay, np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, bool),
                                        [0, 0, 0], ["a"]), "anchors"),
])
def test_bad_input_names_the_argument(call, match):
    layout = hiper.build_layout(np.array([0, 0, 1]), np.array([0, 1, 0]))
    with pytest.raises((ValueError, TypeError), match=match):
        call(layout)


@pytest.mark.parametrize("estimator", ["gae", "turn_gae", "grpo", "rloo", "gigpo"])
def test_trainer_estimators_compose_the_oracle(estimator):
    from hiper.estimators import FlatConfig, first_token_mask, flat_advantages

    rng = np.random.default_rng(3)
    d = random_rows(rng, num_traj=8)
    n, length = len(d["traj"]), 11
    lengths = rng.integers(1, length + 1, size=n)
    resp = torch.as_tensor(np.arange(length)[None, :] < lengths[:, None])
    values = torch.as_tensor(rng.normal(size=(n, length)).astype(np.float32))
    valid = rng.random(n) < 0.7
    groups = d["traj"] // 2
    anchors = [f"o{k}" for k in rng.integers(0, 3, size=n)]
    cfg = FlatConfig(gamma=0.9, lam=0.8, invalid_action_penalty_coef=0.1)
    layout = hiper.build_layout(d["traj"], d["turn"])
    got = flat_advantages(estimator, layout, rewards=d["rewards"], dones=d["done"], is_action_valid=valid,
                          response_mask=resp, values=values, groups=groups, anchors=anchors, config=cfg)

    traj = list(d["traj"])
    scores = flat_loops.episode_returns(traj, d["turn"], d["rewards"]) - 0.1 * (1 - valid)
    m = resp.numpy()
    if estimator == "gae":
        token_rewards = np.zeros((n, length))
        token_rewards[np.arange(n), lengths - 1] = scores
        adv, ret = flat_loops.token_gae(token_rewards, values.numpy(), m, gamma=0.9, lam=0.8)
        want_adv, want_ret, want_vmask = flat_loops.masked_whiten(adv, m), ret, m
    elif estimator == "turn_gae":
        v0 = values.numpy()[:, 0]
        adv, ret = flat_loops.turn_gae(traj, d["turn"], scores, d["done"], v0, gamma=0.9, lam=0.8,
                                       bootstrap_truncated=True)
        adv = flat_loops.masked_whiten(adv, np.ones(n, bool))  # the authors' whitening: unbiased variance
        want_adv, want_vmask = adv[:, None] * m, first_token_mask(resp).numpy()
        want_ret = ret[:, None] * want_vmask
    else:
        if estimator == "gigpo":
            adv = flat_loops.gigpo_advantages(traj, d["turn"], scores, d["rewards"], d["done"], list(groups), anchors,
                                              gamma=0.95, step_penalty=0.1 * (1 - valid))
        else:
            adv = flat_loops.group_advantages(scores, list(groups), estimator)
        want_adv, want_ret, want_vmask = adv[:, None] * m, None, None
    np.testing.assert_allclose(got.advantages.numpy(), want_adv, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.loss_mask.numpy(), m)
    if want_ret is None:
        assert got.returns is None and got.value_mask is None
    else:
        np.testing.assert_allclose(got.returns.numpy(), want_ret, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(got.value_mask.numpy(), want_vmask)
