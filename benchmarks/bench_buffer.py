"""Trajectory-buffer benchmark: the C++ buffer vs lists and `pad_sequence`.

A rollout of B environments for up to T turns, appended turn by turn as the rollout engine
does (one call per turn with the running environments), then packed into the padded tensors
a trainer needs. Timed side by side in one process after checking both give the same tensors.

    python benchmarks/bench_buffer.py [--envs 128] [--turns 50]
    python benchmarks/bench_buffer.py --device cuda   # token rows on the GPU, as generate() returns them

On a GPU the appended token rows and masks live on the device; the buffer keeps them there
and packs with one gather kernel (TrajectoryBuffer(device="cuda")), against the same lists
and pad_sequence on the device tensors; times from CUDA events.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from hiper.buffer import TrajectoryBuffer
from hiper.reference.buffer_lists import ListTrajectoryBuffer
from timing import cuda_median_ms, median_ms  # benchmarks/timing.py

TOKEN_KEYS = ("prompt_tokens", "prompt_mask", "response_tokens", "response_mask")


def make_calls(num_envs, max_turns, prompt_len, response_len, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max_turns // 4, max_turns + 1, size=num_envs)
    calls = []
    for turn in range(lengths.max()):
        envs = np.flatnonzero(lengths > turn)
        k = len(envs)
        p = rng.integers(prompt_len // 2, prompt_len + 1, size=k)
        r = rng.integers(8, response_len + 1, size=k)
        calls.append(dict(
            env_ids=torch.from_numpy(envs),
            prompt_tokens=torch.from_numpy(rng.integers(1, 49152, size=(k, prompt_len))),
            prompt_mask=torch.from_numpy(np.arange(prompt_len)[None] >= (prompt_len - p)[:, None]),
            response_tokens=torch.from_numpy(rng.integers(1, 49152, size=(k, response_len))),
            response_mask=torch.from_numpy(np.arange(response_len)[None] < r[:, None]),
            rewards=torch.zeros(k), dones=torch.from_numpy(lengths[envs] == turn + 1),
            valid=torch.ones(k, dtype=torch.bool), is_new_subgoal=torch.from_numpy(rng.random(k) < 0.5)))
    return calls




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--prompt-length", type=int, default=800)
    parser.add_argument("--response-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: token rows on the GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    calls = make_calls(args.envs, args.turns, args.prompt_length, args.response_length)
    if device.type == "cuda":
        calls = [{k: v.to(device) if k in TOKEN_KEYS else v for k, v in call.items()} for call in calls]
    timer = cuda_median_ms if device.type == "cuda" else median_ms
    ours = TrajectoryBuffer(args.envs, device=device)

    def run_ours():
        ours.clear()
        for call in calls:
            ours.append(**call)
        return ours.pack()

    def run_lists():
        twin = ListTrajectoryBuffer(args.envs)
        for call in calls:
            twin.append(**call)
        return twin.pack()

    got, want = run_ours(), run_lists()
    same = all(torch.equal(getattr(got, k).cpu(), v.cpu()) for k, v in want.items())
    t_ours, t_lists = timer(run_ours, args.repeats), timer(run_lists, max(1, args.repeats // 2))
    print(f"[{device}] {args.envs} environments, up to {args.turns} turns: {got.num_rows} turns, "
          f"prompts ≤ {args.prompt_length} "
          f"and responses ≤ {args.response_length} tokens; identical tensors: {same}\n")
    print(f"{'append every turn + pack':40s} {'ms':>9s}")
    print(f"{'C++ TrajectoryBuffer':40s} {t_ours:9.1f}")
    print(f"{'lists + pad_sequence':40s} {t_lists:9.1f}   ({t_lists / t_ours:.1f}x slower)")
    if not same:
        raise SystemExit("error: the buffer and its twin disagree")


if __name__ == "__main__":
    main()
