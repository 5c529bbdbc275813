"""The `hiper` command line.

    hiper info                 build and device facts
    hiper hae [--trajectories 128]
                               Hierarchical Advantage Estimation on the embedded synthetic
                               rollout batch: checks the compiled core against the
                               pure-PyTorch twin, then reports what HAE produced and how long
                               each implementation took.
    hiper train --env alfworld [--config configs/cpu-smoke.yaml] [--envs 4 --steps 2 ...] [--resume] [--check]
                               PPO with HAE (or --estimator gae|turn_gae|grpo|rloo|gigpo); every
                               TrainConfig field is a flag and a --config key (hiper train --help).
                               Data-parallel: torchrun --nproc_per_node=N -m hiper train ...
    hiper sft --env alfworld [--episodes 200 --steps 200 --out runs/sft]
                               supervised warm start: fine-tunes the policy on expert
                               demonstrations in the Plan-Execute format and writes a model
                               directory for `hiper train --model runs/sft`
    hiper eval --checkpoint RUN_DIR [--split valid_unseen --episodes 10]
                               success overall and per task type, turns, switches, invalid rate
    hiper plot RUN_DIR          learning curves to RUN_DIR/curves.png
    hiper bench credit [--quick]
                               the controlled credit-assignment study: bias and variance of
                               HAE, flat GAE, turn-level GAE and GRPO gradients against the
                               exact policy gradient of a synthetic hierarchical task
    hiper bench variance --env alfworld [--batches 4]
                               spread of each estimator's policy gradient across K real
                               rollout batches of one policy
    hiper rollout --env {alfworld,textworld,scienceworld} [--envs 4] [--max-turns 10]
                               an LLM policy (SmolLM2-135M-Instruct offline by default) plays
                               a few episodes; prints per-episode results and stage timings.

A mistake (a flag's value, a config key, a missing file) stops a command before any model loads,
with one line naming the flag: `hiper: error: --envs: must be >= 1, got 0`; --debug (or
HIPER_DEBUG=1) shows the traceback too.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import hiper
from hiper.flags import (  # what every command shares (hiper.flags), under the names used here
    COUNT as _COUNT,
    NOT_NEGATIVE as _NOT_NEGATIVE,
    TEMPERATURE as _TEMPERATURE,
    TOP_P as _TOP_P,
    ExamplesHelpFormatter as _ExamplesHelpFormatter,
    Parser as _Parser,
    add_boolean_flag,
    add_train_flags,
    checked as _checked,
    flag_type as _flag_type,
    given_train_values as _given_train_values,
    name_flag as _name_flag,
    train_config as _train_config,
)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def cmd_info(_: argparse.Namespace) -> int:
    print(f"hiper {hiper.__version__}")
    print(f"compiled core: {hiper._C.__file__}")
    print(f"CUDA backend compiled: {hiper._C.cuda_compiled()}; usable devices: {hiper._C.cuda_device_count()}")
    return 0


def cmd_hae(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hiper.integrations.verl import compute_hae_advantage
    from hiper.reference import hae_torch
    from hiper.synthetic import synthetic_rollout_batch

    cfg = hiper.HAEConfig(gamma=1.0, lam_turn=1.0, lam_seg=0.95, norm_adv=True, bootstrap_truncated=True,
                          keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                          keep_consistency_penalty=-0.3)
    b = synthetic_rollout_batch(args.trajectories, max_turns=args.max_turns, length=args.length, seed=args.seed)
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    n, length = b.batch["response_mask"].shape
    print(f"synthetic rollout batch: {args.trajectories} trajectories, {n} turns, responses padded to {length}")
    print(f"config: {cfg}")

    compute_hae_advantage(b, cfg, **masks)
    twin = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, **masks)
    worst = max((b.batch[k] - twin[k]).abs().max().item() for k in twin if twin[k].dtype == torch.float32)
    masks_equal = all(torch.equal(b.batch[k], twin[k]) for k in twin if twin[k].dtype == torch.bool)
    print(f"C++ core vs PyTorch twin: max |difference| {worst:.2e}, token masks identical: {masks_equal}")

    meta = b.non_tensor_batch
    lay = hiper.build_layout(hiper.factorize(meta["traj_uid"]), meta["turn_idx"], meta["switch"])
    seg_len = np.diff(lay.seg_offsets)
    adv = b.batch["advantages"][b.batch["hae_lo_mask"] | b.batch["hae_hi_mask"] | b.batch["hae_term_mask"]]
    print(f"segments: {lay.num_segments} ({lay.num_segments / lay.num_trajectories:.1f} per trajectory, "
          f"mean length {seg_len.mean():.2f} turns)")
    print(f"credited tokens: {adv.numel()} of {int(b.batch['response_mask'].sum())}; "
          f"advantage mean {adv.mean().item():+.3f}, std {adv.std().item():.3f}")

    ours = _median_ms(lambda: compute_hae_advantage(b, cfg, **masks), args.repeats)
    theirs = _median_ms(lambda: hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, **masks),
                        max(1, args.repeats // 4))
    print(f"time per batch: C++ core {ours:.2f} ms, pure PyTorch {theirs:.2f} ms ({theirs / ours:.1f}x)")
    if worst > 1e-4 or not masks_equal:
        print("error: the core and the twin disagree", file=sys.stderr)
        return 1
    return 0


def _games_data(env: str, data: str | None) -> str | None:
    """The ALFWorld data for `hiper rollout` / `hiper eval`: as given, else $ALFWORLD_DATA, else
    (said once, loudly) hiper's packaged sample. Training never falls back: see resolve_data."""
    if env != "alfworld" or data:
        return data
    from hiper.envs.alfworld import resolve_data

    if os.environ.get("ALFWORLD_DATA"):
        try:
            resolve_data(None)
            return None
        except FileNotFoundError:
            if Path(os.environ["ALFWORLD_DATA"]).resolve() != (Path.home() / ".cache" / "alfworld").resolve():
                raise  # set by the user, and wrong: say so rather than play something else
    print("ALFWorld: no ALFWORLD_DATA; playing hiper's packaged sample games (--data sample). For the full "
          "splits run `hiper prepare-data ARCHIVE DEST` and export the ALFWORLD_DATA it prints.", file=sys.stderr)
    return "sample"


