"""HAE benchmark: the compiled core vs the pure-PyTorch twin vs plain-Python loops.

For each batch size it times, side by side in one process:
  (a) the per-turn core alone: layout, reward shaping, HAE recurrences, normalisation;
  (b) the full estimator with its (N, L) token outputs (the verl drop-in), with fresh
      outputs and with reused output buffers;
and two floors measured in the same run: allocating and writing fresh output tensors of
the same shapes, and writing the same bytes into reused buffers.

    python benchmarks/bench_hae.py                  # 128 and 1024 trajectories
    python benchmarks/bench_hae.py --trajectories 128 --skip-loops
    python benchmarks/bench_hae.py --device cuda    # the CUDA kernels vs the twin on the GPU

On a GPU (--device cuda) the same estimator runs on device tensors, against the PyTorch
twin on the same GPU, and the token-level writes are set against a device-to-device copy
of the same bytes (see bench_cuda).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import hiper
from hiper.integrations.verl import compute_hae_advantage
from hiper.reference import hae_loops, hae_torch
from hiper.synthetic import synthetic_rollout_batch
from timing import cuda_median_ms, median_ms  # benchmarks/timing.py

FLOAT_KEYS = ["advantages", "advantages_low", "advantages_high", "advantages_term", "returns_low", "returns_high",
              "returns_term"]
MASK_KEYS = ["hae_lo_mask", "hae_hi_mask", "hae_term_mask"]
CONFIG = hiper.HAEConfig(gamma=1.0, lam_turn=1.0, lam_seg=0.95, norm_adv=True, bootstrap_truncated=True,
                         keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                         keep_consistency_penalty=-0.3)




def per_turn_inputs(b):
    """Per-turn arrays as a trainer has them once values are read (integer trajectory ids)."""
    meta = b.non_tensor_batch
    rng = np.random.default_rng(0)
    n = b.num_rows
    traj = np.unique(meta["traj_uid"], return_inverse=True)[1].astype(np.int64)
    return dict(traj=traj, turn=meta["turn_idx"].astype(np.int64), switch=meta["switch"], done=meta["dones"],
                rewards=meta["rewards"], valid=meta["is_action_valid"], changed=rng.random(n) < 0.1,
                v_low=rng.normal(size=n).astype(np.float32), v_high=rng.normal(size=n).astype(np.float32),
                v_term=rng.normal(size=n).astype(np.float32))


def core_per_turn(d):
    return hiper.hae(d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"],
                     is_new_subgoal=d["switch"], is_action_valid=d["valid"], subgoal_changed=d["changed"],
                     config=CONFIG)


def twin_per_turn(dt):
    lay = hae_torch.build_layout(dt["traj"], dt["turn"], dt["switch"])
    r = hae_torch.shape_rewards(lay, dt["rewards"], dt["switch"], dt["valid"], dt["changed"], CONFIG)
    t = hae_torch.hae_turns(lay, r.float().double(), dt["done"], dt["v_low"], dt["v_high"], dt["v_term"], CONFIG)
    for key, inc in (("adv_low", None), ("adv_high", t["is_boundary"]), ("adv_term", None)):
        include = torch.ones_like(t["is_boundary"]) if inc is None else inc
        t[key] = hae_torch.normalize(t[key].float(), include)
    return t


def loops_per_turn(d):
    traj = list(d["traj"])
    r = hae_loops.shape_rewards(traj, d["turn"], d["rewards"], d["switch"], is_action_valid=d["valid"],
                                subgoal_changed=d["changed"], keep_penalty=-0.3, keep_penalty_mode="normalized",
                                invalid_action_penalty_coef=0.1, keep_consistency_penalty=-0.3)
    t = hae_loops.hae_turns(traj, d["turn"], d["switch"], r, d["done"], d["v_low"], d["v_high"], d["v_term"],
                            gamma=1.0, lam_turn=1.0, lam_seg=0.95, bootstrap_truncated=True)
    for key, inc in (("adv_low", None), ("adv_high", t["is_boundary"]), ("adv_term", None)):
        t[key] = hae_loops.normalize(t[key], inc)
    return t


def make_buffers(shape):
    bufs = {k: torch.empty(shape, dtype=torch.float32) for k in FLOAT_KEYS}
    bufs.update({k: torch.empty(shape, dtype=torch.bool) for k in MASK_KEYS})
    return bufs


def fresh_floor(shape, holder: dict):
    """Allocate the drop-in's ten outputs and write every byte once. The new tensors replace
    the previous call's in `holder`, as the estimator's outputs replace the last step's."""
    new = {k: torch.empty(shape, dtype=torch.float32).fill_(1.0) for k in FLOAT_KEYS}
    new.update({k: torch.empty(shape, dtype=torch.bool).fill_(True) for k in MASK_KEYS})
    holder.update(new)


def reused_floor(bufs):
    for buf in bufs.values():
        buf.fill_(1)


