"""`hiper sft`: a supervised warm start on expert demonstrations, written as a model directory.

Small models never write the Plan-Execute format on their own, so reinforcement learning has
nothing to reinforce. A warm start teaches it first:

    expert episodes (hiper.demos.collect)
      -> (prompt, response) pairs rendered exactly as the rollout prompts (hiper.demos.render)
      -> supervised fine-tuning on the response tokens (hiper.sft)
      -> OUT/

    config = WarmStartConfig(env="keychest", tiny_model=True, episodes=50, steps=30, lr=5e-3, out="runs/sft")
    report = warm_start(config)      # what OUT/sft.json holds

Bad settings stop it before any model loads: the config checks every value, and
`check_before_loading` (the first thing `warm_start` does) the device, the games, their expert
and OUT, in seconds.

OUT/ is a plain Hugging Face model directory (safetensors weights, config, tokenizer), which
`hiper train --model OUT` and `hiper eval --checkpoint OUT` take as they take any model. With
LoRA the adapters are merged into the weights before saving, so loading OUT needs no PEFT.
Beside the model: `sft.json` (the settings, the demonstrations' counts, every step's loss and
the seconds of every stage) and `demos.jsonl` (one demonstration per line, to read).

OUT appears whole or not at all: everything is written into a temporary `.OUT.tmp-*` beside it,
renamed to OUT at the end, so an interrupted run never leaves an OUT that looks complete (the
next run into OUT removes the temporary). An existing OUT is refused unless it is empty, or
`overwrite` is set and it holds an earlier `hiper sft` output (its sft.json): nothing else is
ever deleted.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hiper.files import remove_leftovers, replace_directory
from hiper.settings import check_types, setting
from hiper.sft import SCHEDULES, SFTConfig

REPORT = "sft.json"
DEMOS = "demos.jsonl"
FORMAT, VERSION = "hiper-sft", 1


def _as_in_training(name: str, *, extra: str = ""):
    """A field meaning what TrainConfig's field `name` means: the same default and description,
    so `hiper sft` and `hiper train` describe a flag in the same words."""
    from hiper.train_config import TrainConfig

    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return setting(field.default, field.metadata["help"] + extra, choices=field.metadata.get("choices"))


@dataclass
class WarmStartConfig:
    """The settings of `hiper sft`; every field is a flag (`--expert-noise 0.2`)."""

    # the demonstrations
    env: str = _as_in_training("env")
    split: str = setting("", "split whose games the experts play (default: the environment's training split)")
    data: str = _as_in_training("data")
    tasks: str = _as_in_training("tasks")
    game_params: str = _as_in_training("game_params")
    episodes: int = setting(200, "expert episodes to play, on distinct games while the split has enough")
    expert_noise: float = setting(0.0, "probability that a demonstration turn plays a random other admissible "
                                       "action instead of the expert's (an imperfect teacher), in [0, 1)")
    plan_noise: float = setting(0.0, "probability that a demonstration turn setting a new sub-goal writes the "
                                     "environment's planning error instead (a wrong sub-goal and the action that "
                                     "pursues it; keychest only, hiper.demos), in [0, 1)")
    keep_lost: bool = setting(False, "keep the demonstrations of episodes the expert did not win (else dropped)")
    max_turns: int = setting(50, "step cap of a demonstration episode")
    workers: int = setting(0, "processes playing the experts (0 or 1: in this process)")
    history_length: int = _as_in_training("history_length", extra=" (as hiper train will show them)")
    # the model
    model: str | None = _as_in_training("model")
    tiny_model: bool = _as_in_training("tiny_model")
    device: str = _as_in_training("device")
    lora_rank: int = setting(0, "rank of LoRA adapters fine-tuned on frozen base weights (0: full fine-tuning); "
                                "OUT holds the model with the adapters merged into its weights, so `hiper train "
                                "--model OUT` loads it as a plain model (needs PEFT: pip install 'hiper[lora]')")
    lora_alpha: float = _as_in_training("lora_alpha")
    lora_dropout: float = _as_in_training("lora_dropout")
    lora_targets: str = _as_in_training("lora_targets")
    # the fine-tuning (hiper.sft.SFTConfig)
    steps: int = setting(200, "optimiser steps, each on --batch-size pairs drawn from a shuffle renewed every "
                              "pass over the pairs")
    batch_size: int = setting(16, "(prompt, response) pairs, one per demonstration turn, per optimiser step")
    micro_batch_size: int = setting(4, "pairs per forward pass; gradients accumulate over a batch")
    lr: float = setting(1e-4, "AdamW learning rate (the peak, under --schedule linear)")
    schedule: str = setting("linear", "learning rate over the steps: linear decays it to 0, constant keeps it",
                            choices=SCHEDULES)
    weight_decay: float = setting(0.0, "AdamW weight decay")
    grad_clip: float = setting(1.0, "gradient-norm clip of every step (0: none)")
    seed: int = setting(0, "random seed of the game draw, the expert noise, the tiny model's and the adapters' "
                           "initialisation and the order of the pairs")
    # the output
    out: str = setting("runs/sft", "the model directory to write (model, tokenizer, sft.json, demos.jsonl)")
    overwrite: bool = setting(False, "replace an --out that holds an earlier hiper sft output")
    progress: bool = setting(True, "progress bars on stderr, of the expert episodes and the fine-tuning steps")

    def __post_init__(self):
        """Checks every field, naming it in the error: its type (TypeError), its range and choices
        (ValueError), and that env names an environment family."""
        from hiper.envs.registry import family

        check_types(self)
        for name in ("episodes", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)!r}")
        for name in ("workers", "history_length", "lora_rank"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("expert_noise", "plan_noise"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout!r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha: must be > 0, got {self.lora_alpha!r}")
        if not any(t.strip() for t in self.lora_targets.split(",")):
            raise ValueError(f"lora_targets: must be comma-separated module names, got {self.lora_targets!r}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed: must be in [0, 2**32), got {self.seed!r}")
        if not self.out.strip():
            raise ValueError("out: expected a directory, got ''")
        family(self.env)  # registered, or module:attribute naming a Family
        self.sft_config()  # steps, batch sizes, learning rate, schedule, ...

    def sft_config(self) -> SFTConfig:
        return SFTConfig(steps=self.steps, batch_size=self.batch_size, micro_batch_size=self.micro_batch_size,
                         lr=self.lr, schedule=self.schedule, weight_decay=self.weight_decay,
                         grad_clip=self.grad_clip, seed=self.seed)

    def train_split(self) -> str:
        """`split`, or the environment's training split when not given."""
        from hiper.envs.registry import family

        return self.split or family(self.env).train_split

    def task_list(self) -> tuple[str, ...] | None:
        names = tuple(t.strip() for t in self.tasks.split(",") if t.strip())
        return names or None

    def rollout_config(self):
        """The rollout settings the prompts are rendered with (role, history window)."""
        from hiper.rollout import RolloutConfig

        return RolloutConfig.for_env(self.env, max_turns=self.max_turns, history_length=self.history_length)


