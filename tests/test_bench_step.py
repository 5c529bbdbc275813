"""benchmarks/bench_step.py runs to its table at more than one thread."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_bench_step_finishes_at_two_threads():
    # The parent plays the rollouts with two OpenMP threads running: a mode in a forked child then
    # waited forever for them. The smallest run: one game, one turn, four tokens, one mode.
    environ = {key: value for key, value in os.environ.items() if key != "HIPER_DEBUG"}
    environ["OMP_NUM_THREADS"] = "2"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--tiny", "--threads", "2", "--envs", "1",
               "--max-turns", "1", "--max-new-tokens", "4", "--modes", "full-fp32"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environ, timeout=240)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"bench_step.py did not finish in {exc.timeout} s (a mode's process hung?); "
                    f"stderr so far:\n{stderr}")
    assert done.returncode == 0, done.stderr
    assert "2 threads" in done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| full-fp32 |")]
    assert len(rows) == 1, done.stdout
