"""The study's command line (`hiper bench credit`, `python -m hiper.studies.credit`): flags,
the run that prints the tables, and its outputs in --out: every number (credit.json) and,
with matplotlib (without it, a message says so), the plots variance.png and learning.png."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from hiper.studies.credit import plots
from hiper.studies.credit.config import FULL, QUICK, StudyConfig
from hiper.studies.credit.estimators import ESTIMATORS
from hiper.studies.credit.learning import learning_curves
from hiper.studies.credit.measurement import grid_cells, measure_cell
from hiper.studies.credit.report import format_learning, format_table


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


# StudyConfig fields settable from the command line: (field, type, help).
_FLAGS = (
    ("subtasks", _positive_int, "numbers of subtasks K of the grid"),
    ("horizons", _positive_int, "horizons H of the grid, in turns"),
    ("steps", _positive_int, "primitive steps per subtask"),
    ("actions", _positive_int, "primitive actions"),
    ("slip", float, "probability that a correct step does nothing"),
    ("target_success", float, "success probability J each cell's evaluation policy is calibrated to"),
    ("skill", float, "fix the evaluation policy's logit bonus instead of calibrating it"),
    ("batches", _positive_int, "batches M per cell"),
    ("batch_size", _positive_int, "trajectories B per batch"),
    ("group_size", _positive_int, "GRPO group size n, dividing B"),
    ("critic_noise", float, "std of the noisy critic's error, 0 to skip that variant"),
    ("seeds", _positive_int, "learning-curve seeds"),
    ("iterations", _positive_int, "learning iterations"),
    ("lr", float, "Adam step size"),
    ("learn_subtasks", _positive_int, "K of the learning task"),
    ("learn_horizon", _positive_int, "H of the learning task"),
    ("learn_skill", float, "logit bonus of the initial policy of the learning runs"),
    ("seed", int, "base random seed"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's flags. Those left out take the full study's values, or --quick's."""
    parser.add_argument("--out", default="runs/credit", help="output directory (default: runs/credit)")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration that runs in about a second")
    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, tuple) else "calibrated" if value is None else str(value)

    for name, kind, text in _FLAGS:
        full, quick = getattr(FULL, name), getattr(QUICK, name)
        default = f"default {shown(full)}" + ("" if quick == full else f"; --quick: {shown(quick)}")
        parser.add_argument("--" + name.replace("_", "-"), type=kind, nargs="+" if isinstance(full, tuple) else None,
                            help=f"{text} ({default})")
    parser.add_argument("--estimators", nargs="+", choices=list(ESTIMATORS), metavar="KEY",
                        help=f"estimators to run, of {', '.join(ESTIMATORS)} (default: all)")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The --quick or full preset, overridden by every flag given. ValueError on bad values."""
    preset = QUICK if getattr(args, "quick", False) else FULL
    given = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if getattr(args, f.name, None) is not None}
    for name in ("subtasks", "horizons", "estimators"):
        if name in given:
            given[name] = tuple(given[name])
    return replace(preset, **given)


def run(args: argparse.Namespace) -> int:
    """Run the study: print the tables, write credit.json and the plots into args.out."""
    start = time.perf_counter()
    try:
        cfg = config_from_args(args)
        grid = grid_cells(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for i, cell in enumerate(grid):
        cells.append(measure_cell(cfg, cell, np.random.default_rng([cfg.seed, 0, i])))
        print(f"measured K={cell.task.subtasks} H={cell.task.horizon} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    measured = time.perf_counter() - start
    learning = learning_curves(cfg)
    elapsed = time.perf_counter() - start

    print(f"\nGradient estimates against the exact gradient: {cfg.batches} batches of {cfg.batch_size} "
          f"trajectories per cell, exact critics, no advantage normalisation")
    print(format_table(cells, cfg.estimators))
    if cfg.critic_noise > 0:
        print(f"\nThe same batches with a noisy critic (a fixed N(0, {cfg.critic_noise}^2) error per value)")
        print(format_table(cells, cfg.estimators, critic="noisy"))
    task = learning["task"]
    for critic in learning["curves"]:
        print(f"\nLearning with the {critic} critic (K={task['subtasks']}, H={task['horizon']}, {cfg.seeds} seeds, "
              f"Adam lr {cfg.lr}, B={cfg.batch_size}): exact J, mean +- std over seeds")
        print(format_learning(learning, critic))
    print(f"(a near-optimal policy has J = {learning['optimum']:.3f})")

    record = {"config": asdict(cfg), "cells": cells, "learning": learning,
              "seconds": {"measurement": measured, "learning": elapsed - measured, "total": elapsed}}
    (out / "credit.json").write_text(json.dumps(record, indent=1))
    written = [out / "credit.json"]
    plt = plots.load_pyplot()
    if plt is None:
        print("matplotlib is not installed (pip install 'hiper[plot]'): no plots written")
    else:
        plots.plot_variance(plt, cells, cfg.estimators, out / "variance.png")
        plots.plot_learning(plt, learning, out / "learning.png")
        written += [out / "variance.png", out / "learning.png"]
    print(f"\nwrote {', '.join(str(p) for p in written)} ({elapsed:.1f} s)")
    return 0


# The study in one sentence, the first of the package's docstring (a copy: the package imports this
# module, which therefore does not import the package back).
DESCRIPTION = ("Credit-assignment study: how well HAE and the flat baselines estimate the policy gradient of a "
               "hierarchical policy, measured against the exact gradient.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hiper.studies.credit", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
