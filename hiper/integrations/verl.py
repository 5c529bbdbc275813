"""Drop-ins for verl / verl-agent style trainers: HAE, span masks and value masks.

`compute_hae_advantage(data, config, action_mask, subgoal_mask, switch_mask)` has the
signature and semantics of the authors' estimator (docs/semantics.md §4; `hiper_hae/core_hae.py` in
their repository) and writes the same keys, but runs in the compiled core: no Python loop
over trajectories, turns or tokens.

Duplicate rows. The authors' trainer pads a batch to a multiple of its micro-batch size by
duplicating random rows, which keeps their (traj_uid, turn_idx); their estimator then treats
the copies as extra turns (rewards counted twice, a copied SWITCH turn forms a one-turn
segment). This drop-in refuses such a batch with a ValueError naming `turn_idx`: pad *after*
computing advantages (or give padded rows a fresh traj_uid and drop them from the loss).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from hiper import has_cuda
from hiper._arrays import BOOL, FLOAT32, INT64, to_numpy
from hiper.config import HAEConfig
from hiper.masks import SpanMasker, segment_starts
from hiper.ops.hae import hae_core, subgoal_changed
from hiper.ops.layout import build_layout, factorize
from hiper.ops.tokens import hae_token_outputs, row_scan

__all__ = ["HAEConfig", "compute_hae_advantage", "compute_value_mask", "make_hae_masks_and_switch"]

# Output keys as the authors' estimator writes them -> hae_token_outputs names.
_OUTPUT_KEYS = {
    "advantages": "advantages",
    "advantages_low": "advantages_low",
    "advantages_high": "advantages_high",
    "advantages_term": "advantages_term",
    "returns_low": "returns_low",
    "returns_high": "returns_high",
    "returns_term": "returns_term",
    "hae_lo_mask": "lo_mask",
    "hae_hi_mask": "hi_mask",
    "hae_term_mask": "term_mask",
}


def _known_key(key: str) -> bool:
    if key not in _OUTPUT_KEYS:
        raise ValueError(f"out: unknown key {key!r}; expected one of {sorted(_OUTPUT_KEYS)}")
    return True


def _has(mapping: Any, key: str) -> bool:
    """Membership through .keys(): verl's TensorDict batches refuse `key in batch`."""
    return key in mapping.keys()


def _require(mapping: Any, key: str, where: str):
    if not _has(mapping, key):
        raise KeyError(f"data.{where}[{key!r}] is required by compute_hae_advantage")
    return mapping[key]


def _gather(values: Any, pos: Any, name: str):
    """values[i, pos[i]] as float32 (N,) on pos's device, reading one element per row where
    the values are (only the N picked values move between devices)."""
    import torch

    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values))
    if values.dim() != 2 or values.shape[0] != pos.shape[0]:
        raise ValueError(f"{name}: expected shape ({pos.shape[0]}, L), got {tuple(values.shape)}")
    picked = values.detach().gather(1, pos.to(values.device).view(-1, 1)).view(-1).float()
    return picked.to(pos.device)


