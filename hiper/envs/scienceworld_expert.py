"""Sub-goals for ScienceWorld's gold paths, read off the actions' verbs and objects.

ScienceWorld's expert is the task's gold action sequence (no planner: it cannot re-plan). Its
sections become sub-goals by a few rules that hold for every task:

- a run of moves between rooms ("open door to kitchen", "go to kitchen") is "go to the kitchen";
- looking, reading, picking up and opening things prepare the next action that changes the
  world, and share its sub-goal ("pick up metal pot", "move metal pot to sink" -> "move the
  metal pot to the sink");
- that action names the sub-goal: "focus on the water", "turn on the stove", "measure the
  temperature of the water" (using a thermometer), "pour the blue paint into the jug", "wait";
  a run of "connect" is "build the circuit", the same look repeated is "watch the X";
- a numbered answer ("0", picking one of several matching objects) belongs to the action that asked.

For the boil task this gives "go to the kitchen", "move the metal pot to the sink", "turn on the
sink", ..., "focus on the substance in the metal pot", ..., "turn on the stove", "measure the
temperature of the substance in the metal pot", ..., "wait".
"""
from __future__ import annotations

# Actions that only look: they change nothing in the world (the gold path may skip them, and a
# player may insert them without leaving it).
LOOKING = ("look around", "inventory", "task")
LOOKING_PREFIXES = ("look at ", "look in ", "examine ")
# Actions that prepare the next change: they take its sub-goal.
_PREPARING_PREFIXES = LOOKING_PREFIXES + ("read ", "pick up ", "open ")
_TOGGLES = {"activate": "turn on", "deactivate": "turn off"}
ROOMS = frozenset({"art studio", "bathroom", "bedroom", "foundry", "greenhouse", "hallway", "kitchen", "living room",
                   "outside", "workshop"})  # ScienceWorld's locations


def only_looks(action: str) -> bool:
    return action in LOOKING or action.startswith(LOOKING_PREFIXES)


def _thing(name: str, content: bool = False) -> str:
    """A short name for an object: "cup containing blue paint" is the cup, or its content (the
    paint) when `content` (pouring, mixing, focusing); where it is is said once at most ("apple
    seed in the seed stage in flower pot 4" -> "apple seed in the seed stage"), and not at all
    when it is the inventory or a room, or when the name is long already."""
    container, found, inside = name.partition(" containing ")
    name = inside if found and content else container
    what, *where = name.strip().split(" in ")
    what = what.split(" on ")[0]
    if where and where[0] not in ROOMS and where[0] != "inventory" and len(f"{what} {where[0]}".split()) <= 6:
        return f"{what} in {where[0] if where[0].startswith('the ') else 'the ' + where[0]}"
    return what


def _changing_name(action: str) -> str:
    """The sub-goal named by an action that changes the world."""
    verb, _, rest = action.partition(" ")
    if action.startswith("focus on "):
        return f"focus on the {_thing(action[len('focus on '):], content=True)}"
    if verb in _TOGGLES:
        return f"{_TOGGLES[verb]} the {_thing(rest)}"
    if verb.startswith("wait"):  # wait, wait1, wait10
        return "wait"
    if verb == "use" and " on " in rest:
        tool, _, target = rest.partition(" on ")
        if "thermometer" in tool:
            return f"measure the temperature of the {_thing(target, content=True)}"
        return f"use the {_thing(tool)} on the {_thing(target)}"
    for joint in (" into ", " to ", " in "):
        if verb in ("move", "pour", "dunk", "connect") and joint in rest:
            first, _, second = rest.rpartition(joint)
            joint = " into " if verb in ("pour", "dunk") else joint
            return f"{verb} the {_thing(first, content=verb == 'pour')}{joint}the {_thing(second)}"
    if verb in ("mix", "eat", "flush", "close", "disconnect", "drop"):
        return f"{verb} the {_thing(rest, content=verb == 'mix')}"
    if action.startswith("put down "):
        return f"put down the {_thing(action[len('put down '):])}"
    return action


def gold_subgoals(actions: list[str]) -> list[str]:
    """The sub-goal of every action of a gold path (see the module's rules)."""
    names: list = [None] * len(actions)  # filled in below, every one
    waiting: list[int] = []  # preparing actions waiting for the change they prepare
    k = 0
    while k < len(actions):
        action = actions[k].strip()
        if action.isdigit():  # an answer: the asking action's sub-goal
            if k - 1 in waiting:
                waiting.append(k)
            else:
                names[k] = names[k - 1] if k else None
            k += 1
            continue
        if action.startswith(("go to ", "teleport to ", "open door to ")):
            end = k
            while end < len(actions) and actions[end].startswith(("go to ", "teleport to ", "open door to ")):
                end += 1
            places = [a.split(" to ", 1)[1] for a in actions[k:end] if not a.startswith("open door to ")]
            name = f"go to the {places[-1]}" if places else f"go to the {action.split(' to ', 1)[1]}"
            names[k:end] = [name] * (end - k)
            k = end
            continue
        repeats = 1
        while k + repeats < len(actions) and actions[k + repeats] == action:
            repeats += 1
        if repeats > 1 and action.startswith(LOOKING_PREFIXES):  # the same look again and again: watching
            name = f"watch the {_thing(action.split(' ', 2)[-1] if action.startswith('look') else action[8:])}"
        elif action.startswith(_PREPARING_PREFIXES) or only_looks(action):
            waiting.append(k)
            k += 1
            continue
        elif action.startswith("connect "):
            end = k
            while end < len(actions) and actions[end].startswith("connect "):
                end += 1
            repeats, name = end - k, "build the circuit"
        else:
            name = _changing_name(action)
        for index in waiting + list(range(k, k + repeats)):
            names[index] = name
        waiting = []
        k += repeats
    # Preparing actions after the last change (a final look) belong to the sub-goal before them.
    for index in waiting:
        names[index] = names[index - 1] if index else "look around"
    for index, name in enumerate(names):
        if name is None:  # an answer at the very start
            names[index] = names[index + 1] if index + 1 < len(names) else "look around"
    return names
