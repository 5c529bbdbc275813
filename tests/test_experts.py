"""Each environment's expert: (subgoal, action) from the current state, for demonstrations."""
import shutil

import pytest

from hiper.envs import alfworld as alf
from hiper.envs.alfworld_expert import phase_subgoals
from hiper.envs.base import ExpertError
from hiper.envs.scienceworld_expert import gold_subgoals
from hiper.envs.textworld_expert import cookbook_plan, subgoal_of


def play(env, seed=0, detours=None, limit=60):
    """Plays the expert from a reset, checking every turn; `detours` maps a turn number to a function of
    the admissible actions that picks the action to take instead. Returns the (subgoal, action) turns
    and the last step."""
    observation = env.reset(seed)
    turns = []
    for turn in range(limit):
        subgoal, action = env.expert_turn()
        assert action in observation.admissible_actions, (turn, action)
        assert subgoal and len(subgoal) <= 60 and subgoal == subgoal.strip(), subgoal
        if detours and turn in detours:
            action = detours[turn](observation.admissible_actions)
        turns.append((subgoal, action))
        step = env.step(action)
        observation = step.observation
        if step.done:
            return turns, step
    raise AssertionError(f"no end after {limit} turns: {turns}")


def segments(turns):
    """The subgoal of each run of turns that keep it (a new run starts where the demonstration writes SWITCH)."""
    return [subgoal for k, (subgoal, _) in enumerate(turns) if k == 0 or subgoal != turns[k - 1][0]]


# ALFWorld ------------------------------------------------------------------------------------------------


def sample_game(split, task_type):
    return next(g for g in alf.list_games(split, "sample") if alf.task_type_of(g) == task_type)


def test_alfworld_phase_names():
    heat = {"task_type": "pick_heat_then_place_in_recep", "object_target": "apple", "parent_target": "fridge"}
    plan = [{"action": a, "param": p} for a, p in [("find", "apple"), ("take", "apple"), ("goto", "microwave"),
                                                   ("heat", "apple"), ("find", "fridge"), ("put", "fridge")]]
    assert phase_subgoals(heat, plan) == [
        "find the apple", "take the apple", "heat the apple with the microwave", "heat the apple with the microwave",
        "put the apple in the fridge", "put the apple in the fridge"]
    clean = {**heat, "task_type": "pick_clean_then_place_in_recep", "parent_target": "countertop"}
    plan[2:4] = [{"action": "goto", "param": "sinkbasin"}, {"action": "clean", "param": "apple"}]
    plan[4:] = [{"action": "find", "param": "countertop"}, {"action": "put", "param": "countertop"}]
    assert phase_subgoals(clean, plan, {"sinkbasin": "bathtubbasin"})[2:] == [
        "clean the apple with the bathtubbasin", "clean the apple with the bathtubbasin",
        "put the apple on the countertop", "put the apple on the countertop"]
    look = {"task_type": "look_at_obj_in_light", "object_target": "cd", "toggle_target": "desklamp"}
    plan = [{"action": a, "param": p} for a, p in [("find", "cd"), ("take", "cd"), ("find", "desklamp"),
                                                   ("use", "desklamp")]]
    assert phase_subgoals(look, plan)[1:] == ["take the cd", "examine the cd with the desklamp",
                                              "examine the cd with the desklamp"]


@pytest.fixture(scope="module")
def heat_game():
    env = alf.AlfworldEnv(sample_game("train", "pick_heat_then_place_in_recep"), expert=True, max_steps=50)
    yield env
    env.close()


def test_alfworld_expert_wins_the_sample_games_in_named_phases(heat_game):
    # ALFWorld's own wrapper takes 47 steps on the two-object game (its expert forgets it put the first clock
    # down, and loops). Games that load fast: the clean and cool phases are named in test_alfworld_phase_names.
    turns, step = play(heat_game)
    assert step.info["won"]
    assert turns == [("find the apple", "go to sinkbasin 1"),
                     ("take the apple", "take apple 1 from sinkbasin 1"),
                     ("heat the apple with the microwave", "go to microwave 1"),
                     ("heat the apple with the microwave", "heat apple 1 with microwave 1"),
                     ("put the apple on the countertop", "go to countertop 1"),
                     ("put the apple on the countertop", "move apple 1 to countertop 1")]
    demos = {}
    for task_type in ("look_at_obj_in_light", "pick_two_obj_and_place"):
        env = alf.AlfworldEnv(sample_game("train", task_type), expert=True, max_steps=50)
        try:
            turns, step = play(env)
        finally:
            env.close()
        assert step.info["won"] and not step.info["truncated"], task_type
        demos[task_type] = turns
    assert segments(demos["pick_two_obj_and_place"]) == [
        "find the first alarmclock", "take the first alarmclock", "put the first alarmclock on the desk",
        "find the second alarmclock", "take the second alarmclock", "put the second alarmclock on the desk"]
    assert len(demos["pick_two_obj_and_place"]) == 8
    # Side by side with shelf 1, shelf 2 is examined (the game has no "go to shelf 2" from there).
    assert ("find the alarmclock", "examine shelf 2") in demos["look_at_obj_in_light"]


