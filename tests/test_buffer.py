"""The C++ trajectory buffer against the list-and-pad_sequence twin."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hiper.buffer import TrajectoryBuffer
from hiper.reference.buffer_lists import ListTrajectoryBuffer


def random_rollout(seed, num_envs=5, max_turns=6, max_prompt=9, max_response=7):
    """Turn-major appends as a rollout makes them: all running envs each turn, some finish."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_turns + 1, size=num_envs)
    calls = []
    for turn in range(lengths.max()):
        envs = np.flatnonzero(lengths > turn)
        k = len(envs)
        lp, lr = int(rng.integers(1, max_prompt + 1)), int(rng.integers(1, max_response + 1))
        p_len = rng.integers(0, lp + 1, size=k)
        r_len = rng.integers(0, lr + 1, size=k)
        prompt_mask = np.arange(lp)[None] >= (lp - p_len)[:, None]          # left-padded
        response_mask = np.arange(lr)[None] < r_len[:, None]                 # right-padded
        if rng.random() < 0.3:                                               # or any alignment
            response_mask = rng.random((k, lr)) < 0.5
        calls.append(dict(env_ids=envs, prompt_tokens=rng.integers(1, 1000, size=(k, lp)), prompt_mask=prompt_mask,
                          response_tokens=rng.integers(1, 1000, size=(k, lr)), response_mask=response_mask,
                          rewards=rng.normal(size=k).astype(np.float32),
                          dones=(lengths[envs] == turn + 1) & (rng.random(k) < 0.7),
                          valid=rng.random(k) < 0.8, is_new_subgoal=rng.random(k) < 0.4))
    return calls


@pytest.mark.parametrize("seed", range(8))
def test_pack_matches_the_list_twin(seed):
    ours, twin = TrajectoryBuffer(5, pad_token_id=0), ListTrajectoryBuffer(5, pad_token_id=0)
    for call in random_rollout(seed):
        ours.append(**call)
        twin.append(**{k: torch.from_numpy(np.asarray(v)) for k, v in call.items()})
    got, want = ours.pack(), twin.pack()
    for key, value in want.items():
        assert torch.equal(getattr(got, key), value), key
    assert got.layout.num_rows == got.num_rows
    np.testing.assert_array_equal(got.layout.order, np.arange(got.num_rows))  # rows come trajectory-major


def test_clear_reuses_and_reopens():
    buf = TrajectoryBuffer(2, pad_token_id=7)
    for _ in range(3):
        buf.clear()
        for call in random_rollout(1, num_envs=2):
            buf.append(**call)
        packed = buf.pack(max_prompt_length=12, max_response_length=9)
        assert packed.prompts.shape[1] == 12 and packed.responses.shape[1] == 9
        assert (packed.prompts[~packed.prompt_mask] == 7).all()
        assert (packed.responses[~packed.response_mask] == 7).all()


def test_bad_appends_and_widths():
    buf = TrajectoryBuffer(2)
    one = dict(prompt_tokens=np.ones((1, 2), np.int64), prompt_mask=np.ones((1, 2), bool),
               response_tokens=np.ones((1, 3), np.int64), response_mask=np.ones((1, 3), bool),
               rewards=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="env_ids: 2 is not in"):
        buf.append(env_ids=[2], dones=[False], **one)
    two = {k: np.concatenate([v, v]) for k, v in one.items()}
    with pytest.raises(ValueError, match="appears twice"):
        buf.append(env_ids=[0, 0], dones=[False, False], **two)
    buf.append(env_ids=[0], dones=[True], **one)
    with pytest.raises(ValueError, match="environment 0 already finished"):
        buf.append(env_ids=[0], dones=[False], **one)
    with pytest.raises(ValueError, match="prompt_mask: expected shape"):
        buf.append(env_ids=[1], dones=[False], **{**one, "prompt_mask": np.ones((1, 3), bool)})
    with pytest.raises(ValueError, match="max_response_length: 2 is shorter than the longest response"):
        buf.pack(max_response_length=2)
    with pytest.raises(ValueError, match="rewards: must be finite"):
        buf.append(env_ids=[1], dones=[False], **{**one, "rewards": np.array([np.nan], np.float32)})
    assert buf.num_turns == 1  # failed appends change nothing
    with pytest.raises(ValueError, match="num_envs"):
        TrajectoryBuffer(0)
