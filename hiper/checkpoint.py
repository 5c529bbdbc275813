"""Training checkpoints that survive a crash at any point and never unpickle.

A run directory holds one checkpoint at rest:

    RUN_DIR/checkpoint/
        actor/                      the policy: a Hugging Face model directory (safetensors) and its tokenizer;
                                    with LoRA, its adapters only (a PEFT adapter directory: megabytes), the base
                                    model being the one the run's config names
        critic.safetensors          the critic (without the backbone when it shares the actor's)
        trainer_state.safetensors   every tensor of the optimiser and RNG states
        trainer_state.json          the rest: step, world size, config, and where each of those tensors goes
                                    (with LoRA also the base model's record and weights' SHA-256, which
                                    loading checks: hiper.lora_base)
        MANIFEST.json               written last: the size and SHA-256 of every other file

A save writes the new checkpoint into a temporary `RUN_DIR/.checkpoint-tmp-*`, flushes it to disk,
writes MANIFEST.json, then swaps it in with two renames: `checkpoint/` -> `.checkpoint-old/`, the new
one -> `checkpoint/` (the commit), and removes `.checkpoint-old/`. So the disk holds the old and the new
checkpoint together during a save: twice a checkpoint's size at peak. Wherever a crash interrupts a
save, a complete checkpoint remains:

    while writing the temporary        checkpoint/ is untouched; the next save removes the temporary
    between the two renames            .checkpoint-old/ is the last complete one; loading falls back to it
    before .checkpoint-old/ is gone    checkpoint/ is complete; the next save removes the old one

A directory counts as a checkpoint only if its manifest lists every file at its size, and loading
checks every file's SHA-256 too, so a torn or corrupted file is refused instead of half-loaded. (The
manifest is no signature: what keeps a checkpoint from running code is that nothing is unpickled.)

Nothing here unpickles (unpickling runs whatever code the file's author put in it): tensors go to
safetensors files and everything else to JSON. Optimiser and RNG states are nested dicts, lists and
tuples of numbers, strings and tensors; `_to_json` / `_from_json` keep their structure in JSON, each
tensor replaced by its name in the safetensors file, and give back the same structure (tuples as
tuples, integer dict keys as integers).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hiper.files import fsync_dir as _fsync_dir
from hiper.files import replace_bytes as replace_atomically  # noqa: F401 - kept importable from here
from hiper.files import write_durably

CHECKPOINT = "checkpoint"               # the complete checkpoint, inside the run directory
PREVIOUS = ".checkpoint-old"            # the checkpoint being replaced, during a save
TEMPORARY_PREFIX = ".checkpoint-tmp-"   # a checkpoint being written
MANIFEST = "MANIFEST.json"
ACTOR = "actor"
CRITIC = "critic.safetensors"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
LEGACY_STATE = "trainer_state.pt"       # older hiper versions pickled the trainer state; never loaded
FORMAT, VERSION = "hiper-checkpoint", 1
ADAPTER_CONFIG = "adapter_config.json"  # in actor/ when the policy trains LoRA adapters
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_REQUIRED = (STATE_JSON, STATE_TENSORS)
_ACTOR_REQUIRED = (f"{ACTOR}/config.json", f"{ACTOR}/{ADAPTER_CONFIG}")  # one of them: a full model or adapters


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, altered, or in a format that is not loaded."""


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights."""

    step: int
    world_size: int
    config: dict               # the TrainConfig that wrote it, as a dict
    optimizers: dict           # name -> torch optimizer state_dict (or None)
    rng: list                  # capture_rng_state() of every rank, in rank order
    base: dict | None = None   # a LoRA run's base model (hiper.lora_base.describe_base); None otherwise


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint directory and its manifest."""

    path: Path
    manifest: dict

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def size_bytes(self) -> int:
        """Bytes on disk, manifest included (a save needs room for two: see the module docstring)."""
        return sum(entry["bytes"] for entry in self.manifest["files"].values()) + (self.path / MANIFEST).stat().st_size

    def training_state(self) -> TrainingState:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            document = json.loads((self.path / STATE_JSON).read_text(encoding="utf-8"))
            tensors = load_file(str(self.path / STATE_TENSORS))
            return TrainingState(step=int(document["step"]), world_size=int(document["world_size"]),
                                 config=dict(document["config"]),
                                 optimizers=_from_json(document["optimizers"], tensors),
                                 rng=list(_from_json(document["rng"], tensors)), base=document.get("base"))
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise CheckpointError(f"checkpoint: unreadable trainer state in {self.path} "
                                  f"({type(exc).__name__}: {exc})") from exc

    def recorded_config(self) -> dict:
        """The TrainConfig that wrote this checkpoint, as a dict, read without loading any tensor."""
        try:
            return dict(json.loads((self.path / STATE_JSON).read_text(encoding="utf-8"))["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint: unreadable trainer state in {self.path} "
                                  f"({type(exc).__name__}: {exc})") from exc

    def critic_state(self) -> dict[str, torch.Tensor] | None:
        """The critic's tensors; None for a checkpoint of a critic-free estimator."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if CRITIC not in self.manifest["files"]:
            return None
        try:
            return load_file(str(self.path / CRITIC))
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"checkpoint: unreadable {self.path / CRITIC} ({exc})") from exc

    @property
    def is_lora(self) -> bool:
        """Whether actor/ holds LoRA adapters (on the base model of the run's config), not a whole model."""
        return f"{ACTOR}/{ADAPTER_CONFIG}" in self.manifest["files"]

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The policy's LoRA adapter tensors (a LoRA checkpoint only)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path / ACTOR / ADAPTER_WEIGHTS))
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"checkpoint: unreadable adapters in {self.path / ACTOR} ({exc})") from exc

    def load_actor(self, *, dtype: torch.dtype = torch.float32, with_tokenizer: bool = True,
                   argument: str = "checkpoint"):
        """(model, tokenizer) of the policy, from the local files only; the tokenizer is None
        unless `with_tokenizer` (resuming keeps the trainer's own). A LoRA checkpoint gives the
        base model its run trained (rebuilt from the run's config, refused, naming `argument`, when
        its weights are not those the checkpoint recorded) with the adapters attached."""
        if self.is_lora:
            return self._load_lora_actor(dtype=dtype, with_tokenizer=with_tokenizer, argument=argument)
        if with_tokenizer:
            return _load_model_dir(self.path / ACTOR, dtype=dtype)
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.path / ACTOR, dtype=dtype, local_files_only=True), None


    def _load_lora_actor(self, *, dtype: torch.dtype, with_tokenizer: bool, argument: str):
        from transformers import AutoTokenizer

        from hiper import models

        from hiper.lora_base import check_base, describe_base

        state = self.training_state()
        config = state.config
        tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(self.path / ACTOR, local_files_only=True))
        tiny, seed = bool(config.get("tiny_model")), int(config.get("seed", 0))
        if tiny:
            # A tiny random base is rebuilt from its seed: the same weights the run started from.
            base = models.tiny_random_model(tokenizer, seed=seed).to(dtype)
        else:
            base, _ = models.load(config.get("model"), dtype=dtype, local_files_only=True)
        check_base(state.base, describe_base(base, tiny_model=tiny, seed=seed), argument=argument)
        return models.load_lora(base, self.path / ACTOR).eval(), tokenizer if with_tokenizer else None