def test_alfworld_expert_replans_after_actions_it_did_not_choose(heat_game):
    # A detour first (to the fridge: it looks inside, and there is an apple), another on the way to the microwave.
    turns, step = play(heat_game, detours={0: lambda actions: "go to fridge 1", 4: lambda actions: "go to cabinet 1"})
    assert step.info["won"]
    assert turns == [("find the apple", "go to fridge 1"), ("find the apple", "open fridge 1"),
                     ("take the apple", "take apple 3 from fridge 1"),
                     ("heat the apple with the microwave", "go to microwave 1"),
                     ("heat the apple with the microwave", "go to cabinet 1"),
                     ("heat the apple with the microwave", "go to microwave 1"),
                     ("heat the apple with the microwave", "heat apple 3 with microwave 1"),
                     ("put the apple on the countertop", "go to countertop 1"),
                     ("put the apple on the countertop", "move apple 3 to countertop 1")]


def test_alfworld_expert_takes_back_what_a_detour_set_down():
    # The game's "move" said as ALFWorld's expert's "put" would tell it the mug is placed for good: with no
    # other mug in the room it would search until the step cap.
    env = alf.AlfworldEnv(sample_game("valid_unseen", "pick_and_place_simple"), expert=True)
    try:
        turns, step = play(env, detours={3: lambda actions: "move mug 1 to shelf 2"})
    finally:
        env.close()
    assert step.info["won"]
    assert turns == [("find the mug", "go to shelf 1"), ("find the mug", "go to shelf 2"),
                     ("take the mug", "take mug 1 from shelf 2"), ("put the mug on the desk", "move mug 1 to shelf 2"),
                     ("take the mug", "take mug 1 from shelf 2"), ("put the mug on the desk", "go to desk 1"),
                     ("put the mug on the desk", "move mug 1 to desk 1")]


def test_alfworld_expert_started_late_has_seen_the_whole_episode():
    game = sample_game("train", "pick_two_obj_and_place")
    eager, late = alf.AlfworldEnv(game, expert=True), alf.AlfworldEnv(game)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            late.expert_turn()
        eager.reset(3)
        late.reset(3)
        for action in ("go to shelf 1", "take alarmclock 1 from shelf 1", "go to bed 1"):
            eager.step(action)
            late.step(action)
        assert eager.expert_turn() == ("put the first alarmclock on the desk", "go to desk 1")
        assert late.expert_turn() == eager.expert_turn()
        late.step("go to desk 1")
        assert late.expert_turn() == ("put the first alarmclock on the desk", "move alarmclock 1 to desk 1")
        assert late.last_info["expert_action"] == "move alarmclock 1 to desk 1"
    finally:
        eager.close()
        late.close()


# TextWorld -----------------------------------------------------------------------------------------------


def test_textworld_subgoal_names():
    plan = ["take knife from counter", "go west", "take carrot", "go east", "cook carrot with BBQ",
            "dice carrot with knife", "prepare meal", "eat meal"]
    assert [subgoal_of(plan[k:]) for k in range(len(plan))] == [
        "take the carrot", "take the carrot", "take the carrot", "grill the carrot", "grill the carrot",
        "dice the carrot", "prepare the meal", "eat the meal"]
    assert subgoal_of(["open plain door", "go south", "examine cookbook"]) == "find the kitchen"
    assert subgoal_of(["examine cookbook", "open fridge"]) == "read the cookbook"
    with pytest.raises(ValueError, match="plan"):
        subgoal_of([])


def test_textworld_cookbook_route_opens_closed_doors():
    from textworld.logic import Proposition, Variable

    def fact(name, *args):
        return Proposition(name, [Variable(a, "r") for a in args])

    # bedroom --(north, through a closed door)--> hallway --(west)--> kitchen, where the cookbook lies.
    facts = [fact("at", "P", "bedroom"), fact("north_of", "hallway", "bedroom"), fact("south_of", "bedroom", "hallway"),
             fact("west_of", "kitchen", "hallway"), fact("east_of", "hallway", "kitchen"),
             fact("link", "bedroom", "plain door", "hallway"), fact("closed", "plain door"),
             fact("on", "cookbook", "table"), fact("at", "table", "kitchen")]
    assert cookbook_plan(facts) == ["open plain door", "go north", "go west", "examine cookbook"]
    assert cookbook_plan(facts[:-2]) == []  # no cookbook
    assert cookbook_plan(facts + [fact("in", "cookbook", "I")]) == []  # carried: nothing to walk to


@pytest.fixture(scope="module")
def cooking_game(tmp_path_factory):
    from hiper.envs.textworld_cooking import CookingGame, generate

    # Six rooms, a closed door on the way to the kitchen, one ingredient to find, cooking and cutting.
    return generate(CookingGame(recipe=2, take=1, go=6, cook=True, cut=True, seed=2),
                    tmp_path_factory.mktemp("textworld"))


