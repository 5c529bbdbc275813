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


def test_plan_noise_writes_a_wrong_subgoal_and_acts_on_it():
    """demos' plan_noise: where the expert sets a new sub-goal, the demonstration may head for the
    chest too early ("open the chest", then "open chest") or look for another way ("look around"),
    either of which wastes the turn, and plan again on the next turn; turns inside a segment, and
    the last hall, are the expert's. plan_noise 0 plays the demonstrations as before, draw for draw."""
    params = "doors=2,key_reward=0"
    clean = demos.collect("keychest", "train", 40, max_turns=10, params=params, keep_lost=True, seed=3)
    assert clean == demos.collect("keychest", "train", 40, max_turns=10, params=params, keep_lost=True, seed=3,
                                  plan_noise=0.0)
    noisy = demos.collect("keychest", "train", 40, max_turns=10, params=params, keep_lost=True, seed=3,
                          plan_noise=0.5)
    mistakes = [(demo, k) for demo in noisy for k, t in enumerate(demo.turns) if t.action != t.expert_action]
    # Two early halls a game, each erring then again with probability 0.5: one mistake each on average.
    assert 50 <= len(mistakes) <= 110
    for demo, k in mistakes:
        turn = demo.turns[k]
        assert (turn.subgoal, turn.action) in (("open the chest", "open chest"), ("look for another way", "look around"))
        assert "hall 3 of 3" not in turn.observation  # never in the last hall: the chest is the right plan there
        assert turn.switch == ("KEEP" if k and demo.turns[k - 1].subgoal == turn.subgoal else "SWITCH")
        if k + 1 < len(demo.turns):  # the turn wasted: the same state, planned again
            assert demo.turns[k + 1].observation.startswith("Nothing happens. ")
    # Inside a segment (a KEEP turn of the expert's own sub-goal) the demonstration is the expert's.
    assert all(t.action == t.expert_action for d in noisy for t in d.turns
               if t.switch == "KEEP" and t.subgoal.startswith("get through door"))
    assert {t.subgoal for demo, k in mistakes for t in [demo.turns[k]]} == {"open the chest", "look for another way"}
    assert sum(d.won for d in noisy) < sum(d.won for d in clean) == 40


def test_plan_noise_is_refused_where_the_game_has_no_planning_errors(monkeypatch):
    with pytest.raises(ValueError, match="^plan_noise: expected a probability in"):
        demos.collect("keychest", "train", 1, plan_noise=1.0)
    env = KeyChestEnv(150, 0, doors=1)
    env.reset()
    assert env.expert_mistakes() == [("open the chest", "open chest"), ("look for another way", "look around")]
    env.step("take key")
    assert env.expert_mistakes() == []  # inside the segment: the plan is set
    env.step("open door")
    assert env.expert_mistakes() == []  # the last hall: heading for the chest is right
    from hiper.envs.base import TextEnv

    # A game whose class keeps TextEnv's default (no planning errors anywhere) is refused, in one line.
    monkeypatch.setattr(KeyChestEnv, "expert_mistakes", TextEnv.expert_mistakes)
    with pytest.raises(ValueError, match=r"^plan_noise: keychest:room \d+, order \d+ has no planning errors"):
        demos.collect("keychest", "train", 1, plan_noise=0.2)
    assert demos.collect("keychest", "train", 1, plan_noise=0.0)[0].won
