"""Token-level ops: per-row summaries of span masks and the broadcast of per-turn HAE
results onto response tokens (docs/semantics.md §4.2, §4.6, §4.8).

(N, L) masks are bool (or uint8) and shared with the core without copies; the float
outputs are float32. All work is one pass over each row in C++, or on the GPU for CUDA
tensors (results stay on the device; no op waits for it).
"""
from __future__ import annotations

from typing import Any, Mapping

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, Allocator, optional_numpy, out_view, to_numpy
from hiper.ops._device import is_cuda_tensor
from hiper.ops.types import FLOAT_OUTPUTS, MASK_OUTPUTS, TOKEN_MASKS, HAETokenOutputs, RowSummary, SpanMasks


def _spans(spans: SpanMasks | None, given: Mapping[str, Any]) -> SpanMasks:
    """The (N, L) masks as one SpanMasks: `spans`, or the masks given one by one (not both)."""
    if spans is None:
        return SpanMasks(**given)
    if not isinstance(spans, SpanMasks):
        raise TypeError(f"spans: expected a hiper.SpanMasks, got {type(spans).__name__}")
    for name, mask in given.items():
        if mask is not None:
            raise ValueError(f"{name}: given with spans; pass the masks in spans or one by one, not both")
    return spans


def _masks(response_mask: Any, spans: SpanMasks):
    resp = to_numpy(response_mask, "response_mask", BOOL, ndim=2)
    out = {}
    for name in TOKEN_MASKS:
        arr = optional_numpy(getattr(spans, name), name, BOOL, ndim=2)
        if arr is not None and arr.shape != resp.shape:
            raise ValueError(f"{name}: expected shape {tuple(resp.shape)} like response_mask, got {tuple(arr.shape)}")
        out[name] = arr
    return resp, out


def row_scan(
    response_mask: Any,
    action_mask: Any = None,
    subgoal_mask: Any = None,
    switch_mask: Any = None,
    value_mask_low: Any = None,
    value_mask_high: Any = None,
    value_mask_term: Any = None,
    *,
    spans: SpanMasks | None = None,
    values_low: Any = None,
    values_high: Any = None,
    values_term: Any = None,
) -> RowSummary:
    """Summarise (N, L) masks per row (see RowSummary). action_mask None means the whole
    response is the action span. spans: the six masks as one SpanMasks (a span masker's
    output; its is_new_subgoal is not read), instead of one by one. values_low/high/term:
    optional (N, L) float32 outputs of the value heads, read at the heads' positions in the
    same pass."""
    spans = _spans(spans, dict(action_mask=action_mask, subgoal_mask=subgoal_mask, switch_mask=switch_mask,
                               value_mask_low=value_mask_low, value_mask_high=value_mask_high,
                               value_mask_term=value_mask_term))
    if is_cuda_tensor(response_mask):
        from hiper.ops import _cuda

        return _cuda.row_scan(response_mask, spans,
                              dict(values_low=values_low, values_high=values_high, values_term=values_term))
    resp, m = _masks(response_mask, spans)
    values = {}
    for name, v in (("values_low", values_low), ("values_high", values_high), ("values_term", values_term)):
        arr = optional_numpy(v, name, FLOAT32, ndim=2)
        if arr is not None and arr.shape != resp.shape:
            raise ValueError(f"{name}: expected shape {tuple(resp.shape)} like response_mask, got {tuple(arr.shape)}")
        values[name] = arr
    raw = _C.row_scan(resp, m["action_mask"], m["subgoal_mask"], m["switch_mask"], m["value_mask_low"],
                      m["value_mask_high"], m["value_mask_term"], values["values_low"], values["values_high"],
                      values["values_term"])
    alloc = Allocator(response_mask)
    return RowSummary(*(None if raw[name] is None else alloc.wrap(raw[name]) for name in RowSummary._fields))


