"""Expert demonstrations in the Plan-Execute format, for a supervised warm start (`hiper sft`).

An environment that can demonstrate implements `TextEnv.expert_turn() -> (subgoal, action)`:
its expert's next action and the sub-goal of the phase of the plan that action serves (ALFWorld:
find / take / heat / put ..., TextWorld: the recipe's steps, ScienceWorld: the gold path's
sections, keychest: find the key, open the chest). `play` runs an expert through one game and
writes every turn as the policy should have written it: SWITCH on the turn the sub-goal changes,
KEEP otherwise, the sub-goal, the action.

    demos = collect("alfworld", "train", episodes=200, data=..., max_turns=50)
    pairs = render(demos, tokenizer, RolloutConfig.for_env("alfworld"))   # [(prompt, response)]

`render` builds each prompt exactly as the rollout does (`build_prompt` with the same history
window and admissible-action listing, `render_prompt` through the chat template), so the policy
is fine-tuned on the very prompts it will be sampled on; each response ends with the end-of-turn
token the rollout stops at.

`expert_noise` makes an imperfect teacher: on each turn, with that probability, the demonstration
takes a random other admissible action instead (the sub-goal stays the expert's). Experts that
re-plan from the current state (ALFWorld, TextWorld, keychest) recover; a fixed gold path does
not (its expert raises ExpertError, and the episode is dropped). Lost episodes are dropped unless
`keep_lost`.

`plan_noise` makes errors of the plan instead: on a turn where the expert sets a new sub-goal,
with that probability, the demonstration writes the environment's planning error for the state
(`TextEnv.expert_mistakes`: one of its wrong sub-goals and the action that pursues it) and the expert plans
again on the next turn. A policy fine-tuned on it picks wrong sub-goals and acts on them, so what
it learns afterwards about its sub-goals shows in what it does (the credit HAE gives sub-goal
tokens). Only keychest defines such errors; asking another environment for them is refused.
"""
from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

from hiper.envs.base import ExpertError
from hiper.envs.spec import EnvSpec
from hiper.format import KEEP, SWITCH, PlanExecuteState, build_prompt, format_turn, parse_turn, render_prompt


@dataclass
class DemoTurn:
    observation: str               # what the policy is shown before acting
    admissible_actions: list[str]
    switch: str                    # KEEP or SWITCH
    subgoal: str
    action: str                    # what was played (the expert's, or a noisy one)
    expert_action: str             # what the expert would have played


@dataclass
class Demonstration:
    game: str                      # EnvSpec identity (hiper.envs.registry.game_key)
    task: str
    task_type: str
    won: bool
    reward: float
    turns: list[DemoTurn] = field(default_factory=list)


def _check_noise(noise, name: str = "expert_noise") -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {noise!r}")
    return float(noise)


def play(spec: EnvSpec, *, task_type: str = "", expert_noise: float = 0.0, seed: int = 0,
         plan_noise: float = 0.0) -> Demonstration:
    """One episode of the game `spec` played by its environment's expert (see the module docstring)."""
    from hiper.envs.base import TextEnv
    from hiper.envs.registry import game_key

    noise = _check_noise(expert_noise)
    plan_noise = _check_noise(plan_noise, "plan_noise")
    rng = random.Random(seed)
    key = game_key(spec)
    if spec.kind in ("alfworld", "textworld", "twx"):
        # Their experts track the game from its first state: asked for up front, they cost nothing later.
        spec = EnvSpec(spec.kind, {**spec.kwargs, "expert": True})
    env = spec.make()
    try:
        if plan_noise and type(env).expert_mistakes is TextEnv.expert_mistakes:
            raise ValueError(f"plan_noise: {env.describe()} has no planning errors to demonstrate "
                             "(TextEnv.expert_mistakes)")
        observation = env.reset(seed)
        demo = Demonstration(key, observation.task, task_type, won=False, reward=0.0)
        previous_subgoal, done = None, False
        # ScienceWorld lists only some of the commands it accepts, and its gold path uses others.
        listed_in_full = getattr(env, "lists_every_action", True)
        while not done:
            subgoal, expert_action = env.expert_turn()
            if listed_in_full and expert_action not in observation.admissible_actions:
                raise RuntimeError(f"{env.describe()}: the expert chose {expert_action!r}, which is not admissible "
                                   f"(admissible: {observation.admissible_actions})")
            mistakes = env.expert_mistakes() if plan_noise and subgoal != previous_subgoal else []
            if mistakes and rng.random() < plan_noise:
                subgoal, action = rng.choice(mistakes)  # the expert plans again on the next turn
            else:
                others = [a for a in observation.admissible_actions if a != expert_action]
                action = rng.choice(others) if others and rng.random() < noise else expert_action
            switch = KEEP if subgoal == previous_subgoal else SWITCH
            demo.turns.append(DemoTurn(observation.text, list(observation.admissible_actions), switch, subgoal,
                                       action, expert_action))
            previous_subgoal = subgoal
            step = env.step(action)
            demo.reward += step.reward
            demo.won = demo.won or bool(step.info.get("won"))
            observation, done = step.observation, step.done
        return demo
    finally:
        env.close()


