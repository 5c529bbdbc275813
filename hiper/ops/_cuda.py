"""The CUDA path of the ops. Each function is the twin of the public op of the same name
(hiper.ops.hae / tokens, hiper.SpanMasker), which calls it when its inputs are CUDA tensors (or
its layout is a CudaTrajectoryLayout), after the checks that do not depend on the device. (The
layout's own CUDA build is in hiper.ops.layout, below every op that takes a layout.)

Inputs are checked and converted on their device (hiper.ops._device.DeviceArgs), outputs
allocated there by torch, and the work enqueued on the caller's current CUDA stream.
Nothing here waits for the GPU, except CudaTrajectoryLayout.validate(), span_masks with
validate=True (reading back whether a token id was outside the vocabulary) and a span masker's
first call on a device (copying its vocabulary table there, see VocabTable).
What the host path checks and the device path does not, because it would have to wait:
non-finite rewards and values (they propagate as IEEE arithmetic does), and, in
normalize_advantages, eps = 0 with constant included values (the CPU raises, the GPU
returns NaN there).
"""
from __future__ import annotations

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, INT64
from hiper.config import HAEConfig
from hiper.ops._device import TOKEN, DeviceArgs, ptr, require_backend
from hiper.ops.layout import TrajectoryLayout
from hiper.ops.types import (FLOAT_OUTPUTS, MASK_NAMES, MASK_OUTPUTS, TOKEN_MASKS, TURN_OUTPUTS, HAETokenOutputs,
                             HAETurnOutputs, RowSummary, SpanMasks)


def _args(device, op: str) -> DeviceArgs:
    require_backend(device, op)
    return DeviceArgs(device, op)


def _layout_args(layout: TrajectoryLayout, op: str) -> DeviceArgs:
    if not layout.is_cuda:  # the public ops dispatch on the layout; this guards direct calls
        raise ValueError(f"layout: expected a CudaTrajectoryLayout, got one on {layout.device}")
    return _args(layout.device, op)


def _workspace(a: DeviceArgs, nbytes: int) -> dict:
    ws = a.workspace(nbytes)
    return {"workspace": ptr(ws), "workspace_bytes": ws.numel()}


# ----------------------------------------------------------------------------------------- per turn
def shape_rewards(layout, rewards, is_new_subgoal, is_action_valid, subgoal_changed, keep_penalty,
                  keep_penalty_mode, invalid_action_penalty_coef, keep_consistency_penalty, out):
    a = _layout_args(layout, "shape_rewards")
    n = (layout.num_rows,)
    r = a.tensor(rewards, "rewards", FLOAT32, n)
    result = a.empty(n, FLOAT32) if out is None else a.output(out, "out", n, FLOAT32)
    _C.cuda_shape_rewards(layout=layout.handle, rewards=ptr(r),
                          is_new_subgoal=ptr(a.optional(is_new_subgoal, "is_new_subgoal", BOOL, n)),
                          is_action_valid=ptr(a.optional(is_action_valid, "is_action_valid", FLOAT32, n)),
                          subgoal_changed=ptr(a.optional(subgoal_changed, "subgoal_changed", BOOL, n)),
                          keep_penalty=float(keep_penalty), keep_penalty_mode=keep_penalty_mode,
                          invalid_action_penalty_coef=float(invalid_action_penalty_coef),
                          keep_consistency_penalty=float(keep_consistency_penalty), out=ptr(result), **a.launch)
    return result


def _hae_inputs(a: DeviceArgs, n: tuple, dones, v_low, v_high, v_term) -> dict:
    return {"dones": ptr(a.tensor(dones, "dones", BOOL, n)), "v_low": ptr(a.tensor(v_low, "v_low", FLOAT32, n)),
            "v_high": ptr(a.tensor(v_high, "v_high", FLOAT32, n)),
            "v_term": ptr(a.optional(v_term, "v_term", FLOAT32, n))}


def _hae_scalars(gamma, lam_turn, lam_seg, bootstrap_truncated) -> dict:
    return {"gamma": float(gamma), "lam_turn": float(lam_turn), "lam_seg": float(lam_seg),
            "bootstrap_truncated": bool(bootstrap_truncated)}


def hae_turns(layout, rewards, dones, v_low, v_high, v_term, *, gamma, lam_turn, lam_seg, bootstrap_truncated):
    a = _layout_args(layout, "hae_turns")
    n = (layout.num_rows,)
    r = a.tensor(rewards, "rewards", FLOAT32, n)
    outs = {name: a.empty(n, FLOAT32) for name in TURN_OUTPUTS}
    _C.cuda_hae(layout=layout.handle, rewards=ptr(r), **_hae_inputs(a, n, dones, v_low, v_high, v_term),
                **_hae_scalars(gamma, lam_turn, lam_seg, bootstrap_truncated),
                **{name: ptr(t) for name, t in outs.items()}, **a.launch)
    return HAETurnOutputs(**outs, is_boundary=layout.is_boundary.clone())


