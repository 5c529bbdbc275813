"""The span masker's CUDA path (csrc/cuda/span_masker.cu), three ways.

1. On the host, always: the kernel's row algorithm (the token-walking search of
   hiper/span_masker.h, run one row at a time by SpanMasker.apply(by_tokens=True)) against
   the host masker and the decode-and-search reference, on the golden cases, cut responses,
   int32 ids, hypothesis tag soups and random id sequences, with both tokenizer fixtures.
   The kernel runs these same functions with a warp's lanes sharing the token loops.
2. On a GPU (skipped without one): SpanMasker on CUDA tensors equals the host masker byte
   for byte, with outputs on the device, on the current stream, deterministic.
3. Without a GPU: 'meta' tensors standing in for CUDA ones drive the Python path up to the
   binding, which must receive a complete set of keywords.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import hiper
from hiper import _C
from hiper.masks import MASK_NAMES, SpanMasks
from hiper.reference import masks_decode

from test_masks import FIXTURES, GOLDEN, SOUP, encode

CUDA_OK = hiper.has_cuda() and torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA_OK, reason="no CUDA device (CUDA path untested here)")
ALL = ("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_high", "value_mask_low",
       "value_mask_term")


@pytest.fixture(scope="module", params=["smollm2_tokenizer", "metaspace_tokenizer"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(FIXTURES / request.param)


@pytest.fixture(scope="module")
def masker(tokenizer):
    return hiper.SpanMasker(tokenizer)


def boundary_for(n, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5


def by_tokens(masker, ids, mask, include_tags, boundary):
    """The CUDA kernel's row algorithm, on the host: every output."""
    n, length = ids.shape
    outs = {name: np.empty((n, length), bool) for name in MASK_NAMES}
    outs["is_new_subgoal"] = np.empty(n, bool)
    masker._core.apply(ids.numpy(), mask.numpy(), include_tags, boundary.numpy(), **outs, by_tokens=True)
    return outs


def check_token_walk(tokenizer, masker, ids, mask):
    boundary = boundary_for(ids.shape[0])
    for include_tags in (False, True):
        got = by_tokens(masker, ids, mask, include_tags, boundary)
        host = masker(ids, mask, include_tags=include_tags, is_boundary=boundary, outputs=ALL)
        for name in ALL:
            np.testing.assert_array_equal(got[name], getattr(host, name).numpy(),
                                          err_msg=f"{name}, include_tags={include_tags}")
        want = masks_decode.make_masks_and_switch(ids, mask, tokenizer, include_tags=include_tags)
        for name, w in zip(("action_mask", "subgoal_mask", "switch_mask"), want[:3]):
            np.testing.assert_array_equal(got[name], w.numpy(), err_msg=f"{name} vs reference")
        np.testing.assert_array_equal(got["is_new_subgoal"], want[3])
    want = masks_decode.value_masks(ids, mask, tokenizer, boundary.numpy())
    for name, w in zip(("value_mask_high", "value_mask_low", "value_mask_term"), want):
        np.testing.assert_array_equal(got[name], w.numpy(), err_msg=f"{name} vs reference")


# ------------------------------------------------------------------------------------- 1. host
def test_token_walk_golden(tokenizer, masker):
    check_token_walk(tokenizer, masker, *encode(tokenizer, GOLDEN))


@pytest.mark.parametrize("cut", [1, 3, 9, 17])
def test_token_walk_cut_responses(tokenizer, masker, cut):
    check_token_walk(tokenizer, masker, *encode(tokenizer, GOLDEN, cut=cut))


def test_token_walk_int32_and_padding_ids(tokenizer, masker):
    ids, mask = encode(tokenizer, GOLDEN, pad_id=len(tokenizer) + 1000)
    boundary = boundary_for(ids.shape[0])
    got = by_tokens(masker, ids.to(torch.int32), mask, True, boundary)
    host = masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=ALL)
    for name in ALL:
        np.testing.assert_array_equal(got[name], getattr(host, name).numpy(), err_msg=name)


