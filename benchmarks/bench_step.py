"""One training step's update, side by side in each update mode: the same rollouts through full
fine-tuning and LoRA, each in fp32 and under bf16 autocast.

The rollouts are played once (SmolLM2-135M-Instruct on hiper's packaged ALFWorld games); each
mode then runs in a spawned process of its own, so that its peak RSS is its own (it includes the
Python runtime, the imports and the rollouts sent to it; the parent's is reported as a baseline).
Spawned, not forked: the parent's play has started torch's OpenMP threads, and a forked child's
first parallel region waits forever for threads that were not forked with it. Per
mode: the seconds of each stage of `Trainer.train_step` after the rollout, the tokens per second
of the update passes, the least time the CPU's matmul peak allows for each stage, peak RSS,
checkpoint size and optimiser-state size.

    python benchmarks/bench_step.py [--envs 2] [--max-turns 2] [--max-new-tokens 32] [--tiny]
        [--modes full-fp32,full-bf16,lora-fp32,lora-bf16] [--micro-batch-tokens 0]
        [--peak-fp32 135] [--peak-bf16 350]

The peaks are matmul GFLOP/s of the machine (defaults: 2 threads of an avx512_bf16 CPU); a
forward costs 2 x parameters FLOP per token, a backward about twice that (a LoRA backward about
once: no weight gradients of the frozen base), a recomputed forward once more with checkpointing.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

MODES = {"full-fp32": (0, "fp32"), "full-bf16": (0, "bf16"), "lora-fp32": (16, "fp32"), "lora-bf16": (16, "bf16")}


def config(args, run_dir: str, lora_rank: int = 0, precision: str = "fp32"):
    from hiper.trainer import TrainConfig

    tokenizer = str(Path(__file__).parents[1] / "tests" / "fixtures" / "smollm2_tokenizer")
    return TrainConfig(env="alfworld", data="sample", split="valid_unseen", envs=args.envs, max_turns=args.max_turns,
                       max_new_tokens=args.max_new_tokens, micro_batch_size=args.micro_batch_size,
                       micro_batch_tokens=args.micro_batch_tokens, tiny_model=args.tiny,
                       model=tokenizer if args.tiny else None, run_dir=run_dir, progress=False, steps=1,
                       lora_rank=lora_rank, precision=precision, device="cpu", seed=0)


def play(args):
    """The rollouts every mode updates on, played once by the full-fine-tuning trainer's policy."""
    from hiper.envs import EnvPool
    from hiper.envs.registry import training_specs
    from hiper.rollout import RolloutEngine
    from hiper.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config(args, tmp))
        cfg = trainer.config
        specs = training_specs(cfg.env, cfg.split, cfg.envs, 0, seed=cfg.seed, **cfg.game_options())
        start = time.perf_counter()
        with EnvPool(specs) as pool:
            rollout = RolloutEngine(trainer.actor, trainer.tokenizer, pool, cfg.rollout_config()).run()
        seconds = time.perf_counter() - start
        parameters = sum(p.numel() for p in trainer.actor.parameters())
    return rollout, seconds, parameters


def portable(rollout):
    """`rollout` as it can be sent to a spawned process: without its trajectory layout, a compiled
    object that does not pickle (the child rebuilds it from the batch's own columns)."""
    return dataclasses.replace(rollout, batch=dataclasses.replace(rollout.batch, layout=None))


