"""`hiper bench learning`: the statistics it reports, and the bench as a user runs it (resumed after a kill)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hiper.studies import learning
from hiper.studies.learning import BenchConfig, area_under_curve, bootstrap_interval, run_state, summarise

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


# Statistics ---------------------------------------------------------------------------------------------

def test_bootstrap_interval_of_two_values_is_their_range():
    # Means of two draws from {0, 1}: 0 (p = 1/4), 1/2 (1/2), 1 (1/4): the 2.5% and 97.5% quantiles are 0 and 1.
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_interval([0.3, 0.3, 0.3]) == (0.3, 0.3)
    assert bootstrap_interval([0.7]) == (0.7, 0.7)


def test_bootstrap_interval_covers_the_mean_as_often_as_it_says():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        values = rng.normal(0.5, 0.1, size=20)
        low, high = bootstrap_interval(values, resamples=2000, seed=trial)
        covered += low <= 0.5 <= high
    # A percentile bootstrap of a mean of 20 normals covers a bit under its nominal 95%.
    assert 0.88 <= covered / 200 <= 0.99, covered


def test_area_under_curve_is_the_mean_success_over_training():
    assert area_under_curve([0, 2, 4], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    assert area_under_curve([0, 1, 4], [0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert area_under_curve([0, 2, 4], [0.0, 1.0, 1.0]) == pytest.approx(0.75)


def _fake_run(out: Path, name: str, evals: dict[int, float], last_step: int) -> None:
    run = out / "runs" / name
    run.mkdir(parents=True)
    rows = []
    for step in range(1, last_step + 1):
        row = {"step": step, "success_rate": 0.0}
        if step in evals:
            row["eval"] = {"success_rate": evals[step]}
        rows.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")


def test_summary_reports_each_seed_and_pairs_them(tmp_path):
    config = BenchConfig(env="keychest", warm_start=str(tmp_path), out=str(tmp_path), estimators=("hae", "grpo"),
                         seeds=(0, 1, 2), steps=4, eval_every=2, threshold=0.5)
    _fake_run(tmp_path, "hae-0", {2: 0.5, 4: 1.0}, 4)
    _fake_run(tmp_path, "hae-1", {2: 0.25, 4: 0.75}, 4)
    _fake_run(tmp_path, "hae-2", {2: 0.5}, 3)            # unfinished: left out
    _fake_run(tmp_path, "grpo-0", {2: 0.0, 4: 0.25}, 4)   # never reaches 0.5
    _fake_run(tmp_path, "grpo-1", {2: 0.5, 4: 0.5}, 4)
    summary = summarise(config, warm_success=0.0)
    hae, grpo = summary["estimators"]["hae"], summary["estimators"]["grpo"]
    assert hae["seeds"] == [0, 1] and grpo["seeds"] == [0, 1]
    assert hae["final"]["per_seed"] == [1.0, 0.75]
    # AUC of hae-0: (0 + 0.5) / 2 * 2 + (0.5 + 1) / 2 * 2 = 2.0, over 4 steps.
    assert hae["auc"]["per_seed"] == pytest.approx([0.5, 0.3125])
    # grpo-0 never reaches the threshold: counted as steps + eval_every, and not as reached.
    assert grpo["steps_to_threshold"]["per_seed"] == [6, 2] and grpo["steps_to_threshold"]["reached"] == 1
    assert hae["steps_to_threshold"]["per_seed"] == [2, 4]
    low, high = hae["auc"]["ci95"]
    assert low <= hae["auc"]["mean"] <= high
    # The figure draws the finished runs only, whichever seed is unfinished (here the last one of hae).
    pytest.importorskip("matplotlib")
    assert learning.write_summary(config, {"success_rate": 0.0}) == summary
    assert (tmp_path / "curves.png").stat().st_size > 0
    versus = summary["hae_auc_minus"]["grpo"]
    grpo_auc = [0.25 / 4, 1.5 / 4]  # grpo-0: (0 + 0) / 2 * 2 + (0 + 0.25) / 2 * 2 = 0.25; grpo-1: 0.5 + 1.0 = 1.5
    assert versus["per_seed"] == pytest.approx([0.5 - grpo_auc[0], 0.3125 - grpo_auc[1]])


def test_run_state_tells_done_resume_and_new(tmp_path):
    _fake_run(tmp_path, "done", {2: 0.5, 4: 0.5}, 4)
    _fake_run(tmp_path, "short", {2: 0.5}, 2)
    assert run_state(tmp_path / "runs" / "done", 4) == "done"
    assert run_state(tmp_path / "runs" / "short", 4) == "new"   # metrics but no checkpoint: starts over
    assert run_state(tmp_path / "runs" / "absent", 4) == "new"


@pytest.mark.parametrize("flags, message", [
    (["--estimators", "hae,ppo"], "--estimators: expected some of"),
    (["--steps", "5", "--eval-every", "2"], "--eval-every: must divide steps"),
    (["--", "--seed", "3"], "train_args: the bench sets --seed itself"),
    (["--", "--envs", "zero"], "envs"),
])
def test_bad_bench_flags_are_refused_before_any_run(tmp_path, flags, message):
    from cli_runs import hiper

    warm = tmp_path / "warm"
    warm.mkdir()
    done = hiper("bench", "learning", "--env", "keychest", "--warm-start", str(warm), "--out", str(tmp_path / "out"),
                 *flags, cwd=tmp_path)
    assert done.returncode in (1, 2), done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) <= 2, done.stderr
    assert not (tmp_path / "out" / "runs").exists()


# The bench as a user runs it ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def warm_start(tmp_path_factory):
    """A model directory to start from: a tiny random Llama with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer

    from hiper.models import prepare_tokenizer, tiny_random_model

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    directory = tmp_path_factory.mktemp("warm")
    tiny_random_model(tokenizer, seed=0).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _bench_command(warm_start, out) -> list[str]:
    return [sys.executable, "-m", "hiper", "bench", "learning", "--env", "keychest", "--warm-start", str(warm_start),
            "--estimators", "hae,grpo", "--seeds", "0", "--steps", "4", "--eval-every", "2", "--eval-episodes", "4",
            "--jobs", "2", "--out", str(out), "--", "--envs", "4", "--group-size", "2", "--max-turns", "2",
            "--max-new-tokens", "8", "--engine", "hf", "--device", "cpu"]


