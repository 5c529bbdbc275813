"""The batched trajectory buffer: B environments append turns as they happen; `pack()`
returns the padded tensors a trainer needs. Storage and packing are in C++ (hiper._C);
memory is reused across iterations (`clear()` keeps capacity).

Packing stays on the host, also when training on a GPU: every turn's data starts there
(prompts are rendered and tokenised from text, responses are decoded to text for the
environment step, rewards come from the environments), so the cheapest route to the GPU is
one pass on the host and one copy per packed tensor (`PackedBatch.to`). Packing on the GPU
would first have to copy each turn's pieces there, one small copy per append.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, INT64, optional_numpy, to_numpy
from hiper.ops.layout import TrajectoryLayout, build_layout


@dataclass
class PackedBatch:
    """One rollout, trajectory-major (environment 0's turns in order, then environment 1's, ...).

    prompts / prompt_mask: (N, P) left-padded prompt ids and mask.
    responses / response_mask: (N, R) right-padded response ids and mask.
    input_ids / attention_mask: (N, P + R) prompt then response, for the model's forward pass.
    env_ids, turn_idx (int64), rewards (float32), dones, is_action_valid, is_new_subgoal (bool): (N,).
    traj_offsets: (B + 1,) environment b's rows are traj_offsets[b]:traj_offsets[b + 1].
    layout: the HAE trajectory layout of these rows (trajectory id = environment id).
    """

    prompts: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    env_ids: torch.Tensor
    turn_idx: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    is_action_valid: torch.Tensor
    is_new_subgoal: torch.Tensor
    traj_offsets: torch.Tensor
    layout: TrajectoryLayout

    @property
    def num_rows(self) -> int:
        return int(self.responses.shape[0])

    def to(self, device) -> "PackedBatch":
        """This batch on `device`: every tensor and the layout, copied without waiting for
        the GPU (from pageable host memory the copy is staged, so the host tensors may be
        reused at once). The HAE ops then run on the device with this layout."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)
                 if f.name != "layout"}
        return PackedBatch(**moved, layout=self.layout.to(device))


class TrajectoryBuffer:
    """Collects multi-turn rollouts of `num_envs` parallel environments.

    `append` takes one turn for each listed environment: token rows with masks marking the
    real tokens (HF `generate` output as it comes: left-padded prompts, right-padded
    responses), and the turn's reward, done, validity and SWITCH flags. An environment whose
    turn was `done` accepts no more turns until `clear()`.
    """

    def __init__(self, num_envs: int, pad_token_id: int = 0):
        if not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        self._core = _C.TrajectoryBuffer(num_envs)
        self.pad_token_id = int(pad_token_id)

    num_envs = property(lambda self: self._core.num_envs)
    num_turns = property(lambda self: self._core.num_turns)

    def turns_of(self, env: int) -> int:
        return self._core.turns_of(env)

    def finished(self, env: int) -> bool:
        return self._core.finished(env)

    def append(self, env_ids: Any, prompt_tokens: Any, prompt_mask: Any, response_tokens: Any, response_mask: Any,
               rewards: Any, dones: Any, valid: Any = None, is_new_subgoal: Any = None) -> None:
        """Append one turn per environment in `env_ids` ((k,) ints); token arrays (k, Lp) and
        (k, Lr) with bool masks of the same shapes; rewards (k,) float; dones, valid,
        is_new_subgoal (k,) bool."""
        self._core.append(to_numpy(env_ids, "env_ids", INT64, ndim=1),
                          to_numpy(prompt_tokens, "prompt_tokens", INT64, ndim=2),
                          to_numpy(prompt_mask, "prompt_mask", BOOL, ndim=2),
                          to_numpy(response_tokens, "response_tokens", INT64, ndim=2),
                          to_numpy(response_mask, "response_mask", BOOL, ndim=2),
                          to_numpy(rewards, "rewards", FLOAT32, ndim=1),
                          to_numpy(dones, "dones", BOOL, ndim=1),
                          optional_numpy(valid, "valid", BOOL, ndim=1),
                          optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1))

    def pack(self, max_prompt_length: int | None = None, max_response_length: int | None = None) -> PackedBatch:
        """Padded tensors of every turn so far. Widths default to the longest prompt and
        response; a given width shorter than that raises ValueError."""
        raw = self._core.pack(-1 if max_prompt_length is None else int(max_prompt_length),
                              -1 if max_response_length is None else int(max_response_length), self.pad_token_id)
        tensors = {k: torch.from_numpy(v) for k, v in raw.items()}
        layout = build_layout(raw["env_ids"], raw["turn_idx"], raw["is_new_subgoal"])
        return PackedBatch(**tensors, layout=layout)

    def clear(self) -> None:
        """Forget every turn and reopen every environment (memory is kept for reuse)."""
        self._core.clear()
