"""Decode-and-search span masks: the reference method for hiper's span masker.

Each response is decoded one token at a time (`tokenizer.batch_decode` of single-token
lists, special tokens kept), the pieces are concatenated with their character offsets, and
the tags are found with `str.find`; character positions map back to tokens by linear
scans. This is how the HiPER authors build their masks (docs/semantics.md §2.4, §4.2), rewritten here as
the test oracle and the benchmark baseline. It is slow on purpose: one Python-level decode
per token.
"""
from __future__ import annotations

import numpy as np
import torch

from hiper.format import ACTION_CLOSE_TAGS, SUBGOAL_CLOSE_TAGS, SWITCH_CLOSE_TAGS


def decode_with_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    pieces = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False,
                                    clean_up_tokenization_spaces=False)
    offsets, pos = [], 0
    for piece in pieces:
        offsets.append((pos, pos + len(piece)))
        pos += len(piece)
    return "".join(pieces), offsets


def find_block(text: str, open_tag: str, close_tags) -> tuple[int, int, int, int] | None:
    """(open, content start, close start, close length) of the first block, or None."""
    start = text.find(open_tag)
    if start < 0:
        return None
    content = start + len(open_tag)
    best, best_len = None, 0
    for tag in close_tags:
        at = text.find(tag, content)
        if at >= 0 and (best is None or at < best):
            best, best_len = at, len(tag)
    return None if best is None else (start, content, best, best_len)


def first_token_ending_after(offsets, char: int) -> int | None:
    for i, (_, end) in enumerate(offsets):
        if end > char:
            return i
    return None


def first_token_starting_at_or_after(offsets, char: int) -> int:
    for i, (start, _) in enumerate(offsets):
        if start >= char:
            return i
    return len(offsets)


def token_span(text, offsets, open_tag, close_tags, include_tags):
    block = find_block(text, open_tag, close_tags)
    if block is None:
        return None
    start, content, close, close_len = block
    b, e = (start, close + close_len) if include_tags else (content, close)
    if b >= e:
        return None
    t0 = first_token_ending_after(offsets, b)
    if t0 is None:
        return None
    t1 = first_token_starting_at_or_after(offsets, e)
    return (t0, t1) if t0 < t1 else None


def make_masks_and_switch(responses: torch.Tensor, response_mask: torch.Tensor, tokenizer,
                          include_tags: bool = False):
    """(action_mask, subgoal_mask, switch_mask, is_new_subgoal) as the reference builds them."""
    resp = response_mask.bool()
    n, length = responses.shape
    masks = [torch.zeros(n, length, dtype=torch.bool) for _ in range(3)]
    is_new = np.zeros(n, dtype=bool)
    for i in range(n):
        count = int(resp[i].sum())
        if count <= 0:
            continue
        text, offsets = decode_with_offsets(tokenizer, responses[i, :count].tolist())
        for k, (open_tag, closes) in enumerate((("<action>", ACTION_CLOSE_TAGS), ("<subgoal>", SUBGOAL_CLOSE_TAGS),
                                                ("<switch>", SWITCH_CLOSE_TAGS))):
            span = token_span(text, offsets, open_tag, closes, include_tags)
            if span is not None:
                masks[k][i, span[0]:span[1]] = True
            elif k == 0:
                masks[k][i, :count] = True  # no action block: the whole response is the action
        block = find_block(text, "<switch>", SWITCH_CLOSE_TAGS)
        decision = "KEEP"
        if block is not None and block[1] < block[2]:
            decision = text[block[1]:block[2]].strip().upper() or "KEEP"
        is_new[i] = decision != "KEEP"
    action, subgoal, switch = (m & resp for m in masks)
    return action, subgoal, switch, is_new


def value_masks(responses: torch.Tensor, response_mask: torch.Tensor, tokenizer, is_boundary):
    """(value_mask_high, value_mask_low, value_mask_term) as the reference builds them."""
    resp = response_mask.bool()
    n, length = responses.shape
    high, low, term = (torch.zeros(n, length, dtype=torch.bool) for _ in range(3))
    for i in range(n):
        if is_boundary[i] and resp[i, 0]:
            high[i, 0] = True
        text, offsets = decode_with_offsets(tokenizer, responses[i, :int(resp[i].sum())].tolist())
        pos = 0
        for open_tag, closes in (("<subgoal>", SUBGOAL_CLOSE_TAGS), ("<switch>", SWITCH_CLOSE_TAGS)):
            block = find_block(text, open_tag, closes)
            if block is None:
                continue
            after = first_token_starting_at_or_after(offsets, block[2] + block[3])
            if after < length and resp[i, after]:
                pos = after
                break
        low[i, pos] = True
        if resp[i].any():
            term[i, int(resp[i].float().argmax())] = True
    return high, low, term
