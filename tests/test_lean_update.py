"""The lean update path: micro-batches by a token budget, each trimmed to its rows' own lengths,
give the passes of the padded ones; bf16 autocast on the CPU when asked for; no reference pass
without a KL term."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hiper.trainer import Trainer, TrainConfig

from numerics import assert_close

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
PROMPT, R = 24, 10


def tiny_trainer(tmp_path, **overrides) -> Trainer:
    values = dict(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=TOKENIZER, envs=2,
                  max_turns=2, max_new_tokens=R, micro_batch_size=3, mini_batch_size=8,
                  run_dir=str(tmp_path / "run"), actor_lr=1e-3, critic_lr=1e-3, gradient_checkpointing=False,
                  temperature=0.7)
    values.update(overrides)
    return Trainer(TrainConfig(**values))


def ragged_batch(rows: int = 8, seed: int = 0) -> SimpleNamespace:
    """Rows of a left-padded prompt and a right-padded response of different lengths, as a rollout packs them."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(3, PROMPT + 1, (rows,), generator=g)
    responses = torch.randint(1, R + 1, (rows,), generator=g)
    responses[0] = 0  # a response with no token at all (a turn cut before its first)
    columns = torch.arange(PROMPT + R)
    mask = ((columns >= PROMPT - prompts[:, None]) & (columns < PROMPT + responses[:, None])).long()
    ids = torch.randint(5, 2000, (rows, PROMPT + R), generator=g) * mask
    return SimpleNamespace(input_ids=ids, attention_mask=mask, response_mask=mask[:, PROMPT:].bool(), num_rows=rows,
                           prompts=prompts, responses=responses)


def test_token_budget_passes_cover_every_row_once_trimmed_to_its_longest(tmp_path):
    trainer = tiny_trainer(tmp_path, micro_batch_tokens=64)
    batch = ragged_batch(12)
    passes = list(trainer._micro_batches(batch, torch.arange(12), R))
    rows = torch.cat([idx for idx, *_ in passes])
    assert sorted(rows.tolist()) == list(range(12))
    for idx, ids, am, r in passes:
        width = int(batch.prompts[idx].max()) + max(1, int(batch.responses[idx].max()))
        assert ids.shape == am.shape == (len(idx), width) and r == max(1, int(batch.responses[idx].max()))
        assert len(idx) == 1 or len(idx) * width <= 64  # a row over the budget passes alone
        torch.testing.assert_close(am.sum(1), batch.attention_mask[idx].sum(1))  # no real token cut
    # Sorted by length: the longest rows share the first passes, and most passes are narrower than the batch.
    assert sum(ids.shape[1] < PROMPT + R for _, ids, *_ in passes) >= len(passes) - 1
    untrimmed = list(tiny_trainer(tmp_path / "b")._micro_batches(batch, torch.arange(12), R))
    assert [len(idx) for idx, *_ in untrimmed] == [3, 3, 3, 3] and all(r == R for *_, r in untrimmed)


