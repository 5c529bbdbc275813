"""Plan-Execute span masks from token ids, in C++ (docs/semantics.md §2.4, §4.2).

    masker = hiper.SpanMasker(tokenizer)          # once per tokenizer
    m = masker(responses, response_mask)          # (N, L) ids -> masks and switch decisions

The masker reads each token's standalone decoding once, when it is built, and from then on
works on token ids alone: no decoding per batch. See csrc/include/hiper/span_masker.h for the
exact rules; they reproduce the decode-and-search reference (hiper.reference.masks_decode)
on every input.

Given CUDA tensors, the masker runs on their GPU (csrc/cuda/span_masker.cu) and its outputs
stay there; its vocabulary table is copied to each device once, on first use.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, Allocator, optional_numpy, to_numpy, token_ids
from hiper.ops._device import is_cuda_tensor
from hiper.ops.types import MASK_NAMES, SpanMasks  # noqa: F401 - MASK_NAMES is importable from here


def standalone_pieces(tokenizer) -> list[str]:
    """`tokenizer.decode([id])` for every id (special and added tokens kept, no clean-up).

    Fast tokenizers decode the whole vocabulary in one Rust call; the result is checked
    against the tokenizer's own `batch_decode` on a sample (all special tokens and a spread of
    ids) and, should they differ, the slow path decodes everything through `batch_decode`.
    """
    try:
        size = len(tokenizer)
    except TypeError as exc:
        raise TypeError(f"tokenizer: expected a Hugging Face tokenizer, got {type(tokenizer).__name__}") from exc
    if not hasattr(tokenizer, "batch_decode"):
        raise TypeError(f"tokenizer: expected a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    ids = [[i] for i in range(size)]

    def slow(batch):
        return tokenizer.batch_decode(batch, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return slow(ids)
    pieces = backend.decode_batch(ids, skip_special_tokens=False)
    sample = sorted(set(getattr(tokenizer, "all_special_ids", [])) | set(range(0, size, max(1, size // 512))))
    sample = [i for i in sample if 0 <= i < size]
    if [pieces[i] for i in sample] != slow([[i] for i in sample]):
        return slow(ids)
    return pieces


# A vocabulary table costs ~9 bytes per id (offset and flag): sizes beyond this are mistakes.
MAX_VOCAB_SIZE = 1 << 26


class SpanMasker:
    """Builds the Plan-Execute span masks for batches of token ids.

    Args:
        tokenizer: a Hugging Face tokenizer (fast or slow; byte-level BPE, SentencePiece or
            any other), read once.
        vocab_size: the model's vocabulary size (rows of its embedding, `model.config.vocab_size`),
            or None for the tokenizer's. Models pad their embedding past the tokenizer
            (Qwen2.5: 151,936 rows for 151,665 tokens) and can sample the padding ids; ids
            from len(tokenizer) up to vocab_size read as empty text, which is what decoding
            gives them. Ids outside [0, vocab_size) are refused.
    """

    def __init__(self, tokenizer, vocab_size: int | None = None):
        pieces = standalone_pieces(tokenizer)
        if vocab_size is not None:
            if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral):
                raise TypeError(f"vocab_size: expected an int or None, got {type(vocab_size).__name__}")
            if not 1 <= vocab_size <= MAX_VOCAB_SIZE:
                raise ValueError(f"vocab_size: expected a size in [1, {MAX_VOCAB_SIZE}], got {vocab_size}")
            # The table (here, and its copies on devices) then covers padding ids as empty pieces.
            pieces = pieces[:vocab_size] + [""] * (int(vocab_size) - len(pieces))
        self._core = _C.SpanMasker(pieces)
        self._device_tables: dict = {}  # device -> hiper.ops._cuda.VocabTable, made on first use

    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size

    def __call__(self, responses: Any, response_mask: Any, *, include_tags: bool = False, is_boundary: Any = None,
                 outputs: tuple[str, ...] = ("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal"),
                 validate: bool = True) -> SpanMasks:
        """Masks for a batch.

        Args:
            responses: (N, L) int64 or int32 token ids (only the first count(response_mask)
                of each row are read: that prefix is the response).
            response_mask: (N, L) bool; every mask is restricted to it.
            include_tags: spans cover the tags too (the trainer's setting) or only the content.
            is_boundary: (N,) bool segment-start turns, required for value_mask_high.
            outputs: which fields of SpanMasks to produce.
            validate: CUDA inputs only (host inputs are always checked): check the token ids
                before returning, which waits for the GPU once (reading one number back). With
                False nothing waits, and a row holding an id outside the vocabulary is masked
                as an empty response (no span; low value position 0) instead of raising.
        Returns:
            SpanMasks in the caller's framework; for CUDA tensors, tensors on their device,
            computed on the caller's current stream.
        Raises:
            ValueError naming `responses` for a token id outside [0, vocab_size).
        """
        unknown = set(outputs) - set(SpanMasks._fields)
        if unknown:
            raise ValueError(f"outputs: unknown names {sorted(unknown)}; expected from {SpanMasks._fields}")
        if is_cuda_tensor(responses) or is_cuda_tensor(response_mask):
            if "value_mask_high" in outputs and is_boundary is None:
                raise ValueError("is_boundary: required for value_mask_high")
            from hiper.ops import _cuda

            device = (responses if is_cuda_tensor(responses) else response_mask).device
            return _cuda.span_masks(self, device, responses, response_mask, include_tags=include_tags,
                                    is_boundary=is_boundary, outputs=outputs, validate=validate)
        tok = token_ids(responses, "responses")
        resp = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
        if resp.shape != tok.shape:
            raise ValueError(f"response_mask: expected shape {tuple(tok.shape)} like responses, "
                             f"got {tuple(resp.shape)}")
        boundary = optional_numpy(is_boundary, "is_boundary", BOOL, ndim=1)
        if "value_mask_high" in outputs and boundary is None:
            raise ValueError("is_boundary: required for value_mask_high")
        if boundary is not None and boundary.shape[0] != tok.shape[0]:
            raise ValueError(f"is_boundary: expected {tok.shape[0]} rows like responses, got {boundary.shape[0]}")
        alloc = Allocator(responses)
        results, views = {}, {}
        for name in outputs:
            shape = (tok.shape[0],) if name == "is_new_subgoal" else tok.shape
            results[name], views[name] = alloc.empty(shape, BOOL)
        self._core.apply(tok, resp, bool(include_tags), boundary, **views)
        return SpanMasks(**results)


def segment_starts(traj_ids: Any, turn_idx: Any, is_new_subgoal: Any) -> np.ndarray:
    """(N,) bool: the row is the first turn of its trajectory (lowest turn index; among equal
    turn indices the lowest row) or a SWITCH turn. Tolerates duplicate rows, unlike the layout."""
    from hiper.ops.layout import factorize

    traj = factorize(traj_ids)
    turn = np.asarray(turn_idx).astype(np.int64)
    n = len(traj)
    order = np.lexsort((np.arange(n), turn, traj))
    first = np.ones(n, dtype=bool)
    first[1:] = traj[order][1:] != traj[order][:-1]
    starts = np.zeros(n, dtype=bool)
    starts[order[first]] = True
    return starts | np.asarray(is_new_subgoal).astype(bool)
