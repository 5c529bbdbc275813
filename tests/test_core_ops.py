"""The per-turn and token-level ops against the float64 loop oracle."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hiper
from hiper.reference import hae_loops

TURN_KEYS = ("adv_low", "ret_low", "adv_high", "ret_high", "adv_term", "ret_term")


def random_rows(rng, num_traj, max_turns, p_switch=0.4, p_done=0.6):
    traj, turn, done = [], [], []
    for t in range(num_traj):
        T = int(rng.integers(1, max_turns + 1))
        traj += [t] * T
        turn += list(range(T))
        done += [False] * (T - 1) + [bool(rng.random() < p_done)]
    n = len(traj)
    perm = rng.permutation(n)
    return dict(traj=np.asarray(traj)[perm], turn=np.asarray(turn)[perm], done=np.asarray(done)[perm],
                switch=rng.random(n) < p_switch, rewards=rng.normal(size=n).astype(np.float32),
                v_low=rng.normal(size=n).astype(np.float32), v_high=rng.normal(size=n).astype(np.float32),
                v_term=rng.normal(size=n).astype(np.float32))


def oracle_turns(d, v_term=True, **kw):
    return hae_loops.hae_turns(list(d["traj"]), d["turn"], d["switch"], d["rewards"].astype(np.float64),
                               d["done"], d["v_low"], d["v_high"], d["v_term"] if v_term else None, **kw)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("boot", [False, True])
@pytest.mark.parametrize("with_term", [False, True])
def test_hae_turns_matches_oracle(seed, boot, with_term):
    rng = np.random.default_rng(seed)
    d = random_rows(rng, 30, 25)
    kw = dict(gamma=float(rng.uniform(0.8, 1.0)), lam_turn=float(rng.uniform(0.5, 1)),
              lam_seg=float(rng.uniform(0.5, 1)), bootstrap_truncated=boot)
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    got = hiper.hae_turns(lay, d["rewards"], d["done"], d["v_low"], d["v_high"],
                          d["v_term"] if with_term else None, **kw)
    want = oracle_turns(d, with_term, **kw)
    for key in TURN_KEYS:
        np.testing.assert_allclose(getattr(got, key), want[key], rtol=1e-6, atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(got.is_boundary, want["is_boundary"])


def test_hae_closed_form_with_unit_gamma():
    """gamma = lam_turn = 1: A^L_t = sum of the segment's remaining rewards + V^H(next start) - V^L_t."""
    traj = np.zeros(5, np.int64)
    turn = np.arange(5)
    switch = np.array([False, False, True, False, False])
    rewards = np.array([1, 2, 3, 4, 5], np.float32)
    v_low = np.array([0.5, 0.25, 1.0, 2.0, 4.0], np.float32)
    v_high = np.array([10, 20, 30, 40, 50], np.float32)
    done = np.array([0, 0, 0, 0, 1], bool)
    lay = hiper.build_layout(traj, turn, switch)
    out = hiper.hae_turns(lay, rewards, done, v_low, v_high, v_high + 1, gamma=1.0, lam_turn=1.0, lam_seg=1.0)
    np.testing.assert_allclose(out.adv_low, [1 + 2 + 30 - 0.5, 2 + 30 - 0.25, 3 + 4 + 5 - 1, 4 + 5 - 2, 5 - 4])
    # Segment 1 (turns 2..4) ends the episode: A^H = 12 - 30; segment 0: 3 + 30 - 10 + A^H_1
    np.testing.assert_allclose(out.adv_high, [3 + 30 - 10 + (12 - 30), 0, 12 - 30, 0, 0])
    np.testing.assert_allclose(out.ret_term, [1 + 2 + 30, 2 + 30, 12, 9, 5])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 12), st.floats(0, 1), st.floats(0, 1),
       st.floats(0, 1), st.booleans(), st.floats(0, 1))
