"""The credit-assignment study (hiper.studies.credit): its exact answers, the unbiasedness
of the critic-based estimators with exact values, and the quick run end to end."""
import argparse
import json
import sys

import numpy as np
import pytest

from hiper.studies import credit as C

TINY = C.ChainTask(subtasks=2, steps=2, actions=3, horizon=6, slip=0.2)


def tiny_logits(skill: float = 1.5, seed: int = 1) -> np.ndarray:
    return C.skilled_logits(TINY, skill, np.random.default_rng(seed), noise=0.5)


def table_slices(task: C.ChainTask) -> dict[str, slice]:
    bounds = np.cumsum([0] + [int(np.prod(shape)) for shape in C.table_shapes(task)])
    return {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(("switch", "subgoal", "action"))}


def test_exact_gradient_matches_finite_differences():
    logits = tiny_logits()
    exact = C.solve_exactly(TINY, C.make_policy(TINY, logits))
    eps = 1e-6
    numeric = np.array([(C.success_probability(TINY, logits + eps * e) - C.success_probability(TINY, logits - eps * e))
                        / (2 * eps) for e in np.eye(logits.size)])
    assert np.abs(exact.gradient).max() > 1e-3  # not trivially zero
    np.testing.assert_allclose(exact.gradient, numeric, atol=1e-8)


def _success_by_enumeration(task: C.ChainTask, pi: C.Policy) -> float:
    """P(success) by walking every branch of the decision tree (no shared subproblems)."""
    need, correct, last = task.needed_subgoal(), task.correct_action(), task.num_states - 1

    def from_turn(t: int, s: int, prev: int) -> float:
        if t == task.horizon:
            return 0.0
        total = 0.0
        switch_probs = [(C.SWITCH, 1.0)] if t == 0 else [(q, pi.switch[s, prev, q]) for q in (C.KEEP, C.SWITCH)]
        for q, p_q in switch_probs:
            subgoals = [(o, pi.subgoal[s, o]) for o in range(task.subtasks)] if q == C.SWITCH else [(prev, 1.0)]
            for o, p_o in subgoals:
                for a in range(task.actions):
                    p = p_q * p_o * pi.action[s, o, a]
                    p_step = 1.0 - task.slip if (o == need[s] and a == correct[s]) else 0.0
                    after_step = 1.0 if s == last else from_turn(t + 1, s + 1, o)
                    total += p * (p_step * after_step + (1.0 - p_step) * from_turn(t + 1, s, o))
        return total

    return from_turn(0, 0, 0)


def test_exact_success_matches_enumeration_and_sampling():
    task = C.ChainTask(subtasks=2, steps=2, actions=2, horizon=5, slip=0.3)
    logits = C.skilled_logits(task, 2.0, np.random.default_rng(3), noise=1.0)
    pi = C.make_policy(task, logits)
    exact = C.solve_exactly(task, pi).success
    assert 0.05 < exact < 0.95
    assert exact == pytest.approx(_success_by_enumeration(task, pi), abs=1e-12)
    rollout = C.sample_rollouts(task, pi, 100_000, np.random.default_rng(0))
    sampled = rollout.reward.sum() / rollout.num_trajectories
    assert abs(sampled - exact) < 4 * np.sqrt(exact * (1 - exact) / rollout.num_trajectories)


def _bias_ratios(credit_fn, batch_transform=lambda batch: batch, batches: int = 3000, batch_size: int = 8):
    """||mean g - grad J||^2 / (tr Cov / M) per decision table: about 1 for an unbiased
    estimator whatever the covariance; under a Gaussian mean it is at worst chi^2_1 (one
    dominant direction), which exceeds 15 with probability 1e-4."""
    pi = C.make_policy(TINY, tiny_logits())
    exact = C.solve_exactly(TINY, pi)
    rollout = C.sample_rollouts(TINY, pi, batches * batch_size, np.random.default_rng(7))
    credit = credit_fn(batch_transform(C.prepare(rollout, exact.critic)), 4)
    grads = C.batch_gradients(TINY, pi, rollout, credit, batch_size)
    return {name: C.gradient_stats(grads[:, part], exact.gradient[part])["bias_ratio"]
            for name, part in table_slices(TINY).items()}


@pytest.mark.parametrize("key", [k for k, e in C.ESTIMATORS.items() if e.uses_critic])
def test_estimators_with_exact_values_are_unbiased(key):
    ratios = _bias_ratios(C.ESTIMATORS[key].credit)
    assert all(r < 15 for r in ratios.values()), ratios


