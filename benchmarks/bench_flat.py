"""Flat-baseline benchmark: each compiled estimator against its pure-PyTorch twin.

A rollout batch of B trajectories of up to T turns, responses padded to L tokens (the
synthetic batch of `hiper hae`), groups of `--group-size` trajectories per task. Each
estimator is checked against its twin first, then timed side by side in one process.

    python benchmarks/bench_flat.py [--trajectories 128] [--max-turns 50] [--length 512]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import hiper
from hiper.reference import flat_torch, hae_torch
from hiper.synthetic import synthetic_rollout_batch
from timing import median_ms  # benchmarks/timing.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=128)
    parser.add_argument("--max-turns", type=int, default=50)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    b = synthetic_rollout_batch(args.trajectories, max_turns=args.max_turns, length=args.length, seed=0)
    nt = b.non_tensor_batch
    traj = torch.as_tensor(np.unique(nt["traj_uid"], return_inverse=True)[1].reshape(-1))
    turn = torch.as_tensor(nt["turn_idx"].astype(np.int64))
    rewards = torch.as_tensor(nt["rewards"].astype(np.float32))
    dones = torch.as_tensor(nt["dones"].astype(bool))
    resp = b.batch["response_mask"].bool()
    values = b.batch["value_low"].float()
    n, length = resp.shape
    groups = traj // args.group_size
    anchors = torch.as_tensor(np.random.default_rng(0).integers(0, 20, size=n))
    v_turn = values[:, 0].contiguous()
    token_rewards = hiper.last_token_scores(rewards, resp)

    layout = hiper.build_layout(traj, turn)
    tlay = hae_torch.build_layout(traj, turn, torch.zeros(n, dtype=torch.bool))
    dense_groups = groups  # already dense

    cases = {
        "turn_gae": (lambda: hiper.turn_gae(layout, rewards, dones, v_turn, gamma=0.99, lam=0.95).advantages,
                     lambda: flat_torch.turn_gae(tlay, rewards, dones, v_turn, 0.99, 0.95, False)[0]),
        "token_gae": (lambda: hiper.token_gae(token_rewards, values, resp, gamma=1.0, lam=1.0).advantages,
                      lambda: flat_torch.token_gae(token_rewards, values, resp, 1.0, 1.0)[0]),
        "masked_whiten": (lambda: hiper.masked_whiten(values, resp),
                          lambda: flat_torch.masked_whiten(values, resp)),
        "grpo": (lambda: hiper.group_advantages(rewards, groups, mode="grpo"),
                 lambda: flat_torch.group_advantages(rewards, dense_groups, "grpo")),
        "rloo": (lambda: hiper.group_advantages(rewards, groups, mode="rloo"),
                 lambda: flat_torch.group_advantages(rewards, dense_groups, "rloo")),
        "gigpo": (lambda: hiper.gigpo_advantages(layout, rewards, rewards, dones, groups, anchors),
                  lambda: flat_torch.gigpo_advantages(tlay, rewards, rewards, dones, dense_groups, anchors, 0.95, 1.0,
                                                      "mean_norm")),
    }
    print(f"{args.trajectories} trajectories, {n} turns, responses padded to {length}; "
          f"groups of {args.group_size}; medians of {args.repeats}")
    print(f"{'estimator':<14}{'C++ ms':>10}{'twin ms':>10}{'speed-up':>10}   max |diff|")
    for name, (ours, twin) in cases.items():
        diff = float((torch.as_tensor(ours()).double() - twin().double()).abs().max())
        t_ours = median_ms(ours, args.repeats)
        t_twin = median_ms(twin, args.repeats)
        print(f"{name:<14}{t_ours:>10.3f}{t_twin:>10.3f}{t_twin / t_ours:>9.1f}x   {diff:.2e}")


if __name__ == "__main__":
    main()