def measure(args, mode: str, rollout, results) -> None:
    """One mode's update on `rollout` (in a spawned child): train_step with the rollout replayed,
    its measurements sent through the pipe end `results`."""
    import hiper.envs
    import hiper.trainer
    from hiper.models import quiet_progress_bars
    from hiper.ops.layout import build_layout
    from hiper.trainer import Trainer

    torch.set_num_threads(args.threads)
    lora_rank, precision = MODES[mode]

    class NoEnvironments:  # the rollout is replayed: no games to start
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    # The layout was left behind (see `portable`); rebuilt here as TrajectoryBuffer.pack builds it.
    batch = rollout.batch
    rollout = dataclasses.replace(rollout, batch=dataclasses.replace(
        batch, layout=build_layout(batch.env_ids, batch.turn_idx, batch.is_new_subgoal)))
    hiper.envs.EnvPool = NoEnvironments
    hiper.trainer.RolloutEngine = lambda *a, **k: SimpleNamespace(run=lambda: rollout)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config(args, tmp, lora_rank, precision))
        metrics = trainer.train_step()
        with quiet_progress_bars():
            saved = trainer.save_checkpoint()
        optimiser_bytes = sum(t.numel() * t.element_size() for opt in (trainer.actor_opt, trainer.critic_opt)
                              if opt is not None for state in opt.state.values() for t in state.values()
                              if isinstance(t, torch.Tensor))
        trained = sum(p.numel() for p in trainer.actor_parameters)
        results.send({"mode": mode, "timings": metrics["timings"], "checkpoint": saved.size_bytes,
                   "optimiser": optimiser_bytes, "trained": trained, "bf16": trainer.bf16,
                   "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "losses": (metrics["pg_loss"], metrics["critic_loss"], metrics["kl"])})


def floor_seconds(stage: str, tokens: int, parameters: int, mode: str, args) -> float:
    """The least time of a stage at the CPU's matmul peak (forward-equivalent passes x 2 FLOP per parameter)."""
    lora = MODES[mode][0] > 0
    recompute = 1  # gradient checkpointing is on
    passes = {"values": 1, "logprobs": 2,  # old and reference log-probs
              "critic_update": 1 + (1 if lora else 2) + recompute,
              "actor_update": 1 + (1 if lora else 2) + recompute}[stage]
    peak = args.peak_bf16 if MODES[mode][1] == "bf16" else args.peak_fp32
    return passes * tokens * 2 * parameters / (peak * 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=2)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--micro-batch-tokens", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (a smoke run of the bench)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--peak-fp32", type=float, default=135.0, help="matmul GFLOP/s in fp32")
    parser.add_argument("--peak-bf16", type=float, default=350.0, help="matmul GFLOP/s in bf16")
    args = parser.parse_args()
    for name in ("envs", "max_turns", "max_new_tokens", "micro_batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (expected some of {', '.join(MODES)})")

    rollout, play_seconds, parameters = play(args)
    batch = rollout.batch
    tokens = int(batch.attention_mask.sum())
    padded = batch.attention_mask.numel()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"rollouts: {batch.num_rows} rows, {tokens} real tokens ({padded} padded), played in {play_seconds:.0f} s; "
          f"model {parameters / 1e6:.0f}M parameters; {args.threads} threads; parent peak RSS "
          f"{baseline / 1e9:.2f} GB", file=sys.stderr)
    stages = ("values", "logprobs", "critic_update", "actor_update")
    print(f"| mode | {' | '.join(stages)} | update tokens/s (both updates) | peak RSS | checkpoint | optimiser state "
          "| trained | pg / critic loss |")
    print("|---" * (len(stages) + 7) + "|", flush=True)
    context = multiprocessing.get_context("spawn")  # not fork: see the module's docstring
    for mode in modes:
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=measure, args=(args, mode, portable(rollout), writer))
        child.start()
        # Only the child holds the writing end now, so a child that dies before it sends ends
        # recv() with EOFError instead of leaving the parent waiting.
        writer.close()
        try:
            r = reader.recv()
        except EOFError:
            child.join()
            sys.exit(f"bench_step: mode {mode} failed (its process exited with code {child.exitcode})")
        child.join()
        t = r["timings"]
        cells = [f"{t.get(s, 0.0):.1f} s (>= {floor_seconds(s, padded, parameters, mode, args):.1f})"
                 for s in stages]
        update = t.get("critic_update", 0.0) + t["actor_update"]
        print(f"| {mode} | {' | '.join(cells)} | {2 * padded / max(update, 1e-9):.0f} "
              f"| {r['peak_rss'] / 1e9:.2f} GB | {r['checkpoint'] / 1e6:.1f} MB | {r['optimiser'] / 1e6:.1f} MB "
              f"| {r['trained'] / 1e6:.2f}M | {r['losses'][0]:.4f} / {r['losses'][1]:.4f} |", flush=True)

if __name__ == "__main__":
    main()
