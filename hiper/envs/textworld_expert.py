"""The TextWorld cooking expert: its plan from the current state, and the sub-goal of every command.

TextWorld computes a winning command list from any state (`EnvInfos(policy_commands=True)`),
so the expert re-plans after every step, whoever chose the action. That plan skips the cookbook
(TextWorld knows the recipe); a player does not, so until the cookbook has been read the expert
first walks to the kitchen and reads it (`cookbook_plan`).

A command's sub-goal is named after the next "goal" command of the plan from it on: moving,
opening and taking a tool that a later command uses are the way to a goal, not goals:

    go west, open fridge, take red apple from fridge      -> "take the red apple"
    take knife from counter, slice red apple with knife   -> "slice the red apple"
    cook red apple with stove                             -> "fry the red apple"
    prepare meal / eat meal                               -> "prepare the meal" / "eat the meal"
    (walking to the kitchen) / examine cookbook           -> "find the kitchen" / "read the cookbook"
"""
from __future__ import annotations

from collections import deque

COOKBOOK_ROOM = "kitchen"
READ_COOKBOOK = "examine cookbook"
# What cooking with each appliance is called in the recipes.
COOKING_VERBS = {"stove": "fry", "oven": "roast", "bbq": "grill"}
DIRECTIONS = ("north", "south", "east", "west")
_WAY_VERBS = ("go", "open", "unlock")
_LOOKING = ("look", "inventory")


def _tools(plan: list[str]) -> set[str]:
    """Things the plan uses as tools ("... with knife")."""
    return {command.rsplit(" with ", 1)[1] for command in plan if " with " in command}


def _is_goal(command: str, tools: set[str]) -> bool:
    verb = command.split(" ", 1)[0]
    if verb in _WAY_VERBS or command in _LOOKING:
        return False
    if verb == "take":  # taking a tool is on the way to using it
        return command[len("take "):].split(" from ", 1)[0] not in tools
    return not (verb == "examine" and command != READ_COOKBOOK)


def _name(command: str) -> str:
    """The sub-goal a goal command achieves, in the recipe's words."""
    if command == READ_COOKBOOK:
        return "read the cookbook"
    verb, _, rest = command.partition(" ")
    thing, _, tool = rest.partition(" with ")
    if verb == "take":
        return f"take the {thing.split(' from ', 1)[0]}"
    if verb == "cook":
        return f"{COOKING_VERBS.get(tool.lower(), 'cook')} the {thing}"
    if verb in ("slice", "chop", "dice", "prepare", "eat", "drop"):
        return f"{verb} the {thing}"
    if verb in ("put", "insert"):
        thing, _, place = rest.replace(" into ", " on ").partition(" on ")
        return f"put the {thing} {'in' if verb == 'insert' else 'on'} the {place}"
    return command


def subgoal_of(plan: list[str]) -> str:
    """The sub-goal of plan[0]: the name of the first goal command of `plan`. Walking to the
    kitchen for the cookbook is "find the kitchen"."""
    if not plan:
        raise ValueError("plan: expected at least one command")
    tools = _tools(plan)
    goal = next((command for command in plan if _is_goal(command, tools)), plan[-1])
    if goal == READ_COOKBOOK and plan[0] != READ_COOKBOOK:
        return f"find the {COOKBOOK_ROOM}"
    return _name(goal)


def cookbook_plan(facts) -> list[str]:
    """Commands that walk from the player's room to the kitchen (opening closed doors on the way)
    and read the cookbook there, from TextWorld's facts about the game (`EnvInfos(facts=True)`).
    Empty when the game has no cookbook in a kitchen, or no way there, or the player carries it
    (the game then offers no "examine cookbook")."""
    exits: dict[str, list[tuple[str, str]]] = {}  # room -> (direction, next room)
    doors: dict[tuple[str, str], str] = {}        # (room, next room) -> door between them
    closed, here, has_cookbook = set(), None, False
    for fact in facts:
        names = [arg.name for arg in fact.arguments]
        if fact.name.endswith("_of") and fact.name[:-3] in DIRECTIONS:  # north_of(a, b): a lies north of b
            exits.setdefault(names[1], []).append((fact.name[:-3], names[0]))
        elif fact.name == "link":
            doors[(names[0], names[2])] = names[1]
        elif fact.name == "closed":
            closed.add(names[0])
        elif fact.name == "at" and names[0] == "P":
            here = names[1]
        elif fact.name == "in" and names == ["cookbook", "I"]:  # I: the inventory
            return []
        has_cookbook = has_cookbook or "cookbook" in names
    if here is None or not has_cookbook:
        return []
    # Breadth-first: the fewest moves from here to the kitchen.
    came_from: dict[str, tuple[str, str] | None] = {here: None}
    queue = deque([here])
    while queue:
        room = queue.popleft()
        for direction, nxt in exits.get(room, []):
            if nxt not in came_from:
                came_from[nxt] = (room, direction)
                queue.append(nxt)
    if COOKBOOK_ROOM not in came_from:
        return []
    moves, room = [], COOKBOOK_ROOM
    while came_from[room] is not None:
        previous, direction = came_from[room]
        door = doors.get((previous, room))
        moves[:0] = ([f"open {door}"] if door in closed else []) + [f"go {direction}"]
        room = previous
    return moves + [READ_COOKBOOK]