def test_textworld_expert_reads_the_recipe_then_cooks_and_wins(cooking_game):
    from hiper.envs.textworld_cooking import TextWorldEnv

    env = TextWorldEnv(cooking_game, expert=True)
    try:
        turns, step = play(env)
    finally:
        env.close()
    assert step.info["won"] and step.info["score"] == step.info["max_score"]
    assert turns == [
        ("find the kitchen", "open plain door"), ("find the kitchen", "go south"),
        ("read the cookbook", "examine cookbook"),
        ("roast the green hot pepper", "cook green hot pepper with oven"),
        ("dice the green hot pepper", "take knife from table"),
        ("dice the green hot pepper", "dice green hot pepper with knife"),
        ("take the red onion", "open fridge"), ("take the red onion", "take red onion from fridge"),
        ("roast the red onion", "cook red onion with oven"), ("slice the red onion", "slice red onion with knife"),
        ("prepare the meal", "prepare meal"), ("eat the meal", "eat meal")]


def test_textworld_expert_replans_starts_late_and_stops_when_the_game_is_lost(cooking_game):
    from hiper.envs.textworld_cooking import TextWorldEnv

    env = TextWorldEnv(cooking_game)  # no expert asked for: the first expert_turn starts it
    try:
        env.reset()
        env.step("open plain door")
        env.step("go south")
        env.step("go north")  # back out of the kitchen, the cookbook unread
        assert env.expert_turn() == ("find the kitchen", "go south")
        # A look while the pepper waits to be roasted, and a step out of the kitchen before the knife is taken.
        turns, step = play(env, detours={3: lambda actions: "look", 5: lambda actions: "go north"})
        assert step.info["won"]
        assert turns[3:9] == [("roast the green hot pepper", "look"),
                              ("roast the green hot pepper", "cook green hot pepper with oven"),
                              ("dice the green hot pepper", "go north"), ("dice the green hot pepper", "go south"),
                              ("dice the green hot pepper", "take knife from table"),
                              ("dice the green hot pepper", "dice green hot pepper with knife")]
        env.reset()
        env.step("eat green hot pepper")  # an ingredient of the recipe: the game is lost
        with pytest.raises(ExpertError, match="no winning plan"):
            env.expert_turn()
    finally:
        env.close()


# ScienceWorld --------------------------------------------------------------------------------------------


BOIL_GOLD = ["open door to kitchen", "go to kitchen", "look around", "pick up thermometer", "open cupboard",
             "pick up metal pot", "look around", "move metal pot to sink", "activate sink", "deactivate sink",
             "pick up metal pot", "focus on substance in metal pot", "pour metal pot into metal pot",
             "pick up metal pot", "move metal pot to stove", "activate stove"] + [
             "examine substance in metal pot", "use thermometer in inventory on substance in metal pot"] * 3 + [
             "examine steam", "use thermometer in inventory on steam", "wait1"]


def test_scienceworld_gold_path_sections():
    assert segments(list(zip(gold_subgoals(BOIL_GOLD), BOIL_GOLD))) == [
        "go to the kitchen", "move the metal pot to the sink", "turn on the sink", "turn off the sink",
        "focus on the substance in the metal pot", "pour the metal pot into the metal pot",
        "move the metal pot to the stove", "turn on the stove",
        "measure the temperature of the substance in the metal pot", "measure the temperature of the steam", "wait"]
    names = gold_subgoals(["go to art studio", "look around", "pour cup containing blue paint in art studio in jug",
                           "look at inclined plane b", "look at inclined plane b", "connect battery anode to wire",
                           "connect wire to light bulb", "move apple seed in seed jar to flower pot 3", "0"])
    assert names == ["go to the art studio", "pour the blue paint into the jug", "pour the blue paint into the jug",
                     "watch the inclined plane b", "watch the inclined plane b",
                     "build the circuit", "build the circuit",
                     "move the apple seed in the seed jar to the flower pot 3",
                     "move the apple seed in the seed jar to the flower pot 3"]


needs_scienceworld = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")


@needs_scienceworld
def test_scienceworld_expert_follows_the_gold_path_and_stops_off_it():
    pytest.importorskip("scienceworld")
    from hiper.envs.scienceworld import ScienceWorldEnv

    # A fresh simulator: ScienceWorld draws a variation's objects again on every load in the same one.
    env = ScienceWorldEnv("find-non-living-thing", 0)
    try:
        observation = env.reset()
        turns = []
        while True:
            subgoal, action = env.expert_turn()
            turns.append((subgoal, action))
            if len(turns) == 3:
                env.step("inventory")  # only looks: the gold path goes on
            step = env.step(action)
            if step.done:
                break
        assert step.info["won"] and observation.admissible_actions
        assert turns == [("go to the kitchen", "open door to kitchen"), ("go to the kitchen", "go to kitchen"),
                         ("focus on the table", "look around"), ("focus on the table", "focus on table"),
                         ("move the table to the red box", "move table to red box")]
        env.reset()
        env.step("go to bedroom")
        with pytest.raises(ExpertError, match="cannot recover from 'go to bedroom'"):
            env.expert_turn()
    finally:
        env.close()