def test_a_baseline_that_depends_on_the_subgoal_is_caught():
    """The check above has power: crediting the subgoal with a baseline that depends on the
    chosen subgoal (V^L(s, o) in place of V^H(s)) biases the subgoal gradient."""
    def subgoal_dependent(batch):
        return batch._replace(v_high=np.where(batch.rollout.switched, batch.v_low, batch.v_high))

    ratios = _bias_ratios(C.hae_credit, subgoal_dependent)
    assert ratios["subgoal"] > 100, ratios


def test_token_gae_credits_each_decision_with_return_minus_its_own_value():
    """gamma = lam = 1 inside a turn and the episode reward on its last token: each token's
    advantage is R - (the value before it)."""
    pi = C.make_policy(TINY, tiny_logits())
    rollout = C.sample_rollouts(TINY, pi, 64, np.random.default_rng(0))
    batch = C.prepare(rollout, C.solve_exactly(TINY, pi).critic)
    credit = C.token_gae_credit(batch, 4)
    R = batch.episode_reward
    np.testing.assert_allclose(credit.action, R - batch.v_low, atol=1e-6)
    chose = rollout.switched
    np.testing.assert_allclose(credit.subgoal[chose], (R - batch.v_high)[chose], atol=1e-6)
    decided = rollout.turn > 0
    np.testing.assert_allclose(credit.switch[decided], (R - batch.v_start)[decided], atol=1e-6)


def test_batch_gradients_match_a_loop_over_turns():
    pi = C.make_policy(TINY, tiny_logits())
    rollout = C.sample_rollouts(TINY, pi, 12, np.random.default_rng(2))
    rng = np.random.default_rng(5)
    credit = C.Credit(*(rng.standard_normal(rollout.turn.size) for _ in range(3)))
    expected = np.zeros((3, C.num_params(TINY)))
    for i in range(rollout.turn.size):
        g = [np.zeros(shape) for shape in C.table_shapes(TINY)]
        s, prev, o, a = rollout.state[i], rollout.prev_subgoal[i], rollout.subgoal[i], rollout.action[i]
        if rollout.turn[i] > 0:
            g[0][s, prev] = credit.switch[i] * (np.eye(2)[int(rollout.switched[i])] - pi.switch[s, prev])
        if rollout.switched[i]:
            g[1][s] = credit.subgoal[i] * (np.eye(TINY.subtasks)[o] - pi.subgoal[s])
        g[2][s, o] = credit.action[i] * (np.eye(TINY.actions)[a] - pi.action[s, o])
        expected[rollout.trajectory[i] // 4] += np.concatenate([x.ravel() for x in g]) / 4
    np.testing.assert_allclose(C.batch_gradients(TINY, pi, rollout, credit, 4), expected, atol=1e-12)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    C.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_quick_run_writes_the_json_and_plots(tmp_path, capsys):
    assert C.run(_parse("--quick", "--out", str(tmp_path))) == 0
    printed = capsys.readouterr().out
    assert "HAE" in printed and "GRPO" in printed
    record = json.loads((tmp_path / "credit.json").read_text())
    assert record["config"]["horizons"] == list(C.QUICK.horizons)
    for cell in record["cells"]:
        assert cell["success"] == pytest.approx(C.QUICK.target_success, abs=1e-6)
        assert set(cell["results"]["exact"]) == set(C.ESTIMATORS)
        assert all(np.isfinite(r["rel_var"]) and -1 <= r["cosine"] <= 1 for r in cell["results"]["exact"].values())
    curves = record["learning"]["curves"]["exact"]
    assert all(np.asarray(runs).shape == (C.QUICK.seeds, C.QUICK.iterations + 1) for runs in curves.values())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plots written" in printed
    else:
        assert (tmp_path / "variance.png").stat().st_size > 0
        assert (tmp_path / "learning.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (("--batch-size", "6", "--group-size", "4"), "group_size"),
    (("--subtasks", "4", "--horizons", "3"), "out of reach"),
    (("--target-success", "1.5"), "target_success"),
    (("--actions", "1"), "actions"),
])
def test_bad_arguments_are_reported(tmp_path, capsys, argv, message):
    assert C.run(_parse("--quick", "--out", str(tmp_path / "out"), *argv)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_matplotlib_the_run_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert C.run(_parse("--quick", "--out", str(tmp_path))) == 0
    assert "no plots written" in capsys.readouterr().out
    assert (tmp_path / "credit.json").is_file() and not list(tmp_path.glob("*.png"))


def test_the_command_line_describes_the_study_as_the_package_does(capsys):
    from hiper.studies.credit.cli import DESCRIPTION

    assert " ".join(C.__doc__.split()).startswith(DESCRIPTION)
    with pytest.raises(SystemExit):
        C.main(["--help"])
    assert " ".join(capsys.readouterr().out.split()).count(DESCRIPTION) == 1
