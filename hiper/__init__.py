"""hiper: hierarchical plan-execute reinforcement learning for multi-turn LLM agents."""
from hiper import _C

__version__ = "0.1.0"
