"""Which games an environment plays: the one place the trainer, evaluation and `hiper rollout`
choose them.

Every environment family has named splits of games that never overlap, a training split, a
held-out split for evaluation, and a role line for the prompt:

    family     splits (train / held-out ...)             a game is
    alfworld   train / valid_unseen, valid_seen, ...    a game file of ALFWorld's json_2.1.1 release
    textworld  train / valid, test                      a cooking game, by its tw-make seed (disjoint ranges)
    scienceworld  train / dev, test                     a (task, variation) from ScienceWorld's own lists
    twx        train / dev, test                        a TextWorld-Express game: task, parameters and seed
    keychest   train / test                             a room and action order of hiper's two-subgoal sanity game

    specs = training_specs("alfworld", "train", count=8, step=3, seed=0, max_turns=50)
    specs = evaluation_specs("alfworld", "valid_unseen", count=10, max_turns=50)

Training draws games from a seeded permutation of the split, reshuffled every epoch (one pass
over the split): step s plays draws s*k .. s*k+k-1, so a resumed run draws exactly what the
uninterrupted run would have, from the step alone. Evaluation plays games spread evenly over
the (sorted) split, so a small evaluation covers every task type, and the same games every time.

Your own environment: `register(Family("counting", role=..., splits={"train": [...], "test":
[...]}, eval_split="test"))` with lists of `EnvSpec("custom", {"factory": "module:callable", ...})`,
then `TrainConfig(env="counting")`, or `hiper train --env module:attribute` where the attribute is
such a Family (importing the module registers nothing by itself; the attribute is read).
"""
from __future__ import annotations

import importlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from hiper.envs import keychest, twx
from hiper.envs.spec import EnvSpec

# What a rollout names when an environment has no prompt role of its own.
GENERIC_ROLE = "You are an expert agent acting in a text environment."


@dataclass(frozen=True)
class GameOptions:
    """What shapes a split's games beyond its name.

    max_turns: the step cap of every episode.
    data: ALFWorld's data root (holding json_2.1.1/), "sample" for hiper's packaged games, or
        None for $ALFWORLD_DATA.
    tasks: restrict to these task types (ALFWorld) or task names (ScienceWorld, TextWorld-Express);
        None: all (ALFWorld), ("boil",) (ScienceWorld) or ("cookingworld",) (TextWorld-Express).
    params: a generated game's parameters, "name=value,..." (TextWorld-Express: hiper.envs.twx).
    """

    max_turns: int = 50
    data: str | None = None
    tasks: tuple[str, ...] | None = None
    params: str | None = None


@dataclass(frozen=True)
class Family:
    """An environment family: its named splits of games and the prompt role of its agent.

    splits: split name -> the split's games, either a list of EnvSpecs (their kwargs get
        `max_steps` from the options unless they set it) or a callable (split, options) ->
        list of EnvSpecs, for families that build games on demand.
    prompt: the `hiper.format.build_prompt` role key ("alfworld", "textworld", ...), or None to
        use `role` as the first line of every prompt.
    takes_params: whether its games are generated from GameOptions.params (else a game_params
        given is refused, rather than silently ignored).
    """

    name: str
    splits: dict[str, Sequence[EnvSpec] | Callable[[str, GameOptions], Sequence[EnvSpec]]]
    train_split: str = "train"
    eval_split: str = "test"
    prompt: str | None = None
    role: str = GENERIC_ROLE
    task_type: Callable[[EnvSpec], str] = field(default=lambda spec: spec.kind)
    report_split: str | None = None  # what `hiper eval` plays by default (None: eval_split)
    takes_params: bool = False

    def __post_init__(self):
        for split in (self.train_split, self.eval_split, self.report_split or self.eval_split):
            if split not in self.splits:
                raise ValueError(f"splits: family {self.name!r} has no split {split!r}")

    def games(self, split: str, options: GameOptions) -> list[EnvSpec]:
        """The split's games in a fixed order."""
        if split not in self.splits:
            raise ValueError(f"split: {self.name} has the splits {', '.join(self.splits)}; got {split!r}")
        if options.params and not self.takes_params:
            raise ValueError(f"game_params: {self.name} games take no parameters (TextWorld-Express and keychest games do)")
        source = self.splits[split]
        specs = list(source(split, options) if callable(source) else source)
        if not specs:
            raise ValueError(f"split: {self.name}'s split {split!r} holds no games")
        return [spec if "max_steps" in spec.kwargs else EnvSpec(spec.kind, {**spec.kwargs,
                                                                            "max_steps": options.max_turns})
                for spec in specs]


