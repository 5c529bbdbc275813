"""hiper.hae_pipeline: HAE on plain per-turn arrays and token tensors, the one sequence behind
the trainer's estimator (estimators.hae_advantages) and the verl adapters (integrations.verl,
integrations.verl_registry), run where the tensors are."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_rollouts import TOKENIZER, make_rollouts

import hiper
from hiper import hae_pipeline
from hiper.estimators import hae_advantages
from hiper.hae_pipeline import OUTPUT_KEYS, hae_for_responses, hae_from_masks
from hiper.integrations import verl_registry


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


def packed(r):
    """The fields of a hiper.buffer.PackedBatch that the trainer's estimator reads."""
    return SimpleNamespace(env_ids=r["env_ids"], turn_idx=r["turn_idx"], responses=r["responses"],
                           response_mask=r["response_mask"], rewards=r["rewards"], dones=r["dones"],
                           is_action_valid=r["is_action_valid"])


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
    spans = masker(r["responses"], r["response_mask"], include_tags=True)
    advantages, loss_mask, targets = hae_advantages(packed(r), spans, r["values"], masker, cfg)
    assert advantages.abs().sum() > 0
    torch.testing.assert_close(data.batch["advantages"], advantages, rtol=0, atol=0)
    torch.testing.assert_close(data.batch["hae_lo_mask"] | data.batch["hae_hi_mask"] | data.batch["hae_term_mask"],
                               loss_mask, rtol=0, atol=0)
    for head, (index, returns, _, _) in zip(("low", "high", "term"), targets):
        assert index == ("low", "high", "term").index(head)
        torch.testing.assert_close(data.batch[f"returns_{head}"], returns, rtol=0, atol=0)


def test_the_trainers_hae_runs_where_its_tensors_are(rollouts, masker, monkeypatch):
    """On the host: nothing goes through Tensor.cpu() (the per-turn metadata is already on the
    host), the ops are handed the caller's own (N, L) tensors, and the results are CPU tensors."""
    r = rollouts
    cfg = hiper.HAEConfig(norm_adv=True, keep_consistency_penalty=-0.3, invalid_action_penalty_coef=0.1)
    spans = masker(r["responses"], r["response_mask"], include_tags=True)
    seen = {}
    row_scan, token_outputs = hae_pipeline.row_scan, hae_pipeline.hae_token_outputs

    def spy_row_scan(response_mask, *masks, **values):
        seen["row_scan"] = (response_mask, values)
        return row_scan(response_mask, *masks, **values)

    def spy_token_outputs(turns, response_mask, **kwargs):
        seen["token_outputs"] = (response_mask, kwargs)
        return token_outputs(turns, response_mask, **kwargs)

    copied = []
    to_cpu = torch.Tensor.cpu
    monkeypatch.setattr(hae_pipeline, "row_scan", spy_row_scan)
    monkeypatch.setattr(hae_pipeline, "hae_token_outputs", spy_token_outputs)
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t, *a, **k: copied.append(tuple(t.shape)) or to_cpu(t, *a, **k))
    advantages, loss_mask, targets = hae_advantages(packed(r), spans, r["values"], masker, cfg)
    monkeypatch.undo()

    assert copied == []
    for name in ("row_scan", "token_outputs"):
        assert seen[name][0].data_ptr() == r["response_mask"].data_ptr(), name
    assert seen["token_outputs"][1]["subgoal_mask"].data_ptr() == spans.subgoal_mask.data_ptr()
    assert seen["row_scan"][1]["values_low"].data_ptr() == r["values"].data_ptr()  # read in place, not copied
    for t in (advantages, loss_mask, *(x for target in targets for x in target[1:3])):
        assert t.device.type == "cpu"


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


def test_from_masks_is_what_hae_for_responses_runs(rollouts, masker):
    r, cfg = rollouts, hiper.HAEConfig(norm_adv=True, keep_consistency_penalty=-0.2)
    heads = {h: r["values"][..., k] for k, h in enumerate(("low", "high", "term"))}
    whole = run(r, masker, heads, config=cfg)
    spans = masker(r["responses"], r["response_mask"], include_tags=True)
    vm = whole.value_masks
    parts = hae_from_masks(
        r["response_mask"], traj_ids=r["env_ids"].numpy(), turn_idx=r["turn_idx"].tolist(), dones=r["dones"],
        switch=spans.is_new_subgoal, rewards=r["rewards"].double(), values=heads,
        value_masks={"low": vm.value_mask_low, "high": vm.value_mask_high, "term": vm.value_mask_term},
        config=cfg, is_action_valid=r["is_action_valid"], action_mask=spans.action_mask,
        subgoal_mask=spans.subgoal_mask, switch_mask=spans.switch_mask, responses=r["responses"])
    for key in OUTPUT_KEYS:
        assert torch.equal(parts[key], whole.outputs[key]), key


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
    with pytest.raises(ValueError, match="rewards: expected"):
        run(rollouts, masker, values, rewards=rollouts["rewards"][1:])


def test_bad_inputs_to_the_masked_sequence_are_named(rollouts):
    r = rollouts
    n = r["responses"].shape[0]
    resp = r["response_mask"]
    base = dict(traj_ids=r["env_ids"], turn_idx=r["turn_idx"], dones=r["dones"], switch=np.zeros(n, bool),
                rewards=r["rewards"], values={"low": r["values"][..., 0]}, value_masks={"low": resp},
                config=hiper.HAEConfig())
    assert hae_from_masks(resp, **base)["advantages"].shape == resp.shape
    cases = [(dict(values={"low": r["values"][..., 0], "lo": r["values"][..., 0]}), ValueError, "values: unknown"),
             (dict(values={"high": r["values"][..., 0]}), ValueError, "values: the 'low' head"),
             (dict(value_masks={}), ValueError, "value_masks: the 'low' mask"),
             (dict(values={"low": r["values"][..., 0], "term": r["values"][..., 2]}), ValueError,
              "value_masks: the 'term' mask"),
             (dict(switch=np.zeros(n - 1, bool)), ValueError, "switch: expected"),
             (dict(traj_ids=r["env_ids"][:-1]), ValueError, "traj_ids: expected"),
             (dict(config=hiper.HAEConfig(keep_consistency_penalty=-0.1)), ValueError, "responses: required")]
    for change, error, message in cases:
        kwargs = {**base, **change}
        if "responses" in message:
            kwargs["subgoal_mask"] = resp
        with pytest.raises(error, match=message):
            hae_from_masks(resp, **kwargs)
    with pytest.raises(ValueError, match="out: unknown key"):
        hae_from_masks(resp, **base, out={"advantage": torch.zeros(resp.shape)})


def test_registry_names_a_short_per_turn_field(rollouts, tokenizer):
    data = dataproto(rollouts, turn_idx=rollouts["turn_idx"].numpy()[:-1])
    with pytest.raises(ValueError, match="turn_idx"):
        verl_registry.compute_advantage(data, hiper.HAEConfig(), tokenizer=tokenizer)