def test_token_walk_reports_ids_outside_the_vocabulary(tokenizer, masker):
    ids, mask = encode(tokenizer, GOLDEN[:3])
    ids[2, 1] = len(tokenizer) + 7
    with pytest.raises(ValueError, match=r"responses: token id \d+ at row 2, position 1 is outside the vocabulary"):
        by_tokens(masker, ids, mask, False, boundary_for(3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(SOUP), max_size=14).map("".join), min_size=1, max_size=6))
def test_token_walk_tag_soup(tokenizer, masker, texts):
    check_token_walk(tokenizer, masker, *encode(tokenizer, texts))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**31 - 1))
def test_token_walk_random_ids(tokenizer, masker, seed):
    ids, mask = random_ids(tokenizer, seed)
    check_token_walk(tokenizer, masker, ids, mask)


def random_ids(tokenizer, seed, n=5, length=24):
    """Arbitrary id sequences (partial UTF-8, special tokens anywhere, tags split oddly)."""
    rng = np.random.default_rng(seed)
    tag_ids = tokenizer("<switch>KEEP</switch><subgoal>a.</subgoal><action>b]</action>\n",
                        add_special_tokens=False)["input_ids"]
    pool = np.concatenate([rng.integers(0, len(tokenizer), size=64), np.repeat(tag_ids, 4)])
    ids = torch.from_numpy(rng.choice(pool, size=(n, length)))
    mask = torch.from_numpy(np.arange(length)[None] < rng.integers(0, length + 1, size=n)[:, None])
    return ids, mask


def test_table_views(masker, tokenizer):
    data, offsets, has_lt = masker._core.table()
    assert offsets.shape == (masker.vocab_size + 1,) and has_lt.shape == (masker.vocab_size,)
    assert not data.flags.writeable and data.shape[0] == offsets[-1] + 16  # kVocabSlack
    for i in (0, 1, masker.vocab_size - 1):
        assert bytes(data[offsets[i]:offsets[i + 1]]) == masker._core.token_bytes(i)
        assert bool(has_lt[i]) == (b"<" in masker._core.token_bytes(i))


# ------------------------------------------------------------------------------------- 2. GPU
def on_gpu(masker, ids, mask, boundary, **kw):
    cuda = torch.device("cuda")
    return masker(ids.to(cuda), mask.to(cuda), is_boundary=boundary.to(cuda), outputs=ALL, **kw)


def assert_same(got: SpanMasks, want: SpanMasks, where=""):
    for name in ALL:
        g, w = getattr(got, name), getattr(want, name)
        assert g.device.type == "cuda" and g.dtype == torch.bool, name
        assert torch.equal(g.cpu(), w), f"{name} {where}"


@needs_gpu
@pytest.mark.parametrize("include_tags", [False, True])
@pytest.mark.parametrize("case", ["golden", "cut", "random"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_cuda_equals_host(tokenizer, masker, include_tags, case, dtype):
    if case == "random":
        ids, mask = random_ids(tokenizer, 5, n=300, length=97)
    else:
        ids, mask = encode(tokenizer, GOLDEN, cut=9 if case == "cut" else None)
    ids = ids.to(dtype)
    boundary = boundary_for(ids.shape[0])
    want = masker(ids, mask, include_tags=include_tags, is_boundary=boundary, outputs=ALL)
    assert_same(on_gpu(masker, ids, mask, boundary, include_tags=include_tags), want, case)


@needs_gpu
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(SOUP), max_size=30).map("".join), min_size=1, max_size=40))
def test_cuda_tag_soup(tokenizer, masker, texts):
    ids, mask = encode(tokenizer, texts)
    boundary = boundary_for(ids.shape[0])
    assert_same(on_gpu(masker, ids, mask, boundary, include_tags=True),
                masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=ALL))


