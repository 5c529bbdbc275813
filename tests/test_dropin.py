"""The verl drop-in against the float64 oracle written from the method's definition."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import hiper
from hiper.integrations.verl import compute_hae_advantage
from hiper.reference import hae_loops

from batches import make_batch
from numerics import assert_close

KEYS = ["advantages", "advantages_low", "advantages_high", "advantages_term", "returns_low", "returns_high",
        "returns_term", "hae_lo_mask", "hae_hi_mask", "hae_term_mask"]


def run_both(b, cfg, masks=True):
    kwargs = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask) if masks else {}
    expected = hae_loops.compute_hae_advantage(b.numpy_batch(), b.non_tensor_batch, cfg,
                                               **{k: (v.numpy() if v is not None else None) for k, v in kwargs.items()})
    compute_hae_advantage(b, cfg, **kwargs)
    return expected


def assert_outputs_match(b, expected):
    for key in KEYS:
        got = b.batch[key]
        assert got.shape == expected[key].shape, key
        if key.startswith("hae_"):
            assert got.dtype == torch.bool, key
            np.testing.assert_array_equal(got.numpy(), expected[key], err_msg=key)
        else:
            assert got.dtype == torch.float32, key
            np.testing.assert_allclose(got.numpy(), expected[key], rtol=0, atol=1e-5, err_msg=key)


OPTION_GRID = list(itertools.product(
    [False, True],            # norm_adv
    [False, True],            # bootstrap_truncated
    ["fixed", "normalized"],  # keep_penalty_mode
    [False, True],            # assign_high_to_switch
    [False, True],            # assign_high_to_subgoal
    [False, True],            # assign_term_to_switch
))


def option_config(norm, boot, mode, hi_sw, hi_sub, term_sw) -> hiper.HAEConfig:
    """The HAEConfig of one OPTION_GRID point (the other settings fixed, none at a neutral value)."""
    return hiper.HAEConfig(gamma=0.97, lam_turn=0.9, lam_seg=0.8, norm_adv=norm, bootstrap_truncated=boot,
                           keep_penalty=-0.3, keep_penalty_mode=mode, invalid_action_penalty_coef=0.1,
                           keep_consistency_penalty=-0.2, assign_high_to_switch=hi_sw,
                           assign_high_to_subgoal=hi_sub, assign_term_to_switch=term_sw)


@pytest.mark.parametrize("norm,boot,mode,hi_sw,hi_sub,term_sw", OPTION_GRID)
def test_matches_oracle_every_option(norm, boot, mode, hi_sw, hi_sub, term_sw):
    seed = hash((norm, boot, mode, hi_sw, hi_sub, term_sw)) % 1000
    cfg = option_config(norm, boot, mode, hi_sw, hi_sub, term_sw)
    b = make_batch(seed)
    assert_outputs_match(b, run_both(b, cfg))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("requires_both", [True, False])
@pytest.mark.parametrize("gamma,lam_turn,lam_seg", [(1.0, 1.0, 0.95), (0.9, 0.7, 0.5), (0.0, 0.0, 0.0)])
def test_matches_oracle_random(seed, requires_both, gamma, lam_turn, lam_seg):
    cfg = hiper.HAEConfig(gamma=gamma, lam_turn=lam_turn, lam_seg=lam_seg, norm_adv=seed % 2 == 0,
                          bootstrap_truncated=seed % 3 == 0, keep_penalty=-3.5, keep_penalty_mode="normalized",
                          invalid_action_penalty_coef=0.1, keep_consistency_penalty=-0.3,
                          keep_consistency_requires_both=requires_both)
    b = make_batch(100 + seed, num_traj=20, max_turns=15, length=32)
    assert_outputs_match(b, run_both(b, cfg))


def test_default_masks_and_two_head_critic():
    cfg = hiper.HAEConfig(norm_adv=True, keep_penalty=-0.3, keep_consistency_penalty=-0.3)
    b = make_batch(7, with_term=False)
    expected = run_both(b, cfg, masks=False)
    assert_outputs_match(b, expected)
    assert not b.batch["hae_term_mask"].any()
    assert not b.batch["advantages_term"].any()
    # action mask defaults to the whole response
    assert torch.equal(b.batch["hae_lo_mask"], b.batch["response_mask"].bool())


def test_single_head_critic_falls_back_to_low_values():
    cfg = hiper.HAEConfig(gamma=0.9)
    b = make_batch(8, with_term=False)
    del b.batch["value_high"]
    assert_outputs_match(b, run_both(b, cfg))


@pytest.mark.parametrize("case", ["all_keep", "all_switch", "single_turn", "all_done_mid", "none_done", "ordered"])
def test_edge_cases(case):
    kw = dict(all_keep=dict(p_switch=0.0), all_switch=dict(p_switch=1.0), single_turn=dict(max_turns=1),
              all_done_mid=dict(p_mid_done=1.0), none_done=dict(p_done=0.0, p_mid_done=0.0),
              ordered=dict(shuffle=False, string_uids=False))[case]
    for boot in (False, True):
        cfg = hiper.HAEConfig(gamma=0.95, lam_turn=0.9, lam_seg=0.9, norm_adv=True, bootstrap_truncated=boot,
                              keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                              keep_consistency_penalty=-0.3)
        b = make_batch(21, **kw)
        assert_outputs_match(b, run_both(b, cfg))


def test_empty_spans_everywhere():
    b = make_batch(3, p_missing_span=1.0)
    b.batch["response_mask"][::3] = 0  # some empty responses
    cfg = hiper.HAEConfig(norm_adv=True, keep_consistency_penalty=-0.3, keep_consistency_requires_both=False)
    assert_outputs_match(b, run_both(b, cfg))


def test_unread_values_do_not_matter():
    """Values at positions no head reads (and their non-finiteness) change nothing."""
    cfg = hiper.HAEConfig(gamma=0.9, norm_adv=True)
    b1, b2 = make_batch(5), make_batch(5)
    compute_hae_advantage(b1, cfg, b1.action_mask, b1.subgoal_mask, b1.switch_mask)
    rows = hiper.row_scan(b2.batch["response_mask"], value_mask_low=b2.batch["value_mask_low"],
                          value_mask_high=b2.batch["value_mask_high"], value_mask_term=b2.batch["value_mask_term"])
    for key, pos in (("value_low", rows.pos_low), ("value_high", rows.pos_high), ("value_term", rows.pos_term)):
        read = torch.zeros_like(b2.batch[key], dtype=torch.bool)
        read[torch.arange(len(pos)), pos] = True
        b2.batch[key] = torch.where(read, b2.batch[key], torch.full_like(b2.batch[key], float("nan")))
    compute_hae_advantage(b2, cfg, b2.action_mask, b2.subgoal_mask, b2.switch_mask)
    for key in KEYS:
        assert torch.equal(b1.batch[key], b2.batch[key]), key


def test_row_order_does_not_matter():
    cfg = hiper.HAEConfig(gamma=0.9, lam_seg=0.7, norm_adv=True, keep_penalty=-0.3, keep_penalty_mode="normalized",
                          keep_consistency_penalty=-0.3, invalid_action_penalty_coef=0.1)
    b = make_batch(11)
    compute_hae_advantage(b, cfg, b.action_mask, b.subgoal_mask, b.switch_mask)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(b.non_tensor_batch["turn_idx"])))
    c = make_batch(11)
    c.batch = {k: v[perm] for k, v in c.batch.items()}
    c.non_tensor_batch = {k: v[perm.numpy()] for k, v in c.non_tensor_batch.items()}
    c.action_mask, c.subgoal_mask, c.switch_mask = c.action_mask[perm], c.subgoal_mask[perm], c.switch_mask[perm]
    compute_hae_advantage(c, cfg, c.action_mask, c.subgoal_mask, c.switch_mask)
    for key in KEYS:
        assert_close(c.batch[key], b.batch[key][perm], atol=1e-6, name=key)


def test_duplicate_rows_are_refused():
    b = make_batch(4)
    meta = b.non_tensor_batch
    meta["turn_idx"] = meta["turn_idx"].copy()
    same = np.flatnonzero(meta["traj_uid"] == meta["traj_uid"][0])
    if len(same) < 2:
        pytest.skip("first trajectory has one turn")
    meta["turn_idx"][same[1]] = meta["turn_idx"][same[0]]
    with pytest.raises(ValueError, match="turn_idx"):
        compute_hae_advantage(b, hiper.HAEConfig(), b.action_mask, b.subgoal_mask, b.switch_mask)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), num_traj=st.integers(1, 6), max_turns=st.integers(1, 8),
       length=st.integers(1, 12), p_switch=st.floats(0, 1), norm=st.booleans(), boot=st.booleans(),
       mode=st.sampled_from(["fixed", "normalized"]), requires_both=st.booleans(),
       gamma=st.floats(0, 1), lam_turn=st.floats(0, 1), lam_seg=st.floats(0, 1))
def test_dropin_property(seed, num_traj, max_turns, length, p_switch, norm, boot, mode, requires_both, gamma,
                         lam_turn, lam_seg):
    cfg = hiper.HAEConfig(gamma=gamma, lam_turn=lam_turn, lam_seg=lam_seg, norm_adv=norm, bootstrap_truncated=boot,
                          keep_penalty=-0.5, keep_penalty_mode=mode, invalid_action_penalty_coef=0.1,
                          keep_consistency_penalty=-0.3, keep_consistency_requires_both=requires_both)
    b = make_batch(seed, num_traj=num_traj, max_turns=max_turns, length=length, p_switch=p_switch)
    assert_outputs_match(b, run_both(b, cfg))


def test_bfloat16_value_heads_are_gathered():
    """Value heads in another dtype take the torch gather path and give the same result
    as the same values in float32."""
    cfg = hiper.HAEConfig(gamma=0.9, norm_adv=True)
    b32, b16 = make_batch(12), make_batch(12)
    for key in ("value_low", "value_high", "value_term"):
        b16.batch[key] = b16.batch[key].to(torch.bfloat16)
        b32.batch[key] = b16.batch[key].float()
    compute_hae_advantage(b32, cfg, b32.action_mask, b32.subgoal_mask, b32.switch_mask)
    compute_hae_advantage(b16, cfg, b16.action_mask, b16.subgoal_mask, b16.switch_mask)
    for key in KEYS:
        assert torch.equal(b32.batch[key], b16.batch[key]), key
