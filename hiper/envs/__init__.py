"""Text environments behind one protocol (see hiper.envs.base) and a vectorised pool.

    ALFWorld      hiper.envs.alfworld       (the paper's benchmark; real engine, offline game files)
    TextWorld     hiper.envs.textworld_cooking  (cooking games generated offline by tw-make)
    ScienceWorld  hiper.envs.scienceworld   (Java)

Adding one: subclass `TextEnv`, implement `_reset(seed) -> Observation` and
`_step(action) -> Step` (with `info["won"]`), and give `EnvSpec.make` a `kind` for it.
"""
from hiper.envs.base import DEFAULT_MAX_STEPS, Observation, Step, TextEnv
from hiper.envs.pool import EnvPool, EnvSpec, EnvWorkerError

__all__ = ["DEFAULT_MAX_STEPS", "EnvPool", "EnvSpec", "EnvWorkerError", "Observation", "Step", "TextEnv"]
