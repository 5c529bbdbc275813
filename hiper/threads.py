"""How many threads the compiled core's CPU loops use.

By default as many as `torch.get_num_threads()` whenever torch is imported (so
`torch.set_num_threads` and OMP_NUM_THREADS apply to hiper as well), otherwise the CPUs this
process may run on. `hiper.set_num_threads(n)`, or HIPER_NUM_THREADS=n in the environment when
hiper is imported, fixes the count; `hiper.set_num_threads(None)` returns to the default.

The count is an upper bound: loops with little work run on the calling thread alone, and a
loop never waits for a thread the operating system has not scheduled (the calling thread runs
whatever is left), so on a machine whose cores are busy with other processes hiper slows down
about as much as a single-threaded loop would (csrc/cpu/parallel.h).
"""
from __future__ import annotations

import numbers
import os

from hiper import _C

ENV_VAR = "HIPER_NUM_THREADS"
MAX_THREADS = 1024


def _checked(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected an int thread count, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{name}: expected a thread count in [1, {MAX_THREADS}], got {n}")
    return int(n)


def set_num_threads(n: int | None) -> None:
    """Threads of the CPU loops, the calling thread included (n >= 1); None: the default
    (torch's count while torch is imported, else the available CPUs)."""
    _C.set_num_threads(None if n is None else _checked(n, "n"))


def get_num_threads() -> int:
    """Threads the CPU loops may use now, the calling thread included."""
    return int(_C.get_num_threads())


def apply_environment() -> None:
    """Applies HIPER_NUM_THREADS (an int >= 1) if it is set; called when hiper is imported."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV_VAR}: expected a thread count in [1, {MAX_THREADS}], got {value!r}") from None
    _C.set_num_threads(_checked(n, ENV_VAR))
