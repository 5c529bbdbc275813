"""TextWorld-Express: the games, their splits and parameters, the subgoals cut from gold sequences,
and the commands a user runs on them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hiper.envs import twx
from hiper.envs.registry import evaluation_specs, game_key, game_list, training_specs
from hiper.envs.twx_expert import plan_subgoals

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER = str(FIXTURES / "smollm2_tokenizer")


def _twx_available() -> bool:
    try:
        import textworld_express  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


needs_twx = pytest.mark.skipif(not _twx_available(), reason="needs textworld-express and Java")


def gold_games() -> list[dict]:
    """Gold sequences of real games with the game's answer to every action, recorded from
    TextWorld-Express 1.1.0 (tests/fixtures/twx_gold.json)."""
    return json.loads((FIXTURES / "twx_gold.json").read_text())


def cuts(game: dict) -> list[str]:
    """The subgoal of each stretch, in order (a new stretch where the subgoal changes)."""
    plan = plan_subgoals([tuple(step) for step in game["steps"]])
    return [subgoal for k, (subgoal, _) in enumerate(plan) if k == 0 or subgoal != plan[k - 1][0]]


# The subgoal cuts, on real gold sequences -------------------------------------------------------------------

def test_cookingworld_gold_sequence_cut_into_named_stretches():
    game = gold_games()[0]
    assert (game["task"], game["params"], game["seed"]) == ("cookingworld", "ingredients=2", 0)
    assert cuts(game) == ["read the cookbook", "get the knife and the red apple", "get the chicken wing from the fridge",
                          "prepare the red apple", "cook the chicken wing in the toaster", "make and eat the meal"]
    plan = plan_subgoals([tuple(step) for step in game["steps"]])
    # Looking around serves the reading that follows it; closing the fridge ends the fetching before it.
    assert plan[0] == ("read the cookbook", "look around")
    assert plan[7] == ("get the chicken wing from the fridge", "close fridge")


def test_walks_are_named_by_the_room_they_end_in():
    game = gold_games()[1]
    assert (game["task"], game["params"]) == ("cookingworld", "rooms=3,ingredients=3")
    assert cuts(game) == ["read the cookbook", "get the knife", "get the water and the block of cheese from the fridge",
                          "search the kitchen cupboard", "go to the pantry", "get the flour", "go to the kitchen",
                          "chop the block of cheese", "go to the backyard", "cook the block of cheese in the barbeque",
                          "go to the kitchen", "make and eat the meal"]


def test_other_games_cut_alike():
    by_task = {g["task"]: g for g in gold_games()}
    assert cuts(by_task["mapreader"]) == ["read the map", "go to the chamber", "get the coin", "go to the cupboard",
                                          "put the coin in the box"]
    assert cuts(by_task["twc"])[:3] == ["go to the bathroom", "get the plaid bed sheet, the black duvet and the "
                                        "toilet paper", "put the toilet paper in the toilet roll holder"]
    assert cuts(by_task["coin"]) == ["go to the pantry", "get the coin"]


def test_every_gold_action_keeps_its_place_and_gets_a_short_subgoal():
    for game in gold_games():
        steps = [tuple(step) for step in game["steps"]]
        plan = plan_subgoals(steps)
        assert [action for _, action in plan] == [action for action, _ in steps]
        assert all(0 < len(subgoal) <= 80 for subgoal, _ in plan)
        # A subgoal is not the whole task: every sequence here has several stretches.
        assert len(cuts(game)) >= 2


# Parameters and splits --------------------------------------------------------------------------------------

def test_params_take_short_and_native_names_over_the_defaults():
    assert twx.parse_params("cookingworld", "rooms=3,numIngredients=4") == (
        "numLocations=3,numIngredients=4,numDistractorItems=0,includeDoors=0,limitInventorySize=0")
    assert twx.parse_params("mapreader", "distractors=2").count("maxDistractorItemsPerLocation=2") == 1
    assert twx.parse_params("cookingworld", None) == twx.parse_params("cookingworld", "")


@pytest.mark.parametrize("task, text, message", [
    ("cookingworld", "items=2", "cookingworld takes"),
    ("cookingworld", "rooms", "cookingworld takes"),
    ("cookingworld", "rooms=two", "numLocations must be an integer"),
    ("cookingworld", "doors=2", "includeDoors out of range"),
    ("cookingworld", "rooms=0", "numLocations out of range"),
    ("kitchen", "", "tasks: TextWorld-Express has the tasks"),
])
def test_bad_params_are_refused_naming_them(task, text, message):
    with pytest.raises(ValueError, match=message):
        twx.parse_params(task, text)


@needs_twx  # listing games checks their parameters with the game itself
def test_splits_share_no_game_and_follow_the_schedule():
    train = game_list("twx", "train", tasks=["cookingworld"], params="ingredients=3")
    dev = game_list("twx", "dev", tasks=["cookingworld"], params="ingredients=3")
    test = game_list("twx", "test", tasks=["cookingworld"], params="ingredients=3")
    assert len(train) == len(dev) == len(test) == 1000
    keys = [{game_key(s) for s in split} for split in (train, dev, test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert all(s.kwargs["params"].startswith("numLocations=1,numIngredients=3") for s in train)
    step = training_specs("twx", "train", 8, 3, seed=5, group_size=2, tasks=["cookingworld"])
    assert step == training_specs("twx", "train", 8, 3, seed=5, group_size=2, tasks=["cookingworld"])
    assert step[0] == step[1] and step[0] != step[2]
    assert {s.kwargs["split"] for s in evaluation_specs("twx", None, 10)} == {"dev"}


@needs_twx
def test_params_the_game_itself_refuses_fail_before_any_game_is_built():
    """twc puts away at most 4 items (TextWorld-Express's own limit): refused when the games are
    listed, in one line with the game's reason, not at the first reset of a training run."""
    with pytest.raises(ValueError, match=r"^game_params: TextWorld-Express refuses twc with .*numItemsToPutAway=5.*: "
                                         r"Number of items to put away must be 4 or fewer"):
        twx.games("train", "twc", "rooms=1,items=5", 10)
    assert len(twx.games("train", "twc", "rooms=1,items=4", 10)) == len(twx.SPLITS["train"])


def test_game_params_are_refused_where_games_take_none():
    with pytest.raises(ValueError, match="game_params: alfworld games take no parameters"):
        game_list("alfworld", "valid_unseen", data="sample", params="rooms=2")
    with pytest.raises(ValueError, match="game_params: keychest takes doors, key_reward; got 'rooms'"):
        game_list("keychest", "train", params="rooms=2")


# The real games ------------------------------------------------------------------------------------------

@needs_twx
def test_expert_wins_with_sparse_reward_and_partial_score():
    spec = game_list("twx", "train", tasks=["cookingworld"], params="ingredients=2", max_turns=40)[0]
    env = twx.TwxEnv(**{**spec.kwargs, "expert": True})
    observation = env.reset(123)
    assert observation.task.startswith("You are hungry!")
    assert observation.admissible_actions == sorted(observation.admissible_actions)
    rewards, scores, subgoals = [], [], []
    while True:
        subgoal, action = env.expert_turn()
        assert action in observation.admissible_actions
        subgoals.append(subgoal)
        step = env.step(action)
        rewards.append(step.reward)
        scores.append(step.info["score"])
        observation = step.observation
        if step.done:
            break
    assert step.info["won"] and rewards[-1] == twx.WIN_REWARD and not any(rewards[:-1])
    assert 0 < scores[len(scores) // 2] < 1 == scores[-1]  # the partial score rises along the way
    assert len(rewards) >= 10 and len(set(subgoals)) >= 4
    # The same game again after a reset (the seed argument does not pick the game; the spec does).
    again = env.reset(7)
    env.close()
    fresh = twx.TwxEnv(**spec.kwargs)
    assert fresh.reset(0).text == again.text
    fresh.close()


@needs_twx
def test_expert_gives_up_off_its_gold_path():
    from hiper.envs.base import ExpertError

    spec = game_list("twx", "train", tasks=["cookingworld"], max_turns=40)[1]
    env = twx.TwxEnv(**{**spec.kwargs, "expert": True})
    env.reset()
    env.step("inventory")  # the gold path starts with "look around"
    with pytest.raises(ExpertError, match="left the gold path"):
        env.expert_turn()
    env.close()


@needs_twx
def test_demonstrations_switch_where_the_subgoal_changes():
    from hiper import demos

    played = demos.collect("twx", "train", 4, max_turns=40, tasks=["cookingworld"], params="ingredients=2")
    assert len(played) == 4 and all(d.won for d in played)
    for demo in played:
        switches = [t for t in demo.turns if t.switch == "SWITCH"]
        assert demo.turns[0].switch == "SWITCH" and 4 <= len(switches) < len(demo.turns)
        for before, after in zip(demo.turns, demo.turns[1:]):
            assert (after.switch == "SWITCH") == (after.subgoal != before.subgoal)


@needs_twx
def test_train_and_eval_commands_on_twx(tmp_path):
    from cli_runs import hiper

    run_dir = tmp_path / "run"
    done = hiper("train", "--env", "twx", "--tasks", "cookingworld", "--game-params", "ingredients=1", "--tiny-model",
                 "--model", TOKENIZER,                 "--steps", "1", "--envs", "2", "--max-turns", "3", "--max-new-tokens", "8", "--eval-every", "1",
                 "--eval-envs", "2", "--run-dir", str(run_dir), "--progress", "false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "games: twx split train (1,000 games of tasks cookingworld)" in done.stdout
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 1 and row["eval"]["split"] == "dev" and row["eval"]["episodes"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["game_params"] == "ingredients=1" and config["env"] == "twx"
    report = hiper("eval", "--checkpoint", str(run_dir), "--env", "twx", "--tasks", "cookingworld", "--game-params",
                   "ingredients=1", "--episodes", "2", "--max-turns", "2", "--max-new-tokens", "8", "--progress",
                   "false", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert json.loads(report.stdout)["split"] == "test"  # hiper eval plays the test seeds


def test_bad_game_params_on_the_command_line_fail_in_one_line(tmp_path):
    from cli_runs import hiper

    done = hiper("train", "--env", "twx", "--game-params", "rooms=x", "--check", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "hiper: error: --game-params: numLocations must be an integer, got 'x'"


def test_missing_java_is_one_clear_error(monkeypatch):
    import shutil as shutil_module

    monkeypatch.setattr(twx, "_jvm", None)
    monkeypatch.setattr(shutil_module, "which", lambda name: None)
    with pytest.raises((FileNotFoundError, ImportError), match="env: twx needs"):
        twx._new_game_interface()
