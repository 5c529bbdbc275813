"""Supervised fine-tuning (hiper.sft): loss on response tokens only, token-weighted micro-batches."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hiper.models import prepare_tokenizer, tiny_random_model
from hiper.sft import SFTConfig, draw_batches, encode_pairs, sft

from numerics import assert_close

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")

# Responses of different lengths, so padding and the token weighting of micro-batches matter.
PAIRS = [("Where is the key?", "<action>take key</action><|im_end|>"),
         ("The chest is locked and you hold the key.", "<action>open chest</action><|im_end|>"),
         ("Nothing happens.", "<switch>KEEP</switch>\n<action>look around</action><|im_end|>")]


@pytest.fixture(scope="module")
def tokenizer():
    return prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


def small_model(tokenizer):
    return tiny_random_model(tokenizer, hidden_size=32, layers=1, heads=2)


def test_loss_decreases(tokenizer):
    model = small_model(tokenizer)
    # Every step sees all three pairs, so each loss (taken before the step's update) is the loss on
    # the same data: it must fall at every step. The default linear schedule decays the rate to 0
    # over the 12 steps, which leaves about half the area of a constant rate: hence 3e-2.
    losses = sft(model, tokenizer, PAIRS, SFTConfig(steps=12, batch_size=3, micro_batch_size=2, lr=3e-2))
    assert len(losses) == 12
    # The first loss is the untrained model's: about log(vocabulary size) per token.
    assert losses[0] == pytest.approx(torch.log(torch.tensor(float(len(tokenizer)))).item(), rel=0.05)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]
    assert not model.training  # left ready to generate


def test_reports_every_step(tokenizer):
    """on_step gets each step's number, its loss and the tokens its forwards read (padding excluded)."""
    seen = []
    losses = sft(small_model(tokenizer), tokenizer, PAIRS, SFTConfig(steps=2, batch_size=3, micro_batch_size=2),
                 on_step=lambda *report: seen.append(report))
    every_token = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for pair in PAIRS for text in pair)
    assert seen == [(1, losses[0], every_token), (2, losses[1], every_token)]
    with pytest.raises(TypeError, match="on_step"):
        sft(small_model(tokenizer), tokenizer, PAIRS, on_step="bar")


def test_only_response_tokens_carry_loss(tokenizer):
    """The first step's loss (before its update) is the model's mean NLL of the response tokens,
    computed here independently with Hugging Face's labels (-100 on the prompt)."""
    prompt, response = PAIRS[1]
    model = small_model(tokenizer)
    p_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([p_ids, r_ids], dim=1)
    labels = ids.clone()
    labels[:, :p_ids.shape[1]] = -100
    with torch.no_grad():
        response_only = model(input_ids=ids, labels=labels).loss.item()
        every_token = model(input_ids=ids, labels=ids).loss.item()
    (first,) = sft(model, tokenizer, [(prompt, response)], SFTConfig(steps=1, batch_size=1, lr=1e-3))
    assert first == pytest.approx(response_only, rel=1e-5)
    assert abs(first - every_token) > 1e-3  # the check can tell the two apart


def test_micro_batches_weigh_tokens_not_rows(tokenizer):
    """One micro-batch per row or one for the whole batch: the same token mean, the same gradient."""
    model = small_model(tokenizer)
    one_by_one, together = copy.deepcopy(model), copy.deepcopy(model)
    # One step on all three pairs: sft leaves its (clipped) gradient in each parameter's .grad.
    cfg = dict(steps=1, batch_size=3, lr=1e-2, seed=1)
    a = sft(one_by_one, tokenizer, PAIRS, SFTConfig(micro_batch_size=1, **cfg))
    b = sft(together, tokenizer, PAIRS, SFTConfig(micro_batch_size=3, **cfg))
    # The two runs differ only in how float32 sums are bracketed (row by row, or all rows at once in
    # wider matmuls), so they differ by rounding: a sum of n terms moves by up to about n * u * (the
    # sum of their sizes), u = 2**-24 = 6e-8. The loss is ~60 token log-likelihoods, each a log-softmax
    # over 49k tokens: n * u is a few 1e-6 of it, hence rtol 1e-5 (weighing rows instead of tokens
    # moves it by 6e-5). A gradient element sums ~100 terms (tokens, micro-batches) no larger than a
    # few times the tensor's largest gradient: 1e-5 of that largest gradient (measured: 3e-7).
    assert_close(a, b, rtol=1e-5, atol=0.0, name="losses")
    for (name, x), y in zip(one_by_one.named_parameters(), together.parameters()):
        assert x.grad is not None and y.grad is not None, name
        assert_close(x.grad, y.grad, atol=1e-5 * float(y.grad.abs().max()), name=f"{name}.grad")
    # The new weights are not compared: AdamW steps each by lr * m / sqrt(v), about lr whatever the
    # gradient's size, so an element whose gradient is within rounding of zero may step either way
    # (a weight was seen 1.24e-5 apart after 3 steps at lr 1e-2). The only bound that holds for every
    # element, 2 * lr per step, is one that weights trained on a wrong mean meet as well.


def test_encoding_matches_the_rollout_layout(tokenizer):
    data = encode_pairs(tokenizer, PAIRS)
    assert len(data) == 3
    # Prompts padded on the left, responses on the right, as hiper.buffer packs a rollout.
    assert data.prompt_mask[:, -1].all() and data.response_mask[:, 0].all()
    ids, mask, width = data.rows(torch.tensor([0, 1]))
    longest_response = int(data.response_mask[:2].sum(1).max())
    assert width == longest_response and ids.shape == mask.shape
    # Each text tokenised on its own: a prompt's last character never merges with the response's first.
    prompt, response = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in PAIRS[1])
    assert ids[1][mask[1]].tolist() == prompt + response


def test_draws_every_pair_once_per_pass():
    batches = draw_batches(5, steps=5, batch_size=3, seed=0)
    order = torch.cat(batches)
    assert [len(b) for b in batches] == [3] * 5
    assert sorted(order[:5].tolist()) == sorted(order[5:10].tolist()) == list(range(5))
    assert torch.equal(order, torch.cat(draw_batches(5, steps=5, batch_size=3, seed=0)))


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 1.5), ("micro_batch_size", -1), ("lr", 0.0),
                                          ("grad_clip", -1.0), ("weight_decay", float("nan"))])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_bad_pairs(tokenizer):
    model = small_model(tokenizer)
    with pytest.raises(ValueError, match="pairs"):
        sft(model, tokenizer, [])
    with pytest.raises(TypeError, match="pairs: item 1"):
        sft(model, tokenizer, [PAIRS[0], ("prompt only",)])
    with pytest.raises(ValueError, match="pairs: item 0 has an empty response"):
        sft(model, tokenizer, [("a prompt", "")])
    with pytest.raises(TypeError, match="config"):
        sft(model, tokenizer, PAIRS, {"steps": 1})
