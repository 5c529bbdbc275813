"""The PPO losses against hand-computed values and veRL's formulas, edge cases included; and
the Trainer's update loops, whose accumulated gradient is the mini-batch's token mean however
the mini-batch is cut into micro-batches or spread over ranks."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hiper.losses import (
    clipped_value_loss,
    entropy_from_logits,
    entropy_from_logprobs,
    low_var_kl,
    masked_mean,
    ppo_policy_loss,
)
from hiper.policy import response_logprobs


def verl_policy_loss(logp, old_logp, adv, clip_ratio=0.2, clip_ratio_c=3.0):
    """Per-token dual-clip loss written the way veRL's compute_policy_loss spells it."""
    ratio = torch.exp(torch.clamp(logp - old_logp, min=-20.0, max=20.0))
    pg_losses1 = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1 - clip_ratio, 1 + clip_ratio)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -adv * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    return torch.where(adv < 0, clip_pg_losses2, clip_pg_losses1)


def verl_k3(logp, ref_logp):
    kl = torch.clamp(ref_logp - logp, min=-20, max=20)
    return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)


# (ratio, advantage, per-token loss by hand)
DUAL_CLIP_CASES = [
    (1.0, 1.0, -1.0),     # on-policy: -A
    (1.5, 1.0, -1.2),     # A > 0, ratio above 1 + eps: clipped to -1.2 A
    (0.5, 1.0, -0.5),     # A > 0, ratio below 1 - eps: the unclipped term is larger
    (1.5, -1.0, 1.5),     # A < 0, ratio above 1 + eps: unclipped, below the dual bound 3|A|
    (0.5, -1.0, 0.8),     # A < 0, ratio below 1 - eps: clipped to (1 - eps)|A|
    (10.0, -1.0, 3.0),    # A < 0, huge ratio: the dual clip caps the loss at 3|A|
    (10.0, -2.0, 6.0),
    (1.1, 0.5, -0.55),    # inside the trust region: -A r
]


def test_dual_clip_surrogate_by_hand():
    ratio, adv, expected = (torch.tensor(col, dtype=torch.float64) for col in zip(*DUAL_CLIP_CASES))
    old = torch.full_like(ratio, -2.0)
    logp = old + ratio.log()
    mask = torch.ones_like(ratio, dtype=torch.bool)
    for k in range(len(DUAL_CLIP_CASES)):  # one token at a time, so each case is checked on its own
        loss, _ = ppo_policy_loss(logp[k:k + 1], old[k:k + 1], adv[k:k + 1], mask[k:k + 1])
        assert loss.item() == pytest.approx(expected[k].item(), abs=1e-12), DUAL_CLIP_CASES[k]
    loss, stats = ppo_policy_loss(logp, old, adv, mask)
    assert loss.item() == pytest.approx(expected.mean().item(), abs=1e-12)
    # As veRL's pg_clipfrac: the clipped term is the larger one on (1.5, +1) and (0.5, -1) only; on
    # (10, -1) and (10, -2) the dual clip binds, which it does not count.
    assert stats["clip_frac"] == pytest.approx(0.25)
    assert stats["approx_kl"] == pytest.approx(-ratio.log().mean().item())


def test_policy_loss_matches_verl_on_random_tokens():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 11, generator=g, dtype=torch.float64) * 5
    old = logp + torch.randn(6, 11, generator=g, dtype=torch.float64) * 0.5
    adv = torch.randn(6, 11, generator=g, dtype=torch.float64)
    mask = torch.rand(6, 11, generator=g) < 0.7
    loss, _ = ppo_policy_loss(logp, old, adv, mask, clip_ratio=0.25, clip_ratio_c=2.5)
    per_token = verl_policy_loss(logp, old, adv, 0.25, 2.5)
    assert loss.item() == pytest.approx((per_token[mask].sum() / mask.sum()).item(), abs=1e-12)


