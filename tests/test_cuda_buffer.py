"""The device trajectory buffer (TrajectoryBuffer(device="cuda")), three ways.

1. On the host, always: the device path's Python (row bookkeeping, source addresses, widths)
   and the kernel's row functions (hiper/pack_rows.h, through their host twin _C.pack_rows)
   run on host tensors, against the host buffer and the list-and-pad_sequence twin.
2. On a GPU (skipped without one): token rows on the device (and prompts from the host)
   packed there equal the host buffer's pack, on any stream.
3. Without a GPU: 'meta' tensors drive the device path up to the CUDA binding.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hiper
from hiper import _C
from hiper.buffer import DeviceRows, TrajectoryBuffer
from hiper.reference.buffer_lists import ListTrajectoryBuffer

from test_buffer import random_rollout

CUDA_OK = hiper.has_cuda() and torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA_OK, reason="no CUDA device (CUDA path untested here)")
FIELDS = ("prompts", "prompt_mask", "responses", "response_mask", "input_ids", "attention_mask", "env_ids",
          "turn_idx", "rewards", "dones", "is_action_valid", "is_new_subgoal", "traj_offsets")


def host_device_rows(num_envs, pad_token_id=0):
    """A buffer taking the device path on host tensors (the kernel's host twin packs)."""
    buf = TrajectoryBuffer(num_envs, pad_token_id=pad_token_id)
    buf._rows = DeviceRows(torch.device("cpu"))
    return buf


def fill(buf, calls, convert=lambda name, v: v):
    for call in calls:
        buf.append(**{k: convert(k, v) for k, v in call.items()})


def assert_same(got, want, device="cpu"):
    for key in FIELDS:
        g, w = getattr(got, key), getattr(want, key)
        assert g.device.type == torch.device(device).type, key
        assert g.dtype == w.dtype and torch.equal(g.cpu(), w.cpu()), key
    assert got.layout.num_rows == want.layout.num_rows
    np.testing.assert_array_equal(np.asarray(got.layout.is_boundary.cpu() if device != "cpu" else
                                             got.layout.is_boundary), np.asarray(want.layout.is_boundary))


# ------------------------------------------------------------------------------------- 1. host
@pytest.mark.parametrize("seed", range(8))
def test_device_path_matches_the_host_buffer_and_the_list_twin(seed):
    ours, host, twin = host_device_rows(5), TrajectoryBuffer(5), ListTrajectoryBuffer(5)
    calls = random_rollout(seed)
    fill(ours, calls)
    fill(host, calls)
    fill(twin, [{k: torch.from_numpy(np.asarray(v)) for k, v in c.items()} for c in calls])
    got = ours.pack()
    assert_same(got, host.pack())
    for key, value in twin.pack().items():
        assert torch.equal(getattr(got, key), value), key


@pytest.mark.parametrize("seed", range(3))
def test_device_path_widths_tensors_and_clear(seed):
    ours, host = host_device_rows(5, pad_token_id=7), TrajectoryBuffer(5, pad_token_id=7)
    for _ in range(2):  # clear() and refill
        ours.clear()
        host.clear()
        calls = random_rollout(seed + 10)
        # torch tensors of other dtypes (int32 ids, uint8 masks with values > 1) are converted
        def as_tensors(k, v):
            if k.endswith("tokens"):
                return torch.from_numpy(np.asarray(v)).to(torch.int32)
            return torch.from_numpy(np.asarray(v)).to(torch.uint8) * 3 if k.endswith("mask") else v

        fill(ours, calls, as_tensors)
        fill(host, calls)
        assert ours.num_turns == host.num_turns
        assert_same(ours.pack(max_prompt_length=12, max_response_length=9),
                    host.pack(max_prompt_length=12, max_response_length=9))


def test_device_path_cuts_rows_when_not_validated():
    buf = host_device_rows(2, pad_token_id=-1)
    buf.append(env_ids=[0, 1], prompt_tokens=[[1, 2, 3, 4], [5, 6, 7, 8]],
               prompt_mask=[[False, True, True, True], [False, False, True, True]],
               response_tokens=[[9, 10, 11], [12, 13, 14]], response_mask=[[True, True, True], [True, False, True]],
               rewards=[0.5, 1.0], dones=[False, True])
    with pytest.raises(ValueError, match=r"max_prompt_length: 2 is shorter than the longest prompt \(3 tokens\)"):
        buf.pack(max_prompt_length=2, max_response_length=3)
    with pytest.raises(ValueError, match=r"max_response_length: 1 is shorter than the longest response \(3 tokens\)"):
        buf.pack(max_prompt_length=3, max_response_length=1)
    got = buf.pack(max_prompt_length=2, max_response_length=1, validate=False)
    assert got.prompts.tolist() == [[3, 4], [7, 8]]  # a prompt keeps its last tokens
    assert got.responses.tolist() == [[9], [12]]     # a response its first
    assert got.input_ids.tolist() == [[3, 4, 9], [7, 8, 12]]
    assert got.attention_mask.all() and got.prompt_mask.all() and got.response_mask.all()
    wide = buf.pack(max_prompt_length=4, max_response_length=4)
    assert wide.prompts.tolist() == [[-1, 2, 3, 4], [-1, -1, 7, 8]]
    assert wide.responses.tolist() == [[9, 10, 11, -1], [12, 14, -1, -1]]
    assert wide.attention_mask.tolist() == [[False, True, True, True, True, True, True, False],
                                            [False, False, True, True, True, True, False, False]]


def test_device_path_empty_and_zero_width():
    buf = host_device_rows(3)
    got = buf.pack()
    assert got.prompts.shape == (0, 0) and got.traj_offsets.tolist() == [0, 0, 0, 0]
    buf.append(env_ids=[2], prompt_tokens=np.zeros((1, 0), np.int64), prompt_mask=np.zeros((1, 0), bool),
               response_tokens=[[4, 5]], response_mask=[[False, False]], rewards=[0.0], dones=[False])
    got = buf.pack()
    assert got.prompts.shape == (1, 0) and got.responses.shape == (1, 0) and got.input_ids.shape == (1, 0)
    assert got.env_ids.tolist() == [2]


def test_device_path_bad_appends_change_nothing():
    buf = host_device_rows(2)
    one = dict(prompt_tokens=np.ones((1, 2), np.int64), prompt_mask=np.ones((1, 2), bool),
               response_tokens=np.ones((1, 3), np.int64), response_mask=np.ones((1, 3), bool),
               rewards=np.zeros(1, np.float32))
    buf.append(env_ids=[0], dones=[True], **one)
    with pytest.raises(ValueError, match="environment 0 already finished"):
        buf.append(env_ids=[0], dones=[False], **one)
    with pytest.raises(ValueError, match=r"prompt_mask: expected shape \(1, 2\), got \(1, 3\)"):
        buf.append(env_ids=[1], dones=[False], **{**one, "prompt_mask": np.ones((1, 3), bool)})
    with pytest.raises(ValueError, match=r"response_tokens: expected shape \(1, -1\), got \(2, 3\)"):
        buf.append(env_ids=[1], dones=[False], **{**one, "response_tokens": np.ones((2, 3), np.int64)})
    with pytest.raises(TypeError, match="prompt_tokens: expected integers"):
        buf.append(env_ids=[1], dones=[False], **{**one, "prompt_tokens": torch.ones(1, 2)})
    with pytest.raises(ValueError, match="rewards: must be finite"):
        buf.append(env_ids=[1], dones=[False], **{**one, "rewards": np.array([np.nan], np.float32)})
    assert buf.num_turns == 1 and len(buf._rows.chunks) == 1
    assert buf.pack().num_rows == 1


def test_device_argument():
    with pytest.raises(ValueError, match="device: expected cpu or cuda"):
        TrajectoryBuffer(2, device="meta")
    assert TrajectoryBuffer(2, device="cpu")._rows is None
    if not CUDA_OK:
        with pytest.raises(RuntimeError, match="TrajectoryBuffer: got tensors on cuda"):
            TrajectoryBuffer(2, device="cuda")


# ------------------------------------------------------------------------------------- 2. GPU
@needs_gpu
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("prompts_on", ["cuda", "cpu"])
def test_cuda_buffer_matches_the_host_buffer(seed, prompts_on):
    cuda = torch.device("cuda")
    ours, host = TrajectoryBuffer(5, pad_token_id=3, device="cuda"), TrajectoryBuffer(5, pad_token_id=3)
    calls = random_rollout(seed, max_prompt=40, max_response=70)

    def place(name, value):
        if name.startswith("response_") or (name.startswith("prompt_") and prompts_on == "cuda"):
            return torch.from_numpy(np.asarray(value)).to(cuda)
        return value

    fill(ours, calls, place)
    fill(host, calls)
    got, want = ours.pack(), host.pack()
    assert_same(got, want, "cuda")
    assert got.layout.is_cuda
    assert_same(ours.pack(max_prompt_length=64, max_response_length=80, validate=False),
                host.pack(max_prompt_length=64, max_response_length=80), "cuda")


@needs_gpu
def test_cuda_buffer_streams_and_many_rows():
    """Appends on one stream, pack on another; more rows than a block; the caller's tensors
    changed after the append do not change the buffer."""
    cuda = torch.device("cuda")
    ours, host = TrajectoryBuffer(300, device=cuda), TrajectoryBuffer(300)
    side = torch.cuda.Stream()
    for seed in range(2):
        calls = random_rollout(seed, num_envs=300, max_turns=3, max_prompt=50, max_response=90)
        with torch.cuda.stream(side):
            for call in calls:
                dev = {k: torch.from_numpy(np.asarray(v)).to(cuda) if k.endswith(("tokens", "mask")) else v
                       for k, v in call.items()}
                ours.append(**dev)
                dev["response_tokens"].fill_(-5)  # the buffer copied the rows
        fill(host, calls)
        got = ours.pack()
        torch.cuda.synchronize()
        assert_same(got, host.pack(), "cuda")
        ours.clear()
        host.clear()


@needs_gpu
def test_cuda_buffer_feeds_hae_on_the_device():
    from hiper.ops.hae import hae_core

    ours, host = TrajectoryBuffer(5, device="cuda"), TrajectoryBuffer(5)
    calls = random_rollout(4)
    fill(ours, calls, lambda k, v: torch.from_numpy(np.asarray(v)).cuda() if k.endswith(("tokens", "mask")) else v)
    fill(host, calls)
    got, want = ours.pack(), host.pack()
    n = got.num_rows
    rng = np.random.default_rng(0)
    values = [rng.normal(size=n).astype(np.float32) for _ in range(3)]
    cfg = hiper.HAEConfig(norm_adv=True)
    a = hae_core(got.layout, got.rewards, got.dones, *(torch.from_numpy(v).cuda() for v in values),
                 is_new_subgoal=got.is_new_subgoal, config=cfg)
    b = hae_core(want.layout, want.rewards, want.dones, *values, is_new_subgoal=want.is_new_subgoal, config=cfg)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.cpu().numpy(), np.asarray(y), rtol=1e-6, atol=1e-6)


