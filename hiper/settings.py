"""Settings dataclasses whose every field is a command-line flag: the field helper that carries
a flag's description and choices, the reading of a value from text, and the type check.

TrainConfig (`hiper train`) and WarmStartConfig (`hiper sft`) are both built from these, so that
a flag reads, checks and words its errors the same way in every command. This module imports
nothing of hiper's: the configs, the flags and the studies can all use it without a cycle.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any

import numpy as np

__all__ = ["check_types", "declared_kinds", "parse_value", "setting"]


def setting(default, help: str, *, choices: tuple[str, ...] | None = None):
    """A settings field with its description (what the command's --help shows) and, where its
    values are a fixed set, their choices (offered by the flag, checked by the config)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def declared_kinds(cls) -> dict[str, tuple[type, bool]]:
    """Each field's declared type (bool, int, float or str) and whether the annotation allows None."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        kinds[name] = (next((a for a in args if a is not type(None)), hint), type(None) in args)
    return kinds


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(kind: type, value: Any, *, text: bool = True):
    """`value` as a `kind` (bool, int, float or str). With `text` (a YAML file, a command line)
    a value may also come as a string: a bool as true/false, yes/no, on/off or 1/0 (also the
    numbers 1 and 0), an int as an integral string, a float as a numeric string ("1e-6", which
    YAML reads as a string). An int is never read from 1.5 or a bool; a float field takes an
    int. TypeError otherwise, saying what was expected (the caller names the field)."""
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool:
        if is_bool:
            return bool(value)
        if text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if text and isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, (int, np.integer)) and not is_bool:
            return int(value)
        if text and isinstance(value, str):
            try:
                return int(value)  # "1.5" and "two" raise
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not is_bool:
            return float(value)
        if text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    raise TypeError(f"expected {_EXPECTED[kind]}, got {value!r}")


def check_types(config, kinds: dict[str, tuple[type, bool]] | None = None) -> None:
    """Every field of the dataclass `config` holds its declared type, None only where the field
    allows it (or defaults to it); ints in float fields become floats and numpy scalars Python
    ones (configs are written as JSON). `kinds` is declared_kinds(type(config)), if already known."""
    kinds = kinds if kinds is not None else declared_kinds(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, optional = kinds[f.name]
        if value is None and (optional or f.default is None):
            continue
        try:
            value = parse_value(kind, value, text=False)
        except TypeError as exc:
            raise TypeError(f"{f.name}: {exc}") from None
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
        setattr(config, f.name, value)