def test_hae_property(seed, num_traj, max_turns, gamma, lam_turn, lam_seg, boot, p_switch):
    rng = np.random.default_rng(seed)
    d = random_rows(rng, num_traj, max_turns, p_switch=p_switch)
    d["done"] |= rng.random(len(d["done"])) < 0.05  # done flags mid-trajectory too
    kw = dict(gamma=gamma, lam_turn=lam_turn, lam_seg=lam_seg, bootstrap_truncated=boot)
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    got = hiper.hae_turns(lay, d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"], **kw)
    want = oracle_turns(d, **kw)
    for key in TURN_KEYS:
        np.testing.assert_allclose(getattr(got, key), want[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("mode", ["fixed", "normalized"])
def test_shape_rewards_matches_oracle(mode):
    rng = np.random.default_rng(1)
    d = random_rows(rng, 25, 10)
    valid = (rng.random(len(d["traj"])) < 0.7).astype(np.float32)
    changed = rng.random(len(d["traj"])) < 0.5
    kw = dict(keep_penalty=-0.3, keep_penalty_mode=mode, invalid_action_penalty_coef=0.1,
              keep_consistency_penalty=-0.2)
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    got = hiper.shape_rewards(lay, d["rewards"], is_new_subgoal=d["switch"], is_action_valid=valid,
                              subgoal_changed=changed, **kw)
    want = hae_loops.shape_rewards(list(d["traj"]), d["turn"], d["rewards"], d["switch"], is_action_valid=valid,
                                   subgoal_changed=changed, **kw)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_normalize_matches_oracle_and_leaves_other_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(3, 2, size=101).astype(np.float32)
    inc = rng.random(101) < 0.6
    got = hiper.normalize_advantages(x, inc)
    np.testing.assert_allclose(got, hae_loops.normalize(x, inc), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[~inc], x[~inc])
    np.testing.assert_array_equal(hiper.normalize_advantages(x, np.zeros(101, bool)), x)
    buf = np.empty_like(x)
    assert hiper.normalize_advantages(x, out=buf) is buf
    np.testing.assert_allclose(buf, hae_loops.normalize(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("requires_both", [True, False])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_subgoal_changed_matches_oracle(requires_both, dtype):
    rng = np.random.default_rng(3)
    d = random_rows(rng, 20, 8)
    n, L = len(d["traj"]), 12
    tokens = rng.integers(0, 3, size=(n, L))
    sub = rng.random((n, L)) < 0.3
    sub[rng.random(n) < 0.2] = False
    resp = np.arange(L)[None] < rng.integers(0, L + 1, size=n)[:, None]
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    got = hiper.subgoal_changed(lay, torch.from_numpy(tokens).to(dtype), torch.from_numpy(sub),
                                torch.from_numpy(resp), requires_both=requires_both)
    assert got.dtype == torch.bool
    want = hae_loops.subgoal_changed(list(d["traj"]), d["turn"], tokens, sub, resp, requires_both)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("length", [7, 8, 31, 33, 100, 517])
def test_flag_bytes_are_any_nonzero_value(length):
    """The row scan and the keep-consistency check read masks eight bytes at a time on the
    CPU; a flag is any non-zero byte (2, 127, 128, 255 as much as 1), at every offset of a row
    whose length is not a multiple of the word or the round."""
    rng = np.random.default_rng(length)
    n = 60
    resp = (np.arange(length)[None] < rng.integers(0, length + 1, size=n)[:, None]) | (rng.random((n, length)) < 0.05)
    masks = {k: rng.random((n, length)) < p for k, p in
             (("action_mask", 0.02), ("subgoal_mask", 0.3), ("switch_mask", 0.01), ("value_mask_low", 0.01),
              ("value_mask_high", 0.003), ("value_mask_term", 0.0))}

    def as_bytes(mask):  # the same flags as uint8, each set byte one of the values above
        return np.where(mask, rng.choice(np.array([1, 2, 127, 128, 255], np.uint8), size=mask.shape), 0).astype(np.uint8)

    values = rng.normal(size=(n, length)).astype(np.float32)
    want = hiper.row_scan(resp, **masks, values_low=values)
    got = hiper.row_scan(as_bytes(resp), **{k: as_bytes(m) for k, m in masks.items()}, values_low=values)
    for name in want._fields:
        if getattr(want, name) is not None:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_array_equal(want.response_length, resp.sum(axis=1))
    np.testing.assert_array_equal(want.has_subgoal, (masks["subgoal_mask"] & resp).any(axis=1))
    np.testing.assert_array_equal(want.pos_low, hae_loops.value_positions(masks["value_mask_low"], resp))

    d = random_rows(rng, 12, 5)
    rows = len(d["traj"])
    tokens = rng.integers(0, 2, size=(rows, length))
    sub, r = masks["subgoal_mask"][:rows], resp[:rows]
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    oracle = hae_loops.subgoal_changed(list(d["traj"]), d["turn"], tokens, sub, r, True)
    got = hiper.subgoal_changed(lay, tokens, as_bytes(sub), as_bytes(r))
    np.testing.assert_array_equal(got, oracle)


def test_token_outputs_into_reused_buffers():
    rng = np.random.default_rng(4)
    L = 16
    d = random_rows(rng, 10, 6)
    n = len(d["traj"])
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    turns = hiper.hae_turns(lay, d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"])
    masks = {k: torch.from_numpy(rng.random((n, L)) < 0.3) for k in
             ("action_mask", "subgoal_mask", "switch_mask", "value_mask_low", "value_mask_high", "value_mask_term")}
    resp = torch.from_numpy(np.arange(L)[None] < rng.integers(0, L + 1, size=n)[:, None])
    fresh = hiper.hae_token_outputs(turns, resp, **masks)
    bufs = {"advantages": torch.full((n, L), 3.0), "returns_low": torch.full((n, L), 3.0),
            "loss_mask": torch.ones(n, L, dtype=torch.bool)}
    again = hiper.hae_token_outputs(turns, resp, **masks, outputs=(), out=bufs)
    for name, buf in bufs.items():
        assert getattr(again, name) is buf
        assert torch.equal(buf, getattr(fresh, name)), name
    assert again.advantages_low is None
    # Direct check of the broadcast against torch arithmetic.
    lo = masks["action_mask"] & resp
    sw = masks["switch_mask"] & resp
    hi = masks["subgoal_mask"] & resp & torch.from_numpy(np.asarray(turns.is_boundary))[:, None]
    exp = (torch.as_tensor(turns.adv_low)[:, None] * lo + torch.as_tensor(turns.adv_high)[:, None] * hi
           + torch.as_tensor(turns.adv_term)[:, None] * sw)
    torch.testing.assert_close(fresh.advantages, exp.float())
    assert torch.equal(fresh.loss_mask, lo | hi | sw)



def test_token_ops_take_the_span_masks_as_one_object():
    rng = np.random.default_rng(5)
    L = 12
    d = random_rows(rng, 8, 5)
    n = len(d["traj"])
    turns = hiper.hae_turns(hiper.build_layout(d["traj"], d["turn"], d["switch"]), d["rewards"], d["done"],
                            d["v_low"], d["v_high"], d["v_term"])
    masks = {k: torch.from_numpy(rng.random((n, L)) < 0.3) for k in
             ("action_mask", "subgoal_mask", "switch_mask", "value_mask_low", "value_mask_high", "value_mask_term")}
    resp = torch.from_numpy(np.arange(L)[None] < rng.integers(0, L + 1, size=n)[:, None])
    values = torch.from_numpy(rng.normal(size=(n, L)).astype(np.float32))
    spans = hiper.SpanMasks(**masks, is_new_subgoal=torch.from_numpy(d["switch"]))  # (N,): not read
    for one, other in ((hiper.hae_token_outputs(turns, resp, spans=spans),
                        hiper.hae_token_outputs(turns, resp, **masks)),
                       (hiper.row_scan(resp, spans=spans, values_low=values),
                        hiper.row_scan(resp, **masks, values_low=values))):
        for name, got in one._asdict().items():
            want = getattr(other, name)
            assert (got is None and want is None) or torch.equal(got, want), name
    with pytest.raises(ValueError, match="switch_mask: given with spans"):
        hiper.row_scan(resp, spans=spans, switch_mask=masks["switch_mask"])
    with pytest.raises(ValueError, match="action_mask: given with spans"):
        hiper.hae_token_outputs(turns, resp, spans=spans, action_mask=masks["action_mask"])
    with pytest.raises(TypeError, match="spans: expected a hiper.SpanMasks, got dict"):
        hiper.row_scan(resp, spans=masks)
    with pytest.raises(ValueError, match=r"subgoal_mask: expected shape \(\d+, 12\) like response_mask"):
        hiper.hae_token_outputs(turns, resp, spans=spans._replace(subgoal_mask=masks["subgoal_mask"][:, :5]))

def test_numpy_in_numpy_out_and_torch_in_torch_out():
    rng = np.random.default_rng(5)
    d = random_rows(rng, 6, 5)
    out_np = hiper.hae(d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"],
                       is_new_subgoal=d["switch"])
    assert all(isinstance(x, np.ndarray) for x in out_np)
    t = {k: torch.from_numpy(v) for k, v in d.items()}
    out_t = hiper.hae(t["traj"], t["turn"], t["rewards"], t["done"], t["v_low"], t["v_high"], t["v_term"],
                      is_new_subgoal=t["switch"])
    assert all(isinstance(x, torch.Tensor) for x in out_t)
    for a, b in zip(out_np, out_t):
        np.testing.assert_array_equal(a, b.numpy())


def test_hae_one_shot_with_string_ids_and_normalisation():
    rng = np.random.default_rng(6)
    d = random_rows(rng, 12, 9)
    uids = np.array([f"u{t}" for t in d["traj"]], dtype=object)
    cfg = hiper.HAEConfig(gamma=0.9, lam_turn=0.8, lam_seg=0.7, norm_adv=True, keep_penalty=-0.3,
                          keep_penalty_mode="normalized")
    got = hiper.hae(uids, d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"],
                    is_new_subgoal=d["switch"], config=cfg)
    shaped = hae_loops.shape_rewards(list(d["traj"]), d["turn"], d["rewards"], d["switch"], keep_penalty=-0.3,
                                     keep_penalty_mode="normalized")
    want = hae_loops.hae_turns(list(d["traj"]), d["turn"], d["switch"], shaped, d["done"], d["v_low"],
                               d["v_high"], d["v_term"], gamma=0.9, lam_turn=0.8, lam_seg=0.7)
    np.testing.assert_allclose(got.adv_low, hae_loops.normalize(want["adv_low"]), atol=1e-5)
    np.testing.assert_allclose(got.adv_high, hae_loops.normalize(want["adv_high"], want["is_boundary"]), atol=1e-5)
    np.testing.assert_allclose(got.adv_term, hae_loops.normalize(want["adv_term"]), atol=1e-5)
    np.testing.assert_allclose(got.ret_low, want["ret_low"], atol=1e-5)
