"""HAE from a batch of responses to token-level advantages, returns and credit masks, on the
device of the responses: the one sequence behind the trainer's estimator
(hiper.estimators.hae_advantages) and the verl adapters (hiper.integrations.verl and
verl_registry), which only read their batches and call it.

    hae_for_responses   responses -> span masks and switch flags (hiper.SpanMasker) -> segment
                        starts -> value masks -> hae_from_masks
    hae_from_masks      row_scan (each row's spans and the value each head reads there)
                        -> trajectory layout -> subgoal_changed (keep-consistency penalty)
                        -> hae_core (shaping, recurrences, normalisation; docs/semantics.md §4)
                        -> normalisation across ranks, when the batch is one rank's share
                        -> hae_token_outputs (docs/semantics.md §4.6)

Where it runs: with the token tensors on a GPU that hiper's CUDA ops can use, there: the
(N, L) tensors never leave it and the outputs stay there. The per-turn metadata (trajectory
ids, turn indices, dones, rewards, switch flags: N values each) is read on the host, where the
layout is built and validated without waiting for the GPU, and copied over. Otherwise, and for
normalisation across ranks (its statistics are gathered on the host), on the host, with GPU
tensors copied over and the outputs moved back to the responses' device.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from hiper import has_cuda
from hiper._arrays import BOOL, FLOAT32, INT64, to_numpy
from hiper.config import HAEConfig
from hiper.masks import SpanMasker, SpanMasks, segment_starts
from hiper.ops._device import is_cuda_tensor
from hiper.ops.hae import hae_core, subgoal_changed
from hiper.ops.layout import build_layout, factorize
from hiper.ops.tokens import hae_token_outputs, row_scan

HEADS = ("low", "high", "term")

# The outputs by the names the authors' estimator writes them under -> hae_token_outputs names.
OUTPUT_NAMES = {
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
OUTPUT_KEYS = tuple(OUTPUT_NAMES)


class HAEResult(NamedTuple):
    """outputs: the token-level outputs by key (OUTPUT_KEYS), (N, L) on the responses' device.
    value_masks: the masker's value_mask_low / value_mask_high / value_mask_term, (N, L) bool:
    where each value head is read, hence where its returns are its targets."""

    outputs: dict[str, Any]
    value_masks: SpanMasks


def runs_on_device(x: Any) -> bool:
    """True when `x` is a CUDA tensor on a GPU that hiper's CUDA ops can run on."""
    return is_cuda_tensor(x) and has_cuda()


def _work_device(x: Any, across_ranks: bool = False):
    """The device the sequence runs on for token tensors like `x` (see the module's docstring)."""
    import torch

    return x.device if runs_on_device(x) and not across_ranks else torch.device("cpu")


def _tensor(x: Any, name: str, work=None):
    """`x` as a tensor on `work` (None: where it is, the host for arrays): the caller's tensor
    itself when it is already there."""
    import torch

    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name}: cannot be read as an array ({exc})") from exc
    return x if work is None else x.to(work)


def _host(x: Any) -> Any:
    """Per-turn values (N of them) where the layout is built: the host. Only tensors on another
    device are copied."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach()
        return x if x.device.type == "cpu" else x.cpu()
    return x


def _per_turn(value: Any, name: str, dtype: np.dtype, n: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name}: required, one value per row")
    arr = to_numpy(_host(value), name, dtype, ndim=1)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows like response_mask, got {arr.shape[0]}")
    return arr


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


def _heads(mapping: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """{head: value or None} for the three heads from a mapping that has some of them."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{name}: expected a mapping of heads {HEADS}, got {type(mapping).__name__}")
    unknown = set(mapping) - set(HEADS)
    if unknown:
        raise ValueError(f"{name}: unknown heads {sorted(unknown)}; expected from {HEADS}")
    return {h: mapping.get(h) for h in HEADS}


