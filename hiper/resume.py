"""A resumed run keeps the configuration it was started with.

`hiper train --resume` continues the run in --run-dir with the TrainConfig its checkpoint
recorded (trainer_state.json: the resolved config that wrote the weights, which config.json
repeats), not with the defaults of the flags left out. A flag given explicitly (on the command
line or in --config) may change only what RESUMABLE lists; any other flag whose value differs
from the run's is refused, naming it and both values, unless --override is given, in which case
the new value is used and the change is logged.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

from hiper.flags import shown
from hiper.settings import parse_value
from hiper.train_config import FIELD_TYPES, TrainConfig, config_from_dict

__all__ = ["RESUMABLE", "resumed_config"]

# The fields a resumed run may change freely: none changes what a step computes from the weights,
# only how long the run goes on, what it reports and where it runs.
RESUMABLE: dict[str, str] = {
    "steps": "where the run stops: a resumed run continues to a later step, with the same updates",
    "eval_every": "when held-out evaluations run: they read the policy and never update it",
    "eval_envs": "how many held-out games an evaluation plays: it reads the policy and never updates it",
    "save_every": "when checkpoints are written: a save reads the state and changes none of it",
    "progress": "whether bars are drawn on stderr: display only",
    "device": "where the same computation runs (the resolved sizes are the run's, recorded, not the new "
              "device's profile)",
    "workers": "how many processes step the same games: each game plays the same in any of them",
    "engine": "what samples the rollouts (hf or vLLM): the same policy and sampling settings",
}

# Fields that locate the run rather than describe it: run_dir is how the run is found (taken from the
# command line, so a moved directory still resumes), and overwrite is refused with --resume anyway.
_LOCATION = ("run_dir", "overwrite")


def resumed_config(saved: Mapping[str, Any], from_file: Mapping[str, Any], from_flags: Mapping[str, Any], *,
                   override: bool, log: Callable[[str], None]) -> TrainConfig:
    """The TrainConfig of a resumed run: `saved` (the run's recorded config) with the values given
    in --config (`from_file`) and on the command line (`from_flags`, which win) for the fields of
    RESUMABLE; another given value that differs from the saved one is refused (ValueError naming
    the field, or `config key FIELD` when the file gave it) unless `override`, which takes it and
    logs the change."""
    unknown = sorted(set(saved) - set(FIELD_TYPES))
    if unknown:
        raise ValueError(f"resume: the run's saved configuration holds keys this hiper does not know "
                         f"({', '.join(unknown)}); resume it with the hiper version that started it")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    values = {**defaults, **saved, "overwrite": False}
    for name, given in {**from_file, **from_flags}.items():
        where = name if name in from_flags else f"config key {name}"
        if name not in FIELD_TYPES:
            values[name] = given  # refused by config_from_dict, with the closest keys
            continue
        new = _read(name, given, where)
        if name in _LOCATION or name in RESUMABLE or new == values[name]:
            values[name] = new
            continue
        change = f"the run was started with {shown(values[name])}; resuming with {shown(new)}"
        if not override:
            raise ValueError(f"{where}: {change} would change it (pass --override to allow)")
        flag = "--" + name.replace("_", "-") if name in from_flags else where
        log(f"hiper train: {flag}: {change} (--override)")
        values[name] = new
    return config_from_dict(values)


def _read(name: str, value: Any, where: str):
    """A given value as its field's type, so that `--gamma 0.9` and a saved 0.9 compare equal."""
    kind, optional = FIELD_TYPES[name]
    if value is None and optional:
        return None
    try:
        return parse_value(kind, value)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None