def hae_core(layout, rewards, dones, v_low, v_high, v_term, *, is_new_subgoal, is_action_valid, subgoal_changed,
             cfg: HAEConfig, credited_low, credited_high, credited_term):
    a = _layout_args(layout, "hae_core")
    n = (layout.num_rows,)
    r = a.tensor(rewards, "rewards", FLOAT32, n)
    flags = {name: ptr(a.optional(value, name, BOOL, n)) for name, value in (
        ("is_new_subgoal", is_new_subgoal), ("subgoal_changed", subgoal_changed), ("credited_low", credited_low),
        ("credited_high", credited_high), ("credited_term", credited_term))}
    valid = a.optional(is_action_valid, "is_action_valid", FLOAT32, n)
    shaped = a.empty(n, FLOAT32)
    outs = {name: a.empty(n, FLOAT32) for name in TURN_OUTPUTS}
    _C.cuda_hae_pipeline(
        layout=layout.handle, config=cfg, rewards=ptr(r), is_action_valid=ptr(valid),
        **_hae_inputs(a, n, dones, v_low, v_high, v_term), **flags, shaped=ptr(shaped),
        **{name: ptr(t) for name, t in outs.items()},
        **_workspace(a, _C.cuda_pipeline_workspace_bytes(device=a.device.index)), **a.launch)
    return HAETurnOutputs(**outs, is_boundary=layout.is_boundary.clone())


def normalize_advantages(adv, include, eps: float, out):
    a = _args(adv.device, "normalize_advantages")
    x = a.tensor(adv, "adv", FLOAT32, ndim=1)
    n = tuple(x.shape)
    inc = a.optional(include, "include", BOOL, n)
    result = a.empty(n, FLOAT32) if out is None else a.output(out, "out", n, FLOAT32)
    _C.cuda_normalize(n=n[0], x=ptr(x), include=ptr(inc), eps=float(eps), out=ptr(result),
                      **_workspace(a, _C.cuda_normalize_workspace_bytes(device=a.device.index)), **a.launch)
    return result


def subgoal_changed(layout, responses, subgoal_mask, response_mask, requires_both: bool):
    a = _layout_args(layout, "subgoal_changed")
    tok = a.tensor(responses, "responses", TOKEN, ndim=2)
    shape = tuple(tok.shape)
    if shape[0] != layout.num_rows:
        raise ValueError(f"responses: expected {layout.num_rows} rows like the layout, got {shape[0]}")
    result = a.empty(shape[:1], BOOL)
    _C.cuda_subgoal_changed(layout=layout.handle, length=shape[1], responses=ptr(tok), token_bytes=tok.element_size(),
                            subgoal_mask=ptr(a.tensor(subgoal_mask, "subgoal_mask", BOOL, shape)),
                            response_mask=ptr(a.tensor(response_mask, "response_mask", BOOL, shape)),
                            requires_both=bool(requires_both), out=ptr(result), **a.launch)
    return result


# ----------------------------------------------------------------------------------------- (N, L)
def row_scan(response_mask, spans: SpanMasks, values: dict):
    a = _args(response_mask.device, "row_scan")
    resp = a.tensor(response_mask, "response_mask", BOOL, ndim=2)
    shape = tuple(resp.shape)
    rows = shape[:1]
    m = {name: ptr(a.optional(getattr(spans, name), name, BOOL, shape)) for name in TOKEN_MASKS}
    v = {name: a.optional(value, name, FLOAT32, shape) for name, value in values.items()}
    outs = {"response_length": a.empty(rows, INT64), "has_action": a.empty(rows, BOOL),
            "has_subgoal": a.empty(rows, BOOL), "has_switch": a.empty(rows, BOOL)}
    for head in ("low", "high", "term"):
        outs[f"pos_{head}"] = a.empty(rows, INT64)
        outs[f"value_{head}"] = None if v[f"values_{head}"] is None else a.empty(rows, FLOAT32)
    _C.cuda_row_scan(n=shape[0], length=shape[1], response_mask=ptr(resp), **m,
                     **{name: ptr(t) for name, t in v.items()}, **{name: ptr(t) for name, t in outs.items()},
                     **a.launch)
    return RowSummary(**outs)


