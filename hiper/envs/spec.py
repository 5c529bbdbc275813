"""How to build one environment: `EnvSpec`, a picklable value that a worker process receives and
turns into a live `TextEnv` with `make()`.

    EnvSpec("twx", {"game": "cookingworld", "seed": 3})          # a built-in kind
    EnvSpec("custom", {"factory": "my_pkg.envs:MyEnv", "level": 2})  # any importable callable

A kind names its constructor as an import path ("module:callable"), resolved only when an
environment is built, so a process imports just the environments it plays (TextWorld, Java for
ScienceWorld and TextWorld-Express) and the pool knows no environment by name. A kind of your own
is `custom` with a `factory` path: a spawned worker imports it by that path, where a table filled at
run time in the parent would be empty.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from hiper.envs.base import TextEnv

# Built-in kinds: kind -> "module:callable" returning a TextEnv from the spec's kwargs.
BUILTIN_KINDS = {
    "alfworld": "hiper.envs.alfworld:AlfworldEnv",
    "textworld": "hiper.envs.textworld_cooking:from_spec",
    "scienceworld": "hiper.envs.scienceworld:ScienceWorldEnv",
    "twx": "hiper.envs.twx:TwxEnv",
}


def _import_callable(path: str, argument: str):
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"{argument}: expected 'module:callable', got {path!r}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment: `kind` (one of BUILTIN_KINDS, or "custom") and its keyword
    arguments; a custom kind names its constructor in kwargs["factory"] ("module:callable")."""

    kind: str
    kwargs: dict = field(default_factory=dict)

    def make(self) -> TextEnv:
        kwargs = dict(self.kwargs)
        if self.kind == "custom":
            if "factory" not in kwargs:
                raise ValueError("kwargs: a custom EnvSpec needs a 'factory': 'module:callable'")
            constructor = _import_callable(kwargs.pop("factory"), "factory")
        elif self.kind in BUILTIN_KINDS:
            constructor = _import_callable(BUILTIN_KINDS[self.kind], "kind")
        else:
            raise ValueError(f"kind: expected one of {', '.join(BUILTIN_KINDS)} or custom, got {self.kind!r}")
        return constructor(**kwargs)