def bench(num_traj: int, repeats: int, skip_loops: bool) -> list[tuple[str, float]]:
    b = synthetic_rollout_batch(num_traj, seed=num_traj)
    n, length = b.batch["response_mask"].shape
    d = per_turn_inputs(b)
    dt = {k: torch.from_numpy(np.asarray(v)) for k, v in d.items()}
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    np_batch = {k: v.numpy() for k, v in b.batch.items()}
    np_masks = {k: v.numpy() for k, v in masks.items()}
    bufs = make_buffers((n, length))
    floor_holder: dict = {}
    twin_bufs = {k: v for k, v in make_buffers((n, length)).items() if k in FLOAT_KEYS}

    # Agreement before timing: the core and the twin against each other on this batch.
    compute_hae_advantage(b, CONFIG, **masks)
    twin = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks)
    for k in FLOAT_KEYS:
        torch.testing.assert_close(b.batch[k], twin[k], rtol=0, atol=1e-4, msg=k)
    for k in MASK_KEYS:
        assert torch.equal(b.batch[k], twin[k]), k

    rows = [("turns (N)", float(n)), ("tokens per row (L)", float(length)),
            ("output MB", 10 * n * length * (len(FLOAT_KEYS) * 4 + len(MASK_KEYS)) / 10 / 2**20)]
    rows.append(("(a) per-turn core: C++", median_ms(lambda: core_per_turn(d), repeats)))
    rows.append(("(a) per-turn core: PyTorch twin", median_ms(lambda: twin_per_turn(dt), repeats)))
    if not skip_loops:
        rows.append(("(a) per-turn core: Python loops", median_ms(lambda: loops_per_turn(d), max(1, repeats // 10), 0)))
    rows.append(("floor: allocate + write outputs", median_ms(lambda: fresh_floor((n, length), floor_holder), repeats)))
    rows.append(("floor: write reused buffers", median_ms(lambda: reused_floor(bufs), repeats)))
    rows.append(("(b) full: C++, fresh outputs", median_ms(lambda: compute_hae_advantage(b, CONFIG, **masks), repeats)))
    rows.append(("(b) full: C++, reused buffers",
                 median_ms(lambda: compute_hae_advantage(b, CONFIG, **masks, out=bufs), repeats)))
    rows.append(("(b) full: PyTorch twin, fresh outputs",
                 median_ms(lambda: hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks),
                        repeats)))
    rows.append(("(b) full: PyTorch twin, reused buffers",
                 median_ms(lambda: hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks,
                                                                out=twin_bufs), repeats)))
    if not skip_loops:
        def loops_full():
            return hae_loops.compute_hae_advantage(np_batch, b.non_tensor_batch, CONFIG, **np_masks)

        rows.append(("(b) full: Python loops", median_ms(loops_full, max(1, repeats // 10), 0)))
    return rows


def on_device(b, device):
    """The batch with its tensors on `device` (per-turn metadata stays numpy, as in verl)."""
    return type(b)(batch={k: v.to(device) for k, v in b.batch.items()}, non_tensor_batch=b.non_tensor_batch,
                   action_mask=b.action_mask.to(device), subgoal_mask=b.subgoal_mask.to(device),
                   switch_mask=b.switch_mask.to(device))


def bench_cuda(num_traj: int, repeats: int, device: str = "cuda", timer=cuda_median_ms) -> list[tuple[str, float, str]]:
    """Rows of (name, ms, note) on the GPU: the per-turn core, the token outputs alone with
    their bandwidth against a device-to-device copy of the same bytes, and the whole
    estimator, each against the PyTorch twin on the same GPU. (device="cpu" with
    timer=median_ms runs the same table on the host, to check the script without a GPU.)"""
    dev = torch.device(device)
    b = on_device(synthetic_rollout_batch(num_traj, seed=num_traj), dev)
    n, length = b.batch["response_mask"].shape
    d = {k: torch.from_numpy(np.asarray(v)).to(dev) for k, v in per_turn_inputs(b).items()}
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    value_masks = {k: b.batch[k] for k in ("value_mask_low", "value_mask_high", "value_mask_term")}
    bufs = {k: v.to(dev) for k, v in make_buffers((n, length)).items()}
    twin_bufs = {k: v for k, v in bufs.items() if k in FLOAT_KEYS}
    token_bufs = {name: bufs[key] for key, name in zip(FLOAT_KEYS + MASK_KEYS, FLOAT_KEYS + ["lo_mask", "hi_mask",
                                                                                             "term_mask"])}

    # Agreement before timing, as on the CPU.
    compute_hae_advantage(b, CONFIG, **masks)
    twin = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks)
    for k in FLOAT_KEYS:
        torch.testing.assert_close(b.batch[k], twin[k], rtol=0, atol=1e-4, msg=k)
    for k in MASK_KEYS:
        assert torch.equal(b.batch[k], twin[k]), k

    turns = core_per_turn(d)
    written = n * length * (4 * len(FLOAT_KEYS) + len(MASK_KEYS))  # the drop-in's ten outputs
    read = n * length * (1 + len(masks) + len(value_masks))        # the masks the broadcast reads
    src = torch.empty(written, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)

    def tokens():
        hiper.hae_token_outputs(turns, b.batch["response_mask"], **masks, **value_masks, outputs=(), out=token_bufs)

    t = {
        "core": timer(lambda: core_per_turn(d), repeats),
        "core_async": timer(lambda: hiper.hae(d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"],
                                                       d["v_high"], d["v_term"], is_new_subgoal=d["switch"],
                                                       is_action_valid=d["valid"], subgoal_changed=d["changed"],
                                                       config=CONFIG, validate=False), repeats),
        "core_twin": timer(lambda: twin_per_turn(d), repeats),
        "tokens": timer(tokens, repeats),
        "copy": timer(lambda: dst.copy_(src), repeats),
        "fill": timer(lambda: reused_floor(bufs), repeats),
        "full": timer(lambda: compute_hae_advantage(b, CONFIG, **masks), repeats),
        "full_reused": timer(lambda: compute_hae_advantage(b, CONFIG, **masks, out=bufs), repeats),
        "twin": timer(lambda: hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks),
                               repeats),
        "twin_reused": timer(lambda: hae_torch.compute_hae_advantage(
            b.batch, b.non_tensor_batch, CONFIG, **masks, out=twin_bufs), repeats),
    }
    gbs = lambda nbytes, ms: nbytes / ms / 1e6  # noqa: E731 - GB/s
    copy_bw = gbs(2 * written, t["copy"])  # a copy reads and writes every byte
    token_bw = gbs(written + read, t["tokens"])
    return [
        ("turns (N)", n, ""), ("tokens per row (L)", length, ""), ("output MB", written / 2**20, ""),
        ("(a) per-turn core: CUDA (turns validated)", t["core"],
         f"{t['core_twin'] / t['core']:6.1f}x faster than twin"),
        ("(a) per-turn core: CUDA, validate=False", t["core_async"],
         f"{t['core_twin'] / t['core_async']:6.1f}x faster than twin"),
        ("(a) per-turn core: PyTorch twin", t["core_twin"], ""),
        ("token outputs alone, reused buffers", t["tokens"],
         f"{token_bw:6.0f} GB/s read+written = {token_bw / copy_bw:4.0%} of copy; "
         f"writes at {t['copy'] / t['tokens']:4.0%} of the copy's speed"),
        ("floor: device copy of the output bytes", t["copy"], f"{copy_bw:6.0f} GB/s read+written"),
        ("floor: write reused buffers (fill_)", t["fill"], f"{gbs(written, t['fill']):6.0f} GB/s written"),
        ("(b) full: CUDA drop-in, fresh outputs", t["full"], f"{t['twin'] / t['full']:6.1f}x faster than twin"),
        ("(b) full: CUDA drop-in, reused buffers", t["full_reused"],
         f"{t['twin_reused'] / t['full_reused']:6.1f}x faster than twin"),
        ("(b) full: PyTorch twin, fresh outputs", t["twin"], ""),
        ("(b) full: PyTorch twin, reused buffers", t["twin_reused"], ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-loops", action="store_true", help="skip the slow plain-Python baseline")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        if not (hiper.has_cuda() and torch.cuda.is_available()):
            raise SystemExit("--device cuda: this build of hiper or this torch has no usable CUDA device")
        print(f"hiper {hiper.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}; "
              "median time in ms (CUDA events)")
        for num_traj in args.trajectories:
            rows = bench_cuda(num_traj, args.repeats)
            n, length, mb = (value for _, value, _ in rows[:3])
            print(f"\n{num_traj} trajectories x <= 50 turns: {n} turns x {length} tokens, {mb:.0f} MB of outputs")
            for name, ms, note in rows[3:]:
                print(f"{name:44s} {ms:9.3f}  {note}")
        return
    print(f"hiper {hiper.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          "median wall time in ms")
    for num_traj in args.trajectories:
        rows = dict(bench(num_traj, args.repeats, args.skip_loops))
        print(f"\n{num_traj} trajectories x <= 50 turns: {int(rows['turns (N)'])} turns x "
              f"{int(rows['tokens per row (L)'])} tokens, {rows['output MB']:.0f} MB of outputs")
        print(f"{'':40s} {'ms':>9s}  ratio")
        ref = {"(a)": rows["(a) per-turn core: C++"], "floor: a": rows["floor: allocate + write outputs"],
               "floor: w": rows["floor: write reused buffers"]}
        for name, ms in rows.items():
            if name in ("turns (N)", "tokens per row (L)", "output MB"):
                continue
            if name.startswith("(a)"):
                note = f"{ms / ref['(a)']:6.1f}x C++"
            elif "reused" in name:
                note = f"{ms / ref['floor: w']:6.2f}x reused floor"
            else:
                note = f"{ms / ref['floor: a']:6.2f}x fresh floor"
            print(f"{name:40s} {ms:9.3f}  {note}")


if __name__ == "__main__":
    main()
