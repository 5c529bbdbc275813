"""The Plan-Execute turn format: tags, prompts and the environment-side parser.

Every turn the agent answers with exactly three blocks::

    <switch>KEEP or SWITCH</switch>
    <subgoal>the sub-goal it follows next</subgoal>
    <action>one admissible action</action>

KEEP continues the current subgoal (copied verbatim), SWITCH replaces it; runs of KEEP turns
form the segments that HAE credits at the high level. Two readers of a response exist and
they differ on malformed output, as in the method's reference implementation:

* the environment side (`parse_turn`, docs/semantics.md §2.3) extracts the action to execute, the
  subgoal carried into the next prompt and a format-validity flag (rewarded by the
  invalid-action penalty);
* the trainer side (`hiper.SpanMasker`, docs/semantics.md §2.4) finds the token spans of the blocks and
  decides SWITCH/KEEP from the token ids, which is what segments and credit use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

SWITCH_OPEN, SWITCH_CLOSE = "<switch>", "</switch>"
SUBGOAL_OPEN, SUBGOAL_CLOSE = "<subgoal>", "</subgoal>"
ACTION_OPEN, ACTION_CLOSE = "<action>", "</action>"
KEEP, SWITCH = "KEEP", "SWITCH"

# Close-tag variants the trainer-side span search accepts, in priority order on ties: a
# tokenizer may merge the close tag with the character before it or the newline after it.
SWITCH_CLOSE_TAGS = ("</switch>", "</switch>\n")
SUBGOAL_CLOSE_TAGS = tuple(f"{pre}</subgoal>{post}" for pre in ("", "]", ".", ")") for post in ("", "\n"))
ACTION_CLOSE_TAGS = tuple(f"{pre}</action>{post}" for pre in ("", "]", ".", ")") for post in ("", "\n"))

# What the environment executes when the action block is missing: the response's tail.
FALLBACK_ACTION_CHARS = {"alfworld": 30, "webshop": 20}
_CJK = re.compile("[\u4e00-\u9fff]")


def format_turn(switch: str, subgoal: str, action: str) -> str:
    """A well-formed response (used by demos, tests and scripted agents)."""
    return (f"{SWITCH_OPEN}{switch}{SWITCH_CLOSE}\n{SUBGOAL_OPEN}{subgoal}{SUBGOAL_CLOSE}\n"
            f"{ACTION_OPEN}{action}{ACTION_CLOSE}")


# ---------------------------------------------------------------------------------------------
# Environment-side parsing (docs/semantics.md §2.3)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedTurn:
    """What the environment takes from one response.

    action: executed even when `valid` is False (lower-cased; the response's tail when the
        action block is missing).
    subgoal: carried into the next prompt as the current subgoal ("" or a fallback on
        malformed output, exactly as the reference does).
    switch: "KEEP", "SWITCH" or "" when unreadable (WebShop reads an unreadable value as KEEP).
    valid: the format-validity flag.
    """

    action: str
    subgoal: str
    switch: str
    valid: bool


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """Text between the first open tag and the first close tag (each found independently), or
    None when either is missing. A close tag before the open one gives an empty string."""
    start, end = text.find(open_tag), text.find(close_tag)
    if start < 0 or end < 0:
        return None
    return text[start + len(open_tag):end]


def parse_turn(response: str, env: str = "alfworld") -> ParsedTurn:
    """Parse one decoded response (special tokens skipped) the way the environment does.

    1. The action is read case-insensitively between the first <action> and </action>; if
       either is missing the turn is invalid and the action is the response's last 30
       (WebShop: 20) characters, lower-cased, with no subgoal and no switch.
    2. A missing switch block makes the turn invalid; the subgoal then falls back to the last
       30 characters of the action (WebShop: the string "None"). A switch content other than
       KEEP / SWITCH (after strip and upper-casing) makes it invalid (WebShop: read as KEEP).
       Otherwise a missing subgoal block makes it invalid, and a present one gives the subgoal.
    3. Any CJK ideograph (U+4E00-U+9FFF) makes the turn invalid.
    """
    if env not in FALLBACK_ACTION_CHARS:
        raise ValueError(f"env: expected one of {sorted(FALLBACK_ACTION_CHARS)}, got {env!r}")
    lower = response.lower()
    action = _between(lower, ACTION_OPEN, ACTION_CLOSE)
    if action is None:
        return ParsedTurn(lower[-FALLBACK_ACTION_CHARS[env]:], "", "", False)
    action = action.strip().lower()
    valid = True
    subgoal, switch = "", ""
    switch_text = _between(response, SWITCH_OPEN, SWITCH_CLOSE)
    if switch_text is None:
        valid = False
        subgoal = "None" if env == "webshop" else action[-30:]
    else:
        decision = switch_text.strip().upper()
        if decision not in (KEEP, SWITCH):
            valid = False
            if env == "webshop":
                switch = KEEP
        else:
            switch = decision
            subgoal_text = _between(response, SUBGOAL_OPEN, SUBGOAL_CLOSE)
            if subgoal_text is None:
                valid = False
            else:
                subgoal = subgoal_text.strip()
    if _CJK.search(response):
        valid = False
    return ParsedTurn(action, subgoal, switch, valid)


# ---------------------------------------------------------------------------------------------
# Prompts (docs/semantics.md §2.2)
# ---------------------------------------------------------------------------------------------

@dataclass
class TurnRecord:
    """One past step as the history shows it: the observation before it and the action taken."""

    observation: str
    action: str


@dataclass
class PlanExecuteState:
    """Per-episode prompt state: the task, the recent history and the subgoal carried over.

    `record(observation, parsed)` stores a step and carries the parsed subgoal, whatever the
    parser produced (including the fallbacks of malformed output), into the next prompt.
    """

    task: str
    history_length: int = 2
    history: list[TurnRecord] = field(default_factory=list)
    current_subgoal: str | None = None

    @property
    def step_count(self) -> int:
        return len(self.history)

    def record(self, observation: str, parsed: ParsedTurn) -> None:
        self.history.append(TurnRecord(observation, parsed.action))
        self.current_subgoal = parsed.subgoal

    def recent(self) -> list[tuple[int, TurnRecord]]:
        start = max(0, len(self.history) - self.history_length)
        return [(k + 1, rec) for k, rec in enumerate(self.history) if k >= start]


_ROLE = {
    "alfworld": "You are an expert agent acting in a household environment (ALFRED, text version).",
    "webshop": "You are an expert autonomous shopping agent in the WebShop web environment.",
    "textworld": "You are an expert agent playing a text adventure.",
    "scienceworld": "You are an expert agent running experiments in a text-based science environment.",
}

_SUBGOAL_RULES = """\
Work through the task by keeping a short-term SUB-GOAL: a small, high-level objective that a few actions \
can achieve. It is neither the whole task nor a single low-level action. At every step, look at the \
latest observation and decide whether to continue the current sub-goal or to switch to a new one."""

_FORMAT_RULES = """\
Reply with exactly these three blocks, in this order, and nothing else:
<switch>KEEP or SWITCH</switch>
<subgoal>the sub-goal you will follow next</subgoal>
<action>one admissible action</action>
Rules:
- <switch> holds only KEEP (continue the current sub-goal) or SWITCH (start a new one).
- <subgoal> is required every step. With KEEP, copy the current sub-goal exactly. With SWITCH, write a new \
short sub-goal that a few actions can achieve.
- <action> holds exactly one action copied verbatim from the admissible actions.
- Write no reasoning and no other text."""


def format_actions(actions: Sequence[str]) -> str:
    """Admissible actions as a bracketed list, one quoted action per line."""
    return "[\n " + "\n ".join(f"'{a}'" for a in actions) + "\n]"


def build_prompt(state: PlanExecuteState, observation: str, admissible_actions: Sequence[str],
                 env: str = "alfworld", role: str | None = None) -> str:
    """The user message of one turn: role, sub-goal instructions, (after the first step) the
    task, step count and recent history, then the current observation, the current sub-goal
    ("None" on the first step), the admissible actions and the format rules.

    env picks the built-in role line ("alfworld", "webshop", "textworld", "scienceworld");
    `role` replaces it (an environment of your own)."""
    if role is None:
        if env not in _ROLE:
            raise ValueError(f"env: expected one of {sorted(_ROLE)} (or a role), got {env!r}")
        role = _ROLE[env]
    parts = [role, _SUBGOAL_RULES]
    if state.history:
        lines = [f"[Observation {k}: '{rec.observation}', Action {k}: '{rec.action}']" for k, rec in state.recent()]
        parts.append(f"Your task: {state.task}\n"
                     f"You have already taken {state.step_count} step(s). "
                     f"The most recent {len(lines)} observation(s) and action(s):\n" + "\n".join(lines))
    else:
        parts.append(f"Your task: {state.task}")
    subgoal = "None" if state.current_subgoal is None else state.current_subgoal
    note = " (there is no sub-goal yet on the first step)" if not state.history else ""
    parts.append(f"Current observation: {observation}")
    parts.append(f"Current sub-goal{note}: {subgoal}")
    parts.append(f"Admissible actions:\n{format_actions(admissible_actions)}")
    parts.append(_FORMAT_RULES)
    return "\n\n".join(parts)


def render_prompt(tokenizer, user_message: str) -> str:
    """The prompt text the policy sees: one user message through the tokenizer's chat
    template, with the assistant turn opened (`add_generation_prompt=True`)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user_message}], tokenize=False,
                                         add_generation_prompt=True)
