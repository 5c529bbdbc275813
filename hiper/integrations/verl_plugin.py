"""Loaded by `import verl` through hiper's `verl.plugins` entry point: registers "hiper_hae"
in verl's advantage-estimator registry (see hiper.integrations.verl_registry)."""
from hiper.integrations.verl_registry import register

register()