def test_bench_resumes_after_a_kill_and_summarises(warm_start, tmp_path):
    out = tmp_path / "bench"
    environ = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(_bench_command(warm_start, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=environ)
    # Kill the bench once a run has its first checkpoint (step 2) and before it finishes.
    checkpoint = out / "runs" / "hae-0" / "checkpoint"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), first.communicate()[0][-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(1.0)  # its runs die with it (they get SIGTERM when their parent dies)
    assert run_state(out / "runs" / "hae-0", 4) == "resume"
    second = subprocess.run(_bench_command(warm_start, out), capture_output=True, text=True, env=environ, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    log = (out / "runs" / "hae-0" / "train.log").read_text()
    assert "started hae-0 (resuming)" in second.stdout
    assert "--resume" in log.split("\n# ")[-1] and "--resume" not in log.split("\n# ")[1]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["estimators"]) == {"hae", "grpo"}
    for stats in summary["estimators"].values():
        assert stats["seeds"] == [0] and 0.0 <= stats["final"]["mean"] <= 1.0
    assert (out / "curves.png").stat().st_size > 0
    assert json.loads((out / "warm_start.json").read_text())["episodes"] == 4
    # Every run's metrics reach the last step, each with its held-out evaluations at steps 2 and 4.
    for name in ("hae-0", "grpo-0"):
        rows = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 3, 4] and [r["step"] for r in rows if "eval" in r] == [2, 4]
    # A third sitting has nothing left to do; a different experiment in the same directory is refused.
    third = subprocess.run(_bench_command(warm_start, out), capture_output=True, text=True, env=environ, timeout=120)
    assert third.returncode == 0 and "2 run(s) done, 0 to run" in third.stdout
    other = _bench_command(warm_start, out)
    other[other.index("--steps") + 1] = "6"
    refused = subprocess.run(other, capture_output=True, text=True, env=environ, timeout=120)
    assert refused.returncode == 1 and "holds another bench (differs in steps)" in refused.stderr