def test_policy_gradient_by_hand():
    # Inside the trust region d(-A r)/d logp = -A r; where the clip binds the gradient is 0.
    logp = torch.tensor([math.log(1.1), math.log(1.5), math.log(10.0)], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([2.0, 1.0, -1.0], dtype=torch.float64)
    loss, _ = ppo_policy_loss(logp, torch.zeros(3, dtype=torch.float64), adv, torch.ones(3, dtype=torch.bool))
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([-2.0 * 1.1 / 3, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("gap", [200.0, -200.0, 1e4])
@pytest.mark.parametrize("adv", [1.0, -1.0, 0.0])
def test_policy_loss_finite_at_extreme_ratios(gap, adv):
    # float32 exp overflows above ~88.7; ratio inf times A = 0 would be NaN without the log-ratio clamp.
    old = torch.tensor([-1.0, -3.0])
    logp = (old + gap).requires_grad_(True)
    loss, stats = ppo_policy_loss(logp, old, torch.full((2,), adv), torch.ones(2, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert math.isfinite(stats["clip_frac"]) and math.isfinite(stats["approx_kl"])
    expected = verl_policy_loss(logp.detach(), old, torch.full((2,), adv)).mean()
    assert loss.item() == pytest.approx(expected.item())


def test_masked_positions_never_leak_into_the_loss():
    # Garbage (huge log-ratios, advantages) at masked positions must not change the value or gradient.
    logp = torch.tensor([[-1.0, -2.0, 500.0]], requires_grad=True)
    old = torch.tensor([[-1.2, -1.9, -500.0]])
    adv = torch.tensor([[0.5, -0.3, 0.0]])
    mask = torch.tensor([[True, True, False]])
    loss, _ = ppo_policy_loss(logp, old, adv, mask)
    loss.backward()
    reference, _ = ppo_policy_loss(logp.detach()[:, :2], old[:, :2], adv[:, :2], mask[:, :2])
    assert loss.item() == pytest.approx(reference.item()) and logp.grad[0, 2] == 0.0
    assert torch.isfinite(logp.grad).all()


def test_empty_mask_gives_zero_loss_and_zero_gradient():
    logp = torch.randn(2, 4, requires_grad=True)
    values = torch.randn(2, 4, requires_grad=True)
    none = torch.zeros(2, 4, dtype=torch.bool)
    pg, stats = ppo_policy_loss(logp, logp.detach() + 0.3, torch.randn(2, 4), none)
    vf = clipped_value_loss(values, torch.zeros(2, 4), torch.ones(2, 4), none)
    assert pg.item() == 0.0 and vf.item() == 0.0 and stats == {"clip_frac": 0.0, "approx_kl": 0.0}
    (pg + vf).backward()
    assert torch.count_nonzero(logp.grad) == 0 and torch.count_nonzero(values.grad) == 0


def test_token_count_normalises_by_the_given_count():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert masked_mean(x, mask).item() == pytest.approx(10.0 / 3)
    assert masked_mean(x, mask, token_count=8).item() == pytest.approx(10.0 / 8)
    assert masked_mean(x, mask, token_count=torch.tensor(5.0)).item() == pytest.approx(2.0)
    assert masked_mean(x, mask, token_count=0.5).item() == pytest.approx(20.0)  # a share of a global count
    # Micro-batch token sums over a mini-batch count add up to the mini-batch's token mean.
    count = mask.sum()
    parts = [masked_mean(x[i:i + 1], mask[i:i + 1], count) for i in range(2)]
    assert sum(parts).item() == pytest.approx(masked_mean(x, mask).item())
    logp, old, adv = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    whole, _ = ppo_policy_loss(logp, old, adv, mask)
    halves = [ppo_policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1], token_count=count)[0]
              for i in range(2)]
    assert (halves[0] + halves[1]).item() == pytest.approx(whole.item(), abs=1e-6)


# (value, old value, return, loss by hand) with cliprange 0.5
VALUE_CASES = [
    (1.0, 0.0, 2.0, 2.25),   # moved towards R beyond the clip: clipped v = 0.5, (0.5 - 2)^2 dominates
    (0.2, 0.0, 0.1, 0.01),   # inside the clip range: plain squared error
    (-1.0, 0.0, -2.0, 2.25),
    (3.0, 0.0, 0.0, 9.0),    # overshoot: the unclipped error is the larger one
    (0.0, 0.0, 1.0, 1.0),
]


def test_clipped_value_loss_by_hand():
    v, old, ret, expected = (torch.tensor(col, dtype=torch.float64) for col in zip(*VALUE_CASES))
    v.requires_grad_(True)
    for k in range(len(VALUE_CASES)):
        loss = clipped_value_loss(v[k:k + 1], old[k:k + 1], ret[k:k + 1], torch.ones(1, dtype=torch.bool))
        assert loss.item() == pytest.approx(expected[k].item(), abs=1e-12), VALUE_CASES[k]
    mask = torch.tensor([True, True, False, True, True])
    loss = clipped_value_loss(v, old, ret, mask)
    assert loss.item() == pytest.approx(expected[mask].mean().item(), abs=1e-12)  # no 0.5 factor
    loss.backward()
    # d/dv of the mean: 2 (v - R) / 4 where the unclipped term is active, 0 where the clipped one is or masked.
    torch.testing.assert_close(v.grad, torch.tensor([0.0, 0.05, 0.0, 1.5, -0.5], dtype=torch.float64))


def test_k3_kl_by_hand_and_against_verl():
    d = torch.tensor([0.0, 1.0, -1.0, 3.0, -15.0, 0.5])  # ref - logp
    logp = torch.full_like(d, -2.0)
    kl = low_var_kl(logp, logp + d)
    by_hand = torch.tensor([0.0, math.e - 2.0, math.exp(-1.0), 10.0, 10.0, math.exp(0.5) - 1.5])
    torch.testing.assert_close(kl, by_hand)
    g = torch.Generator().manual_seed(1)
    a, b = -torch.rand(50, generator=g) * 30, -torch.rand(50, generator=g) * 30
    torch.testing.assert_close(low_var_kl(a, b), verl_k3(a, b))
    assert (low_var_kl(a, b) >= 0).all()


@pytest.mark.parametrize("gap", [200.0, -200.0, 89.0, 1e6])
def test_k3_kl_finite_gradient_for_huge_gaps(gap):
    logp = torch.tensor([-1.0, -5.0], requires_grad=True)
    ref = logp.detach() + gap
    loss = masked_mean(low_var_kl(logp, ref), torch.ones(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 10.0  # saturated at the clamp
    assert torch.isfinite(logp.grad).all() and torch.count_nonzero(logp.grad) == 0


def test_k3_kl_gradient_inside_the_clamp():
    # d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp)
    logp = torch.tensor([-1.0, -2.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-1.5, -1.0], dtype=torch.float64)
    low_var_kl(logp, ref).sum().backward()
    torch.testing.assert_close(logp.grad, 1.0 - torch.exp(ref - logp.detach()))


def test_entropy_by_hand():
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / 6
    logits = torch.stack([p.log() + 7.0, torch.zeros(3, dtype=torch.float64)])  # shift-invariant; uniform
    by_hand = torch.tensor([-(p * p.log()).sum().item(), math.log(3.0)], dtype=torch.float64)
    torch.testing.assert_close(entropy_from_logits(logits), by_hand)
    torch.testing.assert_close(entropy_from_logprobs(torch.log_softmax(logits, -1)), by_hand)
    # Extreme logits: a near one-hot distribution has ~0 entropy, and nothing overflows.
    sharp = entropy_from_logits(torch.tensor([[1e4, 0.0, -1e4], [50.0, 50.0, -1e30]]))
    torch.testing.assert_close(sharp, torch.tensor([0.0, math.log(2.0)]))
    assert entropy_from_logits(torch.zeros(2, 5, dtype=torch.bfloat16)).dtype == torch.float32


# ---------------------------------------------------------------------------- the update loops

N, PROMPT, RESPONSE = 7, 6, 8


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A Trainer on the tiny model whose optimisers do not move the weights (lr 0, no weight
    decay, no clipping): after an update the .grad fields hold the accumulated gradient."""
    from hiper.trainer import TrainConfig, Trainer

    tokenizer = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
    config = TrainConfig(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=tokenizer,
                         run_dir=str(tmp_path_factory.mktemp("run")), actor_lr=0.0, critic_lr=0.0, weight_decay=0.0,
                         grad_clip=1e12, mini_batch_size=N, entropy_coeff=0.05, kl_coef=0.1,
                         gradient_checkpointing=False, temperature=0.8)
    trainer = Trainer(config)
    torch.manual_seed(3)
    torch.nn.init.normal_(trainer.critic.heads.linear.weight, std=0.02)  # zero heads pass no gradient to the backbone
    with torch.no_grad():  # a reference that differs from the actor, so the KL term has a gradient
        for p in trainer.reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return trainer


@pytest.fixture(scope="module")
def fake_batch(trainer):
    """Left-padded prompts and responses of random lengths; token counts differ from row to
    row (row 2 has none), so weighting micro-batches instead of tokens would show."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    vocab = trainer.actor.config.vocab_size
    ids = torch.randint(1, vocab, (N, PROMPT + RESPONSE), generator=g)
    attention = torch.ones_like(ids)
    for row, pad in enumerate([0, 2, 5, 1, 0, 3, 4]):
        attention[row, :pad] = 0
    lengths = torch.tensor([8, 1, 0, 5, 3, 8, 2])
    response_mask = torch.arange(RESPONSE) < lengths[:, None]
    attention[:, PROMPT:] = response_mask
    batch = SimpleNamespace(input_ids=ids, attention_mask=attention, num_rows=N)
    loss_mask = response_mask & (torch.rand(N, RESPONSE, generator=g) < 0.8)
    with torch.no_grad():
        logp = response_logprobs(trainer.actor, ids, attention, RESPONSE, temperature=trainer.config.temperature)
        values = trainer.critic.values(ids, attention, RESPONSE)
    old_logp = logp + 0.3 * torch.randn(N, RESPONSE, generator=g)  # some ratios outside the clip range
    advantages = torch.randn(N, RESPONSE, generator=g) * loss_mask
    old_values = values + 0.4 * torch.randn(N, RESPONSE, 3, generator=g)
    targets = []
    for head, coef in ((0, 1.0), (1, 0.5), (2, 2.0)):
        mask = response_mask & (torch.rand(N, RESPONSE, generator=g) < 0.4)
        targets.append((head, torch.randn(N, RESPONSE, generator=g), mask, coef))
    return SimpleNamespace(batch=batch, loss_mask=loss_mask, old_logp=old_logp, advantages=advantages,
                           old_values=old_values, targets=targets)


def grads(params):
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def assert_same_gradients(got, expected):
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert max(float(g.abs().max()) for g in expected) > 1e-3  # a gradient worth comparing


def actor_loss_over_the_batch(trainer, fb):
    """The actor's loss written directly: token means over the whole (mini-)batch."""
    cfg, mask = trainer.config, fb.loss_mask
    logp, entropy = response_logprobs(trainer.actor, fb.batch.input_ids, fb.batch.attention_mask, RESPONSE,
                                      with_entropy=True, temperature=cfg.temperature)
    with torch.no_grad():
        ref = response_logprobs(trainer.reference, fb.batch.input_ids, fb.batch.attention_mask, RESPONSE,
                                temperature=cfg.temperature)
    pg, stats = ppo_policy_loss(logp, fb.old_logp, fb.advantages, mask, cfg.clip_ratio, cfg.clip_ratio_c)
    ent, kl = masked_mean(entropy, mask), masked_mean(low_var_kl(logp, ref), mask)
    parts = {"pg_loss": pg.item(), "entropy": ent.item(), "kl": kl.item(), "clip_frac": stats["clip_frac"]}
    return pg - cfg.entropy_coeff * ent + cfg.kl_coef * kl, parts, ref


def test_actor_gradient_is_the_token_mean_whatever_the_micro_batch_size(trainer, fake_batch):
    fb, params = fake_batch, list(trainer.actor.parameters())
    loss, _, ref_logp = actor_loss_over_the_batch(trainer, fb)
    expected = torch.autograd.grad(loss, params)
    for micro in (1, 3, N):
        trainer.config.micro_batch_size = micro
        trainer._update_actor(fb.batch, fb.old_logp, ref_logp, fb.advantages, fb.loss_mask, RESPONSE)
        assert_same_gradients(grads(params), expected)


def test_actor_stats_are_token_means_over_all_mini_batches(trainer, fake_batch):
    fb = fake_batch
    _, expected, ref_logp = actor_loss_over_the_batch(trainer, fb)
    trainer.config.micro_batch_size, trainer.config.mini_batch_size = 2, 4  # mini-batches of 4 and 3 rows
    try:
        stats = trainer._update_actor(fb.batch, fb.old_logp, ref_logp, fb.advantages, fb.loss_mask, RESPONSE)
    finally:
        trainer.config.mini_batch_size = N
    assert stats == pytest.approx(expected, abs=1e-5)


def critic_loss_over_the_batch(trainer, fb):
    """The critic's loss written directly: each head's token mean over the whole (mini-)batch."""
    values = trainer.critic.values(fb.batch.input_ids, fb.batch.attention_mask, RESPONSE)
    clip = trainer.config.cliprange_value
    return sum(coef * clipped_value_loss(values[..., h], fb.old_values[..., h], ret, mask, clip)
               for h, ret, mask, coef in fb.targets)


def test_critic_gradient_is_each_heads_token_mean_whatever_the_micro_batch_size(trainer, fake_batch):
    fb, params = fake_batch, trainer.critic.trainable_parameters()
    loss = critic_loss_over_the_batch(trainer, fb)
    expected = torch.autograd.grad(loss, params)
    for micro in (1, 3, N):
        trainer.config.micro_batch_size = micro
        stats = trainer._update_critic(fb.batch, fb.old_values, fb.targets, RESPONSE)
        assert_same_gradients(grads(params), expected)
        assert stats["critic_loss"] == pytest.approx(loss.item(), abs=1e-5)
    assert trainer.critic.backbone.layers[0].mlp.up_proj.weight.grad.abs().max() > 0


def test_a_token_weighs_the_same_on_every_rank(trainer, fake_batch, tmp_path):
    """Data parallel: the token mean is over the mini-batch's tokens on all ranks. Played by a
    one-process gloo group under a Reducer that says world size 2: the missing rank adds
    nothing to any all-reduce, as a rank whose mini-batch has no tokens. This rank's gradient
    (after average_gradients halves it) must then be its own token mean, not half of it."""
    from hiper.distributed import Reducer

    fb, params = fake_batch, list(trainer.actor.parameters())
    loss, _, ref_logp = actor_loss_over_the_batch(trainer, fb)
    expected = torch.autograd.grad(loss, params)
    critic_params = trainer.critic.trainable_parameters()
    critic_expected = torch.autograd.grad(critic_loss_over_the_batch(trainer, fb), critic_params)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    single, trainer.reducer = trainer.reducer, Reducer(rank=0, world_size=2)
    try:
        trainer.config.micro_batch_size = 3
        trainer._update_actor(fb.batch, fb.old_logp, ref_logp, fb.advantages, fb.loss_mask, RESPONSE)
        assert_same_gradients(grads(params), expected)
        trainer._update_critic(fb.batch, fb.old_values, fb.targets, RESPONSE)
        assert_same_gradients(grads(critic_params), critic_expected)
    finally:
        trainer.reducer = single
        torch.distributed.destroy_process_group()
