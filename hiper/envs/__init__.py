"""Text environments behind one protocol (see hiper.envs.base), a vectorised pool, and the
registry of which games each environment family plays (hiper.envs.registry).

    ALFWorld      hiper.envs.alfworld       (the paper's benchmark; real engine, offline game files)
    TextWorld     hiper.envs.textworld_cooking  (cooking games generated offline by tw-make)
    ScienceWorld  hiper.envs.scienceworld   (Java)

Adding one: subclass `TextEnv`, implement `_reset(seed) -> Observation` and
`_step(action) -> Step` (with `info["won"]`), build it with `EnvSpec("custom", {"factory":
"my_module:MyEnv", ...})`, and `register(Family("mine", {"train": [...], "test": [...]}, ...))`
so that the trainer, evaluation and `hiper train --env mine` play it.
"""
from hiper.envs.base import DEFAULT_MAX_STEPS, ExpertError, Observation, Step, TextEnv
from hiper.envs.pool import EnvPool, EnvWorkerError
from hiper.envs.spec import EnvSpec
from hiper.envs.registry import Family, register

__all__ = ["DEFAULT_MAX_STEPS", "EnvPool", "EnvSpec", "EnvWorkerError", "ExpertError", "Family", "Observation", "Step",
           "TextEnv", "register"]
