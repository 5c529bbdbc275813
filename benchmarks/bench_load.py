"""The compiled ops on an idle machine and on a busy one.

Each op is timed with the machine as it is, then again while `--background-load N` CPU-bound
processes (busy loops, standing in for the environment workers and tokenizers that share a
trainer's machine) compete for the cores. A parallel loop that waits for threads the
scheduler does not run collapses under such load; hiper's loops fall back to the calling
thread instead (csrc/cpu/parallel.h), so their loaded time should stay near the idle one.

    python benchmarks/bench_load.py [--background-load 2] [--threads 1 2] [--repeats 20]
    python benchmarks/bench_load.py --grain-sweep [--threads 2]

--threads: hiper thread counts to time (hiper.set_num_threads); default: the default count.
--grain-sweep: how the parallel grain (csrc/cpu/parallel.h) was chosen. With the grain set
to 0, so that every loop takes the parallel path, times token-level GAE and the span masker
on 2^11 .. 2^20 (N, L) elements with 1 thread and with --threads threads; the grain belongs
where the second column starts to win.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from transformers import AutoTokenizer

import hiper
from bench_hae import CONFIG, make_buffers, per_turn_inputs  # benchmarks/bench_hae.py
from bench_masks import OUTPUTS, TOKENIZER, make_batch  # benchmarks/bench_masks.py
from hiper.integrations.verl import compute_hae_advantage
from hiper.synthetic import synthetic_rollout_batch
from timing import background_load, median_ms  # benchmarks/timing.py


def make_cases(responses: int, trajectories: int) -> dict:
    """name -> zero-argument call, on the batches of bench_masks.py and bench_hae.py."""
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    ids, mask, boundary, _ = make_batch(tok, responses, 512)
    masker = hiper.SpanMasker(tok)

    b = synthetic_rollout_batch(trajectories, seed=trajectories)
    n, length = b.batch["response_mask"].shape
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    bufs = make_buffers((n, length))
    d = per_turn_inputs(b)
    resp = b.batch["response_mask"].bool()
    values = b.batch["value_low"].float()
    token_rewards = hiper.last_token_scores(torch.as_tensor(d["rewards"].astype(np.float32)), resp)
    return {
        f"span masks ({ids.shape[0]} x {ids.shape[1]})":
            lambda: masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=OUTPUTS),
        f"HAE drop-in, reused outputs ({n} x {length})":
            lambda: compute_hae_advantage(b, CONFIG, **masks, out=bufs),
        f"HAE per-turn core ({n} turns)":
            lambda: hiper.hae(d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"],
                              is_new_subgoal=d["switch"], is_action_valid=d["valid"], config=CONFIG),
        f"token-level GAE ({n} x {length})": lambda: hiper.token_gae(token_rewards, values, resp),
        f"masked whitening ({n} x {length})": lambda: hiper.masked_whiten(values, resp),
    }


def grain_sweep(threads: int, repeats: int) -> None:
    from hiper import _C

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    length = 128
    all_ids, all_mask, _, _ = make_batch(tok, 2**20 // length, length)
    masker = hiper.SpanMasker(tok)
    rng = np.random.default_rng(0)
    print(f"grain sweep: every loop parallel (grain 0); median us of {repeats}; 1 thread vs {threads}")
    print(f"{'elements':>10}{'token_gae 1':>14}{f'token_gae {threads}':>14}{'masks 1':>12}{f'masks {threads}':>12}")
    _C.set_parallel_grain(0)
    try:
        for e in range(11, 21):
            n = 2**e // length
            x = rng.normal(size=(n, length)).astype(np.float32)
            m = rng.random((n, length)) < 0.7
            ids, mask = all_ids[:n], all_mask[:n]
            row = []
            for fn in (lambda: hiper.token_gae(x, x, m), lambda: masker(ids, mask, include_tags=True)):
                for count in (1, threads):
                    hiper.set_num_threads(count)
                    row.append(median_ms(fn, repeats) * 1e3)
            print(f"{'2^' + str(e):>10}{row[0]:>14.1f}{row[1]:>14.1f}{row[2]:>12.1f}{row[3]:>12.1f}")
    finally:
        _C.set_parallel_grain(None)
        hiper.set_num_threads(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background-load", type=int, default=2, metavar="N",
                        help="CPU-bound processes running during the loaded runs (default 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=None)
    parser.add_argument("--responses", type=int, default=3500)
    parser.add_argument("--trajectories", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--grain-sweep", action="store_true")
    args = parser.parse_args()
    if args.background_load < 0:
        raise SystemExit("--background-load: expected a number of processes >= 0")
    if args.grain_sweep:
        grain_sweep(max(args.threads or [2]), max(args.repeats, 50))
        return

    cases = make_cases(args.responses, args.trajectories)
    counts = args.threads or [hiper.get_num_threads()]
    times = {}
    for threads in counts:
        hiper.set_num_threads(threads)
        for name, fn in cases.items():
            times[name, threads, "idle"] = median_ms(fn, args.repeats)
        with background_load(args.background_load):
            for name, fn in cases.items():
                times[name, threads, "loaded"] = median_ms(fn, args.repeats)
    hiper.set_num_threads(None)

    print(f"hiper {hiper.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs; median wall time in ms; "
          f"loaded = with {args.background_load} busy processes running")
    print(f"{'op':<46}{'threads':>8}{'idle':>10}{'loaded':>10}{'loaded/idle':>13}")
    for name in cases:
        for threads in counts:
            idle, loaded = times[name, threads, "idle"], times[name, threads, "loaded"]
            print(f"{name:<46}{threads:>8}{idle:>10.3f}{loaded:>10.3f}{loaded / idle:>12.1f}x")


if __name__ == "__main__":
    main()
