"""What long work tells the user while it runs: per-turn rollout progress and time estimates
(and `CountBar`, a plain bar of a known amount of work).

A rollout reports every turn it plays as a `TurnProgress` (turns done, environments still
running, tokens generated and how long that took); `RolloutBar` shows them as a tqdm bar on
stderr, and `StepEstimate.from_first_turn` turns the first one into an upper bound on the time
of a training step and of a run. The first turn's generate is timed in two parts: the prefill
(one forward over the left-padded prompts, up to the first new token) and the decoding steps.

    a turn   <= its time outside generate + its prefill x max_prompt_length / prompt width
                + max_new_tokens x its time per decoding step
    rollout  <= env resets + max_turns x a turn
    updates  <= passes x 2 x parameters FLOP x envs x max_turns rows
                x (max_prompt_length + max_new_tokens) tokens / the prefill's FLOP rate

Worst cases on every side: every environment plays every turn to the token cap, every prompt is
as long as a prompt may be (ALFWorld's are about half of the default 2048), and the updates run
at the rate of an fp32 forward over a batch of prompts (under bf16 autocast on a GPU, faster).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnProgress:
    """One rollout turn, as the engine reports it after the turn's environments stepped."""

    turn: int               # turns played so far (1 after the first)
    max_turns: int
    envs: int               # environments of the rollout
    rows: int               # environments that played this turn
    running: int            # environments still running after it
    prompt_width: int       # the turn's prompts, left-padded to this many tokens
    response_length: int    # the turn's responses, padded to this many tokens (<= max_new_tokens)
    new_tokens: int         # tokens the turn generated (up to each response's stop token)
    generate_seconds: float
    prefill_seconds: float  # the part of generate up to the first new token: the forward over the prompts
    turn_seconds: float     # the whole turn: prompts, generate, parsing, environment steps, recording
    reset_seconds: float    # resetting the environments before the first turn

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.generate_seconds, 1e-9)


class RolloutBar:
    """A tqdm bar of a rollout's turns on stderr: turns done / max, environments still running,
    new tokens/s. Nested under an open bar (the training bar), it takes the line below it and
    clears itself when done."""

    def __init__(self, max_turns: int, envs: int, desc: str = "rollout"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=max_turns, desc=desc, unit="turn", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(f"running {envs}/{envs}")

    def update(self, turn: TurnProgress) -> None:
        self.bar.set_postfix_str(f"running {turn.running}/{turn.envs}, {turn.tokens_per_second:.0f} new tok/s",
                                 refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class StepBar:
    """The training bar on stderr: steps done / steps, the phase the current step is in
    (rollout, values, log-probs, updates: a CPU step spends minutes outside the rollout), and
    the last step's success rate and time."""

    def __init__(self, steps: int, done: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=steps, initial=done, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)
        self.last = ""

    def phase(self, name: str) -> None:
        self.bar.set_postfix_str(name + (f" | last step: {self.last}" if self.last else ""))

    def step_done(self, success_rate: float, seconds: float) -> None:
        self.last = f"success {success_rate:.2f}, {format_seconds(seconds)}"
        self.bar.set_postfix_str(f"last step: {self.last}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class CountBar:
    """A tqdm bar on stderr of a known amount of work (`hiper sft`'s expert episodes and
    fine-tuning steps), with a short status after the count."""

    def __init__(self, total: int, desc: str, unit: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, status: str = "") -> None:
        if status:
            self.bar.set_postfix_str(status, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@dataclass(frozen=True)
class StepEstimate:
    """Upper bounds on a training step's time, from its rollout's first turn."""

    rollout_seconds: float
    update_seconds: float
    flop_rate: float        # FLOP/s of the first turn's prefill: a forward over a batch of prompts
    passes: int             # forward-equivalent passes over every training token per step

    @property
    def step_seconds(self) -> float:
        return self.rollout_seconds + self.update_seconds

    @classmethod
    def from_first_turn(cls, turn: TurnProgress, *, parameters: int, max_new_tokens: int, max_prompt_length: int,
                        passes: int) -> "StepEstimate":
        """`turn`: the first turn of a rollout; `parameters`: the policy's parameter count (a
        forward costs 2 FLOP per parameter and token); `passes`: forward-equivalents of the
        update passes over every token (see `update_passes`)."""
        if turn.turn != 1:
            raise ValueError(f"turn: expected the rollout's first turn, got turn {turn.turn}")
        prefill = max(turn.prefill_seconds, 1e-9)
        per_token = max(turn.generate_seconds - prefill, 0.0) / max(turn.response_length - 1, 1)
        turn_bound = (turn.turn_seconds - turn.generate_seconds + prefill * max_prompt_length / turn.prompt_width
                      + max_new_tokens * per_token)
        rollout = turn.reset_seconds + turn.max_turns * turn_bound
        flop_rate = 2.0 * parameters * turn.rows * turn.prompt_width / prefill
        rows = turn.envs * turn.max_turns
        update = passes * 2.0 * parameters * rows * (max_prompt_length + max_new_tokens) / flop_rate
        return cls(rollout_seconds=rollout, update_seconds=update, flop_rate=flop_rate, passes=passes)

    def describe(self, steps_left: int) -> str:
        run = f"; the run's {steps_left} step(s) <= {format_seconds(steps_left * self.step_seconds)}" \
            if steps_left > 1 else ""
        return (f"estimate (an upper bound: every environment plays every turn to the token cap, prompts at "
                f"max_prompt_length): a step <= {format_seconds(self.step_seconds)} (rollout <= "
                f"{format_seconds(self.rollout_seconds)}, updates <= {format_seconds(self.update_seconds)}: "
                f"{self.passes} passes at the prefill's {self.flop_rate / 1e9:.0f} GFLOP/s){run}; checkpoint saves "
                f"and evaluations come on top")


def update_passes(*, critic: bool, shared_critic: bool, reference: bool, gradient_checkpointing: bool,
                  ppo_epochs: int, critic_epochs: int | None = None) -> int:
    """Forward-equivalent passes over every training token in a step: values, old and
    reference log-probs (one forward each), then per epoch a forward and a backward (about two
    forwards) for the actor and, per critic epoch, for a separate critic, plus a recomputed forward with
    checkpointing; a critic on the actor's backbone reads its values from the old log-probs'
    forward and trains its heads only (one forward)."""
    trained = 3 + int(gradient_checkpointing)
    critic_update = 0 if not critic else (1 if shared_critic else trained)
    return (int(critic and not shared_critic) + 1 + int(reference) + ppo_epochs * trained
            + (critic_epochs or ppo_epochs) * critic_update)


def format_seconds(seconds: float) -> str:
    """12 s, 3.5 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
