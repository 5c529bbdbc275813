"""`hiper bench learning`: which credit assignment learns a task best, with seeds and intervals.

    hiper bench learning --env twx --tasks cookingworld --warm-start runs/twx-sft \\
        --estimators hae,grpo,gigpo,gae,turn_gae --seeds 0,1,2,3,4 --steps 20 --eval-every 4 \\
        --eval-episodes 32 --jobs 2 --out results/cooking -- --group-size 4 --actor-lr 1e-4

Every (estimator, seed) is one `hiper train` run from the same warm start, in a process of its own
with one thread (`--jobs` at a time), writing OUT/runs/<estimator>-<seed>/ (metrics.jsonl with the
held-out success every --eval-every steps, a checkpoint at each evaluation, train.log). The warm
start itself is evaluated once on the same games (OUT/warm_start.json): every curve starts there.
Flags after `--` go to every run unchanged (any `hiper train` flag).

Resumable: a run whose metrics reach --steps is skipped, one with a checkpoint resumes from it,
any other starts over; so a killed bench picks up where it stopped when run again with the same
command (the command is kept in OUT/bench.json, and a different one is refused).

OUT/summary.json holds, per estimator, each seed's value and the mean over seeds with a 95%
percentile-bootstrap interval (10,000 resamples over seeds) of:
    final    held-out success at the last evaluation
    auc      area under the success curve from the warm start to the last step, divided by the
             steps: the mean success over training (0 to 1)
    steps_to_threshold  the first evaluated step whose success reaches --threshold (runs that
             never reach it count as steps + eval_every, and `reached` says how many did)
and, per estimator against HAE, the paired difference of AUC (seed by seed: both start from the
same warm start and draw the same games) with its interval. OUT/curves.png draws the mean curves
with their interval bands. Both are rewritten whenever a run finishes, so a partial bench can be
read while the rest runs.

`--quick`: 3 seeds of HAE and GRPO, 6 steps, evaluations every 2 steps on 16 games: a smoke-scale
comparison in under 30 minutes on 2 cores (its intervals are wide; it says whether the pipeline
works, not which method wins).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hiper import files

ESTIMATOR_NAMES = ("hae", "grpo", "rloo", "gigpo", "gae", "turn_gae")
BOOTSTRAP_RESAMPLES = 10_000
QUICK = {"estimators": "hae,grpo", "seeds": "0,1,2", "steps": 6, "eval_every": 2, "eval_episodes": 16}


@dataclass
class BenchConfig:
    env: str
    warm_start: str
    out: str
    estimators: tuple[str, ...] = ("hae", "grpo")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 10
    eval_every: int = 2
    eval_episodes: int = 16
    jobs: int = 1
    threshold: float = 0.5
    tasks: str = ""
    game_params: str = ""
    train_args: list[str] = field(default_factory=list)

    def run_name(self, estimator: str, seed: int) -> str:
        return f"{estimator}-{seed}"

    def what_is_run(self) -> dict:
        """What makes two benches the same experiment (jobs may differ between sittings)."""
        mine = asdict(self)
        mine.pop("jobs")
        mine.pop("threshold")
        return mine


def _csv(kind):
    def read(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}")
    return read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="environment family (any hiper train --env)")
    parser.add_argument("--tasks", default="", help="tasks of the family (hiper train --tasks)")
    parser.add_argument("--game-params", default="", help="generated games' parameters (hiper train --game-params)")
    parser.add_argument("--warm-start", required=True,
                        help="model directory every run starts from (hiper sft --out, or any hiper train --model)")
    parser.add_argument("--estimators", type=_csv(str), default=None,
                        help=f"comma-separated estimators, of {', '.join(ESTIMATOR_NAMES)} (default: hae,grpo)")
    parser.add_argument("--seeds", type=_csv(int), default=None, help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run (default: 10)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between held-out evaluations (default: 2)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="held-out games per evaluation (default: 16)")
    parser.add_argument("--threshold", type=float, default=0.5, help="success rate of steps_to_threshold")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each")
    parser.add_argument("--out", required=True, help="directory of runs/, summary.json and curves.png")
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds of hae and grpo, 6 steps, evaluations every 2 steps on 16 games (flags given "
                             "explicitly win)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: hiper train flags passed to every run (e.g. -- --group-size 4)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    defaults = dict(QUICK) if args.quick else {"estimators": "hae,grpo", "seeds": "0,1,2", "steps": 10,
                                                  "eval_every": 2, "eval_episodes": 16}
    estimators = args.estimators or tuple(defaults["estimators"].split(","))
    seeds = args.seeds or tuple(int(s) for s in str(defaults["seeds"]).split(","))
    extra = list(args.train_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    config = BenchConfig(env=args.env, warm_start=args.warm_start, out=args.out, estimators=tuple(estimators),
                         seeds=tuple(seeds), steps=args.steps or defaults["steps"],
                         eval_every=args.eval_every or defaults["eval_every"],
                         eval_episodes=args.eval_episodes or defaults["eval_episodes"], jobs=args.jobs,
                         threshold=args.threshold, tasks=args.tasks, game_params=args.game_params, train_args=extra)
    check(config)
    return config


def check(config: BenchConfig) -> None:
    """Refuses what would fail later, naming the flag: estimators, counts, the warm start, and
    the run flags themselves (parsed as hiper train parses them, games checked)."""
    unknown = [e for e in config.estimators if e not in ESTIMATOR_NAMES]
    if unknown:
        raise ValueError(f"estimators: expected some of {', '.join(ESTIMATOR_NAMES)}, got {', '.join(unknown)}")
    if len(set(config.estimators)) != len(config.estimators) or len(set(config.seeds)) != len(config.seeds):
        raise ValueError("estimators: each estimator and each seed once")
    for name in ("steps", "eval_every", "eval_episodes", "jobs"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: must be >= 1, got {getattr(config, name)}")
    if config.steps % config.eval_every:
        raise ValueError(f"eval_every: must divide steps ({config.steps}), got {config.eval_every}")
    if not 0 < config.threshold <= 1:
        raise ValueError(f"threshold: must be in (0, 1], got {config.threshold}")
    if not Path(config.warm_start).is_dir():
        raise FileNotFoundError(f"warm_start: {config.warm_start} is not a model directory (hiper sft --out ...)")
    owned = {"--env", "--tasks", "--game-params", "--model", "--estimator", "--seed", "--steps", "--eval-every",
             "--eval-envs", "--run-dir", "--resume", "--overwrite", "--save-every", "--progress"}
    clash = sorted(owned.intersection(a.split("=")[0] for a in config.train_args))
    if clash:
        raise ValueError(f"train_args: the bench sets {', '.join(clash)} itself; use its own flags")
    for estimator in config.estimators:  # every run's flags parse, and its games exist, before any run starts
        train_config(config, estimator, config.seeds[0])


def train_flags(config: BenchConfig, estimator: str, seed: int) -> list[str]:
    """The `hiper train` flags of one run (without --resume / --overwrite)."""
    flags = ["--env", config.env, "--model", config.warm_start, "--estimator", estimator, "--seed", str(seed),
             "--steps", str(config.steps), "--eval-every", str(config.eval_every),
             "--eval-envs", str(config.eval_episodes), "--save-every", str(config.eval_every),
             "--run-dir", str(Path(config.out) / "runs" / config.run_name(estimator, seed)), "--progress", "false"]
    if config.tasks:
        flags += ["--tasks", config.tasks]
    if config.game_params:
        flags += ["--game-params", config.game_params]
    return flags + list(config.train_args)


def train_config(config: BenchConfig, estimator: str, seed: int):
    """The TrainConfig one run will use, resolved for the CPU profile (raises what hiper train would)."""
    from hiper.flags import parse_train_flags
    from hiper.envs.registry import evaluation_specs, game_list
    from hiper.profiles import resolve_sizes
    import torch

    resolved, _ = resolve_sizes(parse_train_flags(train_flags(config, estimator, seed)), torch.device("cpu"))
    game_list(resolved.env, resolved.split, **resolved.game_options())
    evaluation_specs(resolved.env, resolved.eval_split or None, resolved.eval_envs, count_name="eval_episodes",
                     **resolved.game_options())
    return resolved


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def run_state(run_dir: Path, steps: int) -> str:
    """done (metrics reach `steps`), resume (a checkpoint to continue from) or new."""
    from hiper import checkpoint
    from hiper.plot import read_metrics

    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = read_metrics(run_dir)
        if rows and rows[-1].get("step", 0) >= steps and "eval" in rows[-1]:
            return "done"
    try:
        checkpoint.open_checkpoint(run_dir, argument="run_dir")
        return "resume"
    except (FileNotFoundError, ValueError):
        return "new"


def _child_setup() -> None:
    """In a run's process: die with the bench (Linux), so a killed bench leaves no orphan training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _one_thread_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HIPER_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def evaluate_warm_start(config: BenchConfig, log=print) -> dict:
    """The warm start's held-out success on the games and settings of the runs' evaluations
    (OUT/warm_start.json; computed once)."""
    path = Path(config.out) / "warm_start.json"
    if path.exists():
        return json.loads(path.read_text())
    from hiper.envs.registry import family

    resolved = train_config(config, config.estimators[0], config.seeds[0])
    log(f"evaluating the warm start on {config.eval_episodes} held-out games")
    # `hiper eval` with what the runs' own evaluations use: their split, sizes, engine and device
    # (its other defaults, temperature 0.4 and seed 0, are the evaluation inside training's too).
    command = ["eval", "--checkpoint", config.warm_start, "--env", resolved.env,
               "--split", resolved.eval_split or family(resolved.env).eval_split,
               "--episodes", str(resolved.eval_envs), "--max-turns", str(resolved.max_turns),
               "--max-new-tokens", str(resolved.max_new_tokens), "--engine", resolved.engine,
               "--device", resolved.device, "--progress", "false"]
    games = (("--data", resolved.data), ("--tasks", resolved.tasks), ("--game-params", resolved.game_params))
    for flag, value in games:
        if value:
            command += [flag, value]
    done = subprocess.run([sys.executable, "-m", "hiper", *command], capture_output=True, text=True,
                          env=_one_thread_env(), preexec_fn=_child_setup)
    if done.returncode != 0:
        raise RuntimeError(f"warm_start: its evaluation failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    files.replace_json(path, report, indent=1)
    return report


def _claim_out(config: BenchConfig) -> None:
    """OUT/bench.json records the experiment; a different one in the same OUT is refused."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    mine = config.what_is_run()
    if path.exists():
        theirs = json.loads(path.read_text())
        if theirs != json.loads(json.dumps(mine)):
            changed = sorted(k for k in set(mine) | set(theirs) if json.dumps(mine.get(k)) != json.dumps(theirs.get(k)))
            raise ValueError(f"out: {out} holds another bench (differs in {', '.join(changed)}); use another --out")
    else:
        files.replace_json(path, mine, indent=1)


def run(config: BenchConfig, log=print) -> dict:
    """Runs every (estimator, seed) not done yet, `jobs` at a time; returns the summary."""
    _claim_out(config)
    warm = evaluate_warm_start(config, log)
    log(f"warm start: held-out success {warm['success_rate']:.3f} on {warm['episodes']} games")
    pending = []
    for seed in config.seeds:  # seed-major: a partial bench has every estimator on its first seeds
        for estimator in config.estimators:
            run_dir = Path(config.out) / "runs" / config.run_name(estimator, seed)
            state = run_state(run_dir, config.steps)
            if state != "done":
                pending.append((estimator, seed, state))
    log(f"{len(config.estimators) * len(config.seeds) - len(pending)} run(s) done, {len(pending)} to run, "
        f"{config.jobs} at a time")
    running: dict[subprocess.Popen, tuple] = {}
    failures = []
    try:
        while pending or running:
            while pending and len(running) < config.jobs:
                estimator, seed, state = pending.pop(0)
                run_dir = Path(config.out) / "runs" / config.run_name(estimator, seed)
                run_dir.mkdir(parents=True, exist_ok=True)
                flags = train_flags(config, estimator, seed) + (["--resume"] if state == "resume"
                                                                 else ["--overwrite", "true"])
                logfile = open(run_dir / "train.log", "a", encoding="utf-8")
                logfile.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} hiper train {' '.join(flags)}\n")
                logfile.flush()
                proc = subprocess.Popen([sys.executable, "-m", "hiper", "train", *flags], stdout=logfile,
                                        stderr=subprocess.STDOUT, env=_one_thread_env(), preexec_fn=_child_setup)
                running[proc] = (estimator, seed, time.perf_counter(), logfile)
                log(f"started {config.run_name(estimator, seed)} ({'resuming' if state == 'resume' else 'new'})")
            time.sleep(1.0)
            for proc in [p for p in running if p.poll() is not None]:
                estimator, seed, started, logfile = running.pop(proc)
                logfile.close()
                name = config.run_name(estimator, seed)
                if proc.returncode != 0:
                    failures.append(name)
                    log(f"FAILED {name} (exit {proc.returncode}); see {Path(config.out) / 'runs' / name / 'train.log'}")
                else:
                    log(f"finished {name} in {time.perf_counter() - started:.0f} s")
                write_summary(config, warm)
    except BaseException:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait(30)
        raise
    summary = write_summary(config, warm)
    if failures:
        raise RuntimeError(f"runs failed: {', '.join(failures)} (their train.log says why); the others are in "
                           f"{config.out}")
    return summary


# ---------------------------------------------------------------------------------------------
# Summarising
# ---------------------------------------------------------------------------------------------

def bootstrap_interval(values, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("values: need at least one value")
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _stat(values) -> dict:
    low, high = bootstrap_interval(values)
    return {"mean": float(np.mean(values)), "ci95": [low, high], "per_seed": [float(v) for v in values]}


def curve(run_dir: Path, warm_success: float) -> tuple[list[int], list[float]]:
    """(steps, held-out success) of a run, starting with the warm start at step 0."""
    from hiper.plot import read_metrics

    steps, success = [0], [warm_success]
    for row in read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []:
        if "eval" in row:
            steps.append(int(row["step"]))
            success.append(float(row["eval"]["success_rate"]))
    return steps, success


def finished_curves(config: BenchConfig, warm_success: float) -> dict[str, dict[int, tuple[list, list]]]:
    """estimator -> seed -> (steps, held-out success) of every run that reached config.steps (the
    others are left out until they do)."""
    curves = {}
    for estimator in config.estimators:
        for seed in config.seeds:
            steps, success = curve(Path(config.out) / "runs" / config.run_name(estimator, seed), warm_success)
            if steps[-1] >= config.steps:
                curves.setdefault(estimator, {})[seed] = (steps, success)
    return curves


def area_under_curve(steps, success) -> float:
    """Trapezoid area of success over steps, divided by the last step: the mean success over training."""
    steps, success = np.asarray(steps, float), np.asarray(success, float)
    if steps[-1] <= 0:
        return float(success[-1])
    return float(np.sum((success[1:] + success[:-1]) / 2 * np.diff(steps)) / steps[-1])


def summarise(config: BenchConfig, warm_success: float, curves: dict | None = None) -> dict:
    """Per estimator, over its finished seeds (`curves`: finished_curves, read when not given):
    final success, AUC and steps to the threshold with intervals; and each estimator's paired AUC
    difference to HAE."""
    if curves is None:
        curves = finished_curves(config, warm_success)
    per = {}
    aucs = {}
    for estimator, by_seed in curves.items():
        seeds = sorted(by_seed)
        finals, areas, reach = [], [], []
        for seed in seeds:
            steps, success = by_seed[seed]
            finals.append(success[-1])
            areas.append(area_under_curve(steps, success))
            hit = [s for s, v in zip(steps, success) if v >= config.threshold]
            reach.append(hit[0] if hit else config.steps + config.eval_every)
        aucs[estimator] = dict(zip(seeds, areas))
        per[estimator] = {"seeds": seeds, "final": _stat(finals), "auc": _stat(areas),
                          "steps_to_threshold": {**_stat(reach),
                                                 "reached": sum(r <= config.steps for r in reach)}}
    versus = {}
    if "hae" in aucs:
        for estimator, by_seed in aucs.items():
            if estimator == "hae":
                continue
            shared = sorted(set(by_seed) & set(aucs["hae"]))
            if shared:
                versus[estimator] = _stat([aucs["hae"][s] - by_seed[s] for s in shared]) | {"seeds": shared}
    return {"env": config.env, "tasks": config.tasks, "game_params": config.game_params,
            "steps": config.steps, "eval_every": config.eval_every, "eval_episodes": config.eval_episodes,
            "threshold": config.threshold, "warm_start_success": warm_success, "train_args": config.train_args,
            "estimators": per, "hae_auc_minus": versus,
            "interval": f"95% percentile bootstrap over seeds, {BOOTSTRAP_RESAMPLES} resamples"}


def write_summary(config: BenchConfig, warm: dict) -> dict:
    """summary.json and curves.png from one reading of the finished runs."""
    curves = finished_curves(config, float(warm["success_rate"]))
    summary = summarise(config, float(warm["success_rate"]), curves)
    files.replace_json(Path(config.out) / "summary.json", summary, indent=1)
    if curves:
        try:
            plot_curves(config, curves, Path(config.out) / "curves.png")
        except ImportError:
            pass  # matplotlib absent: the summary stands alone
    return summary


def plot_curves(config: BenchConfig, curves: dict, out: Path) -> Path:
    """Mean held-out success per estimator (`curves`: finished_curves) against the step, with a 95%
    bootstrap band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for estimator, by_seed in curves.items():
        steps = next(iter(by_seed.values()))[0]  # every finished run evaluates at the same steps
        values = np.asarray([success for _, success in by_seed.values()])
        bands = np.array([bootstrap_interval(values[:, k]) for k in range(values.shape[1])])
        ax.plot(steps, values.mean(0), marker="o", label=f"{estimator} ({len(by_seed)} seeds)")
        ax.fill_between(steps, bands[:, 0], bands[:, 1], alpha=0.2)
    title = f"{config.env} {config.tasks} {config.game_params}".strip()
    ax.set(xlabel="training step", ylabel="held-out success", title=title, ylim=(-0.02, 1.02))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    summary = run(config, log=lambda message: print(f"bench: {message}", flush=True))
    for estimator, stats in summary["estimators"].items():
        auc, final = stats["auc"], stats["final"]
        print(f"{estimator:10s} AUC {auc['mean']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]  final "
              f"{final['mean']:.3f} [{final['ci95'][0]:.3f}, {final['ci95'][1]:.3f}]  ({len(stats['seeds'])} seeds)")
    print(f"summary: {Path(config.out) / 'summary.json'}")
    return 0
