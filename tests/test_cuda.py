"""The CUDA path of the ops, against the host path and the float64 loop oracle.

Every test in the first part runs once per device: on the CPU, and on CUDA when this build
has the CUDA backend and a GPU (skipped otherwise). On CUDA, outputs must stay on the
device, equal the host path's bit for bit (the kernels run the host's per-item functions
with the same IEEE operations; normalisation statistics are summed in another order, so
normalised advantages are compared to within float32 rounding), and match the oracle.

The second part runs without a GPU: it drives the CUDA dispatch with 'meta' tensors (shapes
and dtypes, no memory) standing in for CUDA ones, as far as the device: argument checks,
conversions, error messages and the keyword interface to the compiled bindings.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hiper
from hiper import _C
from hiper.integrations.verl import compute_hae_advantage
from hiper.ops.hae import hae_core
from hiper.reference import hae_loops

from batches import make_batch

CUDA_OK = hiper.has_cuda() and torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not CUDA_OK, reason="no CUDA device (CUDA path untested here)"))]
TURN_KEYS = ("adv_low", "ret_low", "adv_high", "ret_high", "adv_term", "ret_term")
MASKS = ("action_mask", "subgoal_mask", "switch_mask", "value_mask_low", "value_mask_high", "value_mask_term")


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def on(device, x):
    """numpy / tensor -> tensor on `device` (None stays None)."""
    if x is None:
        return None
    return (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))).to(device)


def host(x):
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_on(device, *tensors):
    for t in tensors:
        if t is not None:
            assert isinstance(t, torch.Tensor) and t.device.type == device.type, t


# ------------------------------------------------------------------------------------- inputs
def random_rows(rng, num_traj, max_turns, *, p_switch=0.4, p_done=0.6, p_mid_done=0.0, shuffle=True):
    traj, turn, done = [], [], []
    for t in range(num_traj):
        T = int(rng.integers(1, max_turns + 1))
        start = int(rng.integers(0, 3))  # turns need not start at 0
        traj += [t * 7 - 20] * T  # sparse, negative ids
        turn += list(range(start, start + T))
        done += [bool(rng.random() < p_mid_done) for _ in range(T - 1)] + [bool(rng.random() < p_done)]
    n = len(traj)
    perm = rng.permutation(n) if shuffle else np.arange(n)
    return dict(traj=np.asarray(traj, np.int64)[perm], turn=np.asarray(turn, np.int64)[perm],
                done=np.asarray(done, bool)[perm], switch=rng.random(n) < p_switch,
                rewards=rng.normal(size=n).astype(np.float32), v_low=rng.normal(size=n).astype(np.float32),
                v_high=rng.normal(size=n).astype(np.float32), v_term=rng.normal(size=n).astype(np.float32),
                valid=(rng.random(n) < 0.7).astype(np.float32), changed=rng.random(n) < 0.3)


EDGE_CASES = {
    "single_turn": dict(num_traj=9, max_turns=1),
    "all_keep": dict(num_traj=6, max_turns=8, p_switch=0.0),
    "all_switch": dict(num_traj=6, max_turns=8, p_switch=1.0),
    "done_mid_trajectory": dict(num_traj=6, max_turns=8, p_mid_done=0.3),
    "all_truncated": dict(num_traj=6, max_turns=8, p_done=0.0),
    "one_row": dict(num_traj=1, max_turns=1),
    "long_trajectories": dict(num_traj=3, max_turns=120, p_switch=0.05),
}


def edge_rows(name, seed=0):
    return random_rows(np.random.default_rng(seed), **EDGE_CASES[name])


def empty_rows():
    return random_rows(np.random.default_rng(0), 0, 1)


def token_inputs(rng, n, length, *, p_empty_response=0.15, p_empty_span=0.2):
    resp_len = rng.integers(0, length + 1, size=n)
    resp_len[rng.random(n) < 0.4] = length
    resp_len[rng.random(n) < p_empty_response] = 0
    resp = np.arange(length)[None] < resp_len[:, None]
    masks = {name: rng.random((n, length)) < 0.3 for name in MASKS}
    for name in MASKS:
        masks[name][rng.random(n) < p_empty_span] = False
    return resp, masks


# ------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("id_range", [40, 10**15])
@pytest.mark.parametrize("gaps", [False, True])
def test_layout_matches_oracle(device, seed, id_range, gaps):
    rng = np.random.default_rng(seed)
    ids = rng.choice(id_range, size=25, replace=False) - id_range // 2
    traj, turn = [], []
    for tid in ids:
        T = int(rng.integers(1, 12))
        turn += list(np.sort(rng.choice(40, size=T, replace=False)) if gaps else range(T))
        traj += [tid] * T
    perm = rng.permutation(len(traj))
    traj, turn = np.asarray(traj, np.int64)[perm], np.asarray(turn, np.int64)[perm]
    switch = rng.random(len(traj)) < 0.4
    lay = hiper.build_layout(on(device, traj), on(device, turn), on(device, switch))

    groups = hae_loops.group_trajectories(list(traj), turn)
    order, traj_offsets, seg_offsets, traj_seg = [], [0], [], [0]
    boundary = np.zeros(len(traj), bool)
    position = np.zeros(len(traj), np.int64)
    for tid in sorted(groups):
        rows = groups[tid]
        for s, _ in hae_loops.segments_of(rows, switch):
            seg_offsets.append(len(order) + s)
            boundary[rows[s]] = True
        position[rows] = np.arange(len(rows))
        order += rows
        traj_offsets.append(len(order))
        traj_seg.append(len(seg_offsets))
    assert (lay.num_rows, lay.num_trajectories, lay.num_segments) == (len(traj), len(groups), len(seg_offsets))
    for name, want in (("order", order), ("traj_offsets", traj_offsets), ("seg_offsets", seg_offsets + [len(traj)]),
                       ("traj_seg_offsets", traj_seg), ("is_boundary", boundary), ("position", position)):
        got = getattr(lay, name)
        if device.type == "cuda":
            assert_on(device, got)
        np.testing.assert_array_equal(host(got), want, err_msg=name)


@pytest.mark.parametrize("turns,message", [([0, 0], "trajectory 5 has turn 0 more than once"),
                                           ([3, 1, 3], "trajectory 5 has turn 3 more than once"),
                                           ([0, -2, 1], "must be non-negative, got -2 at row 1")])
def test_invalid_turns_raise(device, turns, message):
    ids = np.full(len(turns), 5, np.int64)
    with pytest.raises(ValueError, match=f"turn_idx: {message}"):
        hiper.build_layout(on(device, ids), on(device, np.array(turns)))


def test_validation_can_be_deferred(device):
    ids, turns = on(device, np.zeros(3, np.int64)), on(device, np.array([0, 1, 1]))
    message = "turn_idx: trajectory 0 has turn 1 more than once"
    if device.type == "cpu":  # host layouts always check, at once
        with pytest.raises(ValueError, match=message):
            hiper.build_layout(ids, turns, validate=False)
        return
    lay = hiper.build_layout(ids, turns, validate=False)  # nothing waited for
    with pytest.raises(ValueError, match=message):
        lay.validate()
    with pytest.raises(ValueError, match=message):
        lay.num_trajectories  # noqa: B018 - reading a count validates first


def test_empty_batch(device):
    d = empty_rows()
    lay = hiper.build_layout(on(device, d["traj"]), on(device, d["turn"]), on(device, d["switch"]))
    assert (lay.num_rows, lay.num_trajectories, lay.num_segments) == (0, 0, 0)
    out = hiper.hae(on(device, d["traj"]), on(device, d["turn"]), on(device, d["rewards"]), on(device, d["done"]),
                    on(device, d["v_low"]), on(device, d["v_high"]), on(device, d["v_term"]),
                    config=hiper.HAEConfig(norm_adv=True))
    assert all(x.shape == (0,) for x in out)
    tokens = hiper.hae_token_outputs(out, on(device, np.zeros((0, 5), bool)))
    assert tokens.advantages.shape == (0, 5)


# ------------------------------------------------------------------------------------- per turn
def run_hae_turns(device, d, kw, with_term=True):
    lay = hiper.build_layout(on(device, d["traj"]), on(device, d["turn"]), on(device, d["switch"]))
    return hiper.hae_turns(lay, on(device, d["rewards"]), on(device, d["done"]), on(device, d["v_low"]),
                           on(device, d["v_high"]), on(device, d["v_term"]) if with_term else None, **kw)


def oracle_turns(d, kw, with_term=True):
    return hae_loops.hae_turns(list(d["traj"]), d["turn"], d["switch"], d["rewards"].astype(np.float64), d["done"],
                               d["v_low"], d["v_high"], d["v_term"] if with_term else None, **kw)


def check_turns(device, got, d, kw, with_term=True, *, normalized=False):
    """Against the oracle, and on CUDA against the host path bit for bit."""
    assert_on(device, *got)
    want = oracle_turns(d, kw, with_term)
    for key in TURN_KEYS:
        np.testing.assert_allclose(host(getattr(got, key)), want[key], rtol=1e-6, atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(host(got.is_boundary), want["is_boundary"])
    if device.type == "cuda":
        ref = run_hae_turns(torch.device("cpu"), d, kw, with_term)
        for key in TURN_KEYS:
            np.testing.assert_array_equal(host(getattr(got, key)), host(getattr(ref, key)), err_msg=key)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("boot", [False, True])
@pytest.mark.parametrize("with_term", [False, True])
def test_hae_turns_random(device, seed, boot, with_term):
    rng = np.random.default_rng(seed)
    d = random_rows(rng, 40, 30, p_mid_done=0.05)
    kw = dict(gamma=float(rng.uniform(0.8, 1.0)), lam_turn=float(rng.uniform(0.5, 1)),
              lam_seg=float(rng.uniform(0.5, 1)), bootstrap_truncated=boot)
    check_turns(device, run_hae_turns(device, d, kw, with_term), d, kw, with_term)


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("boot", [False, True])
def test_hae_turns_edge_cases(device, case, boot):
    d = edge_rows(case)
    kw = dict(gamma=0.95, lam_turn=0.9, lam_seg=0.8, bootstrap_truncated=boot)
    check_turns(device, run_hae_turns(device, d, kw), d, kw)


@pytest.mark.parametrize("mode", ["fixed", "normalized"])
@pytest.mark.parametrize("case", ["random", "single_turn", "all_keep", "all_switch"])
def test_shape_rewards(device, mode, case):
    d = random_rows(np.random.default_rng(1), 25, 10) if case == "random" else edge_rows(case)
    kw = dict(keep_penalty=-0.3, keep_penalty_mode=mode, invalid_action_penalty_coef=0.1,
              keep_consistency_penalty=-0.2)
    lay = hiper.build_layout(on(device, d["traj"]), on(device, d["turn"]), on(device, d["switch"]))
    got = hiper.shape_rewards(lay, on(device, d["rewards"]), is_new_subgoal=on(device, d["switch"]),
                              is_action_valid=on(device, d["valid"]), subgoal_changed=on(device, d["changed"]), **kw)
    want = hae_loops.shape_rewards(list(d["traj"]), d["turn"], d["rewards"], d["switch"], is_action_valid=d["valid"],
                                   subgoal_changed=d["changed"], **kw)
    np.testing.assert_allclose(host(got), want, rtol=0, atol=1e-6)
    if device.type == "cuda":
        assert_on(device, got)
        ref = hiper.shape_rewards(hiper.build_layout(d["traj"], d["turn"], d["switch"]), d["rewards"],
                                  is_new_subgoal=d["switch"], is_action_valid=d["valid"],
                                  subgoal_changed=d["changed"], **kw)
        np.testing.assert_array_equal(host(got), ref)


def hae_one_shot(device, d, cfg, **kw):
    return hiper.hae(on(device, d["traj"]), on(device, d["turn"]), on(device, d["rewards"]), on(device, d["done"]),
                     on(device, d["v_low"]), on(device, d["v_high"]), on(device, d["v_term"]),
                     is_new_subgoal=on(device, d["switch"]), is_action_valid=on(device, d["valid"]),
                     subgoal_changed=on(device, d["changed"]), config=cfg,
                     **{k: on(device, v) for k, v in kw.items()})


@pytest.mark.parametrize("case", ["random", "single_turn", "all_switch", "done_mid_trajectory", "one_row"])
@pytest.mark.parametrize("credited", [False, True])
def test_hae_one_shot_with_normalisation(device, case, credited):
    rng = np.random.default_rng(6)
    d = random_rows(rng, 30, 12) if case == "random" else edge_rows(case)
    n = len(d["traj"])
    cfg = hiper.HAEConfig(gamma=0.9, lam_turn=0.8, lam_seg=0.7, norm_adv=True, bootstrap_truncated=True,
                          keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                          keep_consistency_penalty=-0.2)
    cred = {k: rng.random(n) < 0.7 for k in ("credited_low", "credited_high", "credited_term")} if credited else {}
    got = hae_one_shot(device, d, cfg, **cred)

    shaped = hae_loops.shape_rewards(list(d["traj"]), d["turn"], d["rewards"], d["switch"], is_action_valid=d["valid"],
                                     subgoal_changed=d["changed"], keep_penalty=-0.3, keep_penalty_mode="normalized",
                                     invalid_action_penalty_coef=0.1, keep_consistency_penalty=-0.2)
    want = hae_loops.hae_turns(list(d["traj"]), d["turn"], d["switch"], shaped, d["done"], d["v_low"], d["v_high"],
                               d["v_term"], gamma=0.9, lam_turn=0.8, lam_seg=0.7, bootstrap_truncated=True)
    include = {"adv_low": cred.get("credited_low"), "adv_term": cred.get("credited_term"),
               "adv_high": cred.get("credited_high", want["is_boundary"])}
    for key in TURN_KEYS:
        expected = hae_loops.normalize(want[key], include[key]) if key in include else want[key]
        np.testing.assert_allclose(host(getattr(got, key)), expected, rtol=1e-5, atol=1e-5, err_msg=key)
    if device.type == "cuda":
        assert_on(device, *got)
        ref = hae_one_shot(torch.device("cpu"), d, cfg, **cred)
        for key in TURN_KEYS:
            if key in include:  # statistics summed in another order: float32 rounding apart
                np.testing.assert_allclose(host(getattr(got, key)), host(getattr(ref, key)), rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(host(getattr(got, key)), host(getattr(ref, key)), err_msg=key)


@pytest.mark.parametrize("n", [1, 7, 1000, 50_000])
@pytest.mark.parametrize("masked", [False, True])
def test_normalize_advantages(device, n, masked):
    rng = np.random.default_rng(n)
    x = rng.normal(3, 2, size=n).astype(np.float32)
    inc = rng.random(n) < 0.6 if masked else None
    got = hiper.normalize_advantages(on(device, x), on(device, inc))
    np.testing.assert_allclose(host(got), hae_loops.normalize(x, inc), rtol=1e-5, atol=1e-5)
    if inc is not None:
        np.testing.assert_array_equal(host(got)[~inc], x[~inc])  # other rows untouched, bit for bit
    nothing = hiper.normalize_advantages(on(device, x), on(device, np.zeros(n, bool)))
    np.testing.assert_array_equal(host(nothing), x)
    buf = on(device, np.empty(n, np.float32))
    assert hiper.normalize_advantages(on(device, x), on(device, inc), out=buf) is buf
    np.testing.assert_array_equal(host(buf), host(got))
    if device.type == "cuda":
        np.testing.assert_allclose(host(got), hiper.normalize_advantages(x, inc), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("requires_both", [True, False])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("length", [12, 300])
def test_subgoal_changed(device, requires_both, dtype, length):
    rng = np.random.default_rng(3)
    d = random_rows(rng, 20, 8)
    n = len(d["traj"])
    tokens = rng.integers(0, 3, size=(n, length))
    sub = rng.random((n, length)) < 0.3
    sub[rng.random(n) < 0.2] = False
    resp = np.arange(length)[None] < rng.integers(0, length + 1, size=n)[:, None]
    for i in range(1, n):  # equal subgoals on some rows, so both answers occur
        if rng.random() < 0.3:
            tokens[i], sub[i], resp[i] = tokens[i - 1], sub[i - 1], resp[i - 1]
    lay = hiper.build_layout(on(device, d["traj"]), on(device, d["turn"]), on(device, d["switch"]))
    got = hiper.subgoal_changed(lay, on(device, torch.from_numpy(tokens).to(dtype)), on(device, sub),
                                on(device, resp), requires_both=requires_both)
    assert got.dtype == torch.bool
    want = hae_loops.subgoal_changed(list(d["traj"]), d["turn"], tokens, sub, resp, requires_both)
    np.testing.assert_array_equal(host(got), want)


# ------------------------------------------------------------------------------------- (N, L)
@pytest.mark.parametrize("length", [0, 1, 13, 16, 37, 512, 600])
@pytest.mark.parametrize("with_masks", [False, True])
def test_row_scan(device, length, with_masks):
    rng = np.random.default_rng(length)
    n = 57
    resp, masks = token_inputs(rng, n, length)
    given = {k: on(device, v) for k, v in masks.items()} if with_masks else {}
    values = {f"values_{h}": rng.normal(size=(n, length)).astype(np.float32) for h in ("low", "high", "term")}
    got = hiper.row_scan(on(device, resp), **given,
                         **({k: on(device, v) for k, v in values.items()} if length else {}))
    count = resp.sum(axis=1)
    np.testing.assert_array_equal(host(got.response_length), count)
    act = masks["action_mask"] if with_masks else resp
    np.testing.assert_array_equal(host(got.has_action), (act & resp).any(axis=1))
    for name, key in (("has_subgoal", "subgoal_mask"), ("has_switch", "switch_mask")):
        np.testing.assert_array_equal(host(getattr(got, name)), (masks[key] & resp).any(axis=1) & with_masks)
    for h in ("low", "high", "term"):
        vm = masks[f"value_mask_{h}"] if with_masks else np.zeros_like(resp)
        pos = hae_loops.value_positions(vm, resp)
        np.testing.assert_array_equal(host(getattr(got, f"pos_{h}")), pos)
        if length:
            np.testing.assert_array_equal(host(getattr(got, f"value_{h}")), values[f"values_{h}"][np.arange(n), pos])
    if device.type == "cuda":
        assert_on(device, *(x for x in got if x is not None))


def token_oracle(turns, resp, masks, hi_sub, hi_sw, te_sw):
    t = {k: np.asarray(host(getattr(turns, k))) for k in TURN_KEYS + ("is_boundary",)}
    act = masks.get("action_mask", resp)
    zero = np.zeros_like(resp)
    sub, sw = masks.get("subgoal_mask", zero), masks.get("switch_mask", zero)
    lo = resp & act
    hi = resp & t["is_boundary"][:, None] & ((sub & hi_sub) | (sw & hi_sw))
    te = resp & sw & te_sw
    f32 = np.float32
    out = {"advantages_low": t["adv_low"][:, None] * lo.astype(f32),
           "advantages_high": t["adv_high"][:, None] * hi.astype(f32),
           "advantages_term": t["adv_term"][:, None] * te.astype(f32),
           "lo_mask": lo, "hi_mask": hi, "term_mask": te, "loss_mask": lo | hi | te}
    out["advantages"] = out["advantages_low"] + out["advantages_high"] + out["advantages_term"]
    for h in ("low", "high", "term"):
        vm = masks.get(f"value_mask_{h}", zero)
        out[f"returns_{h}"] = t[f"ret_{h}"][:, None] * (resp & vm).astype(f32)
    return out


@pytest.mark.parametrize("length", [1, 37, 512, 700])
@pytest.mark.parametrize("absent", [(), ("action_mask", "switch_mask", "value_mask_term")])
@pytest.mark.parametrize("assign", [(True, False, True), (False, True, False)])
def test_token_outputs(device, length, absent, assign):
    rng = np.random.default_rng(length)
    d = random_rows(rng, 15, 8)
    n = len(d["traj"])
    turns = run_hae_turns(device, d, dict(gamma=0.9, lam_turn=0.9, lam_seg=0.9))
    resp, masks = token_inputs(rng, n, length)
    masks = {k: v for k, v in masks.items() if k not in absent}
    hi_sub, hi_sw, te_sw = assign
    got = hiper.hae_token_outputs(turns, on(device, resp), **{k: on(device, v) for k, v in masks.items()},
                                  assign_high_to_subgoal=hi_sub, assign_high_to_switch=hi_sw,
                                  assign_term_to_switch=te_sw)
    want = token_oracle(turns, resp, masks, hi_sub, hi_sw, te_sw)
    for name, value in got._asdict().items():
        assert_on(device, value)
        np.testing.assert_array_equal(host(value), want[name], err_msg=name)


def test_token_outputs_subset_and_reused_buffers(device):
    rng = np.random.default_rng(4)
    d = random_rows(rng, 10, 6)
    n, length = len(d["traj"]), 40
    turns = run_hae_turns(device, d, dict(gamma=1.0))
    resp, masks = token_inputs(rng, n, length)
    dev_masks = {k: on(device, v) for k, v in masks.items()}
    bufs = {"advantages": on(device, np.full((n, length), 3.0, np.float32)),
            "returns_low": on(device, np.full((n, length), 3.0, np.float32)),
            "loss_mask": on(device, np.ones((n, length), bool))}
    got = hiper.hae_token_outputs(turns, on(device, resp), **dev_masks, outputs=("hi_mask",), out=bufs)
    want = token_oracle(turns, resp, masks, True, False, True)
    for name, buf in bufs.items():
        assert getattr(got, name) is buf
        np.testing.assert_array_equal(host(buf), want[name], err_msg=name)
    np.testing.assert_array_equal(host(got.hi_mask), want["hi_mask"])
    assert got.advantages_low is None and got.lo_mask is None


def test_many_rows(device):
    """More rows than one grid dimension holds (65535): the kernels loop over the rest."""
    rng = np.random.default_rng(8)
    n, length = 70_000, 3
    traj = np.arange(n, dtype=np.int64) // 2
    turn = np.arange(n, dtype=np.int64) % 2
    switch = rng.random(n) < 0.5
    f = lambda: rng.normal(size=n).astype(np.float32)  # noqa: E731
    turns = hiper.hae(on(device, traj), on(device, turn), on(device, f()), on(device, rng.random(n) < 0.5),
                      on(device, f()), on(device, f()), on(device, f()), is_new_subgoal=on(device, switch))
    resp, masks = token_inputs(rng, n, length)
    got = hiper.hae_token_outputs(turns, on(device, resp), **{k: on(device, v) for k, v in masks.items()})
    want = token_oracle(turns, resp, masks, True, False, True)
    for name, value in got._asdict().items():
        np.testing.assert_array_equal(host(value), want[name], err_msg=name)
    rows = hiper.row_scan(on(device, resp), **{k: on(device, v) for k, v in masks.items()})
    np.testing.assert_array_equal(host(rows.pos_low), hae_loops.value_positions(masks["value_mask_low"], resp))


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("boot", [False, True])
def test_drop_in_with_tensors_on_the_device(device, norm, boot):
    cfg = hiper.HAEConfig(gamma=0.97, lam_turn=0.9, lam_seg=0.8, norm_adv=norm, bootstrap_truncated=boot,
                          keep_penalty=-0.3, keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                          keep_consistency_penalty=-0.2)
    b = make_batch(11 + norm + 2 * boot)
    masks = dict(action_mask=b.action_mask, subgoal_mask=b.subgoal_mask, switch_mask=b.switch_mask)
    expected = hae_loops.compute_hae_advantage(b.numpy_batch(), b.non_tensor_batch, cfg,
                                               **{k: v.numpy() for k, v in masks.items()})
    b.batch = {k: v.to(device) for k, v in b.batch.items()}
    compute_hae_advantage(b, cfg, **{k: v.to(device) for k, v in masks.items()})
    for key, want in expected.items():
        got = b.batch[key]
        assert got.device.type == device.type, key
        if key.startswith("hae_"):
            np.testing.assert_array_equal(host(got), want, err_msg=key)
        else:
            np.testing.assert_allclose(host(got), want, rtol=0, atol=1e-5, err_msg=key)


def test_packed_batch_moved_to_the_device(device):
    """A rollout packed on the host, moved with PackedBatch.to, runs HAE with its layout there."""
    from hiper.buffer import TrajectoryBuffer

    rng = np.random.default_rng(13)
    buf = TrajectoryBuffer(5)
    for turn in range(6):
        envs = np.array([e for e in range(5) if not buf.finished(e)])
        k = len(envs)
        buf.append(envs, rng.integers(1, 50, (k, 7)), rng.random((k, 7)) < 0.8, rng.integers(1, 50, (k, 9)),
                   rng.random((k, 9)) < 0.8, rng.normal(size=k).astype(np.float32), rng.random(k) < 0.3 * turn / 5,
                   is_new_subgoal=rng.random(k) < 0.5)
    packed = buf.pack()
    moved = packed.to(device)
    assert moved.layout.num_rows == packed.num_rows and moved.responses.device.type == device.type
    n = packed.num_rows
    values = {k: rng.normal(size=n).astype(np.float32) for k in ("v_low", "v_high", "v_term")}
    cfg = hiper.HAEConfig(norm_adv=True, keep_penalty=-0.3, keep_penalty_mode="normalized")
    got = hae_core(moved.layout, moved.rewards, moved.dones, *(on(device, v) for v in values.values()),
                   is_new_subgoal=moved.is_new_subgoal, config=cfg)
    ref = hae_core(packed.layout, packed.rewards, packed.dones, *values.values(),
                   is_new_subgoal=packed.is_new_subgoal, config=cfg)
    for key in TURN_KEYS:
        np.testing.assert_allclose(host(getattr(got, key)), host(getattr(ref, key)), rtol=1e-6, atol=1e-6, err_msg=key)


def test_deterministic(device):
    """The same input twice gives the same bits (normalisation included)."""
    rng = np.random.default_rng(9)
    d = random_rows(rng, 300, 40, p_mid_done=0.02)
    n = len(d["traj"])
    cfg = hiper.HAEConfig(gamma=0.99, lam_turn=0.95, lam_seg=0.9, norm_adv=True, keep_penalty=-0.3,
                          keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1)
    resp, masks = token_inputs(rng, n, 64)
    runs = []
    for _ in range(2):
        turns = hae_one_shot(device, d, cfg)
        tokens = hiper.hae_token_outputs(turns, on(device, resp), **{k: on(device, v) for k, v in masks.items()})
        runs.append([*turns, *tokens])
    for a, b in zip(*runs):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@pytest.mark.parametrize("per_turn_on_device", [False, True])
def test_trainer_estimator_runs_where_its_tensors_are(device, per_turn_on_device, monkeypatch):
    """The trainer's HAE (estimators.hae_advantages -> hiper.hae_pipeline) on a packed batch on
    `device`: the ops run there, the results stay there and equal the host's bit for bit (no
    normalisation here; its sums run in another order on a GPU)."""
    from types import SimpleNamespace

    from fake_rollouts import TOKENIZER, make_rollouts
    from transformers import AutoTokenizer

    from hiper import hae_pipeline
    from hiper.estimators import hae_advantages

    r = make_rollouts(5, seed=4)
    masker = hiper.SpanMasker(AutoTokenizer.from_pretrained(TOKENIZER))
    cfg = hiper.HAEConfig(keep_consistency_penalty=-0.2, invalid_action_penalty_coef=0.1, bootstrap_truncated=True)
    tokens, per_turn = ("responses", "response_mask"), ("env_ids", "turn_idx", "rewards", "dones", "is_action_valid")

    def estimate(dev, turns_dev):
        b = SimpleNamespace(**{k: on(dev, r[k]) for k in tokens}, **{k: on(turns_dev, r[k]) for k in per_turn})
        spans = masker(b.responses, b.response_mask, include_tags=True)
        return hae_advantages(b, spans, on(dev, r["values"]), masker, cfg)

    cpu = torch.device("cpu")
    want = estimate(cpu, cpu)
    scanned = []
    row_scan = hae_pipeline.row_scan
    monkeypatch.setattr(hae_pipeline, "row_scan", lambda mask, *a, **k: scanned.append(mask.device) or row_scan(
        mask, *a, **k))
    got = estimate(device, device if per_turn_on_device else cpu)
    assert [d.type for d in scanned] == [device.type]  # ran there, not on a host copy
    flat = lambda result: [result[0], result[1], *(t for target in result[2] for t in target[1:3])]  # noqa: E731
    assert_on(device, *flat(got))
    for a, b in zip(flat(got), flat(want)):
        np.testing.assert_array_equal(host(a), host(b))


# ------------------------------------------------------------------------------------- GPU only
@pytest.mark.skipif(not CUDA_OK, reason="no CUDA device (CUDA path untested here)")
def test_mixed_devices_are_refused():
    d = edge_rows("all_keep")
    cuda = torch.device("cuda")
    lay = hiper.build_layout(on(cuda, d["traj"]), on(cuda, d["turn"]))
    with pytest.raises(ValueError, match="dones: expected a tensor on cuda"):
        hiper.hae_turns(lay, on(cuda, d["rewards"]), d["done"], on(cuda, d["v_low"]), on(cuda, d["v_high"]))
    with pytest.raises(ValueError, match="turn_idx: expected a tensor on cuda"):
        hiper.build_layout(on(cuda, d["traj"]), d["turn"])
    host_layout = hiper.build_layout(d["traj"], d["turn"])
    with pytest.raises(ValueError, match="rewards: expected a CPU tensor"):
        hiper.hae_turns(host_layout, on(cuda, d["rewards"]), d["done"], d["v_low"], d["v_high"])
    resp = np.ones((len(d["traj"]), 4), bool)
    with pytest.raises(ValueError, match="action_mask: expected a tensor on cuda"):
        hiper.row_scan(on(cuda, resp), action_mask=torch.from_numpy(resp))


@pytest.mark.skipif(not CUDA_OK, reason="no CUDA device (CUDA path untested here)")
def test_host_layout_moved_to_the_device_and_current_stream():
    d = random_rows(np.random.default_rng(12), 50, 20)
    cuda = torch.device("cuda")
    kw = dict(gamma=0.9, lam_turn=0.8, lam_seg=0.7, bootstrap_truncated=True)
    ref = run_hae_turns(torch.device("cpu"), d, kw)
    lay = hiper.build_layout(d["traj"], d["turn"], d["switch"]).to(cuda)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the layout was copied on the current stream
    with torch.cuda.stream(stream):
        got = hiper.hae_turns(lay, on(cuda, d["rewards"]), on(cuda, d["done"]), on(cuda, d["v_low"]),
                              on(cuda, d["v_high"]), on(cuda, d["v_term"]), **kw)
    stream.synchronize()
    for key in TURN_KEYS:
        np.testing.assert_array_equal(host(getattr(got, key)), host(getattr(ref, key)), err_msg=key)


# ------------------------------------------------------------------------------------- without a GPU
@pytest.fixture
def meta_as_cuda(monkeypatch):
    """Let 'meta' tensors take the CUDA path as far as the device. Only on a machine with no
    usable GPU: there the bindings stop at their first CUDA call."""
    if _C.cuda_compiled() and _C.cuda_device_count() > 0:
        pytest.skip("a GPU is present: the CUDA path runs for real in the tests above")
    import sys

    from hiper.ops import _cuda, _device, layout, tokens

    hae = sys.modules["hiper.ops.hae"]  # (hiper.ops.hae is the function of that name)

    def is_meta(x):
        return isinstance(x, torch.Tensor) and x.device.type == "meta"

    for module in (_device, hae, layout, tokens):
        monkeypatch.setattr(module, "is_cuda_tensor", is_meta)
    for module in (_cuda, layout):  # the ops' device paths, and build_layout's
        monkeypatch.setattr(module, "require_backend", lambda device, op: None)
    monkeypatch.setattr(_device.DeviceArgs, "launch", property(lambda self: {"device": 0, "stream": 0}))
    for name in ("cuda_layout_workspace_bytes", "cuda_pipeline_workspace_bytes", "cuda_normalize_workspace_bytes",
                 "cuda_token_outputs_workspace_bytes"):
        if hasattr(_C, name):
            monkeypatch.setattr(_C, name, lambda **kw: 0)
    return torch.device("meta")


def meta_layout(n):
    from hiper.ops.layout import CudaTrajectoryLayout

    t = {name: torch.empty((n + 1,) if name.endswith("offsets") else (n,),
                           dtype=torch.bool if name == "is_boundary" else torch.int64, device="meta")
         for name in CudaTrajectoryLayout.ARRAYS}
    t["meta"] = torch.empty(7, dtype=torch.int64, device="meta")
    return CudaTrajectoryLayout(t, n, meta=[n, n, -1, 0, -1, 0, 0])


@pytest.mark.skipif(not _C.cuda_compiled(), reason="this build has no CUDA backend")
def test_cuda_path_reaches_the_device(meta_as_cuda):
    """Every op's CUDA path checks and converts its inputs and calls its binding with a
    complete, well-typed set of keywords: the call fails at the first CUDA runtime call (no
    GPU here), not on its arguments."""
    meta = meta_as_cuda
    n, length = 6, 10
    f32 = lambda *shape: torch.empty(shape, device=meta)  # noqa: E731
    flags = lambda *shape: torch.empty(shape, dtype=torch.bool, device=meta)  # noqa: E731
    ints = lambda *shape: torch.empty(shape, dtype=torch.int64, device=meta)  # noqa: E731
    lay = meta_layout(n)
    turns = hiper.HAETurnOutputs(*(f32(n) for _ in TURN_KEYS), flags(n))
    calls = {
        "build_layout": lambda: hiper.build_layout(ints(n), ints(n), flags(n)),
        "shape_rewards": lambda: hiper.shape_rewards(lay, f32(n), is_new_subgoal=flags(n), is_action_valid=f32(n),
                                                     subgoal_changed=flags(n), keep_penalty=-0.1,
                                                     keep_penalty_mode="normalized"),
        "hae_turns": lambda: hiper.hae_turns(lay, f32(n), flags(n), f32(n), f32(n), f32(n)),
        "hae_core": lambda: hae_core(lay, f32(n), flags(n), f32(n), f32(n), f32(n),
                                                  is_new_subgoal=flags(n), is_action_valid=f32(n),
                                                  subgoal_changed=flags(n), credited_low=flags(n),
                                                  config=hiper.HAEConfig(norm_adv=True)),
        "normalize_advantages": lambda: hiper.normalize_advantages(f32(n), flags(n)),
        "subgoal_changed": lambda: hiper.subgoal_changed(lay, torch.empty(n, length, dtype=torch.int32, device=meta),
                                                         flags(n, length), flags(n, length)),
        "row_scan": lambda: hiper.row_scan(flags(n, length), *(flags(n, length) for _ in MASKS),
                                           values_low=f32(n, length)),
        "hae_token_outputs": lambda: hiper.hae_token_outputs(
            turns, flags(n, length), **{k: flags(n, length) for k in MASKS}, out={"advantages": f32(n, length)}),
    }
    for op, call in calls.items():
        with pytest.raises(RuntimeError, match="cudaGetDevice"):
            call()


@pytest.mark.skipif(not _C.cuda_compiled(), reason="this build has no CUDA backend")
def test_hae_pipeline_hands_device_tensors_to_the_device_ops(meta_as_cuda, monkeypatch):
    """hiper.hae_pipeline (the trainer's and the verl adapters' HAE) gives token tensors on a
    device to the device ops as they are: the run stops at the first CUDA runtime call, not at
    a copy to the host (a meta tensor has no data to copy)."""
    from hiper import hae_pipeline

    monkeypatch.setattr(hae_pipeline, "runs_on_device",
                        lambda x: isinstance(x, torch.Tensor) and x.device == meta_as_cuda)
    n, length = 6, 10
    flags = lambda: torch.empty(n, length, dtype=torch.bool, device=meta_as_cuda)  # noqa: E731
    heads = ("low", "high", "term")
    with pytest.raises(RuntimeError, match="cudaGetDevice"):
        hae_pipeline.hae_from_masks(
            flags(), traj_ids=np.arange(n), turn_idx=np.zeros(n, np.int64), dones=np.ones(n, bool),
            switch=np.zeros(n, bool), rewards=np.zeros(n, np.float32),
            values={h: torch.empty(n, length, device=meta_as_cuda) for h in heads},
            value_masks={h: flags() for h in heads}, config=hiper.HAEConfig(norm_adv=True),
            action_mask=flags(), subgoal_mask=flags(), switch_mask=flags())


def test_cuda_tensors_without_a_cuda_build_are_refused(meta_as_cuda, monkeypatch):
    monkeypatch.setattr(_C, "cuda_compiled", lambda: False)
    from hiper.ops import _cuda, _device

    monkeypatch.setattr(_cuda, "require_backend", _device.require_backend)
    with pytest.raises(RuntimeError, match="row_scan: got tensors on meta, but this build of hiper has no CUDA"):
        hiper.row_scan(torch.empty(3, 4, dtype=torch.bool, device=meta_as_cuda))


def test_mixing_devices_names_the_argument(meta_as_cuda):
    resp = torch.empty(3, 4, dtype=torch.bool, device=meta_as_cuda)
    with pytest.raises(ValueError, match="subgoal_mask: expected a tensor on meta like the op's other inputs, got "
                                         "a tensor on cpu"):
        hiper.row_scan(resp, subgoal_mask=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"turns.adv_low: expected a tensor on meta .* got host data \(ndarray\)"):
        hiper.hae_token_outputs(hiper.HAETurnOutputs(*(np.zeros(3, np.float32) for _ in TURN_KEYS),
                                                     np.zeros(3, bool)), resp)
    with pytest.raises(ValueError, match=r"dones: expected shape \(6,\), got \(5,\)"):
        hiper.hae_turns(meta_layout(6), torch.empty(6, device="meta"), torch.empty(5, device="meta"),
                        torch.empty(6, device="meta"), torch.empty(6, device="meta"))
    with pytest.raises(TypeError, match="turn_idx: expected integers"):
        hiper.build_layout(torch.empty(3, dtype=torch.int64, device="meta"), torch.empty(3, device="meta"))



def test_outputs_sharing_memory_with_inputs_are_refused():
    from hiper.ops import _cuda

    buf = torch.zeros(3, 4)  # (any device: the check reads storage addresses only)
    with pytest.raises(ValueError, match=r"out\['advantages'\]: shares memory with response_mask"):
        _cuda._check_no_sharing({"advantages": buf}, {"response_mask": buf.view(torch.bool)[:, :4]})
    with pytest.raises(ValueError, match=r"out\['lo_mask'\]: shares memory with advantages"):
        _cuda._check_no_sharing({"advantages": buf, "lo_mask": buf.view(torch.bool)[:, 4:8]}, {})
    _cuda._check_no_sharing({"advantages": buf}, {"response_mask": torch.zeros(3, 4, dtype=torch.bool)})