def cmd_rollout(args: argparse.Namespace) -> int:
    import torch

    from hiper import models
    from hiper.engines import resolve_engine
    from hiper.envs import EnvPool
    from hiper.envs.registry import evaluation_specs
    from hiper.profiles import play_sizes
    from hiper.rollout import RolloutConfig, RolloutEngine

    device = models.resolve_device(args.device)
    models.check_model_name(args.model, tokenizer_only=args.tiny_model)
    # The games first: a bad --env, --envs, --data or --tasks is refused before any model loads.
    args.max_turns, args.max_new_tokens, origin = play_sizes(args.max_turns, args.max_new_tokens, device)
    specs = evaluation_specs(args.env, args.split, args.envs, max_turns=args.max_turns,
                             data=_games_data(args.env, args.data), tasks=_tasks(args.tasks),
                             params=args.game_params or None, count_name="envs")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.tiny_model:
        from transformers import AutoTokenizer

        # The tiny model takes --model's tokenizer, as `hiper train --tiny-model` does.
        tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(args.model or models.default_model_dir()))
        model = models.tiny_random_model(tokenizer).to(device)
    else:
        model, tokenizer = models.load(args.model, device=device)
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    engine = resolve_engine(args.engine, lora=models.is_lora(model))
    config = RolloutConfig.for_env(args.env, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                                   temperature=args.temperature, top_p=args.top_p)
    print(f"playing {len(specs)} {args.env} game(s) on {device}: up to {args.max_turns} turns x "
          f"{args.max_new_tokens} new tokens each ({origin}), one batched {engine} generation "
          "per turn")
    with EnvPool(specs, num_workers=args.workers) as pool:
        result = RolloutEngine(model, tokenizer, pool, config, progress=args.progress, engine=engine).run()
    for e in result.episodes:
        print(f"env {e.env}: {'won ' if e.won else 'lost'} turns={e.turns} switches={e.switches} "
              f"invalid={e.invalid} reward={e.total_reward:g}")
    b = result.batch
    print(f"buffer: {b.num_rows} turns, prompts {tuple(b.prompts.shape)}, responses {tuple(b.responses.shape)}")
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    print(f"success rate: {result.success_rate:.2f}")
    return 0


