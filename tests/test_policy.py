"""Response log-probs of a causal LM: equal to what `generate` sampled from, at its temperature,
on left-padded batches; the vocabulary projection in float32 under bf16 autocast."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hiper import models
from hiper.losses import entropy_from_logits
from hiper.policy import output_projection_in_fp32, response_logprobs

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
PROMPTS = ["You are in the middle of a room. Looking around you, you see a desk 1.", "go to desk 1", "look"]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


@pytest.fixture(scope="module")
def model(tokenizer):
    return models.tiny_random_model(tokenizer).eval()


def sample(model, tokenizer, temperature):
    """(prompt + response ids, attention mask, generate's raw logits, its processed scores)."""
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any(), "the batch must be left-padded"
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                         max_new_tokens=NEW_TOKENS, output_logits=True, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    ids = out.sequences
    # No min_new_tokens (its processor masks EOS in the scores); the random model does not stop this early.
    assert ids.shape[1] == enc["input_ids"].shape[1] + NEW_TOKENS
    mask = torch.cat([enc["attention_mask"], torch.ones(len(PROMPTS), NEW_TOKENS, dtype=torch.long)], dim=1)
    return ids, mask, torch.stack(out.logits, dim=1), torch.stack(out.scores, dim=1)


def pick(logprobs, ids):
    return logprobs.gather(-1, ids[:, -NEW_TOKENS:, None]).squeeze(-1)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
def test_logprobs_equal_those_generate_sampled_from(model, tokenizer, temperature):
    ids, mask, logits, scores = sample(model, tokenizer, temperature)
    with torch.no_grad():
        logp, entropy = response_logprobs(model, ids, mask, NEW_TOKENS, with_entropy=True, temperature=temperature)
    sampled_from = torch.log_softmax(logits.float() / temperature, dim=-1)
    torch.testing.assert_close(logp, pick(sampled_from, ids), rtol=0, atol=1e-5)
    # With top_k=0 and top_p=1 the temperature is the only warper: the processed scores agree too.
    torch.testing.assert_close(logp, pick(torch.log_softmax(scores, dim=-1), ids), rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy, entropy_from_logits(logits / temperature), rtol=0, atol=1e-5)
    if temperature != 1.0:  # scored at T = 1 the log-probs would belong to another policy
        assert (logp - pick(torch.log_softmax(logits, dim=-1), ids)).abs().max() > 1e-2


def test_temperature_zero_scores_at_one_and_bad_arguments_fail(model, tokenizer):
    ids, mask, _, _ = sample(model, tokenizer, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(response_logprobs(model, ids, mask, NEW_TOKENS, temperature=0.0),
                                   response_logprobs(model, ids, mask, NEW_TOKENS, temperature=1.0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="temperature"):
        response_logprobs(model, ids, mask, NEW_TOKENS, temperature=-0.5)
    with pytest.raises(TypeError, match="temperature"):
        response_logprobs(model, ids, mask, NEW_TOKENS, temperature="0.7")
    for width in (0, ids.shape[1]):
        with pytest.raises(ValueError, match="response_width"):
            response_logprobs(model, ids, mask, width)


def test_an_entropy_only_logged_has_no_graph_and_the_same_value(model, tokenizer):
    # entropy_grad=False (the trainer's choice when the entropy bonus is 0): the same values,
    # no backward through the vocabulary; the log-probs keep their gradient either way.
    ids, mask, _, _ = sample(model, tokenizer, 0.7)
    logp, with_graph = response_logprobs(model, ids, mask, NEW_TOKENS, with_entropy=True, temperature=0.7)
    logp_too, logged = response_logprobs(model, ids, mask, NEW_TOKENS, with_entropy=True, temperature=0.7,
                                         entropy_grad=False)
    assert with_graph.requires_grad and not logged.requires_grad
    assert logp.requires_grad and logp_too.requires_grad
    torch.testing.assert_close(logged, with_graph.detach(), rtol=0, atol=0)
    torch.testing.assert_close(logp_too, logp, rtol=0, atol=0)


def test_logprobs_do_not_depend_on_left_padding(model, tokenizer):
    # A row scored alone (no padding) and inside a left-padded batch gets the same log-probs.
    ids, mask, _, _ = sample(model, tokenizer, 1.0)
    with torch.no_grad():
        batch = response_logprobs(model, ids, mask, NEW_TOKENS)
        for row in range(len(PROMPTS)):
            real = mask[row].bool()
            alone = response_logprobs(model, ids[row:row + 1, real], mask[row:row + 1, real], NEW_TOKENS)
            torch.testing.assert_close(alone[0], batch[row], rtol=0, atol=1e-5)


def test_output_projection_runs_in_fp32_under_bf16_autocast(model, tokenizer):
    ids, mask, _, _ = sample(model, tokenizer, 1.0)
    head = model.get_output_embeddings()
    seen = {}
    hooks = [head.register_forward_hook(lambda m, args, out: seen.update(head=out.dtype)),
             model.model.layers[0].mlp.register_forward_hook(lambda m, args, out: seen.update(mlp=out.dtype))]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp, entropy = response_logprobs(model, ids, mask, NEW_TOKENS, with_entropy=True)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"head": torch.float32, "mlp": torch.bfloat16}  # the backbone still runs in bf16
    assert logp.dtype == entropy.dtype == torch.float32
    assert "forward" not in head.__dict__  # the projection is itself again afterwards
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(input_ids=ids).logits.dtype == torch.bfloat16


def test_fp32_projection_keeps_gradients_and_bf16_weights(tokenizer):
    model = models.tiny_random_model(tokenizer, seed=1)
    ids = torch.tensor([[5, 17, 42, 7, 9]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp = response_logprobs(model, ids, torch.ones_like(ids), 3)
    logp.sum().backward()
    head = model.get_output_embeddings()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    # Weights stored in bf16 are upcast for the projection as well.
    model.to(torch.bfloat16)
    with output_projection_in_fp32(model), torch.no_grad():
        assert model(input_ids=ids).logits.dtype == torch.float32