# ---------------------------------------------------------------------------------------------
# Before any model loads
# ---------------------------------------------------------------------------------------------

def check_before_loading(config: WarmStartConfig) -> int:
    """What a run needs besides valid settings, checked in seconds before any model loads: the
    device, the games (environment, split, data root, tasks), an expert for them, PEFT when LoRA
    is asked for, and --out. Returns the number of games of the split."""
    from hiper import models
    from hiper.envs.registry import game_list

    models.resolve_device(config.device)
    models.check_model_name(config.model, tokenizer_only=config.tiny_model)
    games = game_list(config.env, config.train_split(), max_turns=config.max_turns, data=config.data or None,
                      tasks=config.task_list(), params=config.game_params or None)
    _check_expert(config.env, games[0], plan_noise=config.plan_noise > 0)
    if config.lora_rank > 0:
        try:
            models.lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets)
        except ImportError as exc:
            raise ValueError(f"lora_rank: {exc}") from exc
    check_out(Path(config.out), config.overwrite)
    return len(games)


def _check_expert(env: str, spec, plan_noise: bool = False) -> None:
    """Refuses an environment whose games have no expert (TextEnv.expert_turn left as it is), or,
    with `plan_noise`, no planning errors (TextEnv.expert_mistakes); builds one game to ask, as its
    class may come from any factory."""
    from hiper.envs.base import TextEnv

    game = spec.make()
    try:
        if type(game).expert_turn is TextEnv.expert_turn:
            raise ValueError(f"env: {env}'s games ({type(game).__name__}) have no expert to demonstrate with; "
                             "hiper sft needs an environment that implements TextEnv.expert_turn")
        if plan_noise and type(game).expert_mistakes is TextEnv.expert_mistakes:
            raise ValueError(f"plan_noise: {env}'s games ({type(game).__name__}) have no planning errors to "
                             "demonstrate (TextEnv.expert_mistakes); use --expert-noise")
    finally:
        game.close()


