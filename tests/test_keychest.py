"""keychest: the two-turn game as it always was, and the longer game with doors (`--game-params
doors=K`): K + 1 two-turn segments, a sparse reward with key_reward=0, and an expert whose
subgoals cut the game into those segments."""
from __future__ import annotations

import pytest

from hiper import demos
from hiper.envs import keychest
from hiper.envs.keychest import KeyChestEnv
from hiper.envs.registry import game_list


def play(env, actions):
    env.reset()
    return [env.step(a) for a in actions]


def test_the_two_turn_game_is_unchanged():
    specs = game_list("keychest", "train")
    assert len(specs) == len(keychest.SPLITS["train"]) * 6
    assert specs[0].kwargs == {"factory": "hiper.envs.keychest:KeyChestEnv", "room": 101, "order": 0, "max_steps": 50}
    env = KeyChestEnv(101, 0)
    steps = play(env, ["look around", "take key", "open chest"])
    assert [s.reward for s in steps] == [0.0, 5.0, 10.0] and steps[-1].done and steps[-1].info["won"]
    assert env.reset().text == "You are in room 101. A key lies on the table. The chest is locked."


@pytest.mark.parametrize("doors", [1, 3])
def test_a_win_is_every_hall_in_turn_and_pays_only_at_the_chest(doors):
    env = KeyChestEnv(150, 5, max_steps=2 * doors + 4, doors=doors, key_reward=0.0)
    assert sorted(env.reset().admissible_actions) == sorted(keychest.CORRIDOR_ACTIONS)
    steps = play(env, ["take key", "open door"] * doors + ["take key", "open chest"])
    assert [s.reward for s in steps] == [0.0] * (2 * doors + 1) + [10.0]
    assert steps[-1].done and steps[-1].info["won"] and not any(s.done for s in steps[:-1])
    assert "hall 2 of" in steps[1].observation.text


def test_wrong_actions_waste_turns_and_change_nothing():
    env = KeyChestEnv(150, 0, max_steps=20, doors=2, key_reward=5.0)
    start = env.reset().text
    for action in ("open door", "open chest", "look around"):  # no key yet
        step = env.step(action)
        assert step.reward == 0.0 and step.observation.text == "Nothing happens. " + start
    assert env.step("take key").reward == 5.0
    assert env.step("open chest").reward == 0.0  # a hall with a door: the chest is further on
    assert env.step("take key").reward == 0.0  # one key per hall
    assert "hall 2 of 3" in env.step("open door").observation.text


def test_the_expert_cuts_one_segment_per_hall_and_wins():
    played = demos.collect("keychest", "train", 3, max_turns=12, params="doors=2,key_reward=0")
    assert len(played) == 3
    for demo in played:
        assert demo.won and len(demo.turns) == 6
        assert [t.subgoal for t in demo.turns] == ["get through door 1"] * 2 + ["get through door 2"] * 2 + [
            "open the chest"] * 2
        assert [t.switch for t in demo.turns] == ["SWITCH", "KEEP"] * 3


def test_the_games_and_their_params():
    specs = game_list("keychest", "test", params="doors=2,key_reward=0")
    assert len(specs) == len(keychest.SPLITS["test"]) * 24
    specs = game_list("keychest", "test", params="doors=2,key_reward=0", max_turns=8)
    assert (specs[0].kwargs["doors"], specs[0].kwargs["key_reward"], specs[0].kwargs["max_steps"]) == (2, 0.0, 8)
    for params, message in (("doors=10", "doors expects 0 to 9"), ("doors=two", "doors expects an integer"),
                            ("key_reward=x", "key_reward expects a number"),
                            ("key_reward=nan", "key_reward expects a finite number"), ("halls=2", "keychest takes doors")):
        with pytest.raises(ValueError, match=f"^game_params: {message}"):
            game_list("keychest", "train", params=params)
    with pytest.raises(ValueError, match="doors: expected an integer from 0 to 9"):
        KeyChestEnv(doors=-1)
    with pytest.raises(ValueError, match="order: expected 0 to 23"):
        KeyChestEnv(order=24, doors=1)
