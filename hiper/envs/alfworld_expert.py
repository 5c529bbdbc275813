"""ALFWorld's hand-coded expert, driven one step at a time, with the sub-goal of every action.

ALFWorld ships a hand-coded expert (`alfworld.agents.expert.HandCodedTWAgent`): a state machine
that searches receptacles the way a player would (it sees only what the game has shown it, plus
the facts "I hold an apple", "the apple is hot"), so it re-plans from whatever state it is in,
including after actions it did not choose. Its plan is a list of phases, e.g. for a heat task

    find apple, take apple, goto microwave, heat apple, find countertop, put countertop

and each of its actions serves the current phase. `phase_subgoals` names those phases for a
player: navigation phases take the name of the manipulation they lead to,

    "find the apple", "take the apple", "heat the apple with the microwave", "put the apple on the countertop"

(two-object tasks say "the first cd" / "the second cd").

`HandCodedExpert` wires the expert to hiper's environment in place of ALFWorld's `AlfredExpert`
wrapper, and fixes what kept it from winning within the 50-step cap:
- the wrapper's first action is always "look" (it only lets the expert read the welcome text);
- the expert's state tracking knows the verb "put", but the game's verb is "move X to Y": after
  placing the first object of a two-object task it thinks it still holds it, and loops (it lost
  one of the two two-object sample games and took 47 steps on the other); `observe` translates,
  and tells a final placement from an object set down elsewhere (which it must take again);
- it closes everything it opens, a wasted turn per receptacle (and queued closes outlive the
  visit, when the game refuses them): here nothing is closed;
- receptacles side by side share one place ("You are facing the shelf 2, and shelf 1"), where
  "go to shelf 2" is refused: it examines shelf 2 instead (which shows what is on it);
- it draws from the process-wide `random` (which object of several to take, and a fallback when
  it repeats itself); here every expert has its own seeded stream, so a demonstration is
  reproducible and playing one does not disturb anyone else's random numbers.
"""
from __future__ import annotations

import random
from pathlib import Path

# Receptacles things go "in"; everything else (tables, shelves, beds, ...) things go "on".
CONTAINERS = frozenset({"box", "cabinet", "cart", "drawer", "fridge", "garbagecan", "laundryhamper", "microwave",
                        "safe", "sinkbasin", "bathtubbasin"})
# The receptacle each transforming phase is done with, as the expert's plan names it.
TOOLS = {"heat": "microwave", "cool": "fridge", "clean": "sinkbasin"}
MANIPULATIONS = ("take", "heat", "cool", "clean", "put", "use")