def hae_token_outputs(
    turns: Any,
    response_mask: Any,
    *,
    spans: SpanMasks | None = None,
    action_mask: Any = None,
    subgoal_mask: Any = None,
    switch_mask: Any = None,
    value_mask_low: Any = None,
    value_mask_high: Any = None,
    value_mask_term: Any = None,
    assign_high_to_subgoal: bool = True,
    assign_high_to_switch: bool = False,
    assign_term_to_switch: bool = True,
    outputs: tuple[str, ...] = FLOAT_OUTPUTS + MASK_OUTPUTS,
    out: Mapping[str, Any] | None = None,
) -> HAETokenOutputs:
    """Broadcast per-turn HAE results onto response tokens (docs/semantics.md §4.6).

    Args:
        turns: HAETurnOutputs (or anything with adv_low, adv_high, adv_term, ret_low,
            ret_high, ret_term and is_boundary, each (N,)).
        response_mask: (N, L) bool, valid response tokens. Every mask is ANDed with it.
        spans: the masks below as one SpanMasks (a span masker's output; its is_new_subgoal
            is not read), instead of one by one.
        action_mask: (N, L) bool span of the action block (None: the whole response).
        subgoal_mask, switch_mask: (N, L) bool spans (None: empty).
        value_mask_low/high/term: (N, L) bool positions that receive the returns (None: none).
        assign_high_to_subgoal / assign_high_to_switch: put A^H on the subgoal / switch
            tokens of segment-start turns. assign_term_to_switch: put A^T on switch tokens.
        outputs: names of the outputs to produce (default: all).
        out: optional mapping name -> preallocated (N, L) tensor/array (float32 or bool)
            reused instead of allocating; names in `out` are produced even if not in `outputs`.
    Returns:
        HAETokenOutputs with the requested fields set.
    """
    out = dict(out or {})
    unknown = set(outputs) | set(out)
    unknown -= set(FLOAT_OUTPUTS + MASK_OUTPUTS)
    if unknown:
        raise ValueError(f"outputs: unknown names {sorted(unknown)}; expected from {FLOAT_OUTPUTS + MASK_OUTPUTS}")
    spans = _spans(spans, dict(action_mask=action_mask, subgoal_mask=subgoal_mask, switch_mask=switch_mask,
                               value_mask_low=value_mask_low, value_mask_high=value_mask_high,
                               value_mask_term=value_mask_term))
    if is_cuda_tensor(response_mask):
        from hiper.ops import _cuda

        wanted = {name: out.get(name) for name in FLOAT_OUTPUTS + MASK_OUTPUTS if name in out or name in outputs}
        return _cuda.hae_token_outputs(turns, response_mask, spans, high_on_subgoal=assign_high_to_subgoal,
                                       high_on_switch=assign_high_to_switch, term_on_switch=assign_term_to_switch,
                                       wanted=wanted)
    resp, m = _masks(response_mask, spans)
    n = resp.shape[0]
    per_turn = {}
    for name in ("adv_low", "adv_high", "adv_term", "ret_low", "ret_high", "ret_term", "is_boundary"):
        arr = to_numpy(getattr(turns, name), f"turns.{name}", BOOL if name == "is_boundary" else FLOAT32, ndim=1)
        if arr.shape[0] != n:
            raise ValueError(f"turns.{name}: expected {n} rows like response_mask, got {arr.shape[0]}")
        per_turn[name] = arr
    alloc = Allocator(response_mask)
    results, views = {}, {}
    for name in FLOAT_OUTPUTS + MASK_OUTPUTS:
        dtype = FLOAT32 if name in FLOAT_OUTPUTS else BOOL
        if name in out:
            results[name], views[name] = out[name], out_view(out[name], f"out[{name!r}]", resp.shape, dtype)
        elif name in outputs:
            results[name], views[name] = alloc.empty(resp.shape, dtype)
    _C.token_outputs(
        resp, m["action_mask"], m["subgoal_mask"], m["switch_mask"], m["value_mask_low"], m["value_mask_high"],
        m["value_mask_term"], per_turn["is_boundary"], per_turn["adv_low"], per_turn["adv_high"],
        per_turn["adv_term"], per_turn["ret_low"], per_turn["ret_high"], per_turn["ret_term"],
        bool(assign_high_to_subgoal), bool(assign_high_to_switch), bool(assign_term_to_switch), **views)
    return HAETokenOutputs(**results)
