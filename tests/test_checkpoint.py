"""Checkpoints survive a crash at any step of a save, never unpickle, and keep the run directory's
metrics in agreement with them; `hiper eval --checkpoint` takes a run, a checkpoint or a model."""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hiper import checkpoint
from hiper.cli import main
from hiper.trainer import Trainer, TrainConfig

@pytest.fixture(scope="module")
def tokenizer():
    """A 16-word tokenizer: these tests are about files, and a small vocabulary keeps them small and fast."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from hiper.models import prepare_tokenizer

    words = "<plan> </plan> <action> </action> <switch> </switch> KEEP SWITCH go to take open the a".split()
    backend = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}},
                                         unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return prepare_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                                     unk_token="<unk>"))


def small_trainer(run_dir: Path, tokenizer, **overrides) -> Trainer:
    """A trainer with a 1-layer, 8-wide model over 16 tokens: a 32 kB checkpoint."""
    from hiper.models import tiny_random_model

    model = tiny_random_model(tokenizer, hidden_size=8, layers=1, heads=2)
    values = dict(tiny_model=True, split="valid_unseen", data="sample", run_dir=str(run_dir), kl_coef=0.0,
                  gradient_checkpointing=False)
    values.update(overrides)
    trainer = Trainer(TrainConfig(**values), model=model, tokenizer=tokenizer)
    if trainer.critic is not None:
        for optimizer, params in ((trainer.actor_opt, trainer.actor.parameters()),
                                  (trainer.critic_opt, trainer.critic.trainable_parameters())):
            for p in params:
                p.grad = torch.ones_like(p)
            optimizer.step()  # creates the optimiser's state (moments, step counts)
    return trainer


def _parameters(trainer: Trainer) -> list[torch.Tensor]:
    return [*trainer.actor.parameters(), *trainer.critic.trainable_parameters()]


def _optimiser_state(trainer: Trainer) -> list[torch.Tensor]:
    return [value for optimizer in (trainer.actor_opt, trainer.critic_opt) for state in optimizer.state.values()
            for value in state.values()]


def _seeded_rng_state(step: int) -> dict:
    random.seed(step)
    np.random.seed(step)
    torch.manual_seed(step)
    return checkpoint.capture_rng_state()


def advance(trainer: Trainer, step: int) -> None:
    """A training state told apart from any other by `step`, in every part: the step counter, every weight
    (parameter i holds step + i / 100), every optimiser moment and count (step), every RNG (seeded with step)."""
    with torch.no_grad():
        for i, p in enumerate(_parameters(trainer)):
            p.fill_(step + i / 100)
        for value in _optimiser_state(trainer):
            value.fill_(step)
    trainer.step = step
    _seeded_rng_state(step)


def scramble(trainer: Trainer) -> None:
    """A state no checkpoint holds, so that a load that restores nothing is caught."""
    advance(trainer, 10_000)


def state_step(trainer: Trainer) -> int | None:
    """The `step` of the advance(trainer, step) that every part of the trainer's state matches; None for a
    state mixed from several (the RNG streams are read, then put back)."""
    step, rng = trainer.step, checkpoint.capture_rng_state()
    agree = (all(torch.all(p == step + i / 100) for i, p in enumerate(_parameters(trainer)))
             and all(torch.all(value == step) for value in _optimiser_state(trainer))
             and same(rng, _seeded_rng_state(step)))
    checkpoint.restore_rng_state(rng)
    return step if agree else None


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class Kill(BaseException):
    """Stands in for a kill -9: no `except Exception` in the code under test catches it, so nothing
    after the failing call runs and nothing is cleaned up."""


def fail_at(patch: pytest.MonkeyPatch, k: int, failure: type[BaseException]) -> list[str]:
    """Makes the k-th write of a save raise `failure`: renames, fsyncs, and the writers of weights,
    tokenizer and state. Returns the calls seen so far."""
    import safetensors.torch
    import transformers

    calls: list[str] = []

    def wrap(owner, name):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            calls.append(f"{getattr(owner, '__name__', owner)}.{name}")
            if len(calls) == k:
                raise failure(f"injected failure at {calls[-1]}")
            return original(*args, **kwargs)

        patch.setattr(owner, name, counted)

    for owner, name in ((os, "replace"), (os, "fsync"), (safetensors.torch, "save_file"), (torch, "save"),
                        (Path, "write_text"), (transformers.PreTrainedModel, "save_pretrained"),
                        (transformers.PreTrainedTokenizerBase, "save_pretrained")):
        wrap(owner, name)
    return calls


@pytest.mark.parametrize("failure", [Kill, OSError], ids=["killed", "io-error"])
def test_a_save_interrupted_at_any_step_leaves_the_last_complete_checkpoint(tmp_path, tokenizer, failure):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    run = tmp_path / "run"
    advance(trainer, committed := 1)
    trainer.save_checkpoint()
    outcomes = []
    for k in itertools.count(1):
        advance(trainer, attempted := 2 * k)
        with pytest.MonkeyPatch.context() as patch:
            calls = fail_at(patch, k, failure)
            with contextlib.suppress(failure):
                trainer.save_checkpoint()
        if len(calls) < k:
            break  # this save ran to the end: every one of its k - 1 writes has been interrupted once
        if failure is OSError:  # a save that fails cleans up after itself
            assert not list(run.glob(checkpoint.TEMPORARY_PREFIX + "*")), calls[-1]
        scramble(trainer)
        # Interrupted between its two renames, a save leaves no checkpoint/: loading falls back, and says so.
        between_renames = not (run / "checkpoint").exists()
        with pytest.warns(UserWarning, match="interrupted save") if between_renames else contextlib.nullcontext():
            trainer.load_checkpoint()
        loaded = state_step(trainer)
        assert loaded in (committed, attempted), f"a mixed state ({loaded}) after a failure at {calls[-1]}"
        outcomes.append("previous" if loaded == committed else "attempted")
        # The next save succeeds and leaves nothing stale behind (the next round's load checks what it wrote).
        advance(trainer, committed := 2 * k + 1)
        trainer.save_checkpoint()
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
    scramble(trainer)
    trainer.load_checkpoint()
    assert state_step(trainer) == attempted  # the save that ran to the end
    # Every write (weights, tokenizer, critic, state, fsyncs, manifest, renames) was interrupted once; those
    # before the commit keep the previous checkpoint, those after it the new one.
    assert len(outcomes) >= 15 and outcomes.count("attempted") >= 1 and outcomes[0] == "previous", outcomes


def test_a_leftover_checkpoint_old_does_not_block_saving(tmp_path, tokenizer):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    stale = tmp_path / "run" / ".checkpoint-old"  # what a crash right after the swap leaves
    shutil.copytree(tmp_path / "run" / "checkpoint", stale)
    advance(trainer, 2)
    trainer.save_checkpoint()
    assert not stale.exists()
    scramble(trainer)
    trainer.load_checkpoint()
    assert state_step(trainer) == 2


def test_a_damaged_checkpoint_is_refused_not_half_loaded(tmp_path, tokenizer):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    weights = tmp_path / "run" / "checkpoint" / "critic.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other contents
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="critic.safetensors differs from the SHA-256"):
        trainer.load_checkpoint()
    trainer.save_checkpoint()
    (tmp_path / "run" / "checkpoint" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match="trainer_state.json is missing"):
        trainer.load_checkpoint()


class Payload:
    """Unpickling this creates `marker`: any code could run in its place. Saved with torch.save, it makes
    the crafted trainer state file an attacker would hand out."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _reseal(directory: Path) -> None:
    """Rewrites the manifest to match the files, as someone altering a checkpoint on purpose would."""
    manifest_path = directory / checkpoint.MANIFEST
    if not manifest_path.exists():
        return
    manifest = json.loads(manifest_path.read_text())
    for name in list(manifest["files"]):
        path = directory / name
        manifest["files"][name] = {"bytes": path.stat().st_size,
                                   "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("replaced", ["trainer_state.json", "trainer_state.safetensors", "every state file"])
def test_a_state_file_carrying_a_pickle_is_refused_and_never_runs(tmp_path, tokenizer, replaced):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    ckpt = tmp_path / "run" / "checkpoint"
    marker = tmp_path / "payload-ran"
    state_files = [p for p in ckpt.iterdir() if p.name.startswith("trainer_state")]
    for path in state_files:
        if replaced in (path.name, "every state file"):
            torch.save(Payload(marker), path)
    _reseal(ckpt)
    with pytest.raises(ValueError, match="unreadable trainer state") as error:
        trainer.load_checkpoint()
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_a_checkpoint_in_the_old_pickle_format_is_refused_and_never_runs(tmp_path, tokenizer):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    ckpt = tmp_path / "run" / "checkpoint"
    for name in (checkpoint.MANIFEST, checkpoint.STATE_JSON, checkpoint.STATE_TENSORS):
        (ckpt / name).unlink(missing_ok=True)
    marker = tmp_path / "payload-ran"
    torch.save(Payload(marker), ckpt / "trainer_state.pt")
    with pytest.raises(ValueError, match="older hiper .* pickle"):
        trainer.load_checkpoint()
    with pytest.raises(ValueError, match="--checkpoint: .*older hiper"):
        checkpoint.load_policy(ckpt, argument="--checkpoint")
    assert not marker.exists()
    # Its actor/ is a plain model directory and still loads.
    model, _ = checkpoint.load_policy(ckpt / "actor")
    assert torch.equal(model.model.embed_tokens.weight, trainer.actor.model.embed_tokens.weight)


def test_resuming_with_another_world_size_or_estimator_is_refused(tmp_path, tokenizer):
    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    with pytest.raises(ValueError, match="holds a critic, but estimator 'grpo' trains none"):
        small_trainer(tmp_path / "run", tokenizer, estimator="grpo").load_checkpoint()
    ckpt = tmp_path / "run" / "checkpoint"
    state = json.loads((ckpt / checkpoint.STATE_JSON).read_text())
    state["world_size"], state["rng"] = 2, state["rng"] * 2
    (ckpt / checkpoint.STATE_JSON).write_text(json.dumps(state))
    _reseal(ckpt)
    with pytest.raises(ValueError, match="written by 2 rank"):
        trainer.load_checkpoint()


def test_optimiser_and_rng_state_round_trip_without_pickle():
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3, dtype=torch.bfloat16)},
                       7: {"step": torch.tensor(1, dtype=torch.int64)}},
             "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "eps": 1e-8, "foreach": None, "amsgrad": False,
                               "params": [0, 7], "$odd": float("nan")}],
             "rng": checkpoint.capture_rng_state()}
    tensors: dict = {}
    text = json.dumps(checkpoint._to_json(state, "s", tensors))
    back = checkpoint._from_json(json.loads(text), tensors)
    assert same(back["state"], state["state"]) and same(back["rng"], state["rng"])
    group, original = back["param_groups"][0], state["param_groups"][0]
    assert group["betas"] == (0.9, 0.999) and group["foreach"] is None and group["params"] == [0, 7]
    assert np.isnan(group["$odd"]) and group.keys() == original.keys()
    with pytest.raises(TypeError, match=r"cannot store a ndarray \(at s.bad\)"):
        checkpoint._to_json({"bad": np.zeros(2)}, "s", {})