def phase_subgoals(task_params: dict, phases: list[dict], tool_names: dict[str, str] | None = None) -> list[str]:
    """The sub-goal of each phase of the expert's plan (`policy.subgoals`: dicts with "action" and
    "param"), from the task's parameters (object_target, parent_target, toggle_target, task_type).
    `tool_names` renames a tool the room lacks (a bathtubbasin for the sinkbasin)."""
    tool_names = tool_names or {}
    obj = task_params["object_target"]
    two_objects = task_params["task_type"] == "pick_two_obj_and_place"
    names = []
    for index, phase in enumerate(phases):
        # Which object this phase handles: two-object plans repeat find/take/find/put once per object.
        nth = ("first " if index < len(phases) // 2 else "second ") if two_objects else ""
        thing = f"the {nth}{obj}"
        following = [p for p in phases[index:] if p["action"] in MANIPULATIONS]
        if phase["action"] == "find" and following and following[0]["action"] == "take":
            names.append(f"find {thing}")
            continue
        verb, param = (following[0]["action"], following[0]["param"]) if following else (phase["action"],
                                                                                          phase["param"])
        if verb == "take":
            names.append(f"take {thing}")
        elif verb in TOOLS:
            names.append(f"{verb} {thing} with the {tool_names.get(TOOLS[verb], TOOLS[verb])}")
        elif verb == "put":
            names.append(f"put {thing} {'in' if param in CONTAINERS else 'on'} the {param}")
        elif verb == "use":
            names.append(f"examine {thing} with the {param}")
        else:
            names.append(f"{verb} {param}".strip())
    return names


SET_DOWN = "put down"  # "it left my hands", without naming the object


def _as_the_expert_says_it(action: str, task_params: dict) -> tuple[str, str | None]:
    """The game's "move X to Y" as the expert's state tracking understands it, and where the object
    was only set down (None if it was not). The expert knows "put": the object leaves its hands and,
    when the command names the task's object, is placed for good (never to be taken again). That
    holds for a first object put where a two-object task wants it; any other move (a detour that set
    the apple down) must not say so, or the expert would search for another apple forever."""
    if not action.startswith("move "):
        return action, None
    receptacle = action.rpartition(" to ")[2]
    two_objects = task_params["task_type"] == "pick_two_obj_and_place"
    if two_objects and receptacle.split(" ")[0] == task_params["parent_target"]:
        return "put" + action[len("move"):], None
    return SET_DOWN, receptacle


class HandCodedExpert:
    """ALFWorld's hand-coded expert for one game, one step behind it: `start(state, seed)` after a
    reset, `observe(state, action)` after every step (whoever chose the action), then `subgoal` and
    `action` say what it does next. `state` is the TextWorld game state (with facts and admissible
    commands); `seed` seeds the expert's random choices. `failure` says why, when the expert has
    given up (then `action` is None)."""

    def __init__(self, game_file: str | Path, max_steps: int = 200):
        from alfworld.agents.expert import HandCodedTWAgent

        self.game_file = Path(game_file)
        if not (self.game_file.parent / "traj_data.json").is_file():
            raise FileNotFoundError(f"ALFWorld's expert reads {self.game_file.parent / 'traj_data.json'}, which is "
                                    "missing: unpack the games with `hiper prepare-data ARCHIVE DEST`, which writes it")
        self._agent = HandCodedTWAgent(max_steps=max_steps)
        self.subgoal: str | None = None
        self.action: str | None = None
        self.failure: str | None = None
        self._aliases: dict[str, str] = {}  # an action this expert chose -> the action it stands for
        self._set_down_at: str | None = None  # where the last action set the held object down

    def start(self, state, seed: int = 0) -> None:
        self._agent.reset(str(self.game_file))
        self._random = random.Random(seed).getstate()
        policy = self._agent.policy
        tools = {"sinkbasin": "bathtubbasin"} if "sinkbasin" not in state["feedback"] else {}
        self._names = phase_subgoals(policy.task_params, policy.subgoals, tools)
        track = policy.update_state_tracking

        def track_as_this_expert_plays(game_state, last_action):
            held = list(policy.inventory)
            track(game_state, last_action)
            # It queues a close for everything it opens: a turn per receptacle that no task needs, and queued
            # closes outlive the visit (the game then refuses them). This expert leaves things open.
            policy.action_backlog.clear()
            if self._set_down_at and held:
                # It forgets where it set an object down (it takes every put as final): show it there again.
                policy.observe(f"On the {self._set_down_at}, you see a {held[-1]}.")

        policy.update_state_tracking = track_as_this_expert_plays
        self.failure = None
        self._set_down_at = None
        # The expert reads the room from the welcome text, as after a "look".
        self._act(state, "look")

    def observe(self, state, action: str) -> None:
        if self.failure is None:
            said, self._set_down_at = _as_the_expert_says_it(self._aliases.get(action, action), self._agent.task_params)
            self._act(state, said)

    def _act(self, state, last_action: str) -> None:
        from alfworld.agents.expert import HandCodedAgentFailed, HandCodedAgentTimeout

        admissible = [a for a in state["admissible_commands"] if a != "help"]
        view = {"feedback": state["feedback"], "facts": state["facts"], "admissible_commands": admissible}
        policy = self._agent.policy
        outside = random.getstate()
        random.setstate(self._random)
        try:
            action = self._agent.act(view, 0, bool(state["won"]), last_action)
        except (HandCodedAgentFailed, HandCodedAgentTimeout) as error:
            self.failure = f"ALFWorld's expert gave up ({type(error).__name__})"
            self.subgoal = self.action = None
            return
        finally:
            self._random = random.getstate()
            random.setstate(outside)
        self.subgoal = self._names[min(policy.subgoal_idx, len(self._names) - 1)]
        self._aliases = {}
        if action.startswith("go to ") and action not in admissible and f"examine {action[6:]}" in admissible:
            # Receptacles side by side share one place: from shelf 1, shelf 2 is examined, not gone to.
            self._aliases[f"examine {action[6:]}"] = action
            action = f"examine {action[6:]}"
        # Like ALFWorld's wrapper: a command the game would not take becomes a harmless look.
        self.action = action if action in admissible else "look"