def check_out(out: Path, overwrite: bool) -> None:
    """Refuses an --out that a run must not write: a file, a directory holding anything but an
    earlier hiper sft output, that one without `overwrite`, or a place this user cannot write."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / REPORT).is_file():
            raise ValueError(f"out: {out} holds files but no {REPORT}, so it is no hiper sft output; choose another "
                             "directory (--overwrite replaces only an earlier hiper sft output)")
        if not overwrite:
            raise ValueError(f"out: {out} holds an earlier hiper sft output; pass --overwrite to replace it")
    # A run writes beside `out` and renames into place: it needs to write in out's parent, or in
    # the nearest directory above that exists (where it creates the missing ones).
    target = out.absolute()
    where = target.parent if target.exists() else next(p for p in target.parents if p.exists())
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot write in {where}")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def load_model(config: WarmStartConfig, device):
    """(model, tokenizer, what the model is): the model to fine-tune on `device`, with LoRA
    adapters when asked for."""
    import torch
    from transformers import AutoTokenizer

    from hiper import models

    torch.manual_seed(config.seed)
    with models.quiet_progress_bars():
        if config.tiny_model:
            source = config.model or str(models.default_model_dir())
            tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(source))
            model = models.tiny_random_model(tokenizer, seed=config.seed)
            label = f"a tiny random model (tokenizer of {source})"
        else:
            model, tokenizer = models.load(config.model)
            label = config.model or "SmolLM2-135M-Instruct"
    if config.lora_rank > 0:
        model = models.add_lora(model, models.lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout,
                                                          config.lora_targets))
        label += f" + LoRA rank {config.lora_rank}"
    return model.to(device), tokenizer, label


def warm_start(config: WarmStartConfig, log: Callable[[str], None] = print) -> dict:
    """Runs `hiper sft` (see the module docstring) and returns the report written to sft.json.
    `log` gets the lines saying what runs; the bars go to stderr."""
    from hiper import demos, models

    seconds = {}
    games = check_before_loading(config)
    device = models.resolve_device(config.device)
    split = config.train_split()

    started = time.perf_counter()
    model, tokenizer, label = load_model(config, device)
    seconds["load"] = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"hiper sft: {label}, {parameters:,} parameters ({trained:,} trained), on {device}")
    log(f"collecting {config.episodes} expert episode(s) of {config.env} {split} ({games} games; up to "
        f"{config.max_turns} turns, expert noise {config.expert_noise:g}, "
        + (f"plan noise {config.plan_noise:g}, " if config.plan_noise else "")
        + (f"{config.workers} worker processes)" if config.workers > 1 else "in this process)"))

    started = time.perf_counter()
    kept = _collect(config, split)
    seconds["collect"] = time.perf_counter() - started

    started = time.perf_counter()
    pairs = demos.render(kept, tokenizer, config.rollout_config())
    prompt_tokens, response_tokens = (sum(map(len, tokenizer(list(texts), add_special_tokens=False)["input_ids"]))
                                      for texts in zip(*pairs))
    seconds["render"] = time.perf_counter() - started
    counts = {**demos.summary(kept), "played": config.episodes, "won": sum(d.won for d in kept),
              "pairs": len(pairs), "prompt_tokens": prompt_tokens, "response_tokens": response_tokens}
    log(f"demonstrations: {counts['episodes']} kept of {config.episodes} played ({counts['won']} won), "
        f"{counts['turns']} turns -> {len(pairs)} pairs, {prompt_tokens + response_tokens:,} tokens "
        f"({response_tokens:,} trained on)")
    passes = config.steps * config.batch_size / len(pairs)
    log(f"fine-tuning: {config.steps} steps x {config.batch_size} pairs ({passes:.1f} passes over the pairs), "
        f"micro-batches of {config.micro_batch_size}, lr {config.lr:g} {config.schedule}")

    started = time.perf_counter()
    losses = _fine_tune(model, tokenizer, pairs, config)
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    if models.is_lora(model):
        model = model.merge_and_unload()  # a plain model: OUT loads without PEFT
    report = {"format": FORMAT, "version": VERSION,
              "settings": {**dataclasses.asdict(config), "split": split},
              "model": {"source": label, "parameters": parameters, "trained_parameters": trained,
                        "lora_merged": config.lora_rank > 0, "device": str(device)},
              "demonstrations": counts, "losses": losses, "seconds": seconds}

    def write(directory: Path) -> None:
        with models.quiet_progress_bars():
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
        with open(directory / DEMOS, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(dataclasses.asdict(d)) + "\n" for d in kept)
        seconds["save"] = time.perf_counter() - started
        # Written last: a directory without it is no finished output.
        (directory / REPORT).write_text(json.dumps(report, indent=1), encoding="utf-8")

    write_atomically(Path(config.out), write, overwrite=config.overwrite)
    log(f"wrote {config.out}: the model{' (LoRA merged)' if config.lora_rank > 0 else ''} and tokenizer, {REPORT}, "
        f"{DEMOS}; loss {losses[0]:.3f} -> {losses[-1]:.3f}; {sum(seconds.values()):.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + ")")
    return report


def _collect(config: WarmStartConfig, split: str) -> list:
    """The demonstrations to learn from, with a bar of the episodes played."""
    from hiper import demos
    from hiper.progress import CountBar

    bar = CountBar(config.episodes, "experts", "episode") if config.progress else None
    try:
        kept = demos.collect(config.env, split, config.episodes, max_turns=config.max_turns, data=config.data or None,
                             tasks=config.task_list(), params=config.game_params or None,
                             expert_noise=config.expert_noise, plan_noise=config.plan_noise, seed=config.seed,
                             keep_lost=config.keep_lost, workers=max(1, config.workers),
                             progress=(lambda done, total: bar.update()) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if not kept:
        raise ValueError(f"episodes: no demonstration to learn from: none of the {config.episodes} expert episode(s) "
                         "was won (lost ones are dropped unless --keep-lost); lower --expert-noise or raise "
                         "--max-turns")
    return kept


def _fine_tune(model, tokenizer, pairs: list[tuple[str, str]], config: WarmStartConfig) -> list[float]:
    """hiper.sft on the pairs, with a bar of the steps (the last loss, tokens read per second)."""
    from hiper.progress import CountBar
    from hiper.sft import sft

    if not config.progress:
        return sft(model, tokenizer, pairs, config.sft_config())
    bar = CountBar(config.steps, "sft", "step")
    last = time.perf_counter()

    def on_step(step: int, loss: float, tokens: int) -> None:
        nonlocal last
        now = time.perf_counter()
        bar.update(f"loss {loss:.3f}, {tokens / max(now - last, 1e-9):.0f} tok/s")
        last = now

    try:
        return sft(model, tokenizer, pairs, config.sft_config(), on_step=on_step)
    finally:
        bar.close()


def write_atomically(out: Path, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Calls `write(directory)` on a temporary directory beside `out`, then puts it in `out`'s
    place (hiper.files.replace_directory): `out` is never seen half-written. An error (or Ctrl-C)
    removes the temporary and leaves `out` as it was; a kill leaves the temporary, which the next
    run into `out` removes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)

    def write_then_check(directory: Path) -> None:
        write(directory)
        check_out(out, overwrite)  # again: something may have been put there during the run

    replace_directory(out, write_then_check)
