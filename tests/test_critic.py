"""The critic: veRL's value alignment ([-R-1:-1]), heads-only training on a shared backbone,
float32 heads under bf16 autocast."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hiper import models
from hiper.critic import Critic

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
R = 4


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


def critic_on_tiny_actor(tokenizer, shared=False):
    actor = models.tiny_random_model(tokenizer)
    critic = Critic.from_actor(actor, shared=shared)
    torch.manual_seed(1)
    torch.nn.init.normal_(critic.heads.linear.weight)  # zero-initialised heads would read nothing
    torch.nn.init.normal_(critic.heads.linear.bias)
    return actor, critic


def left_padded_batch():
    """Two rows, prompt + R response tokens; the second prompt is left-padded by 3."""
    ids = torch.tensor([[11, 12, 13, 14, 15, 21, 22, 23, 24],
                        [0, 0, 0, 31, 32, 41, 42, 43, 44]])
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids, mask


def test_value_at_response_position_j_is_read_at_the_token_before_it(tokenizer):
    _, critic = critic_on_tiny_actor(tokenizer)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        values = critic.values(ids, mask, R)
        hidden = critic.backbone(input_ids=ids, attention_mask=mask,
                                 position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).last_hidden_state
        by_position = critic.heads(hidden)
    assert values.shape == (2, R, 3) and values.dtype == torch.float32
    prompt_width = ids.shape[1] - R
    for j in range(R):  # position 0 sees the last prompt token, position j the response token j - 1
        torch.testing.assert_close(values[:, j], by_position[:, prompt_width + j - 1])
    # Causality says the same: changing response token j moves the values after j, never at or before it.
    changed = ids.clone()
    changed[:, prompt_width + 1] = 99
    with torch.no_grad():
        moved = critic.values(changed, mask, R)
    torch.testing.assert_close(moved[:, :2], values[:, :2], rtol=0, atol=0)
    assert ((moved[:, 2:] - values[:, 2:]).abs() > 1e-6).all()


def test_shared_critic_trains_the_heads_only(tokenizer):
    actor, critic = critic_on_tiny_actor(tokenizer, shared=True)
    assert critic.backbone is actor.get_decoder()
    assert critic.trainable_parameters() == [critic.heads.linear.weight, critic.heads.linear.bias]
    ids, mask = left_padded_batch()
    critic.values(ids, mask, R).square().sum().backward()
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.heads.parameters())


def test_separate_critic_trains_its_own_backbone(tokenizer):
    actor, critic = critic_on_tiny_actor(tokenizer, shared=False)
    assert critic.backbone is not actor.get_decoder()
    assert len(critic.trainable_parameters()) == len(list(critic.parameters()))
    ids, mask = left_padded_batch()
    critic.values(ids, mask, R).square().sum().backward()
    assert all(p.grad is None for p in actor.parameters())
    assert critic.backbone.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_heads_run_in_fp32_under_bf16_autocast(tokenizer):
    _, critic = critic_on_tiny_actor(tokenizer)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        exact = critic.values(ids, mask, R)
        hidden = critic.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            values = critic.values(ids, mask, R)
            heads = critic.heads(hidden)
    assert values.dtype == heads.dtype == torch.float32
    torch.testing.assert_close(heads, critic.heads(hidden), rtol=0, atol=0)  # not just cast back: computed in fp32
    torch.testing.assert_close(values, exact, rtol=0.1, atol=0.1)
