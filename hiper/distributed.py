"""Data parallelism across processes (torchrun): batch-wide statistics and gradient sync.

Under `torchrun --nproc_per_node=N -m hiper train ...` every rank runs its own environment
pool on its own slice of the environments, and everything the method computes over the
whole batch must see the whole batch:

  * advantage normalisation (HAE's three advantages, turn-level GAE, verl's token
    whitening) takes its mean and std over every rank's credited turns or tokens;
  * GRPO / RLOO / GiGPO groups may span ranks (the copies of one game need not share a rank).

A `Reducer` does this by gathering the per-turn (or per-token) inputs of those statistics
from every rank in rank order, computing them on the concatenation exactly as one process
would, and keeping its own rows. Rank r's environments are the global environments
r*B .. r*B+B-1 and each batch is environment-major, so the concatenation *is* the batch a
single process with N*B environments would hold: statistics are identical, bit for bit.
Per-turn arrays are small (a few floats per turn); token-level whitening gathers (N, L)
tensors, the size of the advantages themselves.

Gradients are averaged with one all-reduce of a flat buffer per optimiser step (what
DistributedDataParallel does, without wrapping the model: `generate` and the custom forward
passes keep calling the plain module).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Reducer:
    """Gathers row-aligned arrays across ranks. The default (world_size 1) is the identity."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def gather(self, local: np.ndarray) -> tuple[np.ndarray, slice]:
        """(concatenation over ranks in rank order, the slice of it that is this rank's)."""
        if not self.distributed:
            return local, slice(0, local.shape[0])
        parts: list = [None] * self.world_size
        torch.distributed.all_gather_object(parts, np.ascontiguousarray(local))
        start = sum(p.shape[0] for p in parts[:self.rank])
        return np.concatenate(parts, axis=0), slice(start, start + local.shape[0])

    def max(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Averages scalar metrics over ranks (for logging)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


LOCAL = Reducer()


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_from_environment() -> Reducer:
    """Joins the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*):
    NCCL when CUDA is available, gloo otherwise. A single process gets the local reducer."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return LOCAL
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Reducer(torch.distributed.get_rank(), torch.distributed.get_world_size())


def shutdown(wait_for_peers: bool = True) -> None:
    """Leaves the process group. After a normal run every rank first waits for the others:
    a rank tearing its connections down while a peer is still finishing can abort that
    peer (gloo). After an error the wait is skipped, since a failed peer never arrives."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if wait_for_peers:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def broadcast_parameters(module: torch.nn.Module, reducer: Reducer) -> None:
    """Every rank starts from rank 0's weights."""
    if not reducer.distributed:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], reducer: Reducer) -> None:
    """grad <- mean over ranks, in one all-reduce of a flat buffer. Parameters without a
    gradient on this rank count as zero (every rank must join every all-reduce)."""
    if not reducer.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    flat /= reducer.world_size
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def normalize_rows(adv: np.ndarray, include: np.ndarray | None, reducer: Reducer, eps: float = 1e-8) -> None:
    """In place: (adv - mean) / (std + eps) on the included rows, with mean and population
    std over the included rows of every rank (hiper.normalize_advantages across ranks)."""
    from hiper import _C

    inc = np.ones(adv.shape[0], dtype=bool) if include is None else np.asarray(include, dtype=bool)
    full_adv, _ = reducer.gather(np.asarray(adv, dtype=np.float32))
    full_inc, _ = reducer.gather(inc)
    count, mean, std = _C.masked_moments(full_adv, full_inc)
    if count > 0:
        _C.normalize(adv, inc, mean, std, float(eps), adv)
