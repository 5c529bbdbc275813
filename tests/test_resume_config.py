"""`hiper train --resume` continues a run with the configuration it was started with (hiper.resume).

One tiny run on keychest, started with non-default settings, is copied into each test, which
resumes it: with --resume alone the run keeps its own settings; a flag that would change one is
refused naming it and both values; --override takes it and logs the change.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cli_runs import run
from hiper.resume import RESUMABLE
from hiper.train_config import TrainConfig

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
PEFT = importlib.util.find_spec("peft") is not None

# What the run is started with, none of it the default.
STARTED = {"gamma": 0.9, "kl_coef": 0.05, "actor_lr": 3e-5, "estimator": "grpo", **({"lora_rank": 2} if PEFT else {})}


def flags(values: dict) -> list[str]:
    return [item for name, value in values.items() for item in ("--" + name.replace("_", "-"), str(value))]


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> Path:
    """A run directory holding a one-step run of a tiny model, started with STARTED."""
    run_dir = tmp_path_factory.mktemp("started") / "run"
    argv = ["train", "--env", "keychest", "--tiny-model", "--model", TOKENIZER, "--device", "cpu", "--envs", "1",
            "--max-turns", "1", "--max-new-tokens", "4", "--micro-batch-size", "1", "--mini-batch-size", "4",
            "--steps", "1", "--progress", "false", "--run-dir", str(run_dir), *flags(STARTED)]
    from hiper.cli import main

    assert main(argv) == 0
    return run_dir


@pytest.fixture
def run_dir(started, tmp_path) -> Path:
    """A copy of the started run, for one test to resume."""
    return Path(shutil.copytree(started, tmp_path / "run"))


def recorded(run_dir: Path) -> tuple[dict, dict]:
    """(config.json, the config the checkpoint's trainer recorded) of a run."""
    state = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
    return json.loads((run_dir / "config.json").read_text()), state["config"]


def test_resume_alone_continues_with_the_runs_own_settings(run_dir, capsys):
    code, _, err = run(["train", "--resume", "--run-dir", str(run_dir), "--steps", "2", "--progress", "false"], capsys)
    assert code == 0, err
    config_json, trainer_config = recorded(run_dir)
    assert trainer_config["steps"] == 2 and json.loads((run_dir / "checkpoint" / "MANIFEST.json").read_text())[
        "step"] == 2
    for name, value in STARTED.items():
        assert config_json[name] == value and trainer_config[name] == value, name
    assert config_json == trainer_config


@pytest.mark.parametrize("name, value, was", [("gamma", "1.0", "0.9"), ("estimator", "hae", "grpo"),
                                              ("kl_coef", "0.01", "0.05")])
def test_a_flag_that_would_change_the_run_is_refused_naming_it(run_dir, capsys, name, value, was):
    flag = "--" + name.replace("_", "-")
    code, out, err = run(["train", "--resume", "--run-dir", str(run_dir), "--steps", "2", flag, value], capsys)
    assert code == 1 and out == ""
    assert err == (f"hiper: error: {flag}: the run was started with {was}; resuming with {value} would change it "
                   "(pass --override to allow)\n")
    assert recorded(run_dir)[1]["steps"] == 1  # nothing ran


def test_a_config_file_that_would_change_the_run_is_refused_naming_its_key(run_dir, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("gamma: 0.5\n")
    code, _, err = run(["train", "--resume", "--run-dir", str(run_dir), "--config", str(tmp_path / "c.yaml"),
                        "--steps", "2"], capsys)
    assert code == 1
    assert err.startswith("hiper: error: config key gamma: the run was started with 0.9; resuming with 0.5"), err


def test_flags_equal_to_the_runs_and_resumable_ones_are_taken(run_dir, capsys):
    code, out, err = run(["train", "--resume", "--run-dir", str(run_dir), "--check", "--gamma", "0.9",
                          "--steps", "5", "--eval-envs", "3", "--workers", "0"], capsys)
    assert code == 0, err
    assert "gamma: 0.9\n" in out and "steps: 5\n" in out and "eval_envs: 3\n" in out and "estimator: grpo\n" in out


def test_override_takes_the_new_value_and_logs_the_change(run_dir, capsys):
    code, _, err = run(["train", "--resume", "--run-dir", str(run_dir), "--steps", "2", "--progress", "false",
                        "--gamma", "1.0", "--override"], capsys)
    assert code == 0, err
    assert "hiper train: --gamma: the run was started with 0.9; resuming with 1.0 (--override)" in err
    config_json, trainer_config = recorded(run_dir)
    assert config_json["gamma"] == trainer_config["gamma"] == 1.0
    assert trainer_config["kl_coef"] == STARTED["kl_coef"]  # the flags not given keep the run's values


def test_override_without_resume_is_refused(tmp_path, capsys):
    code, _, err = run(["train", "--env", "keychest", "--tiny-model", "--check", "--override",
                        "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 1 and err.startswith("hiper: error: --override: only a resumed run has a configuration"), err


def test_every_resumable_flag_is_a_train_config_field():
    assert set(RESUMABLE) <= {f.name for f in dataclasses.fields(TrainConfig)}
