"""The pure-PyTorch twin against the float64 loop oracle."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hiper
from hiper.reference import hae_loops, hae_torch

from batches import make_batch
from test_dropin import KEYS


@pytest.mark.parametrize("seed", range(8))
def test_twin_matches_oracle(seed):
    cfg = hiper.HAEConfig(gamma=[1.0, 0.95][seed % 2], lam_turn=0.9, lam_seg=0.8, norm_adv=seed % 3 != 0,
                          bootstrap_truncated=seed % 2 == 0, keep_penalty=-0.3,
                          keep_penalty_mode=["fixed", "normalized"][seed % 2], invalid_action_penalty_coef=0.1,
                          keep_consistency_penalty=-0.3, keep_consistency_requires_both=seed % 4 < 2,
                          assign_high_to_switch=seed % 5 == 0)
    b = make_batch(300 + seed, num_traj=16, max_turns=20, string_uids=seed % 2 == 0,
                   p_switch=[0.0, 0.3, 1.0][seed % 3])
    expected = hae_loops.compute_hae_advantage(b.numpy_batch(), b.non_tensor_batch, cfg, b.action_mask.numpy(),
                                               b.subgoal_mask.numpy(), b.switch_mask.numpy())
    got = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, b.action_mask, b.subgoal_mask,
                                          b.switch_mask)
    for key in KEYS:
        if key.startswith("hae_"):
            np.testing.assert_array_equal(got[key].numpy(), expected[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key].numpy(), expected[key], rtol=0, atol=1e-5, err_msg=key)


def test_twin_out_buffers_are_written_in_place():
    cfg = hiper.HAEConfig(norm_adv=True)
    b = make_batch(9)
    fresh = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, b.action_mask, b.subgoal_mask,
                                            b.switch_mask)
    shape = b.batch["response_mask"].shape
    out = {k: torch.full(shape, 7.0) for k in ("advantages", "advantages_low", "returns_high")}
    res = hae_torch.compute_hae_advantage(b.batch, b.non_tensor_batch, cfg, b.action_mask, b.subgoal_mask,
                                          b.switch_mask, out=out)
    for key, buf in out.items():
        assert res[key] is buf
        assert torch.equal(buf, fresh[key])


def test_reverse_linear_scan_matches_loop():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=200))
    coef = torch.from_numpy(rng.uniform(0, 1, 200) * (rng.random(200) > 0.1))
    coef[-1] = 0
    expected = np.zeros(200)
    acc = 0.0
    for p in range(199, -1, -1):
        acc = x[p].item() + coef[p].item() * acc
        expected[p] = acc
    run = max(np.diff(np.flatnonzero(np.r_[1.0, coef.numpy()] == 0)))  # longest chain bound
    got = hae_torch.reverse_linear_scan(x, coef, int(run) + 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