@needs_gpu
def test_cuda_buffer_refuses_rows_on_another_gpu_and_device_scalars():
    buf = TrajectoryBuffer(2, device="cuda")
    one = dict(prompt_tokens=torch.ones(1, 2, dtype=torch.long, device="cuda"),
               prompt_mask=torch.ones(1, 2, dtype=torch.bool, device="cuda"),
               response_tokens=torch.ones(1, 3, dtype=torch.long, device="cuda"),
               response_mask=torch.ones(1, 3, dtype=torch.bool, device="cuda"), rewards=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="rewards: expected a CPU tensor"):
        buf.append(env_ids=[0], dones=[False], **{**one, "rewards": torch.zeros(1, device="cuda")})
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="hiper does not move data between GPUs"):
            buf.append(env_ids=[0], dones=[False], **{**one, "prompt_tokens": one["prompt_tokens"].to("cuda:1")})
    assert buf.num_turns == 0


# ------------------------------------------------------------------------------------- 3. no GPU
@pytest.mark.skipif(not _C.cuda_compiled(), reason="this build has no CUDA backend")
def test_cuda_path_reaches_the_device(monkeypatch):
    """The device path on 'meta' rows calls the CUDA binding with a complete set of keywords,
    which fails at its first CUDA runtime call (no GPU here)."""
    if _C.cuda_device_count() > 0:
        pytest.skip("a GPU is present: the CUDA path runs for real in the tests above")
    monkeypatch.setattr(DeviceRows, "_launch", lambda self: {"device": 0, "stream": 0})
    buf = TrajectoryBuffer(5)
    buf._rows = DeviceRows(torch.device("meta"))
    fill(buf, random_rollout(0),
         lambda name, v: torch.from_numpy(np.asarray(v)).to("meta") if name.endswith(("tokens", "mask")) else v)
    assert buf._rows.chunks[0][0].device.type == "meta" and buf._rows.chunks[0][1].dtype == torch.bool
    with pytest.raises(RuntimeError, match="cudaGetDevice"):
        buf.pack(max_prompt_length=10, max_response_length=8, validate=False)
