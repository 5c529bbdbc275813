"""Subgoals for TextWorld-Express's gold action sequences, derived from the actions and the game's
answers, for every game alike (nothing is written per game).

    plan_subgoals([("look around", "You are in the kitchen. ..."), ("take cookbook", "You take ..."),
                   ("read cookbook", "Gather all following ingredients ..."), ("take knife", ...),
                   ("open fridge", ...), ("take block of cheese", ...), ("take water", ...),
                   ("close fridge", ...), ("dice block of cheese", ...), ("move north", "You are in
                   the backyard. ..."), ("cook block of cheese in barbeque", ...), ...])
    -> [("read the cookbook", "look around"), ("read the cookbook", "take cookbook"),
        ("read the cookbook", "read cookbook"), ("get the knife", "take knife"),
        ("get the block of cheese and the water from the fridge", "open fridge"), ...,
        ("dice the block of cheese", "dice block of cheese"), ("go to the backyard", "move north"),
        ("cook the block of cheese in the barbeque", "cook block of cheese in barbeque"), ...]

The sequence is cut into stretches, each achieving one thing:

    a walk         consecutive moves and doors                 "go to the <room it ends in>"
    reading        taking a book or map and reading it          "read the cookbook"
    fetching       takes in a row (from one opened container)   "get the X and the Y from the fridge"
    putting away   puts into one place in a row                 "put the X in the wardrobe"
    a search       opening a container and closing it again     "search the kitchen cupboard"
    preparing      slicing / cooking one ingredient in a row     "dice the X", "prepare the X"
    the meal       prepare meal, eat meal                       "make and eat the meal"

Looking around, the inventory and opening a container serve the stretch that follows them; closing
one ends the stretch before it. Any other action is a stretch of its own, named by the action.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_ROOM = re.compile(r"You are in the ([^.]+)\.")
_PREPARE_VERBS = ("slice", "dice", "chop", "cook", "fry", "roast", "grill")


@dataclass
class _Stretch:
    kind: str
    actions: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    place: str = ""        # the container taken from, put into, or cooked in
    room: str = ""         # where a walk ends

    def name(self) -> str:
        named = [f"the {o}" for o in dict.fromkeys(self.objects)] or [""]
        things = named[0] if len(named) <= 1 else ", ".join(named[:-1]) + " and " + named[-1]
        if self.kind == "walk":
            return f"go to the {self.room}" if self.room else "explore the house"
        if self.kind == "read":
            return f"read the {self.objects[0]}"
        if self.kind == "fetch":
            return f"get {things} from the {self.place}" if self.place else f"get {things}"
        if self.kind == "search":
            return f"search the {self.place}"
        if self.kind == "put":
            return f"put {things} in the {self.place}"
        if self.kind == "prepare":
            verbs = [a.split()[0] for a in self.actions if a.split()[0] in _PREPARE_VERBS]
            if len(verbs) > 1:
                return f"prepare {things}"
            if verbs[0] == "cook" and self.place:
                return f"cook {things} in the {self.place}"
            return f"{verbs[0]} {things}"
        if self.kind == "meal":
            kinds = {a.split()[0] for a in self.actions}
            return "make and eat the meal" if kinds >= {"prepare", "eat"} else self.actions[-1].replace(
                " meal", " the meal")
        return self.actions[-1]


def _classify(action: str) -> tuple[str, str, str]:
    """(kind, object, place) of one action."""
    words = action.split()
    verb, rest = (words[0], " ".join(words[1:])) if words else ("", "")
    if action in ("look around", "inventory", "task") or verb == "examine":
        return "lead-in", "", ""
    if verb == "move" or action.startswith(("open door to", "close door to")):
        return "walk", "", ""
    if verb == "open":
        return "open", "", rest
    if verb == "close":
        return "close", "", rest
    if verb == "read":
        return "read", rest, ""
    if verb == "take":
        thing, _, source = rest.partition(" from ")
        return "take", thing, source
    if verb == "put":
        thing, _, place = rest.partition(" in ")
        if not place:
            thing, _, place = rest.partition(" on ")
        return "put", thing, place
    if verb in _PREPARE_VERBS:
        thing, _, tool = rest.partition(" with ")
        if " in " in thing:
            thing, _, tool = thing.partition(" in ")
        return "prepare", thing, tool if verb in ("cook", "fry", "roast", "grill") else ""
    if action in ("prepare meal", "eat meal"):
        return "meal", "", ""
    return "other", "", ""


def plan_subgoals(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(subgoal, action) for each (action, the game's answer to it) of a gold sequence."""
    stretches: list[_Stretch] = []
    waiting: list[str] = []         # lead-in and opening actions, for the stretch that follows
    opened = ""                     # the container open now (opened last and not closed since)
    actions = [a for a, _ in steps]
    for k, (action, answer) in enumerate(steps):
        kind, thing, place = _classify(action)
        last = stretches[-1] if stretches else None
        if kind == "lead-in":
            waiting.append(action)
            continue
        if kind == "open":
            waiting.append(action)
            opened = place
            continue
        if kind == "close":
            opened = "" if place == opened else opened
            if last is not None and not waiting:
                last.actions.append(action)
                continue
            if f"open {place}" in waiting:  # opened, looked into, closed: a search that found nothing to take
                stretches.append(_Stretch("search", actions=waiting + [action], place=place))
                waiting = []
                continue
        if kind == "take" and k + 1 < len(steps) and actions[k + 1] == f"read {thing}":
            kind = "read"  # taking the book is part of reading it
        if kind == "walk":
            room = _ROOM.search(answer)
            if last is not None and last.kind == "walk" and not waiting:
                last.actions.append(action)
                last.room = room.group(1) if room else last.room
                continue
            stretch = _Stretch("walk", room=room.group(1) if room else "")
        elif kind == "read":
            if last is not None and last.kind == "read" and last.objects == [thing] and not waiting:
                last.actions.append(action)
                continue
            stretch = _Stretch("read", objects=[thing])
        elif kind == "take":
            source = place or opened
            if last is not None and last.kind == "fetch" and last.place == source and not waiting:
                last.actions.append(action)
                last.objects.append(thing)
                continue
            stretch = _Stretch("fetch", objects=[thing], place=source)
        elif kind == "put":
            if last is not None and last.kind == "put" and last.place == place and not (
                    set(waiting) - {f"open {place}"}):
                last.actions.extend(waiting + [action])
                last.objects.append(thing)
                waiting = []
                continue
            stretch = _Stretch("put", objects=[thing], place=place)
        elif kind == "prepare":
            if last is not None and last.kind == "prepare" and last.objects == [thing] and not waiting:
                last.actions.append(action)
                last.place = place or last.place
                continue
            stretch = _Stretch("prepare", objects=[thing], place=place)
        elif kind == "meal":
            if last is not None and last.kind == "meal" and not waiting:
                last.actions.append(action)
                continue
            stretch = _Stretch("meal")
        else:
            stretch = _Stretch("other")
        stretch.actions = waiting + [action]
        waiting = []
        stretches.append(stretch)
    if waiting:  # lead-in actions at the very end serve the last stretch (or are one of their own)
        if stretches:
            stretches[-1].actions.extend(waiting)
        else:
            stretches.append(_Stretch("other", actions=waiting))
    plan = [(stretch.name(), action) for stretch in stretches for action in stretch.actions]
    if [a for _, a in plan] != actions:
        raise AssertionError("plan_subgoals lost the order of the gold actions")  # a bug here, not bad input
    return plan
