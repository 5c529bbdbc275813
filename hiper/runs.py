"""A run directory: one run's metrics.jsonl, TensorBoard logs and checkpoint, kept in agreement.

A new run refuses a directory that already holds a run (its metrics or a checkpoint) unless told
to overwrite it, so two runs never interleave their rows or replace each other's checkpoint
unnoticed. A resumed run first cuts metrics.jsonl back to the checkpoint's step: rows logged
after the last checkpoint would otherwise appear twice, once from before the interruption and
once from the resumed run.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hiper.checkpoint import CHECKPOINT, PREVIOUS, TEMPORARY_PREFIX
from hiper.files import replace_bytes

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def existing_run(run_dir: Path) -> list[str]:
    """What in `run_dir` belongs to an earlier run (empty for a new or empty directory)."""
    return [name for name in (METRICS, CHECKPOINT, PREVIOUS) if (run_dir / name).exists()]


def clear_run(run_dir: Path) -> None:
    """Removes an earlier run's metrics, checkpoints (complete or not) and TensorBoard logs."""
    for path in [run_dir / METRICS, run_dir / CHECKPOINT, run_dir / PREVIOUS, run_dir / TENSORBOARD,
                 *run_dir.glob(TEMPORARY_PREFIX + "*")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def claim_run_dir(run_dir: Path, reducer, overwrite: bool) -> None:
    """A new run: refuse a run_dir that holds another run, or clear it with `overwrite`. Rank 0
    decides for every rank (`reducer`), so none is left waiting for a rank that raised."""
    found = existing_run(run_dir) if reducer.rank == 0 and not overwrite else []
    if reducer.max(len(found)) > 0:
        raise ValueError(f"run_dir: {run_dir} already holds a run ({', '.join(found) or 'see rank 0'}); "
                         "pass --resume to continue it or --overwrite true to start it over")
    if reducer.rank == 0 and overwrite:
        clear_run(run_dir)


def append_metrics(run_dir: Path, row: dict) -> None:
    """Appends one step's row, flushed to disk before the step's checkpoint is written, so that
    after any crash metrics.jsonl reaches at least as far as the checkpoint."""
    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Keeps the rows of metrics.jsonl with step <= `step` (and drops a line a crash cut short);
    replaces the file atomically. Returns the number of lines dropped."""
    path = run_dir / METRICS
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) < len(lines):
        replace_bytes(path, "".join(line + "\n" for line in kept).encode("utf-8"))
    return len(lines) - len(kept)


def _step_of(line: str) -> int | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None
