"""Micro-batching of the update passes: how a batch's rows are cut into forward passes that fit
in memory, and how the passes' outputs are put back together in row order.

Two ways to cut: a fixed number of rows per pass, each padded to the batch's width; or a token
budget, rows sorted by their own length and trimmed to the longest prompt and response of their
pass (padding only costs compute, so the outputs are the same once widened back).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterator

import torch

__all__ = ["forward_all", "micro_batches", "widen"]


def micro_batches(batch, rows: torch.Tensor, R: int, *, rows_per_pass: int,
                  token_budget: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """The forward passes over `rows` (indices into the batch): (rows of the pass, input_ids,
    attention_mask, response width r <= R). Without a token budget (0), `rows_per_pass` rows
    padded to the batch's width (r = R). With one, rows sorted by their own prompt + response
    length, as many per pass as fit the budget once padded to the pass's longest prompt and
    response, and trimmed to that (`widen` pads the outputs back to R columns)."""
    if token_budget == 0:
        for idx in rows.split(rows_per_pass) if len(rows) else ():
            yield idx, batch.input_ids[idx], batch.attention_mask[idx], R
        return
    mask = batch.attention_mask[rows].bool()
    prompt_width = mask.shape[1] - R
    prompts = mask[:, :prompt_width].sum(1)  # left-padded: the last `prompts` columns of the prompt part
    # Right-padded responses: a row's width is one past its last real token (at least one column).
    real = mask[:, prompt_width:]
    responses = torch.where(real.any(1), R - real.flip(1).int().argmax(1), torch.ones_like(prompts))
    order = torch.argsort(prompts + responses, descending=True, stable=True)
    rows, prompts, responses = rows[order], prompts[order], responses[order]
    start = 0
    while start < len(rows):
        # Padded cost of the first n rows from `start`: n x (longest prompt + longest response).
        cost = (torch.arange(1, len(rows) - start + 1) * (prompts[start:].cummax(0).values
                                                          + responses[start:].cummax(0).values))
        n = max(1, int((cost <= token_budget).sum()))  # cost grows with n; a row over budget passes alone
        idx = rows[start:start + n]
        p, r = int(prompts[start:start + n].max()), int(responses[start:start + n].max())
        columns = slice(prompt_width - p, prompt_width + r)
        yield idx, batch.input_ids[idx, columns], batch.attention_mask[idx, columns], r
        start += n


def widen(out: torch.Tensor, R: int) -> torch.Tensor:
    """(n, r, ...) response-aligned outputs of a trimmed pass as (n, R, ...): zeros past r,
    where every row's response is padding (masked out of every loss)."""
    if out.shape[1] == R:
        return out
    return torch.nn.functional.pad(out, (0, 0) * (out.dim() - 2) + (0, R - out.shape[1]))


@torch.no_grad()
def forward_all(passes, fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], num_rows: int, R: int, *,
                device: torch.device, autocast=None) -> torch.Tensor:
    """fn(input_ids, attention_mask, r) -> (n, r, ...) over every pass of `passes` (what
    `micro_batches` yields for all `num_rows` rows), as (num_rows, R, ...) float32 in row order."""
    outs, order = [], []
    for idx, ids, am, r in passes:
        with autocast if autocast is not None else nullcontext():
            outs.append(widen(fn(ids.to(device), am.to(device), r).float().cpu(), R))
        order.append(idx)
    out = torch.empty((num_rows,) + outs[0].shape[1:], dtype=outs[0].dtype)
    out[torch.cat(order)] = torch.cat(outs)
    return out
