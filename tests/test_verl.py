"""hiper inside verl 0.9.1: the registry entry, the estimator on a real DataProto, the
wrapped compute_advantage, and the mask drop-ins on a real DataProto."""
from __future__ import annotations

import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is not installed (CI installs verl==0.9.1)")

from fake_rollouts import TOKENIZER, make_rollouts  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402

import hiper  # noqa: E402
from hiper.integrations import verl_registry  # noqa: E402
from hiper.integrations.verl import compute_hae_advantage, compute_value_mask, make_hae_masks_and_switch  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER)


def dataproto(seed=0, three_heads=False) -> tuple[DataProto, dict]:
    r = make_rollouts(5, seed=seed)
    n, length = r["responses"].shape
    token_rewards = hiper.last_token_scores(r["rewards"], r["response_mask"])
    tensors = {"responses": r["responses"], "response_mask": r["response_mask"].long(),
               "token_level_rewards": token_rewards}
    if three_heads:
        tensors.update(value_low=r["values"][..., 0], value_high=r["values"][..., 1], value_term=r["values"][..., 2])
    else:
        tensors["values"] = r["values"][..., 0]
    non_tensors = {"uid": np.array([f"game-{e // 2}" for e in r["env_ids"].tolist()], dtype=object),
                   "traj_uid": np.array([f"traj-{e}" for e in r["env_ids"].tolist()], dtype=object),
                   "turn_idx": r["turn_idx"].numpy().astype(object), "dones": r["dones"].numpy(),
                   "is_action_valid": r["is_action_valid"].numpy().astype(np.float32)}
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors), r


def test_import_verl_registers_hiper_hae():
    assert core_algos.get_adv_estimator_fn("hiper_hae") is verl_registry.hae_estimator


@pytest.mark.parametrize("three_heads", [False, True])
def test_registered_estimator_on_a_real_dataproto(monkeypatch, tokenizer, three_heads):
    monkeypatch.setenv("HIPER_TOKENIZER", TOKENIZER)
    data, r = dataproto(three_heads=three_heads)
    fn = core_algos.get_adv_estimator_fn("hiper_hae")
    algorithm = {"gamma": 1.0, "lam": 1.0, "hiper": {"lam_seg": 0.9, "bootstrap_truncated": True}}
    # The keyword arguments verl's compute_advantage builds, plus the batch the wrapper passes.
    adv, ret = fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
                  config=algorithm, index=data.non_tensor_batch["uid"], data=data)
    assert adv.shape == ret.shape == r["responses"].shape
    assert torch.equal(data.batch["advantages"], adv)

    # The same batch through the plain drop-in, heads given explicitly.
    masker_out = hiper.SpanMasker(tokenizer)(r["responses"], r["response_mask"], include_tags=True)
    layout = hiper.build_layout(r["env_ids"], r["turn_idx"], masker_out.is_new_subgoal)
    vm = hiper.SpanMasker(tokenizer)(r["responses"], r["response_mask"], is_boundary=layout.is_boundary.copy(),
                                     outputs=("value_mask_high", "value_mask_low", "value_mask_term"))
    heads = [0, 1, 2] if three_heads else [0, 0, 0]
    view = SimpleNamespace(
        batch={"responses": r["responses"], "response_mask": r["response_mask"],
               "value_low": r["values"][..., heads[0]], "value_high": r["values"][..., heads[1]],
               "value_term": r["values"][..., heads[2]], "value_mask_low": vm.value_mask_low,
               "value_mask_high": vm.value_mask_high, "value_mask_term": vm.value_mask_term},
        non_tensor_batch={"traj_uid": r["env_ids"].numpy(), "turn_idx": r["turn_idx"].numpy(),
                          "dones": r["dones"].numpy(), "switch": masker_out.is_new_subgoal.numpy(),
                          "rewards": r["rewards"].numpy(), "is_action_valid": r["is_action_valid"].numpy()})
    cfg = hiper.HAEConfig(lam_seg=0.9, bootstrap_truncated=True)
    compute_hae_advantage(view, cfg, masker_out.action_mask, masker_out.subgoal_mask, masker_out.switch_mask)
    torch.testing.assert_close(adv, view.batch["advantages"], rtol=0, atol=0)
    # returns: each turn's R^L on its response tokens (the single value head's target).
    turn_ret = view.batch["returns_low"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(ret, turn_ret * r["response_mask"], rtol=0, atol=0)
    assert data.batch["hae_lo_mask"].dtype == torch.bool and data.batch["hae_lo_mask"].any()


def test_estimator_without_the_batch_explains_itself():
    with pytest.raises(RuntimeError, match="whole batch"):
        verl_registry.hae_estimator(token_level_rewards=torch.zeros(1, 2), response_mask=torch.ones(1, 2))


def test_missing_tokenizer_and_values_are_named(monkeypatch, tokenizer):
    monkeypatch.delenv("HIPER_TOKENIZER", raising=False)
    data, _ = dataproto()
    with pytest.raises(ValueError, match="HIPER_TOKENIZER"):
        verl_registry.compute_advantage(data)
    data.pop(batch_keys=["values"])
    with pytest.raises(KeyError, match="critic.enable"):
        verl_registry.compute_advantage(data, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="algorithm.hiper"):
        verl_registry.hae_config_from({"hiper": {"lamda": 1.0}})


def test_wrapped_compute_advantage_routes_only_hiper_hae(monkeypatch):
    monkeypatch.setenv("HIPER_TOKENIZER", TOKENIZER)
    calls = []
    module = types.ModuleType("fake_trainer")
    module.compute_advantage = lambda data, adv_estimator, *a, **k: calls.append(adv_estimator) or data
    verl_registry._wrap_compute_advantage(module)
    verl_registry._wrap_compute_advantage(module)  # idempotent
    data, _ = dataproto(seed=1)
    module.compute_advantage(data, "gae", gamma=1.0, lam=1.0)
    assert calls == ["gae"] and "advantages" not in data.batch.keys()
    module.compute_advantage(data, core_algos.AdvantageEstimator.GRPO, config={"gamma": 1.0})
    assert len(calls) == 2
    module.compute_advantage(data, "hiper_hae", gamma=0.99, lam=0.95, config=None)
    assert len(calls) == 2 and "advantages" in data.batch.keys()


def test_mask_dropins_on_a_real_dataproto(tokenizer):
    data, r = dataproto(seed=2)
    data.batch["response_mask"] = r["response_mask"]
    action, subgoal, switch, is_new = make_hae_masks_and_switch(data, tokenizer, include_tags_mask=True)
    want = hiper.SpanMasker(tokenizer)(r["responses"], r["response_mask"], include_tags=True)
    assert torch.equal(action, want.action_mask) and torch.equal(switch, want.switch_mask)
    data.non_tensor_batch["switch"] = is_new
    high, low, term = compute_value_mask(data, tokenizer)
    assert high.shape == low.shape == term.shape == r["responses"].shape and low.any(dim=1).all()