# ---------------------------------------------------------------------------------------------
# The built-in families
# ---------------------------------------------------------------------------------------------

def _alfworld_games(split: str, options: GameOptions) -> list[EnvSpec]:
    from hiper.envs.alfworld import list_games, resolve_data

    root = resolve_data(options.data)
    games = list_games(split, root, task_types=options.tasks)
    return [EnvSpec("alfworld", {"game_file": str(g), "max_steps": options.max_turns}) for g in games]


def _alfworld_task_type(spec: EnvSpec) -> str:
    from hiper.envs.alfworld import task_type_of

    return task_type_of(spec.kwargs["game_file"])


# TextWorld cooking games are generated from a seed: each split is its own seed range, far apart.
TEXTWORLD_SEEDS = {"train": range(0, 10_000), "valid": range(1_000_000, 1_000_500),
                   "test": range(2_000_000, 2_000_500)}
TEXTWORLD_GAME = {"recipe": 2, "take": 1, "go": 1}


def _textworld_games(split: str, options: GameOptions) -> list[EnvSpec]:
    if options.tasks:
        raise ValueError("tasks: TextWorld cooking games have no task subsets")
    return [EnvSpec("textworld", {"game": {**TEXTWORLD_GAME, "seed": seed}, "max_steps": options.max_turns})
            for seed in TEXTWORLD_SEEDS[split]]


def _scienceworld_games(split: str, options: GameOptions) -> list[EnvSpec]:
    from hiper.envs.scienceworld import variations

    tasks = options.tasks or ("boil",)
    return [EnvSpec("scienceworld", {"task": task, "variation": v, "max_steps": options.max_turns})
            for task in tasks for v in variations(task, split)]


def _twx_games(split: str, options: GameOptions) -> list[EnvSpec]:
    return [spec for task in options.tasks or ("cookingworld",)
            for spec in twx.games(split, task, options.params, options.max_turns)]


def _keychest_games(split: str, options: GameOptions) -> list[EnvSpec]:
    if options.tasks:
        raise ValueError("tasks: keychest games have no task subsets")
    return keychest.games(split, options.params)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make `family` available by name to the trainer, evaluation and the command line."""
    if not isinstance(family, Family):
        raise TypeError(f"family: expected a hiper.envs.Family, got {type(family).__name__}")
    FAMILIES[family.name] = family
    return family


register(Family("alfworld", {s: _alfworld_games for s in ("train", "valid_seen", "valid_unseen", "valid_train")},
                eval_split="valid_unseen", prompt="alfworld", task_type=_alfworld_task_type))
register(Family("textworld", {s: _textworld_games for s in TEXTWORLD_SEEDS}, eval_split="valid",
                prompt="textworld", task_type=lambda spec: "cooking"))
register(Family("scienceworld", {s: _scienceworld_games for s in ("train", "dev", "test")}, eval_split="dev",
                prompt="scienceworld", task_type=lambda spec: spec.kwargs["task"]))
register(Family("twx", {s: _twx_games for s in twx.SPLITS}, eval_split="dev", report_split="test", role=twx.ROLE,
                task_type=lambda spec: spec.kwargs["task"], takes_params=True))
register(Family("keychest", {s: _keychest_games for s in ("train", "test")},
                role=keychest.ROLE, task_type=lambda spec: "keychest", takes_params=True))


def family(name: str) -> Family:
    """The registered family `name`, or `module:attribute` naming a Family (registered on use)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"env: expected an environment name, got {name!r}")
    if name in FAMILIES:
        return FAMILIES[name]
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"env: cannot import {name!r} ({exc})") from exc
        if not isinstance(found, Family):
            raise ValueError(f"env: {name!r} is a {type(found).__name__}, not a hiper.envs.Family")
        FAMILIES[name] = found
        return found
    raise ValueError(f"env: expected one of {', '.join(FAMILIES)} or module:attribute naming a Family; got {name!r}")


