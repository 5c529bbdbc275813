"""HAE benchmark: the compiled core vs the pure-PyTorch twin vs plain-Python loops.

For each batch size it times, side by side in one process:
  (a) the per-turn core alone: layout, reward shaping, HAE recurrences, normalisation;
  (b) the full estimator with its (N, L) token outputs (the verl drop-in), with fresh
      outputs and with reused output buffers;
and two floors measured in the same run: allocating and writing fresh output tensors of
the same shapes, and writing the same bytes into reused buffers.

    python benchmarks/bench_hae.py                  # 128 and 1024 trajectories
    python benchmarks/bench_hae.py --trajectories 128 --skip-loops
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import hiper
from hiper.integrations.verl import compute_hae_advantage
from hiper.reference import hae_loops, hae_torch
from hiper.synthetic import synthetic_rollout_batch
from timing import median_ms  # benchmarks/timing.py

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-loops", action="store_true", help="skip the slow plain-Python baseline")
    args = parser.parse_args()
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
