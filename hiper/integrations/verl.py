"""Drop-ins for verl / verl-agent style trainers: HAE, span masks and value masks.

`compute_hae_advantage(data, config, action_mask, subgoal_mask, switch_mask)` has the
signature and semantics of the authors' estimator (docs/semantics.md §4; `hiper_hae/core_hae.py` in
their repository) and writes the same keys, but runs in the compiled core: no Python loop
over trajectories, turns or tokens. It reads the batch and hands it to hiper.hae_pipeline,
which the trainer's estimator runs too.

Duplicate rows. The authors' trainer pads a batch to a multiple of its micro-batch size by
duplicating random rows, which keeps their (traj_uid, turn_idx); their estimator then treats
the copies as extra turns (rewards counted twice, a copied SWITCH turn forms a one-turn
segment). This drop-in refuses such a batch with a ValueError naming `turn_idx`: pad *after*
computing advantages (or give padded rows a fresh traj_uid and drop them from the loss).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from hiper.config import HAEConfig
from hiper.hae_pipeline import HEADS, hae_from_masks, runs_on_device
from hiper.masks import SpanMasker, segment_starts

__all__ = ["HAEConfig", "compute_hae_advantage", "compute_value_mask", "make_hae_masks_and_switch"]


def _has(mapping: Any, key: str) -> bool:
    """Membership through .keys(): verl's TensorDict batches refuse `key in batch`."""
    return key in mapping.keys()


def _require(mapping: Any, key: str, where: str):
    if not _has(mapping, key):
        raise KeyError(f"data.{where}[{key!r}] is required by compute_hae_advantage")
    return mapping[key]


def compute_hae_advantage(data: Any, config: HAEConfig, action_mask: Any = None, subgoal_mask: Any = None,
                          switch_mask: Any = None, *, out: Mapping[str, Any] | None = None, reducer: Any = None) -> Any:
    """Hierarchical advantages for a verl-style batch, written into `data.batch`.

    Args:
        data: object with `.batch` (mapping of torch tensors, all (N, L): `responses`,
            `response_mask`, the value heads' outputs under config.value_key_low/high/term
            (term optional) and `value_mask_low`, `value_mask_high`, optional
            `value_mask_term`) and `.non_tensor_batch` (mapping of length-N numpy arrays:
            `traj_uid` (any hashable), `turn_idx`, `dones`, `switch` (True = SWITCH),
            `rewards`, optional `is_action_valid`).
        config: HAEConfig.
        action_mask, subgoal_mask, switch_mask: (N, L) bool token spans of the three blocks
            (None: action = the whole response, subgoal / switch empty).
        out: optional mapping from output key to a preallocated (N, L) tensor (float32, or
            bool for the hae_*_mask keys) on the device the estimator runs on (see below),
            written in place and stored under that key: a trainer that keeps its buffers
            across steps pays no allocation.
        reducer: a hiper.distributed.Reducer when this batch is one rank's share of a
            data-parallel batch: normalisation statistics are then taken over every rank.
    Writes (N, L): advantages, advantages_low/high/term, returns_low/high/term (float32),
    hae_lo_mask, hae_hi_mask, hae_term_mask (bool). Returns `data`.

    Where it runs (hiper.hae_pipeline): with the batch on a GPU and hiper built with CUDA, on
    that GPU (the per-turn metadata is read on the host and copied over; nothing waits for
    the GPU and the outputs stay there). Otherwise on the host, with GPU tensors copied over
    and the outputs moved back; also across ranks (`reducer`), whose statistics are gathered
    on the host.
    """
    if not isinstance(config, HAEConfig):
        raise TypeError(f"config: expected hiper.HAEConfig, got {type(config).__name__}")
    batch, meta = data.batch, data.non_tensor_batch
    keys = {h: getattr(config, f"value_key_{h}") for h in HEADS}
    # The authors' estimator reads a term head only together with its mask.
    has = {"low": True, "high": _has(batch, keys["high"]),
           "term": _has(batch, keys["term"]) and _has(batch, "value_mask_term")}
    if has["high"] and not _has(batch, "value_mask_high"):
        raise KeyError("data.batch['value_mask_high'] is required when the high value head is present")
    values = {h: _require(batch, keys[h], "batch") for h in HEADS if has[h]}
    value_masks = {"low": _require(batch, "value_mask_low", "batch"),
                   "high": batch["value_mask_high"] if _has(batch, "value_mask_high") else None,
                   "term": batch["value_mask_term"] if has["term"] else None}
    outputs = hae_from_masks(
        _require(batch, "response_mask", "batch"), traj_ids=_require(meta, "traj_uid", "non_tensor_batch"),
        turn_idx=_require(meta, "turn_idx", "non_tensor_batch"), dones=_require(meta, "dones", "non_tensor_batch"),
        switch=_require(meta, "switch", "non_tensor_batch"), rewards=_require(meta, "rewards", "non_tensor_batch"),
        is_action_valid=meta["is_action_valid"] if _has(meta, "is_action_valid") else None,
        values=values, value_masks=value_masks, config=config, action_mask=action_mask, subgoal_mask=subgoal_mask,
        switch_mask=switch_mask, responses=batch["responses"] if _has(batch, "responses") else None,
        reducer=reducer, out=out)
    for key, value in outputs.items():
        batch[key] = value
    return data


