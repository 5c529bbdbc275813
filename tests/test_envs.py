"""Real environments (ALFWorld, TextWorld, ScienceWorld) and the worker pool."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hiper.envs import EnvPool, EnvSpec, EnvWorkerError
from hiper.envs import alfworld as alf

SHARED_ALFWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "alfworld"


def play_expert(env, limit=100):
    env.reset()
    info = env.last_info
    for _ in range(limit):
        step = env.step(info["expert_action"] or "look")
        info = step.info
        if step.done:
            return step
    return step


def test_packaged_alfworld_sample_is_winnable_by_the_expert():
    games = alf.list_games("valid_unseen", alf.SAMPLE_ROOT)
    assert len(games) >= 6 and len(alf.list_games("train", alf.SAMPLE_ROOT)) >= 6
    assert {alf.task_type_of(g) for g in games} <= set(alf.TASK_TYPES)
    for game in games[:2]:
        env = alf.AlfworldEnv(game, expert=True)
        try:
            step = play_expert(env)
            assert step.info["won"] and step.done and step.reward == alf.WIN_REWARD
        finally:
            env.close()


def test_alfworld_step_cap_truncates():
    env = alf.AlfworldEnv(alf.list_games("valid_unseen", alf.SAMPLE_ROOT)[0], max_steps=3)
    try:
        obs = env.reset()
        assert obs.task and obs.admissible_actions and "help" not in obs.admissible_actions
        steps = [env.step("look") for _ in range(3)]
        assert [s.done for s in steps] == [False, False, True]
        assert steps[-1].info["truncated"] and not steps[-1].info["won"]
        # an inadmissible action is just a no-op turn
        env.reset()
        assert not env.step("fly to the moon").done
    finally:
        env.close()


@pytest.mark.skipif(not SHARED_ALFWORLD.is_dir(), reason="the shared ALFWorld archive is not beside the checkout")
def test_full_alfworld_data_from_the_shared_archive(tmp_path_factory):
    root = alf.prepare_data(SHARED_ALFWORLD / "alfworld_tw-pddl_all_splits.tar.xz",
                            tmp_path_factory.mktemp("alfworld"))
    assert len(alf.list_games("valid_unseen", root)) == 134
    assert len(alf.list_games("valid_seen", root)) == 140
    assert len(alf.list_games("train", root)) == 3553
    assert alf.prepare_data(SHARED_ALFWORLD / "alfworld_tw-pddl_all_splits.tar.xz", root.parent) == root
    game = alf.list_games("valid_seen", root, task_types=("pick_and_place_simple",))[0]
    env = alf.AlfworldEnv(game, expert=True, max_steps=100)
    try:
        assert play_expert(env).info["won"]
    finally:
        env.close()


def test_missing_alfworld_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"split 'valid_train' under .*alfworld_sample.*ALFWORLD_DATA"):
        alf.list_games("valid_train")
    with pytest.raises(FileNotFoundError, match="split 'train' under " + str(tmp_path)):
        alf.list_games("train", root=tmp_path)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))  # set but empty: warn, use the sample
    with pytest.warns(UserWarning, match="holds no json_2.1.1"):
        assert alf.list_games("valid_unseen")


def test_textworld_cooking_walkthrough_wins(tmp_path, monkeypatch):
    from hiper.envs.textworld_cooking import CookingGame, TextWorldEnv, generate

    monkeypatch.setenv("HIPER_CACHE", str(tmp_path))
    game = CookingGame(recipe=2, take=1, go=1, seed=5)
    path = generate(game)
    assert path == generate(game)  # cached by its parameters
    env = TextWorldEnv(path)
    try:
        obs = env.reset()
        assert "cookbook" in obs.task.lower() or obs.task
        total = 0.0
        for action in env.walkthrough():
            step = env.step(action)
            total += step.reward
        assert step.done and step.info["won"] and total == step.info["max_score"] == step.info["score"]
    finally:
        env.close()


@pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")
def test_scienceworld_gold_path_wins():
    from hiper.envs.scienceworld import ScienceWorldEnv

    env = ScienceWorldEnv("boil", 0, max_steps=60)
    try:
        obs = env.reset()
        assert "boil" in obs.task and obs.admissible_actions
        for action in env.gold_actions():
            step = env.step(action)
            if step.done:
                break
        assert step.info["won"] and step.info["score"] == 100
    finally:
        env.close()


def counting_specs(n, **kwargs):
    return [EnvSpec("custom", {"factory": "envs_for_tests:CountingEnv", **kwargs}) for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 2])
def test_pool_steps_only_listed_environments(workers):
    with EnvPool(counting_specs(3), num_workers=workers) as pool:
        obs = pool.reset([0, 1, 2])
        assert [o.text for o in obs] == ["count 0", "count 1", "count 2"]
        steps = pool.step({0: "inc", 2: "inc"})
        assert sorted(steps) == [0, 2]
        assert steps[2].done and steps[2].info["won"] and not steps[0].done


def test_pool_reports_a_crashed_worker_and_recovers():
    with EnvPool(counting_specs(2, crash_on="boom"), num_workers=2, timeout=60) as pool:
        pool.reset([0, 0])
        with pytest.raises(EnvWorkerError, match=r"worker 1 failed.*#1 custom.*seed=0"):
            pool.step({1: "boom"})
        pool.reset([0, 0])  # the worker was restarted
        assert pool.step({1: "inc"})[1].observation.text == "count 1"


@pytest.mark.parametrize("workers", [0, 1])
def test_pool_reports_an_environment_exception(workers):
    with EnvPool(counting_specs(1), num_workers=workers) as pool:
        pool.reset()
        with pytest.raises(EnvWorkerError, match="the environment broke"):
            pool.step({0: "raise"})


def test_pool_bad_input():
    with pytest.raises(ValueError, match="specs"):
        EnvPool([])
    with EnvPool(counting_specs(1)) as pool:
        pool.reset()
        with pytest.raises(ValueError, match="unknown environment"):
            pool.step({5: "inc"})
    with pytest.raises(ValueError, match="kind"):
        EnvSpec("minecraft").make()


def test_pool_reports_a_worker_that_died_between_calls():
    with EnvPool(counting_specs(2), num_workers=2, timeout=60) as pool:
        pool.reset([0, 0])
        proc, _ = pool._workers[0]
        proc.kill()
        proc.join()
        with pytest.raises(EnvWorkerError, match="worker 0"):
            pool.step({0: "inc"})
        pool.reset([0, 0])
        assert pool.step({0: "inc"})[0].observation.text == "count 1"