@pytest.mark.parametrize("budget", [40, 150])
def test_trimmed_passes_give_the_padded_ones_values_logprobs_and_updates(tmp_path, budget):
    from hiper.policy import response_logprobs

    batch = ragged_batch(8)
    padded, trimmed = tiny_trainer(tmp_path / "a"), tiny_trainer(tmp_path / "b", micro_batch_tokens=budget)
    mask = batch.response_mask

    def logprobs(trainer):
        return trainer._forward_all(batch, lambda ids, am, r: response_logprobs(trainer.actor, ids, am, r), R)

    old_logp, old_values = logprobs(padded), padded._forward_all(batch, padded.critic.values, R)
    assert_close(logprobs(trimmed)[mask], old_logp[mask], rtol=1e-5, atol=1e-5, name="log-probs")
    torch.testing.assert_close(trimmed._forward_all(batch, trimmed.critic.values, R)[mask], old_values[mask])
    # One actor and one critic update from the same weights and mini-batches: the same new weights.
    advantages = torch.randn(8, R, generator=torch.Generator().manual_seed(1)) * mask
    targets = [(0, torch.randn(8, R, generator=torch.Generator().manual_seed(2)), mask, 1.0)]
    stats = []
    for trainer in (padded, trimmed):
        torch.manual_seed(3)  # the mini-batch permutation
        actor_stats = trainer._update_actor(batch, old_logp, old_logp - 0.01, advantages, mask, R)
        torch.manual_seed(3)
        stats.append((actor_stats, trainer._update_critic(batch, old_values, targets, R)))
    for key in ("pg_loss", "entropy", "kl"):
        assert stats[1][0][key] == pytest.approx(stats[0][0][key], rel=1e-4, abs=1e-6), key
    assert stats[1][1]["critic_loss"] == pytest.approx(stats[0][1]["critic_loss"], rel=1e-4)
    # The mini-batch is the whole batch, so the gradients left after the update are its full
    # gradients (compared rather than AdamW's step, which is about lr for any gradient, even ~1e-9).
    for model, own, other in (("actor", padded.actor_parameters, trimmed.actor_parameters),
                              ("critic", padded.critic.trainable_parameters(), trimmed.critic.trainable_parameters())):
        scale = float(max(p.grad.abs().max() for p in own))
        assert scale > 0
        for i, (a, b) in enumerate(zip(own, other)):
            assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5 * scale,
                         name=f"{model} parameter {i} {tuple(a.shape)}.grad")


def test_bf16_autocast_on_the_cpu_keeps_log_probs_close_to_fp32(tmp_path):
    from hiper.policy import response_logprobs

    batch = ragged_batch(6)
    fp32, bf16 = tiny_trainer(tmp_path / "a"), tiny_trainer(tmp_path / "b", precision="bf16")
    assert not fp32.bf16 and bf16.bf16  # auto is fp32 on a CPU without native bf16 (conftest)
    outs = [t._forward_all(batch, lambda ids, am, r: response_logprobs(t.actor, ids, am, r), R)[batch.response_mask]
            for t in (fp32, bf16)]
    assert not torch.equal(outs[0], outs[1])  # it did run in bf16
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0.05)


def test_precision_and_budget_are_checked():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        TrainConfig(micro_batch_tokens=-1)


def test_a_shared_critic_reads_its_values_from_the_log_probs_forward(tmp_path, monkeypatch):
    from hiper.policy import response_logprobs

    trainer = tiny_trainer(tmp_path, shared_critic=True, micro_batch_size=8)
    batch = ragged_batch(8)
    with torch.no_grad():
        trainer.critic.heads.linear.weight.normal_()  # heads start at zero: make the values informative
    mask = batch.response_mask
    both = trainer._forward_all(batch, lambda ids, am, r: trainer._logprobs_and_values(ids, am, r, 0.7), R)
    alone = trainer._forward_all(batch, lambda ids, am, r: response_logprobs(trainer.actor, ids, am, r,
                                                                             temperature=0.7), R)
    torch.testing.assert_close(both[..., 0][mask], alone[mask])
    torch.testing.assert_close(both[..., 1:][mask], trainer._forward_all(batch, trainer.critic.values, R)[mask])
    # In a step: no values pass of its own, and the log-probs' passes return the hidden states.
    calls, values_calls = [], []
    head_outputs = trainer.critic.head_outputs  # every critic pass (values() reads through it)

    def counting_values(*args):
        values_calls.append(torch.is_grad_enabled())
        return head_outputs(*args)

    monkeypatch.setattr(trainer.critic, "head_outputs", counting_values)

    def counting(model, *args, **kwargs):
        calls.append((torch.is_grad_enabled(), kwargs.get("with_hidden", False)))
        return response_logprobs(model, *args, **kwargs)

    monkeypatch.setattr("hiper.trainer.response_logprobs", counting)
    trainer.config.kl_coef = 0.0  # the reference pass would be another call (tested elsewhere)
    metrics = trainer.train_step()
    scoring = [with_hidden for grad, with_hidden in calls if not grad]  # the old log-probs' passes
    assert scoring and all(scoring) and metrics["timings"]["values"] == 0.0
    # No critic pass at all: the values came from the log-probs' forward, and the update fits the
    # heads on the hidden states that forward kept (hiper.critic_features).
    assert not values_calls