# ---------------------------------------------------------------------------- saving
def save(run_dir: str | os.PathLike, *, actor, tokenizer, critic_state: dict[str, torch.Tensor] | None,
         state: TrainingState) -> Checkpoint:
    """Writes RUN_DIR/checkpoint as the module docstring describes and returns it. On an error
    the previous checkpoint stays and the temporary is removed; after a kill the temporary stays
    until the next save removes it."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=run_dir))
    try:
        if hasattr(actor, "peft_config"):
            # A LoRA policy: its own adapters only (a critic's adapter set goes to critic.safetensors).
            from hiper.models import ACTOR_ADAPTER

            actor.save_pretrained(tmp / ACTOR, selected_adapters=[ACTOR_ADAPTER])
        else:
            actor.save_pretrained(tmp / ACTOR)
        tokenizer.save_pretrained(tmp / ACTOR)
        if critic_state is not None:
            save_file(critic_state, str(tmp / CRITIC))
        _write_state(tmp, state)
        manifest = _seal(tmp, state.step)
        _commit(tmp, run_dir)
    except Exception:
        _remove(tmp, strict=False)
        raise
    return Checkpoint(run_dir / CHECKPOINT, manifest)


def remove_stale(run_dir: Path) -> None:
    """Clears what interrupted saves left, keeping the newest complete checkpoint: afterwards at
    most one of checkpoint/ and .checkpoint-old/ exists, and no temporary."""
    for entry in run_dir.glob(".checkpoint-*"):
        if entry.name != PREVIOUS:
            _remove(entry)
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    if previous.exists() and current.exists():
        # Both exist after a crash just after the commit (current is complete) or, with a damaged
        # current, after a crash during the cleanup of an earlier save: keep the complete one.
        _remove(previous if _problem(current) is None or _problem(previous) is not None else current)


def _write_state(directory: Path, state: TrainingState) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    document = {"step": state.step, "world_size": state.world_size, "config": state.config,
                "optimizers": _to_json(state.optimizers, "optimizers", tensors),
                "rng": _to_json(state.rng, "rng", tensors), "base": state.base}
    save_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(document), encoding="utf-8")


def _seal(directory: Path, step: int) -> dict:
    """Flushes every file and directory under `directory` to disk, then writes the manifest.

    Why fsync: a rename is atomic for the processes of a running system, but after a power cut
    the file system may have persisted the rename before the files' data (ext4's delayed
    allocation, for one), leaving a checkpoint/ of empty files. Flushing the data first, and the
    manifest last, means a checkpoint/ that exists after any crash is either complete or fails
    its manifest check."""
    entries = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        entries[path.relative_to(directory).as_posix()] = {"bytes": path.stat().st_size,
                                                           "sha256": _sha256(path, fsync=True)}
    for sub in sorted(p for p in directory.rglob("*") if p.is_dir()):
        _fsync_dir(sub)
    manifest = {"format": FORMAT, "version": VERSION, "step": step, "files": entries}
    write_durably(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    _fsync_dir(directory)  # the directory entries of the files and the manifest
    return manifest


def _commit(tmp: Path, run_dir: Path) -> None:
    """tmp becomes run_dir/checkpoint. remove_stale left at most one of checkpoint/ and
    .checkpoint-old/, so the first rename never meets an existing .checkpoint-old/."""
    current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    if current.exists():
        os.replace(current, previous)
    os.replace(tmp, current)  # the commit point
    _fsync_dir(run_dir)  # makes the renames themselves durable; a power cut could otherwise undo them
    _remove(previous, strict=False)  # if this fails, the next save retries


# ---------------------------------------------------------------------------- loading
def open_checkpoint(path: str | os.PathLike, *, argument: str = "path") -> Checkpoint:
    """The checkpoint `path` names, checked file by file against its manifest (sizes and SHA-256):
    a checkpoint directory, or a run directory (its checkpoint/, else the .checkpoint-old/ a save
    interrupted between its renames left, with a warning). `argument` names `path` in errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{argument}: {path} does not exist")
    if _looks_like_checkpoint(path):
        candidates = [path]
    elif _looks_like_run(path):
        candidates = [path / CHECKPOINT, path / PREVIOUS]
    else:
        raise CheckpointError(f"{argument}: no checkpoint in {path} (no {CHECKPOINT}/ and no {MANIFEST})")
    problems = []
    for candidate in candidates:
        if not candidate.exists():
            if candidate.name != PREVIOUS:  # .checkpoint-old/ exists only after an interrupted save
                problems.append(f"{candidate} does not exist")
            continue
        problem = _problem(candidate, hashes=True)
        if problem is None:
            found = Checkpoint(candidate, _read_manifest(candidate))
            if problems:
                warnings.warn(f"checkpoint: {'; '.join(problems)}; using {candidate} (step {found.step}), the "
                              "checkpoint an interrupted save left", stacklevel=2)
            return found
        problems.append(f"{candidate}: {problem}")
    raise CheckpointError(f"{argument}: no complete checkpoint in {path}: {'; '.join(problems)}")