# ---------------------------------------------------------------------------------------------
# Span masks and value masks, with the authors' signatures (docs/semantics.md §2.4, §4.2)
# ---------------------------------------------------------------------------------------------

_MASKERS: dict[int, tuple[Any, SpanMasker]] = {}


def span_masker_for(tokenizer) -> SpanMasker:
    """The SpanMasker of `tokenizer`, built on first use and kept (with a reference to the
    tokenizer, so its id cannot be reused) for the life of the process."""
    entry = _MASKERS.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        entry = (tokenizer, SpanMasker(tokenizer))
        _MASKERS[id(tokenizer)] = entry
    return entry[1]


def _responses(data: Any):
    """(responses, response_mask, device, work): the tensors where the masker runs (`work`:
    their GPU when they are on one and hiper can run there, else the CPU) and the device the
    results go back to."""
    import torch

    batch = data.batch
    responses = _require(batch, "responses", "batch")
    response_mask = _require(batch, "response_mask", "batch")
    if not isinstance(responses, torch.Tensor) or not isinstance(response_mask, torch.Tensor):
        raise TypeError("data.batch['responses'] and ['response_mask'] must be torch tensors")
    device = responses.device
    work = device if runs_on_device(responses) else torch.device("cpu")
    return responses.to(work), response_mask.to(work), device, work


def make_hae_masks_and_switch(data: Any, tokenizer, include_tags_mask: bool = False):
    """Token masks of the three blocks and the switch decision of every row.

    Returns (action_mask, subgoal_mask, switch_mask, is_new_subgoal): (N, L) bool tensors on
    the responses' device and an (N,) numpy bool array (True starts a new segment), equal to
    what the authors' decode-and-search function returns. Responses on a GPU are masked there
    (the masks never leave it); the switch decisions, a numpy array, are copied back (N bytes,
    one wait for the GPU, which also reports any token id outside the vocabulary).
    """
    responses, response_mask, device, work = _responses(data)
    m = span_masker_for(tokenizer)(responses, response_mask, include_tags=include_tags_mask,
                                   outputs=("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal"))
    return (m.action_mask.to(device), m.subgoal_mask.to(device), m.switch_mask.to(device),
            m.is_new_subgoal.cpu().numpy().copy())


def compute_value_mask(data: Any, tokenizer):
    """Where each value head is read: (value_mask_high, value_mask_low, value_mask_term), (N, L)
    bool tensors on the responses' device, equal to the authors' function's.

    high: position 0 on segment-start turns (turn 0 of a trajectory, or `switch` set);
    low: the first token after </subgoal> (else after </switch>, else position 0);
    term: the first valid response token.
    Responses on a GPU are masked there; checking their token ids waits for the GPU once.
    """
    import torch

    responses, response_mask, device, work = _responses(data)
    meta = data.non_tensor_batch
    boundary = segment_starts(np.asarray(_require(meta, "traj_uid", "non_tensor_batch")),
                              _require(meta, "turn_idx", "non_tensor_batch"),
                              _require(meta, "switch", "non_tensor_batch"))
    if boundary.shape[0] != responses.shape[0]:
        raise ValueError(f"non_tensor_batch: expected {responses.shape[0]} rows like responses, "
                         f"got {boundary.shape[0]}")
    m = span_masker_for(tokenizer)(responses, response_mask, is_boundary=torch.from_numpy(boundary).to(work),
                                   outputs=("value_mask_high", "value_mask_low", "value_mask_term"))
    return m.value_mask_high.to(device), m.value_mask_low.to(device), m.value_mask_term.to(device)
