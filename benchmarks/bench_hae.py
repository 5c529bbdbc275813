"""HAE benchmark: the compiled core vs PyTorch vs plain-Python loops.

For each batch size it times, side by side in one process:
  (a) the per-turn core alone: layout, reward shaping, HAE recurrences, normalisation;
  (b) the full estimator with its (N, L) token outputs (the verl drop-in), with fresh
      outputs and with reused output buffers;
and two floors measured in the same run: allocating and writing fresh output tensors of
the same shapes, and writing the same bytes into reused buffers.

Two PyTorch implementations of (b) stand beside the core: hiper.reference.hae_torch_fast,
the whole estimator written for speed in eager PyTorch (the baseline the core is measured
against), and hiper.reference.hae_torch, the op-by-op twin that serves as a second oracle.
The (b) rows and the floors are timed interleaved (each call in turn, every round), and
each gets its best and its median over the rounds: the best is the cost with the least
interference from the rest of the machine, the median what a busy machine gives.

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
from hiper.reference import hae_loops, hae_torch, hae_torch_fast
from hiper.synthetic import synthetic_rollout_batch
from timing import cuda_median_ms, interleaved_ms, median_ms  # benchmarks/timing.py

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


def check_agreement(b, masks):
    """The core, the fast PyTorch baseline and the twin agree on this batch before any timing."""
    compute_hae_advantage(b, CONFIG, **masks)
    for name, impl in (("fast", hae_torch_fast), ("twin", hae_torch)):
        other = impl.compute_hae_advantage(b.batch, b.non_tensor_batch, CONFIG, **masks)
        for k in FLOAT_KEYS:
            torch.testing.assert_close(b.batch[k], other[k], rtol=0, atol=1e-4, msg=f"{name}: {k}")
        for k in MASK_KEYS:
            assert torch.equal(b.batch[k], other[k]), f"{name}: {k}"


def drop_in_stages(b, masks, d, held) -> dict:
    """The drop-in's main stages called one by one (hiper.hae_pipeline runs them in this order),
    to see where its time goes beyond the output floor: the row scan (span flags, value read
    positions and values), the keep-consistency check, the per-turn core and the token outputs."""
    batch = b.batch
    resp = batch["response_mask"]
    value_masks = {k: batch[k] for k in ("value_mask_low", "value_mask_high", "value_mask_term")}
    layout = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    turns = core_per_turn(d)
    names = ("advantages", "advantages_low", "advantages_high", "advantages_term", "returns_low", "returns_high",
             "returns_term", "lo_mask", "hi_mask", "term_mask")
    return {
        "  stage: row scan": lambda: hiper.row_scan(resp, **masks, **value_masks, values_low=batch["value_low"],
                                                    values_high=batch["value_high"], values_term=batch["value_term"]),
        "  stage: keep-consistency check":
            lambda: hiper.subgoal_changed(layout, batch["responses"], masks["subgoal_mask"], resp),
        "  stage: per-turn core": lambda: core_per_turn(d),
        "  stage: token outputs, fresh": lambda: held.__setitem__("tokens", hiper.hae_token_outputs(
            turns, resp, **masks, **value_masks, outputs=names)),
    }


def bench(num_traj: int, repeats: int, skip_loops: bool) -> list[tuple[str, float, float]]:
    """Rows of (name, best ms, median ms); the first three rows are sizes (value, value)."""
    b = synthetic_rollout_batch(num_traj, seed=num_traj)
    n, length = b.batch["response_mask"].shape
    d = per_turn_inputs(b)
    dt = {k: torch.from_numpy(np.asarray(v)) for k, v in d.items()}
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    np_batch = {k: v.numpy() for k, v in b.batch.items()}
    np_masks = {k: v.numpy() for k, v in masks.items()}
    bufs = make_buffers((n, length))
    fast_bufs = make_buffers((n, length))
    twin_bufs = {k: v for k, v in make_buffers((n, length)).items() if k in FLOAT_KEYS}
    check_agreement(b, masks)

    mb = n * length * (len(FLOAT_KEYS) * 4 + len(MASK_KEYS)) / 2**20
    rows = [("turns (N)", n, n), ("tokens per row (L)", length, length), ("output MB", mb, mb)]
    for name, fn in (("(a) per-turn core: C++", lambda: core_per_turn(d)),
                     ("(a) per-turn core: PyTorch twin", lambda: twin_per_turn(dt))):
        rows.append((name, *interleaved_ms({name: fn}, repeats)[name]))
    if not skip_loops:
        ms = median_ms(lambda: loops_per_turn(d), max(1, repeats // 10), 0)
        rows.append(("(a) per-turn core: Python loops", ms, ms))

    # Each call's outputs replace the previous call's (as a trainer's step replaces the last
    # step's), so the fresh rows allocate while the last outputs are still alive.
    held: dict = {}
    batch, meta = b.batch, b.non_tensor_batch
    timed = {
        "floor: allocate + write outputs": lambda: fresh_floor((n, length), held),
        "floor: write reused buffers": lambda: reused_floor(bufs),
        "(b) full: C++, fresh outputs": lambda: compute_hae_advantage(b, CONFIG, **masks),
        "(b) full: C++, reused buffers": lambda: compute_hae_advantage(b, CONFIG, **masks, out=bufs),
        "(b) full: PyTorch fast, fresh outputs":
            lambda: held.__setitem__("fast", hae_torch_fast.compute_hae_advantage(batch, meta, CONFIG, **masks)),
        "(b) full: PyTorch fast, reused buffers":
            lambda: hae_torch_fast.compute_hae_advantage(batch, meta, CONFIG, **masks, out=fast_bufs),
        "(b) full: PyTorch twin, fresh outputs":
            lambda: held.__setitem__("twin", hae_torch.compute_hae_advantage(batch, meta, CONFIG, **masks)),
        "(b) full: PyTorch twin, reused buffers":
            lambda: hae_torch.compute_hae_advantage(batch, meta, CONFIG, **masks, out=twin_bufs),
    }
    timed.update(drop_in_stages(b, masks, d, held))
    rows += [(name, best, median) for name, (best, median) in interleaved_ms(timed, repeats).items()]
    if not skip_loops:
        def loops_full():
            return hae_loops.compute_hae_advantage(np_batch, b.non_tensor_batch, CONFIG, **np_masks)

        ms = median_ms(loops_full, max(1, repeats // 10), 0)
        rows.append(("(b) full: Python loops", ms, ms))
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
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and hiper's pool (default: torch's count). On a machine whose "
                             "cores are busy, 1 keeps torch's OpenMP barriers from waiting on preempted threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        hiper.set_num_threads(args.threads)
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
    print(f"hiper {hiper.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"({hiper.get_num_threads()} for hiper); wall time in ms, best and median of {args.repeats} "
          "interleaved rounds")
    for num_traj in args.trajectories:
        rows = {name: (best, median) for name, best, median in bench(num_traj, args.repeats, args.skip_loops)}
        (n, _), (length, _), (mb, _) = rows.pop("turns (N)"), rows.pop("tokens per row (L)"), rows.pop("output MB")
        print(f"\n{num_traj} trajectories x <= 50 turns: {n} turns x {length} tokens, {mb:.0f} MB of outputs")
        print(f"{'':40s} {'best':>8s} {'median':>8s}  ratio (best; median)")
        for name, (best, median) in rows.items():
            if name.startswith("(a)"):
                base = rows["(a) per-turn core: C++"]
                note = f"{best / base[0]:6.1f}x C++"
            elif name.startswith("  stage"):
                base = rows["(b) full: C++, fresh outputs"]
                note = f"{best / base[0]:5.0%}; {median / base[1]:5.0%} of the full C++ (fresh)"
            else:
                reused = "reused" in name
                base = rows["floor: write reused buffers" if reused else "floor: allocate + write outputs"]
                note = f"{best / base[0]:5.2f}x; {median / base[1]:5.2f}x {'reused' if reused else 'fresh'} floor"
                if "C++" in name:
                    fast = rows[name.replace("C++", "PyTorch fast")]
                    note += f"   {fast[0] / best:4.2f}x; {fast[1] / median:4.2f}x faster than PyTorch fast"
            print(f"{name:40s} {best:8.3f} {median:8.3f}  {note}")


if __name__ == "__main__":
    main()
