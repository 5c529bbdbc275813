"""Log-probabilities of response tokens under a causal LM (the actor and its reference)."""
from __future__ import annotations

import torch

from hiper.losses import entropy_from_logits


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as `generate` numbers a left-padded prompt."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int,
                      with_entropy: bool = False):
    """(N, R) log pi(response token j | everything before it), and optionally the entropy of
    the distribution at each response position. input_ids = prompt (left-padded) + response."""
    # Only the last R + 1 positions need logits: the vocabulary projection of a whole prompt
    # would dominate the cost (N x T x V floats).
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                   logits_to_keep=response_width + 1).logits
    logits = logits[:, -response_width - 1:-1, :].float()
    targets = input_ids[:, -response_width:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if with_entropy:
        return logp, entropy_from_logits(logits)
    return logp
