"""Supervised fine-tuning of a causal LM on (prompt text, response text) pairs: the loss is the
negative log-likelihood of the response tokens only, so the model learns to answer prompts, not
to write them. `hiper sft` (hiper.warm_start) runs it on expert demonstrations, as a warm start
before reinforcement learning.

    pairs = [(render_prompt(tokenizer, user_message), format_turn("SWITCH", "find the key", "take key")
              + "<|im_end|>"), ...]
    losses = sft(model, tokenizer, pairs, SFTConfig(steps=50, batch_size=16, lr=1e-3))

Rows are laid out as the rollout lays them out (hiper.buffer.PackedBatch): the prompt tokenised
on its own and left-padded, then the response tokens right-padded, and log-probabilities come
from the same `hiper.policy.response_logprobs` the trainer scores with. A response should end
with the end-of-turn token the rollout stops at (SmolLM2: "<|im_end|>"), or the model never
learns to stop.

Each step draws `batch_size` pairs from a seeded shuffle (a fresh order every pass over the
pairs) and takes one optimiser step on the token mean over all of the batch's response tokens;
micro-batches of `micro_batch_size` rows accumulate gradients, weighed by their token counts.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from hiper.losses import masked_mean
from hiper.policy import response_logprobs


SCHEDULES = ("linear", "constant")


@dataclass
class SFTConfig:
    steps: int = 100
    batch_size: int = 16
    micro_batch_size: int = 4
    lr: float = 1e-4
    schedule: str = "linear"  # the learning rate: "linear" decays it to 0 over the steps, "constant" keeps it
    weight_decay: float = 0.0
    grad_clip: float = 1.0   # max gradient norm; 0 disables clipping
    seed: int = 0            # the order pairs are drawn in

    def __post_init__(self):
        for name in ("steps", "batch_size", "micro_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


@dataclass
class EncodedPairs:
    """Every pair tokenised once: prompts (M, P) left-padded, responses (M, R) right-padded."""

    prompts: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.prompts.shape[0])

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input_ids, attention_mask, response width) of the rows `index`, trimmed to the
        widest prompt and response among them (padding columns of every row are dropped)."""
        prompt_mask, response_mask = self.prompt_mask[index], self.response_mask[index]
        P = int(prompt_mask.sum(1).max())
        R = int(response_mask.sum(1).max())
        ids = torch.cat([self.prompts[index, -P:], self.responses[index, :R]], dim=1)
        mask = torch.cat([prompt_mask[:, -P:], response_mask[:, :R]], dim=1)
        return ids, mask, R


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> EncodedPairs:
    """Tokenises prompts and responses separately, without special tokens added (the chat
    template has put in what the model sees), as the rollout tokenises a prompt and generates
    the response's tokens after it."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) == 0:
        raise ValueError(f"pairs: expected a non-empty sequence of (prompt, response) strings, got {pairs!r:.80}")
    for k, pair in enumerate(pairs):
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(isinstance(text, str) for text in pair)):
            raise TypeError(f"pairs: item {k} is not a (prompt, response) pair of strings: {pair!r:.80}")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer: needs a pad token (hiper.models.prepare_tokenizer sets one)")
    prompts, responses = zip(*pairs)
    enc_p = tokenizer(list(prompts), padding=True, padding_side="left", add_special_tokens=False,
                      return_tensors="pt")
    enc_r = tokenizer(list(responses), padding=True, padding_side="right", add_special_tokens=False,
                      return_tensors="pt")
    lengths = enc_r["attention_mask"].sum(1)
    if bool((lengths == 0).any()):
        raise ValueError(f"pairs: item {int((lengths == 0).nonzero()[0])} has an empty response")
    if bool((enc_p["attention_mask"].sum(1) == 0).any()):
        raise ValueError(f"pairs: item {int((enc_p['attention_mask'].sum(1) == 0).nonzero()[0])} has an empty prompt")
    return EncodedPairs(enc_p["input_ids"], enc_p["attention_mask"].bool(), enc_r["input_ids"],
                        enc_r["attention_mask"].bool())


def draw_batches(num_pairs: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The row indices of every step: consecutive slices of seeded permutations of the pairs,
    a fresh permutation for every pass (every pair is seen once per pass)."""
    generator = torch.Generator().manual_seed(seed)
    passes = -(-steps * batch_size // num_pairs)
    order = torch.cat([torch.randperm(num_pairs, generator=generator) for _ in range(passes)])
    return list(order[:steps * batch_size].split(batch_size))


def response_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int,
                 token_count: float | None = None) -> torch.Tensor:
    """Negative log-likelihood of the response tokens (the last `response_width` columns, where
    `attention_mask` is set), summed and divided by `token_count` (default: their own count)."""
    logp = response_logprobs(model, input_ids, attention_mask, response_width)
    return -masked_mean(logp, attention_mask[:, -response_width:], token_count)


def sft(model, tokenizer, pairs: Sequence[tuple[str, str]], config: SFTConfig | None = None, *,
        on_step: Callable[[int, float, int], None] | None = None) -> list[float]:
    """Fine-tunes `model` in place on `pairs` and returns the loss of every step (the mean
    negative log-likelihood per response token of the step's batch, before its update). The
    model is left in eval mode, as generation needs it. `on_step(step, loss, tokens)` is called
    after every step (numbered from 1) with its loss and the tokens its forwards read (prompt and
    response, padding excluded): what a progress bar shows."""
    cfg = config or SFTConfig()
    if not isinstance(cfg, SFTConfig):
        raise TypeError(f"config: expected a hiper.sft.SFTConfig, got {type(cfg).__name__}")
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step: expected a callable (step, loss, tokens), got {type(on_step).__name__}")
    data = encode_pairs(tokenizer, pairs)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Step k (0-based) runs at lr * (1 - k / steps) under the linear schedule.
    decay = (lambda k: 1.0 - k / cfg.steps) if cfg.schedule == "linear" else (lambda k: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    losses = []
    model.train()
    try:
        for step, batch in enumerate(draw_batches(len(data), cfg.steps, cfg.batch_size, cfg.seed), 1):
            optimizer.zero_grad(set_to_none=True)
            # Every micro-batch divides by the whole batch's token count: their losses add up to
            # the batch's token mean, whatever the micro-batch a token falls in.
            tokens = float(data.response_mask[batch].sum())
            step_loss = 0.0
            for rows in batch.split(cfg.micro_batch_size):
                ids, mask, R = data.rows(rows)
                loss = response_nll(model, ids.to(device), mask.to(device), R, token_count=tokens)
                loss.backward()
                step_loss += loss.item()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(step_loss)
            if on_step is not None:
                on_step(step, step_loss, int(data.prompt_mask[batch].sum()) + int(tokens))
    finally:
        model.eval()
    return losses