def hae_token_outputs(turns, response_mask, spans: SpanMasks, *, high_on_subgoal: bool, high_on_switch: bool,
                      term_on_switch: bool, wanted: dict):
    """`wanted`: output name -> caller's buffer, or None to allocate one."""
    a = _args(response_mask.device, "hae_token_outputs")
    resp = a.tensor(response_mask, "response_mask", BOOL, ndim=2)
    shape = tuple(resp.shape)
    inputs = {name: a.optional(getattr(spans, name), name, BOOL, shape) for name in TOKEN_MASKS}
    for name in ("adv_low", "adv_high", "adv_term", "ret_low", "ret_high", "ret_term", "is_boundary"):
        inputs[name] = a.tensor(getattr(turns, name), f"turns.{name}", BOOL if name == "is_boundary" else FLOAT32,
                                shape[:1])
    results = {}
    for name, buf in wanted.items():
        kind = FLOAT32 if name in FLOAT_OUTPUTS else BOOL
        results[name] = a.empty(shape, kind) if buf is None else a.output(buf, f"out[{name!r}]", shape, kind)
    _check_no_sharing(results, {"response_mask": resp, **inputs})
    _C.cuda_token_outputs(
        n=shape[0], length=shape[1], response_mask=ptr(resp), **{name: ptr(t) for name, t in inputs.items()},
        high_on_subgoal=bool(high_on_subgoal), high_on_switch=bool(high_on_switch),
        term_on_switch=bool(term_on_switch),
        **{name: ptr(results.get(name)) for name in FLOAT_OUTPUTS + MASK_OUTPUTS},
        **_workspace(a, _C.cuda_token_outputs_workspace_bytes(length=shape[1], device=a.device.index)), **a.launch)
    return HAETokenOutputs(**results)


def _check_no_sharing(outputs: dict, inputs: dict) -> None:
    """The kernel writes its outputs through restrict pointers: no output may share memory
    with an input or another output."""
    seen = {}
    for name, t in list(inputs.items()) + list(outputs.items()):
        key = None if t is None else t.untyped_storage().data_ptr()
        if not key:  # absent, or no memory (empty)
            continue
        if key in seen and (name in outputs or seen[key] in outputs):
            raise ValueError(f"out[{name!r}]: shares memory with {seen[key]}" if name in outputs
                             else f"out[{seen[key]!r}]: shares memory with {name}")
        seen.setdefault(key, name)


# ----------------------------------------------------------------------------------------- span masks
class VocabTable:
    """A SpanMasker's vocabulary table (_C.SpanMasker.table(): piece bytes, offsets, '<' flags)
    on one device.

    Copied once per masker and device, on the stream current at the first call, which then
    waits for the copy (one host synchronisation in the masker's life on that device): the
    table is complete before any stream reads it, with no event to wait on per call. Used from
    another stream, its memory is marked as in use there too (Tensor.record_stream), so freeing
    the masker cannot hand it to new work while a kernel still reads it.
    """

    def __init__(self, core, a: DeviceArgs):
        torch = a.torch
        # Copies of the read-only views (torch.from_numpy wants writable memory); the sizes
        # are the vocabulary's (a few MB for 150k tokens), once.
        self.tensors = tuple(torch.from_numpy(np.array(x)).to(a.device) for x in core.table())
        self.vocab_size = int(core.vocab_size)
        self.stream = a.launch["stream"]
        if a.device.type == "cuda":
            torch.cuda.current_stream(a.device).synchronize()

    def args(self, a: DeviceArgs) -> dict:
        """The vocab_* keywords of _C.cuda_span_masks for a call on a's stream."""
        if a.device.type == "cuda" and a.launch["stream"] != self.stream:
            stream = a.torch.cuda.current_stream(a.device)
            for t in self.tensors:
                t.record_stream(stream)
        data, offsets, has_lt = self.tensors
        return {"vocab_size": self.vocab_size, "vocab_bytes": ptr(data), "vocab_offsets": ptr(offsets),
                "vocab_has_lt": ptr(has_lt)}


def span_masks(masker, device, responses, response_mask, *, include_tags: bool, is_boundary, outputs,
               validate: bool) -> SpanMasks:
    """hiper.SpanMasker.__call__ on `device`: SpanMasks of device tensors."""
    a = _args(device, "SpanMasker")
    tok = a.tensor(responses, "responses", TOKEN, ndim=2)
    shape = tuple(tok.shape)
    n, length = shape
    resp = a.tensor(response_mask, "response_mask", BOOL, shape)
    boundary = a.optional(is_boundary, "is_boundary", BOOL, (n,))
    results = {name: a.empty((n,) if name == "is_new_subgoal" else shape, BOOL) for name in outputs}
    first_invalid = a.empty((1,), INT64)
    table = masker._device_tables.get(a.device)
    if table is None:
        table = masker._device_tables[a.device] = VocabTable(masker._core, a)
    nbytes = _C.cuda_span_masks_workspace_bytes(n=n, length=length, device=a.device.index)
    _C.cuda_span_masks(n=n, length=length, responses=ptr(tok), token_bytes=tok.element_size(),
                       response_mask=ptr(resp), **table.args(a), include_tags=bool(include_tags),
                       is_boundary=ptr(boundary), **{name: ptr(results.get(name)) for name in MASK_NAMES},
                       is_new_subgoal=ptr(results.get("is_new_subgoal")), first_invalid=ptr(first_invalid),
                       **_workspace(a, nbytes), **a.launch)
    if validate:
        bad = int(first_invalid.item())  # synchronises: the one read of the check
        if bad >= 0:
            row, pos = divmod(bad, length)
            raise ValueError(f"responses: token id {int(tok[row, pos].item())} at row {row}, position {pos} is outside "
                             f"the vocabulary (size {table.vocab_size})")
    return SpanMasks(**results)
