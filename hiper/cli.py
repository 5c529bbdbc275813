"""The `hiper` command line.

    hiper info                 build and device facts
    hiper hae [--trajectories 128]
                               Hierarchical Advantage Estimation on the embedded synthetic
                               rollout batch: checks the compiled core against the
                               pure-PyTorch twin, then reports what HAE produced and how long
                               each implementation took.
    hiper train --env alfworld [--config run.yaml] [--envs 4 --steps 2 --max-turns 8 ...] [--resume]
                               PPO with HAE (or --estimator gae|turn_gae|grpo|rloo|gigpo); every
                               TrainConfig field is a flag (see README). Data-parallel:
                               torchrun --nproc_per_node=N -m hiper train ...
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
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import hiper


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
    from hiper.envs import EnvPool
    from hiper.envs.registry import evaluation_specs
    from hiper.rollout import RolloutConfig, RolloutEngine

    device = models.resolve_device(args.device)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.tiny:
        from transformers import AutoTokenizer

        tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(models.default_model_dir()))
        model = models.tiny_random_model(tokenizer).to(device)
    else:
        model, tokenizer = models.load(args.model, device=device)
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    specs = evaluation_specs(args.env, args.split, args.envs, max_turns=args.max_turns,
                             data=_games_data(args.env, args.data), tasks=_tasks(args.tasks), count_name="envs")
    config = RolloutConfig.for_env(args.env, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                                   temperature=args.temperature, top_p=args.top_p)
    with EnvPool(specs, num_workers=args.workers) as pool:
        result = RolloutEngine(model, tokenizer, pool, config).run()
    for e in result.episodes:
        print(f"env {e.env}: {'won ' if e.won else 'lost'} turns={e.turns} switches={e.switches} "
              f"invalid={e.invalid} reward={e.total_reward:g}")
    b = result.batch
    print(f"buffer: {b.num_rows} turns, prompts {tuple(b.prompts.shape)}, responses {tuple(b.responses.shape)}")
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    print(f"success rate: {result.success_rate:.2f}")
    return 0


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--max-turns 8`, `--norm-adv false`, ...)."""
    import dataclasses

    from hiper.trainer import TrainConfig

    def boolean(text: str) -> bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")

    for f in dataclasses.fields(TrainConfig):
        kind = {bool: boolean, int: int, float: float}.get(type(f.default), str)
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            help=f"(default: {f.default})")


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from hiper.trainer import Trainer, TrainConfig, config_from_dict

    values: dict = {}
    if args.config:
        import yaml

        with open(args.config) as f:
            values.update(yaml.safe_load(f) or {})
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    config = config_from_dict(values)
    t0 = time.perf_counter()
    from hiper import distributed

    finished = False
    try:
        trainer = Trainer(config)  # joins the process group when launched by torchrun
        world, main = trainer.reducer.world_size, trainer.reducer.rank == 0
        if main:
            ranks = f" x {world} ranks" if world > 1 else ""
            print(f"set up in {time.perf_counter() - t0:.1f} s; training {config.steps} step(s) on {config.env} with "
                  f"{config.envs} environments{ranks}, run directory {config.run_dir}")
        trainer.train(resume=args.resume)
        if main:
            print(f"done in {time.perf_counter() - t0:.1f} s; metrics in {config.run_dir}/metrics.jsonl, "
                  f"checkpoint in {config.run_dir}/checkpoint")
        finished = True
    finally:
        distributed.shutdown(wait_for_peers=finished)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from hiper import models
    from hiper.checkpoint import load_policy
    from hiper.evaluate import evaluate

    t0 = time.perf_counter()
    # A run directory (its latest complete checkpoint), a checkpoint, or a model directory; local files only.
    model, tokenizer = load_policy(args.checkpoint, argument="--checkpoint")
    model.to(models.resolve_device(args.device))
    report = evaluate(model, tokenizer, args.env, args.episodes, args.split, args.max_turns, args.max_new_tokens,
                      workers=args.workers, data=_games_data(args.env, args.data), tasks=_tasks(args.tasks),
                      seed=args.seed)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))
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
    from hiper.plot import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0


def cmd_bench_credit(args: argparse.Namespace) -> int:
    from hiper.studies import credit

    return credit.run(args)


def cmd_bench_variance(args: argparse.Namespace) -> int:
    from hiper.studies import variance

    return variance.run(args)


