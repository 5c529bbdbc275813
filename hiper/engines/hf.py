"""The Hugging Face engine: one batched `model.generate` per turn, on the policy itself.

It samples from the live model, so there are no weights to sync."""
from __future__ import annotations

import time

import torch

from hiper.engines.base import Generation, SamplingSettings, encode_prompts, mask_through_first_stop


class HFEngine:
    name = "hf"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def sync_weights(self, model) -> None:
        """Nothing to copy: generate runs on `model` itself. A different model object is adopted."""
        self.model = model

    @torch.no_grad()
    def generate(self, prompts: list[str], settings: SamplingSettings) -> Generation:
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, settings.max_prompt_length)
        device = next(self.model.parameters()).device
        kwargs = dict(max_new_tokens=settings.max_new_tokens, eos_token_id=list(settings.stop_ids),
                      pad_token_id=self.tokenizer.pad_token_id, do_sample=not settings.greedy)
        if not settings.greedy:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        clock = _FirstTokenClock()
        start = time.perf_counter()
        out = self.model.generate(input_ids=prompt_ids.to(device), attention_mask=prompt_mask.long().to(device),
                                  stopping_criteria=_stopping_criteria(clock), **kwargs)
        prefill_seconds = (clock.first if clock.first is not None else time.perf_counter()) - start
        responses = out[:, prompt_ids.shape[1]:].cpu()
        # A response runs up to and including its first stop token; the rest is padding.
        return Generation(prompt_ids, prompt_mask, responses, mask_through_first_stop(responses, settings.stop_ids),
                          prefill_seconds)


class _FirstTokenClock:
    """A stopping criterion that stops nothing: it notes when `generate` first asks it, which is
    right after the first new token, so when the prompts' prefill forward ended."""

    def __init__(self):
        self.first: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.first is None:
            if input_ids.is_cuda:
                torch.cuda.synchronize(input_ids.device)  # once per generate: the prefill's kernels have run
            self.first = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _stopping_criteria(clock: _FirstTokenClock):
    """`clock` as generate takes it: a StoppingCriteria in a list (transformers is imported
    here, when a model generates, not when hiper.engines is)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Clock(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return clock(input_ids, scores, **kwargs)

    return StoppingCriteriaList([Clock()])