def _check_before_loading(config, resume: bool):
    """What a run needs besides a valid config, checked in seconds, before any model loads: the
    device, the sizes its profile gives, the games (env, split, data root, tasks; the
    evaluation's too), and the run directory (--resume needs a checkpoint short of --steps, a
    new run a directory holding no run). Returns (the config with the profile's sizes, what
    the profile filled)."""
    from hiper import checkpoint, models, runs
    from hiper.envs.registry import evaluation_specs, game_list
    from hiper.profiles import resolve_sizes

    resolved, sizes = resolve_sizes(config, models.resolve_device(config.device))
    models.check_model_name(config.model, tokenizer_only=config.tiny_model)
    game_list(resolved.env, resolved.split, **resolved.game_options())
    if resolved.eval_every:
        evaluation_specs(resolved.env, resolved.eval_split or None, resolved.eval_envs, count_name="eval_envs",
                         **resolved.game_options())
    run_dir = Path(config.run_dir)
    if resume:
        if config.overwrite:
            raise ValueError("overwrite: a resumed run continues its run_dir; pass --resume or --overwrite, not both")
        step = checkpoint.open_checkpoint(run_dir, argument="run_dir").step
        if step >= config.steps:
            raise ValueError(f"steps: nothing to do: the checkpoint in {run_dir} is at step {step} already; pass "
                             f"--steps above {step} to train on")
    elif not config.overwrite and runs.existing_run(run_dir):
        raise ValueError(f"run_dir: {run_dir} already holds a run ({', '.join(runs.existing_run(run_dir))}); "
                         "pass --resume to continue it or --overwrite to start it over")
    return resolved, sizes


def _resumed_train_config(args: argparse.Namespace, run_dir: str):
    """The configuration the run in `run_dir` continues with: its checkpoint's, changed only by the
    flags hiper.resume allows (or, with --override, by any flag given, each change logged)."""
    from hiper import checkpoint
    from hiper.resume import resumed_config

    from_file, from_flags = _given_train_values(args)
    saved = checkpoint.open_checkpoint(run_dir, argument="run_dir").recorded_config()
    return resumed_config(saved, from_file, from_flags, override=args.override,
                          log=lambda line: print(line, file=sys.stderr))


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from hiper.trainer import Trainer

    if args.override and not args.resume:
        raise ValueError("override: only a resumed run has a configuration to override; pass it with --resume")
    config = _train_config(args)  # the values given, checked as a new run's are, naming their flags
    if args.resume:
        if config.overwrite:
            raise ValueError("overwrite: a resumed run continues its run_dir; pass --resume or --overwrite, not both")
        config = _resumed_train_config(args, config.run_dir)
    resolved, sizes = _check_before_loading(config, args.resume)
    if args.check:
        import yaml

        print(f"# hiper train: the configuration checks out; {sizes.describe(resolved)}")
        print(yaml.safe_dump(dataclasses.asdict(resolved), sort_keys=False), end="")
        return 0
    t0 = time.perf_counter()
    from hiper import distributed

    finished = False
    try:
        trainer = Trainer(config)  # joins the process group when launched by torchrun
        world, main = trainer.reducer.world_size, trainer.reducer.rank == 0
        if main:
            ranks = f" x {world} ranks" if world > 1 else ""
            print(f"set up in {time.perf_counter() - t0:.1f} s{ranks}")  # train() prints what it runs
        trainer.train(resume=args.resume)
        if main:
            print(f"done in {time.perf_counter() - t0:.1f} s; metrics in {config.run_dir}/metrics.jsonl, "
                  f"checkpoint in {config.run_dir}/checkpoint")
        finished = True
    finally:
        distributed.shutdown(wait_for_peers=finished)
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    import dataclasses

    from hiper.warm_start import WarmStartConfig, warm_start

    # The config checks every value (naming it: `main` turns `episodes: ...` into `--episodes: ...`),
    # then warm_start checks games, expert, device and --out, all before any model loads.
    config = WarmStartConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(WarmStartConfig)})
    warm_start(config)
    return 0


