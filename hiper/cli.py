"""The `hiper` command line.

    hiper info                 build and device facts
    hiper hae [--trajectories 128]
                               Hierarchical Advantage Estimation on the embedded synthetic
                               rollout batch: checks the compiled core against the
                               pure-PyTorch twin, then reports what HAE produced and how long
                               each implementation took.
"""
from __future__ import annotations

import argparse
import sys
import time

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
