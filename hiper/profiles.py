"""Machine profiles: the run sizes that fit the device a run trains on.

The sizes that decide how long a step takes — environments per step, turns per episode, new
tokens per response, rows per forward — default to None in `hiper.train_config.TrainConfig`, meaning
"from the profile of the resolved device". `resolve_sizes` fills them before the Trainer builds
anything (values given explicitly win), so the resolved config is what the run records.

    profile  envs  max_turns  max_new_tokens  micro_batch_size
    cpu         2          4              64                 4   2 SmolLM2-135M steps: ~21 min on one CPU thread
    gpu        16         50             512                16   the authors' turns and tokens, one GPU's batch

`hiper rollout` and `hiper eval` only play, and an evaluation needs the turns a task takes (an
ALFWorld expert needs up to ~20 on two-object tasks), so they take their own sizes from the
profile (`play_sizes`): on a CPU 20 turns x 64 new tokens (a well-formed Plan-Execute turn is
about 35 tokens), on a GPU the authors' 50 x 512.

Why the CPU profile is small: a step does about eleven forward-equivalents over every token it
trains on (values, old and reference log-probs, forward + backward + recomputation for critic
and actor), on rows of ~1k tokens (the ALFWorld prompt), so its cost grows with envs x
max_turns; at the authors' sizes (50 turns x 512 tokens) a step takes hours on a CPU. README.md
("What a step costs") has the measurements.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The TrainConfig fields a profile fills when they are None.
SIZED_FIELDS = ("envs", "max_turns", "max_new_tokens", "micro_batch_size")


@dataclass(frozen=True)
class MachineProfile:
    name: str
    envs: int
    max_turns: int
    max_new_tokens: int
    micro_batch_size: int
    play_max_turns: int         # hiper rollout / hiper eval
    play_max_new_tokens: int

    def sizes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SIZED_FIELDS}


CPU = MachineProfile("cpu", envs=2, max_turns=4, max_new_tokens=64, micro_batch_size=4,
                     play_max_turns=20, play_max_new_tokens=64)
GPU = MachineProfile("gpu", envs=16, max_turns=50, max_new_tokens=512, micro_batch_size=16,
                     play_max_turns=50, play_max_new_tokens=512)


def profile_for(device) -> MachineProfile:
    """The profile of a resolved torch device (hiper.models.resolve_device): GPU for CUDA, else CPU."""
    kind = getattr(device, "type", None)
    if kind is None:
        raise TypeError(f"device: expected a torch.device, got {type(device).__name__}")
    return GPU if kind == "cuda" else CPU


@dataclass(frozen=True)
class ResolvedSizes:
    """What `resolve_sizes` did: the profile, and which fields it filled."""

    profile: MachineProfile
    device: str
    filled: tuple[str, ...]        # fields that were None and now hold the profile's value

    def describe(self, config) -> str:
        """One line for the start banner, e.g. `sizes: cpu profile (device cpu): envs 2, max_turns 4,
        max_new_tokens 64; set explicitly: micro_batch_size 2`."""
        def listing(names):
            return ", ".join(f"{name} {getattr(config, name)}" for name in names)

        explicit = tuple(name for name in SIZED_FIELDS if name not in self.filled)
        head = f"sizes: {self.profile.name} profile (device {self.device})"
        if not self.filled:
            return f"{head} unused, all set explicitly: {listing(explicit)}"
        return f"{head}: {listing(self.filled)}" + (f"; set explicitly: {listing(explicit)}" if explicit else "")


def resolve_sizes(config, device):
    """(config with every None size filled from the device's profile, ResolvedSizes). `config`
    is any dataclass with the SIZED_FIELDS (a TrainConfig); it is not changed."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    profile = profile_for(device)
    filled = tuple(name for name in SIZED_FIELDS if getattr(config, name) is None)
    resolved = dataclasses.replace(config, **{name: getattr(profile, name) for name in filled}) if filled else config
    return resolved, ResolvedSizes(profile=profile, device=str(device), filled=filled)


def play_sizes(max_turns: int | None, max_new_tokens: int | None, device) -> tuple[int, int, str]:
    """(max_turns, max_new_tokens, how they were chosen) for a command that only plays (`hiper
    rollout`, `hiper eval`): a value given wins, a None takes the device profile's play size."""
    profile = profile_for(device)
    turns = profile.play_max_turns if max_turns is None else max_turns
    tokens = profile.play_max_new_tokens if max_new_tokens is None else max_new_tokens
    filled = [name for name, value in (("max_turns", max_turns), ("max_new_tokens", max_new_tokens)) if value is None]
    origin = f"{', '.join(filled)} from the {profile.name} profile" if filled else "set explicitly"
    return turns, tokens, origin
