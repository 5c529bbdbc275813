"""Bad input raises ValueError / TypeError naming the argument; it never reaches the core unchecked."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hiper
from hiper import _C
from hiper.integrations.verl import compute_hae_advantage

from batches import make_batch


@pytest.fixture
def rows():
    n = 6
    return dict(traj=np.array([0, 0, 0, 1, 1, 2]), turn=np.array([0, 1, 2, 0, 1, 0]),
                rewards=np.zeros(n, np.float32), done=np.ones(n, bool), v=np.zeros(n, np.float32))


def test_length_mismatch_names_argument(rows):
    with pytest.raises(ValueError, match="turn_idx"):
        hiper.build_layout(rows["traj"], rows["turn"][:-1])
    lay = hiper.build_layout(rows["traj"], rows["turn"])
    with pytest.raises(ValueError, match="v_high"):
        hiper.hae_turns(lay, rows["rewards"], rows["done"], rows["v"], rows["v"][:-1])
    with pytest.raises(ValueError, match="rewards"):
        hiper.hae_turns(lay, rows["rewards"][:-1], rows["done"][:-1], rows["v"][:-1], rows["v"][:-1])


@pytest.mark.parametrize("name", ["rewards", "v_low", "v_high", "v_term"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(rows, name, bad):
    lay = hiper.build_layout(rows["traj"], rows["turn"])
    args = dict(rewards=rows["rewards"].copy(), v_low=rows["v"].copy(), v_high=rows["v"].copy(),
                v_term=rows["v"].copy())
    args[name][2] = bad
    with pytest.raises(ValueError, match=f"{name}: must be finite"):
        hiper.hae_turns(lay, args["rewards"], rows["done"], args["v_low"], args["v_high"], args["v_term"])


def test_wrong_dtypes_and_ranks(rows):
    with pytest.raises(TypeError, match="turn_idx: expected integers"):
        hiper.build_layout(rows["traj"], rows["turn"].astype(np.float32))
    with pytest.raises(ValueError, match="traj_ids: expected 1 dimension"):
        hiper.build_layout(rows["traj"][None], rows["turn"])
    with pytest.raises(TypeError, match="rewards"):
        lay = hiper.build_layout(rows["traj"], rows["turn"])
        hiper.shape_rewards(lay, np.array(["a"] * 6))


def test_bad_config_values():
    with pytest.raises(ValueError, match="gamma"):
        hiper.HAEConfig(gamma=1.5)
    with pytest.raises(ValueError, match="keep_penalty_mode"):
        hiper.HAEConfig(keep_penalty_mode="sometimes")
    with pytest.raises(ValueError, match="keep_penalty"):
        hiper.HAEConfig(keep_penalty=float("nan"))


def test_core_rejects_unchecked_arrays_directly():
    """Callers of hiper._C (other trainers) get the same checks at the binding boundary."""
    with pytest.raises(TypeError, match="traj_ids: expected dtype int64"):
        _C.build_layout(np.zeros(3, np.int32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="turn_idx: expected shape"):
        _C.build_layout(np.zeros(3, np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.build_layout(np.zeros(6, np.int64)[::2], np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="numpy array"):
        _C.build_layout([0, 1], np.zeros(2, np.int64))
    resp = np.ones((2, 4), bool)
    with pytest.raises(ValueError, match="action_mask: expected shape"):
        _C.row_scan(resp, np.ones((2, 5), bool))
    lay = _C.build_layout(np.zeros(2, np.int64), np.arange(2, dtype=np.int64))
    out = np.zeros(2, np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out: output array is read-only"):
        _C.shape_rewards(lay, np.zeros(2, np.float32), None, None, None, 0.0, "fixed", 0.0, 0.0, out)
    with pytest.raises(ValueError, match="rewards: has 3 rows but the layout has 2"):
        _C.shape_rewards(lay, np.zeros(3, np.float32), None, None, None, 0.0, "fixed", 0.0, 0.0,
                         np.zeros(3, np.float32))


def test_the_core_reads_the_config_whole():
    """HAEConfig crosses into the compiled pipeline as one object, read field by field in one
    place (csrc/bindings/params.h); what it refuses names the field."""
    lay = _C.build_layout(np.zeros(2, np.int64), np.arange(2, dtype=np.int64))

    def arrays():
        f = lambda: np.zeros(2, np.float32)  # noqa: E731
        return dict(rewards=np.array([1.0, 2.0], np.float32), is_new_subgoal=None, is_action_valid=None,
                    subgoal_changed=None, dones=np.array([False, True]), v_low=f(), v_high=f(), v_term=None,
                    credited_low=None, credited_high=None, credited_term=None, shaped=f(), adv_low=f(), ret_low=f(),
                    adv_high=f(), ret_high=f(), adv_term=f(), ret_term=f())

    given = arrays()
    _C.hae_pipeline(layout=lay, config=hiper.HAEConfig(gamma=0.5, keep_penalty=-1.0), **given)
    # Shaped rewards [0, 1]; R^L_0 = 0 + 0.5 * 1: keep_penalty and gamma were both read.
    np.testing.assert_array_equal(given["ret_low"], [0.5, 1.0])
    with pytest.raises(TypeError, match="config: expected a hiper.HAEConfig, got dict without 'keep_penalty'"):
        _C.hae_pipeline(layout=lay, config={"gamma": 1.0}, **arrays())
    cfg = hiper.HAEConfig()
    cfg.keep_penalty_mode = 3
    with pytest.raises(TypeError, match="config.keep_penalty_mode: expected a string, got 3"):
        _C.hae_pipeline(layout=lay, config=cfg, **arrays())
    cfg = hiper.HAEConfig()
    cfg.lam_seg = 1.5  # changed after HAEConfig checked it: the core checks it again
    with pytest.raises(ValueError, match=r"lam_seg: expected a number in \[0, 1\]"):
        hiper.hae(np.zeros(2, np.int64), np.arange(2), np.zeros(2, np.float32), np.ones(2, bool),
                  np.zeros(2, np.float32), np.zeros(2, np.float32), config=cfg)


def test_output_buffer_checks():
    n, L = 3, 4
    turns = hiper.HAETurnOutputs(*(np.zeros(n, np.float32) for _ in range(6)), np.ones(n, bool))
    resp = torch.ones(n, L, dtype=torch.bool)
    with pytest.raises(TypeError, match="out\\['advantages'\\]: expected dtype float32"):
        hiper.hae_token_outputs(turns, resp, out={"advantages": torch.zeros(n, L, dtype=torch.float64)})
    with pytest.raises(ValueError, match="out\\['advantages'\\]: expected shape"):
        hiper.hae_token_outputs(turns, resp, out={"advantages": torch.zeros(n, L + 1)})
    with pytest.raises(ValueError, match="contiguous"):
        hiper.hae_token_outputs(turns, resp, out={"advantages": torch.zeros(L, n).t()})
    with pytest.raises(ValueError, match="outputs: unknown"):
        hiper.hae_token_outputs(turns, resp, outputs=("advantage",))


def test_dropin_missing_keys_and_bad_config():
    b = make_batch(0)
    with pytest.raises(TypeError, match="config"):
        compute_hae_advantage(b, {"gamma": 1.0})
    del b.non_tensor_batch["dones"]
    with pytest.raises(KeyError, match="dones"):
        compute_hae_advantage(b, hiper.HAEConfig())
    b = make_batch(0)
    b.non_tensor_batch["rewards"] = b.non_tensor_batch["rewards"][:-1]
    with pytest.raises(ValueError, match="rewards"):
        compute_hae_advantage(b, hiper.HAEConfig())
    b = make_batch(0)
    b.non_tensor_batch["rewards"] = b.non_tensor_batch["rewards"].copy()
    b.non_tensor_batch["rewards"][0] = np.nan
    with pytest.raises(ValueError, match="rewards: must be finite"):
        compute_hae_advantage(b, hiper.HAEConfig())
