"""Real environments (ALFWorld, TextWorld, ScienceWorld) and the worker pool."""
from __future__ import annotations

import contextlib
import shutil
import signal
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
    # Nothing falls back to the packaged sample: it is asked for by name, or the error says how to get data.
    with pytest.raises(FileNotFoundError, match=r"ALFWORLD_DATA: not set.*hiper prepare-data.*--data sample"):
        alf.list_games("valid_unseen")
    with pytest.raises(FileNotFoundError, match=r"split 'valid_train' under .*alfworld_sample.*ALFWORLD_DATA"):
        alf.list_games("valid_train", "sample")
    (tmp_path / "json_2.1.1").mkdir()
    with pytest.raises(FileNotFoundError, match="split 'train' under " + str(tmp_path)):
        alf.list_games("train", root=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"data: {empty} holds no json_2.1.1"):
        alf.list_games("train", root=empty)
    for value in (str(empty), str(tmp_path / "missing")):  # set, but empty or missing: an error naming it
        monkeypatch.setenv("ALFWORLD_DATA", value)
        with pytest.raises(FileNotFoundError, match=f"ALFWORLD_DATA: {value} holds no json_2.1.1"):
            alf.list_games("valid_unseen")
    with pytest.raises(ValueError, match="tasks: unknown ALFWorld task types"):
        alf.list_games("valid_unseen", "sample", task_types=("pick_and_juggle",))


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
    with pytest.raises(TypeError, match="specs: expected EnvSpec"):
        EnvPool(["alfworld"])
    with pytest.raises(ValueError, match="num_workers"):
        EnvPool(counting_specs(1), num_workers=-1)
    with pytest.raises(ValueError, match="timeout"):
        EnvPool(counting_specs(1), timeout=0)
    with EnvPool(counting_specs(1)) as pool:
        pool.reset()
        with pytest.raises(TypeError, match="actions: expected a dict"):
            pool.step(["inc"])


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


def test_pool_stays_in_step_after_a_worker_crash():
    # Worker 0 holds environments 0 and 2 and crashes; worker 1 (1 and 3) answers. Its answer must be read
    # during the failed call, not handed to the next one.
    with EnvPool(counting_specs(4, crash_on="boom", goal=100), num_workers=2, timeout=60) as pool:
        pool.reset([0, 10, 20, 30])
        with pytest.raises(EnvWorkerError, match=r"worker 0 failed during step"):
            pool.step({0: "boom", 1: "inc", 2: "inc", 3: "inc"})
        assert [o.text for o in pool.reset([5, 6, 7, 8])] == ["count 5", "count 6", "count 7", "count 8"]
        steps = pool.step({i: "inc" for i in range(4)})
        assert [steps[i].observation.text for i in range(4)] == ["count 6", "count 7", "count 8", "count 9"]


def test_pool_kills_a_worker_that_stops_answering():
    with EnvPool(counting_specs(2, goal=100), num_workers=2, timeout=2) as pool:
        pool.reset([0, 0])
        with pytest.raises(EnvWorkerError, match=r"worker 0 failed during step \(no answer within 2 s\).*#0 custom"):
            pool.step({0: "sleep 120", 1: "inc"})
        assert [o.text for o in pool.reset([3, 4])] == ["count 3", "count 4"]
        steps = pool.step({0: "inc", 1: "inc"})
        assert (steps[0].observation.text, steps[1].observation.text) == ("count 4", "count 5")


def test_pool_says_which_environments_failed_and_refuses_to_step_them_until_reset():
    with EnvPool(counting_specs(3, crash_on="boom", goal=100), num_workers=2, timeout=60) as pool:
        with pytest.raises(EnvWorkerError, match=r"not reset.*#0 custom"):
            pool.step({0: "inc"})  # never reset: would play a game nobody started
        pool.reset([0, 10, 20])
        with pytest.raises(EnvWorkerError, match=r"worker 0 failed during step \(it died, exit code 3\)") as failure:
            pool.step({0: "boom", 1: "inc"})
        # Worker 0 held environments 0 and 2: both lost; environment 1 completed the step.
        assert failure.value.failed == [0, 2]
        assert {i: s.observation.text for i, s in failure.value.results.items()} == {1: "count 11"}
        for lost in (0, 2):
            with pytest.raises(EnvWorkerError, match=rf"reset\(\) first: #{lost} custom"):
                pool.step({lost: "inc"})
        assert pool.step({1: "inc"})[1].observation.text == "count 12"  # it carries on
        pool.reset([1, 2, 3])
        assert pool.step({0: "inc", 2: "inc"})[2].observation.text == "count 4"


def test_in_process_pool_runs_every_environment_and_names_the_failed_ones():
    with EnvPool(counting_specs(3, goal=100)) as pool:
        pool.reset([0, 10, 20])
        with pytest.raises(EnvWorkerError, match=r"#0 custom.*the environment broke\n.*#2 custom") as failure:
            pool.step({0: "raise", 1: "inc", 2: "raise"})
        assert failure.value.failed == [0, 2]
        assert {i: s.observation.text for i, s in failure.value.results.items()} == {1: "count 11"}
        with pytest.raises(EnvWorkerError, match=r"reset\(\) first: #2 custom"):
            pool.step({2: "inc"})
        assert [o.text for o in pool.reset([5, 6, 7])] == ["count 5", "count 6", "count 7"]
        assert pool.step({2: "inc"})[2].observation.text == "count 8"


@contextlib.contextmanager
def expect_interrupt():
    """Yields `interrupt_after(seconds)`, which arms a KeyboardInterrupt in the main thread as Ctrl-C would
    raise it; the block must end with that interrupt."""
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="looks processes up in /proc")
def test_pool_interrupted_mid_call_leaves_no_process_behind():
    # Leaving the `with` block closes the pool, which must kill and reap every worker, the busy one
    # included: no process left running and no zombie in /proc.
    with expect_interrupt() as interrupt_after:
        with EnvPool(counting_specs(2, goal=100), num_workers=2, timeout=60) as pool:
            pool.reset()
            pids = [proc.pid for proc, _ in pool._workers]
            interrupt_after(0.5)
            pool.step({0: "sleep 120", 1: "inc"})
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    with pytest.raises(RuntimeError, match="after close"):
        pool.reset()


def test_pool_interrupted_mid_call_stays_in_step():
    with EnvPool(counting_specs(3, goal=100), num_workers=2, timeout=60) as pool:
        pool.reset([0, 10, 20])
        with expect_interrupt() as interrupt_after:
            interrupt_after(0.5)
            pool.step({0: "sleep 5", 1: "inc"})
        # The caller saw no result: 0 and 1 may or may not have stepped; 2 lived in the busy worker.
        for unknown in (0, 1, 2):
            with pytest.raises(EnvWorkerError, match=rf"reset\(\) first: #{unknown} custom"):
                pool.step({unknown: "inc"})
        assert [o.text for o in pool.reset([1, 2, 3])] == ["count 1", "count 2", "count 3"]
        steps = pool.step({0: "inc", 1: "inc", 2: "inc"})
        assert [steps[i].observation.text for i in range(3)] == ["count 2", "count 3", "count 4"]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="looks processes up in /proc")
def test_pool_close_kills_a_worker_that_does_not_finish_closing():
    pool = EnvPool(counting_specs(2, close_seconds=120), num_workers=2, timeout=1)
    pool.reset()
    pids = [proc.pid for proc, _ in pool._workers]
    pool.close()  # the workers get `timeout` to close their environments, then are killed
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    pool.close()  # a second close is harmless