def hae_from_masks(response_mask: Any, *, traj_ids: Any, turn_idx: Any, dones: Any, switch: Any, rewards: Any,
                   values: Mapping[str, Any], value_masks: Mapping[str, Any], config: HAEConfig,
                   is_action_valid: Any = None, action_mask: Any = None, subgoal_mask: Any = None,
                   switch_mask: Any = None, responses: Any = None, reducer: Any = None,
                   out: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hierarchical advantages of N turns whose token spans are known.

    Args:
        response_mask: (N, L) bool (or 0/1) valid response tokens; its device decides where
            the sequence runs (module docstring) and where the outputs go.
        traj_ids: (N,) trajectory of each row, any hashables; turn_idx: (N,) its index in the
            trajectory; dones: (N,) the trajectory ended at this turn; switch: (N,) the turn
            starts a new segment (SWITCH); rewards: (N,) the turn's environment reward.
            Tensors, numpy arrays or sequences, on any device (N values are read on the host).
        values: the critic's (N, L) outputs by head: "low" (required), "high" (without it the
            low head's values stand in for V^H), "term" (without it no termination advantage).
            float32 tensors where the sequence runs are read in the mask scan; any other dtype
            or device is gathered one value per row.
        value_masks: (N, L) bool positions where each head is read: "low" (required), "high"
            (required with a high head), "term" (required with a term head); the positions
            that receive each head's returns (docs/semantics.md §4.2).
        config: HAEConfig.
        is_action_valid: optional (N,) validity of each turn's action (read only with an
            invalid-action penalty).
        action_mask, subgoal_mask, switch_mask: (N, L) bool token spans (None: action = the
            whole response, subgoal / switch empty).
        responses: (N, L) token ids, needed for the keep-consistency penalty (with a
            subgoal_mask).
        reducer: a hiper.distributed.Reducer when this batch is one rank's share of a
            data-parallel batch: normalisation statistics are then taken over every rank.
        out: optional mapping from output key to a preallocated (N, L) tensor (float32, or
            bool for the hae_*_mask keys) on the device the sequence runs on, written in place.
    Returns:
        {key: (N, L) tensor} for OUTPUT_KEYS, on response_mask's device.
    """
    import torch

    if not isinstance(config, HAEConfig):
        raise TypeError(f"config: expected hiper.HAEConfig, got {type(config).__name__}")
    for key in out or {}:
        if key not in OUTPUT_NAMES:
            raise ValueError(f"out: unknown key {key!r}; expected one of {sorted(OUTPUT_NAMES)}")
    heads, vmasks = _heads(values, "values"), _heads(value_masks, "value_masks")
    if heads["low"] is None:
        raise ValueError("values: the 'low' head is required")
    if vmasks["low"] is None:
        raise ValueError("value_masks: the 'low' mask is required")
    if heads["high"] is not None and vmasks["high"] is None:
        raise ValueError("value_masks: the 'high' mask is required with a high value head")
    if heads["term"] is not None and vmasks["term"] is None:
        raise ValueError("value_masks: the 'term' mask is required with a term value head")
    if heads["term"] is None:
        vmasks["term"] = None  # a term mask without its head credits nothing

    response_mask = _tensor(response_mask, "response_mask")
    device = response_mask.device
    across_ranks = config.norm_adv and reducer is not None and reducer.distributed
    work = _work_device(response_mask, across_ranks)
    on_gpu = work.type != "cpu"
    response_mask = response_mask.to(work)
    if response_mask.dim() != 2:
        raise ValueError(f"response_mask: expected (N, L), got shape {tuple(response_mask.shape)}")
    n = response_mask.shape[0]
    action_mask, subgoal_mask, switch_mask = (None if m is None else _tensor(m, name, work) for m, name in (
        (action_mask, "action_mask"), (subgoal_mask, "subgoal_mask"), (switch_mask, "switch_mask")))
    vmask_low, vmask_high, vmask_term = (None if vmasks[h] is None else _tensor(vmasks[h], f"value_masks[{h!r}]", work)
                                         for h in HEADS)

    traj_ids = _host(traj_ids)
    if len(traj_ids) != n:
        raise ValueError(f"traj_ids: expected {n} rows like response_mask, got {len(traj_ids)}")
    traj = factorize(np.asarray(traj_ids))
    turn = _per_turn(turn_idx, "turn_idx", INT64, n)
    done = _per_turn(dones, "dones", BOOL, n)
    new_segment = _per_turn(switch, "switch", BOOL, n)
    reward = _per_turn(rewards, "rewards", FLOAT32, n)
    valid = None
    if config.invalid_action_penalty_coef != 0.0 and is_action_valid is not None:
        valid = _per_turn(is_action_valid, "is_action_valid", FLOAT32, n)

    def to_work(arr):  # host metadata where the sequence runs (an asynchronous copy to a GPU)
        return torch.from_numpy(np.array(arr)).to(work, non_blocking=True) if on_gpu and arr is not None else arr

    # float32 head outputs where the sequence runs are read inside the mask scan; anything
    # else (bf16, on another device) is gathered with torch afterwards, one element per row.
    direct = {h: v for h, v in heads.items()
              if isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device == work and v.dim() == 2}
    rows = row_scan(response_mask, action_mask, subgoal_mask, switch_mask, vmask_low, vmask_high, vmask_term,
                    values_low=direct.get("low"), values_high=direct.get("high"), values_term=direct.get("term"))
    picked = {h: None if v is None else (getattr(rows, f"value_{h}") if h in direct
                                         else _gather(v, getattr(rows, f"pos_{h}"), f"values[{h!r}]"))
              for h, v in heads.items()}
    v_low, v_term = picked["low"], picked["term"]
    v_high = picked["high"] if picked["high"] is not None else v_low

    # Built on the host, where the metadata is (validated there: no GPU wait), then copied.
    layout = build_layout(traj, turn, new_segment).to(work)
    changed = None
    if config.keep_consistency_penalty != 0.0 and subgoal_mask is not None:
        if responses is None:
            raise ValueError("responses: required for the keep-consistency penalty (config.keep_consistency_penalty)")
        changed = subgoal_changed(layout, _tensor(responses, "responses", work), subgoal_mask, response_mask,
                                  requires_both=config.keep_consistency_requires_both)
    term_on_switch = config.assign_term_to_switch and v_term is not None
    # Normalisation statistics run over the turns each advantage lands on (non-empty span).
    credited_high = None
    if config.norm_adv:
        boundary = layout.is_boundary if layout.is_cuda else torch.from_numpy(np.array(layout.is_boundary))
        credited_high = ((rows.has_subgoal & config.assign_high_to_subgoal)
                         | (rows.has_switch & config.assign_high_to_switch)) & boundary
    credited_term = rows.has_switch & term_on_switch
    core_config = dataclasses.replace(config, norm_adv=False) if across_ranks else config
    turns = hae_core(layout, to_work(reward), to_work(done), v_low, v_high, v_term,
                     is_new_subgoal=to_work(new_segment), is_action_valid=to_work(valid), subgoal_changed=changed,
                     config=core_config, credited_low=rows.has_action, credited_high=credited_high,
                     credited_term=credited_term)
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
        assign_term_to_switch=term_on_switch, outputs=tuple(OUTPUT_NAMES.values()),
        out={OUTPUT_NAMES[key]: buf for key, buf in (out or {}).items()})
    return {key: getattr(tokens, name).to(device) for key, name in OUTPUT_NAMES.items()}


def _value_heads(values: Any) -> dict[str, Any]:
    """{head: (N, L) values} from one shared head or a mapping of heads ("term" optional)."""
    import torch

    if isinstance(values, torch.Tensor):
        return {h: values for h in HEADS}  # a single value head stands in for all three
    if not isinstance(values, Mapping):
        raise TypeError(f"values: expected an (N, L) tensor or a mapping of heads {HEADS}, "
                        f"got {type(values).__name__}")
    unknown = set(values) - set(HEADS)
    if unknown or not {"low", "high"} <= set(values):
        raise ValueError(f"values: expected the heads 'low' and 'high' (and optionally 'term'), got {sorted(values)}")
    return dict(values)


def hae_for_responses(responses: Any, response_mask: Any, values: Any, *, traj_ids: Any, turn_idx: Any, dones: Any,
                      rewards: Any, masker: SpanMasker, config: HAEConfig, spans: SpanMasks | None = None,
                      is_action_valid: Any = None, reducer: Any = None) -> HAEResult:
    """Hierarchical advantages of N turns, one response each.

    Args:
        responses: (N, L) token ids; response_mask: (N, L) bool (or 0/1 integers); their
            device is where the sequence runs (module docstring).
        values: the critic's (N, L) outputs: one tensor, shared by the three HAE values (a
            single value head), or a mapping with the heads "low", "high" and optionally
            "term" (without it, no termination advantage is computed).
        traj_ids: (N,) trajectory of each turn, any hashable values; turn_idx: (N,) its index
            in the trajectory; dones: (N,) bool, the trajectory ended at this turn; rewards:
            (N,) the turn's environment reward.
        masker: the policy tokenizer's SpanMasker.
        config: HAEConfig.
        spans: the masker's output for these responses with include_tags=True (the span masks
            and the switch decisions), when the caller already has it; computed otherwise.
        is_action_valid: optional (N,) validity of each turn's action (the invalid-action
            penalty); reducer: as in hae_from_masks, for one rank's share of a batch.
    Returns:
        HAEResult, on the responses' device.
    """
    import torch

    if not isinstance(config, HAEConfig):
        raise TypeError(f"config: expected hiper.HAEConfig, got {type(config).__name__}")
    responses = _tensor(responses, "responses")
    if responses.dim() != 2:
        raise ValueError(f"responses: expected (N, L) token ids, got shape {tuple(responses.shape)}")
    device = responses.device
    work = _work_device(responses)
    responses = responses.to(work)
    response_mask = _tensor(response_mask, "response_mask", work).bool()
    if response_mask.shape != responses.shape:
        raise ValueError(f"response_mask: expected the shape of responses {tuple(responses.shape)}, "
                         f"got {tuple(response_mask.shape)}")
    n = responses.shape[0]
    heads = {h: _tensor(v, f"values[{h!r}]") for h, v in _value_heads(values).items()}
    for h, v in heads.items():
        if v.dim() != 2 or v.shape[0] != n:
            raise ValueError(f"values[{h!r}]: expected ({n}, L) like responses, got shape {tuple(v.shape)}")
    traj_ids, turn_idx = _host(traj_ids), _host(turn_idx)
    for name, value in (("traj_ids", traj_ids), ("turn_idx", turn_idx)):
        if len(value) != n:
            raise ValueError(f"{name}: expected {n} rows like responses, got {len(value)}")
    if spans is None:
        spans = masker(responses, response_mask, include_tags=True)
    # N flags to the host, for the segment starts and the layout (on a GPU: one wait for it).
    switch = to_numpy(_host(spans.is_new_subgoal), "spans.is_new_subgoal", BOOL, ndim=1)

    # The high value is read at segment starts: the first turn of each trajectory or a SWITCH.
    boundary = torch.from_numpy(segment_starts(np.asarray(traj_ids), np.asarray(turn_idx), switch))
    value_masks = masker(responses, response_mask, is_boundary=boundary.to(work),
                         outputs=("value_mask_high", "value_mask_low", "value_mask_term"))
    outputs = hae_from_masks(
        response_mask, traj_ids=traj_ids, turn_idx=turn_idx, dones=dones, switch=switch, rewards=rewards,
        values=heads, value_masks={h: getattr(value_masks, f"value_mask_{h}") for h in HEADS}, config=config,
        is_action_valid=is_action_valid, action_mask=spans.action_mask, subgoal_mask=spans.subgoal_mask,
        switch_mask=spans.switch_mask, responses=responses, reducer=reducer)
    if device != work:
        outputs = {key: t.to(device) for key, t in outputs.items()}
        value_masks = SpanMasks(**{name: None if t is None else t.to(device)
                                   for name, t in value_masks._asdict().items()})
    return HAEResult(outputs, value_masks)