def _add_sft_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per WarmStartConfig field (`--expert-noise 0.2`, `--keep-lost`), with the field's
    description, default and choices, its value read as the field's type."""
    import dataclasses
    import typing

    from hiper.warm_start import WarmStartConfig

    kinds = typing.get_type_hints(WarmStartConfig)
    for f in dataclasses.fields(WarmStartConfig):
        kind = next(k for k in (typing.get_args(kinds[f.name]) or (kinds[f.name],)) if k is not type(None))
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"].replace("%", "%%")
        if kind is bool:
            add_boolean_flag(parser, flag, default=f.default, help=text)
        else:
            parser.add_argument(flag, type=_flag_type(kind), default=f.default, choices=f.metadata.get("choices"),
                                help=text)


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from hiper import models
    from hiper.checkpoint import load_policy, policy_kind
    from hiper.engines import resolve_engine
    from hiper.envs.registry import evaluation_specs
    from hiper.evaluate import evaluate
    from hiper.profiles import play_sizes

    from hiper.envs.registry import family

    t0 = time.perf_counter()
    policy_kind(args.checkpoint, argument="--checkpoint")  # the path first: a typo is the likeliest mistake
    device = models.resolve_device(args.device)
    args.max_turns, args.max_new_tokens, origin = play_sizes(args.max_turns, args.max_new_tokens, device)
    # The games are checked before the model loads (evaluate lists them again, from the same arguments).
    data = _games_data(args.env, args.data)
    args.split = args.split or family(args.env).report_split  # None: the family's evaluation split
    evaluation_specs(args.env, args.split, args.episodes, max_turns=args.max_turns, data=data, tasks=_tasks(args.tasks),
                     params=args.game_params or None)
    # A run directory (its latest complete checkpoint), a checkpoint, or a model directory; local files only.
    with models.quiet_progress_bars():
        model, tokenizer = load_policy(args.checkpoint, argument="--checkpoint")
    model.to(device)
    engine = resolve_engine(args.engine, lora=models.is_lora(model))
    # The report is the JSON on stdout; what runs, and the bar, go to stderr.
    print(f"evaluating {args.checkpoint} on {args.episodes} {args.env} game(s) on {device}: up to {args.max_turns} "
          f"turns x {args.max_new_tokens} new tokens each ({origin}), {engine} generation", file=sys.stderr)
    report = evaluate(model, tokenizer, args.env, args.episodes, args.split, args.max_turns, args.max_new_tokens,
                      workers=args.workers, data=data, tasks=_tasks(args.tasks), params=args.game_params or None,
                      seed=args.seed, temperature=args.temperature, engine=engine,
                      progress=args.progress)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hiper import models
    from hiper.checkpoint import export_policy

    with models.quiet_progress_bars():
        out = export_policy(args.checkpoint, args.out, argument="--checkpoint")
    print(f"wrote the policy of {args.checkpoint} to {out} (LoRA adapters merged)", file=sys.stderr)
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from hiper.envs.alfworld import prepare_data

    if not Path(args.archive).is_file():
        raise FileNotFoundError(f"archive: no file at {args.archive}")
    print(f"unpacking {args.archive} into {args.dest} ...", file=sys.stderr)
    root = prepare_data(args.archive, args.dest)
    print(f"export ALFWORLD_DATA={root.resolve()}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hiper.plot import compare_runs, plot_run

    if args.compare:
        if args.run_dir or not args.out:
            raise ValueError("compare: give the runs as LABEL=RUN_DIR[,RUN_DIR...] and the figure as --out, "
                             "without a RUN_DIR")
        groups = {}
        for item in args.compare:
            label, _, dirs = item.partition("=")
            if not label or not dirs:
                raise ValueError(f"compare: expected LABEL=RUN_DIR[,RUN_DIR...], got {item!r}")
            groups[label] = dirs.split(",")
        print(compare_runs(groups, args.out, args.title))
        return 0
    if not args.run_dir:
        raise ValueError("run_dir: name a run directory (or --compare runs)")
    print(plot_run(args.run_dir, args.out))
    return 0


def cmd_bench_credit(args: argparse.Namespace) -> int:
    from hiper.studies import credit

    return credit.run(args)


def cmd_bench_variance(args: argparse.Namespace) -> int:
    from hiper.studies import variance

    return variance.run(args)


def cmd_bench_learning(args: argparse.Namespace) -> int:
    from hiper.studies import learning

    return learning.main(args)


def _add_bench(sub) -> None:
    from hiper.studies import credit, learning, variance

    bench = sub.add_parser("bench", help="estimator studies")
    studies = bench.add_subparsers(dest="study", required=True)
    cr = studies.add_parser("credit", help="credit assignment on a synthetic hierarchical task (exact gradients)")
    credit.add_arguments(cr)
    cr.set_defaults(func=cmd_bench_credit)
    va = studies.add_parser("variance", help="policy-gradient spread across real rollout batches")
    variance.add_arguments(va)
    va.set_defaults(func=cmd_bench_variance)
    le = studies.add_parser("learning", help="held-out learning curves of several estimators x seeds from one warm "
                                             "start, with bootstrap intervals (resumable)",
                            description=learning.__doc__.split("\n\n")[0])
    learning.add_arguments(le)
    le.set_defaults(func=cmd_bench_learning)


def _tasks(text: str | None) -> tuple[str, ...] | None:
    names = tuple(t.strip() for t in (text or "").split(",") if t.strip())
    return names or None

# ---------------------------------------------------------------------------------------------
# Flags several commands share (the toolkit they are made with is hiper.flags)
# ---------------------------------------------------------------------------------------------

def _environment(text: str) -> str:
    """An --env naming a registered family or module:attribute naming one."""
    from hiper.envs.registry import family

    return _checked(family, "env")(text)


def _device(text: str) -> str:
    """A --device this machine has."""
    from hiper.models import resolve_device

    return _checked(resolve_device, "device")(text)


def _described(name: str) -> str:
    """The description of TrainConfig field `name`: a flag meaning the same in another command says the same."""
    import dataclasses

    from hiper.train_config import TrainConfig

    return next(f.metadata["help"] for f in dataclasses.fields(TrainConfig) if f.name == name)


def _add_game_flags(parser: argparse.ArgumentParser, *, count_flag: str, count_help: str, count: int) -> None:
    """--env, --split, --data, --tasks and the number of games, as `hiper rollout` and `hiper eval` share them."""
    parser.add_argument("--env", type=_environment, default="alfworld", help=_described("env"))
    parser.add_argument(count_flag, type=_COUNT, default=count, help=count_help)
    parser.add_argument("--split", default=None,
                        help="game split (default: the held-out one: alfworld valid_unseen, textworld valid, "
                             "scienceworld dev, twx dev for rollout and test for eval)")
    parser.add_argument("--data", default=None,
                        help="ALFWorld data root holding json_2.1.1/, or 'sample' (default: $ALFWORLD_DATA, else "
                             "the packaged sample)")
    parser.add_argument("--tasks", default=None, help=_described("tasks"))
    parser.add_argument("--game-params", default=None, help=_described("game_params"))


def _add_play_flags(parser: argparse.ArgumentParser, *, temperature: float, top_p: bool, seed_help: str) -> None:
    """How episodes are played, as `hiper rollout` and `hiper eval` share it."""
    from hiper.profiles import CPU, GPU

    parser.add_argument("--max-turns", type=_COUNT, default=None,
                        help=f"turns per episode (default: the device profile's, cpu {CPU.play_max_turns} / gpu "
                             f"{GPU.play_max_turns})")
    parser.add_argument("--max-new-tokens", type=_COUNT, default=None,
                        help=f"tokens per response (default: the device profile's, cpu {CPU.play_max_new_tokens} / "
                             f"gpu {GPU.play_max_new_tokens})")
    parser.add_argument("--temperature", type=_TEMPERATURE, default=temperature, help="sampling temperature "
                        "(0: greedy)")
    if top_p:
        parser.add_argument("--top-p", type=_TOP_P, default=1.0, help=_described("top_p"))
    parser.add_argument("--workers", type=_NOT_NEGATIVE, default=0, help=_described("workers"))
    parser.add_argument("--device", type=_device, default="auto", help=_described("device"))
    parser.add_argument("--engine", choices=("auto", "hf", "vllm"), default="auto", help=_described("engine"))
    parser.add_argument("--seed", type=_NOT_NEGATIVE, default=0, help=seed_help)
    add_boolean_flag(parser, "--progress", default=True, help="a progress bar of the rollout's turns on stderr")


# `hiper --help`'s epilog: README.md's first commands, a warm start and training from it (CPU-sized).
FIRST_COMMANDS = """\
first commands (README.md explains them; every command's options: hiper COMMAND --help):
  hiper hae      # HAE's compiled core against its PyTorch twin: no model, no games
  # a supervised warm start of a tiny model on keychest, its evaluation, then PPO with HAE from it:
  hiper sft --env keychest --tiny-model --episodes 200 --steps 80 --batch-size 8 --micro-batch-size 8 \\
      --lr 5e-3 --schedule constant --out runs/keychest-sft
  hiper eval --checkpoint runs/keychest-sft --env keychest --episodes 20 --max-turns 4 --max-new-tokens 40
  hiper train --env keychest --model runs/keychest-sft --steps 4 --envs 8 --max-turns 2 --max-new-tokens 40 \\
      --run-dir runs/keychest-hae
  # two steps of the default policy on hiper's packaged ALFWorld games:
  hiper train --env alfworld --data sample --steps 2 --envs 1 --max-turns 2 --run-dir runs/quick
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hiper", description="Hierarchical plan-execute RL for LLM agents.", epilog=FIRST_COMMANDS,
                     formatter_class=_ExamplesHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str, func) -> argparse.ArgumentParser:
        found = sub.add_parser(name, help=text, description=text)
        found.set_defaults(func=func)
        return found

    command("info", "build and device facts", cmd_info)
    hae = command("hae", "HAE on the embedded synthetic rollout batch: the compiled core against its PyTorch twin",
                  cmd_hae)
    hae.add_argument("--trajectories", type=_COUNT, default=128, help="trajectories in the synthetic batch")
    hae.add_argument("--max-turns", type=_COUNT, default=50, help="turns per trajectory, at most")
    hae.add_argument("--length", type=_COUNT, default=512, help="padded response length, in tokens")
    hae.add_argument("--seed", type=_NOT_NEGATIVE, default=0, help="random seed of the synthetic batch")
    hae.add_argument("--repeats", type=_COUNT, default=20, help="timed runs of the core (the median is reported)")
    ro = command("rollout", "let an LLM policy play a few episodes", cmd_rollout)
    _add_game_flags(ro, count_flag="--envs", count_help="parallel environments, one distinct game each", count=4)
    ro.add_argument("--model", default=None, help=_described("model"))
    add_boolean_flag(ro, "--tiny-model", default=False, help=_described("tiny_model"), hidden_alias="--tiny")
    _add_play_flags(ro, temperature=1.0, top_p=True,
                    seed_help="random seed of the sampling")
    tr = command("train", "train a policy with PPO and HAE, or a flat baseline", cmd_train)
    add_train_flags(tr)
    sf = command("sft", "supervised warm start: fine-tune a model on expert demonstrations and write it as a model "
                        "directory (for hiper train --model, hiper eval --checkpoint)", cmd_sft)
    _add_sft_flags(sf)
    ev = command("eval", "evaluate a checkpoint on held-out games", cmd_eval)
    ev.add_argument("--checkpoint", required=True,
                    help="a run directory (its latest checkpoint), a checkpoint directory, or a model directory")
    _add_game_flags(ev, count_flag="--episodes", count_help="distinct held-out games to play", count=10)
    # Temperature 0.4: the authors' validation sampling (docs/semantics.md §9).
    _add_play_flags(ev, temperature=0.4, top_p=False,
                    seed_help="random seed of the evaluation's sampling")
    ex = command("export", "write a checkpoint's policy as a plain Hugging Face model (LoRA adapters merged)",
                 cmd_export)
    ex.add_argument("--checkpoint", required=True, help="a run directory (its latest checkpoint) or a checkpoint")
    ex.add_argument("--out", required=True, help="the model directory to write (new or empty)")
    pd = command("prepare-data", "unpack ALFWorld's game files for training and evaluation", cmd_prepare_data)
    pd.add_argument("archive", help="an archive of ALFWorld game files (e.g. alfworld_tw-pddl_all_splits.tar.xz)")
    pd.add_argument("dest", help="directory to unpack into; prints the ALFWORLD_DATA to export")
    pl = command("plot", "learning curves of a run to PNG", cmd_plot)
    pl.add_argument("run_dir", nargs="?", help="a run directory (holding metrics.jsonl)")
    pl.add_argument("--out", default=None, help="the PNG to write (default: RUN_DIR/curves.png)")
    pl.add_argument("--compare", nargs="+", metavar="LABEL=RUN_DIR[,RUN_DIR...]",
                    help="instead of one run's curves: each method's held-out success against the step, the mean "
                         "over its runs (seeds) and their min-max band (needs --out)")
    pl.add_argument("--title", default="", help="the --compare figure's title")
    from hiper import plan

    plan.add_arguments(command("plan", "GPU memory per rank of a training run, with and without FSDP sharding",
                               lambda args: plan.main(args)))
    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `hiper` command. An error the user can fix (a bad flag, config key or file, a failed
    environment worker: a ValueError, a TypeError naming its argument, a missing file, ...) prints
    one line, `hiper: error: --envs: ...`, and returns 1; Ctrl-C prints `hiper: interrupted` and
    returns 130; any other error keeps its traceback, as every error does with --debug or
    HIPER_DEBUG=1."""
    from hiper.envs.pool import EnvWorkerError

    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("HIPER_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("hiper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`hiper train --check | head`): not an error of the run.
        # stdout goes to /dev/null so that the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a pipeline cut short
    except (ValueError, TypeError, FileNotFoundError, PermissionError, EnvWorkerError) as exc:
        # A TypeError is the user's when it names what was wrong, as hiper's checks do ("envs:
        # expected an integer"); Python's own ("f() missing 1 required argument") is a bug.
        if debug or (isinstance(exc, TypeError) and not re.match(r"(config key )?[A-Za-z_]\w*: ", str(exc))):
            raise
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        rest = " (--debug shows the rest)" if len(lines) > 1 else ""
        print(f"hiper: error: {_name_flag(lines[0], args.flag_names)}{rest}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
