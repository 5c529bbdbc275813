"""The Plan-Execute format: environment-side parsing, prompt building and rendering."""
from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from hiper.format import (ParsedTurn, PlanExecuteState, build_prompt, format_turn, parse_turn, render_prompt)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("response, env, expected", [
    (format_turn("KEEP", "Find the Apple", "Go To Countertop 1"), "alfworld",
     ParsedTurn("go to countertop 1", "Find the Apple", "KEEP", True)),
    ("<switch> switch </switch><subgoal> heat mug </subgoal><action> open microwave 1 </action>", "alfworld",
     ParsedTurn("open microwave 1", "heat mug", "SWITCH", True)),
    # no action block: the lower-cased tail is executed, nothing else is read
    ("<switch>KEEP</switch><subgoal>x</subgoal> I will now GO TO THE KITCHEN counter", "alfworld",
     ParsedTurn(" i will now go to the kitchen counter"[-30:], "", "", False)),
    ("<switch>KEEP</switch><subgoal>x</subgoal> I will now GO TO THE KITCHEN counter", "webshop",
     ParsedTurn(" i will now go to the kitchen counter"[-20:], "", "", False)),
    # no switch block: invalid; the subgoal falls back to the action's tail (WebShop: "None")
    ("<subgoal>s</subgoal><action>take the very long named object from the shelf 1</action>", "alfworld",
     ParsedTurn("take the very long named object from the shelf 1",
                "take the very long named object from the shelf 1"[-30:], "", False)),
    ("<subgoal>s</subgoal><action>click[buy now]</action>", "webshop", ParsedTurn("click[buy now]", "None", "", False)),
    # unreadable decision: invalid, no subgoal (WebShop reads it as KEEP)
    ("<switch>KEEP OR SWITCH</switch><subgoal>s</subgoal><action>look</action>", "alfworld",
     ParsedTurn("look", "", "", False)),
    ("<switch>maybe</switch><subgoal>s</subgoal><action>look</action>", "webshop",
     ParsedTurn("look", "", "KEEP", False)),
    # valid decision but no subgoal block
    ("<switch>KEEP</switch><action>look</action>", "alfworld", ParsedTurn("look", "", "KEEP", False)),
    # CJK anywhere makes the turn invalid, but everything else is still read
    (format_turn("KEEP", "找苹果", "look"), "alfworld", ParsedTurn("look", "找苹果", "KEEP", False)),
    # tags are matched case-insensitively for the action only: <SWITCH> counts as missing
    ("<SWITCH>KEEP</SWITCH><subgoal>s</subgoal><ACTION>Look</ACTION>", "alfworld",
     ParsedTurn("look", "look", "", False)),
])
def test_parse_turn(response, env, expected):
    assert parse_turn(response, env) == expected


def test_parse_turn_rejects_unknown_env():
    with pytest.raises(ValueError, match="env"):
        parse_turn("", "minecraft")


def test_state_carries_the_parsed_subgoal_into_the_next_prompt():
    state = PlanExecuteState(task="put a clean knife in countertop", history_length=2)
    first = build_prompt(state, "You are in a kitchen.", ["go to drawer 1", "look"])
    assert "Current sub-goal (there is no sub-goal yet on the first step): None" in first
    assert "already taken" not in first
    state.record("You are in a kitchen.", parse_turn(format_turn("SWITCH", "find the knife", "go to drawer 1")))
    state.record("The drawer 1 is closed.", parse_turn("<switch>KEEP</switch><action>open drawer 1</action>"))
    state.record("You open the drawer 1.", parse_turn(format_turn("KEEP", "find the knife", "take knife 1")))
    prompt = build_prompt(state, "You pick up the knife 1.", ["go to sinkbasin 1"])
    assert "You have already taken 3 step(s)" in prompt
    assert "[Observation 2: 'The drawer 1 is closed.', Action 2: 'open drawer 1']" in prompt
    assert "Observation 1:" not in prompt  # only the last two steps
    assert "Current sub-goal: find the knife" in prompt
    # A malformed turn carries its (empty) subgoal, exactly as parsed.
    state.record("x", parse_turn("<switch>??</switch><action>look</action>"))
    assert "Current sub-goal: \n" in build_prompt(state, "y", ["look"])
    assert "'go to sinkbasin 1'" in prompt


@pytest.mark.parametrize("name", ["smollm2_tokenizer", "metaspace_tokenizer"])
def test_render_prompt_through_chat_template(name):
    tok = AutoTokenizer.from_pretrained(FIXTURES / name)
    user = build_prompt(PlanExecuteState(task="t"), "obs", ["look"])
    text = render_prompt(tok, user)
    assert user in text
    assert text.rstrip().endswith("assistant") or text.endswith("[assistant] ")