def _add_bench(sub) -> None:
    from hiper.studies import credit, variance

    bench = sub.add_parser("bench", help="estimator studies")
    studies = bench.add_subparsers(dest="study", required=True)
    cr = studies.add_parser("credit", help="credit assignment on a synthetic hierarchical task (exact gradients)")
    credit.add_arguments(cr)
    cr.set_defaults(func=cmd_bench_credit)
    va = studies.add_parser("variance", help="policy-gradient spread across real rollout batches")
    variance.add_arguments(va)
    va.set_defaults(func=cmd_bench_variance)


def _tasks(text: str | None) -> tuple[str, ...] | None:
    names = tuple(t.strip() for t in (text or "").split(",") if t.strip())
    return names or None


def _add_game_flags(parser: argparse.ArgumentParser, *, count_flag: str, count_help: str, count: int) -> None:
    """--env, --split, --data, --tasks and the number of games, as `hiper rollout` and `hiper eval` share them."""
    parser.add_argument("--env", default="alfworld",
                        help="alfworld, textworld, scienceworld, or module:attribute naming a hiper.envs.Family")
    parser.add_argument(count_flag, type=int, default=count, help=count_help)
    parser.add_argument("--split", default=None,
                        help="game split (default: the held-out one: alfworld valid_unseen, textworld valid, "
                             "scienceworld dev)")
    parser.add_argument("--data", default=None,
                        help="ALFWorld data root holding json_2.1.1/, or 'sample' (default: $ALFWORLD_DATA, else "
                             "the packaged sample)")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated ALFWorld task types or ScienceWorld tasks (default: all / boil)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiper", description="Hierarchical plan-execute RL for LLM agents.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="build and device facts").set_defaults(func=cmd_info)
    hae = sub.add_parser("hae", help="HAE on the embedded synthetic rollout batch")
    hae.add_argument("--trajectories", type=int, default=128)
    hae.add_argument("--max-turns", type=int, default=50)
    hae.add_argument("--length", type=int, default=512, help="padded response length")
    hae.add_argument("--seed", type=int, default=0)
    hae.add_argument("--repeats", type=int, default=20)
    hae.set_defaults(func=cmd_hae)
    ro = sub.add_parser("rollout", help="let an LLM policy play a few episodes")
    _add_game_flags(ro, count_flag="--envs", count_help="parallel environments (one distinct game each)", count=4)
    ro.add_argument("--max-turns", type=int, default=10)
    ro.add_argument("--max-new-tokens", type=int, default=96)
    ro.add_argument("--temperature", type=float, default=1.0)
    ro.add_argument("--top-p", type=float, default=1.0)
    ro.add_argument("--model", default=None, help="HF name or path (default: SmolLM2-135M-Instruct, offline)")
    ro.add_argument("--tiny", action="store_true", help="a tiny random model instead (smoke test)")
    ro.add_argument("--workers", type=int, default=0, help="environment worker processes (0: in process)")
    ro.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    ro.add_argument("--seed", type=int, default=0)
    ro.set_defaults(func=cmd_rollout)
    tr = sub.add_parser("train", help="train a policy with PPO and HAE")
    tr.add_argument("--config", help="YAML file of TrainConfig fields; flags override it")
    tr.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint")
    _add_config_flags(tr)
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint")
    ev.add_argument("--checkpoint", required=True,
                    help="a run directory (its latest checkpoint), a checkpoint directory, or a model directory")
    _add_game_flags(ev, count_flag="--episodes", count_help="distinct held-out games to play", count=10)
    ev.add_argument("--max-turns", type=int, default=50)
    ev.add_argument("--max-new-tokens", type=int, default=128)
    ev.add_argument("--workers", type=int, default=0, help="environment worker processes (0: in process)")
    ev.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation's sampling")
    ev.set_defaults(func=cmd_eval)
    pd = sub.add_parser("prepare-data", help="unpack ALFWorld's game files for training and evaluation")
    pd.add_argument("archive", help="an archive of ALFWorld game files (e.g. alfworld_tw-pddl_all_splits.tar.xz)")
    pd.add_argument("dest", help="directory to unpack into; prints the ALFWORLD_DATA to export")
    pd.set_defaults(func=cmd_prepare_data)
    pl = sub.add_parser("plot", help="learning curves of a run to PNG")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None)
    pl.set_defaults(func=cmd_plot)
    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
