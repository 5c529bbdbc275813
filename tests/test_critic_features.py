"""A shared critic's update fits its heads on the hidden states kept from the step's scoring
pass (hiper.critic_features) instead of running the backbone again: the same heads, to 1e-6."""
from __future__ import annotations

import pytest
import torch

from hiper import critic_features
from hiper.critic_features import TargetFeatures

from test_lean_update import tiny_trainer


@pytest.mark.parametrize("estimator", ["hae", "gae"])  # targets at value-mask positions; at every token
def test_reusing_the_scoring_pass_gives_the_heads_a_backbone_pass_gives(tmp_path, monkeypatch, estimator):
    settings = dict(shared_critic=True, estimator=estimator, steps=1, ppo_epochs=2, mini_batch_size=3,
                    micro_batch_size=2, critic_lr=1e-2)
    rerun = tiny_trainer(tmp_path / "backbone", **settings)
    before = rerun.critic.heads.linear.weight.detach().clone()
    with monkeypatch.context() as m:
        m.setattr(critic_features, "FEATURE_BUDGET_BYTES", 0)  # nothing fits: the backbone runs again
        passes = []
        original = rerun.critic.head_outputs
        m.setattr(rerun.critic, "head_outputs", lambda *a: passes.append(1) or original(*a))
        rerun_metrics = rerun.train_step()
    assert passes, "the comparison run did not go through the backbone"

    reuse = tiny_trainer(tmp_path / "reuse", **settings)

    def no_backbone(*args):
        raise AssertionError("the critic update ran the backbone")

    monkeypatch.setattr(reuse.critic, "head_outputs", no_backbone)
    reuse_metrics = reuse.train_step()

    assert reuse_metrics["rows"] == rerun_metrics["rows"] and reuse_metrics["success_rate"] == rerun_metrics["success_rate"]
    assert float((rerun.critic.heads.linear.weight.detach() - before).abs().max()) > 1e-4  # the update moved them
    for name, a in rerun.critic.heads.state_dict().items():
        b = reuse.critic.heads.state_dict()[name]
        assert torch.allclose(a, b, rtol=0, atol=1e-6), f"{name}: worst difference {float((a - b).abs().max()):.3g}"
    assert reuse_metrics["critic_loss"] == pytest.approx(rerun_metrics["critic_loss"], rel=1e-5, abs=1e-7)
    # A rank short of rows gets an empty mini-batch: no pass (and no backward through nothing).
    kept = TargetFeatures.at_targets(torch.zeros(2, 4, 64), [(0, None, torch.ones(2, 4, dtype=torch.bool), 1.0)])
    assert list(reuse._critic_passes(None, torch.tensor([], dtype=torch.long), 4, kept)) == []


def test_target_features_put_each_head_output_where_its_row_and_column_are():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[False, True, False, False], [True, False, False, True]])
    kept = TargetFeatures.at_targets(hidden, [(0, torch.zeros(2, 4), mask, 1.0)])
    heads = torch.nn.Linear(3, 2)
    rows = torch.tensor([1, 0])  # a mini-batch lists its rows in any order
    got = kept.head_outputs(heads, rows, R=4, device=torch.device("cpu"))
    want = heads(hidden[rows]) * mask[rows].unsqueeze(-1)
    assert torch.allclose(got, want)
    only_first = kept.head_outputs(heads, torch.tensor([0]), R=4, device=torch.device("cpu"))
    assert torch.allclose(only_first, want[1:])


def test_the_budget_bounds_what_a_step_keeps():
    assert critic_features.fits(8, 32, 576)
    assert not critic_features.fits(1024, 512, 3584)  # 7.5 GB: the backbone runs again
