"""Log-probabilities of response tokens under a causal LM (the actor and its reference)."""
from __future__ import annotations

import numbers
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from hiper.losses import entropy_from_logprobs


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as `generate` numbers a left-padded prompt."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def scoring_temperature(temperature: float) -> float:
    """The temperature log-probs are scored at: the sampling temperature, or 1 for greedy
    decoding (temperature 0), whose argmax policy has no finite log-probs; scoring it as the
    T = 1 policy is what veRL does too."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature: expected a number, got {type(temperature).__name__}")
    if not temperature >= 0.0:  # also rejects NaN
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    return float(temperature) if temperature > 0 else 1.0


@contextmanager
def output_projection_in_fp32(model):
    """Runs the model's output projection (`get_output_embeddings()`, the lm_head) in float32
    with autocast off, while the rest of the model keeps whatever autocast is active.

    Under bf16 autocast the logits would otherwise carry bf16's 8-bit mantissa: log-probs off
    by ~1e-2, and a PPO ratio that is not 1 for an unchanged policy. The projection's input
    and weight are upcast (weights may themselves be bf16); softcapping or scaling that a model
    applies to the logits afterwards then runs on float32 too."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"model: {type(model).__name__} has no output embeddings (get_output_embeddings() is None)")
    patched_before = "forward" in head.__dict__  # e.g. accelerate's hooks replace forward on the instance
    original = head.forward

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            if isinstance(head, torch.nn.Linear):
                bias = head.bias.float() if head.bias is not None else None
                return F.linear(hidden.float(), head.weight.float(), bias)
            return original(hidden.float())

    head.forward = forward
    try:
        yield
    finally:
        if patched_before:
            head.forward = original
        else:
            del head.forward


def response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int,
                      with_entropy: bool = False, temperature: float = 1.0, with_hidden: bool = False,
                      entropy_grad: bool = True):
    """(N, R) float32 log pi(response token j | everything before it), and optionally the
    entropy of the distribution at each response position. input_ids = prompt (left-padded)
    + response. `temperature` is the one the responses were sampled at: the policy PPO
    optimises is softmax(logits / temperature), so old, new and reference log-probs (and
    the entropy) are all scored at it (0, greedy: scored at 1). `with_hidden` also returns,
    last, the (N, R, hidden) final hidden states at the token before each response token,
    where value heads on the same backbone read (one forward for log-probs and values).
    `entropy_grad=False` returns the entropy without a graph: a loss that only logs it (an
    entropy bonus of 0) then skips its backward, an exp-multiply-sum over every response
    position's vocabulary."""
    temperature = scoring_temperature(temperature)
    if not 0 < response_width < input_ids.shape[-1]:  # at least one prompt token to condition on
        raise ValueError(f"response_width: expected 1 to {input_ids.shape[-1] - 1} for rows of "
                         f"{input_ids.shape[-1]} tokens, got {response_width}")
    # Only the R positions before each response token need logits: the vocabulary projection of
    # a whole prompt would dominate the cost (N x T x V floats). Keeping exactly those (indices,
    # not the last R + 1 and a slice) also spares the backward a zero-filled N x (R + 1) x V copy.
    width = input_ids.shape[-1]
    before_response = torch.arange(width - response_width - 1, width - 1, device=input_ids.device)
    with output_projection_in_fp32(model):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                    logits_to_keep=before_response, output_hidden_states=with_hidden)
    logits = out.logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logprobs = torch.log_softmax(logits, dim=-1)  # one (N, R, V) tensor for both outputs
    targets = input_ids[:, -response_width:]
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = entropy_from_logprobs(logprobs)
        outputs = (logp, entropy)
    else:
        outputs = (logp,)
    if with_hidden:
        # The last entry of hidden_states is the decoder's output after its final norm.
        outputs += (out.hidden_states[-1][:, -response_width - 1:-1, :],)
    return outputs if len(outputs) > 1 else logp