def test_rng_state_restores_every_generator_on_cpu():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.standard_normal()  # leaves a cached Gaussian, part of NumPy's state
    state = checkpoint.capture_rng_state(torch.device("cpu"))
    assert "cuda" not in state
    first = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    checkpoint.restore_rng_state(state, torch.device("cpu"))
    again = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_cuda_rng_state_is_saved_and_restored_on_the_training_device(monkeypatch):
    """The CUDA branch, run without a GPU: torch.cuda's generator calls are stand-ins."""
    from safetensors.torch import load, save

    saved_state = torch.arange(16, dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": saved_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append((state, device)))
    device = torch.device("cuda", 0)
    tensors: dict = {}
    stored = json.dumps(checkpoint._to_json(checkpoint.capture_rng_state(device), "rng", tensors))
    state = checkpoint._from_json(json.loads(stored), load(save(tensors)))
    checkpoint.restore_rng_state(state, device)
    assert len(restored) == 1 and torch.equal(restored[0][0], saved_state) and restored[0][1] == device
    with pytest.warns(UserWarning, match="CUDA generator's state is not restored"):
        checkpoint.restore_rng_state(state, torch.device("cpu"))
    del state["cuda"]
    with pytest.warns(UserWarning, match="no CUDA generator state"):
        checkpoint.restore_rng_state(state, device)


# ---------------------------------------------------------------------------- the run directory
def fake_steps(monkeypatch, label: str) -> None:
    """Training steps without rollouts: the loop's bookkeeping is what is under test."""

    def train_step(self):
        self.step += 1
        return {"step": self.step, "run": label, "success_rate": self.step / 10, "episode_return": 0.0,
                "invalid_rate": 0.0, "critic_loss": 0.0, "pg_loss": 0.0, "timings": {"total": 0.01},
                "compiled_fraction": 0.0}

    monkeypatch.setattr(Trainer, "train_step", train_step)


def metric_rows(run: Path) -> list[tuple[int, str]]:
    return [(row["step"], row["run"]) for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_a_new_run_refuses_a_run_directory_in_use_unless_overwriting(tmp_path, tokenizer, monkeypatch):
    run = tmp_path / "run"
    fake_steps(monkeypatch, "first")
    small_trainer(run, tokenizer, steps=3).train(log=None)
    fake_steps(monkeypatch, "second")
    with pytest.raises(ValueError, match=r"run_dir: .* already holds a run .*--resume.*--overwrite"):
        small_trainer(run, tokenizer, steps=1).train(log=None)
    assert metric_rows(run) == [(1, "first"), (2, "first"), (3, "first")]
    assert checkpoint.open_checkpoint(run).step == 3
    small_trainer(run, tokenizer, steps=1, overwrite=True).train(log=None)
    assert metric_rows(run) == [(1, "second")]
    assert checkpoint.open_checkpoint(run).step == 1
    assert len(list((run / "tensorboard").iterdir())) == 1  # the first run's event file is gone
    with pytest.raises(ValueError, match="overwrite: .*not both"):
        small_trainer(run, tokenizer, steps=2, overwrite=True).train(resume=True, log=None)


def test_resuming_cuts_metrics_back_to_the_checkpoint(tmp_path, tokenizer, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    fake_steps(monkeypatch, "first")
    small_trainer(run, tokenizer, steps=3, save_every=2).train(log=None)  # step 3 is logged, not checkpointed
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "run": "fir')  # and a row a crash cut short
    fake_steps(monkeypatch, "resumed")
    small_trainer(run, tokenizer, steps=4, save_every=2).train(resume=True, log=None)
    assert metric_rows(run) == [(1, "first"), (2, "first"), (3, "resumed"), (4, "resumed")]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("success_rate")] == [(1, 0.1), (2, 0.2), (3, 0.3),
                                                                                   (4, 0.4)]


def test_each_step_logs_the_size_of_its_checkpoint(tmp_path, tokenizer, monkeypatch):
    run = tmp_path / "run"
    fake_steps(monkeypatch, "first")
    lines: list[str] = []
    small_trainer(run, tokenizer, steps=2, save_every=2).train(log=lines.append)
    size = checkpoint.open_checkpoint(run).size_bytes
    files = [p for p in (run / "checkpoint").rglob("*") if p.is_file()]
    assert size == sum(p.stat().st_size for p in files) and len(files) >= 8
    steps = [line for line in lines if line.startswith("step ")]  # after the start banner
    assert "ckpt" not in steps[0] and steps[1].endswith(f"| ckpt {checkpoint.format_size(size)}")
    assert checkpoint.format_size(size) == f"{size / 1e6:.0f} MB"
    assert checkpoint.format_size(36_200_000_000) == "36.2 GB"


# ---------------------------------------------------------------------------- hiper eval --checkpoint
def test_eval_checks_its_checkpoint_path_first(tmp_path):
    from hiper.cli import build_parser

    def evaluate(path):  # the command itself, below any error reporting of `main`
        args = build_parser().parse_args(["eval", "--checkpoint", str(path), "--data", "sample", "--episodes", "2"])
        return args.func(args)

    with pytest.raises(FileNotFoundError, match=r"^--checkpoint: .*missing does not exist$"):
        evaluate(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--checkpoint: .* not a run directory, a checkpoint or a model directory"):
        evaluate(tmp_path / "empty")
    # A run stopped before its first save: its config.json is the run's, not a model's.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"env": "alfworld", "estimator": "hae"}')
    with pytest.raises(ValueError, match="--checkpoint: .*run is a run directory with no checkpoint yet"):
        evaluate(tmp_path / "run")


def test_eval_takes_a_run_a_checkpoint_or_a_model_directory(tmp_path, tokenizer, monkeypatch, capsys):
    import hiper.evaluate

    trainer = small_trainer(tmp_path / "run", tokenizer)
    advance(trainer, 1)
    trainer.save_checkpoint()
    expected = trainer.actor.state_dict()
    evaluated = []
    monkeypatch.setattr(hiper.evaluate, "evaluate", lambda model, tokenizer, *args, **kwargs: evaluated.append(
        (model, tokenizer)) or {"episodes": 0})
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoint", tmp_path / "run" / "checkpoint" / "actor"):
        assert main(["eval", "--checkpoint", str(path), "--data", "sample", "--episodes", "2"]) == 0
        model, loaded_tokenizer = evaluated.pop()
        assert same(model.state_dict(), expected) and loaded_tokenizer.padding_side == "left", path
    # After a crash between a save's renames only .checkpoint-old/ is left: the run directory still evaluates.
    os.replace(tmp_path / "run" / "checkpoint", tmp_path / "run" / ".checkpoint-old")
    with pytest.warns(UserWarning, match="interrupted save"):
        assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--data", "sample", "--episodes", "2"]) == 0
    assert same(evaluated.pop()[0].state_dict(), expected)
