"""What every rollout engine gives back, and what it is asked for.

An engine turns one turn's rendered prompts into token ids: the prompts left-padded as the
trajectory buffer stores them, the sampled responses right-padded, and which positions are
real. The rollout loop (prompts, parsing, environments, buffer) is the same whichever engine
samples, so `hiper.rollout` only ever talks to this protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How one turn samples: the rollout config's sampling fields plus the stop tokens."""

    max_new_tokens: int
    max_prompt_length: int
    temperature: float
    top_p: float
    do_sample: bool
    stop_ids: tuple[int, ...]

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0


@dataclass
class Generation:
    """One batched generation, row i for prompt i.

    prompt_ids (N, P): left-padded with the pad token; prompt_mask (N, P) bool marks real tokens.
    responses (N, R): right-padded; response_mask (N, R) bool marks each response up to and
    including its first stop token. logprobs (N, R) float32: log pi(token) under the sampling
    distribution (temperature applied), 0 on padding; None when the engine does not report them.
    prefill_seconds: from the call to the first new token (the forward over the prompts)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    prefill_seconds: float
    logprobs: torch.Tensor | None = None


@runtime_checkable
class Engine(Protocol):
    """A rollout engine: `generate` one turn's prompts; `sync_weights` after every update so the
    next rollout samples from the current policy."""

    name: str

    def generate(self, prompts: list[str], settings: SamplingSettings) -> Generation: ...

    def sync_weights(self, model) -> None: ...


def encode_prompts(tokenizer, prompts: list[str], max_prompt_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, bool mask) of `prompts`, left-padded; a prompt longer than `max_prompt_length` is an error."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    if enc["input_ids"].shape[1] > max_prompt_length:
        raise ValueError(f"max_prompt_length: a prompt has {enc['input_ids'].shape[1]} tokens, more than "
                         f"{max_prompt_length}")
    return enc["input_ids"], enc["attention_mask"].bool()


def mask_through_first_stop(responses: torch.Tensor, stop_ids) -> torch.Tensor:
    """True up to and including each row's first stop token (everything when there is none)."""
    is_stop = torch.isin(responses, torch.as_tensor(list(stop_ids), dtype=responses.dtype))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    return ~after_stop
