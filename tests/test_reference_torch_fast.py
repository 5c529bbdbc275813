"""The eager-PyTorch baseline of the whole estimator (hiper.reference.hae_torch_fast) against
the compiled drop-in and, on small batches, the float64 loop oracle: the benchmark compares
two implementations of one function."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hiper
from hiper.integrations.verl import compute_hae_advantage
from hiper.reference import hae_loops, hae_torch_fast
from hiper.synthetic import synthetic_rollout_batch

from batches import make_batch
from numerics import assert_close
from test_dropin import KEYS, OPTION_GRID, option_config

BENCH_CONFIG = hiper.HAEConfig(gamma=1.0, lam_turn=1.0, lam_seg=0.95, norm_adv=True, bootstrap_truncated=True,
                               keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                               keep_consistency_penalty=-0.3)


def masks_of(b, given=True):
    return dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask) if given else {}


def core(b, cfg, **masks):
    """The drop-in's outputs, on a copy of the batch (the drop-in writes its keys into it)."""
    data = SimpleNamespace(batch=dict(b.batch), non_tensor_batch=dict(b.non_tensor_batch))
    compute_hae_advantage(data, cfg, **masks)
    return {k: data.batch[k] for k in KEYS}


def assert_same(got, expected, atol=1e-5):
    for key in KEYS:
        want = expected[key]
        want = want if isinstance(want, torch.Tensor) else torch.from_numpy(np.asarray(want))
        assert got[key].shape == want.shape, key
        if key.startswith("hae_"):
            assert got[key].dtype == torch.bool, key
            assert torch.equal(got[key], want.bool()), key
        else:
            assert got[key].dtype == torch.float32, key
            assert_close(got[key], want, atol=atol, rtol=1e-6, name=key)


@pytest.mark.parametrize("num_traj", [16, 128])
def test_matches_core_on_the_benchmark_batch(num_traj):
    b = synthetic_rollout_batch(num_traj, seed=num_traj)
    got = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, BENCH_CONFIG, **masks_of(b))
    assert_same(got, core(b, BENCH_CONFIG, **masks_of(b)))


@pytest.mark.parametrize("norm,boot,mode,hi_sw,hi_sub,term_sw", OPTION_GRID)
def test_matches_core_every_option(norm, boot, mode, hi_sw, hi_sub, term_sw):
    cfg = option_config(norm, boot, mode, hi_sw, hi_sub, term_sw)
    seed = OPTION_GRID.index((norm, boot, mode, hi_sw, hi_sub, term_sw))
    b = synthetic_rollout_batch(12, max_turns=12, length=48, mean_response=16, seed=seed, p_switch=0.3 + seed % 3 / 5)
    got = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, **masks_of(b))
    assert_same(got, core(b, cfg, **masks_of(b)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("requires_both", [True, False])
@pytest.mark.parametrize("gamma,lam_turn,lam_seg", [(1.0, 1.0, 0.95), (0.9, 0.7, 0.5), (0.0, 0.0, 0.0)])
def test_matches_core_and_oracle_on_irregular_batches(seed, requires_both, gamma, lam_turn, lam_seg):
    """Shuffled rows, turns not starting at 0, mid-trajectory dones, missing spans, stray mask
    bits past the response, value masks with 0-2 positions, repeated KEEP subgoals."""
    cfg = hiper.HAEConfig(gamma=gamma, lam_turn=lam_turn, lam_seg=lam_seg, norm_adv=seed % 2 == 0,
                          bootstrap_truncated=seed % 3 == 0, keep_penalty=-3.5, keep_penalty_mode="normalized",
                          invalid_action_penalty_coef=0.1, keep_consistency_penalty=-0.3,
                          keep_consistency_requires_both=requires_both)
    b = make_batch(100 + seed, num_traj=20, max_turns=15, length=32, string_uids=seed % 2 == 0)
    got = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, **masks_of(b))
    assert_same(got, core(b, cfg, **masks_of(b)))
    oracle = hae_loops.compute_hae_advantage(b.numpy_batch(), b.non_tensor_batch, cfg, b.action_mask.numpy(),
                                             b.subgoal_mask.numpy(), b.switch_mask.numpy())
    assert_same(got, oracle)


@pytest.mark.parametrize("case", ["all_keep", "all_switch", "single_turn", "all_done_mid", "none_done", "ordered",
                                  "no_masks", "two_heads", "one_head", "empty_spans"])
def test_matches_core_edge_cases(case):
    kw = dict(all_keep=dict(p_switch=0.0), all_switch=dict(p_switch=1.0), single_turn=dict(max_turns=1),
              all_done_mid=dict(p_mid_done=1.0), none_done=dict(p_done=0.0, p_mid_done=0.0),
              ordered=dict(shuffle=False, string_uids=False), two_heads=dict(with_term=False),
              one_head=dict(with_term=False), empty_spans=dict(p_missing_span=1.0)).get(case, {})
    b = make_batch(21, **kw)
    if case == "one_head":
        del b.batch["value_high"]
    if case == "empty_spans":
        b.batch["response_mask"][::3] = 0  # some empty responses: every read falls back to position 0
    for boot in (False, True):
        cfg = hiper.HAEConfig(gamma=0.95, lam_turn=0.9, lam_seg=0.9, norm_adv=True, bootstrap_truncated=boot,
                              keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                              keep_consistency_penalty=-0.3, keep_consistency_requires_both=case != "empty_spans")
        given = case != "no_masks"
        got = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, **masks_of(b, given))
        assert_same(got, core(b, cfg, **masks_of(b, given)))


