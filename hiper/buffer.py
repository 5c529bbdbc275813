"""The batched trajectory buffer: B environments append turns as they happen; `pack()`
returns the padded tensors a trainer needs. Storage and packing are in C++ (hiper._C);
memory is reused across iterations (`clear()` keeps capacity).

A host buffer (the default) packs on the host: when prompts are tokenised and responses
decoded there anyway, the cheapest route to the GPU is one pass on the host and one copy per
packed tensor (`PackedBatch.to`). A device buffer (`device="cuda"`) keeps the token rows
where `generate` left them: each append's rows stay on the GPU (host rows, such as prompts
from the tokenizer, are copied there), and `pack()` gathers them into the padded tensors with
one kernel (csrc/cuda/pack_rows.cu); the per-turn metadata (rewards, dones, flags: host values
from the environments) is kept and ordered on the host, as in a host buffer, and copied with
the packed batch.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

import numpy as np

from hiper import _C
from hiper._arrays import BOOL, FLOAT32, INT64, optional_numpy, to_numpy
from hiper.ops._device import require_backend
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

    device: where the token rows are kept and packed: "cpu" (the default) or a GPU
        ("cuda", "cuda:1"; needs hiper's CUDA backend). On a GPU, appended token rows may be
        tensors on that GPU or host data, the per-turn values are host data, and `pack()`
        returns a PackedBatch on the GPU.
    """

    def __init__(self, num_envs: int, pad_token_id: int = 0, device: Any = None):
        if not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        self._core = _C.TrajectoryBuffer(num_envs)
        self.pad_token_id = int(pad_token_id)
        device = torch.device("cpu" if device is None else device)
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected cpu or cuda, got {device}")
        if device.type == "cuda":
            require_backend(device, "TrajectoryBuffer")
            if device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self._rows = DeviceRows(device) if device.type == "cuda" else None

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
        is_new_subgoal (k,) bool. A failed append changes nothing."""
        if self._rows is not None:
            self._rows.append(self._core, env_ids, prompt_tokens, prompt_mask, response_tokens, response_mask,
                              rewards, dones, valid, is_new_subgoal)
            return
        self._core.append(to_numpy(env_ids, "env_ids", INT64, ndim=1),
                          to_numpy(prompt_tokens, "prompt_tokens", INT64, ndim=2),
                          to_numpy(prompt_mask, "prompt_mask", BOOL, ndim=2),
                          to_numpy(response_tokens, "response_tokens", INT64, ndim=2),
                          to_numpy(response_mask, "response_mask", BOOL, ndim=2),
                          to_numpy(rewards, "rewards", FLOAT32, ndim=1),
                          to_numpy(dones, "dones", BOOL, ndim=1),
                          optional_numpy(valid, "valid", BOOL, ndim=1),
                          optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1))

    def pack(self, max_prompt_length: int | None = None, max_response_length: int | None = None, *,
             validate: bool = True) -> PackedBatch:
        """Padded tensors of every turn so far. Widths default to the longest prompt and
        response; a given width shorter than that raises ValueError.

        On a GPU, finding the longest rows (to size or check the widths) reads two numbers
        back, one wait for the GPU. Given both widths and validate=False nothing waits; a row
        longer than its width is then cut (a prompt keeps its last tokens, a response its
        first). The host buffer always checks."""
        if self._rows is not None:
            return self._rows.pack(self._core, self.pad_token_id, max_prompt_length, max_response_length, validate)
        raw = self._core.pack(-1 if max_prompt_length is None else int(max_prompt_length),
                              -1 if max_response_length is None else int(max_response_length), self.pad_token_id)
        tensors = {k: torch.from_numpy(v) for k, v in raw.items()}
        layout = build_layout(raw["env_ids"], raw["turn_idx"], raw["is_new_subgoal"])
        return PackedBatch(**tensors, layout=layout)

    def clear(self) -> None:
        """Forget every turn and reopen every environment (memory is kept for reuse: on a
        GPU, by torch's caching allocator)."""
        self._core.clear()
        if self._rows is not None:
            self._rows.clear()


def _width(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if int(value) < 0:
        raise ValueError(f"{name}: expected a width >= 0, got {value}")
    return int(value)


class DeviceRows:
    """The token rows of a buffer on `device`: each append's (k, L) token and mask rows,
    copied there as they came (no compaction, nothing read back), and their bookkeeping on
    the host; `pack` builds each output row's source addresses from that bookkeeping and
    gathers every row with one kernel (hiper/pack_rows.h).

    On the host (device "cpu") the same code packs with the kernel's host twin
    (_C.pack_rows): the tests run the device path that way.
    """

    def __init__(self, device):
        self.device = device
        self.clear()

    def clear(self) -> None:
        self.chunks: list[tuple] = []   # per append: (prompt ids, prompt mask, response ids, response mask)
        self.streams: list = []         # per append: the CUDA stream its copies were made on
        self.envs: list[np.ndarray] = []  # per append: its env ids, in row order
        self.counts: list[tuple] = []   # per append: (k,) kept prompt / response tokens per row, on the device

    # --- append ---------------------------------------------------------------------------
    def _rows(self, x: Any, name: str, flags: bool, shape: tuple | None):
        """x as a contiguous (k, L) int64 (or bool flag) tensor on the device, always a copy."""
        if isinstance(x, torch.Tensor):
            t = x.detach()
            if t.device.type != "cpu" and t.device != self.device:
                raise ValueError(f"{name}: expected a tensor on {self.device} (the buffer's device) or on the host, "
                                 f"got one on {t.device}; hiper does not move data between GPUs")
            if t.is_complex():
                raise TypeError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
            if t.dim() != 2:
                raise ValueError(f"{name}: expected 2 dimension(s), got shape {tuple(t.shape)}")
            if flags:
                t = t if t.dtype == torch.bool else t != 0  # bool: the kernel and the counts read 0 / 1
            elif t.is_floating_point():
                raise TypeError(f"{name}: expected integers, got dtype {t.dtype}")
        else:
            t = torch.from_numpy(to_numpy(x, name, BOOL if flags else INT64, ndim=2))
            t = t if t.dtype == torch.bool or not flags else t != 0
        if shape is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
        t = t.to(torch.bool if flags else torch.int64).contiguous()
        if t.device.type == "cpu" and self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)  # staged: nothing waits
        return t.to(self.device, non_blocking=True, copy=True)

    def append(self, core, env_ids, prompt_tokens, prompt_mask, response_tokens, response_mask, rewards, dones,
               valid, is_new_subgoal) -> None:
        env = to_numpy(env_ids, "env_ids", INT64, ndim=1)
        k = env.shape[0]
        pt = self._rows(prompt_tokens, "prompt_tokens", False, None)
        if pt.shape[0] != k:
            raise ValueError(f"prompt_tokens: expected shape ({k}, -1), got {tuple(pt.shape)}")
        pm = self._rows(prompt_mask, "prompt_mask", True, tuple(pt.shape))
        rt = self._rows(response_tokens, "response_tokens", False, None)
        if rt.shape[0] != k:
            raise ValueError(f"response_tokens: expected shape ({k}, -1), got {tuple(rt.shape)}")
        rm = self._rows(response_mask, "response_mask", True, tuple(rt.shape))
        # The core keeps the per-turn values and checks the environments (raising before it
        # changes anything); its token rows are empty, the rows stay here.
        none = np.zeros((k, 0), np.int64)
        core.append(env, none, none.astype(bool), none, none.astype(bool),
                    to_numpy(rewards, "rewards", FLOAT32, ndim=1), to_numpy(dones, "dones", BOOL, ndim=1),
                    optional_numpy(valid, "valid", BOOL, ndim=1),
                    optional_numpy(is_new_subgoal, "is_new_subgoal", BOOL, ndim=1))
        self.chunks.append((pt, pm, rt, rm))
        self.streams.append(torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None)
        self.envs.append(env.copy())
        self.counts.append((pm.sum(dim=1), rm.sum(dim=1)))  # enqueued, not read

    # --- pack -----------------------------------------------------------------------------
    def _host_to_device(self, a: np.ndarray):
        """A host array on the device without waiting: staged through pinned memory."""
        t = torch.from_numpy(np.ascontiguousarray(a))
        if self.device.type == "cpu":
            return t
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _launch(self) -> dict:
        stream = torch.cuda.current_stream(self.device)
        return {"device": self.device.index, "stream": stream.cuda_stream}

    def pack(self, core, pad_id: int, max_prompt_length, max_response_length, validate: bool) -> "PackedBatch":
        P, R = _width(max_prompt_length, "max_prompt_length"), _width(max_response_length, "max_response_length")
        current = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        if current is not None:
            for stream in {s for s in self.streams if s != current}:
                current.wait_stream(stream)  # rows and their counts were made on another stream: after it
        longest = [0, 0]
        if self.chunks and (P is None or R is None or validate):
            both = [torch.cat([c[side] for c in self.counts]).max() for side in (0, 1)]
            longest = [int(x) for x in torch.stack(both).tolist()]  # synchronises: the one read
        P = longest[0] if P is None else P
        R = longest[1] if R is None else R
        if validate:
            if P < longest[0]:
                raise ValueError(f"max_prompt_length: {P} is shorter than the longest prompt ({longest[0]} tokens)")
            if R < longest[1]:
                raise ValueError(f"max_response_length: {R} is shorter than the longest response ({longest[1]} "
                                 "tokens)")
        raw = core.pack(0, 0, pad_id)  # the per-turn values, trajectory-major; token rows empty
        n = raw["env_ids"].shape[0]

        # Output row i <- append c, row r: the core orders turns by a stable counting sort on the
        # environment, which is a stable argsort of the env ids in append order.
        env = np.concatenate(self.envs) if self.envs else np.zeros(0, np.int64)
        order = np.argsort(env, kind="stable")
        if not np.array_equal(env[order], raw["env_ids"]):
            raise RuntimeError("TrajectoryBuffer: internal error, the device rows and the turn records disagree")
        sizes = [e.shape[0] for e in self.envs]
        chunk = np.repeat(np.arange(len(sizes)), sizes)[order]
        row = (np.concatenate([np.arange(s) for s in sizes]) if sizes else np.zeros(0, np.int64))[order]
        base = np.array([[pt.data_ptr(), pm.data_ptr(), pt.shape[1], rt.data_ptr(), rm.data_ptr(), rt.shape[1]]
                         for pt, pm, rt, rm in self.chunks], dtype=np.int64).reshape(-1, 6)[chunk]
        sources = np.empty((n, 6), np.int64)
        for col, (ptr_col, cols_col, itemsize) in enumerate(((0, 2, 8), (1, 2, 1))):
            sources[:, col] = base[:, ptr_col] + row * base[:, cols_col] * itemsize
            sources[:, 3 + col] = base[:, 3 + ptr_col] + row * base[:, 3 + cols_col] * itemsize
        sources[:, 2], sources[:, 5] = base[:, 2], base[:, 5]

        dev = self.device
        out = {"prompts": torch.empty((n, P), dtype=torch.int64, device=dev),
               "prompt_mask": torch.empty((n, P), dtype=torch.bool, device=dev),
               "responses": torch.empty((n, R), dtype=torch.int64, device=dev),
               "response_mask": torch.empty((n, R), dtype=torch.bool, device=dev),
               "input_ids": torch.empty((n, P + R), dtype=torch.int64, device=dev),
               "attention_mask": torch.empty((n, P + R), dtype=torch.bool, device=dev)}
        src = self._host_to_device(sources)
        args = dict(n=n, prompt_width=P, response_width=R, pad_id=int(pad_id), sources=src.data_ptr(),
                    **{name: t.data_ptr() for name, t in out.items()})
        if dev.type == "cpu":
            if n:
                _C.pack_rows(**args)
        else:
            if dev.type == "cuda":
                for stream, tensors in zip(self.streams, self.chunks):
                    if stream != current:  # and their memory stays theirs until this pack has run
                        for t in tensors:
                            t.record_stream(current)
            _C.cuda_pack_rows(**args, **self._launch())
        per_turn = {k: self._host_to_device(raw[k]) for k in ("env_ids", "turn_idx", "rewards", "dones",
                                                               "is_action_valid", "is_new_subgoal", "traj_offsets")}
        layout = build_layout(raw["env_ids"], raw["turn_idx"], raw["is_new_subgoal"]).to(dev)
        return PackedBatch(**out, **per_turn, layout=layout)