@needs_gpu
def test_cuda_long_rows_many_rows_and_streams(tokenizer, masker):
    """Rows longer than a warp's step many times over, more rows than a block, a side stream,
    a subset of outputs, and the same bits twice."""
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(GOLDEN[:5], size=int(rng.integers(1, 12)))) for _ in range(700)]
    ids, mask = encode(tokenizer, texts, length=600)
    boundary = boundary_for(ids.shape[0])
    want = masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=ALL)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = on_gpu(masker, ids, mask, boundary, include_tags=True)
        again = on_gpu(masker, ids, mask, boundary, include_tags=True)
        some = masker(ids.cuda(), mask.cuda(), outputs=("switch_mask", "value_mask_term"))
    stream.synchronize()
    assert_same(got, want)
    assert_same(again, want)
    assert some.action_mask is None and some.value_mask_low is None
    assert torch.equal(some.switch_mask.cpu(), want.switch_mask)
    assert torch.equal(some.value_mask_term.cpu(), want.value_mask_term)


@needs_gpu
def test_cuda_empty_shapes(masker):
    for n, length in ((0, 5), (3, 0), (0, 0)):
        ids = torch.zeros(n, length, dtype=torch.long, device="cuda")
        got = masker(ids, torch.zeros(n, length, dtype=torch.bool, device="cuda"),
                     is_boundary=torch.ones(n, dtype=torch.bool, device="cuda"), outputs=ALL)
        want = masker(ids.cpu(), torch.zeros(n, length, dtype=torch.bool), is_boundary=torch.ones(n, dtype=torch.bool),
                      outputs=ALL)
        assert_same(got, want, f"({n}, {length})")


@needs_gpu
def test_cuda_ids_outside_the_vocabulary(tokenizer, masker):
    ids, mask = encode(tokenizer, GOLDEN[:4])
    bad = ids.clone()
    bad[3, 2] = len(tokenizer) + 5
    bad[1, 4] = -1  # the first in row-major order is reported
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match=r"responses: token id -1 at row 1, position 4 is outside the vocabulary"):
        masker(bad.to(cuda), mask.to(cuda))
    # Unchecked: no wait, and the bad rows come out as the host masks an empty response.
    got = masker(bad.to(cuda), mask.to(cuda), validate=False, outputs=("action_mask", "is_new_subgoal"))
    assert not got.action_mask[1].any() and not got.action_mask[3].any()
    fine = masker(ids, mask, outputs=("action_mask",))
    assert torch.equal(got.action_mask[[0, 2]].cpu(), fine.action_mask[[0, 2]])