# ---------------------------------------------------------------------------------------------
# Choosing games
# ---------------------------------------------------------------------------------------------

def draw_order(num_games: int, draws: range, seed: int) -> np.ndarray:
    """Indices of the games drawn at positions `draws` of a seeded schedule: the games in a
    random order, a fresh order every epoch (pass over all of them). Draw k of the schedule is
    a function of (k, seed) alone, which makes a resumed run draw what an uninterrupted one
    would."""
    positions = np.arange(draws.start, draws.stop)
    out = np.empty(len(positions), dtype=np.int64)
    epochs = positions // num_games
    for epoch in np.unique(epochs):  # a step spans at most two epochs: at most two permutations
        order = np.random.default_rng([seed, int(epoch)]).permutation(num_games)
        at = epochs == epoch
        out[at] = order[positions[at] % num_games]
    return out


def _check_counts(count: int, group_size: int) -> int:
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"envs: need at least one environment, got {count!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 1 or count % group_size:
        raise ValueError(f"group_size: must be >= 1 and divide the environments of a step ({count}), "
                         f"got {group_size!r}")
    return count // group_size


def training_specs(env: str, split: str, count: int, step: int, *, seed: int = 0, group_size: int = 1,
                   max_turns: int = 50, data: str | None = None, tasks: Sequence[str] | None = None,
                   params: str | None = None) -> list[EnvSpec]:
    """The `count` environments of training step `step` (0-based): count / group_size games
    drawn from the seeded schedule of the split, each repeated group_size times in a row
    (environment i plays game i // group_size)."""
    games = game_list(env, split, max_turns=max_turns, data=data, tasks=tasks, params=params)
    tasks_per_step = _check_counts(count, group_size)
    picks = draw_order(len(games), range(step * tasks_per_step, (step + 1) * tasks_per_step), seed)
    return [games[k] for k in picks for _ in range(group_size)]


def evaluation_specs(env: str, split: str | None, count: int, *, max_turns: int = 50, data: str | None = None,
                     tasks: Sequence[str] | None = None, params: str | None = None,
                     count_name: str = "episodes") -> list[EnvSpec]:
    """`count` distinct games spread evenly over a held-out split (the family's evaluation split
    when None); the same games on every call. Refuses more games than the split holds
    (`count_name` names the count in that error)."""
    fam = family(env)
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"{count_name}: need at least one game, got {count!r}")
    games = game_list(env, split or fam.eval_split, max_turns=max_turns, data=data, tasks=tasks, params=params)
    if count > len(games):
        raise ValueError(f"{count_name}: the {split or fam.eval_split} split of {fam.name} holds {len(games)} "
                         f"distinct games, asked for {count}")
    return [games[(i * len(games)) // count] for i in range(count)]


def game_list(env: str, split: str, *, max_turns: int = 50, data: str | None = None,
              tasks: Sequence[str] | None = None, params: str | None = None) -> list[EnvSpec]:
    """Every game of a split, in its fixed order."""
    return family(env).games(split, GameOptions(max_turns=max_turns, data=data,
                                                tasks=tuple(tasks) if tasks else None, params=params or None))


def task_mix(env: str, specs: Sequence[EnvSpec]) -> dict[str, int]:
    """How many of `specs` play each task type (sorted by type)."""
    counts = Counter(family(env).task_type(spec) for spec in specs)
    return dict(sorted(counts.items()))


def prompt_role(env: str) -> tuple[str | None, str]:
    """(build_prompt's role key or None, the role line) of an environment family."""
    fam = family(env)
    return fam.prompt, fam.role


def game_key(spec: EnvSpec) -> str:
    """A stable identity of a game (what makes two specs the same game), for overlap checks."""
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "max_steps"}
    return f"{spec.kind}:{json.dumps(kwargs, sort_keys=True, default=str)}"