def _play_one(job: tuple[EnvSpec, str, float, int, float]) -> Demonstration | None:
    """One episode of `collect`; None when the expert gave up on it (ExpertError: a fixed gold
    path after a noisy action), as such a demonstration is dropped, not patched."""
    spec, task_type, noise, seed, plan_noise = job
    try:
        return play(spec, task_type=task_type, expert_noise=noise, seed=seed, plan_noise=plan_noise)
    except ExpertError:
        return None


def collect(env: str, split: str = "train", episodes: int = 100, *, max_turns: int = 50, data: str | None = None,
            tasks: Sequence[str] | None = None, expert_noise: float = 0.0, seed: int = 0, keep_lost: bool = False,
            workers: int = 1, progress=None, params: str | None = None,
            plan_noise: float = 0.0) -> list[Demonstration]:
    """Expert episodes of `episodes` distinct games of `split`, drawn as training draws them (a
    seeded permutation of the split), played in `workers` processes. Returns the won ones (all
    with `keep_lost`; never one whose expert gave up), in draw order. `progress(done, total)` is
    called after each episode."""
    from hiper.envs.registry import family, training_specs

    _check_noise(expert_noise)
    _check_noise(plan_noise, "plan_noise")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: need at least one episode, got {episodes!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    specs = training_specs(env, split, episodes, 0, seed=seed, max_turns=max_turns, data=data, tasks=tasks,
                           params=params)
    fam = family(env)
    jobs = [(spec, fam.task_type(spec), expert_noise, seed * 1_000_003 + k, plan_noise)
            for k, spec in enumerate(specs)]
    demos = []
    if workers == 1:
        results = map(_play_one, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_play_one, jobs)
    try:
        for k, demo in enumerate(results, 1):
            if demo is not None:
                demos.append(demo)
            if progress is not None:
                progress(k, len(jobs))
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    return demos if keep_lost else [d for d in demos if d.won]


def render(demos: Sequence[Demonstration], tokenizer, config) -> list[tuple[str, str]]:
    """(prompt, response) text pairs, one per demonstration turn, as the rollout with `config`
    (a hiper.rollout.RolloutConfig) would prompt and the policy should answer."""
    if tokenizer.eos_token is None:
        raise ValueError("tokenizer: needs an end-of-turn (eos) token for responses to end with")
    style = "webshop" if config.env == "webshop" else "alfworld"
    pairs = []
    for demo in demos:
        state = PlanExecuteState(task=demo.task, history_length=config.history_length)
        for turn in demo.turns:
            prompt = render_prompt(tokenizer, build_prompt(state, turn.observation, turn.admissible_actions,
                                                           config.env, role=config.role))
            response = format_turn(turn.switch, turn.subgoal, turn.action)
            pairs.append((prompt, response + tokenizer.eos_token))
            state.record(turn.observation, parse_turn(response, style))
    return pairs


def summary(demos: Sequence[Demonstration]) -> dict:
    """Counts for a log line or a README table: episodes, turns, switches, per task type."""
    by_type: dict[str, int] = {}
    for d in demos:
        by_type[d.task_type] = by_type.get(d.task_type, 0) + 1
    turns = sum(len(d.turns) for d in demos)
    return {"episodes": len(demos), "turns": turns,
            "switches": sum(t.switch == SWITCH for d in demos for t in d.turns),
            "mean_turns": round(turns / max(1, len(demos)), 2), "task_types": dict(sorted(by_type.items()))}