@needs_gpu
def test_verl_drop_ins_with_responses_on_the_device(tokenizer):
    from hiper.integrations.verl import compute_value_mask, make_hae_masks_and_switch

    from test_masks import verl_batch

    ids, mask = encode(tokenizer, GOLDEN)
    n = ids.shape[0]
    traj, turn, switch = [f"t{i % 3}" for i in range(n)], [i // 3 for i in range(n)], [i % 4 == 1 for i in range(n)]
    data = verl_batch(ids.cuda(), mask.cuda(), traj, turn, switch)
    got = make_hae_masks_and_switch(data, tokenizer, include_tags_mask=True)
    want = masks_decode.make_masks_and_switch(ids, mask, tokenizer, include_tags=True)
    for g, w in zip(got[:3], want[:3]):
        assert g.device.type == "cuda" and torch.equal(g.cpu(), w)
    np.testing.assert_array_equal(got[3], want[3])
    boundary = np.array([t == 0 for t in turn]) | np.array(switch)
    for g, w in zip(compute_value_mask(data, tokenizer), masks_decode.value_masks(ids, mask, tokenizer, boundary)):
        assert g.device.type == "cuda" and torch.equal(g.cpu(), w)


@needs_gpu
def test_cuda_mixed_devices_are_refused(tokenizer, masker):
    ids, mask = encode(tokenizer, GOLDEN[:2])
    with pytest.raises(ValueError, match="response_mask: expected a tensor on cuda"):
        masker(ids.cuda(), mask)
    with pytest.raises(ValueError, match="is_boundary: expected a tensor on cuda"):
        masker(ids.cuda(), mask.cuda(), is_boundary=torch.ones(2, dtype=torch.bool), outputs=("value_mask_high",))


# ------------------------------------------------------------------------------------- 3. no GPU
@pytest.fixture
def meta_masker(monkeypatch, masker):
    """'meta' tensors take the masker's CUDA path as far as the device (no usable GPU only)."""
    if _C.cuda_compiled() and _C.cuda_device_count() > 0:
        pytest.skip("a GPU is present: the CUDA path runs for real in the tests above")
    from hiper import masks
    from hiper.ops import _cuda, _device

    def is_meta(x):
        return isinstance(x, torch.Tensor) and x.device.type == "meta"

    monkeypatch.setattr(masks, "is_cuda_tensor", is_meta)
    monkeypatch.setattr(_cuda, "require_backend", lambda device, op: None)
    monkeypatch.setattr(_device.DeviceArgs, "launch", property(lambda self: {"device": 0, "stream": 0}))
    if hasattr(_C, "cuda_span_masks_workspace_bytes"):
        monkeypatch.setattr(_C, "cuda_span_masks_workspace_bytes", lambda **kw: 0)
    monkeypatch.setattr(masker, "_device_tables", {})
    return masker


@pytest.mark.skipif(not _C.cuda_compiled(), reason="this build has no CUDA backend")
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_cuda_path_reaches_the_device(meta_masker, dtype):
    """Checked, converted, the table copied, the binding called with a complete set of
    keywords: the call fails at the first CUDA runtime call, not on its arguments."""
    meta = torch.device("meta")
    ids = torch.empty(4, 9, dtype=dtype, device=meta)
    mask = torch.empty(4, 9, dtype=torch.uint8, device=meta)  # uint8 flags are taken as they are
    with pytest.raises(RuntimeError, match="cudaGetDevice"):
        meta_masker(ids, mask, is_boundary=torch.empty(4, device=meta), outputs=ALL, include_tags=True)
    table = meta_masker._device_tables[meta]
    assert [t.device.type for t in table.tensors] == ["meta"] * 3
    assert table.tensors[1].shape == (meta_masker.vocab_size + 1,)


def test_cuda_path_checks_its_arguments(meta_masker):
    meta = torch.device("meta")
    ids = torch.empty(4, 9, dtype=torch.long, device=meta)
    mask = torch.empty(4, 9, dtype=torch.bool, device=meta)
    with pytest.raises(ValueError, match=r"response_mask: expected shape \(4, 9\), got \(4, 8\)"):
        meta_masker(ids, mask[:, :8])
    with pytest.raises(ValueError, match="response_mask: expected a tensor on meta like the op's other inputs"):
        meta_masker(ids, torch.zeros(4, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_boundary: required for value_mask_high"):
        meta_masker(ids, mask, outputs=("value_mask_high",))
    with pytest.raises(ValueError, match=r"is_boundary: expected shape \(4,\)"):
        meta_masker(ids, mask, is_boundary=torch.empty(3, device=meta), outputs=("value_mask_high",))
    with pytest.raises(TypeError, match="responses: expected integers"):
        meta_masker(torch.empty(4, 9, device=meta), mask)
    with pytest.raises(ValueError, match="outputs: unknown names"):
        meta_masker(ids, mask, outputs=("nope",))


def test_cuda_tensors_without_a_cuda_build_are_refused(meta_masker, monkeypatch):
    from hiper.ops import _cuda, _device

    monkeypatch.setattr(_C, "cuda_compiled", lambda: False)
    monkeypatch.setattr(_cuda, "require_backend", _device.require_backend)
    with pytest.raises(RuntimeError, match="SpanMasker: got tensors on meta, but this build of hiper has no CUDA"):
        meta_masker(torch.empty(2, 3, dtype=torch.long, device="meta"), torch.empty(2, 3, dtype=torch.bool,
                                                                                    device="meta"))
