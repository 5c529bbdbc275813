"""Shared timing helpers of the benchmark scripts."""
from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time


def median_ms(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def interleaved_ms(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """{name: (best, median)} wall time of each fn() in milliseconds, the functions called in
    turn within each of `repeats` rounds (after `warmup` untimed rounds), so that every one
    sees the same machine: a neighbour's burst of work or a frequency change lands on all of
    them, not on whichever was being timed then. The best is the cost with the least
    interference, the median what a busy machine typically gives."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}


def cuda_median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median time of fn() on the current CUDA stream in milliseconds, from CUDA events
    recorded around it (so gaps where the GPU waits for the host count too), after `warmup`
    untimed calls. The device is idle when each timed call starts."""
    import torch

    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@contextlib.contextmanager
def background_load(processes: int):
    """`processes` CPU-bound processes (busy loops) running for the duration of the block:
    the environment workers and tokenizers that compete with a trainer for its cores."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5)  # let them start and reach the scheduler's run queue
        yield
    finally:
        for p in busy:
            p.kill()
            p.wait()
