"""hiper.integrations.hae_view: HAE on plain per-turn arrays, the one adapter behind verl's
registered estimator (verl_registry.compute_advantage) and the trainer's (estimators.hae_advantages)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_rollouts import TOKENIZER, make_rollouts

import hiper
from hiper.estimators import hae_advantages
from hiper.integrations import verl_registry
from hiper.integrations.hae_view import OUTPUT_KEYS, hae_for_responses


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER)


@pytest.fixture(scope="module")
def masker(tokenizer):
    return hiper.SpanMasker(tokenizer)


@pytest.fixture(scope="module")
def rollouts():
    return make_rollouts(6, seed=3)


def run(r, masker, values, config=None, **overrides):
    inputs = dict(traj_ids=r["env_ids"], turn_idx=r["turn_idx"], dones=r["dones"], rewards=r["rewards"],
                  is_action_valid=r["is_action_valid"], masker=masker,
                  config=config or hiper.HAEConfig())
    inputs.update(overrides)
    return hae_for_responses(r["responses"], r["response_mask"], values, **inputs)


def dataproto(r, **non_tensor_overrides):
    """A verl-like batch: string trajectory ids, object turn indices, 0/1 response mask, three heads."""
    meta = {"traj_uid": np.array([f"traj-{e}" for e in r["env_ids"].tolist()], dtype=object),
            "turn_idx": r["turn_idx"].numpy().astype(object), "dones": r["dones"].numpy(),
            "is_action_valid": r["is_action_valid"].numpy().astype(np.float32), **non_tensor_overrides}
    batch = {"responses": r["responses"], "response_mask": r["response_mask"].long(),
             "token_level_rewards": hiper.last_token_scores(r["rewards"], r["response_mask"]),
             "value_low": r["values"][..., 0], "value_high": r["values"][..., 1], "value_term": r["values"][..., 2]}
    return SimpleNamespace(batch=batch, non_tensor_batch=meta)


def test_verl_batch_and_packed_rollout_get_the_same_advantages(rollouts, tokenizer, masker):
    r = rollouts
    cfg = hiper.HAEConfig(lam_seg=0.9, invalid_action_penalty_coef=0.2)
    data = verl_registry.compute_advantage(dataproto(r), cfg, tokenizer=tokenizer)
    packed = SimpleNamespace(env_ids=r["env_ids"], turn_idx=r["turn_idx"], responses=r["responses"],
                             response_mask=r["response_mask"], rewards=r["rewards"], dones=r["dones"],
                             is_action_valid=r["is_action_valid"])
    spans = masker(r["responses"], r["response_mask"], include_tags=True)
    advantages, loss_mask, targets = hae_advantages(packed, spans, r["values"], masker, cfg)
    assert advantages.abs().sum() > 0
    torch.testing.assert_close(data.batch["advantages"], advantages, rtol=0, atol=0)
    torch.testing.assert_close(data.batch["hae_lo_mask"] | data.batch["hae_hi_mask"] | data.batch["hae_term_mask"],
                               loss_mask, rtol=0, atol=0)
    for head, (index, returns, _, _) in zip(("low", "high", "term"), targets):
        assert index == ("low", "high", "term").index(head)
        torch.testing.assert_close(data.batch[f"returns_{head}"], returns, rtol=0, atol=0)


def test_a_shared_head_is_the_three_heads_alike(rollouts, masker):
    shared = rollouts["values"][..., 0]
    one = run(rollouts, masker, shared)
    three = run(rollouts, masker, {"low": shared, "high": shared, "term": shared})
    assert set(one.outputs) == set(OUTPUT_KEYS)
    for key in OUTPUT_KEYS:
        torch.testing.assert_close(one.outputs[key], three.outputs[key], rtol=0, atol=0)


def test_without_a_term_head_nothing_is_credited_to_the_switch_by_it(rollouts, masker):
    values = rollouts["values"]
    with_term = run(rollouts, masker, {"low": values[..., 0], "high": values[..., 1], "term": values[..., 2]})
    without = run(rollouts, masker, {"low": values[..., 0], "high": values[..., 1]})
    assert with_term.outputs["hae_term_mask"].any()
    assert not without.outputs["hae_term_mask"].any()
    torch.testing.assert_close(with_term.outputs["advantages_low"], without.outputs["advantages_low"], rtol=0, atol=0)


def test_value_masks_mark_where_each_head_is_read(rollouts, masker):
    out = run(rollouts, masker, rollouts["values"][..., 0])
    resp = rollouts["response_mask"]
    for mask in (out.value_masks.value_mask_low, out.value_masks.value_mask_term):
        assert (mask.sum(dim=1) == resp.any(dim=1).long()).all()  # one position per non-empty response
    # The high value is read on segment starts only: every trajectory's first turn is one.
    first_turn = rollouts["turn_idx"] == 0
    assert out.value_masks.value_mask_high[first_turn].any(dim=1).all()


def test_bad_inputs_are_named(rollouts, masker):
    values = rollouts["values"][..., 0]
    with pytest.raises(ValueError, match="turn_idx"):
        run(rollouts, masker, values, turn_idx=rollouts["turn_idx"][:-1])
    with pytest.raises(ValueError, match="values"):
        run(rollouts, masker, {"low": values})
    with pytest.raises(ValueError, match=r"values\['low'\]"):
        run(rollouts, masker, values[:-1])
    with pytest.raises(TypeError, match="values"):
        run(rollouts, masker, [values, values])
    with pytest.raises(TypeError, match="config"):
        run(rollouts, masker, values, config={"gamma": 1.0})


def test_registry_names_a_short_per_turn_field(rollouts, tokenizer):
    data = dataproto(rollouts, turn_idx=rollouts["turn_idx"].numpy()[:-1])
    with pytest.raises(ValueError, match="turn_idx"):
        verl_registry.compute_advantage(data, hiper.HAEConfig(), tokenizer=tokenizer)