@pytest.mark.parametrize("length", [21, 40])
def test_rows_read_as_words_and_as_bytes_agree(length):
    """Rows of a whole number of 8-byte words are reduced as int64 words, others byte by byte."""
    b = make_batch(5, num_traj=16, max_turns=8, length=length)
    got = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, BENCH_CONFIG, **masks_of(b))
    assert_same(got, core(b, BENCH_CONFIG, **masks_of(b)))
    rng = np.random.default_rng(length)
    mask = torch.from_numpy(rng.random((64, length)) < 0.05)
    mask[::5] = False
    has, pos = hae_torch_fast._first_true(mask)
    assert torch.equal(has, mask.any(dim=1))
    expected = mask.to(torch.uint8).argmax(dim=1)
    assert torch.equal(pos[has], expected[has])
    assert torch.equal(hae_torch_fast._any_row(mask), mask.any(dim=1))


def test_out_buffers_are_written_in_place():
    b = synthetic_rollout_batch(8, seed=1)
    fresh = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, BENCH_CONFIG, **masks_of(b))
    shape = b.batch["response_mask"].shape
    out = {k: torch.full(shape, 7.0) for k in KEYS if not k.startswith("hae_")}
    out.update({k: torch.ones(shape, dtype=torch.bool) for k in KEYS if k.startswith("hae_")})
    res = hae_torch_fast.compute_hae_advantage(b.batch, b.non_tensor_batch, BENCH_CONFIG, **masks_of(b), out=out)
    for key, buf in out.items():
        assert res[key] is buf, key
        assert torch.equal(buf, fresh[key]), key


def test_refuses_a_repeated_turn():
    b = make_batch(4, string_uids=False, shuffle=False)
    meta = dict(b.non_tensor_batch)
    meta["turn_idx"] = meta["turn_idx"].copy()
    meta["turn_idx"][1] = meta["turn_idx"][0]
    meta["traj_uid"] = np.zeros_like(meta["traj_uid"])
    with pytest.raises(ValueError, match="turn_idx"):
        hae_torch_fast.compute_hae_advantage(b.batch, meta, BENCH_CONFIG, **masks_of(b))


def test_reverse_scan_matches_loop():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 200)))
    coef = torch.from_numpy(rng.uniform(0, 1, (2, 200)) * (rng.random((2, 200)) > 0.1))
    coef[:, -1] = 0
    expected = np.zeros((2, 200))
    for row in range(2):
        acc = 0.0
        for p in range(199, -1, -1):
            acc = x[row, p].item() + coef[row, p].item() * acc
            expected[row, p] = acc
    got = hae_torch_fast.reverse_scan(x, coef, 200)
    assert_close(got, expected, atol=1e-12, rtol=1e-12, name="scan")