def load_policy(path: str | os.PathLike, *, argument: str = "path", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a run directory (its checkpoint), a checkpoint directory, or a plain
    Hugging Face model directory; local files only, never the network."""
    path = Path(path)
    if policy_kind(path, argument=argument) == "checkpoint":
        return open_checkpoint(path, argument=argument).load_actor(dtype=dtype, argument=argument)
    return _load_model_dir(path, dtype=dtype)


def policy_kind(path: str | os.PathLike, *, argument: str = "path") -> str:
    """What `load_policy(path)` would load, "checkpoint" (a run or checkpoint directory) or
    "model" (a Hugging Face model directory), found from the directory's names alone, without
    loading anything; what it cannot load is refused here, naming `argument`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{argument}: {path} does not exist")
    if _looks_like_checkpoint(path) or _looks_like_run(path):
        return "checkpoint"
    if _is_run_without_checkpoint(path):
        # Its config.json is the run's TrainConfig, not a model's: loading it as a model would fail obscurely.
        raise CheckpointError(f"{argument}: {path} is a run directory with no checkpoint yet (no {CHECKPOINT}/: "
                              "stopped before its first save, or run with --save-every 0)")
    if (path / "config.json").is_file():
        return "model"
    raise ValueError(f"{argument}: {path} is not a run directory, a checkpoint or a model directory "
                     f"(it holds no {CHECKPOINT}/, {MANIFEST} or config.json)")


def export_policy(path: str | os.PathLike, out: str | os.PathLike, *, argument: str = "checkpoint") -> Path:
    """Writes the policy of checkpoint `path` (a run or checkpoint directory) to `out` as a plain
    Hugging Face model directory with its tokenizer, LoRA adapters merged into the weights: what a
    server loads, and `load_policy` (so `hiper eval --checkpoint OUT`) too."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; give a directory (new or empty)")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"out: {out} exists and is not empty")
    model, tokenizer = open_checkpoint(path, argument=argument).load_actor(argument=argument)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _load_model_dir(path: Path, *, dtype: torch.dtype):
    from hiper import models

    return models.load(path, dtype=dtype, local_files_only=True)


def _looks_like_checkpoint(path: Path) -> bool:
    return any((path / name).exists() for name in (MANIFEST, ACTOR, LEGACY_STATE))


def _looks_like_run(path: Path) -> bool:
    return (path / CHECKPOINT).exists() or (path / PREVIOUS).exists()


def _is_run_without_checkpoint(path: Path) -> bool:
    """A run directory (metrics.jsonl, or the trainer's config.json: a TrainConfig, with no
    model_type) that holds no checkpoint."""
    if (path / "metrics.jsonl").exists():
        return True
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "estimator" in config and "model_type" not in config


def _read_manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))


def _problem(directory: Path, *, hashes: bool = False) -> str | None:
    """Why `directory` is not a complete checkpoint (None if it is). Sizes catch what a crash
    leaves (missing or short files); `hashes` also catches altered or corrupted contents."""
    if not (directory / MANIFEST).is_file():
        if (directory / LEGACY_STATE).is_file():
            return (f"written by an older hiper ({LEGACY_STATE}, a pickle), which is not loaded because "
                    f"unpickling runs arbitrary code; its {ACTOR}/ still loads as a model directory")
        return f"no {MANIFEST} (a save that did not finish)"
    try:
        manifest = _read_manifest(directory)
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            return f"{MANIFEST} is not a {FORMAT} manifest of version {VERSION}"
        files = manifest["files"]
        for name in _REQUIRED:
            if name not in files:
                return f"{MANIFEST} does not list {name}"
        if not any(name in files for name in _ACTOR_REQUIRED):
            return f"{MANIFEST} lists neither {' nor '.join(_ACTOR_REQUIRED)}"
        for name, entry in files.items():
            if Path(name).is_absolute() or ".." in Path(name).parts:
                return f"{MANIFEST} names a file outside the checkpoint: {name}"
            path = directory / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != entry["bytes"]:
                return f"{name} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}"
            if hashes and _sha256(path) != entry["sha256"]:
                return f"{name} differs from the SHA-256 in {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable {MANIFEST} ({type(exc).__name__}: {exc})"
    return None


def _sha256(path: Path, *, fsync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
        if fsync:
            os.fsync(f.fileno())  # flushes the file's dirty pages, whichever descriptor wrote them
    return digest.hexdigest()




def _remove(directory: Path, *, strict: bool = True) -> None:
    """Removes a checkpoint directory, its manifest first, so that a removal cut short leaves a
    directory that no longer counts as complete."""
    if not directory.exists():
        return
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=not strict)


# ---------------------------------------------------------------------------- state without pickle
def _to_json(value, name: str, tensors: dict[str, torch.Tensor]):
    """A JSON-able copy of `value`, each tensor moved to `tensors` under a name derived from its place."""
    if isinstance(value, torch.Tensor):
        key = name if name not in tensors else f"{name}#{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"$tensor": key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_to_json(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"$tuple": items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _to_json(v, f"{name}.{k}", tensors) for k, v in value.items()}
        for k in value:
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"checkpoint: cannot store a dict key of type {type(k).__name__} (at {name})")
        return {"$items": [[k, _to_json(v, f"{name}.{k}", tensors)] for k, v in value.items()]}
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} (at {name}); expected tensors, numbers, "
                    "strings, None, and lists, tuples or dicts of them")


def _from_json(value, tensors: dict[str, torch.Tensor]):
    if isinstance(value, list):
        return [_from_json(v, tensors) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$tensor":
                return tensors[inner]
            if tag == "$tuple":
                return tuple(_from_json(v, tensors) for v in inner)
            if tag == "$items":
                return {k: _from_json(v, tensors) for k, v in inner}
        return {k: _from_json(v, tensors) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------- random generators
def capture_rng_state(device: torch.device | str | None = None) -> dict:
    """The state of every generator a training step draws from: Python's, NumPy's, torch's CPU
    generator and, when `device` is a CUDA device, that device's generator (sampling in
    `generate` draws from it). Only numbers and tensors, so it is stored without pickle."""
    algorithm, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"algorithm": algorithm, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
             "torch": torch.get_rng_state()}
    if _is_cuda(device):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device | str | None = None) -> None:
    """Sets the generators to a capture_rng_state() result. A CUDA generator state is restored
    on `device` when that is a CUDA device; otherwise (or when a CUDA run has none saved) the
    GPU's draws will differ from an uninterrupted run, which is said in a warning."""
    try:
        random.setstate(state["python"])
        saved = state["numpy"]
        np.random.set_state((saved["algorithm"], saved["key"].numpy().astype(np.uint32), saved["pos"],
                             saved["has_gauss"], saved["cached_gaussian"]))
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint: malformed RNG state ({type(exc).__name__}: {exc})") from exc
    saved_cuda = state.get("cuda")
    if saved_cuda is not None and _is_cuda(device):
        torch.cuda.set_rng_state(saved_cuda, device)
    elif saved_cuda is not None:
        warnings.warn(f"checkpoint: written on a CUDA device and resumed on {device or 'the CPU'}; the CUDA "
                      "generator's state is not restored", stacklevel=2)
    elif _is_cuda(device):
        warnings.warn(f"checkpoint: holds no CUDA generator state (written on the CPU); resumed on {device}, "
                      "sampling will not continue the saved run's random stream", stacklevel=2)


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def format_size(size_bytes: int) -> str:
    """'512 MB', '36.2 GB' (decimal units)."""
    return f"{size_bytes / 1e9:.1f} GB" if size_bytes >= 1e10 else f"{size_bytes / 1e6:.0f} MB"