def _flags(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x, dtype=bool)


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

    Where it runs: with the batch on a GPU and hiper built with CUDA, on that GPU (the
    per-turn metadata is copied over, the layout is built on the host, where the metadata
    is, and copied too; nothing waits for the GPU and the outputs stay there). Otherwise on
    the host, with GPU tensors copied over and the outputs moved back; also across ranks
    (`reducer`), whose statistics are gathered on the host.
    """
    import torch

    if not isinstance(config, HAEConfig):
        raise TypeError(f"config: expected hiper.HAEConfig, got {type(config).__name__}")
    batch, meta = data.batch, data.non_tensor_batch
    response_mask_t = _require(batch, "response_mask", "batch")
    device = response_mask_t.device
    across_ranks = config.norm_adv and reducer is not None and reducer.distributed
    on_gpu = device.type == "cuda" and not across_ranks and has_cuda()
    work = device if on_gpu else torch.device("cpu")

    def work_mask(x):
        if x is None:
            return None
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        return x.to(work)

    response_mask = work_mask(response_mask_t)
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask: expected (N, L), got shape {tuple(response_mask.shape)}")
    n, length = response_mask.shape
    action_mask, subgoal_mask, switch_mask = (work_mask(m) for m in (action_mask, subgoal_mask, switch_mask))

    def per_turn(key, dtype, optional=False):
        if optional and not _has(meta, key):
            return None
        arr = to_numpy(np.asarray(_require(meta, key, "non_tensor_batch")), key, dtype, ndim=1)
        if arr.shape[0] != n:
            raise ValueError(f"non_tensor_batch[{key!r}]: expected {n} rows like response_mask, got {arr.shape[0]}")
        return arr

    def to_work(arr):  # host metadata where the estimator runs (an asynchronous copy to a GPU)
        return torch.from_numpy(np.array(arr)).to(work, non_blocking=True) if on_gpu and arr is not None else arr

    traj_uid = _require(meta, "traj_uid", "non_tensor_batch")
    if len(traj_uid) != n:
        raise ValueError(f"non_tensor_batch['traj_uid']: expected {n} rows like response_mask, got {len(traj_uid)}")
    traj = factorize(np.asarray(traj_uid))
    turn = per_turn("turn_idx", INT64)
    dones = per_turn("dones", BOOL)
    switch = per_turn("switch", BOOL)
    rewards = per_turn("rewards", FLOAT32)
    valid = per_turn("is_action_valid", FLOAT32, optional=True) if config.invalid_action_penalty_coef != 0.0 else None

    has_high = _has(batch, config.value_key_high)
    has_term = _has(batch, config.value_key_term) and _has(batch, "value_mask_term")
    vmask_low = work_mask(_require(batch, "value_mask_low", "batch"))
    vmask_high = work_mask(batch["value_mask_high"]) if _has(batch, "value_mask_high") else None
    if has_high and vmask_high is None:
        raise KeyError("data.batch['value_mask_high'] is required when the high value head is present")
    vmask_term = work_mask(batch["value_mask_term"]) if has_term else None

    heads = {"low": _require(batch, config.value_key_low, "batch"),
             "high": batch[config.value_key_high] if has_high else None,
             "term": batch[config.value_key_term] if has_term else None}
    # float32 head outputs where the estimator runs are read inside the mask scan; anything
    # else (bf16, on another device) is gathered with torch afterwards, one element per row.
    direct = {h: v for h, v in heads.items()
              if isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device == work and v.dim() == 2}
    rows = row_scan(response_mask, action_mask, subgoal_mask, switch_mask, vmask_low, vmask_high, vmask_term,
                    values_low=direct.get("low"), values_high=direct.get("high"), values_term=direct.get("term"))
    picked = {}
    for h, v in heads.items():
        key = getattr(config, f"value_key_{h}")
        picked[h] = None if v is None else (getattr(rows, f"value_{h}") if h in direct
                                           else _gather(v, getattr(rows, f"pos_{h}"), key))
    v_low, v_term = picked["low"], picked["term"]
    v_high = picked["high"] if has_high else v_low

    # Built on the host, where the metadata is (validated there: no GPU wait), then copied.
    layout = build_layout(traj, turn, switch).to(work)
    changed = None
    if config.keep_consistency_penalty != 0.0 and subgoal_mask is not None:
        responses = work_mask(_require(batch, "responses", "batch"))
        changed = subgoal_changed(layout, responses, subgoal_mask, response_mask,
                                  requires_both=config.keep_consistency_requires_both)
    term_on_switch = config.assign_term_to_switch and has_term
    # Normalisation statistics run over the turns each advantage lands on (non-empty span).
    credited_high = None
    if config.norm_adv:
        boundary = layout.is_boundary if layout.is_cuda else torch.from_numpy(np.array(layout.is_boundary))
        credited_high = ((rows.has_subgoal & config.assign_high_to_subgoal)
                         | (rows.has_switch & config.assign_high_to_switch)) & boundary
    credited_term = rows.has_switch & term_on_switch
    core_config = dataclasses.replace(config, norm_adv=False) if across_ranks else config
    turns = hae_core(layout, to_work(rewards), to_work(dones), v_low, v_high, v_term, is_new_subgoal=to_work(switch),
                     is_action_valid=to_work(valid), subgoal_changed=changed, config=core_config,
                     credited_low=rows.has_action, credited_high=credited_high, credited_term=credited_term)
    if across_ranks:
        from hiper.distributed import normalize_rows

        normalize_rows(turns.adv_low, _flags(rows.has_action), reducer)
        normalize_rows(turns.adv_high, _flags(credited_high), reducer)
        if v_term is not None:
            normalize_rows(turns.adv_term, _flags(credited_term), reducer)

    tokens = hae_token_outputs(
        turns, response_mask, action_mask=action_mask, subgoal_mask=subgoal_mask, switch_mask=switch_mask,
        value_mask_low=vmask_low, value_mask_high=vmask_high, value_mask_term=vmask_term,
        assign_high_to_subgoal=config.assign_high_to_subgoal, assign_high_to_switch=config.assign_high_to_switch,
        assign_term_to_switch=term_on_switch, outputs=tuple(_OUTPUT_KEYS.values()),
        out={_OUTPUT_KEYS[key]: buf for key, buf in (out or {}).items() if _known_key(key)})
    for key, name in _OUTPUT_KEYS.items():
        value = getattr(tokens, name)
        batch[key] = value if value.device == device else value.to(device)
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
    work = device if device.type == "cuda" and has_cuda() else torch.device("cpu")
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
